//! A blueprint whose `describe` is hostile: a resource type with terminal escapes and a newline
//! that forges a log line, and a config schema that is not JSON. The host must refuse to
//! register it, naming what is wrong.

use drydock_sdk::{Blueprint, Call, Step, export_blueprint};

/// The garbled blueprint.
pub struct Garbled;

impl Blueprint for Garbled {
    type Config = serde::de::IgnoredAny;
    const NAME: &'static str = "garbled";
    const RESOURCE_TYPE: &'static str = "host\x1b[2J\nL9 lease.destroyed          destroyed";
    const DESCRIPTION: &'static str = "Describes itself badly, for the registration tests.";
    const CONFIG_SCHEMA: &'static str = "this is { not json";

    fn allocate_resource(_call: &Call<Self::Config>) -> Step {
        Step::done()
    }
}

export_blueprint!(Garbled);
