//! A blueprint of type `counted` for the daemon tests. Every hook that has a release or destroy
//! effect logs a fixed line, so tests can count how many times that logic was applied; delays
//! (busy waits inside the hook) widen race windows, and `fail_activation` breaks resources.
//! `lease_ttl_ms` gives each lease a deadline from `activate-lease`; `acquire_yields` makes
//! `acquire-lease` yield that many times first (counting them on the lease).

use drydock_sdk::{AllocationVerdict, Attributes, Blueprint, Call, Step, export_blueprint};
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
    /// Whether leases other than the one a resource was made for may use it.
    #[serde(default = "yes")]
    pub share: bool,
    /// Busy-wait inside `can-acquire-lease`, in ms.
    #[serde(default)]
    pub check_delay_ms: u64,
    /// A deadline `activate-lease` sets on each lease, this long after activation.
    #[serde(default)]
    pub lease_ttl_ms: Option<u64>,
    /// How many times `acquire-lease` yields before it is done.
    #[serde(default)]
    pub acquire_yields: u32,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

/// The line `release-lease` logs each time its logic is applied.
pub const RELEASE_LINE: &str = "release logic ran";
/// The line `destroy-resource` logs each time its logic is applied.
pub const DESTROY_LINE: &str = "destroy logic ran";

/// The lowest slot number no live resource holds, if under the limit.
fn free_slot(call: &Call<Config>) -> Option<usize> {
    let taken: Vec<usize> = call
        .blueprint_resources()
        .iter()
        .filter_map(|r| r.parse_attribute("slot").ok().flatten())
        .collect();
    (0..call.config().max_resources).find(|slot| !taken.contains(slot))
}

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
        match free_slot(call) {
            Some(_) => AllocationVerdict::Yes,
            None => AllocationVerdict::NotNow,
        }
    }

    /// Each resource takes a numbered slot lock, so two racing allocations cannot both pass
    /// the limit: the second finds the lock taken and is retried by the host.
    fn allocate_resource(call: &Call<Config>) -> Step {
        let Some(slot) = free_slot(call) else {
            return Step::yield_for(Duration::from_secs(1));
        };
        Step::done()
            .take_slot_locks([format!("counting.slot({slot})")])
            .set_attribute("slot", slot.to_string())
            .set_attribute("made-for", &call.lease().id)
    }

    fn can_acquire_lease(call: &Call<Config>) -> bool {
        spin(call.config().check_delay_ms);
        call.config().share || call.resource_attribute("made-for") == Some(call.lease().id.as_str())
    }

    /// Yields `acquire_yields` times, counting the tries on the lease, then is done.
    fn acquire_lease(call: &Call<Config>) -> Step {
        let tries: u32 = call
            .lease()
            .attributes
            .iter()
            .find(|a| a.key == "acquire-tries")
            .and_then(|a| a.value.parse().ok())
            .unwrap_or(0);
        let step = match tries < call.config().acquire_yields {
            true => Step::yield_for(Duration::from_millis(10)),
            false => Step::done(),
        };
        step.set_attribute("acquire-tries", (tries + 1).to_string())
            .set_attribute("acquired-on", &call.resource().id)
    }

    fn activate_lease(call: &Call<Config>) -> Step {
        match call.config().lease_ttl_ms {
            Some(ttl) => Step::done().set_until(Some(call.now() + ttl)),
            None => Step::done(),
        }
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
