//! # host-pool
//!
//! A Drydock blueprint of type `host`, like Drydock's Almanac host pool without Almanac: its
//! configuration lists hosts, it makes one resource per host (guarded by the slot lock
//! `host-pool.host(<name>)`), any number of leases share a host, and leases are active as soon as
//! they are acquired. A lease may ask for one host by name with the attribute `host`.
//!
//! ```json
//! {"hosts": [{"name": "local-1", "interface": {"type": "local", "root": "/tmp/drydock"}}]}
//! ```

mod config;

pub use config::{Config, Host, HostInterface};
use drydock_sdk::{
    AllocationVerdict, Attributes, Blueprint, Call, CommandInterface, Step, export_blueprint,
};
use std::time::Duration;

/// The host-pool blueprint.
pub struct HostPool;

/// The resource attribute that names the host a resource stands for.
pub const NAME_ATTRIBUTE: &str = "name";
/// The lease attribute that asks for one host by name.
pub const WANTED_HOST_ATTRIBUTE: &str = "host";

/// The slot lock that keeps one resource per host.
pub fn host_lock(name: &str) -> String {
    format!("host-pool.host({name})")
}

impl HostPool {
    /// Configured hosts that no live resource stands for and that the lease would take.
    fn free_hosts(call: &Call<Config>) -> impl Iterator<Item = &Host> {
        let wanted = call
            .context()
            .lease
            .as_ref()
            .and_then(|l| l.attribute(WANTED_HOST_ATTRIBUTE));
        call.config().hosts.iter().filter(move |host| {
            wanted.is_none_or(|w| w == host.name)
                && !call
                    .blueprint_resources()
                    .iter()
                    .any(|r| r.attribute(NAME_ATTRIBUTE) == Some(host.name.as_str()))
        })
    }
}

impl Blueprint for HostPool {
    type Config = Config;
    const NAME: &'static str = "host-pool";
    const RESOURCE_TYPE: &'static str = "host";
    const DESCRIPTION: &'static str = "A fixed pool of hosts reached through a local directory or \
        SSH. One resource per host; any number of leases share a host.";
    const CONFIG_SCHEMA: &'static str = config::SCHEMA;

    fn validate_config(config: &Config) -> Result<(), String> {
        config.validate()
    }

    fn can_allocate_resource(call: &Call<Config>) -> AllocationVerdict {
        let wanted = call.lease().attribute(WANTED_HOST_ATTRIBUTE);
        if wanted.is_some_and(|w| !call.config().hosts.iter().any(|h| h.name == w)) {
            return AllocationVerdict::Never;
        }
        match Self::free_hosts(call).next() {
            Some(_) => AllocationVerdict::Yes,
            None => AllocationVerdict::NotNow,
        }
    }

    fn allocate_resource(call: &Call<Config>) -> Step {
        match Self::free_hosts(call).next() {
            Some(host) => Step::done()
                .take_slot_locks([host_lock(&host.name)])
                .set_attribute(NAME_ATTRIBUTE, &host.name)
                .log(format!("allocated host {}", host.name)),
            None => Step::yield_for(Duration::from_secs(5))
                .log("every configured host already has a resource; waiting"),
        }
    }

    fn can_acquire_lease(call: &Call<Config>) -> bool {
        let wanted = call.lease().attribute(WANTED_HOST_ATTRIBUTE);
        wanted.is_none_or(|w| call.resource().attribute(NAME_ATTRIBUTE) == Some(w))
    }

    fn interface(call: &Call<Config>) -> Result<CommandInterface, String> {
        let name = call
            .resource()
            .attribute(NAME_ATTRIBUTE)
            .ok_or("the resource has no `name` attribute")?;
        let host = call
            .config()
            .hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| format!("host {name:?} is no longer in the configuration"))?;
        Ok(host.interface.to_command_interface())
    }
}

export_blueprint!(HostPool);

#[cfg(test)]
mod tests {
    use super::*;
    use drydock_sdk::testing::{attributes, lease, resource};

    fn config() -> Config {
        serde_json_config(
            r#"{"hosts": [
                {"name": "a", "interface": {"type": "local", "root": "/tmp/a"}},
                {"name": "b", "interface": {"type": "ssh", "host": "b.example", "user": "ci", "key_path": "/k"}}
            ]}"#,
        )
    }

    fn serde_json_config(text: &str) -> Config {
        drydock_sdk::serde_json::from_str(text).unwrap()
    }

    fn host_resource(id: &str, name: &str) -> drydock_sdk::ResourceSnapshot {
        let mut r = resource(id, "host");
        r.attributes = attributes([(NAME_ATTRIBUTE, name)]);
        r
    }

    #[test]
    fn allocates_each_host_once() {
        let call = Call::for_test(config())
            .with_lease(lease("L1", "host"))
            .with_blueprint_resources(vec![host_resource("R1", "a")]);
        assert_eq!(
            HostPool::can_allocate_resource(&call),
            AllocationVerdict::Yes
        );
        let step = HostPool::allocate_resource(&call);
        assert!(
            step.actions
                .contains(&drydock_sdk::Action::TakeSlotLocks(vec![
                    "host-pool.host(b)".into()
                ]))
        );

        let full =
            call.with_blueprint_resources(vec![host_resource("R1", "a"), host_resource("R2", "b")]);
        assert_eq!(
            HostPool::can_allocate_resource(&full),
            AllocationVerdict::NotNow
        );
        assert!(!HostPool::allocate_resource(&full).is_done());
    }

    #[test]
    fn a_lease_may_ask_for_one_host() {
        let mut wants_b = lease("L1", "host");
        wants_b.attributes = attributes([(WANTED_HOST_ATTRIBUTE, "b")]);
        let call = Call::for_test(config()).with_lease(wants_b.clone());
        assert_eq!(
            HostPool::can_allocate_resource(&call),
            AllocationVerdict::Yes
        );
        assert!(!HostPool::can_acquire_lease(
            &call.clone().with_resource(host_resource("R1", "a"))
        ));
        assert!(HostPool::can_acquire_lease(
            &call.with_resource(host_resource("R2", "b"))
        ));

        wants_b.attributes = attributes([(WANTED_HOST_ATTRIBUTE, "zzz")]);
        let unknown = Call::for_test(config()).with_lease(wants_b);
        assert_eq!(
            HostPool::can_allocate_resource(&unknown),
            AllocationVerdict::Never
        );
    }

    #[test]
    fn interface_comes_from_the_config() {
        let call = Call::for_test(config()).with_resource(host_resource("R2", "b"));
        match HostPool::interface(&call).unwrap() {
            CommandInterface::Ssh(ssh) => {
                assert_eq!(
                    (ssh.host.as_str(), ssh.port, ssh.user.as_str()),
                    ("b.example", 22, "ci")
                )
            }
            other => panic!("expected ssh, got {other:?}"),
        }
        let gone = Call::for_test(config()).with_resource(host_resource("R3", "c"));
        assert!(HostPool::interface(&gone).unwrap_err().contains("\"c\""));
    }
}
