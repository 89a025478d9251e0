//! `component`: the wasm bytes of blueprints, stored once per digest.

use super::super::conn::{Conn, query};
use super::super::{Error, Result};

/// Stores a component's bytes unless a component of that digest is stored already.
pub(crate) async fn insert(c: &mut dyn Conn, digest: &str, wasm: &[u8], now: i64) -> Result<()> {
    let insert = query(
        "INSERT INTO component (digest, wasm, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (digest) DO NOTHING",
    );
    c.execute(insert.bind(digest).bind(wasm).bind(now)).await?;
    Ok(())
}

/// A component's bytes.
pub(crate) async fn get(c: &mut dyn Conn, digest: &str) -> Result<Vec<u8>> {
    let select = query("SELECT wasm FROM component WHERE digest = $1").bind(digest);
    c.optional(select, |row| row.bytes("wasm"))
        .await?
        .ok_or_else(|| Error::NotFound(format!("component {digest}")))
}
