-- Claims expire on the boot clock (never stepped), tagged with the boot they count from.
ALTER TABLE work_item ADD COLUMN claim_boot TEXT;

-- Operators' grants, and each blueprint's streak of failed allocations and activations.
ALTER TABLE blueprint ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
ALTER TABLE blueprint ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blueprint ADD COLUMN retry_at INTEGER;
ALTER TABLE blueprint ADD COLUMN last_failure TEXT;

-- How deep an object sits in a chain of supporting leases; the resource an unfinished
-- acquisition is about.
ALTER TABLE resource ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lease ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lease ADD COLUMN acquiring INTEGER REFERENCES resource(id);

-- Leases waiting for capacity of their type, and a generation per type that every change of
-- capacity bumps: a lease that read generation N and finds N+1 when it goes to sleep wakes at
-- once instead (no lost wake-up).
ALTER TABLE lease ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
CREATE TABLE capacity (
    resource_type  TEXT PRIMARY KEY,
    generation     INTEGER NOT NULL
) WITHOUT ROWID;

-- Queries that touch only live objects stay flat however many finished ones are kept.
CREATE INDEX lease_live_on_resource ON lease(resource_id) WHERE status != 'destroyed';
CREATE INDEX lease_waiting ON lease(resource_type, id) WHERE waiting = 1;
CREATE INDEX resource_live_of_blueprint ON resource(blueprint_id) WHERE status != 'destroyed';
CREATE INDEX resource_made ON resource(blueprint_id, created_at);

-- Retention: what finished long ago is found by age.
CREATE INDEX lease_destroyed ON lease(updated_at) WHERE status = 'destroyed';
CREATE INDEX resource_destroyed ON resource(updated_at) WHERE status = 'destroyed';
CREATE INDEX command_consumed ON command(consumed_at) WHERE consumed_at IS NOT NULL;
CREATE INDEX log_by_time ON log(created_at);
CREATE INDEX lease_acquiring ON lease(acquiring) WHERE acquiring IS NOT NULL;

-- An object's work item goes with the object's row.
CREATE TRIGGER lease_work_item_gone AFTER DELETE ON lease
BEGIN
    DELETE FROM work_item WHERE object = 'L' || old.id;
END;
CREATE TRIGGER resource_work_item_gone AFTER DELETE ON resource
BEGIN
    DELETE FROM work_item WHERE object = 'R' || old.id;
END;
