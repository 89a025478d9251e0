//! The embedded default: SQLite, through rusqlite.
//!
//! WAL with `synchronous=FULL` (a resource manager must not forget a destroy), `BEGIN IMMEDIATE`
//! for every read-then-write transaction (a deferred BEGIN under contention fails with
//! SQLITE_BUSY), and one write connection that this process's writers take in turn
//! (`writer::Writer`) instead of sleeping in SQLite's busy handler. Other processes (the CLI, a
//! second daemon) wait on the busy timeout. A failed write never leaves that connection inside
//! a transaction (`tx::WriteTx`).
//!
//! SQLite serves one host: its locks do not work across a network file system, so a database
//! there is refused at open. Several hosts need PostgreSQL. An in-memory database is refused
//! too: no other process could share it.
//!
//! A read ([`Access::Read`]) opens an existing file read-only: it creates nothing, takes no
//! lock a writer could hold, and cannot write by accident.
//!
//! Modules: `writer` (the write connection), `readers` (the read connections), `conn` (running
//! statements on the calling thread), `tx` (transactions and migrations), `statements` (the
//! fencing guard), `wake` (waking daemons in other processes after a commit).
//! The queries, row conversions, plan logic and retention are shared with every backend
//! (`store::queries`, `store::rows`, `store::apply`, `store::retention`).

mod conn;
mod readers;
mod statements;
mod tx;
mod wake;
mod writer;

use super::conn::{Backend, Conn, Transaction, query};
use super::queries::work_item;
use super::rows;
use super::{
    Access, Applied, Claim, Clock, Error, Listening, ObjectId, Plan, Release, Result, Store,
    WorkItem,
};
use super::{apply, schema};
use crate::domain::Timestamp;
use crate::scheduler::{Due, Load, TenantClaims, claim_fairly};
use conn::Reading;
use futures_util::future::BoxFuture;
use readers::Readers;
use statements::{guard, millis};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tx::{Durability, WriteTx};

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: writer::Writer,
    reader: Arc<Readers>,
    clock: Arc<dyn Clock>,
    write_transactions: Arc<AtomicU64>,
    durable_transactions: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    /// Where listening daemons' wake-up sockets are; `None` in memory.
    wake_dir: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://path`), as a
    /// daemon does ([`Access::Migrate`]). Any number of processes may open a new database at
    /// once.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with(url, clock, Access::Migrate).await
    }

    /// Opens the database at `url` for `access`: a read opens an existing file read-only,
    /// without waiting for another process's write lock; a write needs an existing file, which
    /// setup may create; only a migrating open upgrades an older schema.
    pub async fn open_with(url: &str, clock: Arc<dyn Clock>, access: Access) -> Result<Self> {
        let file = file_of(url)?;
        refuse_network_fs(&file)?;
        let mode = match access {
            Access::Read => writer::Mode::ReadOnly,
            Access::Write => writer::Mode::ReadWrite,
            Access::Setup | Access::Migrate => writer::Mode::Create,
        };
        if mode != writer::Mode::Create {
            refuse_missing(&file)?;
        }
        let writer = writer::Writer::new(file.clone(), mode, BUSY_TIMEOUT);
        if mode == writer::Mode::Create {
            // The file, in WAL mode, before the read-only readers open it.
            drop(writer.take().await?);
        }
        let reader = Arc::new(Readers::new(file.clone(), BUSY_TIMEOUT));
        let reads = AtomicU64::default();
        let mut reading = Reading {
            readers: &reader,
            reads: &reads,
        };
        if schema::must_migrate(access, &tx::applied(&mut reading).await?, &tx::MIGRATOR)? {
            tx::migrate(&writer, clock.now(), BUSY_TIMEOUT, access).await?;
        }
        Ok(SqliteStore {
            writer,
            reader,
            clock,
            write_transactions: Arc::default(),
            durable_transactions: Arc::default(),
            reads: Arc::default(),
            wake_dir: wake::dir_for(&file),
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
        WriteTx::begin(&self.writer, durability, BUSY_TIMEOUT).await
    }

    /// Read statements run so far by this handle (for benchmarks).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Claims up to `limit` items that `select` finds (binding `?1` owner, `?2` boot, `?3` claim
    /// time, `?4` wall time, `?5` limit, `?6` the claim's expiry, `?7` the tenant).
    async fn claim_where(
        &self,
        tx: &mut WriteTx,
        select: &'static str,
        (owner, tenant): (&str, &str),
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        let at = self.clock.claim_time();
        let held_until = super::boottime_ms() + millis(ttl);
        let claim = query(select)
            .bind(owner)
            .bind(&at.boot)
            .bind(at.ms)
            .bind(self.clock.now())
            .bind(limit)
            .bind(at.ms + millis(ttl))
            .bind(tenant);
        let tx: &mut dyn Conn = tx;
        tx.all(claim, |row| rows::claim(row, owner, held_until))
            .await
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

/// The file a `sqlite://PATH` (or `sqlite:PATH`) URL names. An in-memory database is refused:
/// no other process (the CLI, a second daemon) could share it; so are URL options, which the
/// store sets itself.
pub fn file_of(url: &str) -> Result<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::Conflict(format!("{url} is not a sqlite:// URL")))?;
    if path.is_empty() || path.starts_with(':') || path.contains("mode=memory") {
        return Err(Error::Conflict(format!(
            "{url} is an in-memory database, which no other process (the CLI, a second daemon) \
             could share: name a file (sqlite://PATH)"
        )));
    }
    if path.contains('?') {
        return Err(Error::Conflict(format!(
            "{url} has options; Drydock sets SQLite's own: name the file alone (sqlite://PATH)"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Refuses to read a database file that is not there: a mistyped path is an error naming it,
/// not a new empty database.
fn refuse_missing(file: &Path) -> Result<()> {
    match file.exists() {
        true => Ok(()),
        false => Err(Error::NoDatabase(file.display().to_string())),
    }
}

/// Refuses a database file on a network file system, naming it.
fn refuse_network_fs(file: &Path) -> Result<()> {
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

impl Backend for SqliteStore {
    fn reader(&self) -> Box<dyn Conn + '_> {
        Box::new(Reading {
            readers: &self.reader,
            reads: &self.reads,
        })
    }

    fn transaction(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>> {
        Box::pin(async move { Ok(Box::new(self.begin().await?) as Box<dyn Transaction>) })
    }

    /// Pokes the daemons listening on this database.
    fn announce(&self) {
        if let Some(dir) = &self.wake_dir {
            wake::announce(dir);
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn now(&self) -> Timestamp {
        self.clock.now() as Timestamp
    }

    async fn work_item_claim(
        &self,
        owner: &str,
        limit: i64,
        ttl: Duration,
        running: &Load,
    ) -> Result<Vec<Claim>> {
        let mut tx = self.begin_with(Durability::Relaxed).await?;
        let result = async {
            // A crashed worker's objects first: recovery is bounded by the claim TTL, not by
            // the backlog. Then due objects, shared out among their tenants.
            let mut claims = self
                .claim_where(&mut tx, CLAIM_EXPIRED, (owner, ""), limit, ttl)
                .await?;
            for claim in &mut claims {
                claim.taken_over = true;
            }
            let left = limit - claims.len() as i64;
            if left > 0 {
                let due_tenants = query(DUE_TENANTS).bind(self.clock.now());
                let due = (&mut tx as &mut dyn Conn)
                    .all(due_tenants, |row| {
                        Ok(Due {
                            tenant: row.text("tenant")?,
                            oldest: row.int("oldest")? as Timestamp,
                        })
                    })
                    .await?;
                let mut load = running.clone();
                for claim in &claims {
                    load.add(&claim.tenant, 1);
                }
                let mut tenants = Tenants {
                    store: self,
                    tx: &mut tx,
                    owner,
                    ttl,
                };
                claims.extend(claim_fairly(&mut tenants, left as usize, due, load).await?);
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
        let result = work_item::release(&mut tx, claim, release).await;
        tx.finish(result).await
    }

    async fn work_item_get(&self, object: ObjectId) -> Result<WorkItem> {
        let select = query("SELECT * FROM work_item WHERE object = ?1").bind(object.to_string());
        self.reader()
            .optional(select, |row| {
                let boot = row.opt_text("claim_boot")?;
                let time = |column| Ok::<_, Error>(row.opt_int(column)?.map(|t| t as Timestamp));
                let claim_until = time("lease_until")?.map(|until| self.claim_to_wall(until, boot));
                Ok(WorkItem {
                    object,
                    wake_at: time("wake_at")?,
                    owner: row.opt_text("owner")?,
                    token: row.int("token")?,
                    claim_until,
                    attempts: row.int("attempts")?,
                    last_error: row.opt_text("last_error")?,
                })
            })
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))
    }

    async fn work_item_next_due(&self) -> Result<Option<Timestamp>> {
        let select = query(
            "SELECT (SELECT min(wake_at) FROM work_item WHERE owner IS NULL AND wake_at IS NOT NULL)
                        AS due,
                    (SELECT min(lease_until) FROM work_item WHERE owner IS NOT NULL) AS expiry,
                    (SELECT claim_boot FROM work_item WHERE owner IS NOT NULL
                      ORDER BY lease_until LIMIT 1) AS boot",
        );
        let (due, expiry, boot) = self
            .reader()
            .one(select, |row| {
                Ok((
                    row.opt_int("due")?,
                    row.opt_int("expiry")?,
                    row.opt_text("boot")?,
                ))
            })
            .await?;
        let expiry = expiry.map(|until| self.claim_to_wall(until as Timestamp, boot));
        Ok([due.map(|t| t as Timestamp), expiry]
            .into_iter()
            .flatten()
            .min())
    }

    async fn apply(&self, claim: &Claim, plan: &Plan, ttl: Duration) -> Result<Applied> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let result = async {
            guard(&mut tx, claim, &self.clock.claim_time(), ttl).await?;
            apply::apply_plan(&mut tx, claim, plan, now).await
        }
        .await;
        tx.finish(result).await
    }

    async fn apply_batch(&self, batch: &[super::PlanToApply<'_>]) -> Result<Vec<Result<Applied>>> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let result = async {
            let at = self.clock.claim_time();
            let mut outcomes = Vec::with_capacity(batch.len());
            for item in batch {
                tx.execute(query("SAVEPOINT plan")).await?;
                let applied = async {
                    guard(&mut tx, item.claim, &at, item.ttl).await?;
                    apply::apply_plan(&mut tx, item.claim, item.plan, now).await
                }
                .await;
                if applied.is_err() {
                    tx.execute(query("ROLLBACK TO plan")).await?;
                }
                tx.execute(query("RELEASE plan")).await?;
                outcomes.push(applied);
            }
            Ok(outcomes)
        }
        .await;
        let outcomes = tx.finish(result).await?;
        Ok(outcomes)
    }

    async fn listening_daemons(&self) -> Option<usize> {
        Some(self.wake_dir.as_deref().map_or(0, wake::listening))
    }

    async fn listen(&self, wake: Arc<Notify>) -> Result<Listening> {
        let dir = self.wake_dir.as_ref().ok_or_else(|| {
            Error::Precondition("an in-memory database has no other processes to hear".into())
        })?;
        let task = wake::listen(dir, wake).map_err(|error| {
            Error::Precondition(format!(
                "listening for wake-ups in {}: {error}",
                dir.display()
            ))
        })?;
        Ok(Listening::by(task))
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

/// A claim's due objects of one tenant at a time, inside its transaction.
struct Tenants<'a> {
    store: &'a SqliteStore,
    tx: &'a mut WriteTx,
    owner: &'a str,
    ttl: Duration,
}

#[async_trait::async_trait]
impl TenantClaims for Tenants<'_> {
    async fn claim_shares(&mut self, shares: &[(String, usize)]) -> Result<Vec<Claim>> {
        // One statement per tenant: SQLite runs them in this process, no round trips.
        let mut claims = Vec::new();
        for (tenant, count) in shares {
            let who = (self.owner, tenant.as_str());
            let limit = *count as i64;
            claims.extend(
                self.store
                    .claim_where(self.tx, CLAIM_DUE, who, limit, self.ttl)
                    .await?,
            );
        }
        Ok(claims)
    }
}

/// Items whose claim expired: taken over, token bumped (binds: see `claim_where`).
const CLAIM_EXPIRED: &str = "UPDATE work_item
        SET owner = ?1, token = token + 1, claim_boot = ?2, lease_until = ?6, wake_at = NULL
      WHERE object IN (SELECT object FROM work_item INDEXED BY work_item_claimed
                        WHERE owner IS NOT NULL AND (claim_boot IS NOT ?2 OR lease_until <= ?3)
                        LIMIT ?5)
      RETURNING object, tenant, token, attempts";

/// Unclaimed items of tenant `?7` that are due, oldest due first (binds: see `claim_where`).
const CLAIM_DUE: &str = "UPDATE work_item
        SET owner = ?1, token = token + 1, claim_boot = ?2, lease_until = ?6, wake_at = NULL
      WHERE object IN (SELECT object FROM work_item INDEXED BY work_item_due_by_tenant
                        WHERE owner IS NULL AND wake_at IS NOT NULL AND tenant = ?7
                          AND wake_at <= ?4
                        ORDER BY wake_at LIMIT ?5)
      RETURNING object, tenant, token, attempts";

/// The tenants with objects due at `?1`, and when the oldest of each became due: a skip scan
/// over `work_item_due_by_tenant`, one seek per tenant with anything scheduled, whatever the
/// backlog.
const DUE_TENANTS: &str = "WITH RECURSIVE tenants(tenant) AS (
         SELECT min(tenant) FROM work_item INDEXED BY work_item_due_by_tenant
          WHERE owner IS NULL AND wake_at IS NOT NULL
         UNION ALL
         SELECT (SELECT min(w.tenant) FROM work_item AS w INDEXED BY work_item_due_by_tenant
                  WHERE w.owner IS NULL AND w.wake_at IS NOT NULL AND w.tenant > tenants.tenant)
           FROM tenants WHERE tenants.tenant IS NOT NULL)
     SELECT tenant, oldest FROM (
         SELECT tenant,
                (SELECT min(w.wake_at) FROM work_item AS w INDEXED BY work_item_due_by_tenant
                  WHERE w.owner IS NULL AND w.wake_at IS NOT NULL AND w.tenant = tenants.tenant)
                    AS oldest
           FROM tenants WHERE tenant IS NOT NULL)
      WHERE oldest <= ?1";

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
