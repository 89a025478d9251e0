//! `command`: the persistent command queue of every lease and resource.

use super::super::conn::{Conn, query};
use super::super::{Command, CommandFilter, CommandKind, ObjectId, Result, rows};

/// Inserts a command (without waking its target).
pub(crate) async fn insert(
    c: &mut dyn Conn,
    target: ObjectId,
    kind: CommandKind,
    author: &str,
    now: i64,
) -> Result<Command> {
    let insert = query(
        "INSERT INTO command (target, kind, author, created_at) VALUES ($1, $2, $3, $4)
         RETURNING *",
    )
    .bind(target.to_string())
    .bind(kind.as_str())
    .bind(author)
    .bind(now);
    c.one(insert, rows::command).await
}

/// Records a command's outcome; the command's kind, or `None` if it was consumed already.
pub(crate) async fn consume(
    c: &mut dyn Conn,
    id: i64,
    outcome: &str,
    now: i64,
) -> Result<Option<String>> {
    let update = query(
        "UPDATE command SET consumed_at = $1, outcome = $2
          WHERE id = $3 AND consumed_at IS NULL RETURNING kind",
    )
    .bind(now)
    .bind(outcome)
    .bind(id);
    c.optional(update, |row| row.text("kind")).await
}

/// Whether a release for the lease is queued.
pub(crate) async fn release_queued(c: &mut dyn Conn, lease: ObjectId) -> Result<bool> {
    let select = c.dialect().pick(
        "SELECT EXISTS (SELECT 1 FROM command INDEXED BY command_pending
                         WHERE target = $1 AND kind = 'release' AND consumed_at IS NULL) AS queued",
        "SELECT EXISTS (SELECT 1 FROM command
                         WHERE target = $1 AND kind = 'release' AND consumed_at IS NULL) AS queued",
    );
    let select = query(select).bind(lease.to_string());
    c.one(select, |row| row.flag("queued")).await
}

/// The commands `filter` selects, oldest first: one statement per filter, each using its index
/// (pinned on SQLite, whose planner would scan for the pending ones: the table keeps every
/// consumed command until retention prunes it).
pub(crate) async fn list(c: &mut dyn Conn, filter: &CommandFilter) -> Result<Vec<Command>> {
    let dialect = c.dialect();
    let select = match (filter.target, filter.pending) {
        (Some(target), true) => query(dialect.pick(
            "SELECT * FROM command INDEXED BY command_pending
              WHERE target = $1 AND consumed_at IS NULL ORDER BY id",
            "SELECT * FROM command WHERE target = $1 AND consumed_at IS NULL ORDER BY id",
        ))
        .bind(target.to_string()),
        (Some(target), false) => query(dialect.pick(
            "SELECT * FROM command INDEXED BY command_by_target WHERE target = $1 ORDER BY id",
            "SELECT * FROM command WHERE target = $1 ORDER BY id",
        ))
        .bind(target.to_string()),
        (None, true) => query(dialect.pick(
            "SELECT * FROM command INDEXED BY command_pending
              WHERE consumed_at IS NULL ORDER BY id",
            "SELECT * FROM command WHERE consumed_at IS NULL ORDER BY id",
        )),
        (None, false) => query("SELECT * FROM command ORDER BY id"),
    };
    c.all(select, rows::command).await
}
