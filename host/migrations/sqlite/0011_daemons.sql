-- The daemons serving the database (host/src/daemon.rs): each writes its row at start and
-- every few seconds while it runs, and removes it when it stops. A row not seen for a while is
-- a daemon that died; `drydock daemon list` shows both, and `lease request --wait` says when
-- no daemon has been seen lately.
CREATE TABLE daemon (
    name        TEXT PRIMARY KEY,
    version     TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL
);
