//! Turning rows into domain records and back: the only place that knows how columns encode
//! values (JSON text for attributes and lists, short ids in text columns, milliseconds).

use super::super::{
    Blueprint, Command, CommandKind, Error, Lease, LogEntry, ObjectId, Resource, Result,
};
use crate::domain::{ExecResult, Timestamp};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::str::FromStr;

pub(super) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializing plain data")
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{e}: {text}")))
}

pub(super) fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(Error::Corrupt)
}

pub(super) fn object_id(text: &str) -> Result<ObjectId> {
    text.parse()
        .map_err(|e: super::super::ParseIdError| Error::Corrupt(e.to_string()))
}

fn ids_from_json(text: &str, make: fn(i64) -> ObjectId) -> Result<Vec<ObjectId>> {
    Ok(from_json::<Vec<i64>>(text)?.into_iter().map(make).collect())
}

pub(super) fn blueprint_from_row(row: &SqliteRow) -> Result<Blueprint> {
    Ok(Blueprint {
        id: ObjectId::Blueprint(row.try_get("id")?),
        name: row.try_get("name")?,
        component: row.try_get("component")?,
        component_name: row.try_get("component_name")?,
        resource_type: row.try_get("resource_type")?,
        config: row.try_get("config")?,
        enabled: row.try_get("enabled")?,
        grants: from_json(row.try_get("grants")?)?,
        failures: row.try_get("failures")?,
        retry_at: time(row, "retry_at")?,
        last_failure: row.try_get("last_failure")?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
    })
}

pub(super) fn resource_from_row(row: &SqliteRow) -> Result<Resource> {
    Ok(Resource {
        id: ObjectId::Resource(row.try_get("id")?),
        blueprint_id: ObjectId::Blueprint(row.try_get("blueprint_id")?),
        resource_type: row.try_get("resource_type")?,
        status: parse(row.try_get("status")?)?,
        attributes: from_json(row.try_get("attributes")?)?,
        until: time(row, "until")?,
        depth: row.try_get("depth")?,
        exec_results: exec_results_from_json(row.try_get("exec_results")?)?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
        updated_at: row.try_get::<i64, _>("updated_at")? as Timestamp,
    })
}

pub(super) fn lease_from_row(row: &SqliteRow) -> Result<Lease> {
    Ok(Lease {
        id: ObjectId::Lease(row.try_get("id")?),
        resource_type: row.try_get("resource_type")?,
        status: parse(row.try_get("status")?)?,
        attributes: from_json(row.try_get("attributes")?)?,
        allowed_blueprints: ids_from_json(row.try_get("allowed_blueprints")?, ObjectId::Blueprint)?,
        owner: row.try_get("owner")?,
        resource_id: row
            .try_get::<Option<i64>, _>("resource_id")?
            .map(ObjectId::Resource),
        parent_resource_id: row
            .try_get::<Option<i64>, _>("parent_resource_id")?
            .map(ObjectId::Resource),
        parent_key: row.try_get("parent_key")?,
        until: time(row, "until")?,
        depth: row.try_get("depth")?,
        acquiring: row
            .try_get::<Option<i64>, _>("acquiring")?
            .map(ObjectId::Resource),
        exec_results: exec_results_from_json(row.try_get("exec_results")?)?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
        updated_at: row.try_get::<i64, _>("updated_at")? as Timestamp,
    })
}

/// Exec results are stored as `[[id, exit_code, stdout, stderr], …]`.
fn exec_results_from_json(text: &str) -> Result<Vec<ExecResult>> {
    let rows: Vec<(String, Option<i32>, String, String)> = from_json(text)?;
    Ok(rows
        .into_iter()
        .map(|(id, exit_code, stdout, stderr)| ExecResult {
            id,
            exit_code,
            stdout,
            stderr,
        })
        .collect())
}

pub(super) fn exec_results_to_json(results: &[ExecResult]) -> String {
    let rows: Vec<_> = results
        .iter()
        .map(|r| (&r.id, r.exit_code, &r.stdout, &r.stderr))
        .collect();
    json(&rows)
}

pub(super) fn command_from_row(row: &SqliteRow) -> Result<Command> {
    let kind = match row.try_get::<&str, _>("kind")? {
        "release" => CommandKind::Release,
        "reclaim" => CommandKind::Reclaim,
        other => return Err(Error::Corrupt(format!("command kind {other:?}"))),
    };
    Ok(Command {
        id: row.try_get("id")?,
        target: object_id(row.try_get("target")?)?,
        kind,
        author: row.try_get("author")?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
        consumed_at: row
            .try_get::<Option<i64>, _>("consumed_at")?
            .map(|t| t as Timestamp),
        outcome: row.try_get("outcome")?,
    })
}

pub(super) fn kind_text(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Release => "release",
        CommandKind::Reclaim => "reclaim",
    }
}

pub(super) fn log_from_row(row: &SqliteRow) -> Result<LogEntry> {
    Ok(LogEntry {
        id: row.try_get("id")?,
        object: object_id(row.try_get("object")?)?,
        kind: row.try_get("kind")?,
        message: row.try_get("message")?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
    })
}

pub(super) fn collect<T>(
    rows: Vec<SqliteRow>,
    convert: fn(&SqliteRow) -> Result<T>,
) -> Result<Vec<T>> {
    rows.iter().map(convert).collect()
}

/// An optional time column.
pub(super) fn time(row: &SqliteRow, column: &str) -> Result<Option<Timestamp>> {
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(|t| t as Timestamp))
}
