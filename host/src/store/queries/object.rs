//! The statements that address a lease or a resource alike, by its id: each picks its table
//! (`lease` or `resource`) from the id; a blueprint's id is refused.

use super::super::conn::{Conn, Dialect, query};
use super::super::{Error, ObjectId, Result};

/// One of two statements, by the object's table.
fn by_table(object: ObjectId, resource: &'static str, lease: &'static str) -> Result<&'static str> {
    match object {
        ObjectId::Resource(_) => Ok(resource),
        ObjectId::Lease(_) => Ok(lease),
        ObjectId::Blueprint(_) => Err(Error::NotFound(format!(
            "{object} is not a lease or resource"
        ))),
    }
}

/// A resource's or lease's status and, for a supporting lease, its owner's number; the row
/// cannot change before the transaction ends (PostgreSQL locks it for share).
pub(crate) async fn status(
    c: &mut dyn Conn,
    object: ObjectId,
) -> Result<Option<(String, Option<i64>)>> {
    let select = match c.dialect() {
        Dialect::Sqlite => by_table(
            object,
            "SELECT status, NULL AS parent FROM resource WHERE id = $1",
            "SELECT status, parent_resource_id AS parent FROM lease WHERE id = $1",
        )?,
        Dialect::Postgres => by_table(
            object,
            "SELECT status, CAST(NULL AS BIGINT) AS parent FROM resource WHERE id = $1 FOR SHARE",
            "SELECT status, parent_resource_id AS parent FROM lease WHERE id = $1 FOR SHARE",
        )?,
    };
    let select = query(select).bind(object.number());
    c.optional(select, |row| {
        Ok((row.text("status")?, row.opt_int("parent")?))
    })
    .await
}

/// Sets a resource's or lease's status (a lease stops waiting for capacity).
pub(crate) async fn set_status(
    c: &mut dyn Conn,
    object: ObjectId,
    status: &str,
    now: i64,
) -> Result<()> {
    let update = by_table(
        object,
        "UPDATE resource SET status = $1, updated_at = $2 WHERE id = $3",
        "UPDATE lease SET status = $1, waiting = FALSE, updated_at = $2 WHERE id = $3",
    )?;
    c.execute(query(update).bind(status).bind(now).bind(object.number()))
        .await?;
    Ok(())
}

/// An object's attributes as stored (JSON text), the row locked for update.
pub(crate) async fn attributes(c: &mut dyn Conn, object: ObjectId) -> Result<Option<String>> {
    let select = match c.dialect() {
        Dialect::Sqlite => by_table(
            object,
            "SELECT attributes FROM resource WHERE id = $1",
            "SELECT attributes FROM lease WHERE id = $1",
        )?,
        Dialect::Postgres => by_table(
            object,
            "SELECT attributes FROM resource WHERE id = $1 FOR UPDATE",
            "SELECT attributes FROM lease WHERE id = $1 FOR UPDATE",
        )?,
    };
    let select = query(select).bind(object.number());
    c.optional(select, |row| row.text("attributes")).await
}

/// Replaces an object's attributes (JSON text).
pub(crate) async fn set_attributes(
    c: &mut dyn Conn,
    object: ObjectId,
    json: &str,
    now: i64,
) -> Result<()> {
    let update = by_table(
        object,
        "UPDATE resource SET attributes = $1, updated_at = $2 WHERE id = $3",
        "UPDATE lease SET attributes = $1, updated_at = $2 WHERE id = $3",
    )?;
    c.execute(query(update).bind(json).bind(now).bind(object.number()))
        .await?;
    Ok(())
}

/// Sets or clears an object's deadline.
pub(crate) async fn set_until(
    c: &mut dyn Conn,
    object: ObjectId,
    until: Option<i64>,
    now: i64,
) -> Result<()> {
    let update = by_table(
        object,
        "UPDATE resource SET until = $1, updated_at = $2 WHERE id = $3",
        "UPDATE lease SET until = $1, updated_at = $2 WHERE id = $3",
    )?;
    c.execute(query(update).bind(until).bind(now).bind(object.number()))
        .await?;
    Ok(())
}

/// Replaces an object's exec results (JSON text).
pub(crate) async fn set_exec_results(c: &mut dyn Conn, object: ObjectId, json: &str) -> Result<()> {
    let update = by_table(
        object,
        "UPDATE resource SET exec_results = $1 WHERE id = $2",
        "UPDATE lease SET exec_results = $1 WHERE id = $2",
    )?;
    c.execute(query(update).bind(json).bind(object.number()))
        .await?;
    Ok(())
}

/// Records how an object ended, unless an end is recorded already.
pub(crate) async fn set_end(
    c: &mut dyn Conn,
    object: ObjectId,
    kind: &str,
    detail: Option<&str>,
    now: i64,
) -> Result<()> {
    let update = by_table(
        object,
        "UPDATE resource SET end_kind = $1, end_detail = $2, ended_at = $3
          WHERE id = $4 AND end_kind IS NULL",
        "UPDATE lease SET end_kind = $1, end_detail = $2, ended_at = $3
          WHERE id = $4 AND end_kind IS NULL",
    )?;
    let update = query(update)
        .bind(kind)
        .bind(detail)
        .bind(now)
        .bind(object.number());
    c.execute(update).await?;
    Ok(())
}
