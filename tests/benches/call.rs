//! One blueprint call (instantiate + call) through the host's `plugin` module, against raw
//! wasmtime doing the same call on the same component in the same run.
//!
//! The raw side is what an embedder gets from the documented wasmtime recipe: the pooling
//! allocator, an `InstancePre`, a WASI context built per call, generated bindings. The host side
//! adds the sandbox: epoch deadline, memory limiter, captured output, conversion to host types and
//! (for steps) action validation.
//!
//! Run: `cargo bench -p drydock-tests --bench call`

use criterion::{Criterion, criterion_group, criterion_main};
use drydock_host::domain::{CallContext, LeaseSnapshot, LeaseStatus};
use drydock_host::plugin::{Runtime, RuntimeConfig};
use drydock_tests::{HOST_POOL_CONFIG, HOST_POOL_WASM};
use std::hint::black_box;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod raw {
    wasmtime::component::bindgen!({ path: "../wit/v0.1.0", world: "blueprint" });
}
use raw::exports::drydock::blueprint::hooks as api;

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn raw_state() -> RawState {
    RawState {
        wasi: WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
    }
}

fn raw_pre() -> (Engine, raw::BlueprintPre<RawState>) {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    let engine = Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, HOST_POOL_WASM).unwrap();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let pre = raw::BlueprintPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    (engine, pre)
}

fn lease_context() -> CallContext {
    CallContext {
        config: HOST_POOL_CONFIG.into(),
        now: 1_700_000_000_000,
        lease: Some(LeaseSnapshot {
            id: "L1".into(),
            resource_type: "host".into(),
            status: LeaseStatus::Pending,
            attributes: Default::default(),
            resource_id: None,
            until: None,
        }),
        ..CallContext::default()
    }
}

fn raw_context() -> api::Context {
    api::Context {
        config: HOST_POOL_CONFIG.into(),
        now: 1_700_000_000_000,
        resource: None,
        lease: Some(api::LeaseSnapshot {
            id: "L1".into(),
            resource_type: "host".into(),
            status: api::LeaseStatus::Pending,
            attributes: Vec::new(),
            resource_id: None,
            until: None,
        }),
        supporting_leases: Vec::new(),
        exec_results: Vec::new(),
        blueprint_resources: Vec::new(),
    }
}

fn calls(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert!(
        runtime.is_pooling(),
        "the benchmark expects the pooling allocator"
    );
    let plugin = runtime.load_file(HOST_POOL_WASM.as_ref()).unwrap();
    let (engine, pre) = raw_pre();
    let ctx = lease_context();
    let wit_ctx = raw_context();

    let mut describe = c.benchmark_group("describe");
    describe.bench_function("drydock plugin", |b| {
        b.iter(|| black_box(plugin.describe().unwrap()))
    });
    describe.bench_function("raw wasmtime", |b| {
        b.iter(|| {
            let mut store = Store::new(&engine, raw_state());
            let instance = pre.instantiate(&mut store).unwrap();
            black_box(
                instance
                    .drydock_blueprint_hooks()
                    .call_describe(&mut store)
                    .unwrap(),
            )
        })
    });
    describe.finish();

    let mut allocate = c.benchmark_group("allocate-resource");
    allocate.bench_function("drydock plugin", |b| {
        b.iter(|| black_box(plugin.allocate_resource(&ctx).unwrap()))
    });
    allocate.bench_function("raw wasmtime", |b| {
        b.iter(|| {
            let mut store = Store::new(&engine, raw_state());
            let instance = pre.instantiate(&mut store).unwrap();
            black_box(
                instance
                    .drydock_blueprint_hooks()
                    .call_allocate_resource(&mut store, &wit_ctx)
                    .unwrap(),
            )
        })
    });
    allocate.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
