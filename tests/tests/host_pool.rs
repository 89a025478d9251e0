//! The host-pool blueprint, driven through the author's test kit: its whole lifecycle and its
//! refusals.

use drydock_host::domain::{
    Action, AllocationVerdict, CallContext, CommandInterface, LeaseStatus, Outcome, ResourceStatus,
};
use drydock_host::plugin::{Plugin, Runtime, RuntimeConfig};
use drydock_host::testkit::Harness;
use drydock_tests::{HOST_POOL_CONFIG, HOST_POOL_WASM, LIFECYCLE_HOOKS};
use std::path::Path;
use std::sync::OnceLock;

const TWO_HOSTS: &str = r#"{"hosts": [
    {"name": "local-1", "interface": {"type": "local", "root": "/tmp/drydock"}},
    {"name": "remote-1", "interface": {"type": "ssh", "host": "build.example", "port": 2222, "user": "ci", "key_path": "/etc/drydock/id"}}
]}"#;

/// The component, compiled once per test binary.
fn plugin() -> Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let runtime = Runtime::new(RuntimeConfig {
                cache_dir: None,
                ..RuntimeConfig::default()
            })
            .unwrap();
            runtime.load_file(Path::new(HOST_POOL_WASM)).unwrap()
        })
        .clone()
}

/// A kit with the grants an operator would give the pool's hosts.
fn harness(config: &str) -> Harness {
    let mut kit = Harness::new(plugin(), config).unwrap();
    let grants = [
        "local:/tmp/drydock",
        "ssh:ci@build.example",
        "ssh-key:/etc/drydock",
    ];
    kit.grant(&grants.map(|g| g.parse().unwrap()));
    kit
}

/// Runs one call to the component outside a kit.
fn block<F: Future>(call: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(call)
}

#[test]
fn describes_itself_as_a_host_blueprint() {
    let description = block(plugin().describe()).unwrap().value;
    assert_eq!(description.name, "host-pool");
    assert_eq!(description.resource_type, "host");
    assert_eq!(plugin().contract_version(), "0.2.0");
    let schema: serde_json::Value = serde_json::from_str(&description.config_schema).unwrap();
    assert_eq!(schema["required"][0], "hosts");
}

#[test]
fn a_lease_goes_through_its_whole_life() {
    let mut kit = harness(HOST_POOL_CONFIG);
    let lease = kit.request_lease("host", []).unwrap();
    assert_eq!(
        kit.can_allocate_resource(&lease).unwrap(),
        AllocationVerdict::Yes
    );

    let allocated = kit.allocate_resource(&lease).unwrap();
    assert!(
        allocated
            .last()
            .actions
            .contains(&Action::TakeSlotLocks(vec![
                "host-pool.host(local-1)".into()
            ]))
    );
    let resource = allocated.done().unwrap();
    assert_eq!(kit.resource(&resource).attributes["name"], "local-1");
    assert_eq!(kit.resource(&resource).status, ResourceStatus::Pending);
    assert_eq!(kit.slot_locks()["host-pool.host(local-1)"], resource);
    assert_eq!(kit.logs(&resource), ["allocated host local-1"]);

    kit.activate_resource(&resource).unwrap().done().unwrap();
    assert_eq!(kit.resource(&resource).status, ResourceStatus::Active);

    assert!(kit.can_acquire_lease(&resource, &lease).unwrap());
    kit.acquire_lease(&resource, &lease)
        .unwrap()
        .done()
        .unwrap();
    assert_eq!(kit.lease(&lease).status, LeaseStatus::Acquired);
    kit.activate_lease(&lease).unwrap().done().unwrap();
    assert_eq!(kit.lease(&lease).status, LeaseStatus::Active);
    assert_eq!(
        kit.interface(&lease).unwrap().unwrap(),
        CommandInterface::Local {
            root: "/tmp/drydock".into()
        }
    );

    let released = kit.release_lease(&lease).unwrap();
    assert!(released.last().actions.is_empty());
    assert_eq!(kit.lease(&lease).status, LeaseStatus::Destroyed);

    kit.destroy_resource(&resource).unwrap().done().unwrap();
    assert_eq!(kit.resource(&resource).status, ResourceStatus::Destroyed);
    assert!(kit.slot_locks().is_empty());
}

#[test]
fn each_host_gets_one_resource_and_leases_share_it() {
    let mut kit = harness(TWO_HOSTS);
    let first = kit.request_lease("host", []).unwrap();
    let r1 = kit.allocate_resource(&first).unwrap().done().unwrap();
    let second = kit.request_lease("host", []).unwrap();
    let r2 = kit.allocate_resource(&second).unwrap().done().unwrap();
    assert_eq!(kit.resource(&r1).attributes["name"], "local-1");
    assert_eq!(kit.resource(&r2).attributes["name"], "remote-1");

    let third = kit.request_lease("host", []).unwrap();
    assert_eq!(
        kit.can_allocate_resource(&third).unwrap(),
        AllocationVerdict::NotNow
    );
    let waiting = kit.allocate_resource(&third).unwrap();
    assert!(matches!(waiting.last().outcome, Outcome::Yield(_)));

    // Any number of leases on one host.
    for lease in [&first, &third] {
        kit.activate_resource(&r1).unwrap();
        assert!(kit.can_acquire_lease(&r1, lease).unwrap());
        kit.acquire_lease(&r1, lease).unwrap().done().unwrap();
        kit.activate_lease(lease).unwrap().done().unwrap();
    }
    assert_eq!(kit.lease(&third).resource_id.as_deref(), Some(r1.as_str()));
}

#[test]
fn a_lease_can_ask_for_a_host_by_name() {
    let mut kit = harness(TWO_HOSTS);
    let lease = kit.request_lease("host", [("host", "remote-1")]).unwrap();
    let resource = kit.allocate_resource(&lease).unwrap().done().unwrap();
    assert_eq!(kit.resource(&resource).attributes["name"], "remote-1");
    kit.activate_resource(&resource).unwrap();
    kit.acquire_lease(&resource, &lease).unwrap();
    assert_eq!(
        kit.interface(&lease).unwrap().unwrap(),
        CommandInterface::Ssh {
            host: "build.example".into(),
            port: 2222,
            user: "ci".into(),
            key_path: "/etc/drydock/id".into(),
            root: None,
        }
    );

    let other = kit.request_lease("host", [("host", "local-1")]).unwrap();
    assert!(!kit.can_acquire_lease(&resource, &other).unwrap());
    let nowhere = kit.request_lease("host", [("host", "nope")]).unwrap();
    assert_eq!(
        kit.can_allocate_resource(&nowhere).unwrap(),
        AllocationVerdict::Never
    );
}

#[test]
fn invalid_configs_are_refused_with_the_reason() {
    let cases = [
        (r#"{"hosts": []}"#, "`hosts` is empty"),
        (r#"{}"#, "missing field `hosts`"),
        (
            r#"{"hosts": [{"name": "a", "interface": {"type": "local", "root": "/a"}}, {"name": "a", "interface": {"type": "local", "root": "/b"}}]}"#,
            "duplicate host name \"a\"",
        ),
        (
            r#"{"hosts": [{"name": "a", "interface": {"type": "ssh", "host": "h", "user": "u", "key_path": "relative"}}]}"#,
            "must be an absolute path",
        ),
        (
            r#"{"hosts": [{"name": "a", "interface": {"type": "telnet"}}]}"#,
            "unknown variant `telnet`",
        ),
        ("not json", "expected ident"),
    ];
    for (config, expected) in cases {
        let verdict = block(plugin().validate_config(config)).unwrap().value;
        let reason = verdict.expect_err(config);
        assert!(
            reason.contains(expected),
            "{config}: {reason:?} lacks {expected:?}"
        );
        let error = Harness::new(plugin(), config).err().unwrap();
        assert!(error.to_string().contains(expected));
    }
}

#[test]
fn a_hook_called_with_a_bad_config_fails_the_object() {
    let mut kit = harness(HOST_POOL_CONFIG);
    let lease = kit.request_lease("host", []).unwrap();
    let ctx = CallContext {
        config: r#"{"hosts": []}"#.into(),
        lease: Some(kit.lease(&lease).clone()),
        ..Default::default()
    };
    let step = block(plugin().allocate_resource(&ctx)).unwrap().value;
    assert_eq!(
        step.outcome,
        Outcome::Fail("invalid config: `hosts` is empty: list at least one host".into())
    );
}

#[test]
fn the_kit_drives_the_whole_lifecycle_in_one_call() {
    let mut kit = harness(TWO_HOSTS);
    let run = kit.lifecycle("host", [("host", "remote-1")]);
    assert_eq!(run.failure, None);
    let hooks: Vec<&str> = run.calls.iter().map(|c| c.hook.as_str()).collect();
    assert_eq!(hooks, LIFECYCLE_HOOKS);
    assert!(matches!(
        run.interface,
        Some(CommandInterface::Ssh { ref host, .. }) if host == "build.example"
    ));
    assert!(kit.slot_locks().is_empty());

    // Without the grant an operator gives, the host would refuse the interface.
    let mut ungranted = Harness::new(plugin(), TWO_HOSTS).unwrap();
    let run = ungranted.lifecycle("host", [("host", "remote-1")]);
    let failure = run.failure.unwrap();
    assert!(
        failure.contains("the host would refuse it: the SSH target ci@build.example:2222"),
        "{failure}"
    );
    // What would allow it is said as the check takes it.
    assert!(
        failure.contains("`--grant ssh:ci@build.example`") && !failure.contains("NAME"),
        "{failure}"
    );

    // A lease no host can serve stops at the first refusal, and says so.
    let run = harness(HOST_POOL_CONFIG).lifecycle("host", [("host", "nowhere")]);
    assert!(run.calls.is_empty());
    let failure = run.failure.unwrap();
    assert!(
        failure.contains("can-allocate-resource answered"),
        "{failure}"
    );
}
