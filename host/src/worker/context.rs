//! Loading blueprints' components and building the read-only snapshots a call receives.

use super::{RunError, Workers};
use crate::domain::{
    CallContext, CommandInterface, LeaseSnapshot, ResourceSnapshot, SupportingLease,
};
use crate::plugin::{Plugin, Runtime};
use crate::store::{Blueprint, Lease, ObjectId, Resource, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compiled components by digest, loaded from the database on first use.
#[derive(Clone)]
pub struct Plugins {
    runtime: Runtime,
    loaded: Arc<Mutex<HashMap<String, Plugin>>>,
}

impl Plugins {
    /// An empty cache over `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Plugins {
            runtime,
            loaded: Arc::default(),
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

    /// How to reach `resource` for `lease`: its blueprint's `interface` export. The inner
    /// error says why the blueprint gave none (or why the call failed).
    pub async fn interface(
        &self,
        store: &dyn Store,
        lease: &Lease,
        resource: &Resource,
    ) -> Result<Result<CommandInterface, String>, RunError> {
        let blueprint = store.blueprint_get(resource.blueprint_id).await?;
        let plugin = self.get(store, &blueprint).await?;
        let ctx = CallContext {
            config: blueprint.config.clone(),
            now: store.now(),
            resource: Some(resource_snapshot(resource)),
            lease: Some(lease_snapshot(lease)),
            ..CallContext::default()
        };
        Ok(match blocking(move || plugin.interface(&ctx)).await? {
            Ok(called) => called.value,
            Err(error) => Err(format!("the interface call failed: {error}")),
        })
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
    /// The plugin for a blueprint, keeping the claim alive while it is compiled.
    pub(crate) async fn plugin(
        &self,
        held: &crate::lock::Held,
        blueprint: &Blueprint,
    ) -> Result<Plugin, RunError> {
        held.keep_alive(self.plugins.get(self.store.as_ref(), blueprint))
            .await?
    }

    /// The context for a call about `resource` and/or `lease` on `blueprint`. The supporting
    /// leases are the resource's, with their interfaces once active; exec results are those of
    /// `subject`, the object under call.
    pub(crate) async fn context(
        &self,
        blueprint: &Blueprint,
        resource: Option<&Resource>,
        lease: Option<&Lease>,
        subject: ObjectId,
    ) -> Result<CallContext, RunError> {
        let supporting_leases = match resource {
            Some(resource) => self.supporting_leases(resource.id).await?,
            None => Vec::new(),
        };
        let exec_results = match subject {
            ObjectId::Resource(_) => resource.map(|r| r.exec_results.clone()),
            _ => lease.map(|l| l.exec_results.clone()),
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
        })
    }

    async fn supporting_leases(
        &self,
        resource: ObjectId,
    ) -> Result<Vec<SupportingLease>, RunError> {
        let mut supporting = Vec::new();
        for lease in self.store.lease_list_supporting(resource).await? {
            let interface = match (lease.status, lease.resource_id) {
                (crate::domain::LeaseStatus::Active, Some(held)) => {
                    self.interface_of(&lease, held).await?
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

    /// How to reach the resource a lease holds, from its blueprint's `interface` export; `None`
    /// (with a warning) if the blueprint cannot say.
    pub(crate) async fn interface_of(
        &self,
        lease: &Lease,
        resource: ObjectId,
    ) -> Result<Option<CommandInterface>, RunError> {
        let resource = self.store.resource_get(resource).await?;
        let interface = self
            .plugins
            .interface(self.store.as_ref(), lease, &resource)
            .await?;
        Ok(interface
            .inspect_err(|reason| {
                tracing::warn!(lease = %lease.id, %reason, "the blueprint gave no interface")
            })
            .ok())
    }
}

/// Runs a blueprint call on the blocking pool (calls are synchronous and CPU-bound), keeping the
/// claim alive meanwhile.
pub async fn guarded<T: Send + 'static>(
    held: &crate::lock::Held,
    call: impl FnOnce() -> Result<T, crate::plugin::Error> + Send + 'static,
) -> Result<Result<T, crate::plugin::Error>, RunError> {
    held.keep_alive(blocking(call)).await?
}

/// Runs a blueprint call on the blocking pool (calls are synchronous and CPU-bound).
pub async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, crate::plugin::Error> + Send + 'static,
) -> Result<Result<T, crate::plugin::Error>, RunError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| RunError::Temporary(format!("a blueprint call panicked the host: {e}")))
}
