//! `session`: the web UI's sessions, by the hash of their cookie's secret, shared by every
//! daemon (`crate::web::session`).

use super::super::Result;
use super::super::conn::{Conn, query};

/// Stores a session, and forgets the ones that expired.
pub(crate) async fn insert(
    c: &mut dyn Conn,
    id_hash: &str,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    c.execute(query("DELETE FROM session WHERE expires_at <= $1").bind(now))
        .await?;
    let insert = query(
        "INSERT INTO session (id_hash, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id_hash)
    .bind(token_hash)
    .bind(now)
    .bind(expires_at);
    c.execute(insert).await?;
    Ok(())
}

/// The hash of the token a session unexpired at `now` was signed in with.
pub(crate) async fn token_hash(
    c: &mut dyn Conn,
    id_hash: &str,
    now: i64,
) -> Result<Option<String>> {
    let select = query("SELECT token_hash FROM session WHERE id_hash = $1 AND expires_at > $2")
        .bind(id_hash)
        .bind(now);
    c.optional(select, |row| row.text("token_hash")).await
}

/// Ends a session.
pub(crate) async fn delete(c: &mut dyn Conn, id_hash: &str) -> Result<()> {
    c.execute(query("DELETE FROM session WHERE id_hash = $1").bind(id_hash))
        .await?;
    Ok(())
}

/// Ends every session signed in with the token `token_id`.
pub(crate) async fn delete_of_token(c: &mut dyn Conn, token_id: i64) -> Result<()> {
    let delete = query(
        "DELETE FROM session WHERE token_hash = (SELECT secret_hash FROM token WHERE id = $1)",
    );
    c.execute(delete.bind(token_id)).await?;
    Ok(())
}
