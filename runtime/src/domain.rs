//! The host's own view of what a blueprint sees and returns.
//!
//! These types mirror the WIT contract but belong to the host: the `plugin` module converts the
//! generated bindings to and from them at the boundary, so the rest of the host (the action
//! validator, the test kit, the workers) never depends on a contract version.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch.
pub type Timestamp = u64;

/// Attributes of a resource or lease, kept sorted by key.
pub type Attributes = BTreeMap<String, String>;

/// Where a resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceStatus {
    /// Allocated, not yet usable.
    Pending,
    /// Usable: leases can be acquired on it.
    Active,
    /// Released; about to be destroyed.
    Released,
    /// Failed permanently; about to be destroyed.
    Broken,
    /// Gone.
    Destroyed,
}

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseStatus {
    /// Waiting for the allocator.
    Pending,
    /// Holds a resource, not yet active.
    Acquired,
    /// Usable by its holder.
    Active,
    /// Released; about to be destroyed.
    Released,
    /// Failed permanently; about to be destroyed.
    Broken,
    /// Gone.
    Destroyed,
}

/// Text forms of the status enums, as stored and as typed on the command line.
macro_rules! status_text {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// Every status, in the order of a life.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The lowercase name.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($ty::$variant),)*
                    other => Err(format!(
                        "{other:?} is not a status; use one of: {}",
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

status_text!(ResourceStatus {
    Pending => "pending",
    Active => "active",
    Released => "released",
    Broken => "broken",
    Destroyed => "destroyed",
});

status_text!(LeaseStatus {
    Pending => "pending",
    Acquired => "acquired",
    Active => "active",
    Released => "released",
    Broken => "broken",
    Destroyed => "destroyed",
});

impl ResourceStatus {
    /// Whether a release command can still change it (Drydock's "commandable").
    pub fn is_releasable(self) -> bool {
        matches!(self, ResourceStatus::Pending | ResourceStatus::Active)
    }
}

impl LeaseStatus {
    /// Whether a release command can still change it.
    pub fn is_releasable(self) -> bool {
        matches!(
            self,
            LeaseStatus::Pending | LeaseStatus::Acquired | LeaseStatus::Active
        )
    }
}

/// A read-only copy of a resource handed to a blueprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceSnapshot {
    /// Short id such as `R7`.
    pub id: String,
    /// The kind of resource, such as `host`.
    pub resource_type: String,
    /// Status when the snapshot was taken.
    pub status: ResourceStatus,
    /// Attributes set by its blueprint.
    pub attributes: Attributes,
    /// Deadline, if any.
    pub until: Option<Timestamp>,
}

/// A read-only copy of a lease handed to a blueprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseSnapshot {
    /// Short id such as `L12`.
    pub id: String,
    /// The type of resource asked for.
    pub resource_type: String,
    /// Status when the snapshot was taken.
    pub status: LeaseStatus,
    /// What the holder asked for, plus what blueprints set.
    pub attributes: Attributes,
    /// The resource held, once acquired.
    pub resource_id: Option<String>,
    /// Deadline, if any.
    pub until: Option<Timestamp>,
}

/// How the host reaches a resource to run commands on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CommandInterface {
    /// Local processes in a directory.
    Local {
        /// Absolute directory commands run in.
        root: String,
    },
    /// Commands over SSH.
    Ssh {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Remote user.
        user: String,
        /// Private key path on the Drydock machine.
        key_path: String,
        /// The remote directory commands start in (relative to the login directory unless
        /// absolute); the login directory if `None`.
        #[serde(skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
}

impl CommandInterface {
    /// `local` or `ssh`: how commands reach their host.
    pub fn kind(&self) -> &'static str {
        match self {
            CommandInterface::Local { .. } => "local",
            CommandInterface::Ssh { .. } => "ssh",
        }
    }
}

/// A lease owned by the resource under call.
#[derive(Debug, Clone, PartialEq)]
pub struct SupportingLease {
    /// The key the blueprint requested it under.
    pub key: String,
    /// The lease as it is now.
    pub lease: LeaseSnapshot,
    /// How to reach the leased resource once active, as checked against its blueprint's
    /// grants (the guest sees only the interface).
    pub interface: Option<crate::grant::Authorized>,
}

/// The result of an exec action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecResult {
    /// The id the blueprint gave the action.
    pub id: String,
    /// Exit code; `None` if the process could not start or was killed.
    pub exit_code: Option<i32>,
    /// Standard output, truncated.
    pub stdout: String,
    /// Standard error or the reason it could not run, truncated.
    pub stderr: String,
}

/// Everything one blueprint call may look at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallContext {
    /// The blueprint's configuration, as JSON text.
    pub config: String,
    /// The current time.
    pub now: Timestamp,
    /// The resource involved, if any.
    pub resource: Option<ResourceSnapshot>,
    /// The lease involved, if any.
    pub lease: Option<LeaseSnapshot>,
    /// Leases the resource under call owns.
    pub supporting_leases: Vec<SupportingLease>,
    /// Results of exec actions asked for earlier in this phase.
    pub exec_results: Vec<ExecResult>,
    /// The blueprint's resources that are not destroyed.
    pub blueprint_resources: Vec<ResourceSnapshot>,
    /// How deep the object under call sits in a chain of supporting leases. Host-only: it
    /// bounds `request-lease` and is not shown to the guest.
    pub depth: u32,
}

/// A supporting lease a resource asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRequest {
    /// Unique name among the resource's supporting leases.
    pub key: String,
    /// Wanted resource type.
    pub resource_type: String,
    /// What is asked of the resource.
    pub attributes: Attributes,
}

/// A command to run through a supporting lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecRequest {
    /// Name of the result, unique within the phase.
    pub id: String,
    /// Key of the supporting lease to run through.
    pub lease_key: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory relative to the interface root.
    pub cwd: Option<String>,
    /// Time limit in milliseconds.
    pub timeout_ms: u32,
}

/// One change a blueprint asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Set an attribute on the object under call.
    SetAttribute {
        /// Attribute key.
        key: String,
        /// Attribute value.
        value: String,
    },
    /// Remove an attribute from the object under call.
    RemoveAttribute(String),
    /// A line for the object's log.
    Log(String),
    /// Slot locks to take for the object, all or none.
    TakeSlotLocks(Vec<String>),
    /// A supporting lease to request.
    RequestLease(LeaseRequest),
    /// A supporting lease to release, by key.
    ReleaseLease(String),
    /// A command to run through a supporting lease.
    Exec(ExecRequest),
    /// New deadline, or none.
    SetUntil(Option<Timestamp>),
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The phase is complete.
    Done,
    /// Call again after this many milliseconds.
    Yield(u32),
    /// Permanent failure.
    Fail(String),
}

/// What a hook returns: actions in order, then an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Changes to apply, all or nothing.
    pub actions: Vec<Action>,
    /// What happens next.
    pub outcome: Outcome,
}

impl Step {
    /// The exec actions of the step, in order.
    pub fn execs(&self) -> Vec<ExecRequest> {
        self.actions
            .iter()
            .filter_map(|action| match action {
                Action::Exec(exec) => Some(exec.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Whether a blueprint could make a resource now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocationVerdict {
    /// Never for this lease.
    Never,
    /// Not at the moment.
    NotNow,
    /// Yes.
    Yes,
}

/// What a component says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Description {
    /// Component name.
    pub name: String,
    /// Resource type it makes.
    pub resource_type: String,
    /// One paragraph for operators.
    pub description: String,
    /// JSON Schema of the configuration, as text.
    pub config_schema: String,
}

/// How far ahead a deadline (`until`, `set-until`) may be: ten years. One range for the CLI,
/// the API and blueprints, so every stored deadline is a time people can read and the queue can
/// order.
pub const MAX_DEADLINE_AHEAD: std::time::Duration =
    std::time::Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Checks an absolute deadline against the range: at most [`MAX_DEADLINE_AHEAD`] after `now`
/// (a deadline already past is due at once).
pub fn check_deadline(until: Timestamp, now: Timestamp) -> Result<(), String> {
    let latest = now.saturating_add(MAX_DEADLINE_AHEAD.as_millis() as u64);
    if until > latest {
        return Err(format!(
            "deadline {until} ms is past the allowed range: at most 10 years (3650d) from now \
             (until {})",
            format_time(latest)
        ));
    }
    Ok(())
}

/// Checks a relative deadline (`--until 2h`) against the range and turns it into a time.
pub fn deadline_after(now: Timestamp, after: std::time::Duration) -> Result<Timestamp, String> {
    if after > MAX_DEADLINE_AHEAD {
        return Err(format!(
            "until {} is past the allowed range: at most 10 years (3650d)",
            humantime::format_duration(after)
        ));
    }
    Ok(now + after.as_millis() as u64)
}

/// The latest time [`format_time`] writes as a date (the end of year 9999).
const LATEST_FORMATTED: Timestamp = 253_402_300_799_999;

/// A time as RFC 3339 in UTC, to the millisecond, for people. Never panics: a time past year
/// 9999 (which no checked deadline reaches) is written as milliseconds.
pub fn format_time(ms: Timestamp) -> String {
    if ms > LATEST_FORMATTED {
        return format!("{ms} ms after the Unix epoch");
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_without_panicking() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(LATEST_FORMATTED), "9999-12-31T23:59:59.999Z");
        assert!(format_time(u64::MAX).contains("ms after the Unix epoch"));
    }

    #[test]
    fn deadlines_stay_in_range() {
        let now = 1_700_000_000_000;
        assert!(check_deadline(now + 1000, now).is_ok());
        assert!(check_deadline(0, now).is_ok());
        let err = check_deadline(u64::MAX, now).unwrap_err();
        assert!(err.contains("at most 10 years"), "{err}");
        assert!(deadline_after(now, MAX_DEADLINE_AHEAD).is_ok());
        let err = deadline_after(now, std::time::Duration::from_secs(u64::MAX)).unwrap_err();
        assert!(err.contains("at most 10 years"), "{err}");
    }
}
