-- What belongs to the installation as a whole, one row per key. `seed-secret`: 32 random bytes,
-- made at the daemon's first start (`Store::installation_secret`) and mixed into every blueprint
-- call's random seed, so that the random bytes a blueprint reads cannot be recomputed from what
-- the API shows. Nothing shows it.
CREATE TABLE installation (
    key    TEXT PRIMARY KEY,
    value  BYTEA NOT NULL
);
