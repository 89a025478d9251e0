-- Fair share (host/src/scheduler.rs, host/src/limits.rs).
--
-- Every work item belongs to a tenant, whose due objects a claim takes in turn with the other
-- tenants': a resource and the supporting leases it asks for belong to its blueprint (`B3`), a
-- lease a user asked for to its owner (`owner:cli:alice`).
ALTER TABLE work_item ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
UPDATE work_item SET tenant = 'B' || resource.blueprint_id
  FROM resource
 WHERE work_item.object LIKE 'R%' AND resource.id = CAST(substr(work_item.object, 2) AS BIGINT);
UPDATE work_item SET tenant = CASE WHEN lease.parent_resource_id IS NULL THEN 'owner:' || lease.owner
                                   ELSE (SELECT 'B' || parent.blueprint_id FROM resource AS parent
                                          WHERE parent.id = lease.parent_resource_id) END
  FROM lease
 WHERE work_item.object LIKE 'L%' AND lease.id = CAST(substr(work_item.object, 2) AS BIGINT);
CREATE INDEX work_item_due_by_tenant ON work_item(tenant, wake_at, object)
    WHERE owner IS NULL AND wake_at IS NOT NULL;

-- The tenant of the lease a resource was made for: a tenant with resources being set up leaves
-- the last of its blueprint's setup slots and resource tokens to tenants with none. Resources
-- made before this migration count as made for no one.
ALTER TABLE resource ADD COLUMN made_for TEXT NOT NULL DEFAULT '';
-- The lease itself: a failed activation counts against that request's shape (worker::blame)
-- even when it runs before the lease has acquired the resource.
ALTER TABLE resource ADD COLUMN made_for_lease BIGINT;

-- A supporting lease's requester: the blueprint of the resource that asked for it. A blueprint's
-- resources may have so many supporting leases waiting at once (its `pending-supporting`).
ALTER TABLE lease ADD COLUMN requester BIGINT;
UPDATE lease SET requester = parent.blueprint_id
  FROM resource AS parent WHERE parent.id = lease.parent_resource_id;
CREATE INDEX lease_waiting_by_requester ON lease(requester)
    WHERE status = 'pending' AND requester IS NOT NULL;
-- One owner may have so many leases of a type waiting (`pending-per-owner`).
CREATE INDEX lease_waiting_by_owner ON lease(owner, resource_type)
    WHERE status IN ('pending', 'acquired');

-- A blueprint's limits: the operator's overrides as JSON (`{"setting-up": 4}`); the rest have
-- their defaults. Its resource bucket (GCRA: the time, in microseconds, at which it would be
-- full again), and the bytes of its log and step history that are kept, which the daemons add
-- to every second (`quota`) and retention gives back as it prunes.
ALTER TABLE blueprint ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE blueprint ADD COLUMN resource_tat BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blueprint ADD COLUMN log_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blueprint ADD COLUMN step_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE blueprint SET step_bytes = coalesce(
    (SELECT sum(octet_length(step)) FROM step WHERE step.blueprint_id = blueprint.id), 0);
-- The blueprint whose log quota an entry counts against: what its steps logged or printed.
-- Entries from before this migration count against none.
ALTER TABLE log ADD COLUMN charged BIGINT;
