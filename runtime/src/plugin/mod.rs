//! Loading and calling blueprint components, sandboxed (invariant I4).
//!
//! A [`Runtime`] owns the wasmtime engine: component model on, epoch interruption for time limits,
//! the pooling allocator when the address space allows it, and an on-disk [`ComponentCache`].
//! [`Runtime::load`] compiles a component (or takes it from the cache), refuses one that is too
//! large or built for an incompatible contract, and pre-links it against a WASI that grants
//! nothing. The resulting [`Plugin`] has one typed async method per blueprint export; each call
//! gets a fresh instance, a deadline, a memory cap, captured output and a [`CallWorld`] (its
//! clocks and random numbers, keyed by the installation's [`SeedSecret`]), and returns host
//! `domain` types. Steps are validated by `action` before they are returned, so a caller never
//! sees an invalid one.
//!
//! The deadline cannot be escaped. Calls run on wasmtime's async support: the guest yields to
//! the executor at every epoch tick and traps at the first tick past its deadline, and the whole
//! call runs under a timer that drops it if the guest sits in a blocking host call (a sleep, a
//! poll) past the deadline. Either way the call ends with [`Error::Timeout`].
//!
//! Every [`Error`] a call returns is a permanent blueprint failure except
//! [`Error::Busy`], which means the host ran out of instance slots and should retry.

mod bindings;
mod cache;
mod convert;
mod sandbox;

pub use cache::{ComponentCache, digest};
pub use sandbox::{CallWorld, SeedSecret};

use crate::action::{self, Scope, Subject};
use crate::domain::{AllocationVerdict, CallContext, CommandInterface, Description, Step};
use bindings::BlueprintPre;
use sandbox::Sandbox;
use std::collections::BTreeSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// The contract package a component must export.
pub const CONTRACT_PACKAGE: &str = "drydock:blueprint";
/// The contract version this host speaks.
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The exported interface, without its version.
const CONTRACT_INTERFACE: &str = "drydock:blueprint/hooks";
/// How often the epoch advances: the granularity of call deadlines and of a guest's yields.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// How long past its deadline a call blocked in a host call may sit before it is dropped; a
/// running guest traps at the deadline itself, so a call that reaches this was blocked.
const BLOCKING_GRACE: Duration = Duration::from_millis(20);

/// The default cap on a component's size: room for interpreters (Python, JavaScript) with
/// libraries, well short of what would strain the daemon or the database.
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 64 << 20;

/// The default wall-clock limit of one blueprint call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// The default linear memory of one blueprint instance.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

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
    /// The largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Caps on returned steps.
    pub action_limits: action::Limits,
    /// The secret mixed into every call's random seed ([`CallWorld`]), so that the random
    /// bytes a blueprint reads cannot be recomputed from the call's public parts (its time,
    /// hook and object ids, which the steps API shows). The daemon passes its installation's,
    /// kept in the store (`Store::installation_secret`), so a recorded call gives the same
    /// bytes again on the same installation; the default is a fresh random secret for each
    /// config, what commands without a daemon use (`blueprint add`/`check`/`test`, `exec`).
    /// `Debug` never prints it.
    pub seed_secret: SeedSecret,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            output_limit: 64 << 10,
            max_instances: 64,
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            cache_dir: ComponentCache::default_dir(),
            action_limits: action::Limits::default(),
            seed_secret: SeedSecret::random(),
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
    /// The component is larger than the configured cap.
    #[error(
        "the component is {size} bytes, over the limit of {limit} bytes ({} MiB); raise it with \
         --max-component-mib if this component is meant to be that large",
        limit >> 20
    )]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
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
    /// The component names our contract version but its functions have other types: it was
    /// built from a modified or mismatched copy of the WIT.
    #[error(
        "the component exports {CONTRACT_INTERFACE}@{found}, but its functions do not match this \
         host's contract (wit/v{CONTRACT_VERSION}): {detail}"
    )]
    ContractMismatch {
        /// The version it claims.
        found: String,
        /// What differs, as wasmtime's type check says.
        detail: String,
    },
    /// The component imports something the sandbox does not provide.
    #[error("the component cannot be linked in the sandbox: {0}")]
    Link(String),
    /// The call ran past its deadline.
    #[error(
        "{hook} exceeded its {} deadline{} and was stopped{output}",
        humantime::format_duration(*limit),
        if *blocking { " in a blocking call (a sleep or a poll)" } else { "" }
    )]
    Timeout {
        /// Which export.
        hook: Hook,
        /// The deadline.
        limit: Duration,
        /// Whether the guest was waiting in a host call rather than running.
        blocking: bool,
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
    /// The guest trapped (a panic, an `unreachable`, an out-of-bounds access…). The first line
    /// says why in the guest's own words when it printed any (a panic message, an exception),
    /// else in wasmtime's; the backtrace follows on later lines.
    #[error("{hook} trapped: {headline}\n{message}{output}")]
    Trap {
        /// Which export.
        hook: Hook,
        /// The reason in one line.
        headline: String,
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
    /// The guest asked for what its operator has not allowed it (a supporting lease on a
    /// blueprint it is not authorized to use): the operator's decision, said as such, not a
    /// fault of the component's.
    #[error("{reason}")]
    NotAuthorized {
        /// Which export.
        hook: Hook,
        /// What is not allowed, and the command that would allow it.
        reason: String,
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
    /// A short name for how the call failed, for metrics: `trap`, `deadline`, `memory`,
    /// `invalid_step`, `unauthorized`, `busy`, or `load` (the component could not be loaded or linked).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Trap { .. } => "trap",
            Error::Timeout { .. } => "deadline",
            Error::MemoryLimit { .. } => "memory",
            Error::InvalidStep { .. } => "invalid_step",
            Error::NotAuthorized { .. } => "unauthorized",
            Error::Busy { .. } => "busy",
            Error::TooLarge { .. }
            | Error::Compile(_)
            | Error::NotABlueprint { .. }
            | Error::IncompatibleContract { .. }
            | Error::ContractMismatch { .. }
            | Error::Link(_) => "load",
        }
    }

    /// Whether a resource made for the same request anywhere would meet the same refusal: a
    /// step asking for supporting leases past their bounds, or for one its blueprint may not
    /// use. The lease it was for then fails instead of trying another resource.
    pub fn is_lasting_refusal(&self) -> bool {
        match self {
            Error::InvalidStep { violation, .. } => violation.growth,
            Error::NotAuthorized { .. } => true,
            _ => false,
        }
    }

    /// Whether retrying later could succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}

/// Guest stdout/stderr attached to an error, printed after it when not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOutput(pub String);

impl GuestOutput {
    /// The last line the guest printed before it died, leaving out runtime notes (`note: run
    /// with RUST_BACKTRACE=1…`): a Rust panic's message, a Python exception's.
    fn last_words(&self) -> Option<String> {
        self.0
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty() && !line.starts_with("note:"))
            .map(|line| crate::text::clip(line, 300))
    }
}

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
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
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

    /// The largest component [`Runtime::load`] accepts, in bytes.
    pub fn max_component_bytes(&self) -> usize {
        self.shared.config.max_component_bytes
    }

    /// Refuses a component of `size` bytes if it is over the cap (before anyone reads it whole).
    pub fn check_size(&self, size: usize) -> Result<(), Error> {
        let limit = self.max_component_bytes();
        if size > limit {
            return Err(Error::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Compiles (or takes from the cache), checks the contract version and pre-links a component.
    /// CPU-bound: call it off the async executor.
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, Error> {
        let shared = &self.shared;
        self.check_size(wasm.len())?;
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
        let pre = BlueprintPre::new(instance_pre).map_err(|e| Error::ContractMismatch {
            found: contract.clone(),
            detail: format!("{e:#}"),
        })?;
        Ok(Plugin {
            runtime: self.clone(),
            pre,
            contract,
            digest: wasm_digest,
            seed_secret: shared.config.seed_secret.clone(),
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
    /// Keys its calls' random seeds: the runtime's, unless [`Plugin::with_seed_secret`].
    seed_secret: SeedSecret,
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

    /// The same component, its calls' random seeds keyed by `secret` instead of the runtime's
    /// (the test kit gives each harness its own; a test pins one to replay a call).
    pub fn with_seed_secret(&self, secret: SeedSecret) -> Plugin {
        Plugin {
            seed_secret: secret,
            ..self.clone()
        }
    }

    /// `describe`: what the component is.
    pub async fn describe(&self) -> Result<Called<Description>, Error> {
        let world = CallWorld::new(&self.seed_secret, 0, &[Hook::Describe.name()]);
        self.call(Hook::Describe, world, |api, store| {
            Box::pin(api.call_describe(store))
        })
        .await
        .map(|c| c.map(convert::description_from_wit))
    }

    /// `validate-config`: `Ok(Err(reason))` when the component refuses the config.
    pub async fn validate_config(&self, config: &str) -> Result<Called<Result<(), String>>, Error> {
        let world = CallWorld::new(&self.seed_secret, 0, &[Hook::ValidateConfig.name(), config]);
        let config = config.to_string();
        self.call(Hook::ValidateConfig, world, move |api, store| {
            Box::pin(async move { api.call_validate_config(store, &config).await })
        })
        .await
    }

    /// `can-allocate-resource` for `ctx.lease`.
    pub async fn can_allocate_resource(
        &self,
        ctx: &CallContext,
    ) -> Result<Called<AllocationVerdict>, Error> {
        let wit = convert::context_to_wit(ctx);
        self.call(
            Hook::CanAllocateResource,
            world(&self.seed_secret, Hook::CanAllocateResource, ctx),
            move |api, store| {
                Box::pin(async move { api.call_can_allocate_resource(store, &wit).await })
            },
        )
        .await
        .map(|c| c.map(convert::verdict_from_wit))
    }

    /// `can-acquire-lease` for `ctx.lease` on `ctx.resource`.
    pub async fn can_acquire_lease(&self, ctx: &CallContext) -> Result<Called<bool>, Error> {
        let wit = convert::context_to_wit(ctx);
        self.call(
            Hook::CanAcquireLease,
            world(&self.seed_secret, Hook::CanAcquireLease, ctx),
            move |api, store| {
                Box::pin(async move { api.call_can_acquire_lease(store, &wit).await })
            },
        )
        .await
    }

    /// `interface`: how to run commands on `ctx.resource` for `ctx.lease`. The caller checks the
    /// answer against the blueprint's grants before using it.
    pub async fn interface(
        &self,
        ctx: &CallContext,
    ) -> Result<Called<Result<CommandInterface, String>>, Error> {
        let wit = convert::context_to_wit(ctx);
        self.call(
            Hook::Interface,
            world(&self.seed_secret, Hook::Interface, ctx),
            move |api, store| Box::pin(async move { api.call_interface(store, &wit).await }),
        )
        .await
        .map(|c| c.map(|r| r.map(convert::interface_from_wit)))
    }

    /// `allocate-resource`: actions apply to the new `ctx.resource`.
    pub async fn allocate_resource(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::AllocateResource, ctx).await
    }

    /// `activate-resource` on `ctx.resource`.
    pub async fn activate_resource(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::ActivateResource, ctx).await
    }

    /// `acquire-lease`: actions apply to `ctx.lease`.
    pub async fn acquire_lease(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::AcquireLease, ctx).await
    }

    /// `activate-lease` on `ctx.lease`.
    pub async fn activate_lease(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::ActivateLease, ctx).await
    }

    /// `release-lease` on `ctx.lease`.
    pub async fn release_lease(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::ReleaseLease, ctx).await
    }

    /// `destroy-resource` on `ctx.resource`.
    pub async fn destroy_resource(&self, ctx: &CallContext) -> Result<Called<Step>, Error> {
        self.step(Hook::DestroyResource, ctx).await
    }

    /// Calls a step-returning hook and validates the step against what the call may touch.
    pub async fn step(&self, hook: Hook, ctx: &CallContext) -> Result<Called<Step>, Error> {
        let wit = convert::context_to_wit(ctx);
        let world = world(&self.seed_secret, hook, ctx);
        let called = self
            .call(hook, world, move |api, store| {
                Box::pin(async move {
                    match hook {
                        Hook::AllocateResource => api.call_allocate_resource(store, &wit).await,
                        Hook::ActivateResource => api.call_activate_resource(store, &wit).await,
                        Hook::AcquireLease => api.call_acquire_lease(store, &wit).await,
                        Hook::ActivateLease => api.call_activate_lease(store, &wit).await,
                        Hook::ReleaseLease => api.call_release_lease(store, &wit).await,
                        Hook::DestroyResource => api.call_destroy_resource(store, &wit).await,
                        other => unreachable!("{other} does not return a step"),
                    }
                })
            })
            .await?;
        let called = called.map(convert::step_from_wit);
        let scope = Scope {
            subject: hook.subject(),
            supporting_leases: supporting_keys(ctx),
            now: ctx.now,
            depth: ctx.depth,
        };
        action::validate(
            &called.value,
            &scope,
            &self.runtime.shared.config.action_limits,
        )
        .map_err(|violation| Error::InvalidStep { hook, violation })?;
        Ok(called)
    }

    /// Runs one export in a fresh, limited instance and classifies any failure. The call ends
    /// at its deadline whatever the guest does: a running guest traps at the first epoch tick
    /// past it, and a guest blocked in a host call is dropped by the timer.
    async fn call<R: Send>(
        &self,
        hook: Hook,
        world: CallWorld,
        invoke: impl for<'a> FnOnce(
            &'a bindings::api::Guest,
            &'a mut Store<Sandbox>,
        ) -> GuestCall<'a, R>
        + Send,
    ) -> Result<Called<R>, Error> {
        let shared = &self.runtime.shared;
        let limit = shared.config.call_timeout;
        let mut store = Store::new(
            &shared.engine,
            Sandbox::new(
                shared.config.memory_limit,
                shared.config.output_limit,
                &world,
            ),
        );
        store.limiter(|sandbox| &mut sandbox.memory);
        let deadline = Instant::now() + limit;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(match Instant::now() >= deadline {
                true => UpdateDeadline::Interrupt,
                false => UpdateDeadline::Yield(1),
            })
        });
        let pre = self.pre.clone();
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            invoke(instance.drydock_blueprint_hooks(), &mut store).await
        };
        let result = tokio::time::timeout(limit + BLOCKING_GRACE, run).await;
        let output = store.data().output();
        match result {
            Ok(Ok(value)) => Ok(Called { value, output }),
            Ok(Err(error)) => Err(self.classify(hook, error, &store, output)),
            Err(_) => Err(Error::Timeout {
                hook,
                limit,
                blocking: true,
                output: GuestOutput(output),
            }),
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
                blocking: false,
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
        let reason = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        Error::Trap {
            hook,
            headline: output.last_words().unwrap_or(reason),
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

/// The future of one guest export call, borrowing the instance and the store.
type GuestCall<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

/// A call's world: its time, and randomness seeded by the secret, the hook and the objects
/// under call.
fn world(secret: &SeedSecret, hook: Hook, ctx: &CallContext) -> CallWorld {
    let resource = ctx.resource.as_ref().map_or("", |r| r.id.as_str());
    let lease = ctx.lease.as_ref().map_or("", |l| l.id.as_str());
    let round = ctx.exec_results.len().to_string();
    CallWorld::new(secret, ctx.now, &[hook.name(), resource, lease, &round])
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_compatibility_follows_semver() {
        assert!(compatible("0.2.0", "0.2.0"));
        assert!(compatible("0.2.3", "0.2.0"));
        assert!(
            !compatible("0.1.0", "0.2.0"),
            "0.2 added the ssh interface's root"
        );
        assert!(!compatible("0.3.0", "0.2.0"));
        assert!(!compatible("1.0.0", "0.2.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("", "0.2.0"));
    }
}
