// scratch-js: scratch directories on this machine, one resource per directory.
//
// A Drydock blueprint written in JavaScript and built into a WebAssembly component with
// componentize-js (see build.sh). Its config names a root directory and how many scratch
// directories may exist under it; each resource is one directory, `<root>/slot-<n>`, guarded by
// a slot lock, and holds one lease at a time. Leases run commands in the directory through a
// local command interface.
//
// The component only returns actions: the host validates and applies them. WIT names become
// camelCase, variants `{tag, val}`, enums strings, and a thrown value is a `result` error.

const NAME = 'scratch-js';
const RESOURCE_TYPE = 'scratch';
const SCHEMA = {
  type: 'object',
  required: ['root'],
  additionalProperties: false,
  properties: {
    root: { type: 'string', description: 'absolute directory, without spaces' },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 4 },
  },
};

/** The config as an object; throws a message naming what is wrong. */
function parseConfig(text) {
  let config;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw `the config is not JSON: ${error.message}`;
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw 'the config must be a JSON object';
  }
  const unknown = Object.keys(config).filter((k) => k !== 'root' && k !== 'limit').sort();
  if (unknown.length > 0) {
    throw `unknown config keys: ${unknown.join(', ')}`;
  }
  const root = config.root;
  if (typeof root !== 'string' || !root.startsWith('/') || root.includes(' ')) {
    throw 'root must be an absolute path without spaces';
  }
  const limit = config.limit ?? 4;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw 'limit must be an integer from 1 to 1000';
  }
  return { root: root.replace(/\/+$/, '') || '/', limit };
}

/** An attribute of a resource or lease snapshot, or undefined. */
function attribute(snapshot, key) {
  return snapshot.attributes.find((a) => a.key === key)?.value;
}

/** This blueprint's resources that still hold their directory. */
function live(ctx) {
  return ctx.blueprintResources.filter((r) => r.status !== 'destroyed');
}

const done = (...actions) => ({ actions, outcome: { tag: 'done' } });
const setAttribute = (key, value) => ({ tag: 'set-attribute', val: { key, value } });
const slotLocks = (...names) => ({ tag: 'take-slot-locks', val: names });
const log = (line) => ({ tag: 'log', val: line });

export const hooks = {
  describe() {
    return {
      name: NAME,
      resourceType: RESOURCE_TYPE,
      description: 'Scratch directories on this machine, one lease at a time each (JavaScript).',
      configSchema: JSON.stringify(SCHEMA),
    };
  },

  validateConfig(config) {
    parseConfig(config);
  },

  canAllocateResource(ctx) {
    return live(ctx).length < parseConfig(ctx.config).limit ? 'yes' : 'not-now';
  },

  allocateResource(ctx) {
    const { root, limit } = parseConfig(ctx.config);
    const taken = new Set(live(ctx).map((r) => attribute(r, 'slot')));
    let slot = 0;
    while (slot < limit && taken.has(String(slot))) slot += 1;
    if (slot === limit) {
      return { actions: [], outcome: { tag: 'fail', val: `all ${limit} scratch directories exist` } };
    }
    const path = `${root}/slot-${slot}`;
    return done(
      slotLocks(`scratch-dir(${path})`),
      setAttribute('slot', String(slot)),
      setAttribute('path', path),
      log(`scratch directory ${path}`),
    );
  },

  activateResource(ctx) {
    return done();
  },

  canAcquireLease(ctx) {
    return true;
  },

  acquireLease(ctx) {
    // One lease at a time: a second acquisition finds the lock taken and goes elsewhere.
    return done(slotLocks(`scratch-lease(${attribute(ctx.resource, 'path')})`));
  },

  activateLease(ctx) {
    return done(setAttribute('path', attribute(ctx.resource, 'path')));
  },

  releaseLease(ctx) {
    return done(log(`released ${attribute(ctx.resource, 'path')}`));
  },

  destroyResource(ctx) {
    return done(log(`forgot ${attribute(ctx.resource, 'path')}`));
  },

  interface(ctx) {
    const path = attribute(ctx.resource, 'path');
    if (path === undefined) {
      throw 'the resource has no path yet';
    }
    return { tag: 'local', val: { root: path } };
  },
};
