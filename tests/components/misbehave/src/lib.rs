//! A hostile blueprint for the sandbox tests. Its config picks what `allocate-resource` does:
//!
//! - `loop`: spins forever;
//! - `memory`: allocates until it is stopped;
//! - `trap`: panics;
//! - `wasi`: tries to read a file, the environment, its arguments, stdin and the network, and
//!   logs what it got;
//! - `flood`: returns 10,000 log actions;
//! - `huge`: sets a 256 KiB attribute value;
//! - `foreign`: releases a lease it does not own;
//! - `chatty`: prints to stdout and stderr, then succeeds;
//! - `shout`: prints more than the output cap;
//! - `sleep`: sleeps ten minutes in a blocking WASI call (a poll on a clock);
//! - `world`: logs what it reads of the wall clock and of randomness;
//! - `yield0`: yields for 0 ms, forever;
//! - `runaway`: every resource leases another resource of its own type, which no lease shares;
//! - `lock-thief`: takes the slot lock `host-pool.host(local-1)`, host-pool's;
//! - `escapes`: logs and sets attributes full of terminal escapes and newlines;
//! - `fail-activation`: allocates fine, then fails every `activate-resource`;
//! - `borrow-on-activation`: allocates fine, then asks for a `host` supporting lease in
//!   `activate-resource` (and is done);
//! - `root`: its `interface` is a local directory, `root` in the config;
//! - `sleepy-interface`: its `interface` sleeps ten minutes.
//!
//! And the hostile neighbours of the fair-share tests, each misbehaving in `activate-resource`
//! within every per-step limit:
//!
//! - `fan-out`: every resource asks for `fan_out` supporting leases of its own type (8 unless
//!   the config says), and no lease shares a resource: with `"fan_out": 1` a chain, with 9
//!   more than a resource may own;
//! - `log-flood`: yields for 0 ms forever, logging about a megabyte each time;
//! - `exec-yield`: leases a `host`, then runs an exec on it and yields for 0 ms, forever;
//! - (`fail-activation` above: fails every activation.)

use drydock_sdk::{
    Attributes, Blueprint, Call, CommandInterface, LeaseStatus, LocalInterface, Step,
    export_blueprint,
};
use serde::Deserialize;
use std::time::Duration;

/// The misbehaving blueprint.
pub struct Misbehave;

/// Which misbehaviour, and where to knock for the network probe.
#[derive(Deserialize)]
pub struct Config {
    /// The misbehaviour.
    pub mode: String,
    /// A loopback port the `wasi` mode tries to connect to.
    #[serde(default)]
    pub port: u16,
    /// The local root the `root` mode's interface gives.
    #[serde(default)]
    pub root: String,
    /// Supporting leases each `fan-out` resource asks for.
    #[serde(default = "default_fan_out")]
    pub fan_out: usize,
}

fn default_fan_out() -> usize {
    FAN_OUT
}

/// The key of the `host` lease the modes that borrow one ask for.
const HOST: &str = "host";
/// Supporting leases each `fan-out` resource asks for unless the config says.
const FAN_OUT: usize = 8;
/// Log lines of one `log-flood` step, and their length: about a megabyte, within the per-step
/// limits (256 actions, 4 KiB a line, 1 MiB a step).
const FLOOD_LINES: usize = 240;
const FLOOD_LINE_BYTES: usize = 4000;

/// What the blocking modes sleep for: far past any deadline.
const LONG: Duration = Duration::from_secs(600);

impl Blueprint for Misbehave {
    type Config = Config;
    const NAME: &'static str = "misbehave";
    const RESOURCE_TYPE: &'static str = "trouble";
    const DESCRIPTION: &'static str = "Misbehaves on purpose, for the sandbox tests.";

    fn allocate_resource(call: &Call<Config>) -> Step {
        match call.config().mode.as_str() {
            "loop" => spin(),
            "memory" => hoard(),
            "trap" => panic!("deliberate trap"),
            "wasi" => probe(call.config().port),
            "flood" => (0..10_000).fold(Step::done(), |step, i| step.log(format!("line {i}"))),
            "huge" => Step::done().set_attribute("blob", "x".repeat(256 << 10)),
            "foreign" => Step::done().release_lease("someone-elses-lease"),
            "chatty" => {
                println!("hello from stdout");
                eprintln!("hello from stderr");
                Step::done()
            }
            "shout" => {
                let line = "y".repeat(1024);
                for _ in 0..1024 {
                    println!("{line}");
                }
                Step::done()
            }
            "sleep" => {
                std::thread::sleep(LONG);
                Step::done()
            }
            "world" => world(),
            "yield0" => Step::yield_for(Duration::ZERO).log("not yet"),
            "runaway" => Step::done()
                .set_attribute("made-for", &call.lease().id)
                .request_lease("more", "trouble", Vec::new()),
            "lock-thief" => Step::done().take_slot_locks(["host-pool.host(local-1)"]),
            "escapes" => Step::done()
                .log("\x1b[2J\x1b[31mred\nL1 lease.destroyed    forged")
                .set_attribute("shout", "\x1b]0;pwned\x07\nowner: root"),
            "exec-yield" => Step::done().request_lease(HOST, "host", Vec::new()),
            "fail-activation"
            | "borrow-on-activation"
            | "root"
            | "sleepy-interface"
            | "fan-out"
            | "log-flood" => Step::done(),
            other => Step::fail(format!("unknown mode {other:?}")),
        }
    }

    fn can_acquire_lease(call: &Call<Config>) -> bool {
        match call.config().mode.as_str() {
            "runaway" => call.resource().attribute("made-for") == Some(call.lease().id.as_str()),
            "fan-out" => false,
            _ => true,
        }
    }

    fn activate_resource(call: &Call<Config>) -> Step {
        match call.config().mode.as_str() {
            "fail-activation" => Step::fail("activation fails on purpose"),
            "borrow-on-activation" => Step::done().request_lease(HOST, "host", Vec::new()),
            "fan-out" => (0..call.config().fan_out).fold(Step::done(), |step, i| {
                step.request_lease(format!("more-{i}"), "trouble", Vec::new())
            }),
            "log-flood" => (0..FLOOD_LINES).fold(Step::yield_for(Duration::ZERO), |step, i| {
                step.log(format!("{i:04} {}", "x".repeat(FLOOD_LINE_BYTES)))
            }),
            "exec-yield" => exec_and_yield(call),
            _ => Step::done(),
        }
    }

    fn interface(call: &Call<Config>) -> Result<CommandInterface, String> {
        match call.config().mode.as_str() {
            "root" => Ok(CommandInterface::Local(LocalInterface {
                root: call.config().root.clone(),
            })),
            "sleepy-interface" => {
                std::thread::sleep(LONG);
                Err("woke up".into())
            }
            other => Err(format!("mode {other:?} gives no interface")),
        }
    }
}

/// Once the host lease is active: an exec on it, and a yield for 0 ms, at every call.
fn exec_and_yield(call: &Call<Config>) -> Step {
    let active = call
        .supporting_lease(HOST)
        .is_some_and(|s| s.lease.status == LeaseStatus::Active);
    if !active {
        return Step::yield_for(Duration::ZERO);
    }
    let round = call.context().exec_results.len();
    Step::yield_for(Duration::ZERO).exec(format!("spin-{round}"), HOST, ["true"])
}

/// Logs the wall clock and a random number, as the guest sees them.
fn world() -> Step {
    use std::hash::{BuildHasher, RandomState};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let random = RandomState::new().hash_one("drydock");
    Step::done()
        .log(format!("wall clock: {now}"))
        .log(format!("random: {random}"))
}

fn spin() -> Step {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn hoard() -> Step {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

fn probe(port: u16) -> Step {
    use std::io::Read;
    let file = std::fs::read_to_string("/etc/hostname")
        .map(|text| format!("read {} bytes", text.len()))
        .unwrap_or_else(|e| format!("error: {e}"));
    let cwd_listing = std::fs::read_dir(".")
        .map(|d| format!("{} entries", d.count()))
        .unwrap_or_else(|e| format!("error: {e}"));
    let mut stdin = String::new();
    let stdin = std::io::stdin()
        .read_to_string(&mut stdin)
        .map(|n| format!("{n} bytes"))
        .unwrap_or_else(|e| format!("error: {e}"));
    let network = std::net::TcpStream::connect(("127.0.0.1", port))
        .map(|_| "connected".to_string())
        .unwrap_or_else(|e| format!("error: {e}"));
    Step::done()
        .log(format!("file: {file}"))
        .log(format!("dir: {cwd_listing}"))
        .log(format!("env: {} variables", std::env::vars().count()))
        .log(format!("args: {}", std::env::args().count()))
        .log(format!("stdin: {stdin}"))
        .log(format!("network: {network}"))
}

export_blueprint!(Misbehave);
