-- A blueprint's version: 1 when added, one more at each `blueprint update`. An update is
-- prepared (its component loaded, its config validated) from one version and refused when
-- another update replaced that version meanwhile, so that no update writes over a change it
-- never saw.
ALTER TABLE blueprint ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
