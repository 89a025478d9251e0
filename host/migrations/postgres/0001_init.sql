-- Drydock's schema on PostgreSQL. Times are milliseconds since the Unix epoch, on the
-- database's clock (drydock_now): claims expire on one clock whatever the hosts' clocks say.
-- Object ids in `command`, `work_item`, `slot_lock` and `log` are short ids with a type letter
-- (`R7`, `L12`).

-- The database's clock: the one clock every daemon's claims expire on.
CREATE FUNCTION drydock_now() RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
$$;

CREATE TABLE component (
    digest      TEXT PRIMARY KEY,
    wasm        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE blueprint (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    component       TEXT NOT NULL REFERENCES component(digest),
    component_name  TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    config          TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    grants          TEXT NOT NULL DEFAULT '[]',
    failures        BIGINT NOT NULL DEFAULT 0,
    retry_at        BIGINT,
    last_failure    TEXT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE resource (
    id            BIGSERIAL PRIMARY KEY,
    blueprint_id  BIGINT NOT NULL REFERENCES blueprint(id),
    resource_type TEXT NOT NULL,
    status        TEXT NOT NULL,
    attributes    TEXT NOT NULL DEFAULT '{}',
    until         BIGINT,
    depth         BIGINT NOT NULL DEFAULT 0,
    exec_results  TEXT NOT NULL DEFAULT '[]',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX resource_by_status ON resource(status);
CREATE INDEX resource_live_of_blueprint ON resource(blueprint_id) WHERE status <> 'destroyed';
CREATE INDEX resource_made ON resource(blueprint_id, created_at);
CREATE INDEX resource_destroyed ON resource(updated_at) WHERE status = 'destroyed';

CREATE TABLE lease (
    id                  BIGSERIAL PRIMARY KEY,
    resource_type       TEXT NOT NULL,
    status              TEXT NOT NULL,
    attributes          TEXT NOT NULL DEFAULT '{}',
    allowed_blueprints  TEXT NOT NULL DEFAULT '[]',
    owner               TEXT NOT NULL,
    resource_id         BIGINT REFERENCES resource(id),
    parent_resource_id  BIGINT REFERENCES resource(id),
    parent_key          TEXT,
    until               BIGINT,
    depth               BIGINT NOT NULL DEFAULT 0,
    acquiring           BIGINT REFERENCES resource(id),
    waiting             BOOLEAN NOT NULL DEFAULT FALSE,
    exec_results        TEXT NOT NULL DEFAULT '[]',
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX lease_by_resource ON lease(resource_id);
CREATE INDEX lease_live_on_resource ON lease(resource_id) WHERE status <> 'destroyed';
CREATE INDEX lease_by_parent ON lease(parent_resource_id);
CREATE INDEX lease_acquiring ON lease(acquiring) WHERE acquiring IS NOT NULL;
CREATE INDEX lease_by_status ON lease(status, resource_type);
CREATE INDEX lease_waiting ON lease(resource_type, id) WHERE waiting;
CREATE INDEX lease_destroyed ON lease(updated_at) WHERE status = 'destroyed';
CREATE UNIQUE INDEX lease_parent_key ON lease(parent_resource_id, parent_key)
    WHERE parent_resource_id IS NOT NULL;

CREATE TABLE command (
    id           BIGSERIAL PRIMARY KEY,
    target       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    author       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    consumed_at  BIGINT,
    outcome      TEXT
);
CREATE INDEX command_pending ON command(target, id) WHERE consumed_at IS NULL;
CREATE INDEX command_by_target ON command(target, id);
CREATE INDEX command_consumed ON command(consumed_at) WHERE consumed_at IS NOT NULL;

-- One row per object: queue entry, coalescing flag and fenced lock at once.
CREATE TABLE work_item (
    object       TEXT PRIMARY KEY,
    wake_at      BIGINT,
    owner        TEXT,
    token        BIGINT NOT NULL DEFAULT 0,
    lease_until  BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX work_item_due ON work_item(wake_at, object) WHERE owner IS NULL AND wake_at IS NOT NULL;
CREATE INDEX work_item_claimed ON work_item(lease_until) WHERE owner IS NOT NULL;

CREATE TABLE slot_lock (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX slot_lock_by_owner ON slot_lock(owner);

CREATE TABLE log (
    id          BIGSERIAL PRIMARY KEY,
    object      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX log_by_object ON log(object, id);
CREATE INDEX log_by_time ON log(created_at);

-- A generation per resource type that every change of capacity moves on.
CREATE TABLE capacity (
    resource_type  TEXT PRIMARY KEY,
    generation     BIGINT NOT NULL
);

-- An object's work item goes with the object's row.
CREATE FUNCTION drydock_forget_work_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM work_item WHERE object = TG_ARGV[0] || OLD.id;
    RETURN OLD;
END
$$;
CREATE TRIGGER lease_work_item_gone AFTER DELETE ON lease
    FOR EACH ROW EXECUTE FUNCTION drydock_forget_work_item('L');
CREATE TRIGGER resource_work_item_gone AFTER DELETE ON resource
    FOR EACH ROW EXECUTE FUNCTION drydock_forget_work_item('R');
