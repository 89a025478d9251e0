//! The per-call store state: a WASI context that grants nothing of the host, a memory cap, and
//! captured output.
//!
//! A Rust guest built for `wasm32-wasip2` imports WASI even when it uses none of it, so WASI is
//! linked, but the context has no preopened directory, no environment, no arguments, no stdin,
//! no network and no name lookup. What a guest can read of time and randomness comes from the
//! call itself ([`CallWorld`]): the wall clock reads the call's `now`, the monotonic clock starts
//! at zero when the call starts, and random bytes come from a seed derived from the
//! installation's [`SeedSecret`], the hook, the objects under call and `now`. The same context
//! on the same installation therefore gives the same step, a guest learns nothing of the host
//! (its uptime, its entropy pool), and nobody without the secret can recompute the bytes from
//! what the steps API shows (the call's time, hook and ids). Whatever the guest prints goes to
//! capped in-memory buffers and is attached to the call's result; past the cap it is counted and
//! dropped, never an error the guest could trip over.

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// The largest `get-random-bytes` request a guest may make (WASI's default is 64 MiB).
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// The secret mixed into every call's seed: per installation, so that the random bytes a
/// blueprint reads (and the passwords or keys it makes of them) cannot be recomputed from the
/// call's public parts. The daemon keeps one in its store, made at its first start; commands
/// without a daemon take a fresh [`SeedSecret::random`] one. Its bytes are never shown: `Debug`
/// prints a placeholder, and nothing reads them back out.
#[derive(Clone)]
pub struct SeedSecret([u8; 32]);

impl SeedSecret {
    /// The secret made of `bytes` (the installation's, as its store keeps it).
    pub fn new(bytes: [u8; 32]) -> Self {
        SeedSecret(bytes)
    }

    /// A fresh secret from the operating system's randomness (through `rand`'s thread-local
    /// generator, seeded from it): what a process without a daemon's store uses.
    pub fn random() -> Self {
        SeedSecret(rand::random())
    }
}

impl std::fmt::Debug for SeedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedSecret(<redacted>)")
    }
}

/// What one call's WASI shows of time and randomness: derived from the call and the
/// installation's secret, not the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallWorld {
    /// What the wall clock reads, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The seed of every random byte the call reads.
    pub seed: [u8; 32],
}

impl CallWorld {
    /// The world of a call: `parts` name it (the hook, the objects under call), `now_ms` is its
    /// time, and `secret` keys the seed. Equal inputs give equal worlds; without the secret the
    /// seed cannot be told from random. The seed is SHA-256(domain, secret, SHA-256(domain,
    /// now, parts)): the secret keys a hash of fixed-length input, so the construction has no
    /// length extension to worry about.
    pub fn new(secret: &SeedSecret, now_ms: u64, parts: &[&str]) -> Self {
        let mut call = Sha256::new();
        call.update(b"drydock call world\0");
        call.update(now_ms.to_le_bytes());
        for part in parts {
            call.update((part.len() as u64).to_le_bytes());
            call.update(part.as_bytes());
        }
        let mut keyed = Sha256::new();
        keyed.update(b"drydock call seed\0");
        keyed.update(secret.0);
        keyed.update(call.finalize());
        CallWorld {
            now_ms,
            seed: keyed.finalize().into(),
        }
    }

    /// A seed for one use of randomness, derived from the call's seed.
    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.seed);
        hash.update(purpose.as_bytes());
        hash.finalize().into()
    }
}

/// Store data for one blueprint call.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    stdout: CappedOutput,
    stderr: CappedOutput,
}

impl Sandbox {
    /// A sandbox allowing `memory_limit` bytes of linear memory and `output_limit` bytes per
    /// stream, whose clocks and random numbers come from `world`.
    pub fn new(memory_limit: usize, output_limit: usize, world: &CallWorld) -> Self {
        let stdout = CappedOutput::new(output_limit);
        let stderr = CappedOutput::new(output_limit);
        let insecure_seed = world.derive("insecure-seed");
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock(Duration::from_millis(world.now_ms)))
            .monotonic_clock(CallMonotonicClock(Instant::now()))
            .secure_random(StdRng::from_seed(world.derive("secure")))
            .insecure_random(StdRng::from_seed(world.derive("insecure")))
            .insecure_random_seed(u128::from_le_bytes(
                insecure_seed[..16].try_into().expect("16 bytes"),
            ))
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: memory_limit,
                refused: None,
            },
            stdout,
            stderr,
        }
    }

    /// What the guest wrote to stdout and stderr, as log text (empty if nothing).
    pub fn output(&self) -> String {
        let mut text = String::new();
        for (name, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (bytes, dropped) = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            let body = String::from_utf8_lossy(&bytes);
            text.push_str(&format!("[{name}] {}", body.trim_end()));
            if dropped > 0 {
                text.push_str(&format!(" … ({dropped} more bytes dropped)"));
            }
            text.push('\n');
        }
        text
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A wall clock stopped at the call's `now`.
struct FixedWallClock(Duration);

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that reads zero when the call starts.
struct CallMonotonicClock(Instant);

impl HostMonotonicClock for CallMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// An output stream that keeps the first `cap` bytes and counts the rest: writing never fails,
/// so a chatty guest is neither stopped nor allowed to grow the host's memory.
#[derive(Clone)]
struct CappedOutput {
    inner: Arc<Mutex<Captured>>,
}

struct Captured {
    cap: usize,
    bytes: Vec<u8>,
    dropped: usize,
}

impl CappedOutput {
    fn new(cap: usize) -> Self {
        CappedOutput {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                bytes: Vec::new(),
                dropped: 0,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut captured = self.inner.lock().unwrap();
        let room = captured.cap - captured.bytes.len();
        let kept = data.len().min(room);
        captured.bytes.extend_from_slice(&data[..kept]);
        captured.dropped += data.len() - kept;
    }

    fn contents(&self) -> (Vec<u8>, usize) {
        let captured = self.inner.lock().unwrap();
        (captured.bytes.clone(), captured.dropped)
    }
}

/// Bytes a guest may hand over in one write.
const WRITE_BUDGET: usize = 64 << 10;

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Refuses memory growth past the limit and remembers that it did, so that the trap that
/// follows can be reported as what it is.
pub struct MemoryCap {
    limit: usize,
    /// The size the guest asked for when it was refused.
    pub refused: Option<usize>,
}

/// The most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_derived_from_the_call_and_the_secret_alone() {
        let secret = SeedSecret::new([7; 32]);
        let a = CallWorld::new(&secret, 5, &["allocate-resource", "R1", "L2"]);
        assert_eq!(
            a,
            CallWorld::new(&secret, 5, &["allocate-resource", "R1", "L2"]),
            "the same secret and call give the same world: a recorded call replays"
        );
        assert_eq!(
            a,
            CallWorld::new(&secret.clone(), 5, &["allocate-resource", "R1", "L2"])
        );
        assert_ne!(
            a.seed,
            CallWorld::new(&secret, 6, &["allocate-resource", "R1", "L2"]).seed
        );
        assert_ne!(
            a.seed,
            CallWorld::new(&secret, 5, &["allocate-resource", "R1L2"]).seed
        );
        assert_ne!(
            a.seed,
            CallWorld::new(
                &SeedSecret::new([8; 32]),
                5,
                &["allocate-resource", "R1", "L2"]
            )
            .seed,
            "another installation's secret gives other bytes for the same call"
        );
        assert_ne!(a.derive("secure"), a.derive("insecure"));
    }

    #[test]
    fn a_seed_secret_is_random_and_never_printed() {
        let (one, two) = (SeedSecret::random(), SeedSecret::random());
        assert_ne!(one.0, two.0);
        assert_ne!(one.0, [0; 32]);
        assert_eq!(format!("{one:?}"), "SeedSecret(<redacted>)");
        let config = format!(
            "{:?}",
            super::super::RuntimeConfig {
                seed_secret: one.clone(),
                ..Default::default()
            }
        );
        assert!(
            config.contains("seed_secret: SeedSecret(<redacted>)"),
            "{config}"
        );
        assert!(!config.contains(&format!("{:?}", one.0)), "{config}");
    }

    #[test]
    fn output_past_the_cap_is_counted_not_kept() {
        let out = CappedOutput::new(4);
        out.push(b"abc");
        out.push(b"defg");
        assert_eq!(out.contents(), (b"abcd".to_vec(), 3));
    }
}
