//! Invariant I4: purpose-built hostile components are stopped, contained or refused, with an
//! error an operator can act on.

use drydock_host::domain::{Action, CallContext, LeaseSnapshot, LeaseStatus, Outcome};
use drydock_host::plugin::{Error, Plugin, Runtime, RuntimeConfig, SeedSecret};
use drydock_tests::{FUTURE_CONTRACT_WASM, MISBEHAVE_WASM, SLEEPY_WASM, WRONG_SHAPE_WASM};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MEMORY_LIMIT: usize = 32 << 20;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            call_timeout: Duration::from_millis(300),
            memory_limit: MEMORY_LIMIT,
            cache_dir: None,
            ..RuntimeConfig::default()
        })
        .unwrap()
    })
}

/// The misbehaving component, compiled once per test binary.
fn misbehave() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| runtime().load_file(Path::new(MISBEHAVE_WASM)).unwrap())
}

async fn allocate(
    config: &str,
) -> Result<drydock_host::plugin::Called<drydock_host::domain::Step>, Error> {
    let ctx = CallContext {
        config: config.to_string(),
        ..CallContext::default()
    };
    misbehave().allocate_resource(&ctx).await
}

fn mode(mode: &str) -> String {
    format!(r#"{{"mode": "{mode}"}}"#)
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_deadline() {
    let started = Instant::now();
    let error = allocate(&mode("loop")).await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("allocate-resource exceeded its 300ms deadline and was stopped"),
        "{message}"
    );
    assert!(!error.is_temporary());
    // Generous: the point is that it stops at all, not how fast.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_cap() {
    let error = allocate(&mode("memory")).await.unwrap_err();
    let Error::MemoryLimit { wanted, limit, .. } = &error else {
        panic!("expected a memory limit error, got {error:?}");
    };
    assert_eq!(*limit, MEMORY_LIMIT);
    assert!(*wanted > MEMORY_LIMIT);
    assert!(
        error.to_string().contains("over the 33554432 byte limit"),
        "{error}"
    );
}

#[tokio::test]
async fn a_trap_is_a_permanent_failure_with_the_panic_message() {
    let error = allocate(&mode("trap")).await.unwrap_err();
    assert!(matches!(error, Error::Trap { .. }), "{error:?}");
    let message = error.to_string();
    // The guest's own words first, the backtrace after.
    assert!(
        message.starts_with("allocate-resource trapped: deliberate trap\n"),
        "{message}"
    );
    assert!(message.contains("wasm backtrace"), "{message}");
    assert!(!error.is_temporary());
}

#[tokio::test]
async fn wasi_grants_no_files_env_args_stdin_or_network() {
    // SAFETY-free way to be sure there is something to leak: the test process has env vars.
    assert!(std::env::vars().count() > 0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let step = allocate(&format!(r#"{{"mode": "wasi", "port": {port}}}"#))
        .await
        .unwrap()
        .value;
    let logs: Vec<String> = step
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(line) => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 6, "{logs:?}");
    assert!(logs[0].starts_with("file: error"), "{logs:?}");
    assert!(logs[1].starts_with("dir: error"), "{logs:?}");
    assert_eq!(logs[2], "env: 0 variables");
    assert_eq!(logs[3], "args: 0");
    assert_eq!(logs[4], "stdin: 0 bytes");
    assert!(logs[5].starts_with("network: error"), "{logs:?}");
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the guest reached the host's socket: {accepted:?}"
    );
}

#[tokio::test]
async fn a_flood_of_actions_is_rejected() {
    let error = allocate(&mode("flood")).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::InvalidStep { .. }), "{error:?}");
    assert!(
        message.contains("allocate-resource returned an invalid step: the step has 10000 actions; the limit is 256"),
        "{message}"
    );
}

#[tokio::test]
async fn a_huge_attribute_value_is_rejected() {
    let error = allocate(&mode("huge")).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("action 0: attribute \"blob\" has a 262144 byte value"),
        "{error}"
    );
}

#[tokio::test]
async fn an_action_on_a_lease_the_object_does_not_own_is_rejected() {
    let error = allocate(&mode("foreign")).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("\"someone-elses-lease\" is not a supporting lease of the object under call"),
        "{error}"
    );
}

#[tokio::test]
async fn guest_output_is_captured_and_attached_to_the_result() {
    let called = allocate(&mode("chatty")).await.unwrap();
    assert_eq!(called.value.outcome, Outcome::Done);
    assert_eq!(
        called.output,
        "[stdout] hello from stdout\n[stderr] hello from stderr\n"
    );
}

#[tokio::test]
async fn guest_output_beyond_the_cap_is_dropped_not_fatal() {
    let called = allocate(&mode("shout")).await.unwrap();
    assert_eq!(called.value.outcome, Outcome::Done);
    // What was printed up to the cap is kept, and the rest counted.
    assert!(
        called.output.len() > 60_000 && called.output.len() < 70_000,
        "{}",
        called.output.len()
    );
    let dropped = 1024 * 1025 - 64 * 1024;
    assert!(
        called
            .output
            .trim_end()
            .ends_with(&format!("({dropped} more bytes dropped)")),
        "{}",
        &called.output[called.output.len() - 80..]
    );
}

#[tokio::test]
async fn a_component_for_another_contract_version_is_refused_naming_both() {
    let error = runtime()
        .load(&std::fs::read(FUTURE_CONTRACT_WASM).unwrap())
        .err()
        .expect("the future component must be refused");
    assert!(
        matches!(error, Error::IncompatibleContract { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("drydock:blueprint@0.3.0"), "{message}");
    assert!(message.contains("drydock:blueprint@0.2.0"), "{message}");
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused() {
    let error = runtime().load(b"\0asm not really").err().unwrap();
    assert!(
        error
            .to_string()
            .starts_with("not a valid WebAssembly component"),
        "{error}"
    );
}

#[tokio::test]
async fn each_call_gets_a_fresh_instance_after_a_failure() {
    assert!(allocate(&mode("trap")).await.is_err());
    let called = allocate(&mode("chatty")).await.unwrap();
    assert_eq!(called.value.outcome, Outcome::Done);
}

#[tokio::test]
async fn a_blocking_sleep_is_stopped_at_the_deadline() {
    let started = Instant::now();
    let error = allocate(&mode("sleep")).await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout { blocking: true, .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("exceeded its 300ms deadline in a blocking call"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn describe_and_validate_config_cannot_sleep_past_the_deadline() {
    let sleepy = runtime().load_file(Path::new(SLEEPY_WASM)).unwrap();
    let started = Instant::now();
    let error = sleepy.describe().await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("describe exceeded its 300ms deadline in a blocking call"),
        "{error}"
    );
    let error = sleepy.validate_config("{}").await.unwrap_err();
    assert!(
        error.to_string().contains("validate-config exceeded"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

fn world_ctx(now: u64, lease: &str) -> CallContext {
    CallContext {
        config: mode("world"),
        now,
        lease: Some(LeaseSnapshot {
            id: lease.into(),
            resource_type: "trouble".into(),
            status: LeaseStatus::Pending,
            attributes: Default::default(),
            resource_id: None,
            until: None,
        }),
        ..CallContext::default()
    }
}

async fn world_logs(ctx: &CallContext) -> Vec<String> {
    world_logs_of(misbehave(), ctx).await
}

async fn world_logs_of(plugin: &Plugin, ctx: &CallContext) -> Vec<String> {
    let step = plugin.allocate_resource(ctx).await.unwrap().value;
    step.actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(line) => Some(line.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn time_and_randomness_come_from_the_call() {
    let now = 1_700_000_123_456;
    let first = world_logs(&world_ctx(now, "L1")).await;
    assert_eq!(
        first[0],
        format!("wall clock: {now}"),
        "the wall clock reads the call's now"
    );
    assert_eq!(
        world_logs(&world_ctx(now, "L1")).await,
        first,
        "the same context gives the same step"
    );
    let other_lease = world_logs(&world_ctx(now, "L2")).await;
    let later = world_logs(&world_ctx(now + 1, "L1")).await;
    assert_ne!(
        other_lease[1], first[1],
        "randomness differs between objects"
    );
    assert_ne!(later[1], first[1], "and between calls");
}

#[tokio::test]
async fn randomness_is_keyed_by_the_installations_secret() {
    let ctx = world_ctx(1_700_000_123_456, "L1");
    let secret = [3; 32];
    let recorded =
        world_logs_of(&misbehave().with_seed_secret(SeedSecret::new(secret)), &ctx).await;
    let replayed =
        world_logs_of(&misbehave().with_seed_secret(SeedSecret::new(secret)), &ctx).await;
    assert_eq!(
        replayed, recorded,
        "the same secret gives the same call the same bytes"
    );
    let elsewhere = world_logs_of(
        &misbehave().with_seed_secret(SeedSecret::new([4; 32])),
        &ctx,
    )
    .await;
    assert_eq!(elsewhere[0], recorded[0], "the clock is the call's");
    assert_ne!(
        elsewhere[1], recorded[1],
        "another installation's secret gives the same call other bytes"
    );
    let fresh = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap()
    .load_file(Path::new(MISBEHAVE_WASM))
    .unwrap();
    assert_ne!(
        world_logs_of(&fresh, &ctx).await[1],
        world_logs(&ctx).await[1],
        "each runtime config draws its own secret by default"
    );
}

#[tokio::test]
async fn a_component_with_the_contract_name_but_other_types_is_refused_saying_so() {
    let error = runtime()
        .load(&std::fs::read(WRONG_SHAPE_WASM).unwrap())
        .err()
        .expect("the mis-shapen component must be refused");
    assert!(matches!(error, Error::ContractMismatch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("exports drydock:blueprint/hooks@0.2.0, but its functions do not match"),
        "{message}"
    );
}

#[tokio::test]
async fn a_component_over_the_size_cap_is_refused_with_the_limit() {
    let small = Runtime::new(RuntimeConfig {
        max_component_bytes: 100 << 10,
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let error = small
        .load(&std::fs::read(MISBEHAVE_WASM).unwrap())
        .err()
        .expect("over the cap");
    assert!(
        matches!(error, Error::TooLarge { limit: 102400, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("over the limit of 102400 bytes"),
        "{error}"
    );
}
