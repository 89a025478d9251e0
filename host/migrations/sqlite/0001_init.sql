-- Drydock's schema on SQLite. Times are milliseconds since the Unix epoch. Object ids in
-- `command`, `work_item`, `slot_lock` and `log` are short ids with a type letter (`R7`, `L12`).

CREATE TABLE component (
    digest      TEXT PRIMARY KEY,            -- SHA-256 of the wasm
    wasm        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE blueprint (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    component       TEXT NOT NULL REFERENCES component(digest),
    component_name  TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    config          TEXT NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL
);

CREATE TABLE resource (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    blueprint_id  INTEGER NOT NULL REFERENCES blueprint(id),
    resource_type TEXT NOT NULL,
    status        TEXT NOT NULL,
    attributes    TEXT NOT NULL DEFAULT '{}',
    until         INTEGER,
    exec_results  TEXT NOT NULL DEFAULT '[]',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX resource_by_blueprint ON resource(blueprint_id, status);
CREATE INDEX resource_by_status ON resource(status);

CREATE TABLE lease (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type       TEXT NOT NULL,
    status              TEXT NOT NULL,
    attributes          TEXT NOT NULL DEFAULT '{}',
    allowed_blueprints  TEXT NOT NULL DEFAULT '[]',
    owner               TEXT NOT NULL,
    resource_id         INTEGER REFERENCES resource(id),
    parent_resource_id  INTEGER REFERENCES resource(id),
    parent_key          TEXT,
    until               INTEGER,
    exec_results        TEXT NOT NULL DEFAULT '[]',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX lease_by_resource ON lease(resource_id, status);
CREATE INDEX lease_by_parent ON lease(parent_resource_id);
CREATE INDEX lease_by_status ON lease(status, resource_type);
CREATE UNIQUE INDEX lease_parent_key ON lease(parent_resource_id, parent_key)
    WHERE parent_resource_id IS NOT NULL;

CREATE TABLE command (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    author       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    consumed_at  INTEGER,
    outcome      TEXT
);
CREATE INDEX command_pending ON command(target, id) WHERE consumed_at IS NULL;
CREATE INDEX command_by_target ON command(target, id);

-- One row per object: queue entry, coalescing flag and fenced lock at once.
CREATE TABLE work_item (
    object       TEXT PRIMARY KEY,
    wake_at      INTEGER,            -- due time; NULL when nothing is due
    owner        TEXT,               -- the worker holding the claim
    token        INTEGER NOT NULL DEFAULT 0,   -- fencing token, +1 per claim
    lease_until  INTEGER,            -- the claim expires then
    attempts     INTEGER NOT NULL DEFAULT 0,   -- consecutive failed runs
    last_error   TEXT
) WITHOUT ROWID;
CREATE INDEX work_item_due ON work_item(wake_at) WHERE owner IS NULL AND wake_at IS NOT NULL;
CREATE INDEX work_item_claimed ON work_item(lease_until) WHERE owner IS NOT NULL;

CREATE TABLE slot_lock (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX slot_lock_by_owner ON slot_lock(owner);

CREATE TABLE log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    object      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX log_by_object ON log(object, id);
