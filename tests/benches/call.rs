//! One blueprint call (instantiate + call) through the host's `plugin` module, against raw
//! wasmtime doing the same call on the same component in the same run.
//!
//! The raw side is what an embedder gets from the documented wasmtime recipe: the pooling
//! allocator, an `InstancePre`, a WASI context built per call, generated bindings, called
//! synchronously and (as the host does, so that blocking host calls cannot escape the deadline)
//! asynchronously. The host side adds the sandbox: epoch deadline with yields and a timer, memory
//! limiter, captured output, clocks and randomness derived from the call, conversion to host
//! types and (for steps) action validation.
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
    wasmtime::component::bindgen!({ path: "../wit/v0.2.0", world: "blueprint" });
}
mod raw_async {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "blueprint",
        exports: { default: async },
    });
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

fn raw_engine() -> (Engine, Component) {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    let engine = Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, HOST_POOL_WASM).unwrap();
    (engine, component)
}

fn raw_pre(engine: &Engine, component: &Component) -> raw::BlueprintPre<RawState> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    raw::BlueprintPre::new(linker.instantiate_pre(component).unwrap()).unwrap()
}

fn raw_async_pre(engine: &Engine, component: &Component) -> raw_async::BlueprintPre<RawState> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    raw_async::BlueprintPre::new(linker.instantiate_pre(component).unwrap()).unwrap()
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

fn raw_async_context() -> raw_async::exports::drydock::blueprint::hooks::Context {
    use raw_async::exports::drydock::blueprint::hooks as api;
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
    let (engine, component) = raw_engine();
    let pre = raw_pre(&engine, &component);
    let async_pre = raw_async_pre(&engine, &component);
    let ctx = lease_context();
    let wit_ctx = raw_context();
    let async_ctx = raw_async_context();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut describe = c.benchmark_group("describe");
    describe.bench_function("drydock plugin", |b| {
        b.iter(|| black_box(rt.block_on(plugin.describe()).unwrap()))
    });
    describe.bench_function("raw wasmtime async", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut store = Store::new(&engine, raw_state());
                let instance = async_pre.instantiate_async(&mut store).await.unwrap();
                black_box(
                    instance
                        .drydock_blueprint_hooks()
                        .call_describe(&mut store)
                        .await
                        .unwrap(),
                )
            })
        })
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
        b.iter(|| black_box(rt.block_on(plugin.allocate_resource(&ctx)).unwrap()))
    });
    allocate.bench_function("raw wasmtime async", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut store = Store::new(&engine, raw_state());
                let instance = async_pre.instantiate_async(&mut store).await.unwrap();
                black_box(
                    instance
                        .drydock_blueprint_hooks()
                        .call_allocate_resource(&mut store, &async_ctx)
                        .await
                        .unwrap(),
                )
            })
        })
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
