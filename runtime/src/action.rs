//! Validation of the actions a blueprint returns, before the host applies any of them.
//!
//! A component is hostile until proven otherwise (invariant I4). A [`Step`] is checked here, as a
//! whole, against the [`Scope`] of the call that produced it: the object under call, the supporting
//! leases that object owns, and the size [`Limits`]. Either every action passes or the step is
//! refused with a [`Violation`] naming the first offending action. This module is pure: it knows
//! nothing of wasm or of the database.

use crate::domain::{Action, Attributes, Outcome, Step};
use std::collections::BTreeSet;

/// The kind of object a call works on; actions without an explicit target apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A resource (allocate, activate, destroy).
    Resource,
    /// A lease (acquire, activate, release).
    Lease,
}

/// What one call may touch.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The object under call.
    pub subject: Subject,
    /// Keys of the supporting leases the object owns.
    pub supporting_leases: BTreeSet<String>,
    /// The call's time, for deadline checks.
    pub now: crate::domain::Timestamp,
    /// How deep the object under call sits in a chain of supporting leases (0 for an object a
    /// user asked for).
    pub depth: u32,
}

/// Size caps on what a step may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Actions in one step.
    pub max_actions: usize,
    /// Bytes of one attribute value.
    pub max_value_bytes: usize,
    /// Bytes of one log line or failure reason.
    pub max_message_bytes: usize,
    /// Slot locks in one action.
    pub max_locks: usize,
    /// Arguments of one exec.
    pub max_argv: usize,
    /// Bytes of all strings in the step together.
    pub max_step_bytes: usize,
    /// Longest yield, in milliseconds.
    pub max_yield_ms: u32,
    /// Longest exec time limit, in milliseconds.
    pub max_exec_timeout_ms: u32,
    /// Supporting leases one resource may own.
    pub max_supporting_leases: usize,
    /// How deep supporting leases may nest (a resource's lease on a resource that holds a
    /// lease on…): a blueprint that leases its own type stops here.
    pub max_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_actions: 256,
            max_value_bytes: 16 * 1024,
            max_message_bytes: 4 * 1024,
            max_locks: 32,
            max_argv: 256,
            max_step_bytes: 1024 * 1024,
            max_yield_ms: 24 * 60 * 60 * 1000,
            max_exec_timeout_ms: 60 * 60 * 1000,
            max_supporting_leases: 8,
            max_depth: 4,
        }
    }
}

/// Why a step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", at.map(|i| format!("action {i}: ")).unwrap_or_default())]
pub struct Violation {
    /// Index of the offending action, or `None` for the step as a whole.
    pub at: Option<usize>,
    /// What was wrong.
    pub reason: String,
    /// Whether the step asked for supporting leases past their bounds (how deep they nest,
    /// how many one resource owns): a resource made for the same request anywhere would be
    /// refused the same, so the host does not try another.
    pub growth: bool,
}

impl Violation {
    fn step(reason: impl Into<String>) -> Self {
        Violation {
            at: None,
            reason: reason.into(),
            growth: false,
        }
    }
}

/// Longest attribute key, supporting lease key or exec id.
pub const MAX_KEY_BYTES: usize = 64;
/// Longest slot lock name.
pub const MAX_LOCK_BYTES: usize = 128;
/// Slot lock prefixes the host keeps for itself.
pub const RESERVED_LOCK_PREFIXES: [&str; 2] = ["allocator(", "drydock."];

/// Checks a key: a lowercase letter, then lowercase letters, digits, `.`, `_` or `-`.
pub fn check_key(what: &str, key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
    if key.len() > MAX_KEY_BYTES || !first || !rest {
        return Err(format!(
            "{what} {:?} is malformed: use 1 to {MAX_KEY_BYTES} lowercase letters, digits, '.', '_' \
             or '-', starting with a letter",
            clip(key)
        ));
    }
    Ok(())
}

/// Checks a slot lock name: printable ASCII without spaces, not in a reserved namespace.
pub fn check_lock_name(name: &str) -> Result<(), String> {
    let charset = name.chars().all(|c| c.is_ascii_graphic());
    if name.is_empty() || name.len() > MAX_LOCK_BYTES || !charset {
        return Err(format!(
            "slot lock name {:?} is malformed: use 1 to {MAX_LOCK_BYTES} printable ASCII characters without spaces",
            clip(name)
        ));
    }
    if let Some(prefix) = RESERVED_LOCK_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(format!(
            "slot lock {name:?} is in the host's reserved namespace {prefix:?}"
        ));
    }
    Ok(())
}

/// Checks a set of attributes against the key syntax and value size.
pub fn check_attributes(attributes: &Attributes, limits: &Limits) -> Result<(), String> {
    attributes
        .iter()
        .try_for_each(|(key, value)| check_attribute(key, value, limits))
}

fn check_attribute(key: &str, value: &str, limits: &Limits) -> Result<(), String> {
    check_key("attribute key", key)?;
    if value.len() > limits.max_value_bytes {
        return Err(format!(
            "attribute {key:?} has a {} byte value; the limit is {}",
            value.len(),
            limits.max_value_bytes
        ));
    }
    Ok(())
}

/// Validates a whole step for a call with `scope`. The first problem found is returned.
pub fn validate(step: &Step, scope: &Scope, limits: &Limits) -> Result<(), Violation> {
    if step.actions.len() > limits.max_actions {
        return Err(Violation::step(format!(
            "the step has {} actions; the limit is {}",
            step.actions.len(),
            limits.max_actions
        )));
    }
    let bytes = step_bytes(step);
    if bytes > limits.max_step_bytes {
        return Err(Violation::step(format!(
            "the step carries {bytes} bytes; the limit is {}",
            limits.max_step_bytes
        )));
    }
    let mut checker = Checker {
        scope,
        limits,
        requested: BTreeSet::new(),
        exec_ids: BTreeSet::new(),
    };
    for (index, action) in step.actions.iter().enumerate() {
        let at = Some(index);
        checker.check(action).map_err(|reason| Violation {
            at,
            reason,
            growth: false,
        })?;
        if let Action::RequestLease(_) = action {
            checker.check_growth().map_err(|reason| Violation {
                at,
                reason,
                growth: true,
            })?;
        }
    }
    check_outcome(step, limits).map_err(Violation::step)
}

struct Checker<'a> {
    scope: &'a Scope,
    limits: &'a Limits,
    requested: BTreeSet<&'a str>,
    exec_ids: BTreeSet<&'a str>,
}

impl<'a> Checker<'a> {
    fn check(&mut self, action: &'a Action) -> Result<(), String> {
        match action {
            Action::SetAttribute { key, value } => check_attribute(key, value, self.limits),
            Action::RemoveAttribute(key) => check_key("attribute key", key),
            Action::Log(message) => self.check_message("log line", message),
            Action::TakeSlotLocks(names) => self.check_locks(names),
            Action::RequestLease(request) => self.check_request(request),
            Action::ReleaseLease(key) => self.check_owned(key).map(drop),
            Action::Exec(exec) => self.check_exec(exec),
            Action::SetUntil(until) => until.map_or(Ok(()), |until| {
                crate::domain::check_deadline(until, self.scope.now)
            }),
        }
    }

    fn check_message(&self, what: &str, message: &str) -> Result<(), String> {
        check_message(what, message, self.limits)
    }

    fn check_locks(&self, names: &[String]) -> Result<(), String> {
        if names.is_empty() || names.len() > self.limits.max_locks {
            return Err(format!(
                "take-slot-locks needs 1 to {} lock names, got {}",
                self.limits.max_locks,
                names.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for name in names {
            check_lock_name(name)?;
            if !seen.insert(name) {
                return Err(format!("slot lock {name:?} is named twice"));
            }
        }
        Ok(())
    }

    fn check_request(&mut self, request: &'a crate::domain::LeaseRequest) -> Result<(), String> {
        if self.scope.subject != Subject::Resource {
            return Err("only resource hooks may request supporting leases".into());
        }
        check_key("supporting lease key", &request.key)?;
        check_key("resource type", &request.resource_type)?;
        check_attributes(&request.attributes, self.limits)?;
        let known = self.scope.supporting_leases.contains(&request.key);
        if known || !self.requested.insert(&request.key) {
            return Err(format!(
                "a supporting lease with key {:?} already exists",
                request.key
            ));
        }
        Ok(())
    }

    /// The bounds on supporting leases, once a request has been counted in `requested`.
    fn check_growth(&self) -> Result<(), String> {
        let owned = self.scope.supporting_leases.len() + self.requested.len();
        if owned > self.limits.max_supporting_leases {
            return Err(format!(
                "a resource may own at most {} supporting leases",
                self.limits.max_supporting_leases
            ));
        }
        if self.scope.depth >= self.limits.max_depth {
            return Err(format!(
                "supporting leases nest at most {} deep, and this resource is at depth {}: a \
                 blueprint that leases its own kind of resource would never stop",
                self.limits.max_depth, self.scope.depth
            ));
        }
        Ok(())
    }

    fn check_owned(&self, key: &str) -> Result<(), String> {
        if self.scope.supporting_leases.contains(key) {
            return Ok(());
        }
        Err(format!(
            "{:?} is not a supporting lease of the object under call; it owns [{}]",
            clip(key),
            self.scope
                .supporting_leases
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    fn check_exec(&mut self, exec: &'a crate::domain::ExecRequest) -> Result<(), String> {
        check_key("exec id", &exec.id)?;
        if !self.exec_ids.insert(&exec.id) {
            return Err(format!("exec id {:?} is used twice", exec.id));
        }
        self.check_owned(&exec.lease_key)?;
        if exec.argv.is_empty() || exec.argv.len() > self.limits.max_argv {
            return Err(format!(
                "exec needs 1 to {} arguments, got {}",
                self.limits.max_argv,
                exec.argv.len()
            ));
        }
        if let Some(cwd) = &exec.cwd {
            check_relative_path(cwd)?;
        }
        if exec.timeout_ms == 0 || exec.timeout_ms > self.limits.max_exec_timeout_ms {
            return Err(format!(
                "exec timeout {} ms is outside 1..={} ms",
                exec.timeout_ms, self.limits.max_exec_timeout_ms
            ));
        }
        Ok(())
    }
}

fn check_message(what: &str, message: &str, limits: &Limits) -> Result<(), String> {
    if message.len() > limits.max_message_bytes {
        return Err(format!(
            "{what} has {} bytes; the limit is {}",
            message.len(),
            limits.max_message_bytes
        ));
    }
    Ok(())
}

fn check_relative_path(path: &str) -> Result<(), String> {
    let escapes = path.split('/').any(|part| part == "..");
    if path.starts_with('/') || escapes || path.contains('\0') {
        return Err(format!(
            "exec cwd {:?} must be a relative path inside the interface root",
            clip(path)
        ));
    }
    Ok(())
}

fn check_outcome(step: &Step, limits: &Limits) -> Result<(), String> {
    let has_exec = step.actions.iter().any(|a| matches!(a, Action::Exec(_)));
    match &step.outcome {
        Outcome::Yield(ms) if *ms > limits.max_yield_ms => Err(format!(
            "yield of {ms} ms is longer than the limit of {} ms",
            limits.max_yield_ms
        )),
        Outcome::Fail(reason) => check_message("failure reason", reason, limits),
        Outcome::Done if has_exec => Err(
            "a step with exec actions must end in `yield`: the host runs them, then calls the hook \
             again with their results"
                .into(),
        ),
        _ => Ok(()),
    }
}

fn step_bytes(step: &Step) -> usize {
    let action_bytes = |action: &Action| match action {
        Action::SetAttribute { key, value } => key.len() + value.len(),
        Action::RemoveAttribute(s) | Action::Log(s) | Action::ReleaseLease(s) => s.len(),
        Action::TakeSlotLocks(names) => names.iter().map(String::len).sum(),
        Action::RequestLease(r) => {
            r.key.len()
                + r.resource_type.len()
                + r.attributes
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        }
        Action::Exec(e) => {
            e.id.len()
                + e.lease_key.len()
                + e.argv.iter().map(String::len).sum::<usize>()
                + e.cwd.as_ref().map_or(0, String::len)
        }
        Action::SetUntil(_) => 8,
    };
    let outcome_bytes = match &step.outcome {
        Outcome::Fail(reason) => reason.len(),
        _ => 0,
    };
    step.actions.iter().map(action_bytes).sum::<usize>() + outcome_bytes
}

/// The first 80 characters of a guest-supplied string, for error messages.
fn clip(text: &str) -> String {
    crate::text::clip(text, 80)
}

/// Longest description paragraph.
const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Longest config schema.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// Checks what `describe` returned before it is stored or shown: name and type follow the key
/// syntax, the description is one bounded paragraph of plain text, the schema is a JSON Schema.
pub fn check_description(description: &crate::domain::Description) -> Result<(), String> {
    check_key("component name", &description.name)?;
    check_key("resource type", &description.resource_type)?;
    let text = &description.description;
    if text.len() > MAX_DESCRIPTION_BYTES || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!(
            "the description must be plain text of at most {MAX_DESCRIPTION_BYTES} bytes without \
             control characters; it has {} bytes: {:?}",
            text.len(),
            clip(text)
        ));
    }
    let schema = &description.config_schema;
    if schema.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "the config schema has {} bytes; the limit is {MAX_SCHEMA_BYTES}",
            schema.len()
        ));
    }
    let value: serde_json::Value = serde_json::from_str(schema)
        .map_err(|e| format!("the config schema is not JSON ({e}): {:?}", clip(schema)))?;
    jsonschema::meta::validate(&value)
        .map_err(|e| format!("the config schema is not a valid JSON Schema: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExecRequest, LeaseRequest};

    fn scope(subject: Subject, owned: &[&str]) -> Scope {
        Scope {
            subject,
            supporting_leases: owned.iter().map(|s| s.to_string()).collect(),
            now: 1_700_000_000_000,
            depth: 0,
        }
    }

    fn step(actions: Vec<Action>, outcome: Outcome) -> Step {
        Step { actions, outcome }
    }

    fn check(actions: Vec<Action>) -> Result<(), Violation> {
        validate(
            &step(actions, Outcome::Done),
            &scope(Subject::Resource, &["host"]),
            &Limits::default(),
        )
    }

    fn set(key: &str, value: &str) -> Action {
        Action::SetAttribute {
            key: key.into(),
            value: value.into(),
        }
    }

    fn exec(id: &str, lease: &str) -> Action {
        Action::Exec(ExecRequest {
            id: id.into(),
            lease_key: lease.into(),
            argv: vec!["git".into(), "status".into()],
            cwd: None,
            timeout_ms: 1000,
        })
    }

    #[test]
    fn accepts_a_well_formed_step() {
        let actions = vec![
            set("repo.url", "https://example.invalid/x.git"),
            Action::RemoveAttribute("old-key".into()),
            Action::Log("cloning".into()),
            Action::TakeSlotLocks(vec!["workingcopy.lease(R7)".into()]),
            Action::ReleaseLease("host".into()),
            Action::SetUntil(Some(5)),
        ];
        assert_eq!(check(actions), Ok(()));
    }

    #[test]
    fn attribute_keys_follow_the_syntax() {
        for bad in [
            "",
            "Upper",
            "1st",
            "has space",
            "x".repeat(65).as_str(),
            "ü",
        ] {
            let err = check(vec![set(bad, "v")]).unwrap_err();
            assert_eq!(err.at, Some(0));
            assert!(err.reason.contains("malformed"), "{err}");
        }
        check(vec![set(&"x".repeat(64), "v")]).unwrap();
    }

    #[test]
    fn huge_values_and_logs_are_refused() {
        let err = check(vec![
            Action::Log("ok".into()),
            set("k", &"v".repeat(16 * 1024 + 1)),
        ])
        .unwrap_err();
        assert_eq!(err.at, Some(1));
        assert!(
            err.to_string()
                .starts_with("action 1: attribute \"k\" has a 16385 byte value")
        );
        let err = check(vec![Action::Log("x".repeat(5000))]).unwrap_err();
        assert!(err.reason.contains("log line has 5000 bytes"));
    }

    #[test]
    fn action_floods_are_refused() {
        let err = check(vec![Action::Log("x".into()); 257]).unwrap_err();
        assert_eq!(err.at, None);
        assert!(err.reason.contains("257 actions"));
        let big = vec![set("k", &"v".repeat(16 * 1024)); 100];
        assert!(
            check(big)
                .unwrap_err()
                .reason
                .contains("bytes; the limit is 1048576")
        );
    }

    #[test]
    fn slot_locks_are_checked() {
        let lock = |names: &[&str]| {
            check(vec![Action::TakeSlotLocks(
                names.iter().map(|s| s.to_string()).collect(),
            )])
        };
        assert!(lock(&[]).is_err());
        assert!(lock(&["has space"]).is_err());
        assert!(
            lock(&["a", "a"])
                .unwrap_err()
                .reason
                .contains("named twice")
        );
        assert!(
            lock(&["allocator(B1).limit(0)"])
                .unwrap_err()
                .reason
                .contains("reserved")
        );
        assert!(lock(&["drydock.x"]).is_err());
        lock(&["host-pool.host(local-1)", "other"]).unwrap();
    }

    #[test]
    fn only_owned_supporting_leases_can_be_touched() {
        let err = check(vec![Action::ReleaseLease("L99".into())]).unwrap_err();
        assert!(
            err.reason.contains("\"L99\" is not a supporting lease"),
            "{err}"
        );
        let err = check(vec![exec("clone", "other")]).unwrap_err();
        assert!(err.reason.contains("not a supporting lease"));
    }

    #[test]
    fn supporting_leases_are_requested_by_resources_only_and_once() {
        let request = |key: &str| {
            Action::RequestLease(LeaseRequest {
                key: key.into(),
                resource_type: "host".into(),
                attributes: Attributes::new(),
            })
        };
        check(vec![request("build-host")]).unwrap();
        assert!(
            check(vec![request("host")])
                .unwrap_err()
                .reason
                .contains("already exists")
        );
        assert!(check(vec![request("a"), request("a")]).is_err());
        let on_lease = validate(
            &step(vec![request("a")], Outcome::Done),
            &scope(Subject::Lease, &[]),
            &Limits::default(),
        );
        assert!(on_lease.unwrap_err().reason.contains("only resource hooks"));
    }

    #[test]
    fn execs_need_a_yield_and_sane_arguments() {
        let s = scope(Subject::Resource, &["host"]);
        let limits = Limits::default();
        let err = validate(&step(vec![exec("a", "host")], Outcome::Done), &s, &limits).unwrap_err();
        assert!(err.reason.contains("must end in `yield`"));
        validate(
            &step(vec![exec("a", "host")], Outcome::Yield(0)),
            &s,
            &limits,
        )
        .unwrap();
        let twice = step(
            vec![exec("a", "host"), exec("a", "host")],
            Outcome::Yield(0),
        );
        assert!(
            validate(&twice, &s, &limits)
                .unwrap_err()
                .reason
                .contains("used twice")
        );
        let mut escaping = ExecRequest {
            id: "a".into(),
            lease_key: "host".into(),
            argv: vec!["ls".into()],
            cwd: Some("../etc".into()),
            timeout_ms: 10,
        };
        let run = |e: &ExecRequest| {
            validate(
                &step(vec![Action::Exec(e.clone())], Outcome::Yield(0)),
                &s,
                &limits,
            )
        };
        assert!(run(&escaping).unwrap_err().reason.contains("relative path"));
        escaping.cwd = None;
        escaping.argv.clear();
        assert!(
            run(&escaping)
                .unwrap_err()
                .reason
                .contains("1 to 256 arguments")
        );
    }

    #[test]
    fn supporting_leases_are_bounded_in_number_and_depth() {
        let request = |key: &str| {
            Action::RequestLease(LeaseRequest {
                key: key.into(),
                resource_type: "host".into(),
                attributes: Attributes::new(),
            })
        };
        let limits = Limits::default();
        let many: Vec<Action> = (0..8).map(|i| request(&format!("k{i}"))).collect();
        let err = check(many).unwrap_err();
        assert!(err.reason.contains("at most 8 supporting leases"), "{err}");
        assert!(err.growth, "past a bound on growth");
        let mut deep = scope(Subject::Resource, &[]);
        deep.depth = limits.max_depth;
        let err = validate(&step(vec![request("a")], Outcome::Done), &deep, &limits).unwrap_err();
        assert!(err.reason.contains("nest at most 4 deep"), "{err}");
        assert!(err.growth);
        deep.depth -= 1;
        validate(&step(vec![request("a")], Outcome::Done), &deep, &limits).unwrap();
    }

    #[test]
    fn descriptions_are_checked_before_they_are_stored() {
        use crate::domain::Description;
        let good = Description {
            name: "host-pool".into(),
            resource_type: "host".into(),
            description: "A pool.\nOf hosts.".into(),
            config_schema: r#"{"type": "object"}"#.into(),
        };
        check_description(&good).unwrap();
        let bad = |edit: fn(&mut Description)| {
            let mut d = good.clone();
            edit(&mut d);
            check_description(&d).unwrap_err()
        };
        assert!(bad(|d| d.resource_type = "host\x1b[31m".into()).contains("malformed"));
        assert!(bad(|d| d.name = "x".repeat(1 << 20)).contains("malformed"));
        assert!(bad(|d| d.description = "a\x1b[2Jb".into()).contains("control characters"));
        assert!(bad(|d| d.config_schema = "not json".into()).contains("not JSON"));
        assert!(
            bad(|d| d.config_schema = r#"{"type": 12}"#.into()).contains("not a valid JSON Schema")
        );
    }

    #[test]
    fn deadlines_are_in_range() {
        check(vec![Action::SetUntil(Some(1_700_000_000_000 + 3_600_000))]).unwrap();
        let err = check(vec![Action::SetUntil(Some(u64::MAX))]).unwrap_err();
        assert!(err.reason.contains("at most 10 years"), "{err}");
    }

    #[test]
    fn outcomes_are_bounded() {
        let s = scope(Subject::Lease, &[]);
        let limits = Limits::default();
        let long_yield = step(vec![], Outcome::Yield(limits.max_yield_ms + 1));
        assert!(validate(&long_yield, &s, &limits).is_err());
        let long_reason = step(vec![], Outcome::Fail("x".repeat(10_000)));
        assert!(
            validate(&long_reason, &s, &limits)
                .unwrap_err()
                .reason
                .contains("failure reason")
        );
    }
}
