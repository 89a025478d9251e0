//! The embedded default: SQLite through sqlx.
//!
//! WAL with `synchronous=FULL` (a resource manager must not forget a destroy), `BEGIN IMMEDIATE`
//! for every read-then-write transaction (a deferred BEGIN under contention fails with
//! SQLITE_BUSY), and one pooled connection for writes so that writers in this process queue in
//! the pool instead of sleeping in SQLite's busy handler. Other processes (the CLI, a second
//! daemon) wait on the busy timeout. A failed write never leaves that connection inside a
//! transaction ([`tx::WriteTx`]).
//!
//! SQLite serves one host: its locks do not work across a network file system, so a database
//! there is refused at open. Several hosts need PostgreSQL.
//!
//! Modules: [`statements`] (the statements plans are applied with, and the guard), [`tx`]
//! (transactions and migrations), [`retention`] (pruning what finished long ago). Row
//! conversions and the plan logic are shared with every backend (`store::rows`,
//! `store::apply`).

mod retention;
mod statements;
mod tx;

use super::apply::{Applier, Statements, post_all};
use super::rows::{self, columns_for, json};
use super::{
    Blueprint, Claim, Clock, Command, CommandFilter, CommandKind, Error, GcReport, Lease, LogEntry,
    NewBlueprint, NewLease, ObjectId, Plan, Release, Resource, Result, SlotLock, Store, WorkItem,
};
use crate::domain::{LeaseStatus, ResourceStatus, Timestamp};
use crate::grant::Grant;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use statements::{SqliteStatements, guard, millis};

columns_for!(SqliteRow);
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tx::{Durability, WriteTx};

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
    durable_transactions: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://path`). Any
    /// number of processes may open a new database at once.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        refuse_network_fs(options.get_filename())?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        tx::migrate(&writer, clock.now()).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            clock,
            write_transactions: Arc::default(),
            durable_transactions: Arc::default(),
        })
    }

    /// Write transactions begun so far by this handle (for benchmarks).
    pub fn write_transactions(&self) -> u64 {
        self.write_transactions.load(Ordering::Relaxed)
    }

    /// Of those, the durable ones, fsync'd at commit (for benchmarks).
    pub fn durable_transactions(&self) -> u64 {
        self.durable_transactions.load(Ordering::Relaxed)
    }

    /// A durable write transaction.
    async fn begin(&self) -> Result<WriteTx> {
        self.begin_with(Durability::Full).await
    }

    async fn begin_with(&self, durability: Durability) -> Result<WriteTx> {
        self.write_transactions.fetch_add(1, Ordering::Relaxed);
        if durability == Durability::Full {
            self.durable_transactions.fetch_add(1, Ordering::Relaxed);
        }
        WriteTx::begin(&self.writer, durability).await
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
        rows::all(rows, rows::lease)
    }

    /// Claims up to `limit` items that `select` finds (binding `?1` owner, `?2` boot, `?3` claim
    /// time, `?4` wall time, `?5` limit).
    async fn claim_where(
        &self,
        tx: &mut WriteTx,
        select: &'static str,
        owner: &str,
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        let at = self.clock.claim_time();
        let held_until = super::boottime_ms() + millis(ttl);
        let rows = sqlx::query(select)
            .bind(owner)
            .bind(&at.boot)
            .bind(at.ms)
            .bind(self.clock.now())
            .bind(limit)
            .bind(at.ms + millis(ttl))
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Claim {
                    object: rows::object_id(row.try_get("object")?)?,
                    owner: owner.to_string(),
                    token: row.try_get("token")?,
                    attempts: row.try_get("attempts")?,
                    held_until,
                })
            })
            .collect()
    }
}

/// File systems whose locks SQLite cannot rely on, by `statfs` magic number.
fn network_fs_name(magic: i64) -> Option<&'static str> {
    Some(match magic {
        0x6969 => "nfs",
        0x517b => "smb",
        0xff53_4d42 => "cifs",
        0xfe53_4d42 => "smb2",
        0x0102_1997 => "9p",
        0x00c3_6400 => "ceph",
        0x5346_414f => "afs",
        0x7375_7245 => "coda",
        0x0bd0_0bd0 => "lustre",
        0x0116_1970 => "gfs2",
        0x7461_636f => "ocfs2",
        _ => return None,
    })
}

/// Refuses a database file on a network file system, naming it.
fn refuse_network_fs(file: &Path) -> Result<()> {
    let name = file.to_string_lossy();
    if name.is_empty() || name.starts_with(':') {
        return Ok(());
    }
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(stat) = rustix::fs::statfs(dir) else {
        return Ok(()); // a missing directory fails at open with a clearer error
    };
    if let Some(fs) = network_fs_name(stat.f_type) {
        return Err(Error::Conflict(format!(
            "{} is on a network file system ({fs}); SQLite's locking needs a local disk, so \
             several daemons on several hosts need PostgreSQL (--database postgres://…)",
            file.display()
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn now(&self) -> Timestamp {
        self.clock.now() as Timestamp
    }

    async fn blueprint_insert(&self, new: NewBlueprint) -> Result<Blueprint> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let result = async {
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
            "INSERT INTO blueprint (name, component, component_name, resource_type, config, grants,
                                    created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (name) DO NOTHING RETURNING *",
        )
        .bind(&new.name)
        .bind(&new.digest)
        .bind(&new.component_name)
        .bind(&new.resource_type)
        .bind(&new.config)
        .bind(json(&new.grants))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::Conflict(format!("a blueprint named {:?} already exists", new.name)))?;
        let blueprint = rows::blueprint(&row)?;
        SqliteStatements(&mut tx).insert_log(
            blueprint.id,
            "blueprint.added",
            &format!("added {:?} with grants [{}]", new.name, grant_list(&new.grants)),
            now,
        )
        .await?;
        Ok(blueprint)
        }
        .await;
        tx.finish(result).await
    }

    async fn blueprint_get(&self, id: ObjectId) -> Result<Blueprint> {
        rows::blueprint(
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
        rows::blueprint(&row)
    }

    async fn blueprint_list(&self) -> Result<Vec<Blueprint>> {
        let rows = sqlx::query("SELECT * FROM blueprint ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        rows::all(rows, rows::blueprint)
    }

    async fn blueprint_set_enabled(&self, id: ObjectId, enabled: bool) -> Result<Blueprint> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let result = async {
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
            let message = kind.trim_start_matches("blueprint.");
            SqliteStatements(&mut tx)
                .insert_log(id, kind, message, now)
                .await?;
            rows::blueprint(&row)
        }
        .await;
        tx.finish(result).await
    }

    async fn blueprint_set_grants(
        &self,
        id: ObjectId,
        grants: &[Grant],
        author: &str,
    ) -> Result<Blueprint> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let result = async {
            let before: String = sqlx::query_scalar("SELECT grants FROM blueprint WHERE id = ?1")
                .bind(id.number())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| Error::NotFound(id.to_string()))?;
            let before: Vec<Grant> = rows::from_json(&before)?;
            let row = sqlx::query("UPDATE blueprint SET grants = ?1 WHERE id = ?2 RETURNING *")
                .bind(json(&grants))
                .bind(id.number())
                .fetch_one(&mut *tx)
                .await?;
            let message = format!(
                "grants changed by {author} from [{}] to [{}]",
                grant_list(&before),
                grant_list(grants)
            );
            SqliteStatements(&mut tx)
                .insert_log(id, "blueprint.grants", &message, now)
                .await?;
            rows::blueprint(&row)
        }
        .await;
        tx.finish(result).await
    }

    async fn component_get(&self, digest: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT wasm FROM component WHERE digest = ?1")
            .bind(digest)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::NotFound(format!("component {digest}")))
    }

    async fn resource_get(&self, id: ObjectId) -> Result<Resource> {
        rows::resource(
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
        rows::all(rows, rows::resource)
    }

    async fn resource_live_of_blueprints(&self, blueprints: &[ObjectId]) -> Result<Vec<Resource>> {
        let ids: Vec<i64> = blueprints.iter().map(|b| b.number()).collect();
        let rows = sqlx::query(
            "SELECT * FROM resource INDEXED BY resource_live_of_blueprint
              WHERE status != 'destroyed' AND blueprint_id IN (SELECT value FROM json_each(?1))
              ORDER BY id",
        )
        .bind(json(&ids))
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows, rows::resource)
    }

    async fn lease_get(&self, id: ObjectId) -> Result<Lease> {
        rows::lease(
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
        rows::all(rows, rows::lease)
    }

    async fn lease_list_on_resource(&self, resource: ObjectId) -> Result<Vec<Lease>> {
        self.leases_of(
            "SELECT * FROM lease INDEXED BY lease_live_on_resource
              WHERE resource_id = ?1 AND status != 'destroyed' ORDER BY id",
            resource,
        )
        .await
    }

    async fn lease_list_supporting(&self, resource: ObjectId) -> Result<Vec<Lease>> {
        const SUPPORTING: &str = "SELECT * FROM lease WHERE parent_resource_id = ?1 ORDER BY id";
        self.leases_of(SUPPORTING, resource).await
    }

    async fn capacity_generation(&self, resource_type: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce((SELECT generation FROM capacity WHERE resource_type = ?1), 0)",
        )
        .bind(resource_type)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn lease_insert(&self, new: &NewLease, count: usize) -> Result<Vec<Lease>> {
        let now = self.clock.now();
        let allowed: Vec<i64> = new.allowed_blueprints.iter().map(|b| b.number()).collect();
        let mut tx = self.begin().await?;
        let result = async {
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
                let lease = rows::lease(&row)?;
                let mut st = SqliteStatements(&mut tx);
                st.wake(lease.id, now).await?;
                let message = format!("requested by {} for a {}", new.owner, new.resource_type);
                st.insert_log(lease.id, "lease.queued", &message, now)
                    .await?;
                leases.push(lease);
            }
            Ok(leases)
        }
        .await;
        tx.finish(result).await
    }

    async fn command_post(
        &self,
        targets: &[ObjectId],
        kind: CommandKind,
        author: &str,
    ) -> Result<Vec<Command>> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let result = post_all(&mut SqliteStatements(&mut tx), targets, kind, author, now).await;
        tx.finish(result).await
    }

    async fn command_list(&self, filter: &CommandFilter) -> Result<Vec<Command>> {
        // One statement per filter, so that each uses its index: the table keeps every
        // consumed command until retention prunes it.
        let query = match (filter.target, filter.pending) {
            (Some(target), true) => sqlx::query(
                "SELECT * FROM command INDEXED BY command_pending
                  WHERE target = ?1 AND consumed_at IS NULL ORDER BY id",
            )
            .bind(target.to_string()),
            (Some(target), false) => sqlx::query(
                "SELECT * FROM command INDEXED BY command_by_target WHERE target = ?1 ORDER BY id",
            )
            .bind(target.to_string()),
            (None, true) => sqlx::query(
                "SELECT * FROM command INDEXED BY command_pending
                  WHERE consumed_at IS NULL ORDER BY id",
            ),
            (None, false) => sqlx::query("SELECT * FROM command ORDER BY id"),
        };
        rows::all(query.fetch_all(&self.reader).await?, rows::command)
    }

    async fn log_list(
        &self,
        object: Option<ObjectId>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogEntry>> {
        let query = match object {
            Some(object) => sqlx::query(
                "SELECT * FROM log INDEXED BY log_by_object
                  WHERE object = ?3 AND id > ?1 ORDER BY id LIMIT ?2",
            )
            .bind(after_id)
            .bind(limit)
            .bind(object.to_string()),
            None => sqlx::query("SELECT * FROM log WHERE id > ?1 ORDER BY id LIMIT ?2")
                .bind(after_id)
                .bind(limit),
        };
        rows::all(query.fetch_all(&self.reader).await?, rows::log)
    }

    async fn slot_lock_list(&self, owner: Option<ObjectId>) -> Result<Vec<SlotLock>> {
        let query = match owner {
            Some(owner) => sqlx::query(
                "SELECT * FROM slot_lock INDEXED BY slot_lock_by_owner WHERE owner = ?1 ORDER BY name",
            )
            .bind(owner.to_string()),
            None => sqlx::query("SELECT * FROM slot_lock ORDER BY name"),
        };
        rows::all(query.fetch_all(&self.reader).await?, rows::slot_lock)
    }

    async fn work_item_claim(&self, owner: &str, limit: i64, ttl: Duration) -> Result<Vec<Claim>> {
        let mut tx = self.begin_with(Durability::Relaxed).await?;
        let result = async {
            // A crashed worker's objects first: recovery is bounded by the claim TTL, not by
            // the backlog. Then due objects, oldest due first.
            let mut claims = self
                .claim_where(&mut tx, CLAIM_EXPIRED, owner, limit, ttl)
                .await?;
            let left = limit - claims.len() as i64;
            if left > 0 {
                claims.extend(
                    self.claim_where(&mut tx, CLAIM_DUE, owner, left, ttl)
                        .await?,
                );
            }
            Ok(claims)
        }
        .await;
        tx.finish(result).await
    }

    async fn work_item_heartbeat(&self, claim: &Claim, ttl: Duration) -> Result<()> {
        let mut tx = self.begin_with(Durability::Relaxed).await?;
        let result = guard(&mut tx, claim, &self.clock.claim_time(), ttl).await;
        tx.finish(result).await
    }

    async fn work_item_release(&self, claim: &Claim, release: &Release) -> Result<()> {
        let mut tx = self.begin_with(Durability::Relaxed).await?;
        let result = match SqliteStatements(&mut tx)
            .release_claim(claim, release)
            .await
        {
            Ok(1) => Ok(()),
            Ok(_) => Err(Error::Fenced {
                object: claim.object,
                token: claim.token,
            }),
            Err(error) => Err(error),
        };
        tx.finish(result).await
    }

    async fn work_item_get(&self, object: ObjectId) -> Result<WorkItem> {
        let row = sqlx::query("SELECT * FROM work_item WHERE object = ?1")
            .bind(object.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?;
        let boot: Option<String> = row.try_get("claim_boot")?;
        let time = |column| {
            Ok::<_, Error>(
                row.try_get::<Option<i64>, _>(column)?
                    .map(|t| t as Timestamp),
            )
        };
        let claim_until = time("lease_until")?.map(|until| self.claim_to_wall(until, boot));
        Ok(WorkItem {
            object,
            wake_at: time("wake_at")?,
            owner: row.try_get("owner")?,
            token: row.try_get("token")?,
            claim_until,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
        })
    }

    async fn work_item_next_due(&self) -> Result<Option<Timestamp>> {
        let (due, expiry, boot): (Option<i64>, Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT (SELECT min(wake_at) FROM work_item WHERE owner IS NULL AND wake_at IS NOT NULL),
                    (SELECT min(lease_until) FROM work_item WHERE owner IS NOT NULL),
                    (SELECT claim_boot FROM work_item WHERE owner IS NOT NULL
                      ORDER BY lease_until LIMIT 1)",
        )
        .fetch_one(&self.reader)
        .await?;
        let expiry = expiry.map(|until| self.claim_to_wall(until as Timestamp, boot));
        Ok([due.map(|t| t as Timestamp), expiry]
            .into_iter()
            .flatten()
            .min())
    }

    async fn apply(&self, claim: &Claim, plan: &Plan, ttl: Duration) -> Result<Vec<ObjectId>> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let result = async {
            guard(&mut tx, claim, &self.clock.claim_time(), ttl).await?;
            let mut st = SqliteStatements(&mut tx);
            let mut applier = Applier {
                st: &mut st,
                claim,
                now,
                inserted: Vec::new(),
            };
            applier.plan(plan).await?;
            Ok(applier.inserted)
        }
        .await;
        tx.finish(result).await
    }

    async fn gc(&self, before: Timestamp) -> Result<GcReport> {
        retention::gc(self, before as i64).await
    }
}

impl SqliteStore {
    /// A claim-time expiry as wall time, for people: `now` plus what is left of it; an expiry
    /// from another boot is past.
    fn claim_to_wall(&self, until: Timestamp, boot: Option<String>) -> Timestamp {
        let at = self.clock.claim_time();
        let now = self.clock.now();
        match boot {
            Some(boot) if boot == at.boot => (now + (until as i64 - at.ms)).max(0) as Timestamp,
            _ => now.max(0) as Timestamp,
        }
    }
}

/// Items whose claim expired: taken over, token bumped (binds: see `claim_where`).
const CLAIM_EXPIRED: &str = "UPDATE work_item
        SET owner = ?1, token = token + 1, claim_boot = ?2, lease_until = ?6, wake_at = NULL
      WHERE object IN (SELECT object FROM work_item INDEXED BY work_item_claimed
                        WHERE owner IS NOT NULL AND (claim_boot IS NOT ?2 OR lease_until <= ?3)
                        LIMIT ?5)
      RETURNING object, token, attempts";

/// Unclaimed items that are due, oldest due first (binds: see `claim_where`).
const CLAIM_DUE: &str = "UPDATE work_item
        SET owner = ?1, token = token + 1, claim_boot = ?2, lease_until = ?6, wake_at = NULL
      WHERE object IN (SELECT object FROM work_item INDEXED BY work_item_due
                        WHERE owner IS NULL AND wake_at <= ?4 ORDER BY wake_at LIMIT ?5)
      RETURNING object, token, attempts";

fn grant_list(grants: &[Grant]) -> String {
    grants
        .iter()
        .map(Grant::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_file_systems_are_named() {
        assert_eq!(network_fs_name(0x6969), Some("nfs"));
        assert_eq!(network_fs_name(0xff53_4d42), Some("cifs"));
        assert_eq!(network_fs_name(0xef53), None); // ext4
        assert_eq!(network_fs_name(0x0102_1994), None); // tmpfs
    }

    #[test]
    fn a_local_database_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        refuse_network_fs(&dir.path().join("drydock.db")).unwrap();
        refuse_network_fs(Path::new("drydock.db")).unwrap();
    }
}
