//! The embedded default: SQLite through sqlx.
//!
//! WAL with `synchronous=FULL` (a resource manager must not forget a destroy), `BEGIN IMMEDIATE`
//! for every read-then-write transaction (a deferred BEGIN under contention fails with
//! SQLITE_BUSY), and one pooled connection for writes so that writers in this process queue in
//! the pool instead of sleeping in SQLite's busy handler. Other processes (the CLI, a second
//! daemon) wait on the busy timeout.

use super::{
    Blueprint, Claim, Clock, Command, CommandFilter, CommandKind, Error, Lease, LogEntry,
    NewBlueprint, NewLease, ObjectId, Plan, Release, Resource, Result, SlotLock, Store, Target,
    WorkItem, Write,
};
use crate::domain::{Attributes, ExecResult, LeaseStatus, ResourceStatus, Timestamp};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections for reads (WAL lets them run beside the writer).
const READ_CONNECTIONS: u32 = 4;

/// A SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    clock: Arc<dyn Clock>,
    write_transactions: Arc<AtomicU64>,
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://path`).
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            clock,
            write_transactions: Arc::default(),
        })
    }

    /// Write transactions begun so far by this handle (for benchmarks).
    pub fn write_transactions(&self) -> u64 {
        self.write_transactions.load(Ordering::Relaxed)
    }

    async fn begin(&self) -> Result<Tx> {
        self.write_transactions.fetch_add(1, Ordering::Relaxed);
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The one row `select` finds for `id`'s number (bound as `?1`), or `NotFound` naming it.
    async fn row_by_id(&self, select: &'static str, id: ObjectId) -> Result<SqliteRow> {
        sqlx::query(select)
            .bind(id.number())
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// The leases `select` finds for `resource`'s number (bound as `?1`).
    async fn leases_of(&self, select: &'static str, resource: ObjectId) -> Result<Vec<Lease>> {
        let rows = sqlx::query(select)
            .bind(resource.number())
            .fetch_all(&self.reader)
            .await?;
        collect(rows, lease_from_row)
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializing plain data")
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{e}: {text}")))
}

fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(Error::Corrupt)
}

fn object_id(text: &str) -> Result<ObjectId> {
    text.parse()
        .map_err(|e: super::ParseIdError| Error::Corrupt(e.to_string()))
}

fn ids_from_json(text: &str, make: fn(i64) -> ObjectId) -> Result<Vec<ObjectId>> {
    Ok(from_json::<Vec<i64>>(text)?.into_iter().map(make).collect())
}

fn blueprint_from_row(row: &SqliteRow) -> Result<Blueprint> {
    Ok(Blueprint {
        id: ObjectId::Blueprint(row.try_get("id")?),
        name: row.try_get("name")?,
        component: row.try_get("component")?,
        component_name: row.try_get("component_name")?,
        resource_type: row.try_get("resource_type")?,
        config: row.try_get("config")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
    })
}

fn resource_from_row(row: &SqliteRow) -> Result<Resource> {
    Ok(Resource {
        id: ObjectId::Resource(row.try_get("id")?),
        blueprint_id: ObjectId::Blueprint(row.try_get("blueprint_id")?),
        resource_type: row.try_get("resource_type")?,
        status: parse(row.try_get("status")?)?,
        attributes: from_json(row.try_get("attributes")?)?,
        until: row
            .try_get::<Option<i64>, _>("until")?
            .map(|t| t as Timestamp),
        exec_results: exec_results_from_json(row.try_get("exec_results")?)?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
        updated_at: row.try_get::<i64, _>("updated_at")? as Timestamp,
    })
}

fn lease_from_row(row: &SqliteRow) -> Result<Lease> {
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
        until: row
            .try_get::<Option<i64>, _>("until")?
            .map(|t| t as Timestamp),
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

fn exec_results_to_json(results: &[ExecResult]) -> String {
    let rows: Vec<_> = results
        .iter()
        .map(|r| (&r.id, r.exit_code, &r.stdout, &r.stderr))
        .collect();
    json(&rows)
}

fn command_from_row(row: &SqliteRow) -> Result<Command> {
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

fn kind_text(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Release => "release",
        CommandKind::Reclaim => "reclaim",
    }
}

fn log_from_row(row: &SqliteRow) -> Result<LogEntry> {
    Ok(LogEntry {
        id: row.try_get("id")?,
        object: object_id(row.try_get("object")?)?,
        kind: row.try_get("kind")?,
        message: row.try_get("message")?,
        created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
    })
}

fn collect<T>(rows: Vec<SqliteRow>, convert: fn(&SqliteRow) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(convert).collect()
}

fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// Marks an object due now, creating its work item if needed (never delays an earlier wake).
async fn wake(conn: &mut SqliteConnection, object: ObjectId, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO work_item (object, wake_at) VALUES (?1, ?2)
         ON CONFLICT (object) DO UPDATE SET wake_at =
             CASE WHEN wake_at IS NULL OR wake_at > ?2 THEN ?2 ELSE wake_at END",
    )
    .bind(object.to_string())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_log(
    conn: &mut SqliteConnection,
    object: ObjectId,
    kind: &str,
    message: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO log (object, kind, message, created_at) VALUES (?1, ?2, ?3, ?4)")
        .bind(object.to_string())
        .bind(kind)
        .bind(message)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert_command(
    conn: &mut SqliteConnection,
    target: ObjectId,
    kind: CommandKind,
    author: &str,
    now: i64,
) -> Result<Command> {
    let row = sqlx::query(
        "INSERT INTO command (target, kind, author, created_at) VALUES (?1, ?2, ?3, ?4)
         RETURNING *",
    )
    .bind(target.to_string())
    .bind(kind_text(kind))
    .bind(author)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    wake(conn, target, now).await?;
    command_from_row(&row)
}

/// The status of a resource or lease as text, or `NotFound`.
async fn status_of(conn: &mut SqliteConnection, object: ObjectId) -> Result<String> {
    let query = match object {
        ObjectId::Resource(_) => "SELECT status FROM resource WHERE id = ?1",
        ObjectId::Lease(_) => "SELECT status FROM lease WHERE id = ?1",
        ObjectId::Blueprint(_) => return Err(Error::NotFound(format!("{object} has no status"))),
    };
    sqlx::query_scalar(query)
        .bind(object.number())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound(object.to_string()))
}

/// Why `kind` cannot be sent to an object in `status`, if it cannot. A destroyed object takes
/// nothing; a release to a released or broken object is queued and consumed as ignored, so every
/// attempt stays on record.
fn refusal(object: ObjectId, kind: CommandKind, status: &str) -> Option<String> {
    match kind {
        _ if status == "destroyed" => Some(format!("{object} is destroyed; it cannot be released")),
        CommandKind::Reclaim if !matches!(object, ObjectId::Resource(_)) => Some(format!(
            "{object} is a {}; only resources can be reclaimed",
            object.kind()
        )),
        CommandKind::Reclaim if status != "active" => Some(format!(
            "{object} is {status}; only active resources can be reclaimed"
        )),
        _ => None,
    }
}

struct Applier<'a> {
    tx: &'a mut SqliteConnection,
    claim: &'a Claim,
    now: i64,
    inserted: Vec<ObjectId>,
}

impl Applier<'_> {
    fn resolve(&self, target: Target) -> Result<ObjectId> {
        match target {
            Target::Id(id) => Ok(id),
            Target::Inserted(n) => self.inserted.get(n).copied().ok_or_else(|| {
                Error::Precondition(format!("plan refers to insert #{n}, which it has not made"))
            }),
        }
    }

    async fn apply(&mut self, write: &Write) -> Result<()> {
        match write {
            Write::ConsumeCommand { id, outcome } => self.consume(*id, outcome).await,
            Write::LeaseStatus { lease, status } => self.set_status(*lease, status.as_str()).await,
            Write::ResourceStatus { resource, status } => {
                let resource = self.resolve(*resource)?;
                self.set_status(resource, status.as_str()).await
            }
            Write::LeaseAcquire { lease, resource } => {
                let resource = self.resolve(*resource)?;
                self.lease_acquire(*lease, resource).await
            }
            Write::LeaseReacquire { lease } => self.lease_reacquire(*lease).await,
            Write::SetAttribute { object, key, value } => {
                let object = self.resolve(*object)?;
                self.edit_attributes(object, |a| {
                    a.insert(key.clone(), value.clone());
                })
                .await
            }
            Write::RemoveAttribute { object, key } => {
                let object = self.resolve(*object)?;
                self.edit_attributes(object, |a| {
                    a.remove(key);
                })
                .await
            }
            Write::SetUntil { object, until } => {
                let object = self.resolve(*object)?;
                self.set_until(object, *until).await
            }
            Write::SetExecResults { object, results } => {
                self.set_exec_results(*object, results).await
            }
            Write::TakeSlotLocks { owner, names } => {
                let owner = self.resolve(*owner)?;
                self.take_locks(owner, names).await
            }
            Write::FreeSlotLocks { owner } => self.free_locks(*owner).await,
            Write::Log {
                object,
                kind,
                message,
            } => {
                let object = self.resolve(*object)?;
                insert_log(self.tx, object, kind, message, self.now).await
            }
            Write::PostCommand {
                target,
                kind,
                author,
            } => insert_command(self.tx, *target, *kind, author, self.now)
                .await
                .map(drop),
            Write::Wake { object } => {
                let object = self.resolve(*object)?;
                wake(self.tx, object, self.now).await
            }
            Write::CascadeRelease { lease, author } => self.cascade_release(*lease, author).await,
            Write::WakeIfDestroying { resource } => {
                let status = status_of(self.tx, *resource).await?;
                if status == "released" || status == "broken" {
                    wake(self.tx, *resource, self.now).await?;
                }
                Ok(())
            }
            Write::ReleaseClaim { wake_at } => {
                let release = Release {
                    wake_at: *wake_at,
                    error: None,
                };
                release_claim(self.tx, self.claim, &release).await
            }
            Write::InsertResource {
                blueprint,
                resource_type,
            } => self.insert_resource(*blueprint, resource_type).await,
            Write::InsertSupportingLease {
                parent,
                key,
                resource_type,
                attributes,
            } => {
                let parent = self.resolve(*parent)?;
                self.insert_supporting_lease(parent, key, resource_type, attributes)
                    .await
            }
        }
    }

    async fn consume(&mut self, id: i64, outcome: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE command SET consumed_at = ?1, outcome = ?2 WHERE id = ?3 AND consumed_at IS NULL",
        )
        .bind(self.now)
        .bind(outcome)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Precondition(format!(
                "command {id} was already consumed"
            )));
        }
        Ok(())
    }

    /// Sets a resource's or lease's status (given as its text).
    async fn set_status(&mut self, object: ObjectId, status: &str) -> Result<()> {
        let update = match object {
            ObjectId::Resource(_) => {
                "UPDATE resource SET status = ?1, updated_at = ?2 WHERE id = ?3"
            }
            ObjectId::Lease(_) => "UPDATE lease SET status = ?1, updated_at = ?2 WHERE id = ?3",
            ObjectId::Blueprint(_) => {
                return Err(Error::NotFound(format!("{object} has no status")));
            }
        };
        sqlx::query(update)
            .bind(status)
            .bind(self.now)
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn cascade_release(&mut self, lease: ObjectId, author: &str) -> Result<()> {
        let status = status_of(self.tx, lease).await?;
        let queued: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM command
                             WHERE target = ?1 AND kind = 'release' AND consumed_at IS NULL)",
        )
        .bind(lease.to_string())
        .fetch_one(&mut *self.tx)
        .await?;
        let releasable = parse::<LeaseStatus>(&status).is_ok_and(LeaseStatus::is_releasable);
        if releasable && !queued {
            insert_command(self.tx, lease, CommandKind::Release, author, self.now).await?;
        }
        Ok(())
    }

    async fn lease_acquire(&mut self, lease: ObjectId, resource: ObjectId) -> Result<()> {
        let status = status_of(self.tx, resource).await?;
        if status != "pending" && status != "active" {
            return Err(Error::Precondition(format!(
                "{resource} is {status}; it cannot be acquired"
            )));
        }
        sqlx::query(
            "UPDATE lease SET status = 'acquired', resource_id = ?1, updated_at = ?2 WHERE id = ?3",
        )
        .bind(resource.number())
        .bind(self.now)
        .bind(lease.number())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn lease_reacquire(&mut self, lease: ObjectId) -> Result<()> {
        sqlx::query(
            "UPDATE lease SET status = 'pending', resource_id = NULL, exec_results = '[]',
                 updated_at = ?1 WHERE id = ?2",
        )
        .bind(self.now)
        .bind(lease.number())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn edit_attributes(
        &mut self,
        object: ObjectId,
        edit: impl FnOnce(&mut Attributes),
    ) -> Result<()> {
        let (select, update) = match object {
            ObjectId::Resource(_) => (
                "SELECT attributes FROM resource WHERE id = ?1",
                "UPDATE resource SET attributes = ?1, updated_at = ?2 WHERE id = ?3",
            ),
            ObjectId::Lease(_) => (
                "SELECT attributes FROM lease WHERE id = ?1",
                "UPDATE lease SET attributes = ?1, updated_at = ?2 WHERE id = ?3",
            ),
            ObjectId::Blueprint(_) => {
                return Err(Error::NotFound(format!("{object} has no attributes")));
            }
        };
        let text: String = sqlx::query_scalar(select)
            .bind(object.number())
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?;
        let mut attributes: Attributes = from_json(&text)?;
        edit(&mut attributes);
        sqlx::query(update)
            .bind(json(&attributes))
            .bind(self.now)
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn set_until(&mut self, object: ObjectId, until: Option<Timestamp>) -> Result<()> {
        let update = match object {
            ObjectId::Resource(_) => {
                "UPDATE resource SET until = ?1, updated_at = ?2 WHERE id = ?3"
            }
            ObjectId::Lease(_) => "UPDATE lease SET until = ?1, updated_at = ?2 WHERE id = ?3",
            ObjectId::Blueprint(_) => {
                return Err(Error::NotFound(format!("{object} has no deadline")));
            }
        };
        sqlx::query(update)
            .bind(until.map(|t| t as i64))
            .bind(self.now)
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn set_exec_results(&mut self, object: ObjectId, results: &[ExecResult]) -> Result<()> {
        let update = match object {
            ObjectId::Resource(_) => "UPDATE resource SET exec_results = ?1 WHERE id = ?2",
            ObjectId::Lease(_) => "UPDATE lease SET exec_results = ?1 WHERE id = ?2",
            ObjectId::Blueprint(_) => return Err(Error::NotFound(object.to_string())),
        };
        sqlx::query(update)
            .bind(exec_results_to_json(results))
            .bind(object.number())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn take_locks(&mut self, owner: ObjectId, names: &[String]) -> Result<()> {
        for name in names {
            let holder: String = sqlx::query_scalar(
                "INSERT INTO slot_lock (name, owner, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET name = name
                 RETURNING owner",
            )
            .bind(name)
            .bind(owner.to_string())
            .bind(self.now)
            .fetch_one(&mut *self.tx)
            .await?;
            if holder != owner.to_string() {
                return Err(Error::SlotLockBusy {
                    name: name.clone(),
                    holder,
                });
            }
        }
        Ok(())
    }

    async fn free_locks(&mut self, owner: ObjectId) -> Result<()> {
        sqlx::query("DELETE FROM slot_lock WHERE owner = ?1")
            .bind(owner.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn insert_resource(&mut self, blueprint: ObjectId, resource_type: &str) -> Result<()> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO resource (blueprint_id, resource_type, status, created_at, updated_at)
             VALUES (?1, ?2, 'pending', ?3, ?3) RETURNING id",
        )
        .bind(blueprint.number())
        .bind(resource_type)
        .bind(self.now)
        .fetch_one(&mut *self.tx)
        .await?;
        let resource = ObjectId::Resource(id);
        wake(self.tx, resource, self.now).await?;
        self.inserted.push(resource);
        Ok(())
    }

    async fn insert_supporting_lease(
        &mut self,
        parent: ObjectId,
        key: &str,
        resource_type: &str,
        attributes: &Attributes,
    ) -> Result<()> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lease (resource_type, status, attributes, owner, parent_resource_id,
                                parent_key, created_at, updated_at)
             VALUES (?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?6) RETURNING id",
        )
        .bind(resource_type)
        .bind(json(attributes))
        .bind(parent.to_string())
        .bind(parent.number())
        .bind(key)
        .bind(self.now)
        .fetch_one(&mut *self.tx)
        .await?;
        let lease = ObjectId::Lease(id);
        wake(self.tx, lease, self.now).await?;
        insert_log(
            self.tx,
            lease,
            "lease.queued",
            &format!("requested by {parent} as {key:?}"),
            self.now,
        )
        .await?;
        self.inserted.push(lease);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn now(&self) -> Timestamp {
        self.clock.now() as Timestamp
    }

    async fn blueprint_insert(&self, new: NewBlueprint) -> Result<Blueprint> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO component (digest, wasm, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&new.digest)
        .bind(&new.wasm)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "INSERT INTO blueprint (name, component, component_name, resource_type, config, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (name) DO NOTHING RETURNING *",
        )
        .bind(&new.name)
        .bind(&new.digest)
        .bind(&new.component_name)
        .bind(&new.resource_type)
        .bind(&new.config)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::Conflict(format!("a blueprint named {:?} already exists", new.name)))?;
        let blueprint = blueprint_from_row(&row)?;
        insert_log(
            &mut tx,
            blueprint.id,
            "blueprint.added",
            &format!("added {:?}", new.name),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(blueprint)
    }

    async fn blueprint_get(&self, id: ObjectId) -> Result<Blueprint> {
        blueprint_from_row(
            &self
                .row_by_id("SELECT * FROM blueprint WHERE id = ?1", id)
                .await?,
        )
    }

    async fn blueprint_by_name(&self, name: &str) -> Result<Blueprint> {
        let row = sqlx::query("SELECT * FROM blueprint WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::NotFound(format!("blueprint {name:?}")))?;
        blueprint_from_row(&row)
    }

    async fn blueprint_list(&self) -> Result<Vec<Blueprint>> {
        let rows = sqlx::query("SELECT * FROM blueprint ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        collect(rows, blueprint_from_row)
    }

    async fn blueprint_set_enabled(&self, id: ObjectId, enabled: bool) -> Result<Blueprint> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let row = sqlx::query("UPDATE blueprint SET enabled = ?1 WHERE id = ?2 RETURNING *")
            .bind(enabled)
            .bind(id.number())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let kind = if enabled {
            "blueprint.enabled"
        } else {
            "blueprint.disabled"
        };
        insert_log(
            &mut tx,
            id,
            kind,
            kind.trim_start_matches("blueprint."),
            now,
        )
        .await?;
        tx.commit().await?;
        blueprint_from_row(&row)
    }

    async fn component_get(&self, digest: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT wasm FROM component WHERE digest = ?1")
            .bind(digest)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::NotFound(format!("component {digest}")))
    }

    async fn resource_get(&self, id: ObjectId) -> Result<Resource> {
        resource_from_row(
            &self
                .row_by_id("SELECT * FROM resource WHERE id = ?1", id)
                .await?,
        )
    }

    async fn resource_list(&self, status: Option<ResourceStatus>) -> Result<Vec<Resource>> {
        let rows =
            sqlx::query("SELECT * FROM resource WHERE ?1 IS NULL OR status = ?1 ORDER BY id")
                .bind(status.map(ResourceStatus::as_str))
                .fetch_all(&self.reader)
                .await?;
        collect(rows, resource_from_row)
    }

    async fn resource_live_of_blueprints(&self, blueprints: &[ObjectId]) -> Result<Vec<Resource>> {
        let ids: Vec<i64> = blueprints.iter().map(|b| b.number()).collect();
        let rows = sqlx::query(
            "SELECT * FROM resource WHERE status != 'destroyed'
               AND blueprint_id IN (SELECT value FROM json_each(?1)) ORDER BY id",
        )
        .bind(json(&ids))
        .fetch_all(&self.reader)
        .await?;
        collect(rows, resource_from_row)
    }

    async fn lease_get(&self, id: ObjectId) -> Result<Lease> {
        lease_from_row(
            &self
                .row_by_id("SELECT * FROM lease WHERE id = ?1", id)
                .await?,
        )
    }

    async fn lease_list(&self, status: Option<LeaseStatus>) -> Result<Vec<Lease>> {
        let rows = sqlx::query("SELECT * FROM lease WHERE ?1 IS NULL OR status = ?1 ORDER BY id")
            .bind(status.map(LeaseStatus::as_str))
            .fetch_all(&self.reader)
            .await?;
        collect(rows, lease_from_row)
    }

    async fn lease_list_on_resource(&self, resource: ObjectId) -> Result<Vec<Lease>> {
        self.leases_of(
            "SELECT * FROM lease WHERE resource_id = ?1 ORDER BY id",
            resource,
        )
        .await
    }

    async fn lease_list_supporting(&self, resource: ObjectId) -> Result<Vec<Lease>> {
        const SUPPORTING: &str = "SELECT * FROM lease WHERE parent_resource_id = ?1 ORDER BY id";
        self.leases_of(SUPPORTING, resource).await
    }

    async fn lease_list_waiting(&self, resource_type: &str, limit: usize) -> Result<Vec<ObjectId>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM lease WHERE status = 'pending' AND resource_type = ?1 ORDER BY id LIMIT ?2",
        )
        .bind(resource_type)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        Ok(ids.into_iter().map(ObjectId::Lease).collect())
    }

    async fn lease_insert(&self, new: &NewLease, count: usize) -> Result<Vec<Lease>> {
        let now = self.clock.now();
        let allowed: Vec<i64> = new.allowed_blueprints.iter().map(|b| b.number()).collect();
        let mut tx = self.begin().await?;
        let mut leases = Vec::with_capacity(count);
        for _ in 0..count {
            let row = sqlx::query(
                "INSERT INTO lease (resource_type, status, attributes, allowed_blueprints, owner,
                                    until, created_at, updated_at)
                 VALUES (?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?6) RETURNING *",
            )
            .bind(&new.resource_type)
            .bind(json(&new.attributes))
            .bind(json(&allowed))
            .bind(&new.owner)
            .bind(new.until.map(|t| t as i64))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let lease = lease_from_row(&row)?;
            wake(&mut tx, lease.id, now).await?;
            let message = format!("requested by {} for a {}", new.owner, new.resource_type);
            insert_log(&mut tx, lease.id, "lease.queued", &message, now).await?;
            leases.push(lease);
        }
        tx.commit().await?;
        Ok(leases)
    }

    async fn command_post(
        &self,
        target: ObjectId,
        kind: CommandKind,
        author: &str,
    ) -> Result<Command> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let status = status_of(&mut tx, target).await?;
        if let Some(reason) = refusal(target, kind, &status) {
            return Err(Error::NotReleasable(reason));
        }
        let command = insert_command(&mut tx, target, kind, author, now).await?;
        tx.commit().await?;
        Ok(command)
    }

    async fn command_list(&self, filter: &CommandFilter) -> Result<Vec<Command>> {
        let rows = sqlx::query(
            "SELECT * FROM command
              WHERE (?1 IS NULL OR target = ?1) AND (?2 = 0 OR consumed_at IS NULL)
              ORDER BY id",
        )
        .bind(filter.target.map(|t| t.to_string()))
        .bind(filter.pending)
        .fetch_all(&self.reader)
        .await?;
        collect(rows, command_from_row)
    }

    async fn log_list(
        &self,
        object: Option<ObjectId>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM log WHERE (?1 IS NULL OR object = ?1) AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .bind(object.map(|o| o.to_string()))
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        collect(rows, log_from_row)
    }

    async fn slot_lock_list(&self, owner: Option<ObjectId>) -> Result<Vec<SlotLock>> {
        let rows =
            sqlx::query("SELECT * FROM slot_lock WHERE ?1 IS NULL OR owner = ?1 ORDER BY name")
                .bind(owner.map(|o| o.to_string()))
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(SlotLock {
                    name: row.try_get("name")?,
                    owner: object_id(row.try_get("owner")?)?,
                    created_at: row.try_get::<i64, _>("created_at")? as Timestamp,
                })
            })
            .collect()
    }

    async fn work_item_claim(&self, owner: &str, limit: i64, ttl: Duration) -> Result<Vec<Claim>> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "UPDATE work_item SET owner = ?1, token = token + 1, lease_until = ?2, wake_at = NULL
              WHERE object IN (
                  SELECT object FROM (
                      SELECT object FROM work_item
                       WHERE owner IS NULL AND wake_at <= ?3 ORDER BY wake_at LIMIT ?4)
                  UNION ALL
                  SELECT object FROM (
                      SELECT object FROM work_item
                       WHERE owner IS NOT NULL AND lease_until <= ?3 LIMIT ?4)
                  LIMIT ?4)
              RETURNING object, token",
        )
        .bind(owner)
        .bind(now + millis(ttl))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(Claim {
                    object: object_id(row.try_get("object")?)?,
                    owner: owner.to_string(),
                    token: row.try_get("token")?,
                })
            })
            .collect()
    }

    async fn work_item_heartbeat(&self, claim: &Claim, ttl: Duration) -> Result<()> {
        let mut tx = self.begin().await?;
        guard(&mut tx, claim, self.clock.now(), ttl).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn work_item_release(&self, claim: &Claim, release: &Release) -> Result<()> {
        let mut tx = self.begin().await?;
        release_claim(&mut tx, claim, release).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn work_item_get(&self, object: ObjectId) -> Result<WorkItem> {
        let row = sqlx::query("SELECT * FROM work_item WHERE object = ?1")
            .bind(object.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?;
        let time = |column| -> Result<Option<Timestamp>> {
            Ok(row
                .try_get::<Option<i64>, _>(column)?
                .map(|t| t as Timestamp))
        };
        Ok(WorkItem {
            object,
            wake_at: time("wake_at")?,
            owner: row.try_get("owner")?,
            token: row.try_get("token")?,
            claim_until: time("lease_until")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
        })
    }

    async fn work_item_next_due(&self) -> Result<Option<Timestamp>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(t) FROM (
                 SELECT min(wake_at) AS t FROM work_item WHERE owner IS NULL AND wake_at IS NOT NULL
                 UNION ALL
                 SELECT min(lease_until) FROM work_item WHERE owner IS NOT NULL)",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(next.map(|t| t as Timestamp))
    }

    async fn apply(&self, claim: &Claim, plan: &Plan, ttl: Duration) -> Result<Vec<ObjectId>> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        guard(&mut tx, claim, now, ttl).await?;
        let mut applier = Applier {
            tx: &mut tx,
            claim,
            now,
            inserted: Vec::new(),
        };
        for write in plan.writes() {
            applier.apply(write).await?;
        }
        let inserted = applier.inserted;
        tx.commit().await?;
        Ok(inserted)
    }
}

/// Gives a claim back: `owner = NULL`, keeping a wake-up that arrived during the run.
async fn release_claim(
    conn: &mut SqliteConnection,
    claim: &Claim,
    release: &Release,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE work_item SET owner = NULL, lease_until = NULL,
             wake_at = CASE WHEN wake_at IS NULL THEN ?1
                            WHEN ?1 IS NULL THEN wake_at
                            ELSE min(wake_at, ?1) END,
             attempts = CASE WHEN ?2 IS NULL THEN 0 ELSE attempts + 1 END,
             last_error = ?2
          WHERE object = ?3 AND owner = ?4 AND token = ?5",
    )
    .bind(release.wake_at.map(|t| t as i64))
    .bind(&release.error)
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .execute(conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(Error::Fenced {
            object: claim.object,
            token: claim.token,
        });
    }
    Ok(())
}

/// The fencing guard that starts every worker write: extends the claim only if it is still held
/// and unexpired. Touching no row means someone else may be the writer; nothing may be written.
async fn guard(conn: &mut SqliteConnection, claim: &Claim, now: i64, ttl: Duration) -> Result<()> {
    let held = sqlx::query(
        "UPDATE work_item SET lease_until = ?1
          WHERE object = ?2 AND owner = ?3 AND token = ?4 AND lease_until > ?5",
    )
    .bind(now + millis(ttl))
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .bind(now)
    .execute(conn)
    .await?;
    if held.rows_affected() != 1 {
        return Err(Error::Fenced {
            object: claim.object,
            token: claim.token,
        });
    }
    Ok(())
}
