//! Conversions between the generated bindings and the host's `domain` types.

use super::bindings::api;
use crate::domain::{
    Action, AllocationVerdict, Attributes, CallContext, CommandInterface, Description, ExecRequest,
    ExecResult, LeaseRequest, LeaseSnapshot, LeaseStatus, Outcome, ResourceSnapshot,
    ResourceStatus, Step, SupportingLease,
};

fn attributes_to_wit(attributes: &Attributes) -> Vec<api::Attribute> {
    attributes
        .iter()
        .map(|(key, value)| api::Attribute {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

/// Guest attribute lists become maps; a repeated key keeps its last value.
fn attributes_from_wit(attributes: Vec<api::Attribute>) -> Attributes {
    attributes.into_iter().map(|a| (a.key, a.value)).collect()
}

fn resource_status(status: ResourceStatus) -> api::ResourceStatus {
    match status {
        ResourceStatus::Pending => api::ResourceStatus::Pending,
        ResourceStatus::Active => api::ResourceStatus::Active,
        ResourceStatus::Released => api::ResourceStatus::Released,
        ResourceStatus::Broken => api::ResourceStatus::Broken,
        ResourceStatus::Destroyed => api::ResourceStatus::Destroyed,
    }
}

fn lease_status(status: LeaseStatus) -> api::LeaseStatus {
    match status {
        LeaseStatus::Pending => api::LeaseStatus::Pending,
        LeaseStatus::Acquired => api::LeaseStatus::Acquired,
        LeaseStatus::Active => api::LeaseStatus::Active,
        LeaseStatus::Released => api::LeaseStatus::Released,
        LeaseStatus::Broken => api::LeaseStatus::Broken,
        LeaseStatus::Destroyed => api::LeaseStatus::Destroyed,
    }
}

fn resource_to_wit(resource: &ResourceSnapshot) -> api::ResourceSnapshot {
    api::ResourceSnapshot {
        id: resource.id.clone(),
        resource_type: resource.resource_type.clone(),
        status: resource_status(resource.status),
        attributes: attributes_to_wit(&resource.attributes),
        until: resource.until,
    }
}

fn lease_to_wit(lease: &LeaseSnapshot) -> api::LeaseSnapshot {
    api::LeaseSnapshot {
        id: lease.id.clone(),
        resource_type: lease.resource_type.clone(),
        status: lease_status(lease.status),
        attributes: attributes_to_wit(&lease.attributes),
        resource_id: lease.resource_id.clone(),
        until: lease.until,
    }
}

fn interface_to_wit(interface: &CommandInterface) -> api::CommandInterface {
    match interface {
        CommandInterface::Local { root } => {
            api::CommandInterface::Local(api::LocalInterface { root: root.clone() })
        }
        CommandInterface::Ssh {
            host,
            port,
            user,
            key_path,
            root,
        } => api::CommandInterface::Ssh(api::SshInterface {
            host: host.clone(),
            port: *port,
            user: user.clone(),
            key_path: key_path.clone(),
            root: root.clone(),
        }),
    }
}

/// The host's interface type from the guest's.
pub fn interface_from_wit(interface: api::CommandInterface) -> CommandInterface {
    match interface {
        api::CommandInterface::Local(local) => CommandInterface::Local { root: local.root },
        api::CommandInterface::Ssh(ssh) => CommandInterface::Ssh {
            host: ssh.host,
            port: ssh.port,
            user: ssh.user,
            key_path: ssh.key_path,
            root: ssh.root,
        },
    }
}

fn exec_result_to_wit(result: &ExecResult) -> api::ExecResult {
    api::ExecResult {
        id: result.id.clone(),
        exit_code: result.exit_code,
        stdout: result.stdout.clone(),
        stderr: result.stderr.clone(),
    }
}

fn supporting_lease_to_wit(lease: &SupportingLease) -> api::SupportingLease {
    api::SupportingLease {
        key: lease.key.clone(),
        lease: lease_to_wit(&lease.lease),
        interface: lease
            .interface
            .as_ref()
            .map(|reach| interface_to_wit(&reach.interface)),
    }
}

/// The guest's context from the host's.
pub fn context_to_wit(ctx: &CallContext) -> api::Context {
    api::Context {
        config: ctx.config.clone(),
        now: ctx.now,
        resource: ctx.resource.as_ref().map(resource_to_wit),
        lease: ctx.lease.as_ref().map(lease_to_wit),
        supporting_leases: ctx
            .supporting_leases
            .iter()
            .map(supporting_lease_to_wit)
            .collect(),
        exec_results: ctx.exec_results.iter().map(exec_result_to_wit).collect(),
        blueprint_resources: ctx
            .blueprint_resources
            .iter()
            .map(resource_to_wit)
            .collect(),
    }
}

fn action_from_wit(action: api::Action) -> Action {
    match action {
        api::Action::SetAttribute(a) => Action::SetAttribute {
            key: a.key,
            value: a.value,
        },
        api::Action::RemoveAttribute(key) => Action::RemoveAttribute(key),
        api::Action::Log(message) => Action::Log(message),
        api::Action::TakeSlotLocks(names) => Action::TakeSlotLocks(names),
        api::Action::RequestLease(r) => Action::RequestLease(LeaseRequest {
            key: r.key,
            resource_type: r.resource_type,
            attributes: attributes_from_wit(r.attributes),
        }),
        api::Action::ReleaseLease(key) => Action::ReleaseLease(key),
        api::Action::Exec(e) => Action::Exec(ExecRequest {
            id: e.id,
            lease_key: e.lease_key,
            argv: e.argv,
            cwd: e.cwd,
            timeout_ms: e.timeout_ms,
        }),
        api::Action::SetUntil(until) => Action::SetUntil(until),
    }
}

/// The host's step from the guest's.
pub fn step_from_wit(step: api::Step) -> Step {
    Step {
        actions: step.actions.into_iter().map(action_from_wit).collect(),
        outcome: match step.outcome {
            api::Outcome::Done => Outcome::Done,
            api::Outcome::Yield(ms) => Outcome::Yield(ms),
            api::Outcome::Fail(reason) => Outcome::Fail(reason),
        },
    }
}

/// The host's verdict from the guest's.
pub fn verdict_from_wit(verdict: api::AllocationVerdict) -> AllocationVerdict {
    match verdict {
        api::AllocationVerdict::Never => AllocationVerdict::Never,
        api::AllocationVerdict::NotNow => AllocationVerdict::NotNow,
        api::AllocationVerdict::Yes => AllocationVerdict::Yes,
    }
}

/// The host's description from the guest's.
pub fn description_from_wit(description: api::Description) -> Description {
    Description {
        name: description.name,
        resource_type: description.resource_type,
        description: description.description,
        config_schema: description.config_schema,
    }
}
