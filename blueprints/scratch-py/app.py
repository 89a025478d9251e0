"""scratch-py: scratch directories on this machine, one resource per directory.

A Drydock blueprint written in Python and built into a WebAssembly component with
componentize-py (see build.sh). Its config names a root directory and how many scratch
directories may exist under it; each resource is one directory, `<root>/slot-<n>`, guarded by a
slot lock, and holds one lease at a time. Leases run commands in the directory through a local
command interface.

The component only returns actions: the host validates and applies them.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import hooks as h

NAME = "scratch-py"
RESOURCE_TYPE = "scratch"
SCHEMA = {
    "type": "object",
    "required": ["root"],
    "additionalProperties": False,
    "properties": {
        "root": {"type": "string", "description": "absolute directory, without spaces"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 4},
    },
}


def parse_config(text: str) -> dict:
    """The config as a dict, or ValueError naming what is wrong."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"the config is not JSON: {error}")
    if not isinstance(config, dict):
        raise ValueError("the config must be a JSON object")
    unknown = sorted(set(config) - {"root", "limit"})
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(unknown)}")
    root = config.get("root")
    if not isinstance(root, str) or not root.startswith("/") or " " in root:
        raise ValueError("root must be an absolute path without spaces")
    limit = config.get("limit", 4)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise ValueError("limit must be an integer from 1 to 1000")
    return {"root": root.rstrip("/") or "/", "limit": limit}


def attribute(snapshot, key: str):
    """An attribute of a resource or lease snapshot, or None."""
    for item in snapshot.attributes:
        if item.key == key:
            return item.value
    return None


def live(ctx: h.Context) -> list:
    """This blueprint's resources that still hold their directory."""
    gone = (h.ResourceStatus.DESTROYED,)
    return [r for r in ctx.blueprint_resources if r.status not in gone]


def done(*actions) -> h.Step:
    return h.Step(list(actions), h.Outcome_Done())


class Hooks(exports.Hooks):
    def describe(self) -> h.Description:
        return h.Description(
            NAME,
            RESOURCE_TYPE,
            "Scratch directories on this machine, one lease at a time each (Python).",
            json.dumps(SCHEMA),
        )

    def validate_config(self, config: str) -> None:
        try:
            parse_config(config)
        except ValueError as error:
            raise Err(str(error))

    def can_allocate_resource(self, ctx: h.Context) -> h.AllocationVerdict:
        limit = parse_config(ctx.config)["limit"]
        if len(live(ctx)) < limit:
            return h.AllocationVerdict.YES
        return h.AllocationVerdict.NOT_NOW

    def allocate_resource(self, ctx: h.Context) -> h.Step:
        config = parse_config(ctx.config)
        taken = {attribute(r, "slot") for r in live(ctx)}
        free = [n for n in range(config["limit"]) if str(n) not in taken]
        if not free:
            return h.Step([], h.Outcome_Fail(f"all {config['limit']} scratch directories exist"))
        slot = free[0]
        path = f"{config['root']}/slot-{slot}"
        return done(
            h.Action_TakeSlotLocks([f"scratch-dir({path})"]),
            h.Action_SetAttribute(h.Attribute("slot", str(slot))),
            h.Action_SetAttribute(h.Attribute("path", path)),
            h.Action_Log(f"scratch directory {path}"),
        )

    def activate_resource(self, ctx: h.Context) -> h.Step:
        return done()

    def can_acquire_lease(self, ctx: h.Context) -> bool:
        return True

    def acquire_lease(self, ctx: h.Context) -> h.Step:
        # One lease at a time: a second acquisition finds the lock taken and goes elsewhere.
        path = attribute(ctx.resource, "path")
        return done(h.Action_TakeSlotLocks([f"scratch-lease({path})"]))

    def activate_lease(self, ctx: h.Context) -> h.Step:
        return done(h.Action_SetAttribute(h.Attribute("path", attribute(ctx.resource, "path"))))

    def release_lease(self, ctx: h.Context) -> h.Step:
        return done(h.Action_Log(f"released {attribute(ctx.resource, 'path')}"))

    def destroy_resource(self, ctx: h.Context) -> h.Step:
        return done(h.Action_Log(f"forgot {attribute(ctx.resource, 'path')}"))

    def interface(self, ctx: h.Context) -> h.CommandInterface:
        path = attribute(ctx.resource, "path")
        if path is None:
            raise Err("the resource has no path yet")
        return h.CommandInterface_Local(h.LocalInterface(path))
