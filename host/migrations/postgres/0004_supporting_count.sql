-- How many supporting leases each resource has requested (destroyed ones included), so that
-- the snapshot of a resource that never requested one is built without looking for them.
ALTER TABLE resource ADD COLUMN supporting BIGINT NOT NULL DEFAULT 0;
UPDATE resource SET supporting =
    (SELECT count(*) FROM lease WHERE lease.parent_resource_id = resource.id);
