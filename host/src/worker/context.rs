//! Loading blueprints' components, sharing calls fairly between blueprints, resolving command
//! interfaces against grants, and building the read-only snapshots a call receives.

use super::{RunError, Workers};
use crate::domain::{
    CallContext, LeaseSnapshot, LeaseStatus, ResourceSnapshot, Step, SupportingLease,
};
use crate::grant::{self, Authorized};
use crate::lock::Held;
use crate::plugin::{self, Hook, Plugin, Runtime};
use crate::store::{Blueprint, Lease, ObjectId, Resource, StepRecord, Store};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An authorised interface, or why there is none; or why the store could not say.
type InterfaceResult = Result<Result<Authorized, String>, RunError>;

/// How long a run waits for one of its blueprint's call slots before it steps aside.
const CALL_SLOT_WAIT: Duration = Duration::from_millis(100);

/// Compiled components by digest, loaded from the database on first use, and each blueprint's
/// call slots.
#[derive(Clone)]
pub struct Plugins {
    runtime: Runtime,
    loaded: Arc<Mutex<HashMap<String, Plugin>>>,
    slots: Arc<Mutex<HashMap<ObjectId, Arc<Semaphore>>>>,
    calls_per_blueprint: usize,
}

impl Plugins {
    /// An empty cache over `runtime`, allowing each blueprint `calls_per_blueprint` calls at
    /// once (so that one blueprint cannot take every worker).
    pub fn new(runtime: Runtime, calls_per_blueprint: usize) -> Self {
        Plugins {
            runtime,
            loaded: Arc::default(),
            slots: Arc::default(),
            calls_per_blueprint: calls_per_blueprint.max(1),
        }
    }

    /// The runtime components are loaded into.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The plugin for a blueprint's component.
    pub async fn get(&self, store: &dyn Store, blueprint: &Blueprint) -> Result<Plugin, RunError> {
        if let Some(plugin) = self.loaded.lock().unwrap().get(&blueprint.component) {
            return Ok(plugin.clone());
        }
        let wasm = store.component_get(&blueprint.component).await?;
        let runtime = self.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || runtime.load(&wasm))
            .await
            .map_err(|e| RunError::Temporary(format!("loading a component panicked: {e}")))?
            .map_err(|e| RunError::Temporary(format!("loading {}: {e}", blueprint.name)))?;
        self.loaded
            .lock()
            .unwrap()
            .insert(blueprint.component.clone(), plugin.clone());
        Ok(plugin)
    }

    /// One of the blueprint's call slots, or `Busy` if all stay taken for a moment.
    async fn call_slot(&self, blueprint: &Blueprint) -> Result<OwnedSemaphorePermit, RunError> {
        let slots = self
            .slots
            .lock()
            .unwrap()
            .entry(blueprint.id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.calls_per_blueprint)))
            .clone();
        match tokio::time::timeout(CALL_SLOT_WAIT, slots.acquire_owned()).await {
            Ok(permit) => Ok(permit.expect("call slots are never closed")),
            Err(_) => Err(RunError::Busy(format!(
                "blueprint {} already runs {} calls, its share of the workers; waiting",
                blueprint.name, self.calls_per_blueprint
            ))),
        }
    }

    /// How to reach `resource` for `lease`: its blueprint's `interface` export, checked against
    /// the blueprint's grants and the interfaces of the resource's own supporting leases. The
    /// inner error says why there is none.
    pub fn interface<'a>(
        &'a self,
        store: &'a dyn Store,
        lease: &'a Lease,
        resource: &'a Resource,
    ) -> Pin<Box<dyn Future<Output = InterfaceResult> + Send + 'a>> {
        Box::pin(async move {
            let blueprint = store.blueprint_get(resource.blueprint_id).await?;
            let plugin = self.get(store, &blueprint).await?;
            let supporting = self.supporting_leases(store, resource).await?;
            let beneath: Vec<Authorized> = supporting
                .iter()
                .filter_map(|s| s.interface.clone())
                .collect();
            let ctx = CallContext {
                config: blueprint.config.clone(),
                now: store.now(),
                resource: Some(resource_snapshot(resource)),
                lease: Some(lease_snapshot(lease)),
                supporting_leases: supporting,
                depth: resource.depth,
                ..CallContext::default()
            };
            let interface = match plugin.interface(&ctx).await {
                Ok(called) => called.value,
                Err(error) => Err(format!("the interface call failed: {error}")),
            };
            Ok(interface.and_then(|interface| {
                grant::authorize(&interface, &blueprint.grants, &beneath)
                    .map_err(|why| format!("{}'s interface was refused: {why}", blueprint.name))
            }))
        })
    }

    /// The supporting leases `resource` owns, with the interfaces of the active ones (none
    /// read for a resource that never requested one).
    pub async fn supporting_leases(
        &self,
        store: &dyn Store,
        resource: &Resource,
    ) -> Result<Vec<SupportingLease>, RunError> {
        let mut supporting = Vec::new();
        if resource.supporting == 0 {
            return Ok(supporting);
        }
        for lease in store.lease_list_supporting(resource.id).await? {
            let interface = match (lease.status, lease.resource_id) {
                (LeaseStatus::Active, Some(held)) => {
                    let held = store.resource_get(held).await?;
                    self.interface(store, &lease, &held).await?.inspect_err(|reason| {
                        tracing::warn!(lease = %lease.id, %reason, "no command interface")
                    })
                    .ok()
                }
                _ => None,
            };
            supporting.push(SupportingLease {
                key: lease.parent_key.clone().unwrap_or_default(),
                lease: lease_snapshot(&lease),
                interface,
            });
        }
        Ok(supporting)
    }

    /// Compiles every registered blueprint's component ahead of the first call.
    pub async fn preload(&self, store: &dyn Store) -> Result<(), RunError> {
        for blueprint in store.blueprint_list().await? {
            self.get(store, &blueprint).await?;
        }
        Ok(())
    }
}

/// A resource as its blueprint sees it.
pub fn resource_snapshot(resource: &Resource) -> ResourceSnapshot {
    ResourceSnapshot {
        id: resource.id.to_string(),
        resource_type: resource.resource_type.clone(),
        status: resource.status,
        attributes: resource.attributes.clone(),
        until: resource.until,
    }
}

/// A lease as a blueprint sees it.
pub fn lease_snapshot(lease: &Lease) -> LeaseSnapshot {
    LeaseSnapshot {
        id: lease.id.to_string(),
        resource_type: lease.resource_type.clone(),
        status: lease.status,
        attributes: lease.attributes.clone(),
        resource_id: lease.resource_id.map(|r| r.to_string()),
        until: lease.until,
    }
}

impl Workers {
    /// Calls `blueprint`'s `hook`: takes one of the blueprint's call slots (or steps aside
    /// with `Busy`), loads the component, and runs `call` with it, counting the call in the
    /// metrics. The inner result is the call's own: a permanent blueprint failure, for the
    /// caller to settle.
    pub(crate) async fn call<T, F>(
        &self,
        blueprint: &Blueprint,
        hook: Hook,
        call: impl FnOnce(Plugin) -> F,
    ) -> Result<Result<T, plugin::Error>, RunError>
    where
        F: Future<Output = Result<T, plugin::Error>>,
    {
        Ok(self.timed_call(blueprint, hook, call).await?.0)
    }

    /// [`Workers::call`], and how long the call itself took.
    async fn timed_call<T, F>(
        &self,
        blueprint: &Blueprint,
        hook: Hook,
        call: impl FnOnce(Plugin) -> F,
    ) -> Result<(Result<T, plugin::Error>, Duration), RunError>
    where
        F: Future<Output = Result<T, plugin::Error>>,
    {
        let _slot = self.plugins.call_slot(blueprint).await?;
        let plugin = self.plugins.get(self.store.as_ref(), blueprint).await?;
        let began = Instant::now();
        let result = call(plugin).await;
        let took = began.elapsed();
        let failure = result.as_ref().err().map(plugin::Error::kind);
        crate::metrics::global().blueprint_called(&blueprint.name, hook.name(), took, failure);
        Ok((result, took))
    }

    /// Calls the step hook `hook` of `blueprint` about `subject`, and keeps what it returned
    /// for the audit trail: the step goes into the next write the claim makes, applied or
    /// refused with it. A temporary failure (no free slot) is not a step and is not kept.
    pub(crate) async fn call_step(
        &self,
        held: &Held,
        blueprint: &Blueprint,
        hook: Hook,
        subject: ObjectId,
        ctx: CallContext,
    ) -> Result<Result<plugin::Called<Step>, plugin::Error>, RunError> {
        let (mut result, took) = self
            .timed_call(blueprint, hook, |plugin| async move {
                plugin.step(hook, &ctx).await
            })
            .await?;
        if let Ok(called) = &result
            && let Some(reason) = self.unauthorized_request(blueprint, &called.value).await?
        {
            result = Err(plugin::Error::NotAuthorized { hook, reason });
        }
        let (step, verdict) = match &result {
            Ok(called) => (
                Some(serde_json::to_string(&called.value).expect("a step serializes")),
                "applied".to_string(),
            ),
            Err(error) if error.is_temporary() => return Ok(result),
            Err(plugin::Error::InvalidStep { violation, .. }) => {
                (None, format!("refused: {violation}"))
            }
            Err(plugin::Error::NotAuthorized { reason, .. }) => {
                (None, format!("refused: {reason}"))
            }
            Err(error) => {
                let first_line = error.to_string().lines().next().unwrap_or("").to_string();
                (None, format!("failed: {first_line}"))
            }
        };
        held.audit(StepRecord {
            id: 0,
            object: subject,
            blueprint: blueprint.id,
            hook: hook.name().to_string(),
            step,
            verdict,
            duration_us: took.as_micros() as i64,
            created_at: self.store.now(),
        });
        Ok(result)
    }

    /// Why `blueprint` may not hold the first supporting lease `step` requests that it is not
    /// authorized to (see [`crate::authorization`]), checked against the grants as they stand
    /// now.
    async fn unauthorized_request(
        &self,
        blueprint: &Blueprint,
        step: &Step,
    ) -> Result<Option<String>, RunError> {
        let requested: Vec<&str> = step
            .actions
            .iter()
            .filter_map(|action| match action {
                crate::domain::Action::RequestLease(request) => {
                    Some(request.resource_type.as_str())
                }
                _ => None,
            })
            .collect();
        if requested.is_empty() {
            return Ok(None);
        }
        let blueprints = self.store.blueprint_list().await?;
        let requester = blueprints
            .iter()
            .find(|b| b.id == blueprint.id)
            .unwrap_or(blueprint);
        Ok(requested.iter().find_map(|resource_type| {
            crate::authorization::refusal(requester, resource_type, &blueprints)
        }))
    }

    /// The context for a call about `resource` and/or `lease` on `blueprint`. The supporting
    /// leases are the resource's, with their interfaces once active; exec results and depth are
    /// those of `subject`, the object under call.
    pub(crate) async fn context(
        &self,
        blueprint: &Blueprint,
        resource: Option<&Resource>,
        lease: Option<&Lease>,
        subject: ObjectId,
    ) -> Result<CallContext, RunError> {
        let supporting_leases = match resource {
            Some(resource) => {
                self.plugins
                    .supporting_leases(self.store.as_ref(), resource)
                    .await?
            }
            None => Vec::new(),
        };
        let (exec_results, depth) = match subject {
            ObjectId::Resource(_) => resource.map(|r| (r.exec_results.clone(), r.depth)),
            _ => lease.map(|l| (l.exec_results.clone(), l.depth)),
        }
        .unwrap_or_default();
        Ok(CallContext {
            config: blueprint.config.clone(),
            now: self.store.now(),
            resource: resource.map(resource_snapshot),
            lease: lease.map(lease_snapshot),
            supporting_leases,
            exec_results,
            blueprint_resources: Vec::new(),
            depth,
        })
    }
}
