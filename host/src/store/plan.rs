//! [`Plan`]: the writes of one worker step, applied by [`super::Store::apply`] in one guarded
//! transaction, all or nothing.

use super::{CommandKind, EndKind, ObjectId, StepRecord};
use crate::domain::{Attributes, ExecResult, LeaseStatus, ResourceStatus, Timestamp};
use crate::limits::Limits;

/// The object a write is about: an existing one, or one inserted earlier in the same plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An existing object.
    Id(ObjectId),
    /// The `n`th object inserted by this plan.
    Inserted(usize),
}

impl From<ObjectId> for Target {
    fn from(id: ObjectId) -> Self {
        Target::Id(id)
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Records a command's outcome.
    ConsumeCommand {
        /// Command id.
        id: i64,
        /// `applied` or `ignored: <reason>`.
        outcome: String,
    },
    /// Sets a lease's status.
    LeaseStatus {
        /// The lease.
        lease: ObjectId,
        /// New status.
        status: LeaseStatus,
    },
    /// Sets a resource's status.
    ResourceStatus {
        /// The resource.
        resource: Target,
        /// New status.
        status: ResourceStatus,
    },
    /// Makes a pending lease acquired on a resource, which must still be pending or active.
    LeaseAcquire {
        /// The lease.
        lease: ObjectId,
        /// The resource.
        resource: Target,
    },
    /// Sends an acquired lease whose resource died back to pending.
    LeaseReacquire {
        /// The lease.
        lease: ObjectId,
    },
    /// Sets an attribute.
    SetAttribute {
        /// On what.
        object: Target,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Removes an attribute.
    RemoveAttribute {
        /// From what.
        object: Target,
        /// Key.
        key: String,
    },
    /// Sets or clears a deadline, and schedules the object's wake-up for it.
    SetUntil {
        /// On what.
        object: Target,
        /// When.
        until: Option<Timestamp>,
    },
    /// Replaces the exec results of the current phase.
    SetExecResults {
        /// On what.
        object: ObjectId,
        /// Results.
        results: Vec<ExecResult>,
    },
    /// Takes slot locks, all or none; a busy lock fails the plan with `SlotLockBusy`.
    TakeSlotLocks {
        /// New holder.
        owner: Target,
        /// Lock names.
        names: Vec<String>,
    },
    /// Frees every slot lock an object holds.
    FreeSlotLocks {
        /// The holder.
        owner: ObjectId,
    },
    /// Appends a log entry.
    Log {
        /// About what.
        object: Target,
        /// Typed kind, such as `lease.acquired`.
        kind: String,
        /// Text.
        message: String,
    },
    /// Appends a log entry unless the object's last entry is the same (kind and text): a lease
    /// that keeps waiting for the same reason says so once, not at every look.
    LogIfNew {
        /// About what.
        object: ObjectId,
        /// Typed kind.
        kind: String,
        /// Text.
        message: String,
    },
    /// Appends the log entries a blueprint's step wrote (its log actions, what it printed),
    /// counted against the blueprint's log quota: `quota::Meters::admit` keeps those it
    /// admits before the plan is applied.
    BlueprintLog {
        /// About what.
        object: Target,
        /// The blueprint whose step wrote them.
        blueprint: ObjectId,
        /// Kind and text of each entry, in order.
        entries: Vec<(String, String)>,
    },
    /// Queues a command for another object and wakes it.
    PostCommand {
        /// Recipient.
        target: ObjectId,
        /// What.
        kind: CommandKind,
        /// Sender.
        author: String,
    },
    /// Queues a release for a lease on behalf of a resource, unless the lease can no longer take
    /// one or already has one queued: checked inside the transaction, so a cascade never races
    /// the lease's own worker into a redundant command.
    CascadeRelease {
        /// The lease.
        lease: ObjectId,
        /// The resource sending it.
        author: String,
    },
    /// Wakes another object without a command.
    Wake {
        /// The object.
        object: Target,
    },
    /// Gives the caller's claim back in the same transaction, with the object's next wake time
    /// (kept earlier if a post arrived meanwhile). Must be the plan's last write.
    ReleaseClaim {
        /// When the object wants to run again, if ever.
        wake_at: Option<Timestamp>,
    },
    /// Wakes every live lease holding a resource (it just became active), read inside the
    /// transaction so that a lease that acquired it a moment ago is not missed.
    WakeHolders {
        /// The resource.
        resource: ObjectId,
    },
    /// Wakes a resource if it is released or broken (it waits for its leases to go), checked
    /// inside the transaction so a release that just happened is not missed.
    WakeIfDestroying {
        /// The resource.
        resource: ObjectId,
    },
    /// Inserts a pending resource and queues it; fails with `Limited` if its blueprint has
    /// as many resources being set up as its `setting-up` limit, or its resource bucket is
    /// empty (`resources-per-minute`, `resource-burst`); a tenant with resources being set up
    /// already finds both fuller by their reserve (`limits::reserve`).
    InsertResource {
        /// Its blueprint.
        blueprint: ObjectId,
        /// Its type.
        resource_type: String,
        /// Its depth: that of the lease it is made for.
        depth: u32,
        /// The tenant of the lease it is made for (`crate::scheduler`).
        made_for: String,
        /// The lease it is made for.
        made_for_lease: Option<ObjectId>,
        /// The blueprint's limits.
        limits: Limits,
    },
    /// Consumes a reclaim command: applied (the resource is released) if the resource is active
    /// and no live lease holds it, checked inside the transaction; otherwise ignored with the
    /// reason. A lease acquiring the resource at the same moment is never released by it.
    Reclaim {
        /// The resource.
        resource: ObjectId,
        /// The reclaim command.
        command: i64,
        /// Who sent it.
        author: String,
    },
    /// Capacity of a type may have appeared (a resource became active or was destroyed, a
    /// lease was released): moves the type's capacity generation on and wakes every lease
    /// waiting for it, oldest request first.
    WakeWaiting {
        /// The resource type.
        resource_type: String,
    },
    /// Puts a pending lease to sleep until capacity of its type appears, unless the capacity
    /// generation moved on since the lease read it as `seen` (then it is woken at once: the
    /// wake-up it would have missed).
    WaitForCapacity {
        /// The lease.
        lease: ObjectId,
        /// Its resource type.
        resource_type: String,
        /// The generation the allocator read before deciding there was no room.
        seen: i64,
    },
    /// Remembers (or forgets) the resource a pending lease's unfinished acquisition is about.
    SetAcquiring {
        /// The lease.
        lease: ObjectId,
        /// The resource (one this plan inserts, when the allocator makes it for the lease), or
        /// `None` to forget it (and the exec results that belonged to it).
        resource: Option<Target>,
    },
    /// Records a failed allocation or activation of a blueprint: it backs off until
    /// `retry_at`, and is shown failing after a few in a row.
    BlueprintFailed {
        /// The blueprint.
        blueprint: ObjectId,
        /// Why it failed.
        reason: String,
        /// When the allocator may use it again.
        retry_at: Timestamp,
    },
    /// Records a successful allocation or activation: the blueprint's failure streak ends.
    BlueprintRecovered {
        /// The blueprint.
        blueprint: ObjectId,
    },
    /// Records how an object ended, unless an end is recorded already (the first end wins:
    /// a broken lease released later stays broken).
    End {
        /// The lease or resource.
        object: Target,
        /// Released, broken or expired.
        kind: EndKind,
        /// Who released it, or why it broke.
        detail: Option<String>,
    },
    /// Appends a step to the audit trail (`quota::Meters::admit` drops the body of one over
    /// its blueprint's step-history quota before the plan is applied).
    RecordStep(StepRecord),
    /// Inserts a pending supporting lease owned by a resource, and queues it; fails with
    /// `Limited` if the resources of the requester's blueprint have as many supporting leases
    /// waiting as its `pending-supporting` limit.
    InsertSupportingLease {
        /// The owning resource.
        parent: Target,
        /// The blueprint of the owning resource.
        requester: ObjectId,
        /// The most supporting leases its resources may have waiting.
        waiting_limit: u64,
        /// Key it was requested under.
        key: String,
        /// Wanted type.
        resource_type: String,
        /// Wanted attributes.
        attributes: Attributes,
    },
}

impl Write {
    /// Records that `object` ended: released by `author` (`expiry` makes it expired).
    pub fn released(object: impl Into<Target>, author: &str) -> Write {
        let (kind, detail) = super::End::released_by(author);
        Write::End {
            object: object.into(),
            kind,
            detail,
        }
    }

    /// Records that `object` ended broken, for `reason`.
    pub fn broke(object: impl Into<Target>, reason: &str) -> Write {
        Write::End {
            object: object.into(),
            kind: EndKind::Broken,
            detail: Some(reason.to_string()),
        }
    }
}

/// An ordered list of writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    writes: Vec<Write>,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Plan::default()
    }

    /// Appends a write.
    pub fn push(&mut self, write: Write) -> &mut Self {
        self.writes.push(write);
        self
    }

    /// Appends a log entry.
    pub fn log(
        &mut self,
        object: impl Into<Target>,
        kind: &str,
        message: impl Into<String>,
    ) -> &mut Self {
        self.push(Write::Log {
            object: object.into(),
            kind: kind.to_string(),
            message: message.into(),
        })
    }

    /// Puts `writes` before the plan's final `ReleaseClaim`, if it has one, else at its end.
    pub fn insert_before_release(&mut self, writes: impl IntoIterator<Item = Write>) {
        let at = self.writes.len() - usize::from(self.releases_claim());
        self.writes.splice(at..at, writes);
    }

    /// Appends every write of `later`. Only one of the two plans may insert objects, since
    /// [`Target::Inserted`] counts inserts from the start of the plan it was made for.
    pub fn append(&mut self, later: Plan) -> &mut Self {
        debug_assert!(
            !(self.inserts() && later.inserts()),
            "appending a plan that inserts to another that inserts renumbers its targets"
        );
        self.writes.extend(later.writes);
        self
    }

    fn inserts(&self) -> bool {
        self.writes.iter().any(|write| {
            matches!(
                write,
                Write::InsertResource { .. } | Write::InsertSupportingLease { .. }
            )
        })
    }

    /// The writes, in order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Whether the plan ends by giving the claim back.
    pub fn releases_claim(&self) -> bool {
        matches!(self.writes.last(), Some(Write::ReleaseClaim { .. }))
    }

    /// Whether a write takes slot locks (and so may fail with `SlotLockBusy`).
    pub fn takes_slot_locks(&self) -> bool {
        self.writes
            .iter()
            .any(|write| matches!(write, Write::TakeSlotLocks { .. }))
    }

    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}
