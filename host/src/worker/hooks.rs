//! Calling a blueprint's step hooks: the exec round trip, and turning a step into writes.

use super::blame::Blame;
use super::{RunError, Workers};
use crate::domain::{Action, ExecRequest, ExecResult, Outcome, Step, SupportingLease};
use crate::limits::Limit;
use crate::lock::Held;
use crate::plugin::Hook;
use crate::store::{Blueprint, CommandKind, Lease, ObjectId, Plan, Resource, Target, Write};

/// How many exec rounds one phase may take.
const MAX_EXEC_ROUNDS: usize = 32;

/// One step hook to call, with what it is about.
pub(crate) struct HookCall {
    /// The blueprint whose component is called.
    pub blueprint: Blueprint,
    /// Which export.
    pub hook: Hook,
    /// The resource involved.
    pub resource: Option<Resource>,
    /// The lease involved.
    pub lease: Option<Lease>,
}

/// How a hook ended, after any exec rounds.
pub(crate) enum Called {
    /// A final step (no exec actions left), what the guest printed, and whether exec rounds
    /// left results on the object (cleared when the phase is done).
    Step(Step, String, bool),
    /// A permanent failure: a trap, a limit, an invalid step. The object breaks.
    Failed(String),
    /// A step the host refused that any resource made for the same request would meet
    /// ([`crate::plugin::Error::is_lasting_refusal`]): the object breaks, and a lease waiting
    /// on it breaks too instead of trying another resource.
    Refused(String),
}

/// The log kind suffix of a failure that another resource would meet the same.
pub(crate) const REFUSED: &str = "-refused";

impl Called {
    /// How a call that returned no step ended.
    pub fn failed(error: &crate::plugin::Error) -> Called {
        match error.is_lasting_refusal() {
            true => Called::Refused(error.to_string()),
            false => Called::Failed(error.to_string()),
        }
    }

    /// Whether the phase is complete: the blueprint served the request.
    pub fn is_done(&self) -> bool {
        matches!(self, Called::Step(step, ..) if step.outcome == Outcome::Done)
    }
}

impl HookCall {
    fn subject(&self) -> ObjectId {
        match self.hook {
            Hook::AcquireLease | Hook::ActivateLease | Hook::ReleaseLease => {
                self.lease.as_ref().expect("lease hooks have a lease").id
            }
            _ => {
                self.resource
                    .as_ref()
                    .expect("resource hooks have a resource")
                    .id
            }
        }
    }
}

impl Workers {
    /// Calls the hook; while it asks for execs, applies its other actions, runs the execs under
    /// a kept-alive claim, records their results and calls again: at once while the step is
    /// `done` and the phase ran no execs before this run; otherwise (the step yields, or the
    /// phase is resumed after a wait) the next call waits at least the minimum yield, as a
    /// yield does, so a blueprint cannot run execs faster than it could yield.
    ///
    /// `unsaved` holds writes decided before the call and not yet committed (consumed commands,
    /// an acquisition): they go into the first transaction the call makes, if it makes one, and
    /// are taken out of `unsaved`; otherwise the caller commits them with the call's outcome.
    pub(crate) async fn call_hook(
        &self,
        held: &Held,
        mut call: HookCall,
        unsaved: &mut Plan,
    ) -> Result<Called, RunError> {
        let subject = call.subject();
        let mut resumed = false;
        for round in 0..MAX_EXEC_ROUNDS {
            let ctx = self
                .context(
                    &call.blueprint,
                    call.resource.as_ref(),
                    call.lease.as_ref(),
                    subject,
                )
                .await?;
            let supporting = ctx.supporting_leases.clone();
            let exec_results = ctx.exec_results.clone();
            resumed |= round == 0 && !exec_results.is_empty();
            let called = match self
                .call_step(held, &call.blueprint, call.hook, subject, ctx)
                .await?
            {
                Ok(called) => called,
                Err(error) if error.is_temporary() => return Err(error.into()),
                Err(error) => return Ok(Called::failed(&error)),
            };
            let step = called.value;
            let execs = step.execs();
            if execs.is_empty() {
                return Ok(Called::Step(step, called.output, round > 0));
            }
            let mut plan = std::mem::take(unsaved);
            let on = Subject {
                target: subject.into(),
                kind: subject.kind(),
                blueprint: &call.blueprint,
            };
            plan_actions(&mut plan, &on, &step, &supporting);
            plan_output(&mut plan, &on, &called.output);
            held.apply(&plan).await?;

            let new_results = self.run_execs(held, &execs, &supporting).await?;
            let mut results = exec_results;
            results.extend(new_results);
            let mut record = Plan::new();
            record.push(Write::SetExecResults {
                object: subject,
                results,
            });
            held.apply(&record).await?;
            match step.outcome {
                Outcome::Yield(ms) => return Ok(paced(ms)),
                _ if resumed => return Ok(paced(0)),
                _ => self.reload(&mut call, subject).await?,
            }
        }
        Ok(Called::Failed(format!(
            "{} asked for exec actions {MAX_EXEC_ROUNDS} times without finishing",
            call.hook
        )))
    }

    async fn reload(&self, call: &mut HookCall, subject: ObjectId) -> Result<(), RunError> {
        match subject {
            ObjectId::Resource(_) => call.resource = Some(self.store.resource_get(subject).await?),
            _ => call.lease = Some(self.store.lease_get(subject).await?),
        }
        Ok(())
    }
}

/// An exec round that waits before the next call: a yield of `ms` (at least the minimum,
/// which `Settle` applies) with nothing more to apply, the step's actions being applied and
/// its execs' results recorded already.
fn paced(ms: u32) -> Called {
    let wait = Step {
        actions: Vec::new(),
        outcome: Outcome::Yield(ms),
    };
    Called::Step(wait, String::new(), true)
}

impl Workers {
    /// Runs a step's execs, in order, each in an exec slot: the run's worker slot is handed
    /// back meanwhile, and a lost claim stops them (killing their process groups).
    async fn run_execs(
        &self,
        held: &Held,
        execs: &[ExecRequest],
        supporting: &[SupportingLease],
    ) -> Result<Vec<ExecResult>, RunError> {
        let mut results = Vec::with_capacity(execs.len());
        for request in execs {
            let through = supporting.iter().find(|s| s.key == request.lease_key);
            let Some((reach, ids)) =
                through.and_then(|s| Some((s.interface.as_ref()?, crate::exec::Ids::from(s))))
            else {
                results.push(ExecResult {
                    id: request.id.clone(),
                    exit_code: None,
                    stdout: String::new(),
                    stderr: format!(
                        "supporting lease {:?} is not active or gives no command interface",
                        request.lease_key
                    ),
                });
                continue;
            };
            let guard = self.execs.guard.clone();
            let confinement = match &reach.interface {
                crate::domain::CommandInterface::Local { .. } => {
                    confinement_now(self.store.as_ref(), &self.execs.confinement).await?
                }
                crate::domain::CommandInterface::Ssh { .. } => self.execs.confinement.clone(),
            };
            let run = async {
                let _slot = self.execs.slots.acquire().await;
                let began = std::time::Instant::now();
                let result = match guard {
                    Some(program) => {
                        let watchdog = held.exec_watchdog(program);
                        crate::exec::run_guarded(reach, request, &ids, &confinement, watchdog).await
                    }
                    None => Ok(crate::exec::run(reach, request, &ids, &confinement).await),
                };
                if let Ok(result) = &result {
                    crate::metrics::global().exec_finished(
                        reach.interface.kind(),
                        began.elapsed(),
                        result.exit_code,
                    );
                }
                result
            };
            // An exec the guard stopped for a stalled claim has no result to show: the run
            // ends as the store's trouble (not counted) and the step is redone.
            let result = held.unless_lost(held.off_worker(run)).await?;
            results.push(
                result.map_err(|interrupted| RunError::Unavailable(interrupted.to_string()))?,
            );
        }
        Ok(results)
    }
}

/// `confinement` also hiding every directory a blueprint is granted SSH keys in, as the grants
/// stand now (`exec::confine`).
pub(crate) async fn confinement_now(
    store: &dyn crate::store::Store,
    confinement: &crate::exec::Confinement,
) -> crate::store::Result<crate::exec::Confinement> {
    if !matches!(confinement, crate::exec::Confinement::Sandboxed(_)) {
        return Ok(confinement.clone());
    }
    let blueprints = store.blueprint_list().await?;
    let keys = blueprints
        .iter()
        .flat_map(|b| &b.grants)
        .filter_map(|g| match g {
            crate::grant::Grant::SshKey { dir } => Some(std::path::PathBuf::from(dir)),
            _ => None,
        });
    Ok(confinement.hiding(keys))
}

/// The object a step's actions apply to.
pub(crate) struct Subject<'a> {
    /// The object under call (or the one the plan inserts).
    pub target: Target,
    /// `lease` or `resource`, for log kinds.
    pub kind: &'a str,
    /// The blueprint whose component returned the step: its slot locks are its own, and what
    /// the step logs or asks for counts against its limits.
    pub blueprint: &'a Blueprint,
}

impl Subject<'_> {
    /// The write of log entries the step wrote, counted against its blueprint's log quota.
    fn blueprint_log(&self, entries: Vec<(String, String)>) -> Write {
        Write::BlueprintLog {
            object: self.target,
            blueprint: self.blueprint.id,
            entries,
        }
    }
}

/// A slot lock's name in its blueprint's namespace: no blueprint can take another's locks.
pub(crate) fn namespaced(blueprint: ObjectId, name: &str) -> String {
    format!("{blueprint}:{name}")
}

/// Translates a validated step's actions (all but `exec`) into writes on the subject; its log
/// entries go last, in one write charged to the blueprint's log quota.
pub(crate) fn plan_actions(
    plan: &mut Plan,
    on: &Subject<'_>,
    step: &Step,
    supporting: &[SupportingLease],
) {
    let (subject, kind) = (on.target, on.kind);
    let mut logged = Vec::new();
    for action in &step.actions {
        let write = match action {
            Action::SetAttribute { key, value } => Write::SetAttribute {
                object: subject,
                key: key.clone(),
                value: value.clone(),
            },
            Action::RemoveAttribute(key) => Write::RemoveAttribute {
                object: subject,
                key: key.clone(),
            },
            Action::Log(message) => {
                logged.push((format!("{kind}.blueprint"), message.clone()));
                continue;
            }
            Action::TakeSlotLocks(names) => Write::TakeSlotLocks {
                owner: subject,
                names: names
                    .iter()
                    .map(|n| namespaced(on.blueprint.id, n))
                    .collect(),
            },
            Action::RequestLease(request) => Write::InsertSupportingLease {
                parent: subject,
                requester: on.blueprint.id,
                waiting_limit: on.blueprint.limits.get(Limit::PendingSupporting),
                key: request.key.clone(),
                resource_type: request.resource_type.clone(),
                attributes: request.attributes.clone(),
            },
            Action::ReleaseLease(key) => {
                let Some(lease) = supporting_id(supporting, key) else {
                    continue;
                };
                Write::PostCommand {
                    target: lease,
                    kind: CommandKind::Release,
                    author: author_of(subject),
                }
            }
            Action::SetUntil(until) => Write::SetUntil {
                object: subject,
                until: *until,
            },
            Action::Exec(_) => continue,
        };
        plan.push(write);
    }
    if !logged.is_empty() {
        plan.push(on.blueprint_log(logged));
    }
}

/// Adds what the guest printed to the object's log, charged to its blueprint's log quota.
pub(crate) fn plan_output(plan: &mut Plan, on: &Subject<'_>, output: &str) {
    if !output.is_empty() {
        let entry = (format!("{}.output", on.kind), output.trim_end().to_string());
        plan.push(on.blueprint_log(vec![entry]));
    }
}

fn supporting_id(supporting: &[SupportingLease], key: &str) -> Option<ObjectId> {
    supporting
        .iter()
        .find(|s| s.key == key)
        .and_then(|s| s.lease.id.parse().ok())
}

fn author_of(subject: Target) -> String {
    match subject {
        Target::Id(id) => id.to_string(),
        Target::Inserted(_) => "a new resource".into(),
    }
}

/// Turns a called hook into writes: on `done` the step's actions plus `on_done`; on `yield`
/// its actions and a wait (at least the minimum yield); on a failure a log entry plus what
/// `on_fail` makes of the reason and of whom it blames (it breaks the object): the request
/// when the step reported the failure, the blueprint when its component failed (`blame`).
pub(crate) struct Settle<'a> {
    /// The object under call.
    pub subject: Subject<'a>,
    /// The phase, for log kinds (`activation`, `release`…).
    pub phase: &'a str,
    /// Its supporting leases (for `release-lease` actions).
    pub supporting: &'a [SupportingLease],
    /// The shortest wait a yield gets.
    pub min_yield: std::time::Duration,
}

impl Settle<'_> {
    /// The plan and what comes next. `now` is the store's time.
    pub fn plan(
        &self,
        called: Called,
        on_done: Vec<Write>,
        on_fail: impl FnOnce(&str, Blame) -> Vec<Write>,
        now: u64,
    ) -> (Plan, super::Next) {
        let mut plan = Plan::new();
        let (target, kind, phase) = (self.subject.target, self.subject.kind, self.phase);
        let failure = |plan: &mut Plan, reason: &str, blame, suffix: &str| {
            plan.log(target, &format!("{kind}.{phase}{suffix}"), reason);
            for write in on_fail(reason, blame) {
                plan.push(write);
            }
        };
        let next = match called {
            Called::Step(step, output, ran_execs) => {
                plan_output(&mut plan, &self.subject, &output);
                match &step.outcome {
                    Outcome::Done => {
                        plan_actions(&mut plan, &self.subject, &step, self.supporting);
                        clear_exec_results(&mut plan, target, ran_execs);
                        for write in on_done {
                            plan.push(write);
                        }
                        super::Next::Continue
                    }
                    Outcome::Yield(ms) => {
                        plan_actions(&mut plan, &self.subject, &step, self.supporting);
                        let wait = (u64::from(*ms)).max(self.min_yield.as_millis() as u64);
                        plan.log(
                            target,
                            &format!("{kind}.{phase}-yield"),
                            format!("waiting {wait} ms"),
                        );
                        super::Next::Wait(Some(now + wait))
                    }
                    Outcome::Fail(reason) => {
                        clear_exec_results(&mut plan, target, ran_execs);
                        failure(&mut plan, reason, Blame::Request, "-failure");
                        super::Next::Continue
                    }
                }
            }
            Called::Failed(reason) => {
                failure(&mut plan, &reason, Blame::Blueprint, "-failure");
                super::Next::Continue
            }
            Called::Refused(reason) => {
                failure(&mut plan, &reason, Blame::Blueprint, REFUSED);
                super::Next::Continue
            }
        };
        (plan, next)
    }
}

/// A finished phase's exec results are cleared, so the next phase starts without them.
fn clear_exec_results(plan: &mut Plan, subject: Target, ran_execs: bool) {
    if let (true, Target::Id(object)) = (ran_execs, subject) {
        plan.push(Write::SetExecResults {
            object,
            results: Vec::new(),
        });
    }
}

/// How each queued command turns out.
pub(crate) enum Decision {
    /// Applied, with these writes.
    Apply(Vec<Write>),
    /// Ignored, for this reason.
    Ignore(String),
}

/// Consumes `commands` in order: `decide` sees each and may change its view of the object.
pub(crate) fn consume(
    commands: &[crate::store::Command],
    mut decide: impl FnMut(&crate::store::Command) -> Decision,
) -> Plan {
    let mut plan = Plan::new();
    for command in commands {
        let outcome = match decide(command) {
            Decision::Apply(writes) => {
                for write in writes {
                    plan.push(write);
                }
                "applied".to_string()
            }
            Decision::Ignore(reason) => format!("ignored: {reason}"),
        };
        plan.push(Write::ConsumeCommand {
            id: command.id,
            outcome,
        });
    }
    plan
}
