//! A blueprint whose every export sleeps ten minutes in a blocking WASI call (a poll on a
//! monotonic-clock pollable) before answering. The host's deadline must stop it there, in
//! `blueprint add`, `blueprint check`, `drydock exec` and the daemon alike.

use drydock_sdk::bindings::exports::drydock::blueprint::hooks::Guest;
use drydock_sdk::{AllocationVerdict, CommandInterface, Context, Description, Step};
use std::time::Duration;

/// The sleepy blueprint.
pub struct Sleepy;

fn nap() {
    std::thread::sleep(Duration::from_secs(600));
}

impl Guest for Sleepy {
    fn describe() -> Description {
        nap();
        Description {
            name: "sleepy".into(),
            resource_type: "sleepy".into(),
            description: "Sleeps.".into(),
            config_schema: "{}".into(),
        }
    }

    fn validate_config(_config: String) -> Result<(), String> {
        nap();
        Ok(())
    }

    fn can_allocate_resource(_ctx: Context) -> AllocationVerdict {
        nap();
        AllocationVerdict::Yes
    }

    fn allocate_resource(_ctx: Context) -> Step {
        nap();
        Step::done()
    }

    fn activate_resource(_ctx: Context) -> Step {
        nap();
        Step::done()
    }

    fn can_acquire_lease(_ctx: Context) -> bool {
        nap();
        true
    }

    fn acquire_lease(_ctx: Context) -> Step {
        nap();
        Step::done()
    }

    fn activate_lease(_ctx: Context) -> Step {
        nap();
        Step::done()
    }

    fn release_lease(_ctx: Context) -> Step {
        nap();
        Step::done()
    }

    fn destroy_resource(_ctx: Context) -> Step {
        nap();
        Step::done()
    }

    fn interface(_ctx: Context) -> Result<CommandInterface, String> {
        nap();
        Err("asleep".into())
    }
}

#[cfg(target_arch = "wasm32")]
drydock_sdk::bindings::__export_raw!(Sleepy with_types_in drydock_sdk::bindings);
