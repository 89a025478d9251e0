-- API tokens with roles (host/src/access.rs), shared by every daemon on the database: a
-- revoked token is refused by all of them at once. Only a SHA-256 of each secret is kept; the
-- secret is shown once, when the token is made. A name is unique among the tokens not revoked.
-- `resource_types`: JSON list of the types a requester may lease, NULL for any.
CREATE TABLE token (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    secret_hash     TEXT NOT NULL UNIQUE,
    resource_types  TEXT,
    expires_at      BIGINT,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE UNIQUE INDEX token_live_name ON token(name) WHERE revoked_at IS NULL;
