//! Authorizations: which blueprints a blueprint may hold supporting leases on.
//!
//! A supporting lease lends its holder the leased resource's command interface, and so the
//! grants of the blueprint that made it. The operator therefore names, per blueprint, the
//! blueprints it may lease from, as a grant `use:NAME` (`drydock blueprint authorize
//! working-copy --use host-pool`). It is checked twice:
//!
//! - when a step requests a supporting lease ([`refusal`]): with no authorized blueprint of that
//!   type, the step is refused and the requesting resource (from `allocate-resource`, the
//!   lease it was allocating for) breaks with a reason naming the missing authorization and
//!   the command that grants it;
//! - when the allocator picks blueprints for a supporting lease ([`may_use`]): only authorized
//!   ones are candidates, so an authorization revoked meanwhile is honoured.
//!
//! Revoking an authorization leaves supporting leases already acquired alone until they are
//! released; it stops new ones.

use crate::grant::Grant;
use crate::store::Blueprint;

/// Whether `requester` may hold supporting leases on resources `provider` makes.
pub fn may_use(requester: &Blueprint, provider: &Blueprint) -> bool {
    requester
        .grants
        .iter()
        .any(|grant| matches!(grant, Grant::Use { blueprint } if *blueprint == provider.name))
}

/// Why `requester` may not request a supporting lease of `resource_type`, given every
/// registered blueprint; `None` when some blueprint of that type is authorized for it (the
/// allocator then chooses among those that are enabled).
pub fn refusal(
    requester: &Blueprint,
    resource_type: &str,
    blueprints: &[Blueprint],
) -> Option<String> {
    let makers: Vec<&Blueprint> = blueprints
        .iter()
        .filter(|b| b.resource_type == resource_type)
        .collect();
    if makers.iter().any(|maker| may_use(requester, maker)) {
        return None;
    }
    let makers: Vec<&str> = makers.iter().map(|b| b.name.as_str()).collect();
    let Some(first) = makers.first() else {
        return Some(format!(
            "{} requested a supporting lease of type {resource_type:?}, and no registered \
             blueprint makes {resource_type:?} resources",
            requester.name
        ));
    };
    Some(format!(
        "{} is not authorized to hold {resource_type:?} leases on {}: an operator allows it with \
         `drydock blueprint authorize {} --use {first}`",
        requester.name,
        makers.join(" or "),
        requester.name,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectId;

    fn blueprint(id: i64, name: &str, resource_type: &str, grants: &[&str]) -> Blueprint {
        Blueprint {
            id: ObjectId::Blueprint(id),
            name: name.into(),
            component: String::new(),
            component_name: name.into(),
            resource_type: resource_type.into(),
            config: "{}".into(),
            enabled: true,
            grants: grants.iter().map(|g| g.parse().unwrap()).collect(),
            version: 1,
            failures: 0,
            retry_at: None,
            last_failure: None,
            limits: Default::default(),
            log_bytes: 0,
            step_bytes: 0,
            created_at: 0,
        }
    }

    #[test]
    fn only_a_named_blueprint_may_be_leased_from() {
        let pool = blueprint(1, "host-pool", "host", &["local:/srv/hosts"]);
        let other = blueprint(2, "other-pool", "host", &[]);
        let copies = blueprint(3, "working-copy", "working-copy", &["use:host-pool"]);
        assert!(may_use(&copies, &pool));
        assert!(!may_use(&copies, &other));
        assert!(
            !may_use(&pool, &pool),
            "not even its own type without a grant"
        );
    }

    #[test]
    fn a_refusal_names_the_authorization_and_the_command() {
        let pool = blueprint(1, "host-pool", "host", &[]);
        let intruder = blueprint(2, "intruder", "thing", &["local:/tmp/x"]);
        let all = [pool.clone(), intruder.clone()];
        let why = refusal(&intruder, "host", &all).unwrap();
        assert_eq!(
            why,
            "intruder is not authorized to hold \"host\" leases on host-pool: an operator allows \
             it with `drydock blueprint authorize intruder --use host-pool`"
        );
        let authorized = blueprint(2, "intruder", "thing", &["use:host-pool"]);
        assert_eq!(refusal(&authorized, "host", &all), None);
        // An authorization for another type's blueprint does not count.
        assert!(
            refusal(&authorized, "vm", &all)
                .unwrap()
                .contains("no registered blueprint")
        );
    }
}
