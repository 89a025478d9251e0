//! `token`: the API's tokens with roles (`crate::access`), shared by every daemon.

use super::super::conn::{Conn, query};
use super::super::rows::{self, json};
use super::super::{Error, NewToken, Result, Token};

/// Stores a new token; a name that a token not revoked has is a conflict.
pub(crate) async fn insert(c: &mut dyn Conn, new: &NewToken, now: i64) -> Result<Token> {
    let insert = query(
        "INSERT INTO token (name, role, secret_hash, resource_types, expires_at, created_by,
                            created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING RETURNING *",
    )
    .bind(&new.name)
    .bind(new.role.as_str())
    .bind(&new.secret_hash)
    .bind(new.resource_types.as_ref().map(json))
    .bind(new.expires_at.map(|t| t as i64))
    .bind(&new.created_by)
    .bind(now);
    c.optional(insert, rows::token).await?.ok_or_else(|| {
        Error::Conflict(format!(
            "a token named {:?} exists: revoke it first, or choose another name",
            new.name
        ))
    })
}

/// Every token, revoked ones too, oldest first.
pub(crate) async fn list(c: &mut dyn Conn) -> Result<Vec<Token>> {
    c.all(query("SELECT * FROM token ORDER BY id"), rows::token)
        .await
}

/// Revokes the live token named `name`.
pub(crate) async fn revoke(c: &mut dyn Conn, name: &str, now: i64) -> Result<Token> {
    let update = query(
        "UPDATE token SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING *",
    );
    c.optional(update.bind(now).bind(name), rows::token)
        .await?
        .ok_or_else(|| Error::NotFound(format!("a token named {name:?} that is not revoked")))
}

/// The token whose secret hashes to `secret_hash`, revoked or not.
pub(crate) async fn by_secret_hash(c: &mut dyn Conn, secret_hash: &str) -> Result<Option<Token>> {
    let select = query("SELECT * FROM token WHERE secret_hash = $1").bind(secret_hash);
    c.optional(select, rows::token).await
}
