//! Persistence: every table, every query, one transaction per state change.
//!
//! [`Store`] is the only way the rest of the host reads or writes the database. It speaks in
//! domain records ([`Lease`], [`Resource`], [`Command`]…); row types never leave this module.
//! Worker writes go through [`Store::apply`], which runs a [`Plan`] of writes in one transaction
//! that starts with the fencing guard on the caller's [`Claim`] (invariant I1): if the claim was
//! lost or expired, nothing is written and [`Error::Fenced`] comes back.
//!
//! The queue primitives (`work_item_*`) implement one row per object that is at once queue entry,
//! coalescing flag and lock; `queue` and `lock` build on them.
//!
//! [`sqlite::SqliteStore`] is the embedded default; [`postgres::PgStore`] serves several daemons
//! on several hosts. [`testing::exercise`] is the conformance suite every backend must pass.
//! Both tell other processes when something became due ([`Store::listen`]): the poll is only
//! the backstop.

mod apply;
mod clock;
mod conn;
mod ids;
mod plan;
pub mod postgres;
mod queries;
mod retention;
mod rows;
mod schema;
pub mod sqlite;
pub mod testing;

pub use clock::{ClaimTime, Clock, ManualClock, ShiftedClock, SystemClock, boot_id, boottime_ms};
pub use ids::{ObjectId, ParseIdError};
pub use plan::{Plan, Target, Write};

use crate::domain::{Attributes, ExecResult, LeaseStatus, ResourceStatus, Timestamp};
use crate::grant::{Grant, GrantChange};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What can go wrong in the store. Callers branch on these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such object.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A uniqueness rule was broken, such as a blueprint name already taken.
    #[error("{0}")]
    Conflict(String),
    /// A blueprint update was prepared from a version that another update replaced meanwhile:
    /// applying it would undo that update's change, so nothing was written.
    #[error(
        "{blueprint} is at version {current} now: another update replaced version {from}, which \
         this update was prepared from; nothing was changed"
    )]
    Superseded {
        /// The blueprint.
        blueprint: ObjectId,
        /// The version the update was prepared from.
        from: i64,
        /// The version it found.
        current: i64,
    },
    /// The object cannot take this command in its current state.
    #[error("{0}")]
    NotReleasable(String),
    /// The caller's claim was lost or expired: someone else is the writer now.
    #[error("the claim on {object} (token {token}) is no longer held")]
    Fenced {
        /// The object.
        object: ObjectId,
        /// The stale token.
        token: i64,
    },
    /// A slot lock is held by another object: a temporary failure.
    #[error("slot lock {name:?} is held by {holder}")]
    SlotLockBusy {
        /// The lock.
        name: String,
        /// Its holder.
        holder: String,
    },
    /// A precondition of a plan no longer holds (for example the resource was released).
    #[error("{0}")]
    Precondition(String),
    /// A blueprint is at one of its limits (`crate::limits`): a wait, or a refused request,
    /// never a failure of what asked.
    #[error("{reason}")]
    Limited {
        /// The blueprint's name.
        blueprint: String,
        /// Which limit.
        limit: crate::limits::Limit,
        /// Why, for people: what is at its limit and how to raise it.
        reason: String,
        /// When the request could go, for a rate (ms).
        retry_at: Option<Timestamp>,
    },
    /// The PostgreSQL database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite database failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored JSON could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database's schema is newer than this build knows.
    #[error("{0}")]
    SchemaTooNew(String),
    /// The database's schema is older than this build's (or not there at all), and opening it
    /// was not allowed to upgrade it ([`Access`]).
    #[error("{0}")]
    SchemaTooOld(String),
    /// No database file at the path (a mistyped path, a command run in another directory):
    /// only the operator's setup commands create one.
    #[error(
        "no Drydock database at {0}; nothing was created (only `drydock serve`, `drydock \
         migrate` and `drydock blueprint add` create one): run this where the daemon's database \
         is, or name it with --database or DRYDOCK_DATABASE_URL"
    )]
    NoDatabase(String),
    /// The database server could not be reached: refused, no such host, no answer in time.
    #[error("cannot reach the database at {address}: {reason}")]
    Unreachable {
        /// `host:port`, or the Unix socket's path.
        address: String,
        /// Why, in the system's words.
        reason: String,
    },
    /// The shared transaction of a group commit failed: none of its plans was written.
    #[error("the group commit's transaction failed: {message}")]
    BatchFailed {
        /// The transaction's error.
        message: String,
        /// Whether the database could not be reached.
        unreachable: bool,
    },
}

impl Error {
    /// Whether the plan was refused on what it asked for (a busy slot lock, a precondition
    /// that no longer holds, a rate limit, a conflict), rather than failing to be written.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::SlotLockBusy { .. }
                | Error::Precondition(_)
                | Error::Limited { .. }
                | Error::Conflict(_)
                | Error::Superseded { .. }
                | Error::NotReleasable(_)
        )
    }

    /// Whether the database could not be reached or went away (refused, reset, a socket not
    /// there yet, a server shutting down or starting up): waiting may fix it, unlike a bad URL
    /// or a refused schema.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            Error::Unreachable { .. } => true,
            Error::BatchFailed { unreachable, .. } => *unreachable,
            // SQLSTATE classes 08 (connection exception) and 57P (operator intervention:
            // shutdown, crash, cannot connect now).
            Error::Database(sqlx::Error::Database(error)) => error
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }
}

/// Store results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A registered blueprint: a component plus a validated config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blueprint {
    /// `B<n>`.
    pub id: ObjectId,
    /// Unique name chosen by the operator.
    pub name: String,
    /// SHA-256 of the component.
    pub component: String,
    /// The component's own name (from `describe`).
    pub component_name: String,
    /// The resource type it makes.
    pub resource_type: String,
    /// JSON config.
    pub config: String,
    /// Whether the allocator may use it.
    pub enabled: bool,
    /// What the operator allows its command interfaces to reach.
    pub grants: Vec<Grant>,
    /// 1 when added, one more at each `blueprint update`: what an update is prepared from.
    pub version: i64,
    /// Allocations and activations that failed in a row.
    pub failures: i64,
    /// While backing off after failures: when the allocator may use it again.
    pub retry_at: Option<Timestamp>,
    /// The last failure, while it is failing.
    pub last_failure: Option<String>,
    /// The operator's overrides of its limits (`crate::limits`); the rest have their defaults.
    pub limits: crate::limits::Limits,
    /// Bytes of its steps' log kept now (counted against `log-total`).
    pub log_bytes: i64,
    /// Bytes of its steps kept in the audit trail now (counted against `step-history`).
    pub step_bytes: i64,
    /// When it was added.
    pub created_at: Timestamp,
}

/// What an operator does to a blueprint's state ([`Store::blueprint_switch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlueprintSwitch {
    /// The allocator may use it again, at once: its back-off is cleared too.
    Enable,
    /// The allocator leaves it alone; its resources and leases stay.
    Disable,
    /// Its failure streak and back-off are cleared, so it is tried at once.
    Reset,
}

impl BlueprintSwitch {
    /// Whether it is enabled afterwards, or as before (`None`).
    pub fn enabled(self) -> Option<bool> {
        match self {
            BlueprintSwitch::Enable => Some(true),
            BlueprintSwitch::Disable => Some(false),
            BlueprintSwitch::Reset => None,
        }
    }

    /// Whether it clears the failure streak and back-off.
    pub fn clears_back_off(self) -> bool {
        self != BlueprintSwitch::Disable
    }

    /// The kind of its log entry on the blueprint.
    pub fn log_kind(self) -> &'static str {
        match self {
            BlueprintSwitch::Enable => "blueprint.enabled",
            BlueprintSwitch::Disable => "blueprint.disabled",
            BlueprintSwitch::Reset => "blueprint.reset",
        }
    }

    /// Its log entry, for a blueprint that was `before`: what was cleared, if anything.
    pub fn message(self, before: &Blueprint) -> String {
        let what = match self {
            BlueprintSwitch::Enable => "enabled",
            BlueprintSwitch::Disable => return "disabled".into(),
            BlueprintSwitch::Reset => "reset",
        };
        match (&before.last_failure, before.failures) {
            (Some(last), failures) if failures > 0 => {
                let plural = if failures == 1 { "" } else { "s" };
                format!(
                    "{what}: cleared the back-off after {failures} failure{plural} in a row; \
                     the last: {last}"
                )
            }
            _ => format!("{what}: it had no failures to clear"),
        }
    }
}

/// Failures in a row after which a blueprint is shown as failing.
pub const FAILING_AFTER: i64 = 3;

impl Blueprint {
    /// Whether its allocations or activations keep failing.
    pub fn is_failing(&self) -> bool {
        self.failures >= FAILING_AFTER
    }

    /// Whether the allocator must leave it alone until `retry_at`.
    pub fn is_backing_off(&self, now: Timestamp) -> bool {
        self.retry_at.is_some_and(|at| at > now)
    }
}

/// What `blueprint add` records.
#[derive(Debug, Clone)]
pub struct NewBlueprint {
    /// Unique name.
    pub name: String,
    /// The wasm bytes.
    pub wasm: Vec<u8>,
    /// Their SHA-256.
    pub digest: String,
    /// The component's own name.
    pub component_name: String,
    /// The resource type.
    pub resource_type: String,
    /// Validated JSON config.
    pub config: String,
    /// What its command interfaces may reach.
    pub grants: Vec<Grant>,
}

/// A new component and config for a registered blueprint (`blueprint update`), prepared from
/// one of its versions: whichever of the two it does not change is that version's, and the
/// config was validated against the component.
#[derive(Debug, Clone)]
pub struct BlueprintUpdate {
    /// The version it was prepared from: if the blueprint is at another one by the time the
    /// update is written, the update is refused ([`Error::Superseded`]) rather than written over
    /// a change it never saw.
    pub from_version: i64,
    /// The new component's bytes, when the component changes.
    pub wasm: Option<Vec<u8>>,
    /// SHA-256 of the component it uses from now on.
    pub digest: String,
    /// That component's own name.
    pub component_name: String,
    /// The validated JSON config it uses from now on.
    pub config: String,
}

/// A resource row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// `R<n>`.
    pub id: ObjectId,
    /// The blueprint that made it.
    pub blueprint_id: ObjectId,
    /// Its type.
    pub resource_type: String,
    /// Its status.
    pub status: ResourceStatus,
    /// Attributes set by its blueprint.
    pub attributes: Attributes,
    /// Deadline.
    pub until: Option<Timestamp>,
    /// How deep it sits in a chain of supporting leases (that of the lease it was made for).
    pub depth: u32,
    /// The lease it was made for, if it was made after fair share came in (migration 0009);
    /// that lease may hold another resource by now, or be gone.
    #[serde(skip)]
    pub made_for_lease: Option<ObjectId>,
    /// Supporting leases it has requested, destroyed ones included: with none, there are none
    /// to look up for its snapshots.
    #[serde(skip)]
    pub supporting: u32,
    /// How it ended, once it stopped being live.
    pub end: Option<End>,
    /// Results of exec actions in the current phase.
    #[serde(skip)]
    pub exec_results: Vec<ExecResult>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A lease row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// `L<n>`.
    pub id: ObjectId,
    /// The type of resource asked for.
    pub resource_type: String,
    /// Its status.
    pub status: LeaseStatus,
    /// Asked-for attributes plus those blueprints set.
    pub attributes: Attributes,
    /// Blueprints it may use; empty means any.
    pub allowed_blueprints: Vec<ObjectId>,
    /// Who asked for it.
    pub owner: String,
    /// The resource it holds.
    pub resource_id: Option<ObjectId>,
    /// The resource that owns it, for a supporting lease.
    pub parent_resource_id: Option<ObjectId>,
    /// The key it was requested under, for a supporting lease.
    pub parent_key: Option<String>,
    /// Deadline.
    pub until: Option<Timestamp>,
    /// How deep it sits in a chain of supporting leases: 0 for a lease a user asked for.
    pub depth: u32,
    /// While pending: the resource its unfinished acquisition (a yield, exec rounds) is about.
    pub acquiring: Option<ObjectId>,
    /// How it ended, once it stopped being live.
    pub end: Option<End>,
    /// Results of exec actions in the current phase.
    #[serde(skip)]
    pub exec_results: Vec<ExecResult>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// How a lease or resource stopped being live: kept on it, so that a failure stays visible
/// after the object is destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Released, broken or expired.
    pub kind: EndKind,
    /// Who released it, or why it broke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// The ways an object ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndKind {
    /// Someone (a user, a parent resource, a reclaim) released it.
    Released,
    /// It failed: a blueprint failed, trapped or gave up, or nothing could make it.
    Broken,
    /// It reached its deadline.
    Expired,
}

impl EndKind {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndKind::Released => "released",
            EndKind::Broken => "broken",
            EndKind::Expired => "expired",
        }
    }

    /// The kind named `text`, as stored.
    pub fn parse(text: &str) -> Option<Self> {
        [EndKind::Released, EndKind::Broken, EndKind::Expired]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl End {
    /// The end a release command by `author` gives: `expiry` is the deadline's own.
    pub fn released_by(author: &str) -> (EndKind, Option<String>) {
        match author {
            EXPIRY_AUTHOR => (EndKind::Expired, None),
            author => (EndKind::Released, Some(author.to_string())),
        }
    }

    /// Whether it failed.
    pub fn is_failure(&self) -> bool {
        self.kind == EndKind::Broken
    }
}

impl std::fmt::Display for End {
    /// `released by cli:alice`, `broken: <reason>`, `expired`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, &self.detail) {
            (EndKind::Released, Some(by)) => write!(f, "released by {by}"),
            (EndKind::Broken, Some(why)) => write!(f, "broken: {why}"),
            (kind, _) => f.write_str(kind.as_str()),
        }
    }
}

/// The author of the release an object's deadline posts.
pub const EXPIRY_AUTHOR: &str = "expiry";

/// Which leases or resources a list shows, and which page of them: newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this status (validated by the caller against the object's statuses).
    pub status: Option<String>,
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only those of this blueprint (a lease's: its resource's).
    pub blueprint: Option<ObjectId>,
    /// Only leases of this owner.
    pub owner: Option<String>,
    /// Only those that ended broken.
    pub failed: bool,
    /// The cursor: only objects numbered below this.
    pub before: Option<i64>,
    /// The most a page holds, 1 to [`ListQuery::MAX_LIMIT`].
    pub limit: u32,
}

impl ListQuery {
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The largest page.
    pub const MAX_LIMIT: u32 = 1000;
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            status: None,
            resource_type: None,
            blueprint: None,
            owner: None,
            failed: false,
            before: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

/// One page of a list, and the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The objects, newest first.
    pub items: Vec<T>,
    /// Pass as [`ListQuery::before`] for the next page.
    pub next: Option<i64>,
}

/// How many objects stand where, for the console and `/metrics`: one cheap read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `(resource type, status, count)` of leases.
    pub leases: Vec<(String, String, i64)>,
    /// `(resource type, status, count)` of resources.
    pub resources: Vec<(String, String, i64)>,
    /// Leases that broke in the last hour and the last day.
    pub leases_failed: (i64, i64),
    /// Resources that broke in the last hour and the last day.
    pub resources_failed: (i64, i64),
    /// Work items due and not claimed.
    pub due: i64,
    /// Work items claimed.
    pub claimed: i64,
    /// When the longest-waiting due item became due.
    pub oldest_due: Option<Timestamp>,
    /// `(blueprint, log bytes, step-history bytes)` each blueprint has kept, against its
    /// quotas.
    pub kept: Vec<(String, i64, i64)>,
}

/// One step a blueprint returned, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Sequence number (0 until stored).
    pub id: i64,
    /// The object the step was about.
    pub object: ObjectId,
    /// The blueprint whose component returned it.
    pub blueprint: ObjectId,
    /// The hook called.
    pub hook: String,
    /// The step as the host read it (actions and outcome), as JSON; `None` when the call
    /// returned no step (a trap, a deadline, an invalid step).
    pub step: Option<String>,
    /// `applied`, `refused: <why>` or `failed: <why>`.
    pub verdict: String,
    /// How long the call took, in microseconds.
    pub duration_us: i64,
    /// When.
    #[serde(rename = "time")]
    pub created_at: Timestamp,
}

/// What `lease request` records.
#[derive(Debug, Clone, Default)]
pub struct NewLease {
    /// Wanted resource type.
    pub resource_type: String,
    /// Wanted attributes.
    pub attributes: Attributes,
    /// Allowed blueprints; empty means any.
    pub allowed_blueprints: Vec<ObjectId>,
    /// Who asks.
    pub owner: String,
    /// Deadline.
    pub until: Option<Timestamp>,
    /// The most leases of this type the owner may have waiting, and whose limit that is
    /// (`pending-per-owner`); `None`: no limit.
    pub waiting_limit: Option<(u64, String)>,
}

/// What a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandKind {
    /// Release a lease or a resource.
    Release,
    /// Release an idle resource to make room.
    Reclaim,
}

impl CommandKind {
    /// The stored and displayed name: `release`, `reclaim`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Release => "release",
            CommandKind::Reclaim => "reclaim",
        }
    }

    /// The kind named `text`, as stored.
    pub fn parse(text: &str) -> Option<Self> {
        [CommandKind::Release, CommandKind::Reclaim]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// Bytes of log and step history a blueprint keeps (`crate::quota` meters them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    /// Log bytes.
    pub log: i64,
    /// Step-history bytes.
    pub steps: i64,
}

impl std::ops::AddAssign for Kept {
    fn add_assign(&mut self, other: Kept) {
        self.log += other.log;
        self.steps += other.steps;
    }
}

/// A queued or consumed command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Sequence number.
    pub id: i64,
    /// The object it is for.
    pub target: ObjectId,
    /// What it asks.
    pub kind: CommandKind,
    /// Who sent it.
    pub author: String,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it was consumed; `None` while queued.
    pub consumed_at: Option<Timestamp>,
    /// `applied` or `ignored: <reason>`, once consumed.
    pub outcome: Option<String>,
}

/// A log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Sequence number.
    pub id: i64,
    /// The object it is about.
    pub object: ObjectId,
    /// Typed kind, such as `lease.released`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human text.
    pub message: String,
    /// When.
    #[serde(rename = "time")]
    pub created_at: Timestamp,
}

/// A daemon serving the database, as its row in the registry says ([`Store::daemon_seen`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonRecord {
    /// Its name in claims (host and process id by default).
    pub name: String,
    /// Its version of Drydock.
    pub version: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it was last seen running.
    pub seen_at: Timestamp,
}

impl DaemonRecord {
    /// Whether it serves at `now`: seen in the last [`DAEMON_SILENT_AFTER`].
    pub fn is_serving(&self, now: Timestamp) -> bool {
        self.seen_at >= now.saturating_sub(DAEMON_SILENT_AFTER.as_millis() as u64)
    }

    /// How many of `daemons` serve at `now`.
    pub fn serving(daemons: &[DaemonRecord], now: Timestamp) -> usize {
        daemons.iter().filter(|d| d.is_serving(now)).count()
    }
}

/// A daemon not seen for this long has stopped (it refreshes its row every
/// `daemon::SEEN_EVERY`).
pub const DAEMON_SILENT_AFTER: Duration = Duration::from_secs(15);

/// An API token as the store keeps it: never its secret (see [`crate::access`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    /// Sequence number.
    pub id: i64,
    /// Its name: the owner of the leases it requests.
    pub name: String,
    /// What it may do.
    pub role: crate::access::Role,
    /// The resource types it may lease; `None` for any.
    pub resource_types: Option<Vec<String>>,
    /// When it stops working, if it does.
    pub expires_at: Option<Timestamp>,
    /// Who made it.
    pub created_by: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

impl Token {
    /// Who the token speaks for, if it works at `now` (neither revoked nor expired).
    pub fn principal(&self, now: Timestamp) -> Option<crate::access::Principal> {
        let live = self.revoked_at.is_none() && crate::access::unexpired(self.expires_at, now);
        live.then(|| crate::access::Principal {
            name: self.name.clone(),
            role: self.role,
            resource_types: self.resource_types.clone(),
        })
    }
}

/// A web session to store ([`Store::session_insert`]): hashes only, none of which signs
/// anyone in (`crate::web::session`).
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The SHA-256 of the session cookie's secret.
    pub id_hash: String,
    /// The SHA-256 of the token signed in with, masked by a pad made from the cookie's secret.
    pub token_sealed: String,
    /// The database's token signed in with, if it is one: revoking it ends the session.
    pub token_id: Option<i64>,
    /// When the session ends.
    pub expires_at: Timestamp,
}

/// A token to store ([`Store::token_insert`]).
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its name, unique among the tokens not revoked.
    pub name: String,
    /// What it may do.
    pub role: crate::access::Role,
    /// The SHA-256 of its secret ([`crate::access::secret_hash`]).
    pub secret_hash: String,
    /// The resource types it may lease; `None` for any.
    pub resource_types: Option<Vec<String>>,
    /// When it stops working, if it does.
    pub expires_at: Option<Timestamp>,
    /// Who made it.
    pub created_by: String,
}

/// A held slot lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotLock {
    /// Lock name.
    pub name: String,
    /// Holder.
    pub owner: ObjectId,
    /// Since when.
    pub created_at: Timestamp,
}

/// A worker's claim on an object: whoever holds the current token is its only writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The object.
    pub object: ObjectId,
    /// Whose work it is (`scheduler`): a blueprint (`B3`) or an owner (`owner:cli:alice`).
    pub tenant: String,
    /// The worker.
    pub owner: String,
    /// Fencing token.
    pub token: i64,
    /// Failed runs in a row before this claim.
    pub attempts: i64,
    /// Boot-clock milliseconds (on this host) until which the claim is surely held: its
    /// time-to-live counted from before the claim's transaction began.
    pub held_until: i64,
    /// Whether it was taken over from a worker whose claim had expired (a crashed or stalled
    /// daemon's), for the metrics.
    pub taken_over: bool,
}

/// What a committed plan did, returned for the caller to count: the store records nothing
/// itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Objects the plan inserted, in order.
    pub inserted: Vec<ObjectId>,
    /// Commands it consumed: their kind, and whether they were applied.
    pub consumed: Vec<(CommandKind, bool)>,
}

/// Where an object stands in the work queue: what operators look at when it seems stuck.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkItem {
    /// The object.
    pub object: ObjectId,
    /// When it is next due, if anything is due.
    pub wake_at: Option<Timestamp>,
    /// The worker holding its claim, while one does.
    pub owner: Option<String>,
    /// The latest fencing token handed out.
    pub token: i64,
    /// When the current claim expires, while claimed.
    pub claim_until: Option<Timestamp>,
    /// How many runs in a row failed.
    pub attempts: i64,
    /// The error of the last failed run.
    pub last_error: Option<String>,
}

impl std::fmt::Display for WorkItem {
    /// One line: who works on the object or when it is due, then its last failure, if any.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let time = crate::domain::format_time;
        match (&self.owner, self.claim_until, self.wake_at) {
            (Some(owner), Some(until), _) => write!(f, "claimed by {owner} until {}", time(until))?,
            (Some(owner), None, _) => write!(f, "claimed by {owner}")?,
            (None, _, Some(at)) => write!(f, "due {}", time(at))?,
            (None, _, None) => f.write_str("idle")?,
        }
        if let Some(error) = &self.last_error {
            write!(f, "; {} failed run(s), the last: {error}", self.attempts)?;
        }
        Ok(())
    }
}

/// What a finished run tells the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// When the object wants to run again (a yield, a deadline), if ever.
    pub wake_at: Option<Timestamp>,
    /// Why the run stopped short, if it did; `None` resets the attempt counter.
    pub error: Option<String>,
    /// Whether that counts as a failed attempt (a busy lock or a busy blueprint does not).
    pub failed: bool,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Log entries of the removed objects.
    pub logs: u64,
    /// Audit-trail steps of the removed objects.
    pub steps: u64,
    /// Commands of the removed objects.
    pub commands: u64,
    /// Destroyed leases.
    pub leases: u64,
    /// Destroyed resources (their work items go with them).
    pub resources: u64,
}

/// Filters for listing commands.
#[derive(Debug, Clone, Default)]
pub struct CommandFilter {
    /// Only this object's.
    pub target: Option<ObjectId>,
    /// Only unconsumed ones.
    pub pending: bool,
}

/// The database. One implementation per backend; all pass [`testing::exercise`]. A backend
/// implements the methods whose logic is its own (claims, plans, listening); the rest are
/// written once here, over the reads and write transactions it provides.
#[async_trait::async_trait]
pub trait Store: conn::Backend + Send + Sync + 'static {
    /// The store's clock.
    fn now(&self) -> Timestamp;

    /// Records a component and a blueprint using it, in one transaction.
    async fn blueprint_insert(&self, new: NewBlueprint) -> Result<Blueprint> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::blueprint::insert(&mut *tx, &new, now).await;
        conn::finish(tx, result).await
    }

    /// A blueprint by id.
    async fn blueprint_get(&self, id: ObjectId) -> Result<Blueprint> {
        queries::blueprint::get(&mut *self.reader(), id).await
    }

    /// A blueprint by name.
    async fn blueprint_by_name(&self, name: &str) -> Result<Blueprint> {
        queries::blueprint::by_name(&mut *self.reader(), name).await
    }

    /// All blueprints, by id.
    async fn blueprint_list(&self) -> Result<Vec<Blueprint>> {
        queries::blueprint::list(&mut *self.reader()).await
    }

    /// Enables, disables or resets a blueprint and logs it; enabling and resetting also clear
    /// its failure streak and back-off and wake the leases waiting for its type: one
    /// transaction.
    async fn blueprint_switch(&self, id: ObjectId, switch: BlueprintSwitch) -> Result<Blueprint> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::blueprint::switch(&mut *tx, id, switch, now).await;
        let done = conn::finish(tx, result).await?;
        self.announce();
        Ok(done)
    }

    /// Switches a blueprint to another component and config (its resource type stays) as its
    /// next version, clears its failure streak and wakes the leases waiting for its type, so
    /// the change is tried at once, and logs who changed what: one transaction, which reads the
    /// blueprint locked and refuses ([`Error::Superseded`]) an update prepared from an earlier
    /// version. Calls that start afterwards use the new component and config.
    async fn blueprint_update(
        &self,
        id: ObjectId,
        update: BlueprintUpdate,
        author: &str,
    ) -> Result<Blueprint> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::blueprint::update(&mut *tx, id, &update, author, now).await;
        let done = conn::finish(tx, result).await?;
        self.announce();
        Ok(done)
    }

    /// Changes a blueprint's grants, logging who changed them from what. The change is applied
    /// to the grants read in the same transaction (the row locked), so concurrent changes all
    /// land; revoking a grant the blueprint does not hold is refused
    /// ([`Error::Precondition`]) and changes nothing.
    async fn blueprint_change_grants(
        &self,
        id: ObjectId,
        change: &GrantChange,
        author: &str,
    ) -> Result<Blueprint> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::blueprint::change_grants(&mut *tx, id, change, author, now).await;
        conn::finish(tx, result).await
    }

    /// Changes a blueprint's limits (the operator's overrides; `crate::limits`), logging who
    /// changed them from what, fills its buckets again and wakes the leases waiting for its
    /// type (a raised limit may serve them): one transaction, the changes applied to the limits read locked, so
    /// concurrent changes all land.
    async fn blueprint_change_limits(
        &self,
        id: ObjectId,
        changes: &[crate::limits::Change],
        author: &str,
    ) -> Result<Blueprint> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::blueprint::change_limits(&mut *tx, id, changes, author, now).await;
        let done = conn::finish(tx, result).await?;
        self.announce();
        Ok(done)
    }

    /// Adds what a daemon's workers kept of blueprints' log and step history since it last
    /// did (`quota::Meters::unsettled`) to their totals: one transaction.
    async fn blueprint_add_kept(&self, kept: &[(ObjectId, Kept)]) -> Result<()> {
        let mut tx = self.transaction().await?;
        let result = queries::blueprint::add_kept(&mut *tx, kept).await;
        conn::finish(tx, result).await
    }

    /// The wasm bytes of a component.
    async fn component_get(&self, digest: &str) -> Result<Vec<u8>> {
        queries::component::get(&mut *self.reader(), digest).await
    }

    /// The installation's secret: 32 random bytes the daemon mixes into every blueprint call's
    /// random seed (`plugin::SeedSecret`). Read if it exists; otherwise made and stored in one
    /// transaction that keeps whichever one a racing process stored first, so every later call
    /// and every other handle on the database gets the same. Making it writes, so a store
    /// opened for reading ([`Access::Read`]) fails where none exists yet, and creates nothing.
    /// Never shown: no API, page or log prints it.
    async fn installation_secret(&self) -> Result<[u8; 32]> {
        use queries::installation::{SEED_SECRET_KEY, get, get_or_insert, secret_bytes};
        if let Some(stored) = get(&mut *self.reader(), SEED_SECRET_KEY).await? {
            return secret_bytes(&stored);
        }
        let fresh: [u8; 32] = rand::random();
        let mut tx = self.transaction().await?;
        let stored = get_or_insert(&mut *tx, SEED_SECRET_KEY, &fresh).await;
        secret_bytes(&conn::finish(tx, stored).await?)
    }

    /// How `blueprint`'s resources stand for `tenant`, who would have it make one more
    /// (`limits::room`): read outside any transaction, so the allocator can spare a call of
    /// `allocate-resource` that the inserting transaction would refuse anyway.
    async fn resource_setup(
        &self,
        blueprint: ObjectId,
        tenant: &str,
    ) -> Result<crate::limits::Setup> {
        queries::resource::setup(&mut *self.reader(), blueprint, tenant).await
    }

    /// A resource by id.
    async fn resource_get(&self, id: ObjectId) -> Result<Resource> {
        queries::resource::get(&mut *self.reader(), id).await
    }

    /// Resources, optionally of one status, by id.
    async fn resource_list(&self, status: Option<ResourceStatus>) -> Result<Vec<Resource>> {
        queries::resource::list(&mut *self.reader(), status).await
    }

    /// Live (not destroyed) resources of these blueprints.
    async fn resource_live_of_blueprints(&self, blueprints: &[ObjectId]) -> Result<Vec<Resource>> {
        queries::resource::live_of_blueprints(&mut *self.reader(), blueprints).await
    }

    /// A lease by id.
    async fn lease_get(&self, id: ObjectId) -> Result<Lease> {
        queries::lease::get(&mut *self.reader(), id).await
    }

    /// A lease and its queued commands, oldest first, read together: what a worker's step
    /// starts from.
    async fn lease_with_commands(&self, id: ObjectId) -> Result<(Lease, Vec<Command>)> {
        queries::lease::with_commands(&mut *self.reader(), id).await
    }

    /// Leases, optionally of one status, by id.
    async fn lease_list(&self, status: Option<LeaseStatus>) -> Result<Vec<Lease>> {
        queries::lease::list(&mut *self.reader(), status).await
    }

    /// Live (not destroyed) leases that hold a resource.
    async fn lease_list_on_resource(&self, resource: ObjectId) -> Result<Vec<Lease>> {
        queries::lease::on_resource(&mut *self.reader(), resource).await
    }

    /// Supporting leases a resource owns.
    async fn lease_list_supporting(&self, resource: ObjectId) -> Result<Vec<Lease>> {
        queries::lease::supporting(&mut *self.reader(), resource).await
    }

    /// The capacity generation of a resource type: it moves on whenever capacity of the type
    /// may have appeared (see [`Write::WaitForCapacity`]).
    async fn capacity_generation(&self, resource_type: &str) -> Result<i64> {
        queries::capacity::generation(&mut *self.reader(), resource_type).await
    }

    /// Records `count` pending leases and queues them, in one transaction.
    async fn lease_insert(&self, new: &NewLease, count: usize) -> Result<Vec<Lease>> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::lease::insert(&mut *tx, new, count, now).await;
        let done = conn::finish(tx, result).await?;
        self.announce();
        Ok(done)
    }

    /// Queues a command for each target and wakes them, in one transaction, all or nothing:
    /// refuses (with the reason) when any target cannot take it.
    async fn command_post(
        &self,
        targets: &[ObjectId],
        kind: CommandKind,
        author: &str,
    ) -> Result<Vec<Command>> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = apply::post_all(&mut *tx, targets, kind, author, now).await;
        let done = conn::finish(tx, result).await?;
        self.announce();
        Ok(done)
    }

    /// Commands, newest last.
    async fn command_list(&self, filter: &CommandFilter) -> Result<Vec<Command>> {
        queries::command::list(&mut *self.reader(), filter).await
    }

    /// One page of leases under `query`, newest first.
    async fn lease_page(&self, query: &ListQuery) -> Result<Page<Lease>> {
        queries::lease::page(&mut *self.reader(), query).await
    }

    /// One page of resources under `query`, newest first (`owner` does not apply).
    async fn resource_page(&self, query: &ListQuery) -> Result<Page<Resource>> {
        queries::resource::page(&mut *self.reader(), query).await
    }

    /// Objects by type and status, recent failures and the work queue's depth, as of `now`.
    async fn counts(&self) -> Result<Counts> {
        queries::counts::counts(&mut *self.reader(), self.now() as i64).await
    }

    /// The most recent `limit` log entries of all objects, oldest first.
    async fn log_recent(&self, limit: i64) -> Result<Vec<LogEntry>> {
        queries::log::recent(&mut *self.reader(), limit).await
    }

    /// An object's audit trail (every step its blueprint returned), oldest first, after
    /// `after_id`, at most `limit`.
    async fn step_list(
        &self,
        object: ObjectId,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<StepRecord>> {
        queries::step::list(&mut *self.reader(), object, after_id, limit).await
    }

    /// Log entries of one object or all, oldest first, after `after_id`, at most `limit`.
    async fn log_list(
        &self,
        object: Option<ObjectId>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogEntry>> {
        queries::log::list(&mut *self.reader(), object, after_id, limit).await
    }

    /// Slot locks, of one owner or all.
    async fn slot_lock_list(&self, owner: Option<ObjectId>) -> Result<Vec<SlotLock>> {
        queries::slot_lock::list(&mut *self.reader(), owner).await
    }

    /// Stores an API token: one transaction; a name a token not revoked has is a
    /// [`Error::Conflict`].
    async fn token_insert(&self, new: &NewToken) -> Result<Token> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::token::insert(&mut *tx, new, now).await;
        conn::finish(tx, result).await
    }

    /// Every API token, revoked ones too, oldest first.
    async fn token_list(&self) -> Result<Vec<Token>> {
        queries::token::list(&mut *self.reader()).await
    }

    /// Revokes the token named `name`, and ends the web sessions signed in with it: every
    /// daemon refuses it from the commit on.
    async fn token_revoke(&self, name: &str) -> Result<Token> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = match queries::token::revoke(&mut *tx, name, now).await {
            Ok(token) => queries::session::delete_of_token(&mut *tx, token.id)
                .await
                .map(|()| token),
            Err(error) => Err(error),
        };
        conn::finish(tx, result).await
    }

    /// The token whose secret hashes to `secret_hash`, revoked or not.
    async fn token_by_secret_hash(&self, secret_hash: &str) -> Result<Option<Token>> {
        queries::token::by_secret_hash(&mut *self.reader(), secret_hash).await
    }

    /// Stores a web session, and forgets the sessions that expired: one transaction.
    async fn session_insert(&self, new: &NewSession) -> Result<()> {
        let now = self.now() as i64;
        let mut tx = self.transaction().await?;
        let result = queries::session::insert(&mut *tx, new, now).await;
        conn::finish(tx, result).await
    }

    /// The sealed token hash of the session `id_hash` ([`NewSession::token_sealed`]), while
    /// the session lasts.
    async fn session_token_sealed(&self, id_hash: &str) -> Result<Option<String>> {
        let now = self.now() as i64;
        queries::session::token_sealed(&mut *self.reader(), id_hash, now).await
    }

    /// Ends the session `id_hash` (signing out), on every daemon.
    async fn session_delete(&self, id_hash: &str) -> Result<()> {
        let mut tx = self.transaction().await?;
        let result = queries::session::delete(&mut *tx, id_hash).await;
        conn::finish(tx, result).await
    }

    /// Claims up to `limit` objects for `owner` for `ttl`: first those whose claim expired (a
    /// crashed worker's), then due ones shared out fairly among their tenants given what
    /// `running` already holds (`scheduler`), oldest due first within a tenant.
    async fn work_item_claim(
        &self,
        owner: &str,
        limit: i64,
        ttl: Duration,
        running: &crate::scheduler::Load,
    ) -> Result<Vec<Claim>>;
    /// Extends a claim; [`Error::Fenced`] if it is no longer held.
    async fn work_item_heartbeat(&self, claim: &Claim, ttl: Duration) -> Result<()>;
    /// Gives a claim back, keeping any wake-up that arrived meanwhile.
    async fn work_item_release(&self, claim: &Claim, release: &Release) -> Result<()>;
    /// An object's place in the work queue.
    async fn work_item_get(&self, object: ObjectId) -> Result<WorkItem>;
    /// The earliest time an unclaimed object is due, or a claim expires.
    async fn work_item_next_due(&self) -> Result<Option<Timestamp>>;

    /// Applies a plan in one transaction guarded by `claim`, and extends the claim by `ttl`.
    /// Returns what it did: the objects it inserted, in order, and the commands it consumed.
    async fn apply(&self, claim: &Claim, plan: &Plan, ttl: Duration) -> Result<Applied>;
    /// Applies several plans in one durable transaction (group commit), each as [`Store::apply`]
    /// would: guarded by its own claim, and all or nothing on its own (a savepoint each), so a
    /// plan that is fenced or refused leaves its neighbours be. The outer error is the
    /// transaction's (nothing was written); otherwise one outcome per plan, in order, known
    /// only once the transaction committed.
    async fn apply_batch(&self, batch: &[PlanToApply<'_>]) -> Result<Vec<Result<Applied>>>;

    /// Removes the leases and resources destroyed before `before`, each with its whole history
    /// (log entries, steps, commands) and its work item. Live objects and blueprints keep all
    /// of theirs, however old. Works in batches, each its own transaction.
    async fn gc(&self, before: Timestamp) -> Result<GcReport> {
        retention::gc(&|| self.transaction(), before as i64).await
    }

    /// Notifies `wake` whenever another process (the CLI, another daemon) makes something due,
    /// until the returned guard is dropped. A hint that saves waiting for the poll: a lost
    /// notification only delays work until the next poll.
    async fn listen(&self, wake: Arc<Notify>) -> Result<Listening>;

    /// Records that a daemon runs: its row written, or refreshed with when it was seen.
    async fn daemon_seen(&self, daemon: &DaemonRecord) -> Result<()> {
        let mut tx = self.transaction().await?;
        let result = queries::daemon::seen(&mut *tx, daemon).await;
        conn::finish(tx, result).await
    }

    /// Removes a daemon's row: it stopped.
    async fn daemon_gone(&self, name: &str) -> Result<()> {
        let mut tx = self.transaction().await?;
        let result = queries::daemon::gone(&mut *tx, name).await;
        conn::finish(tx, result).await
    }

    /// Every daemon that wrote a row and did not remove it, the most recently seen first
    /// (those silent for [`DAEMON_SILENT_AFTER`] have stopped without saying so).
    async fn daemon_list(&self) -> Result<Vec<DaemonRecord>> {
        queries::daemon::list(&mut *self.reader()).await
    }

    /// How many daemons serve this database now, where the store can tell: those seen in the
    /// last [`DAEMON_SILENT_AFTER`] (SQLite counts the wake-up sockets beside the file that
    /// someone is bound to instead); `None` when the registry cannot be read. `drydock lease
    /// request --wait` says when no daemon serves the database.
    async fn listening_daemons(&self) -> Option<usize> {
        let daemons = self.daemon_list().await.ok()?;
        Some(DaemonRecord::serving(&daemons, self.now()))
    }
}

/// One plan of a group commit ([`Store::apply_batch`]), with the claim it is applied under.
#[derive(Debug, Clone, Copy)]
pub struct PlanToApply<'a> {
    /// The writer's claim.
    pub claim: &'a Claim,
    /// Its writes.
    pub plan: &'a Plan,
    /// How far the write extends the claim.
    pub ttl: Duration,
}

/// Listening for other processes' wake-ups ([`Store::listen`]); dropping it stops.
#[derive(Debug)]
pub struct Listening {
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    /// Listening done by `task`, which stops (cleaning up after itself on drop) when aborted.
    fn by(task: tokio::task::JoinHandle<()>) -> Self {
        Listening { task }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a process opens the store for, which sizes its connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A daemon: workers, the dispatcher and the web server at once.
    Daemon,
    /// A one-shot command (the CLI): one connection, reused for every statement, so that a
    /// command never waits for a second connection to be set up.
    Command,
}

/// What opening the store may do to the database. Reads change nothing, writes never upgrade
/// a schema behind a daemon's back: only `drydock serve` and `drydock migrate` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only (`lease list`, `log`…): nothing is created, locked or migrated, the
    /// connections refuse writes, and the schema must be this build's.
    Read,
    /// Reads and writes on an existing database (`lease request`, `lease release`…): a missing
    /// one is refused, naming it, so that a command run in the wrong directory creates nothing;
    /// it must have this build's schema.
    Write,
    /// Reads and writes, creating a database that does not exist yet with this build's schema
    /// (`blueprint add`: the operator's setup); an existing one must have it already.
    Setup,
    /// Reads, writes, and upgrades an older schema (`drydock serve`, `drydock migrate`).
    Migrate,
}

/// How long a one-shot command waits for a PostgreSQL server to answer.
const COMMAND_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The store named by a database URL, `sqlite://PATH` or `postgres://…`, opened for `access`.
pub async fn open(url: &str, workload: Workload, access: Access) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open_with(url, Arc::new(SystemClock), access).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let defaults = postgres::PgOptions::default();
        let options = match workload {
            Workload::Daemon => postgres::PgOptions { access, ..defaults },
            Workload::Command => postgres::PgOptions {
                access,
                connections: 1,
                connect_timeout: COMMAND_CONNECT_TIMEOUT,
                ..defaults
            },
        };
        let store = postgres::PgStore::open_with(url, options).await?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://HOST/DATABASE")
}
