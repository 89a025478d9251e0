//! Generated bindings for `drydock:blueprint@0.2.0`, fenced off from the rest of the host.
//!
//! Nothing outside `plugin` names these types; [`super::convert`] turns them into `domain` types.

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "blueprint",
    exports: { default: async },
});

pub use exports::drydock::blueprint::hooks as api;
