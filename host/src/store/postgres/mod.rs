//! PostgreSQL: one database shared by daemons on several hosts.
//!
//! Designed for what PostgreSQL offers rather than translated from SQLite:
//!
//! - **Time comes from the database.** Claims expire on the database's clock
//!   (`drydock_now()`, from `clock_timestamp()`): a host whose clock is off by an hour can
//!   neither expire a live claim nor keep a dead one. Wall time for deadlines and logs is this
//!   host's clock corrected to the database's, the correction measured at every claim.
//! - **Claims skip what others are claiming** (`FOR UPDATE SKIP LOCKED`): daemons claiming at
//!   once take different objects instead of queueing behind each other's row locks.
//! - **Every worker write starts with the fencing guard**, as on SQLite; transactions are READ
//!   COMMITTED and lock what their decisions read (`statements`).
//! - **A lost connection is a retry**: a transaction that fails half-way is rolled back by the
//!   server and its connection is closed, never reused (`tx`).
//! - **Wake-ups are notifications** sent by the transaction that made something due
//!   (`pg_notify`, delivered at commit); every daemon listens (`listen`).
//!
//! Migrations run under sqlx's advisory lock, so daemons starting together migrate once; only
//! an open that may migrate ([`Access::Migrate`]) upgrades the schema.

mod conn;
mod listen;
mod migrate;
mod statements;
mod tx;

use super::apply;
use super::conn::{Backend, Conn, Transaction};
use super::queries::work_item;
use super::rows;
use super::{
    Access, Applied, Claim, Clock, Error, Listening, ObjectId, Plan, Release, Result, Store,
    SystemClock, WorkItem,
};
use crate::domain::Timestamp;
use crate::scheduler::{Due, Load, TenantClaims, claim_fairly};
use conn::Pooled;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Row};
use statements::{db_now, guard, millis};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tx::{Durability, PgTx};

/// How long a transaction waits for a connection before failing (and being retried).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a PostgreSQL store's time comes from.
#[derive(Debug, Clone)]
pub enum TimeSource {
    /// Production: claims expire on the database's clock; wall time is `local` corrected to the
    /// database's clock.
    Database(Arc<dyn Clock>),
    /// Tests: both time bases come from this clock, passed into every statement, so that the
    /// conformance suite can move time without sleeping.
    Clock(Arc<dyn Clock>),
}

/// How to open a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Where time comes from.
    pub time: TimeSource,
    /// Connections at most (10 by default: enough for a daemon's short transactions). With
    /// more than one, an idle connection is checked (a round trip) before it is used again: a
    /// daemon's may have been cut while it waited. A single one (a one-shot command) is used as
    /// is.
    pub connections: u32,
    /// What opening may do to the database ([`Access::Migrate`], as a daemon, by default). A
    /// read's connections refuse to write (`default_transaction_read_only`).
    pub access: Access,
    /// How long the first connection may take before the server counts as unreachable (as
    /// long as a transaction waits for a connection, by default).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            time: TimeSource::Database(Arc::new(SystemClock)),
            connections: 10,
            access: Access::Migrate,
            connect_timeout: ACQUIRE_TIMEOUT,
        }
    }
}

/// The store's two time bases (see [`super::clock`]) over a [`TimeSource`].
#[derive(Debug)]
struct Time {
    source: TimeSource,
    /// Database clock minus local clock, in milliseconds (`Database` only).
    offset: AtomicI64,
}

impl Time {
    /// Wall time.
    fn now(&self) -> i64 {
        match &self.source {
            TimeSource::Database(local) => local.now() + self.offset.load(Ordering::Relaxed),
            TimeSource::Clock(clock) => clock.now(),
        }
    }

    /// The claim time to bind into a statement; `None` means the database's clock.
    fn claim_param(&self) -> Option<i64> {
        match &self.source {
            TimeSource::Database(_) => None,
            TimeSource::Clock(clock) => Some(clock.claim_time().ms),
        }
    }

    /// The wall time to bind into a statement; `None` means the database's clock.
    fn wall_param(&self) -> Option<i64> {
        match &self.source {
            TimeSource::Database(_) => None,
            TimeSource::Clock(clock) => Some(clock.now()),
        }
    }

    /// Learns the local clock's offset from the database's time `db`, read between the local
    /// times `before` and `after`.
    fn learn(&self, db: i64, before: i64, after: i64) {
        if let TimeSource::Database(_) = self.source {
            self.offset
                .store(db - before / 2 - after / 2, Ordering::Relaxed);
        }
    }

    /// Re-learns the offset from the database's clock, on the database's time only: done at
    /// every claim, so the wall times a run writes follow the database even when this host's
    /// clock is stepped while the daemon is busy.
    async fn follow_database(&self, conn: &mut sqlx::PgConnection) -> Result<()> {
        if let TimeSource::Database(_) = self.source {
            let before = self.local();
            let db = db_now(conn).await?;
            self.learn(db, before, self.local());
        }
        Ok(())
    }

    /// The local clock's time (for [`Time::learn`]).
    fn local(&self) -> i64 {
        match &self.source {
            TimeSource::Database(local) | TimeSource::Clock(local) => local.now(),
        }
    }

    /// A claim-time expiry as wall time, for people.
    fn claim_to_wall(&self, until: i64) -> Timestamp {
        let wall = match &self.source {
            TimeSource::Database(_) => until,
            TimeSource::Clock(clock) => clock.now() + (until - clock.claim_time().ms),
        };
        wall.max(0) as Timestamp
    }
}

/// One connection to the server, within `timeout`: a server that refuses, cannot be resolved
/// or does not answer is an [`Error::Unreachable`] naming it and the reason, at once (a pool
/// would retry a refused connection until its timeout and report only that it timed out).
async fn first_connection(options: &PgConnectOptions, timeout: Duration) -> Result<PgConnection> {
    let unreachable = |reason: String| Error::Unreachable {
        address: address(options),
        reason,
    };
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(sqlx::Error::Io(error))) => Err(unreachable(error.to_string())),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
    }
}

/// Where `options` connect: `host:port`, or the path of the server's Unix socket.
fn address(options: &PgConnectOptions) -> String {
    let (host, port) = (options.get_host(), options.get_port());
    match options.get_socket() {
        Some(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
        None if host.starts_with('/') => format!("{host}/.s.PGSQL.{port}"),
        None if host.contains(':') => format!("[{host}]:{port}"),
        None => format!("{host}:{port}"),
    }
}

/// A PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
    time: Arc<Time>,
}

impl PgStore {
    /// Connects to and migrates the database at `url` (`postgres://…`), with the default
    /// [`PgOptions`].
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, PgOptions::default()).await
    }

    /// Connects to the database at `url` with `options`, checking its schema (and migrating it
    /// when `options.access` allows) on a first connection that fails fast, naming the server
    /// and the reason, when the server cannot be reached.
    pub async fn open_with(url: &str, options: PgOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url)?.application_name("drydock");
        if options.access == Access::Read {
            connect = connect.options([("default_transaction_read_only", "on")]);
        }
        let mut first = first_connection(&connect, options.connect_timeout).await?;
        migrate::migrate(&mut first, options.access).await?;
        let time = Time {
            source: options.time,
            offset: AtomicI64::new(0),
        };
        let before = time.local();
        let db = db_now(&mut first).await?;
        time.learn(db, before, time.local());
        let _ = first.close().await; // the schema is checked: the pool does the rest
        let pool = PgPoolOptions::new()
            .max_connections(options.connections)
            .test_before_acquire(options.connections > 1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(connect.clone());
        Ok(PgStore {
            pool,
            options: connect,
            time: Arc::new(time),
        })
    }

    /// A durable write transaction.
    async fn begin(&self) -> Result<PgTx> {
        PgTx::begin(&self.pool, Durability::Full).await
    }

    /// Claims up to `limit` items that `claim` finds (binding `$1` owner, `$2` the time it
    /// compares with, `$3` limit, `$4` the time-to-live, `$5` the claim time; a `NULL` time is
    /// the database's; and `$6` the tenant, if there is one), in queue order.
    async fn claim_where(
        tx: &mut PgTx,
        claim: &'static str,
        (owner, tenant): (&str, Option<&str>),
        (at, claim_now): (Option<i64>, Option<i64>),
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        let held_until = super::boottime_ms() + millis(ttl);
        let mut query = sqlx::query(claim)
            .bind(owner)
            .bind(at)
            .bind(limit)
            .bind(millis(ttl))
            .bind(claim_now);
        if let Some(tenant) = tenant {
            query = query.bind(tenant);
        }
        let mut rows = query.fetch_all(&mut **tx).await?;
        // RETURNING comes in the update's order; hand claims out in the queue's.
        rows.sort_by_cached_key(|row| {
            let since: i64 = row.try_get("since").unwrap_or_default();
            let object: String = row.try_get("object").unwrap_or_default();
            (since, object)
        });
        rows.iter()
            .map(|row| rows::claim(row, owner, held_until))
            .collect()
    }
}

impl Backend for PgStore {
    fn reader(&self) -> Box<dyn Conn + '_> {
        Box::new(Pooled(&self.pool))
    }

    fn transaction(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>> {
        Box::pin(async move { Ok(Box::new(self.begin().await?) as Box<dyn Transaction>) })
    }

    /// Nothing to do: every wake-up notifies listeners from inside its transaction.
    fn announce(&self) {}
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn now(&self) -> Timestamp {
        self.time.now().max(0) as Timestamp
    }

    async fn work_item_claim(
        &self,
        owner: &str,
        limit: i64,
        ttl: Duration,
        running: &Load,
    ) -> Result<Vec<Claim>> {
        let mut tx = PgTx::begin(&self.pool, Durability::Relaxed).await?;
        let result = async {
            self.time.follow_database(&mut tx).await?;
            let claim_now = self.time.claim_param();
            // A crashed worker's objects first: recovery is bounded by the claim TTL, not by
            // the backlog. Then due objects, shared out among their tenants.
            let expired = (claim_now, claim_now);
            let mut claims =
                Self::claim_where(&mut tx, CLAIM_EXPIRED, (owner, None), expired, limit, ttl)
                    .await?;
            for claim in &mut claims {
                claim.taken_over = true;
            }
            let left = limit - claims.len() as i64;
            if left > 0 {
                let due: Vec<(String, i64)> = sqlx::query_as(DUE_TENANTS)
                    .bind(self.time.wall_param())
                    .fetch_all(&mut *tx)
                    .await?;
                let due = due
                    .into_iter()
                    .map(|(tenant, oldest)| Due {
                        tenant,
                        oldest: oldest.max(0) as Timestamp,
                    })
                    .collect();
                let mut load = running.clone();
                for claim in &claims {
                    load.add(&claim.tenant, 1);
                }
                let mut tenants = Tenants {
                    tx: &mut tx,
                    owner,
                    at: (self.time.wall_param(), claim_now),
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
        let mut tx = PgTx::begin(&self.pool, Durability::Relaxed).await?;
        let result = guard(&mut tx, claim, self.time.claim_param(), ttl).await;
        tx.finish(result).await
    }

    async fn work_item_release(&self, claim: &Claim, release: &Release) -> Result<()> {
        let mut tx = PgTx::begin(&self.pool, Durability::Relaxed).await?;
        let result = work_item::release(&mut tx, claim, release).await;
        tx.finish(result).await
    }

    async fn work_item_get(&self, object: ObjectId) -> Result<WorkItem> {
        let row = sqlx::query("SELECT * FROM work_item WHERE object = $1")
            .bind(object.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(object.to_string()))?;
        let wake_at: Option<i64> = row.try_get("wake_at")?;
        let until: Option<i64> = row.try_get("lease_until")?;
        Ok(WorkItem {
            object,
            wake_at: wake_at.map(|t| t as Timestamp),
            owner: row.try_get("owner")?,
            token: row.try_get("token")?,
            claim_until: until.map(|until| self.time.claim_to_wall(until)),
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
        })
    }

    async fn work_item_next_due(&self) -> Result<Option<Timestamp>> {
        // The dispatcher asks whenever it goes idle: a good moment to learn the clock's offset.
        let before = self.time.local();
        let (due, expiry, db): (Option<i64>, Option<i64>, i64) = sqlx::query_as(
            "SELECT (SELECT min(wake_at) FROM work_item WHERE owner IS NULL AND wake_at IS NOT NULL),
                    (SELECT min(lease_until) FROM work_item WHERE owner IS NOT NULL),
                    drydock_now()",
        )
        .fetch_one(&self.pool)
        .await?;
        self.time.learn(db, before, self.time.local());
        let expiry = expiry.map(|until| self.time.claim_to_wall(until));
        Ok([due.map(|t| t as Timestamp), expiry]
            .into_iter()
            .flatten()
            .min())
    }

    async fn apply(&self, claim: &Claim, plan: &Plan, ttl: Duration) -> Result<Applied> {
        let mut tx = self.begin().await?;
        let result = async {
            guard(&mut tx, claim, self.time.claim_param(), ttl).await?;
            let now = self.time.now();
            apply::apply_plan(&mut tx, claim, plan, now).await
        }
        .await;
        tx.finish(result).await
    }

    async fn apply_batch(&self, batch: &[super::PlanToApply<'_>]) -> Result<Vec<Result<Applied>>> {
        let mut tx = self.begin().await?;
        let result = async {
            let now = self.time.now();
            let mut outcomes = Vec::with_capacity(batch.len());
            for item in batch {
                sqlx::query("SAVEPOINT plan").execute(&mut *tx).await?;
                let applied = async {
                    guard(&mut tx, item.claim, self.time.claim_param(), item.ttl).await?;
                    apply::apply_plan(&mut tx, item.claim, item.plan, now).await
                }
                .await;
                if applied.is_err() {
                    sqlx::query("ROLLBACK TO SAVEPOINT plan")
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("RELEASE SAVEPOINT plan")
                    .execute(&mut *tx)
                    .await?;
                outcomes.push(applied);
            }
            Ok(outcomes)
        }
        .await;
        let outcomes = tx.finish(result).await?;
        Ok(outcomes)
    }

    async fn listen(&self, wake: Arc<Notify>) -> Result<Listening> {
        Ok(Listening::by(listen::spawn(self.options.clone(), wake)))
    }
}

/// Items whose claim expired: taken over, token bumped, longest expired first (binds: see
/// `claim_where`).
const CLAIM_EXPIRED: &str = "WITH t AS (SELECT coalesce($2::BIGINT, drydock_now()) AS now),
     picked AS (
         SELECT object, lease_until AS since FROM work_item, t
          WHERE owner IS NOT NULL AND lease_until <= t.now
          ORDER BY lease_until, object LIMIT $3 FOR UPDATE OF work_item SKIP LOCKED)
     UPDATE work_item w
        SET owner = $1, token = token + 1, wake_at = NULL,
            lease_until = coalesce($5::BIGINT, drydock_now()) + $4
       FROM picked WHERE w.object = picked.object
     RETURNING w.object, w.tenant, w.token, w.attempts, picked.since";

/// Unclaimed items of tenant `$6` that are due, oldest due first, ties in a stable order
/// (binds: see `claim_where`).
const CLAIM_DUE: &str = "WITH t AS (SELECT coalesce($2::BIGINT, drydock_now()) AS now),
     picked AS (
         SELECT object, wake_at AS since FROM work_item, t
          WHERE owner IS NULL AND wake_at IS NOT NULL AND tenant = $6 AND wake_at <= t.now
          ORDER BY wake_at, object LIMIT $3 FOR UPDATE OF work_item SKIP LOCKED)
     UPDATE work_item w
        SET owner = $1, token = token + 1, wake_at = NULL,
            lease_until = coalesce($5::BIGINT, drydock_now()) + $4
       FROM picked WHERE w.object = picked.object
     RETURNING w.object, w.tenant, w.token, w.attempts, picked.since";

/// The tenants with objects due at `$1` (`NULL`: the database's time), and when the oldest of
/// each became due: a skip scan over `work_item_due_by_tenant`, one index probe per tenant with
/// anything scheduled, whatever the backlog.
const DUE_TENANTS: &str = "WITH RECURSIVE tenants(tenant) AS (
         SELECT min(tenant) FROM work_item WHERE owner IS NULL AND wake_at IS NOT NULL
         UNION ALL
         SELECT (SELECT min(w.tenant) FROM work_item AS w
                  WHERE w.owner IS NULL AND w.wake_at IS NOT NULL AND w.tenant > tenants.tenant)
           FROM tenants WHERE tenants.tenant IS NOT NULL)
     SELECT tenant, oldest FROM (
         SELECT tenant,
                (SELECT min(w.wake_at) FROM work_item AS w
                  WHERE w.owner IS NULL AND w.wake_at IS NOT NULL AND w.tenant = tenants.tenant)
                    AS oldest
           FROM tenants WHERE tenant IS NOT NULL) AS due
      WHERE oldest <= coalesce($1::BIGINT, drydock_now())";

/// A claim's due objects of one tenant at a time, inside its transaction.
struct Tenants<'a> {
    tx: &'a mut PgTx,
    owner: &'a str,
    at: (Option<i64>, Option<i64>),
    ttl: Duration,
}

#[async_trait::async_trait]
impl TenantClaims for Tenants<'_> {
    async fn claim_shares(&mut self, shares: &[(String, usize)]) -> Result<Vec<Claim>> {
        // One statement per tenant: measured faster than one statement picking every share
        // (`unnest` and `LATERAL`), whose plan PostgreSQL makes worse.
        let mut claims = Vec::new();
        for (tenant, count) in shares {
            let who = (self.owner, Some(tenant.as_str()));
            let limit = *count as i64;
            claims.extend(
                PgStore::claim_where(self.tx, CLAIM_DUE, who, self.at, limit, self.ttl).await?,
            );
        }
        Ok(claims)
    }
}
