//! Fair share of the update workers: which tenants' due objects a claim takes.
//!
//! Every work item belongs to a **tenant**, fixed when its object is made: a resource and the
//! supporting leases a resource asks for belong to their blueprint (`B3`), a lease a user asks
//! for belongs to its owner (`owner:cli:alice`). A claim for `n` workers does not take the `n`
//! oldest due objects (a tenant with a thousand due objects would take every worker for as long
//! as its backlog lasts); it shares them out by deficit round robin with a quantum of one: each
//! object in turn goes to the tenant with due work that has the fewest objects running in this
//! daemon (those picked so far in this claim included), the one whose oldest object has waited
//! longest among equals. So a tenant that becomes due while another holds every worker gets the
//! next worker that frees: a thousand ready objects of one tenant delay another tenant's next
//! object by at most one round. Within a tenant, objects go oldest due first.
//!
//! [`share`] decides, purely; the stores run it over the tenants they find due and claim each
//! tenant's share ([`claim_fairly`]).

use crate::domain::Timestamp;
use crate::store::{Claim, ObjectId, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The tenant of a blueprint's resources and of the supporting leases they ask for.
pub fn blueprint_tenant(blueprint: ObjectId) -> String {
    blueprint.to_string()
}

/// The tenant of the leases `owner` asks for.
pub fn owner_tenant(owner: &str) -> String {
    format!("owner:{owner}")
}

/// A tenant with due work, and the due time of its oldest due object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The tenant.
    pub tenant: String,
    /// When its oldest due object became due.
    pub oldest: Timestamp,
}

/// How many objects of each tenant this daemon is running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load(HashMap<String, usize>);

impl Load {
    /// The load of the claims in `running`.
    pub fn of<'a>(running: impl IntoIterator<Item = &'a Claim>) -> Load {
        let mut load = Load::default();
        for claim in running {
            load.add(&claim.tenant, 1);
        }
        load
    }

    /// `count` more objects of `tenant` are running.
    pub fn add(&mut self, tenant: &str, count: usize) {
        *self.0.entry(tenant.to_string()).or_default() += count;
    }

    /// How many objects of `tenant` are running.
    pub fn running(&self, tenant: &str) -> usize {
        self.0.get(tenant).copied().unwrap_or(0)
    }
}

/// How many of `slots` objects to take from each tenant in `due`, given what is running: the
/// tenants with a share, in the order their shares began, each with its count.
pub fn share(slots: usize, due: &[Due], load: &Load) -> Vec<(String, usize)> {
    // The next object goes to the smallest (running, oldest, position).
    let mut turns: BinaryHeap<Reverse<(usize, Timestamp, usize)>> = due
        .iter()
        .enumerate()
        .map(|(at, d)| Reverse((load.running(&d.tenant), d.oldest, at)))
        .collect();
    let mut counts: Vec<usize> = vec![0; due.len()];
    let mut order = Vec::new();
    for _ in 0..slots {
        let Some(Reverse((running, oldest, at))) = turns.pop() else {
            break;
        };
        if counts[at] == 0 {
            order.push(at);
        }
        counts[at] += 1;
        turns.push(Reverse((running + 1, oldest, at)));
    }
    order
        .into_iter()
        .map(|at| (due[at].tenant.clone(), counts[at]))
        .collect()
}

/// What a store does for [`claim_fairly`], inside its claim transaction.
#[async_trait::async_trait]
pub(crate) trait TenantClaims: Send {
    /// For each `(tenant, count)`, up to `count` due unclaimed objects of the tenant, oldest
    /// due first, claimed.
    async fn claim_shares(&mut self, shares: &[(String, usize)]) -> Result<Vec<Claim>>;
}

/// Claims up to `slots` of the due objects of the tenants in `due`, shared out by [`share`]
/// given `load` (what runs already, including what this claim took over). A tenant that has
/// fewer due objects than its share leaves the rest to the others.
pub(crate) async fn claim_fairly(
    store: &mut dyn TenantClaims,
    slots: usize,
    mut due: Vec<Due>,
    mut load: Load,
) -> Result<Vec<Claim>> {
    let mut claims = Vec::new();
    while claims.len() < slots && !due.is_empty() {
        let shares = share(slots - claims.len(), &due, &load);
        let taken = store.claim_shares(&shares).await?;
        let mut drained = Vec::new();
        for (tenant, count) in shares {
            let got = taken.iter().filter(|c| c.tenant == tenant).count();
            load.add(&tenant, got);
            if got < count {
                drained.push(tenant);
            }
        }
        claims.extend(taken);
        if drained.is_empty() {
            break;
        }
        due.retain(|d| !drained.contains(&d.tenant));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(tenants: &[(&str, Timestamp)]) -> Vec<Due> {
        tenants
            .iter()
            .map(|(tenant, oldest)| Due {
                tenant: tenant.to_string(),
                oldest: *oldest,
            })
            .collect()
    }

    fn load(running: &[(&str, usize)]) -> Load {
        let mut load = Load::default();
        for (tenant, count) in running {
            load.add(tenant, *count);
        }
        load
    }

    #[test]
    fn slots_go_round_the_tenants_oldest_first() {
        let due = due(&[("B1", 10), ("owner:a", 5), ("B2", 20)]);
        assert_eq!(
            share(7, &due, &Load::default()),
            [("owner:a".into(), 3), ("B1".into(), 2), ("B2".into(), 2)]
        );
        assert_eq!(share(1, &due, &Load::default()), [("owner:a".into(), 1)]);
        assert!(share(0, &due, &Load::default()).is_empty());
        assert!(share(5, &[], &Load::default()).is_empty());
    }

    #[test]
    fn a_tenant_holding_workers_waits_for_the_others() {
        let due = due(&[("B1", 10), ("owner:a", 500)]);
        // B1 runs 63 objects: the next worker is owner:a's however old B1's backlog.
        assert_eq!(
            share(1, &due, &load(&[("B1", 63)])),
            [("owner:a".into(), 1)]
        );
        // Levelled up first, then round robin.
        assert_eq!(
            share(6, &due, &load(&[("B1", 2)])),
            [("owner:a".into(), 4), ("B1".into(), 2)]
        );
    }

    /// A store of due objects per tenant, for `claim_fairly`.
    struct Backlog(HashMap<String, usize>);

    #[async_trait::async_trait]
    impl TenantClaims for Backlog {
        async fn claim_shares(&mut self, shares: &[(String, usize)]) -> Result<Vec<Claim>> {
            let mut claims = Vec::new();
            for (tenant, count) in shares {
                let left = self.0.get_mut(tenant).unwrap();
                let taken = (*count).min(*left);
                *left -= taken;
                claims.extend((0..taken).map(|n| claim(tenant, n)));
            }
            Ok(claims)
        }
    }

    fn claim(tenant: &str, n: usize) -> Claim {
        Claim {
            object: ObjectId::Lease(n as i64 + 1),
            tenant: tenant.into(),
            owner: "d".into(),
            token: 1,
            attempts: 0,
            held_until: 0,
            taken_over: false,
        }
    }

    fn tenants_of(claims: &[Claim]) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for claim in claims {
            *counts.entry(claim.tenant.clone()).or_default() += 1;
        }
        counts
    }

    #[tokio::test]
    async fn a_thousand_due_objects_leave_the_other_tenants_their_turn() {
        let mut backlog = Backlog(HashMap::from([("B1".into(), 1000), ("owner:a".into(), 1)]));
        let due = due(&[("B1", 1), ("owner:a", 9_999)]);
        let claims = claim_fairly(&mut backlog, 4, due, Load::default())
            .await
            .unwrap();
        assert_eq!(
            tenants_of(&claims),
            HashMap::from([("B1".into(), 3), ("owner:a".into(), 1)])
        );
    }

    #[tokio::test]
    async fn a_tenant_short_of_its_share_leaves_the_rest_to_others() {
        let mut backlog = Backlog(HashMap::from([
            ("B1".into(), 1),
            ("B2".into(), 2),
            ("B3".into(), 50),
        ]));
        let due = due(&[("B1", 1), ("B2", 2), ("B3", 3)]);
        let claims = claim_fairly(&mut backlog, 12, due, Load::default())
            .await
            .unwrap();
        assert_eq!(
            tenants_of(&claims),
            HashMap::from([("B1".into(), 1), ("B2".into(), 2), ("B3".into(), 9)])
        );
        let mut empty = Backlog(HashMap::from([("B1".into(), 0)]));
        let none = claim_fairly(&mut empty, 3, due_one("B1"), Load::default())
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    fn due_one(tenant: &str) -> Vec<Due> {
        due(&[(tenant, 0)])
    }
}
