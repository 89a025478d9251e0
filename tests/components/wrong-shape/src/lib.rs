//! A component that exports the contract's name and version, `drydock:blueprint/hooks@0.2.0`,
//! with functions of other types (as if built from an edited copy of the WIT): the host must
//! say what differs, not fail at the first call.

wit_bindgen::generate!({
    inline: "
        package drydock:blueprint@0.2.0;

        interface hooks {
            describe: func() -> string;
            validate-config: func(config: string) -> bool;
        }

        world blueprint {
            export hooks;
        }
    ",
    world: "blueprint",
});

/// The mis-shapen blueprint.
pub struct WrongShape;

impl exports::drydock::blueprint::hooks::Guest for WrongShape {
    fn describe() -> String {
        "a string, not a description".into()
    }

    fn validate_config(_config: String) -> bool {
        true
    }
}

#[cfg(target_arch = "wasm32")]
export!(WrongShape);
