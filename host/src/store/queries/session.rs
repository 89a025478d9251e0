//! `session`: the web UI's sessions, by the hash of their cookie's secret, shared by every
//! daemon (`crate::web::session`).

use super::super::conn::{Conn, query};
use super::super::{NewSession, Result};

/// Stores a session, and forgets the ones that expired.
pub(crate) async fn insert(c: &mut dyn Conn, new: &NewSession, now: i64) -> Result<()> {
    c.execute(query("DELETE FROM session WHERE expires_at <= $1").bind(now))
        .await?;
    let insert = query(
        "INSERT INTO session (id_hash, token_sealed, token_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&new.id_hash)
    .bind(&new.token_sealed)
    .bind(new.token_id)
    .bind(now)
    .bind(new.expires_at as i64);
    c.execute(insert).await?;
    Ok(())
}

/// The sealed token hash of the session `id_hash`, if it has not expired at `now`.
pub(crate) async fn token_sealed(
    c: &mut dyn Conn,
    id_hash: &str,
    now: i64,
) -> Result<Option<String>> {
    let select = query("SELECT token_sealed FROM session WHERE id_hash = $1 AND expires_at > $2")
        .bind(id_hash)
        .bind(now);
    c.optional(select, |row| row.text("token_sealed")).await
}

/// Ends a session.
pub(crate) async fn delete(c: &mut dyn Conn, id_hash: &str) -> Result<()> {
    c.execute(query("DELETE FROM session WHERE id_hash = $1").bind(id_hash))
        .await?;
    Ok(())
}

/// Ends every session signed in with the database's token `token_id`.
pub(crate) async fn delete_of_token(c: &mut dyn Conn, token_id: i64) -> Result<()> {
    c.execute(query("DELETE FROM session WHERE token_id = $1").bind(token_id))
        .await?;
    Ok(())
}
