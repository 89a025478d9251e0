//! Turning rows into domain records and back, for every backend: the only place that knows how
//! columns encode values (JSON text for attributes and lists, short ids in text columns,
//! milliseconds as 64-bit integers). A backend's row type implements [`Columns`].

use super::{
    Blueprint, Claim, Command, CommandKind, End, EndKind, Error, Lease, LogEntry, ObjectId,
    ParseIdError, Resource, Result, SlotLock, StepRecord, Token,
};
use crate::domain::{ExecResult, Timestamp};
use std::str::FromStr;

/// Reading typed columns by name from one row.
pub trait Columns {
    /// A 64-bit integer.
    fn int(&self, column: &str) -> Result<i64>;
    /// A nullable 64-bit integer.
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    /// Text.
    fn text(&self, column: &str) -> Result<String>;
    /// Nullable text.
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    /// A boolean.
    fn flag(&self, column: &str) -> Result<bool>;
    /// Bytes.
    fn bytes(&self, column: &str) -> Result<Vec<u8>>;
}

/// A row's columns under a prefix: `Prefixed(row, "command_")` reads `command_id` as `id`
/// (for a join that names one table's columns apart).
pub(crate) struct Prefixed<'r>(pub &'r dyn Columns, pub &'static str);

impl Prefixed<'_> {
    fn name(&self, column: &str) -> String {
        format!("{}{column}", self.1)
    }
}

impl Columns for Prefixed<'_> {
    fn int(&self, column: &str) -> Result<i64> {
        self.0.int(&self.name(column))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.0.opt_int(&self.name(column))
    }
    fn text(&self, column: &str) -> Result<String> {
        self.0.text(&self.name(column))
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.0.opt_text(&self.name(column))
    }
    fn flag(&self, column: &str) -> Result<bool> {
        self.0.flag(&self.name(column))
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>> {
        self.0.bytes(&self.name(column))
    }
}

/// JSON text of a value.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializing plain data")
}

/// A value from stored JSON text.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{e}: {text}")))
}

/// A status (or other enum) from its stored text.
pub(crate) fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(Error::Corrupt)
}

/// An object id from its stored text.
pub(crate) fn object_id(text: &str) -> Result<ObjectId> {
    text.parse()
        .map_err(|e: ParseIdError| Error::Corrupt(e.to_string()))
}

fn ids_from_json(text: &str, make: fn(i64) -> ObjectId) -> Result<Vec<ObjectId>> {
    Ok(from_json::<Vec<i64>>(text)?.into_iter().map(make).collect())
}

fn time(row: &dyn Columns, column: &str) -> Result<Timestamp> {
    Ok(row.int(column)? as Timestamp)
}

fn maybe_time(row: &dyn Columns, column: &str) -> Result<Option<Timestamp>> {
    Ok(row.opt_int(column)?.map(|t| t as Timestamp))
}

/// A blueprint row.
pub(crate) fn blueprint(row: &dyn Columns) -> Result<Blueprint> {
    Ok(Blueprint {
        id: ObjectId::Blueprint(row.int("id")?),
        name: row.text("name")?,
        component: row.text("component")?,
        component_name: row.text("component_name")?,
        resource_type: row.text("resource_type")?,
        config: row.text("config")?,
        enabled: row.flag("enabled")?,
        grants: from_json(&row.text("grants")?)?,
        version: row.int("version")?,
        failures: row.int("failures")?,
        retry_at: maybe_time(row, "retry_at")?,
        last_failure: row.opt_text("last_failure")?,
        limits: from_json(&row.text("limits")?)?,
        log_bytes: row.int("log_bytes")?,
        step_bytes: row.int("step_bytes")?,
        created_at: time(row, "created_at")?,
    })
}

/// A resource row.
pub(crate) fn resource(row: &dyn Columns) -> Result<Resource> {
    Ok(Resource {
        id: ObjectId::Resource(row.int("id")?),
        blueprint_id: ObjectId::Blueprint(row.int("blueprint_id")?),
        resource_type: row.text("resource_type")?,
        status: parse(&row.text("status")?)?,
        attributes: from_json(&row.text("attributes")?)?,
        until: maybe_time(row, "until")?,
        depth: row.int("depth")? as u32,
        made_for_lease: row.opt_int("made_for_lease")?.map(ObjectId::Lease),
        supporting: row.int("supporting")? as u32,
        end: end(row)?,
        exec_results: exec_results_from_json(&row.text("exec_results")?)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// How a lease or resource row ended, if it did.
fn end(row: &dyn Columns) -> Result<Option<End>> {
    let Some(kind) = row.opt_text("end_kind")? else {
        return Ok(None);
    };
    Ok(Some(End {
        kind: EndKind::parse(&kind).ok_or_else(|| Error::Corrupt(format!("end kind {kind:?}")))?,
        detail: row.opt_text("end_detail")?,
        at: maybe_time(row, "ended_at")?.unwrap_or_default(),
    }))
}

/// An audit-trail row.
pub(crate) fn step(row: &dyn Columns) -> Result<StepRecord> {
    Ok(StepRecord {
        id: row.int("id")?,
        object: object_id(&row.text("object")?)?,
        blueprint: ObjectId::Blueprint(row.int("blueprint_id")?),
        hook: row.text("hook")?,
        step: row.opt_text("step")?,
        verdict: row.text("verdict")?,
        duration_us: row.int("duration_us")?,
        created_at: time(row, "created_at")?,
    })
}

/// A lease row.
pub(crate) fn lease(row: &dyn Columns) -> Result<Lease> {
    let resource = |column| Ok::<_, Error>(row.opt_int(column)?.map(ObjectId::Resource));
    Ok(Lease {
        id: ObjectId::Lease(row.int("id")?),
        resource_type: row.text("resource_type")?,
        status: parse(&row.text("status")?)?,
        attributes: from_json(&row.text("attributes")?)?,
        allowed_blueprints: ids_from_json(&row.text("allowed_blueprints")?, ObjectId::Blueprint)?,
        owner: row.text("owner")?,
        resource_id: resource("resource_id")?,
        parent_resource_id: resource("parent_resource_id")?,
        parent_key: row.opt_text("parent_key")?,
        until: maybe_time(row, "until")?,
        depth: row.int("depth")? as u32,
        acquiring: resource("acquiring")?,
        end: end(row)?,
        exec_results: exec_results_from_json(&row.text("exec_results")?)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
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

/// Exec results as stored.
pub(crate) fn exec_results_to_json(results: &[ExecResult]) -> String {
    let rows: Vec<_> = results
        .iter()
        .map(|r| (&r.id, r.exit_code, &r.stdout, &r.stderr))
        .collect();
    json(&rows)
}

/// A command row.
pub(crate) fn command(row: &dyn Columns) -> Result<Command> {
    let kind = row.text("kind")?;
    let kind = CommandKind::parse(&kind)
        .ok_or_else(|| Error::Corrupt(format!("command kind {kind:?}")))?;
    Ok(Command {
        id: row.int("id")?,
        target: object_id(&row.text("target")?)?,
        kind,
        author: row.text("author")?,
        created_at: time(row, "created_at")?,
        consumed_at: maybe_time(row, "consumed_at")?,
        outcome: row.opt_text("outcome")?,
    })
}

/// A work item row just claimed by `owner`, held until `held_until` (claim time).
pub(crate) fn claim(row: &dyn Columns, owner: &str, held_until: i64) -> Result<Claim> {
    Ok(Claim {
        object: object_id(&row.text("object")?)?,
        tenant: row.text("tenant")?,
        owner: owner.to_string(),
        token: row.int("token")?,
        attempts: row.int("attempts")?,
        held_until,
        taken_over: false,
    })
}

/// A log row.
pub(crate) fn log(row: &dyn Columns) -> Result<LogEntry> {
    Ok(LogEntry {
        id: row.int("id")?,
        object: object_id(&row.text("object")?)?,
        kind: row.text("kind")?,
        message: row.text("message")?,
        created_at: time(row, "created_at")?,
    })
}

/// A slot lock row.
pub(crate) fn slot_lock(row: &dyn Columns) -> Result<SlotLock> {
    Ok(SlotLock {
        name: row.text("name")?,
        owner: object_id(&row.text("owner")?)?,
        created_at: time(row, "created_at")?,
    })
}

/// A token row (never its secret's hash).
pub(crate) fn token(row: &dyn Columns) -> Result<Token> {
    let types = row.opt_text("resource_types")?;
    Ok(Token {
        id: row.int("id")?,
        name: row.text("name")?,
        role: parse(&row.text("role")?)?,
        resource_types: types.as_deref().map(from_json).transpose()?,
        expires_at: maybe_time(row, "expires_at")?,
        created_by: row.text("created_by")?,
        created_at: time(row, "created_at")?,
        revoked_at: maybe_time(row, "revoked_at")?,
    })
}
