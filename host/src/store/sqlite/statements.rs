//! The fencing guard on SQLite, run on the write transaction's connection. The statements
//! shared with PostgreSQL are in `store::queries`.

use super::super::conn::{Conn, query};
use super::super::queries::work_item::held_if_one;
use super::super::{Claim, ClaimTime, Result};
use std::time::Duration;

pub(super) fn millis(duration: Duration) -> i64 {
    duration.as_millis() as i64
}

/// The fencing guard that starts every worker write and every heartbeat: extends the claim
/// if it is still held. Touching no row means the claim was taken over (or is of an earlier
/// boot): someone else may be the writer; nothing may be written. A claim whose time ran out
/// but that nobody took over is still held (a takeover moves the token on): a stalled store is
/// not a lost claim.
pub(super) async fn guard(
    conn: &mut dyn Conn,
    claim: &Claim,
    at: &ClaimTime,
    ttl: Duration,
) -> Result<()> {
    let extend = query(
        "UPDATE work_item SET lease_until = ?1
          WHERE object = ?2 AND owner = ?3 AND token = ?4 AND claim_boot = ?5",
    )
    .bind(at.ms + millis(ttl))
    .bind(claim.object.to_string())
    .bind(&claim.owner)
    .bind(claim.token)
    .bind(&at.boot);
    held_if_one(conn.execute(extend).await?, claim)
}
