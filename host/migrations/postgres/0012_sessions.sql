-- Web UI sessions (host/src/web/session.rs), shared by every daemon on the database: a sign-in
-- on one daemon is honoured by every daemon that knows its token. Nothing here signs anyone
-- in: `id_hash` is the SHA-256 of the session cookie's secret, and `token_sealed` the SHA-256
-- of the token signed in with, masked by a pad made from that secret, so that a copy of the
-- database tells nothing about the token (an operator token from a daemon's file may be one a
-- person chose). `token_id` is the database's token, when it is one: revoking it deletes its
-- sessions.
CREATE TABLE session (
    id_hash       TEXT PRIMARY KEY,
    token_sealed  TEXT NOT NULL,
    token_id      BIGINT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX session_token ON session(token_id);
CREATE INDEX session_expires ON session(expires_at);
