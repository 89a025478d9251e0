//! # drydock-sdk
//!
//! Write a [Drydock](https://example.invalid/drydock) blueprint in Rust. A blueprint is a WebAssembly
//! component that the Drydock host calls to allocate, activate and destroy resources and the leases on
//! them. It never writes anything itself: each call gets a read-only [`Call`] and returns a [`Step`]
//! of actions that the host validates and applies.
//!
//! Implement [`Blueprint`] (every hook but `allocate_resource` has Drydock's default), then export it
//! with [`export_blueprint!`]. The export glue exists only on `wasm32`, so the same code is testable
//! with a plain native `cargo test`.
//!
//! ```
//! use drydock_sdk::{export_blueprint, AllocationVerdict, Blueprint, Call, Step};
//! use serde::Deserialize;
//!
//! /// Makes "scratch" resources, each named after the lease that asked first.
//! struct Scratch;
//!
//! #[derive(Deserialize)]
//! struct Config {
//!     limit: usize,
//! }
//!
//! impl Blueprint for Scratch {
//!     type Config = Config;
//!     const NAME: &'static str = "scratch";
//!     const RESOURCE_TYPE: &'static str = "scratch";
//!     const DESCRIPTION: &'static str = "Empty scratch resources, up to a limit.";
//!
//!     fn validate_config(config: &Config) -> Result<(), String> {
//!         match config.limit {
//!             0 => Err("`limit` must be at least 1".into()),
//!             _ => Ok(()),
//!         }
//!     }
//!
//!     fn can_allocate_resource(call: &Call<Config>) -> AllocationVerdict {
//!         if call.blueprint_resources().len() < call.config().limit {
//!             AllocationVerdict::Yes
//!         } else {
//!             AllocationVerdict::NotNow
//!         }
//!     }
//!
//!     fn allocate_resource(call: &Call<Config>) -> Step {
//!         let lease = call.lease();
//!         Step::done()
//!             .set_attribute("first-lease", &lease.id)
//!             .log(format!("made for {}", lease.id))
//!     }
//! }
//!
//! export_blueprint!(Scratch);
//!
//! // The logic runs natively too:
//! let call = Call::for_test(Config { limit: 1 }).with_lease(drydock_sdk::testing::lease("L1", "scratch"));
//! assert_eq!(Scratch::can_allocate_resource(&call), AllocationVerdict::Yes);
//! let step = Scratch::allocate_resource(&call);
//! assert!(step.is_done());
//! ```
#![deny(missing_docs)]

extern crate self as drydock_sdk;

mod attributes;
mod call;
#[doc(hidden)]
pub mod glue;
mod step;
pub mod testing;

pub use attributes::Attributes;
pub use call::Call;
pub use serde;
pub use serde_json;

#[doc(hidden)]
pub mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "blueprint",
        pub_export_macro: true,
        export_macro_name: "__export_raw",
        default_bindings_module: "drydock_sdk::bindings",
        runtime_path: "drydock_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq, Clone],
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// The contract version this SDK builds components for.
pub const CONTRACT_VERSION: &str = "0.2.0";

pub use bindings::exports::drydock::blueprint::hooks::{
    Action, AllocationVerdict, Attribute, CommandInterface, Context, Description, ExecRequest,
    ExecResult, LeaseRequest, LeaseSnapshot, LeaseStatus, LocalInterface, Outcome,
    ResourceSnapshot, ResourceStatus, SshInterface, Step, SupportingLease,
};

/// A blueprint: the hooks Drydock calls over a resource's and a lease's life.
///
/// Every hook but [`allocate_resource`](Blueprint::allocate_resource) has the default Drydock
/// gives it: activation is done at once, any lease may be acquired, and release and destroy
/// return no actions.
pub trait Blueprint {
    /// The configuration, read from the blueprint's JSON config.
    type Config: serde::de::DeserializeOwned;

    /// The component's name, such as `host-pool`.
    const NAME: &'static str;
    /// The type of resource it makes, such as `host`.
    const RESOURCE_TYPE: &'static str;
    /// One paragraph for operators.
    const DESCRIPTION: &'static str;
    /// A JSON Schema of [`Blueprint::Config`], shown by `drydock blueprint check`.
    const CONFIG_SCHEMA: &'static str = "{}";

    /// Checks a parsed configuration beyond what its type says. The error names what is wrong.
    fn validate_config(config: &Self::Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Whether a new resource could be made now for [`Call::lease`].
    fn can_allocate_resource(call: &Call<Self::Config>) -> AllocationVerdict {
        let _ = call;
        AllocationVerdict::Yes
    }

    /// Makes a new resource for [`Call::lease`]; the step's actions apply to [`Call::resource`].
    fn allocate_resource(call: &Call<Self::Config>) -> Step;

    /// Brings a pending resource to active. Default: done at once.
    fn activate_resource(call: &Call<Self::Config>) -> Step {
        let _ = call;
        Step::done()
    }

    /// Whether [`Call::lease`] may be acquired on the active [`Call::resource`]. Default: yes.
    fn can_acquire_lease(call: &Call<Self::Config>) -> bool {
        let _ = call;
        true
    }

    /// Acquires the lease on the resource; actions apply to the lease. Default: done at once.
    fn acquire_lease(call: &Call<Self::Config>) -> Step {
        let _ = call;
        Step::done()
    }

    /// Brings an acquired lease to active. Default: done at once.
    fn activate_lease(call: &Call<Self::Config>) -> Step {
        let _ = call;
        Step::done()
    }

    /// Cleans up after a lease is released. Default: nothing to do.
    fn release_lease(call: &Call<Self::Config>) -> Step {
        let _ = call;
        Step::done()
    }

    /// Tears down a released or broken resource. Default: nothing to do.
    fn destroy_resource(call: &Call<Self::Config>) -> Step {
        let _ = call;
        Step::done()
    }

    /// How to run commands on the resource. Default: the resource has no command interface.
    fn interface(call: &Call<Self::Config>) -> Result<CommandInterface, String> {
        let _ = call;
        Err(format!(
            "{} resources have no command interface",
            Self::RESOURCE_TYPE
        ))
    }
}

/// Exports a [`Blueprint`] implementation as the component's `drydock:blueprint` exports.
///
/// The glue is compiled only for `wasm32`; natively the macro expands to nothing, so the
/// blueprint's logic can be unit-tested with a plain `cargo test`.
#[macro_export]
macro_rules! export_blueprint {
    ($blueprint:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __DrydockExport = $crate::glue::Adapter<$blueprint>;
    $crate::bindings::__export_raw!(__DrydockExport with_types_in $crate::bindings);
        };
    };
}
