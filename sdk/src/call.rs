//! [`Call`]: what a hook may look at, with the configuration already parsed.

use crate::{Attribute, Context, ExecResult, LeaseSnapshot, ResourceSnapshot, SupportingLease};

/// The read-only view a hook receives: the parsed configuration and the host's snapshots.
#[derive(Debug, Clone)]
pub struct Call<C> {
    config: C,
    context: Context,
}

impl<C> Call<C> {
    /// Pairs a parsed configuration with the context the host sent.
    pub fn new(config: C, context: Context) -> Self {
        Call { config, context }
    }

    /// A call with an empty context, for native unit tests; add snapshots with the `with_` methods.
    pub fn for_test(config: C) -> Self {
        Self::new(config, crate::testing::context())
    }

    /// The same call with `lease` as the lease under call.
    pub fn with_lease(mut self, lease: LeaseSnapshot) -> Self {
        self.context.lease = Some(lease);
        self
    }

    /// The same call with `resource` as the resource under call.
    pub fn with_resource(mut self, resource: ResourceSnapshot) -> Self {
        self.context.resource = Some(resource);
        self
    }

    /// The same call with these resources as the blueprint's live resources.
    pub fn with_blueprint_resources(mut self, resources: Vec<ResourceSnapshot>) -> Self {
        self.context.blueprint_resources = resources;
        self
    }

    /// The blueprint's configuration.
    pub fn config(&self) -> &C {
        &self.config
    }

    /// Everything the host sent, unparsed.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The current time, in ms since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.context.now
    }

    /// The resource under call.
    ///
    /// # Panics
    /// In a hook that has no resource (`can-allocate-resource`); the host always sends one to
    /// the others.
    pub fn resource(&self) -> &ResourceSnapshot {
        self.context
            .resource
            .as_ref()
            .expect("this hook is called without a resource")
    }

    /// The lease under call.
    ///
    /// # Panics
    /// In a hook that has no lease (`activate-resource`, `destroy-resource`).
    pub fn lease(&self) -> &LeaseSnapshot {
        self.context
            .lease
            .as_ref()
            .expect("this hook is called without a lease")
    }

    /// The blueprint's resources that are not destroyed.
    pub fn blueprint_resources(&self) -> &[ResourceSnapshot] {
        &self.context.blueprint_resources
    }

    /// The supporting lease requested under `key`, if any.
    pub fn supporting_lease(&self, key: &str) -> Option<&SupportingLease> {
        self.context
            .supporting_leases
            .iter()
            .find(|lease| lease.key == key)
    }

    /// The result of the exec action named `id`, once the host has run it.
    pub fn exec_result(&self, id: &str) -> Option<&ExecResult> {
        self.context.exec_results.iter().find(|r| r.id == id)
    }
}

impl<C> Call<C> {
    /// The resource's attribute `key`, if the call has a resource and it is set.
    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        use crate::Attributes;
        self.context.resource.as_ref()?.attribute(key)
    }
}

/// Sorted attribute list from key-value pairs, for tests and lease requests.
pub fn attributes<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<Attribute> {
    let mut list: Vec<Attribute> = pairs
        .into_iter()
        .map(|(k, v)| Attribute::new(k, v))
        .collect();
    list.sort_by(|a, b| a.key.cmp(&b.key));
    list
}
