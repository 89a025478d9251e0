//! A component that exports a future version of the contract, so the host must refuse it.

wit_bindgen::generate!({
    inline: "
        package drydock:blueprint@0.3.0;

        interface hooks {
            describe: func() -> string;
        }

        world blueprint {
            export hooks;
        }
    ",
    world: "blueprint",
});

/// The future blueprint.
pub struct Future;

impl exports::drydock::blueprint::hooks::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Future);
