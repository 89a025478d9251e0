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
//! - `shout`: prints more than the output cap.

use drydock_sdk::{Blueprint, Call, Step, export_blueprint};
use serde::Deserialize;

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
}

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
            other => Step::fail(format!("unknown mode {other:?}")),
        }
    }
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
