//! The per-call store state: a WASI context that grants nothing, a memory cap, captured output.
//!
//! A Rust guest built for `wasm32-wasip2` imports WASI even when it uses none of it, so WASI is
//! linked, but the context has no preopened directory, no environment, no arguments, no stdin,
//! no network and no name lookup. Whatever the guest prints goes to capped in-memory pipes and is
//! attached to the call's result.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Store data for one blueprint call.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Sandbox {
    /// A sandbox allowing `memory_limit` bytes of linear memory and `output_limit` bytes per stream.
    pub fn new(memory_limit: usize, output_limit: usize) -> Self {
        let stdout = MemoryOutputPipe::new(output_limit);
        let stderr = MemoryOutputPipe::new(output_limit);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
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
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                let body = String::from_utf8_lossy(&bytes);
                text.push_str(&format!("[{name}] {}\n", body.trim_end()));
            }
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
