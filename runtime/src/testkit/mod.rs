//! A daemon-free harness for blueprint authors: drive a built component through a resource's and
//! a lease's whole life on in-memory snapshots, and assert on what it returns.
//!
//! The [`Harness`] plays the host's part without a database: it validates every step exactly as the
//! daemon does (through [`Plugin`]), applies the actions to its snapshots (attributes, slot locks,
//! logs, deadlines, supporting lease requests), runs `exec` actions through a responder the test
//! supplies, and moves statuses along when a hook is done. Supporting leases can be served by a
//! local directory ([`Harness::supply`]) and execs run for real there ([`Harness::run_execs`]).
//!
//! Each harness keys its calls' random seeds with a fresh random secret, as each installation of
//! the daemon does with its own: the random bytes a component reads differ from one harness (one
//! `blueprint check` run) to the next, while ids and the clock stay the same. Pin one with
//! [`Harness::set_seed_secret`] to get the same bytes in every run.
//!
//! ```no_run
//! use drydock_runtime::testkit::Harness;
//! use drydock_runtime::domain::{LeaseStatus, ResourceStatus};
//!
//! # fn main() -> anyhow::Result<()> {
//! let config = r#"{"hosts": [{"name": "local-1", "interface": {"type": "local", "root": "/tmp/drydock"}}]}"#;
//! let mut kit = Harness::load("target/wasm32-wasip2/release/host_pool.wasm".as_ref(), config)?;
//! kit.grant(&["local:/tmp/drydock".parse().unwrap()]);
//! let lease = kit.request_lease("host", [])?;
//! let resource = kit.allocate_resource(&lease)?.done()?;
//! kit.activate_resource(&resource)?.done()?;
//! kit.acquire_lease(&resource, &lease)?.done()?;
//! kit.activate_lease(&lease)?.done()?;
//! assert_eq!(kit.lease(&lease).status, LeaseStatus::Active);
//! kit.release_lease(&lease)?.done()?;
//! kit.destroy_resource(&resource)?.done()?;
//! assert_eq!(kit.resource(&resource).status, ResourceStatus::Destroyed);
//! assert!(kit.slot_locks().is_empty());
//! # Ok(()) }
//! ```

pub mod scenario;

use crate::action;
use crate::domain::{
    Action, AllocationVerdict, Attributes, CallContext, CommandInterface, Description, ExecRequest,
    ExecResult, LeaseSnapshot, LeaseStatus, Outcome, ResourceSnapshot, ResourceStatus, Step,
    SupportingLease,
};
use crate::grant::{self, Authorized, Grant};
use crate::plugin::{Hook, Plugin, Runtime, RuntimeConfig, SeedSecret};
use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// How many exec rounds one hook may ask for before the harness gives up.
const MAX_EXEC_ROUNDS: usize = 32;

/// Answers the `exec` actions a component asks for; the test decides what each command "does".
pub type ExecResponder = Box<dyn FnMut(&ExecRequest) -> ExecResult>;

/// What one hook call came to, after the harness applied it.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The object the hook worked on.
    pub object: String,
    /// Every step the hook returned, in order (more than one when it ran execs).
    pub steps: Vec<Step>,
    /// What the guest printed.
    pub output: String,
}

impl Applied {
    /// The last step.
    pub fn last(&self) -> &Step {
        self.steps.last().expect("a hook returns at least one step")
    }

    /// The object's id if the hook finished with `done`; else an error saying how it ended.
    pub fn done(self) -> anyhow::Result<String> {
        match &self.last().outcome {
            Outcome::Done => Ok(self.object),
            other => bail!("{} ended with {other:?}, not done", self.object),
        }
    }
}

/// One hook call of [`Harness::lifecycle`].
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleCall {
    /// The export called, such as `allocate-resource`.
    pub hook: String,
    /// The object it worked on.
    pub object: String,
    /// Every step it returned (more than one when it ran execs).
    pub steps: Vec<Step>,
    /// What the guest printed.
    pub output: String,
}

/// What [`Harness::lifecycle`] went through.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lifecycle {
    /// The hook calls, in order.
    pub calls: Vec<LifecycleCall>,
    /// The command interface the active lease got.
    pub interface: Option<CommandInterface>,
    /// Why the lifecycle stopped early; `None` when it went all the way.
    pub failure: Option<String>,
    /// The lease it requested.
    pub lease: Option<String>,
    /// The resource made for it, once allocated.
    pub resource: Option<String>,
}

impl Lifecycle {
    /// Records a call; the object's id if it finished with done.
    fn record(&mut self, hook: Hook, applied: anyhow::Result<Applied>) -> anyhow::Result<String> {
        let applied = applied.with_context(|| format!("calling {hook}"))?;
        self.calls.push(LifecycleCall {
            hook: hook.to_string(),
            object: applied.object.clone(),
            steps: applied.steps.clone(),
            output: applied.output.clone(),
        });
        applied.done().with_context(|| hook.to_string())
    }
}

/// An in-memory host for one blueprint. Its calls run on a runtime of its own, so use it from
/// synchronous code (a plain `#[test]`), not from inside an async runtime.
pub struct Harness {
    plugin: Plugin,
    calls: tokio::runtime::Runtime,
    config: String,
    grants: Vec<Grant>,
    now: u64,
    next_id: u64,
    resources: BTreeMap<String, ResourceSnapshot>,
    leases: BTreeMap<String, LeaseSnapshot>,
    supporting: BTreeMap<String, Vec<SupportingLease>>,
    exec_results: BTreeMap<String, Vec<ExecResult>>,
    locks: BTreeMap<String, String>,
    logs: Vec<(String, String)>,
    responder: ExecResponder,
    /// Interfaces that satisfy supporting leases, by resource type.
    suppliers: BTreeMap<String, CommandInterface>,
    /// Whether execs run for real through their supporting lease's interface.
    execs_for_real: bool,
}

impl Harness {
    /// Loads `wasm` in a fresh runtime (default limits, no cache) and checks `config` with it.
    pub fn load(wasm: &Path, config: &str) -> anyhow::Result<Self> {
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: None,
            ..RuntimeConfig::default()
        })?;
        Self::new(runtime.load_file(wasm)?, config)
    }

    /// A harness over an already loaded plugin; fails if the component refuses `config`.
    pub fn new(plugin: Plugin, config: &str) -> anyhow::Result<Self> {
        let mut kit = Self::over(plugin)?;
        kit.configure(config)?;
        Ok(kit)
    }

    /// A harness over an already loaded plugin, with the config `{}` (not validated). Its calls'
    /// random seeds are keyed by a fresh random secret of its own, whatever the plugin's runtime
    /// has ([`Harness::set_seed_secret`] pins one).
    pub fn over(plugin: Plugin) -> anyhow::Result<Self> {
        let calls = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the test kit's runtime")?;
        Ok(Harness {
            plugin: plugin.with_seed_secret(SeedSecret::random()),
            calls,
            config: "{}".to_string(),
            grants: Vec::new(),
            now: 1_700_000_000_000,
            next_id: 1,
            resources: BTreeMap::new(),
            leases: BTreeMap::new(),
            supporting: BTreeMap::new(),
            exec_results: BTreeMap::new(),
            locks: BTreeMap::new(),
            logs: Vec::new(),
            responder: Box::new(|request| ExecResult {
                id: request.id.clone(),
                exit_code: None,
                stdout: String::new(),
                stderr: "the test harness has no exec responder; set one with Harness::on_exec"
                    .into(),
            }),
            suppliers: BTreeMap::new(),
            execs_for_real: false,
        })
    }

    /// `describe`.
    pub fn describe(&self) -> anyhow::Result<Description> {
        Ok(self.calls.block_on(self.plugin.describe())?.value)
    }

    /// `validate-config`; an error with the component's reason if it refuses `config`.
    pub fn validate_config(&self, config: &str) -> anyhow::Result<()> {
        let verdict = self.calls.block_on(self.plugin.validate_config(config))?;
        verdict
            .value
            .map_err(|reason| anyhow!("the component refused the config: {reason}"))
    }

    /// Validates `config` with the component and uses it for every later call.
    pub fn configure(&mut self, config: &str) -> anyhow::Result<()> {
        self.validate_config(config)?;
        self.config = config.to_string();
        Ok(())
    }

    /// The grants [`Harness::interface`] checks the component's interfaces against, as an
    /// operator's `blueprint add --grant` would.
    pub fn grant(&mut self, grants: &[Grant]) {
        self.grants = grants.to_vec();
    }

    /// Sets what `exec` actions return.
    pub fn on_exec(&mut self, responder: impl FnMut(&ExecRequest) -> ExecResult + 'static) {
        self.responder = Box::new(responder);
    }

    /// Satisfies supporting leases of `resource_type`: whenever a resource has requested one,
    /// it becomes active with `interface` before the next call, as if a blueprint of that type
    /// had served it (the interface stands for a host the operator granted).
    pub fn supply(
        &mut self,
        resource_type: &str,
        interface: CommandInterface,
    ) -> anyhow::Result<()> {
        grant::check_interface(&interface).map_err(|why| anyhow!(why))?;
        self.suppliers.insert(resource_type.to_string(), interface);
        Ok(())
    }

    /// Runs `exec` actions for real, through the interface of the supporting lease each names,
    /// with the daemon's own exec code (a process group, capped output, the time limit),
    /// instead of the responder. They run unconfined, as the test's own user: the daemon's
    /// sandbox (`exec::confine`) is not applied here.
    pub fn run_execs(&mut self) {
        self.execs_for_real = true;
    }

    /// Keys every later call's random seed with `secret` instead of the harness's random one:
    /// the same secret gives the same random bytes to the same call, run after run.
    pub fn set_seed_secret(&mut self, secret: SeedSecret) {
        self.plugin = self.plugin.with_seed_secret(secret);
    }

    /// Moves the harness clock forward.
    pub fn advance(&mut self, millis: u64) {
        self.now += millis;
    }

    /// The loaded plugin, for direct calls.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// A resource by id. Panics on an unknown id.
    pub fn resource(&self, id: &str) -> &ResourceSnapshot {
        &self.resources[id]
    }

    /// A lease by id. Panics on an unknown id.
    pub fn lease(&self, id: &str) -> &LeaseSnapshot {
        &self.leases[id]
    }

    /// Held slot locks: lock name to owner id.
    pub fn slot_locks(&self) -> &BTreeMap<String, String> {
        &self.locks
    }

    /// Log lines of one object, oldest first.
    pub fn logs(&self, object: &str) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|(owner, _)| owner == object)
            .map(|(_, line)| line.as_str())
            .collect()
    }

    /// The supporting leases a resource requested.
    pub fn supporting_leases(&self, resource: &str) -> &[SupportingLease] {
        self.supporting.get(resource).map_or(&[], Vec::as_slice)
    }

    /// A pending lease asking for `resource_type` with `attributes`.
    pub fn request_lease<'a>(
        &mut self,
        resource_type: &str,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<String> {
        let attributes: Attributes = attributes
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        action::check_attributes(&attributes, &action::Limits::default())
            .map_err(|e| anyhow!(e))?;
        let id = self.new_id('L');
        self.leases.insert(
            id.clone(),
            LeaseSnapshot {
                id: id.clone(),
                resource_type: resource_type.to_string(),
                status: LeaseStatus::Pending,
                attributes,
                resource_id: None,
                until: None,
            },
        );
        Ok(id)
    }

    /// `can-allocate-resource` for a lease, with the harness's live resources.
    pub fn can_allocate_resource(&self, lease: &str) -> anyhow::Result<AllocationVerdict> {
        let ctx = self.context(None, Some(lease), lease);
        Ok(self
            .calls
            .block_on(self.plugin.can_allocate_resource(&ctx))?
            .value)
    }

    /// Creates a pending resource for `lease` and calls `allocate-resource` on it.
    pub fn allocate_resource(&mut self, lease: &str) -> anyhow::Result<Applied> {
        let lease_type = self.lease(lease).resource_type.clone();
        let id = self.new_id('R');
        self.resources.insert(
            id.clone(),
            ResourceSnapshot {
                id: id.clone(),
                resource_type: lease_type,
                status: ResourceStatus::Pending,
                attributes: Attributes::new(),
                until: None,
            },
        );
        self.run(Hook::AllocateResource, &id, Some(&id), Some(lease))
    }

    /// `activate-resource`; done makes the resource active.
    pub fn activate_resource(&mut self, resource: &str) -> anyhow::Result<Applied> {
        let applied = self.run(Hook::ActivateResource, resource, Some(resource), None)?;
        self.on_done(&applied, |kit| {
            kit.set_resource_status(resource, ResourceStatus::Active)
        });
        Ok(applied)
    }

    /// `can-acquire-lease` for a lease on a resource.
    pub fn can_acquire_lease(&self, resource: &str, lease: &str) -> anyhow::Result<bool> {
        let ctx = self.context(Some(resource), Some(lease), lease);
        Ok(self
            .calls
            .block_on(self.plugin.can_acquire_lease(&ctx))?
            .value)
    }

    /// `acquire-lease`; done makes the lease acquired on the resource.
    pub fn acquire_lease(&mut self, resource: &str, lease: &str) -> anyhow::Result<Applied> {
        let applied = self.run(Hook::AcquireLease, lease, Some(resource), Some(lease))?;
        self.on_done(&applied, |kit| {
            let snapshot = kit.leases.get_mut(lease).expect("known lease");
            snapshot.status = LeaseStatus::Acquired;
            snapshot.resource_id = Some(resource.to_string());
        });
        Ok(applied)
    }

    /// `activate-lease`; done makes the lease active.
    pub fn activate_lease(&mut self, lease: &str) -> anyhow::Result<Applied> {
        let resource = self.held_resource(lease)?;
        let applied = self.run(Hook::ActivateLease, lease, Some(&resource), Some(lease))?;
        self.on_done(&applied, |kit| {
            kit.set_lease_status(lease, LeaseStatus::Active)
        });
        Ok(applied)
    }

    /// `interface` of a lease's resource, checked as the daemon checks it: against the
    /// grants ([`Harness::grant`]) and the resource's active supporting leases. The inner error
    /// says why the host would refuse it.
    pub fn interface(&self, lease: &str) -> anyhow::Result<Result<CommandInterface, String>> {
        let resource = self.held_resource(lease)?;
        let ctx = self.context(Some(&resource), Some(lease), lease);
        let beneath: Vec<Authorized> = ctx
            .supporting_leases
            .iter()
            .filter_map(|s| s.interface.clone())
            .collect();
        let interface = self.calls.block_on(self.plugin.interface(&ctx))?.value;
        Ok(interface.and_then(|interface| {
            grant::authorize(&interface, &self.grants, &beneath)
                .map(|authorized| authorized.interface)
                .map_err(|why| {
                    // Here the grants are the check's own, given with `--grant`.
                    let why = why.replace(grant::GRANT_COMMAND, "--grant ");
                    format!("the host would refuse it: {why}")
                })
        }))
    }

    /// Releases a lease and calls `release-lease`; done destroys it and frees its locks.
    pub fn release_lease(&mut self, lease: &str) -> anyhow::Result<Applied> {
        self.set_lease_status(lease, LeaseStatus::Released);
        let resource = self.lease(lease).resource_id.clone();
        let applied = self.run(Hook::ReleaseLease, lease, resource.as_deref(), Some(lease))?;
        self.on_done(&applied, |kit| {
            kit.set_lease_status(lease, LeaseStatus::Destroyed);
            kit.free_locks(lease);
        });
        Ok(applied)
    }

    /// Releases a resource and calls `destroy-resource`; done destroys it and frees its locks.
    pub fn destroy_resource(&mut self, resource: &str) -> anyhow::Result<Applied> {
        if self.resource(resource).status != ResourceStatus::Broken {
            self.set_resource_status(resource, ResourceStatus::Released);
        }
        let applied = self.run(Hook::DestroyResource, resource, Some(resource), None)?;
        self.on_done(&applied, |kit| {
            kit.set_resource_status(resource, ResourceStatus::Destroyed);
            kit.free_locks(resource);
        });
        Ok(applied)
    }

    /// Drives a new lease of `resource_type` along the whole happy path: allocate and activate
    /// a resource, acquire and activate the lease, ask for its interface, release the lease and
    /// destroy the resource. Stops at the first hook that does not finish with done (or a
    /// refusal), and says which in [`Lifecycle::failure`].
    pub fn lifecycle<'a>(
        &mut self,
        resource_type: &str,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Lifecycle {
        let mut run = Lifecycle::default();
        if let Err(error) = self.drive(resource_type, attributes, &mut run) {
            run.failure = Some(format!("{error:#}"));
        }
        run
    }

    fn drive<'a>(
        &mut self,
        resource_type: &str,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
        run: &mut Lifecycle,
    ) -> anyhow::Result<()> {
        let lease = self.request_lease(resource_type, attributes)?;
        run.lease = Some(lease.clone());
        match self.can_allocate_resource(&lease)? {
            AllocationVerdict::Yes => {}
            other => bail!("can-allocate-resource answered {other:?} for {lease}"),
        }
        let allocated = self.allocate_resource(&lease);
        run.resource = allocated.as_ref().ok().map(|a| a.object.clone());
        let resource = run.record(Hook::AllocateResource, allocated)?;
        run.record(Hook::ActivateResource, self.activate_resource(&resource))?;
        if !self.can_acquire_lease(&resource, &lease)? {
            bail!("can-acquire-lease refused {lease} on {resource}");
        }
        run.record(Hook::AcquireLease, self.acquire_lease(&resource, &lease))?;
        run.record(Hook::ActivateLease, self.activate_lease(&lease))?;
        let interface = self
            .interface(&lease)?
            .map_err(|reason| anyhow!("interface gave no command interface: {reason}"))?;
        run.interface = Some(interface);
        run.record(Hook::ReleaseLease, self.release_lease(&lease))?;
        run.record(Hook::DestroyResource, self.destroy_resource(&resource))?;
        Ok(())
    }

    fn new_id(&mut self, letter: char) -> String {
        self.next_id += 1;
        format!("{letter}{}", self.next_id - 1)
    }

    fn held_resource(&self, lease: &str) -> anyhow::Result<String> {
        self.lease(lease)
            .resource_id
            .clone()
            .with_context(|| format!("{lease} holds no resource yet"))
    }

    fn set_resource_status(&mut self, id: &str, status: ResourceStatus) {
        self.resources.get_mut(id).expect("known resource").status = status;
    }

    fn set_lease_status(&mut self, id: &str, status: LeaseStatus) {
        self.leases.get_mut(id).expect("known lease").status = status;
    }

    fn free_locks(&mut self, owner: &str) {
        self.locks.retain(|_, holder| holder != owner);
    }

    fn on_done(&mut self, applied: &Applied, then: impl FnOnce(&mut Self)) {
        if applied.last().outcome == Outcome::Done {
            then(self);
        }
    }

    /// The context of a call about `resource` and `lease` whose subject (whose exec results it
    /// sees) is `subject`.
    fn context(&self, resource: Option<&str>, lease: Option<&str>, subject: &str) -> CallContext {
        let depth = self.depth(subject);
        CallContext {
            config: self.config.clone(),
            now: self.now,
            resource: resource.map(|id| self.resource(id).clone()),
            lease: lease.map(|id| self.lease(id).clone()),
            supporting_leases: resource
                .map(|id| self.supporting_leases(id).to_vec())
                .unwrap_or_default(),
            exec_results: self.exec_results.get(subject).cloned().unwrap_or_default(),
            blueprint_resources: self
                .resources
                .values()
                .filter(|r| r.status != ResourceStatus::Destroyed)
                .cloned()
                .collect(),
            depth,
        }
    }

    /// How many supporting leases deep `object` sits (as the daemon counts it).
    fn depth(&self, object: &str) -> u32 {
        let parent = self.supporting.iter().find_map(|(resource, owned)| {
            owned
                .iter()
                .any(|s| s.lease.id == object)
                .then_some(resource)
        });
        parent.map_or(0, |resource| self.depth(resource) + 1)
    }

    /// Calls a step hook on `object`, applies each step, and runs execs until the hook stops asking.
    fn run(
        &mut self,
        hook: Hook,
        object: &str,
        resource: Option<&str>,
        lease: Option<&str>,
    ) -> anyhow::Result<Applied> {
        let mut applied = Applied {
            object: object.to_string(),
            steps: Vec::new(),
            output: String::new(),
        };
        for _ in 0..MAX_EXEC_ROUNDS {
            if let Some(resource) = resource {
                self.serve_supporting_leases(resource)?;
            }
            let ctx = self.context(resource, lease, object);
            let called = self.calls.block_on(self.plugin.step(hook, &ctx))?;
            applied.output.push_str(&called.output);
            let step = called.value;
            self.apply(object, &step)?;
            let execs = step.execs();
            applied.steps.push(step);
            if execs.is_empty() {
                if applied.last().outcome == Outcome::Done {
                    self.exec_results.remove(object);
                }
                return Ok(applied);
            }
            for request in &execs {
                let result = match (self.execs_for_real, resource) {
                    (true, Some(resource)) => self.exec_for_real(resource, request),
                    _ => (self.responder)(request),
                };
                self.exec_results
                    .entry(object.to_string())
                    .or_default()
                    .push(result);
            }
        }
        bail!("{hook} on {object} asked for execs {MAX_EXEC_ROUNDS} times in a row")
    }

    /// Makes active every pending supporting lease of `resource` whose type is supplied.
    fn serve_supporting_leases(&mut self, resource: &str) -> anyhow::Result<()> {
        let pending: Vec<(String, CommandInterface)> = self
            .supporting_leases(resource)
            .iter()
            .filter(|s| s.lease.status == LeaseStatus::Pending)
            .filter_map(|s| {
                let interface = self.suppliers.get(&s.lease.resource_type)?;
                Some((s.key.clone(), interface.clone()))
            })
            .collect();
        for (key, interface) in pending {
            self.grant_supporting_lease(resource, &key, interface)?;
        }
        Ok(())
    }

    /// Runs `request` through the interface of `resource`'s supporting lease it names.
    fn exec_for_real(&self, resource: &str, request: &ExecRequest) -> ExecResult {
        let supporting = self
            .supporting_leases(resource)
            .iter()
            .find(|s| s.key == request.lease_key);
        let reach = supporting.and_then(|s| s.interface.as_ref());
        match (supporting, reach) {
            (Some(through), Some(reach)) => {
                let ids = crate::exec::Ids::from(through);
                // Unconfined: the author's test runs as the author, where the author said.
                let confinement = crate::exec::Confinement::Unconfined;
                self.calls
                    .block_on(crate::exec::run(reach, request, &ids, &confinement))
            }
            _ => ExecResult {
                id: request.id.clone(),
                exit_code: None,
                stdout: String::new(),
                stderr: format!(
                    "{resource} has no active supporting lease {:?} to run through",
                    request.lease_key
                ),
            },
        }
    }

    /// Applies a validated step to the snapshots, all or nothing, as the daemon would.
    fn apply(&mut self, object: &str, step: &Step) -> anyhow::Result<()> {
        if let Outcome::Fail(reason) = &step.outcome {
            self.logs
                .push((object.to_string(), format!("failure: {reason}")));
            self.break_object(object);
            return Ok(());
        }
        for action in &step.actions {
            if let Action::TakeSlotLocks(names) = action
                && let Some((name, holder)) = names
                    .iter()
                    .find_map(|n| self.locks.get_key_value(n).filter(|(_, h)| *h != object))
            {
                bail!(
                    "slot lock {name:?} is held by {holder}: a temporary failure, retried later by the daemon"
                );
            }
        }
        for action in &step.actions {
            self.apply_action(object, action);
        }
        Ok(())
    }

    fn break_object(&mut self, object: &str) {
        if let Some(resource) = self.resources.get_mut(object) {
            resource.status = ResourceStatus::Broken;
        } else if let Some(lease) = self.leases.get_mut(object) {
            lease.status = LeaseStatus::Broken;
        }
    }

    fn attributes_mut(&mut self, object: &str) -> &mut Attributes {
        match self.resources.get_mut(object) {
            Some(resource) => &mut resource.attributes,
            None => {
                &mut self
                    .leases
                    .get_mut(object)
                    .expect("known object")
                    .attributes
            }
        }
    }

    fn apply_action(&mut self, object: &str, action: &Action) {
        match action {
            Action::SetAttribute { key, value } => {
                self.attributes_mut(object)
                    .insert(key.clone(), value.clone());
            }
            Action::RemoveAttribute(key) => {
                self.attributes_mut(object).remove(key);
            }
            Action::Log(line) => self.logs.push((object.to_string(), line.clone())),
            Action::TakeSlotLocks(names) => {
                for name in names {
                    self.locks.insert(name.clone(), object.to_string());
                }
            }
            Action::RequestLease(request) => {
                let id = self.new_id('L');
                let lease = LeaseSnapshot {
                    id,
                    resource_type: request.resource_type.clone(),
                    status: LeaseStatus::Pending,
                    attributes: request.attributes.clone(),
                    resource_id: None,
                    until: None,
                };
                self.leases.insert(lease.id.clone(), lease.clone());
                self.supporting
                    .entry(object.to_string())
                    .or_default()
                    .push(SupportingLease {
                        key: request.key.clone(),
                        lease,
                        interface: None,
                    });
            }
            Action::ReleaseLease(key) => {
                if let Some(owned) = self
                    .supporting
                    .get_mut(object)
                    .and_then(|list| list.iter_mut().find(|s| &s.key == key))
                {
                    owned.lease.status = LeaseStatus::Released;
                }
            }
            Action::Exec(_) => {}
            Action::SetUntil(until) => match self.resources.get_mut(object) {
                Some(resource) => resource.until = *until,
                None => self.leases.get_mut(object).expect("known object").until = *until,
            },
        }
    }

    /// Makes a supporting lease active with `interface`, as the daemon would once it is granted
    /// (the interface is taken as authorised: it stands for a host the operator granted).
    pub fn grant_supporting_lease(
        &mut self,
        resource: &str,
        key: &str,
        interface: CommandInterface,
    ) -> anyhow::Result<()> {
        grant::check_interface(&interface).map_err(|why| anyhow!(why))?;
        let owned = self
            .supporting
            .get_mut(resource)
            .and_then(|list| list.iter_mut().find(|s| s.key == key))
            .with_context(|| format!("{resource} has no supporting lease {key:?}"))?;
        owned.lease.status = LeaseStatus::Active;
        let anchor = match &interface {
            CommandInterface::Local { root } => Some(root.clone()),
            CommandInterface::Ssh { .. } => None,
        };
        owned.interface = Some(Authorized {
            interface,
            anchor,
            options: Default::default(),
        });
        Ok(())
    }
}
