//! Loading and calling blueprint components, sandboxed (invariant I4).
//!
//! A [`Runtime`] owns the wasmtime engine: component model on, epoch interruption for time limits,
//! the pooling allocator when the address space allows it, and an on-disk [`ComponentCache`].
//! [`Runtime::load`] compiles a component (or takes it from the cache), refuses one built for an
//! incompatible contract, and pre-links it against a WASI that grants nothing. The resulting
//! [`Plugin`] has one typed method per blueprint export; each call gets a fresh instance, a
//! deadline, a memory cap and captured output, and returns host `domain` types. Steps are
//! validated by `action` before they are returned, so a caller never sees an invalid one.
//!
//! Every [`Error`] a call returns is a permanent blueprint failure except
//! [`Error::Busy`], which means the host ran out of instance slots and should retry.

mod bindings;
mod cache;
mod convert;
mod sandbox;

pub use cache::{ComponentCache, digest};

use crate::action::{self, Scope, Subject};
use crate::domain::{AllocationVerdict, CallContext, CommandInterface, Description, Step};
use bindings::{Blueprint as Bindings, BlueprintPre};
use sandbox::Sandbox;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

/// The contract package a component must export.
pub const CONTRACT_PACKAGE: &str = "drydock:blueprint";
/// The contract version this host speaks.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The exported interface, without its version.
const CONTRACT_INTERFACE: &str = "drydock:blueprint/hooks";
/// How often the epoch advances; the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Settings of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Wall-clock limit of one call.
    pub call_timeout: Duration,
    /// Linear memory one instance may use, in bytes. Raise it for Python or JS components.
    pub memory_limit: usize,
    /// Bytes the guest may write to each of stdout and stderr in one call.
    pub output_limit: usize,
    /// Instances alive at once (the size of the pool).
    pub max_instances: u32,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Caps on returned steps.
    pub action_limits: action::Limits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            call_timeout: Duration::from_secs(1),
            memory_limit: 64 << 20,
            output_limit: 64 << 10,
            max_instances: 64,
            cache_dir: ComponentCache::default_dir(),
            action_limits: action::Limits::default(),
        }
    }
}

/// The blueprint exports, named as in the WIT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `describe`
    Describe,
    /// `validate-config`
    ValidateConfig,
    /// `can-allocate-resource`
    CanAllocateResource,
    /// `allocate-resource`
    AllocateResource,
    /// `activate-resource`
    ActivateResource,
    /// `can-acquire-lease`
    CanAcquireLease,
    /// `acquire-lease`
    AcquireLease,
    /// `activate-lease`
    ActivateLease,
    /// `release-lease`
    ReleaseLease,
    /// `destroy-resource`
    DestroyResource,
    /// `interface`
    Interface,
}

impl Hook {
    /// The export's WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Describe => "describe",
            Hook::ValidateConfig => "validate-config",
            Hook::CanAllocateResource => "can-allocate-resource",
            Hook::AllocateResource => "allocate-resource",
            Hook::ActivateResource => "activate-resource",
            Hook::CanAcquireLease => "can-acquire-lease",
            Hook::AcquireLease => "acquire-lease",
            Hook::ActivateLease => "activate-lease",
            Hook::ReleaseLease => "release-lease",
            Hook::DestroyResource => "destroy-resource",
            Hook::Interface => "interface",
        }
    }

    /// The object a step-returning hook works on.
    fn subject(self) -> Subject {
        match self {
            Hook::AcquireLease | Hook::ActivateLease | Hook::ReleaseLease => Subject::Lease,
            _ => Subject::Resource,
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why loading or calling a component failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a component wasmtime can compile.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component does not export the blueprint interface at all.
    #[error("the component does not export {CONTRACT_INTERFACE}; its exports are [{exports}]")]
    NotABlueprint {
        /// What it exports instead.
        exports: String,
    },
    /// The component was built for another contract version.
    #[error(
        "the component was built for contract {CONTRACT_PACKAGE}@{found}, but this host speaks \
         {CONTRACT_PACKAGE}@{CONTRACT_VERSION}; rebuild it against wit/v{CONTRACT_VERSION}"
    )]
    IncompatibleContract {
        /// The version it exports.
        found: String,
    },
    /// The component imports something the sandbox does not provide.
    #[error("the component cannot be linked in the sandbox: {0}")]
    Link(String),
    /// The call ran past its deadline.
    #[error("{hook} ran longer than its {limit:?} time limit and was stopped{output}")]
    Timeout {
        /// Which export.
        hook: Hook,
        /// The deadline.
        limit: Duration,
        /// Captured guest output.
        output: GuestOutput,
    },
    /// The guest asked for more memory than allowed.
    #[error(
        "{hook} tried to grow its memory to {wanted} bytes, over the {limit} byte limit{output}"
    )]
    MemoryLimit {
        /// Which export.
        hook: Hook,
        /// What it asked for.
        wanted: usize,
        /// The cap.
        limit: usize,
        /// Captured guest output.
        output: GuestOutput,
    },
    /// The guest trapped (a panic, an `unreachable`, an out-of-bounds access…).
    #[error("{hook} trapped: {message}{output}")]
    Trap {
        /// Which export.
        hook: Hook,
        /// wasmtime's description, with the wasm backtrace.
        message: String,
        /// Captured guest output (a Rust panic message is here).
        output: GuestOutput,
    },
    /// The guest returned a step the host refuses.
    #[error("{hook} returned an invalid step: {violation}")]
    InvalidStep {
        /// Which export.
        hook: Hook,
        /// What was wrong.
        violation: action::Violation,
    },
    /// Every instance slot is in use; a temporary condition.
    #[error("no free instance slot for {hook}: {message}")]
    Busy {
        /// Which export.
        hook: Hook,
        /// wasmtime's message.
        message: String,
    },
}

impl Error {
    /// Whether retrying later could succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}

/// Guest stdout/stderr attached to an error, printed after it when not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOutput(pub String);

impl std::fmt::Display for GuestOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.trim_end() {
            "" => Ok(()),
            text => write!(f, "\nguest output:\n{text}"),
        }
    }
}

/// A call's value plus whatever the guest printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Called<T> {
    /// What the export returned, converted and (for steps) validated.
    pub value: T,
    /// Captured stdout and stderr, as log text; empty when the guest printed nothing.
    pub output: String,
}

struct Shared {
    engine: Engine,
    linker: Linker<Sandbox>,
    config: RuntimeConfig,
    cache: Option<ComponentCache>,
    pooling: bool,
}

/// The wasmtime engine and everything shared by all plugins. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl Runtime {
    /// Builds the engine (pooling if possible), the sandbox linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let (engine, pooling) = engine::build(&config)?;
        engine::start_epoch_ticker(&engine, EPOCH_TICK);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let cache = config.cache_dir.clone().map(ComponentCache::new);
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                linker,
                config,
                cache,
                pooling,
            }),
        })
    }

    /// Whether instances come from the pooling allocator (else on demand).
    pub fn is_pooling(&self) -> bool {
        self.shared.pooling
    }

    /// The engine, for benchmarks and tests that compare against raw wasmtime.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Loads a component from a file.
    pub fn load_file(&self, path: &Path) -> anyhow::Result<Plugin> {
        use anyhow::Context as _;
        let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.load(&wasm)
            .with_context(|| format!("loading {}", path.display()))
    }

    /// Compiles (or takes from the cache), checks the contract version and pre-links a component.
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, Error> {
        let shared = &self.shared;
        let wasm_digest = digest(wasm);
        let component = match &shared.cache {
            Some(cache) => cache.load_or_compile(&shared.engine, wasm, &wasm_digest),
            None => Component::new(&shared.engine, wasm),
        }
        .map_err(|e| Error::Compile(format!("{e:#}")))?;
        let contract = contract_version(&shared.engine, &component)?;
        let instance_pre = shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        let pre = BlueprintPre::new(instance_pre).map_err(|e| Error::Link(format!("{e:#}")))?;
        Ok(Plugin {
            runtime: self.clone(),
            pre,
            contract,
            digest: wasm_digest,
        })
    }
}

/// Finds the exported contract interface and checks its version against ours.
fn contract_version(engine: &Engine, component: &Component) -> Result<String, Error> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(found) = exports
        .iter()
        .find_map(|name| name.strip_prefix(CONTRACT_INTERFACE)?.strip_prefix('@'))
    else {
        return Err(Error::NotABlueprint {
            exports: exports.join(", "),
        });
    };
    if !compatible(found, CONTRACT_VERSION) {
        return Err(Error::IncompatibleContract {
            found: found.to_string(),
        });
    }
    Ok(found.to_string())
}

/// Semver compatibility as cargo reads it: same major, and same minor while major is 0.
fn compatible(found: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Vec<String> { v.split('.').map(str::to_string).collect() };
    let (found, ours) = (parts(found), parts(ours));
    match (found.first(), ours.first()) {
        (Some(a), Some(b)) if a == b && a == "0" => found.get(1) == ours.get(1),
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A loaded blueprint component, ready to be called. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    runtime: Runtime,
    pre: BlueprintPre<Sandbox>,
    contract: String,
    digest: String,
}

impl Plugin {
    /// The contract version the component was built for.
    pub fn contract_version(&self) -> &str {
        &self.contract
    }

    /// SHA-256 of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// `describe`: what the component is.
    pub fn describe(&self) -> Result<Called<Description>, Error> {
        self.call(Hook::Describe, |api, store| api.call_describe(store))
            .map(|c| c.map(convert::description_from_wit))
    }

    /// `validate-config`: `Ok(Err(reason))` when the component refuses the config.
    pub fn validate_config(&self, config: &str) -> Result<Called<Result<(), String>>, Error> {
        self.call(Hook::ValidateConfig, |api, store| {
            api.call_validate_config(store, config)
        })
    }

    /// `can-allocate-resource` for `ctx.lease`.
    pub fn can_allocate_resource(
        &self,
        ctx: &CallContext,
    ) -> Result<Called<AllocationVerdict>, Error> {
        let wit = convert::context_to_wit(ctx);
        self.call(Hook::CanAllocateResource, |api, store| {
            api.call_can_allocate_resource(store, &wit)
        })
        .map(|c| c.map(convert::verdict_from_wit))
    }

    /// `can-acquire-lease` for `ctx.lease` on `ctx.resource`.
    pub fn can_acquire_lease(&self, ctx: &CallContext) -> Result<Called<bool>, Error> {
        let wit = convert::context_to_wit(ctx);
        self.call(Hook::CanAcquireLease, |api, store| {
            api.call_can_acquire_lease(store, &wit)
        })
    }

    /// `interface`: how to run commands on `ctx.resource` for `ctx.lease`.
    pub fn interface(
        &self,
        ctx: &CallContext,
    ) -> Result<Called<Result<CommandInterface, String>>, Error> {
        let wit = convert::context_to_wit(ctx);
        self.call(Hook::Interface, |api, store| {
            api.call_interface(store, &wit)
        })
        .map(|c| c.map(|r| r.map(convert::interface_from_wit)))
    }

    /// `allocate-resource`: actions apply to the new `ctx.resource`.
    pub fn allocate_resource(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::AllocateResource, ctx)
    }

    /// `activate-resource` on `ctx.resource`.
    pub fn activate_resource(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::ActivateResource, ctx)
    }

    /// `acquire-lease`: actions apply to `ctx.lease`.
    pub fn acquire_lease(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::AcquireLease, ctx)
    }

    /// `activate-lease` on `ctx.lease`.
    pub fn activate_lease(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::ActivateLease, ctx)
    }

    /// `release-lease` on `ctx.lease`.
    pub fn release_lease(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::ReleaseLease, ctx)
    }

    /// `destroy-resource` on `ctx.resource`.
    pub fn destroy_resource(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::DestroyResource, ctx)
    }

    /// Calls a step-returning hook and validates the step against what the call may touch.
    pub fn step(&self, hook: Hook, ctx: &CallContext) -> Result<Called<Step>, Error> {
        let wit = convert::context_to_wit(ctx);
        let called = self.call(hook, |api, store| match hook {
            Hook::AllocateResource => api.call_allocate_resource(store, &wit),
            Hook::ActivateResource => api.call_activate_resource(store, &wit),
            Hook::AcquireLease => api.call_acquire_lease(store, &wit),
            Hook::ActivateLease => api.call_activate_lease(store, &wit),
            Hook::ReleaseLease => api.call_release_lease(store, &wit),
            Hook::DestroyResource => api.call_destroy_resource(store, &wit),
            other => unreachable!("{other} does not return a step"),
        })?;
        let called = called.map(convert::step_from_wit);
        let scope = Scope {
            subject: hook.subject(),
            supporting_leases: supporting_keys(ctx),
        };
        action::validate(
            &called.value,
            &scope,
            &self.runtime.shared.config.action_limits,
        )
        .map_err(|violation| Error::InvalidStep { hook, violation })?;
        Ok(called)
    }

    /// Runs one export in a fresh, limited instance and classifies any failure.
    fn call<R>(
        &self,
        hook: Hook,
        invoke: impl FnOnce(&bindings::api::Guest, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<Called<R>, Error> {
        let shared = &self.runtime.shared;
        let mut store = Store::new(
            &shared.engine,
            Sandbox::new(shared.config.memory_limit, shared.config.output_limit),
        );
        store.limiter(|sandbox| &mut sandbox.memory);
        store.set_epoch_deadline(engine::deadline_ticks(
            shared.config.call_timeout,
            EPOCH_TICK,
        ));
        store.epoch_deadline_trap();
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance: Bindings| invoke(instance.drydock_blueprint_hooks(), &mut store));
        let output = store.data().output();
        match result {
            Ok(value) => Ok(Called { value, output }),
            Err(error) => Err(self.classify(hook, error, &store, output)),
        }
    }

    fn classify(
        &self,
        hook: Hook,
        error: wasmtime::Error,
        store: &Store<Sandbox>,
        output: String,
    ) -> Error {
        let config = &self.runtime.shared.config;
        let output = GuestOutput(output);
        if let Some(wanted) = store.data().memory.refused {
            return Error::MemoryLimit {
                hook,
                wanted,
                limit: config.memory_limit,
                output,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return Error::Timeout {
                hook,
                limit: config.call_timeout,
                output,
            };
        }
        if error
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return Error::Busy {
                hook,
                message: format!("{error:#}"),
            };
        }
        Error::Trap {
            hook,
            message: format!("{error:?}"),
            output,
        }
    }
}

impl<T> Called<T> {
    /// Converts the value, keeping the output.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Called<U> {
        Called {
            value: f(self.value),
            output: self.output,
        }
    }
}

fn supporting_keys(ctx: &CallContext) -> BTreeSet<String> {
    ctx.supporting_leases
        .iter()
        .map(|l| l.key.clone())
        .collect()
}

mod engine {
    //! Engine construction: pooling when the address space allows it, and the epoch ticker.

    use super::RuntimeConfig;
    use std::time::Duration;
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

    /// Virtual memory one pooled linear memory reserves (reservation plus guard).
    const MEMORY_RESERVATION: u64 = 4 << 30;
    const MEMORY_GUARD: u64 = 32 << 20;

    fn base_config() -> Config {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.memory_reservation(MEMORY_RESERVATION);
        config.memory_guard_size(MEMORY_GUARD);
        config
    }

    fn pooling(config: &RuntimeConfig) -> PoolingAllocationConfig {
        let instances = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(config.memory_limit);
        pool
    }

    /// The address space the pool would reserve.
    fn pool_reservation(config: &RuntimeConfig) -> u64 {
        u64::from(config.max_instances) * 2 * (MEMORY_RESERVATION + MEMORY_GUARD)
    }

    /// The process's address-space limit (`ulimit -v`), if any.
    fn address_space_limit() -> Option<u64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max address space"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }

    /// An engine with the pooling allocator when it fits, else the on-demand allocator.
    pub fn build(config: &RuntimeConfig) -> anyhow::Result<(Engine, bool)> {
        let fits = address_space_limit().is_none_or(|limit| pool_reservation(config) < limit);
        if fits {
            let mut pooled = base_config();
            pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(config)));
            match Engine::new(&pooled) {
                Ok(engine) => return Ok((engine, true)),
                Err(error) => {
                    tracing::warn!(%error, "pooling allocator unavailable; instances allocated on demand")
                }
            }
        } else {
            tracing::warn!(
                "address space limit too small for the pooling allocator; instances allocated on demand"
            );
        }
        Ok((Engine::new(&base_config())?, false))
    }

    /// Advances the engine's epoch every `tick` until the engine is dropped.
    pub fn start_epoch_ticker(engine: &Engine, tick: Duration) {
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("drydock-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(tick);
                }
            })
            .expect("spawning the epoch ticker thread");
    }

    /// Epoch ticks for a deadline of `timeout`, rounded up, plus one for the partial tick.
    pub fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
        (timeout.as_nanos().div_ceil(tick.as_nanos()) as u64).max(1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_compatibility_follows_semver() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("", "0.1.0"));
    }

    #[test]
    fn deadlines_round_up() {
        let tick = Duration::from_millis(5);
        assert_eq!(engine::deadline_ticks(Duration::from_secs(1), tick), 201);
        assert_eq!(engine::deadline_ticks(Duration::from_millis(1), tick), 2);
        assert_eq!(engine::deadline_ticks(Duration::ZERO, tick), 2);
    }
}
