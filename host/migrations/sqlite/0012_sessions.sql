-- Web UI sessions (host/src/web/session.rs), shared by every daemon on the database: a sign-in
-- on one daemon is honoured by all of them. Only hashes are kept: `id_hash` is the SHA-256 of
-- the session cookie's secret, `token_hash` the SHA-256 of the token signed in with. A session
-- speaks for that token while both live: revoking the token ends its sessions everywhere.
CREATE TABLE session (
    id_hash     TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX session_token ON session(token_hash);
CREATE INDEX session_expires ON session(expires_at);
