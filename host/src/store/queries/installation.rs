//! `installation`: values that belong to the whole installation, by key.

use super::super::conn::{Conn, query};
use super::super::{Error, Result};

/// The row holding the secret mixed into blueprint calls' random seeds.
pub(crate) const SEED_SECRET_KEY: &str = "seed-secret";

/// The value stored under `key`, if any.
pub(crate) async fn get(c: &mut dyn Conn, key: &str) -> Result<Option<Vec<u8>>> {
    let select = query("SELECT value FROM installation WHERE key = $1").bind(key);
    c.optional(select, |row| row.bytes("value")).await
}

/// The value stored under `key`: `value`, unless another was stored first.
pub(crate) async fn get_or_insert(c: &mut dyn Conn, key: &str, value: &[u8]) -> Result<Vec<u8>> {
    let insert =
        query("INSERT INTO installation (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING");
    c.execute(insert.bind(key).bind(value)).await?;
    let select = query("SELECT value FROM installation WHERE key = $1").bind(key);
    c.one(select, |row| row.bytes("value")).await
}

/// The stored installation secret as its 32 bytes; a value of another length is corrupt (the
/// error says how long it was, never what it holds).
pub(crate) fn secret_bytes(stored: &[u8]) -> Result<[u8; 32]> {
    stored.try_into().map_err(|_| {
        Error::Corrupt(format!(
            "the installation's seed secret is {} bytes, not 32",
            stored.len()
        ))
    })
}
