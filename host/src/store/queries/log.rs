//! `log`: what happened to each object, for people.

use super::super::conn::{Conn, query};
use super::super::{LogEntry, ObjectId, Result, rows};

/// Appends a log entry of the host's own.
pub(crate) async fn add(
    c: &mut dyn Conn,
    object: ObjectId,
    kind: &str,
    message: &str,
    now: i64,
) -> Result<()> {
    add_charged(c, object, kind, message, None, now).await
}

/// Appends a log entry, counted against the log quota of `charged` if it is a blueprint's.
pub(crate) async fn add_charged(
    c: &mut dyn Conn,
    object: ObjectId,
    kind: &str,
    message: &str,
    charged: Option<ObjectId>,
    now: i64,
) -> Result<()> {
    let insert = query(
        "INSERT INTO log (object, kind, message, charged, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(object.to_string())
    .bind(kind)
    .bind(message)
    .bind(charged.map(|b| b.number()))
    .bind(now);
    c.execute(insert).await?;
    Ok(())
}

/// The kind and text of an object's last log entry, if it has one.
pub(crate) async fn last(c: &mut dyn Conn, object: ObjectId) -> Result<Option<(String, String)>> {
    let select = query("SELECT kind, message FROM log WHERE object = $1 ORDER BY id DESC LIMIT 1")
        .bind(object.to_string());
    c.optional(select, |row| Ok((row.text("kind")?, row.text("message")?)))
        .await
}

/// Up to `limit` entries after `after_id`, of `object` if given, oldest first.
pub(crate) async fn list(
    c: &mut dyn Conn,
    object: Option<ObjectId>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<LogEntry>> {
    let select = match object {
        Some(object) => {
            query("SELECT * FROM log WHERE object = $1 AND id > $2 ORDER BY id LIMIT $3")
                .bind(object.to_string())
        }
        None => query("SELECT * FROM log WHERE id > $1 ORDER BY id LIMIT $2"),
    };
    c.all(select.bind(after_id).bind(limit), rows::log).await
}

/// The last `limit` entries of every object, oldest first.
pub(crate) async fn recent(c: &mut dyn Conn, limit: i64) -> Result<Vec<LogEntry>> {
    let select =
        query("SELECT * FROM (SELECT * FROM log ORDER BY id DESC LIMIT $1) AS recent ORDER BY id")
            .bind(limit);
    c.all(select, rows::log).await
}
