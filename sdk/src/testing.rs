//! Snapshot builders for native unit tests of a blueprint's logic.
//!
//! To run a built component through a whole lifecycle, use the host's test kit
//! (`drydock_runtime::testkit`) instead.

use crate::{Context, LeaseSnapshot, LeaseStatus, ResourceSnapshot, ResourceStatus};

pub use crate::call::attributes;

/// An empty context at time 0.
pub fn context() -> Context {
    Context {
        config: "{}".into(),
        now: 0,
        resource: None,
        lease: None,
        supporting_leases: Vec::new(),
        exec_results: Vec::new(),
        blueprint_resources: Vec::new(),
    }
}

/// A pending lease with no attributes.
pub fn lease(id: &str, resource_type: &str) -> LeaseSnapshot {
    LeaseSnapshot {
        id: id.into(),
        resource_type: resource_type.into(),
        status: LeaseStatus::Pending,
        attributes: Vec::new(),
        resource_id: None,
        until: None,
    }
}

/// A pending resource with no attributes.
pub fn resource(id: &str, resource_type: &str) -> ResourceSnapshot {
    ResourceSnapshot {
        id: id.into(),
        resource_type: resource_type.into(),
        status: ResourceStatus::Pending,
        attributes: Vec::new(),
        until: None,
    }
}
