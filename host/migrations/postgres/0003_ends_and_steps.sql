-- How a lease or resource ended, kept on its row once it stops being live: released (by
-- whom), broken (why) or expired. The first end recorded wins.
ALTER TABLE lease ADD COLUMN end_kind TEXT;
ALTER TABLE lease ADD COLUMN end_detail TEXT;
ALTER TABLE lease ADD COLUMN ended_at BIGINT;
ALTER TABLE resource ADD COLUMN end_kind TEXT;
ALTER TABLE resource ADD COLUMN end_detail TEXT;
ALTER TABLE resource ADD COLUMN ended_at BIGINT;

-- Failures are few: the failed filter and the console's counts read them by id and by time.
CREATE INDEX lease_failed ON lease(id) WHERE end_kind = 'broken';
CREATE INDEX lease_failed_at ON lease(ended_at) WHERE end_kind = 'broken';
CREATE INDEX resource_failed ON resource(id) WHERE end_kind = 'broken';
CREATE INDEX resource_failed_at ON resource(ended_at) WHERE end_kind = 'broken';

-- Lists page newest first under filters.
CREATE INDEX lease_status_page ON lease(status, id);
CREATE INDEX resource_status_page ON resource(status, id);
CREATE INDEX lease_owner_page ON lease(owner, id);

-- The audit trail: every step a blueprint returned, what it asked for, and whether the host
-- applied it or refused it and why.
CREATE TABLE step (
    id            BIGSERIAL PRIMARY KEY,
    object        TEXT NOT NULL,
    blueprint_id  BIGINT NOT NULL,
    hook          TEXT NOT NULL,
    step          TEXT,            -- the step as JSON; NULL when the call returned none
    verdict       TEXT NOT NULL,   -- applied | refused: <why> | failed: <why>
    duration_us   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX step_by_object ON step(object, id);
CREATE INDEX step_by_time ON step(created_at);
