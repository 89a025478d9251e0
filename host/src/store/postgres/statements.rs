//! The fencing guard on PostgreSQL, and the database's clock. The statements shared with
//! SQLite are in `store::queries`. Every wake-up there also notifies the `drydock_wake`
//! channel; PostgreSQL delivers one notification per channel per transaction, at commit.

use super::super::queries::work_item::held_if_one;
use super::super::{Claim, Result};
use sqlx::PgConnection;
use std::time::Duration;

/// The channel wake-ups are announced on (also named in the `wake` statement).
pub(super) const WAKE_CHANNEL: &str = "drydock_wake";

pub(super) fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// The fencing guard that starts every worker write and every heartbeat: extends the claim
/// (from `claim_now`, the database's clock when `None`) if it is still held. Touching no row
/// means the claim was taken over: someone else may be the writer; nothing may be written. A
/// claim whose time ran out but that nobody took over is still held (a takeover moves the
/// token on): a stalled store is not a lost claim. The row stays locked until the transaction
/// ends, so no claim can take the object meanwhile.
pub(super) async fn guard(
    conn: &mut PgConnection,
    claim: &Claim,
    claim_now: Option<i64>,
    ttl: Duration,
) -> Result<()> {
    let held = sqlx::query(
        "WITH t AS (SELECT coalesce($1::BIGINT, drydock_now()) AS now)
         UPDATE work_item SET lease_until = t.now + $2 FROM t
          WHERE object = $3 AND owner = $4 AND token = $5",
    )
    .bind(claim_now)
    .bind(millis(ttl))
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .execute(conn)
    .await?;
    held_if_one(held.rows_affected(), claim)
}

/// The database's time.
pub(super) async fn db_now(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT drydock_now()")
        .fetch_one(conn)
        .await?)
}
