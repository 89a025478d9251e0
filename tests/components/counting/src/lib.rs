//! A blueprint of type `counted` for the daemon tests. Every hook that has a release or destroy
//! effect logs a fixed line, so tests can count how many times that logic was applied; delays
//! (busy waits inside the hook) widen race windows, and `fail_activation` breaks resources.

use drydock_sdk::{AllocationVerdict, Blueprint, Call, Step, export_blueprint};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// The counting blueprint.
pub struct Counting;

/// Knobs for the tests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Resources alive at once.
    #[serde(default = "one")]
    pub max_resources: usize,
    /// Busy-wait inside `release-lease`, in ms.
    #[serde(default)]
    pub release_delay_ms: u64,
    /// Busy-wait inside `destroy-resource`, in ms.
    #[serde(default)]
    pub destroy_delay_ms: u64,
    /// Make `activate-resource` fail.
    #[serde(default)]
    pub fail_activation: bool,
}

fn one() -> usize {
    1
}

/// The line `release-lease` logs each time its logic is applied.
pub const RELEASE_LINE: &str = "release logic ran";
/// The line `destroy-resource` logs each time its logic is applied.
pub const DESTROY_LINE: &str = "destroy logic ran";

fn spin(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

impl Blueprint for Counting {
    type Config = Config;
    const NAME: &'static str = "counting";
    const RESOURCE_TYPE: &'static str = "counted";
    const DESCRIPTION: &'static str = "Counts its hook runs in its logs, for the daemon tests.";

    fn can_allocate_resource(call: &Call<Config>) -> AllocationVerdict {
        if call.blueprint_resources().len() < call.config().max_resources {
            AllocationVerdict::Yes
        } else {
            AllocationVerdict::NotNow
        }
    }

    fn allocate_resource(call: &Call<Config>) -> Step {
        Step::done().set_attribute("made-for", &call.lease().id)
    }

    fn activate_resource(call: &Call<Config>) -> Step {
        if call.config().fail_activation {
            return Step::fail("activation fails on purpose");
        }
        Step::done()
    }

    fn release_lease(call: &Call<Config>) -> Step {
        spin(call.config().release_delay_ms);
        Step::done().log(RELEASE_LINE)
    }

    fn destroy_resource(call: &Call<Config>) -> Step {
        spin(call.config().destroy_delay_ms);
        Step::done().log(DESTROY_LINE)
    }
}

export_blueprint!(Counting);
