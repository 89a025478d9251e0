-- Nothing to do: PostgreSQL's first schema (0001) already held what SQLite's second migration
-- added (claims on the boot clock, operators' grants, failure streaks, depth, waiting leases,
-- capacity generations, the indexes on live objects). The migration keeps the number so that
-- both backends count their schema on one line: version N means the same on both.
--
-- Databases migrated before the line was one recorded the migrations after this one a number
-- lower; opening them renumbers their history (host/src/store/postgres/migrate.rs).
SELECT 1;
