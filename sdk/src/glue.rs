//! The bridge from the generated `Guest` trait to [`Blueprint`]: parses the config and forwards.

use crate::bindings::exports::drydock::blueprint::hooks::Guest;
use crate::{AllocationVerdict, Blueprint, Call, CommandInterface, Context, Description, Step};
use std::marker::PhantomData;

/// Implements the component's exports for any [`Blueprint`]; used by [`crate::export_blueprint!`].
pub struct Adapter<B>(PhantomData<B>);

fn parse_config<B: Blueprint>(config: &str) -> Result<B::Config, String> {
    let parsed: B::Config = serde_json::from_str(config).map_err(|e| e.to_string())?;
    B::validate_config(&parsed)?;
    Ok(parsed)
}

fn call<B: Blueprint>(ctx: Context) -> Result<Call<B::Config>, String> {
    let config = parse_config::<B>(&ctx.config).map_err(|e| format!("invalid config: {e}"))?;
    Ok(Call::new(config, ctx))
}

fn step<B: Blueprint>(ctx: Context, hook: fn(&Call<B::Config>) -> Step) -> Step {
    match call::<B>(ctx) {
        Ok(call) => hook(&call),
        Err(reason) => Step::fail(reason),
    }
}

impl<B: Blueprint + 'static> Guest for Adapter<B> {
    fn describe() -> Description {
        Description {
            name: B::NAME.into(),
            resource_type: B::RESOURCE_TYPE.into(),
            description: B::DESCRIPTION.into(),
            config_schema: B::CONFIG_SCHEMA.into(),
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        parse_config::<B>(&config).map(|_| ())
    }

    fn can_allocate_resource(ctx: Context) -> AllocationVerdict {
        call::<B>(ctx).map_or(AllocationVerdict::Never, |c| B::can_allocate_resource(&c))
    }

    fn allocate_resource(ctx: Context) -> Step {
        step::<B>(ctx, B::allocate_resource)
    }

    fn activate_resource(ctx: Context) -> Step {
        step::<B>(ctx, B::activate_resource)
    }

    fn can_acquire_lease(ctx: Context) -> bool {
        call::<B>(ctx).is_ok_and(|c| B::can_acquire_lease(&c))
    }

    fn acquire_lease(ctx: Context) -> Step {
        step::<B>(ctx, B::acquire_lease)
    }

    fn activate_lease(ctx: Context) -> Step {
        step::<B>(ctx, B::activate_lease)
    }

    fn release_lease(ctx: Context) -> Step {
        step::<B>(ctx, B::release_lease)
    }

    fn destroy_resource(ctx: Context) -> Step {
        step::<B>(ctx, B::destroy_resource)
    }

    fn interface(ctx: Context) -> Result<CommandInterface, String> {
        call::<B>(ctx).and_then(|c| B::interface(&c))
    }
}
