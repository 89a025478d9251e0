//! What a CLI command asks of Drydock, whichever way it reaches it: the database directly
//! ([`Direct`], the default), or a daemon's HTTP API (`--server`: `super::remote::Remote`).
//! Commands are written once against [`Service`]; their output is the same either way.

use crate::ops::{self, LeaseDetail, ListFilter, ResourceDetail};
use crate::plugin::Runtime;
use crate::queue::Queue;
use crate::store::{
    Blueprint, BlueprintSwitch, Command, CommandFilter, CommandKind, Lease, LogEntry, ObjectId,
    Page, Resource, StepRecord, Store,
};
use std::sync::Arc;

/// The operations the CLI's remote-capable commands use.
#[async_trait::async_trait]
pub(super) trait Service: Send + Sync {
    /// Requests leases; they are owned by the caller (`cli:$USER` directly, the token's name
    /// through a server).
    async fn request_leases(&self, request: ops::LeaseRequest) -> anyhow::Result<ops::Requested>;

    /// A lease with its place in the work queue.
    async fn lease(&self, id: ObjectId) -> anyhow::Result<LeaseDetail>;

    /// A page of leases.
    async fn leases(&self, filter: &ListFilter) -> anyhow::Result<Page<Lease>>;

    /// A resource with its leases and slot locks.
    async fn resource(&self, id: ObjectId) -> anyhow::Result<ResourceDetail>;

    /// A page of resources.
    async fn resources(&self, filter: &ListFilter) -> anyhow::Result<Page<Resource>>;

    /// Queues `kind` for every target, all or none.
    async fn post_all(
        &self,
        targets: &[ObjectId],
        kind: CommandKind,
    ) -> anyhow::Result<Vec<Command>>;

    /// Commands, queued and consumed.
    async fn commands(&self, filter: &CommandFilter) -> anyhow::Result<Vec<Command>>;

    /// The newest `limit` log entries, of one object or all, oldest first.
    async fn log_last(&self, object: Option<ObjectId>, limit: i64)
    -> anyhow::Result<Vec<LogEntry>>;

    /// An object's log entries after the entry `after`, oldest first.
    async fn log_after(&self, object: ObjectId, after: i64) -> anyhow::Result<Vec<LogEntry>>;

    /// The newest `limit` steps of an object's audit trail, oldest first.
    async fn steps_last(&self, object: ObjectId, limit: i64) -> anyhow::Result<Vec<StepRecord>>;

    /// Every blueprint.
    async fn blueprints(&self) -> anyhow::Result<Vec<Blueprint>>;

    /// A blueprint by id or name.
    async fn blueprint(&self, text: &str) -> anyhow::Result<Blueprint>;

    /// Registers a blueprint, validated by a runtime taking components up to
    /// `max_component_bytes` (the server's own limit, through a server).
    async fn add_blueprint(
        &self,
        request: ops::BlueprintRequest,
        max_component_bytes: usize,
    ) -> anyhow::Result<Blueprint>;

    /// Switches a blueprint to a new component and/or config.
    async fn update_blueprint(
        &self,
        text: &str,
        change: (Option<Vec<u8>>, Option<String>),
        max_component_bytes: usize,
    ) -> anyhow::Result<Blueprint>;

    /// Enables, disables or resets a blueprint.
    async fn switch_blueprint(
        &self,
        text: &str,
        switch: BlueprintSwitch,
    ) -> anyhow::Result<Blueprint>;

    /// Adds and takes away grants.
    async fn change_grants(
        &self,
        text: &str,
        grant: &[String],
        revoke: &[String],
    ) -> anyhow::Result<Blueprint>;

    /// Changes limits (`KEY=VALUE`).
    async fn change_limits(&self, text: &str, changes: &[String]) -> anyhow::Result<Blueprint>;

    /// Leases `release --all` releases: those that can still take a release, except
    /// supporting leases (which go with their resources) and, through a server, leases the
    /// token may not release.
    async fn releasable_leases(&self) -> anyhow::Result<Vec<ObjectId>>;

    /// Resources `resource release --all` releases: those that can still take a release.
    async fn releasable_resources(&self) -> anyhow::Result<Vec<ObjectId>>;

    /// How many daemons serve the database, where that can be told (directly): a wait warns
    /// when none does.
    async fn serving_daemons(&self) -> Option<usize>;
}

/// The database itself: what every command did before `--server`.
pub(super) struct Direct {
    store: Arc<dyn Store>,
}

impl Direct {
    /// Commands on `store`.
    pub(super) fn new(store: Arc<dyn Store>) -> Self {
        Direct { store }
    }

    /// The runtime that validates components for `add` and `update`.
    fn runtime(max_component_bytes: usize) -> anyhow::Result<Runtime> {
        Runtime::new(crate::plugin::RuntimeConfig {
            max_component_bytes,
            ..crate::plugin::RuntimeConfig::default()
        })
    }
}

#[async_trait::async_trait]
impl Service for Direct {
    async fn request_leases(&self, request: ops::LeaseRequest) -> anyhow::Result<ops::Requested> {
        Ok(ops::request_leases(self.store.as_ref(), request, &super::author()).await?)
    }

    async fn lease(&self, id: ObjectId) -> anyhow::Result<LeaseDetail> {
        Ok(ops::lease_detail(self.store.as_ref(), id).await?)
    }

    async fn leases(&self, filter: &ListFilter) -> anyhow::Result<Page<Lease>> {
        let store = self.store.as_ref();
        let query = ops::list_query::<crate::domain::LeaseStatus>(store, filter, "lease").await?;
        Ok(store.lease_page(&query).await?)
    }

    async fn resource(&self, id: ObjectId) -> anyhow::Result<ResourceDetail> {
        Ok(ops::resource_detail(self.store.as_ref(), id).await?)
    }

    async fn resources(&self, filter: &ListFilter) -> anyhow::Result<Page<Resource>> {
        let store = self.store.as_ref();
        let query =
            ops::list_query::<crate::domain::ResourceStatus>(store, filter, "resource").await?;
        Ok(store.resource_page(&query).await?)
    }

    async fn post_all(
        &self,
        targets: &[ObjectId],
        kind: CommandKind,
    ) -> anyhow::Result<Vec<Command>> {
        let queue = Queue::new(self.store.clone());
        Ok(ops::post_all(&queue, targets, kind, &super::author()).await?)
    }

    async fn commands(&self, filter: &CommandFilter) -> anyhow::Result<Vec<Command>> {
        Ok(self.store.command_list(filter).await?)
    }

    async fn log_last(
        &self,
        object: Option<ObjectId>,
        limit: i64,
    ) -> anyhow::Result<Vec<LogEntry>> {
        Ok(ops::log_last(self.store.as_ref(), object, limit).await?)
    }

    async fn log_after(&self, object: ObjectId, after: i64) -> anyhow::Result<Vec<LogEntry>> {
        Ok(self.store.log_list(Some(object), after, 1000).await?)
    }

    async fn steps_last(&self, object: ObjectId, limit: i64) -> anyhow::Result<Vec<StepRecord>> {
        Ok(ops::steps_last(self.store.as_ref(), object, limit).await?)
    }

    async fn blueprints(&self) -> anyhow::Result<Vec<Blueprint>> {
        Ok(self.store.blueprint_list().await?)
    }

    async fn blueprint(&self, text: &str) -> anyhow::Result<Blueprint> {
        Ok(ops::find_blueprint(self.store.as_ref(), text).await?)
    }

    async fn add_blueprint(
        &self,
        request: ops::BlueprintRequest,
        max_component_bytes: usize,
    ) -> anyhow::Result<Blueprint> {
        let runtime = Direct::runtime(max_component_bytes)?;
        Ok(ops::add_blueprint(self.store.as_ref(), &runtime, request).await?)
    }

    async fn update_blueprint(
        &self,
        text: &str,
        change: (Option<Vec<u8>>, Option<String>),
        max_component_bytes: usize,
    ) -> anyhow::Result<Blueprint> {
        let runtime = Direct::runtime(max_component_bytes)?;
        let store = self.store.as_ref();
        let blueprint = ops::find_blueprint(store, text).await?;
        let author = super::author();
        Ok(ops::update_blueprint(store, &runtime, &blueprint, change, &author).await?)
    }

    async fn switch_blueprint(
        &self,
        text: &str,
        switch: BlueprintSwitch,
    ) -> anyhow::Result<Blueprint> {
        let blueprint = ops::find_blueprint(self.store.as_ref(), text).await?;
        Ok(self.store.blueprint_switch(blueprint.id, switch).await?)
    }

    async fn change_grants(
        &self,
        text: &str,
        grant: &[String],
        revoke: &[String],
    ) -> anyhow::Result<Blueprint> {
        let store = self.store.as_ref();
        let blueprint = ops::find_blueprint(store, text).await?;
        let author = super::author();
        Ok(ops::change_grants(store, &blueprint, grant, revoke, &author).await?)
    }

    async fn change_limits(&self, text: &str, changes: &[String]) -> anyhow::Result<Blueprint> {
        let store = self.store.as_ref();
        let blueprint = ops::find_blueprint(store, text).await?;
        let author = super::author();
        Ok(ops::change_limits(store, &blueprint, changes, &author).await?)
    }

    async fn releasable_leases(&self) -> anyhow::Result<Vec<ObjectId>> {
        let leases = self.store.lease_list(None).await?;
        Ok(leases
            .into_iter()
            .filter(|l| l.status.is_releasable() && l.parent_resource_id.is_none())
            .map(|l| l.id)
            .collect())
    }

    async fn releasable_resources(&self) -> anyhow::Result<Vec<ObjectId>> {
        let resources = self.store.resource_list(None).await?;
        Ok(resources
            .into_iter()
            .filter(|r| r.status.is_releasable())
            .map(|r| r.id)
            .collect())
    }

    async fn serving_daemons(&self) -> Option<usize> {
        self.store.listening_daemons().await
    }
}
