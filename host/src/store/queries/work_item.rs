//! `work_item`: one row per object, at once queue entry, coalescing flag and lock (the claim
//! statements, which differ most between the backends, stay with each backend).

use super::super::conn::{Conn, query};
use super::super::{Claim, Error, ObjectId, Release, Result};

/// Marks an object due at `at`, creating its work item if needed (never delaying an earlier
/// wake-up). On PostgreSQL it also notifies the `drydock_wake` channel, which delivers at
/// commit.
pub(crate) async fn wake(c: &mut dyn Conn, object: ObjectId, at: i64) -> Result<()> {
    let wake = c.dialect().pick(
        "INSERT INTO work_item (object, wake_at) VALUES ($1, $2)
         ON CONFLICT (object) DO UPDATE SET wake_at =
             CASE WHEN wake_at IS NULL OR wake_at > $2 THEN $2 ELSE wake_at END",
        "WITH woken AS (
             INSERT INTO work_item (object, wake_at) VALUES ($1, $2)
             ON CONFLICT (object) DO UPDATE
                SET wake_at = LEAST(coalesce(work_item.wake_at, $2), $2)
             RETURNING 1)
         SELECT pg_notify('drydock_wake', '') FROM woken",
    );
    c.execute(query(wake).bind(object.to_string()).bind(at))
        .await?;
    Ok(())
}

/// Makes the work item of a new object, belonging to `tenant` (`crate::scheduler`), due at
/// `at`.
pub(crate) async fn enqueue(
    c: &mut dyn Conn,
    object: ObjectId,
    tenant: &str,
    at: i64,
) -> Result<()> {
    let insert = query("INSERT INTO work_item (object, tenant) VALUES ($1, $2)")
        .bind(object.to_string())
        .bind(tenant);
    c.execute(insert).await?;
    wake(c, object, at).await
}

/// Gives a claim back, keeping a wake-up that arrived during the run; `Error::Fenced` if the
/// claim was no longer held.
pub(crate) async fn release(c: &mut dyn Conn, claim: &Claim, release: &Release) -> Result<()> {
    let update = c.dialect().pick(
        "UPDATE work_item SET owner = NULL, lease_until = NULL, claim_boot = NULL,
             wake_at = CASE WHEN wake_at IS NULL THEN ?1
                            WHEN ?1 IS NULL THEN wake_at
                            ELSE min(wake_at, ?1) END,
             attempts = CASE WHEN ?2 THEN attempts + 1 WHEN ?3 IS NULL THEN 0 ELSE attempts END,
             last_error = ?3
          WHERE object = ?4 AND owner = ?5 AND token = ?6",
        "UPDATE work_item SET owner = NULL, lease_until = NULL,
             wake_at = CASE WHEN wake_at IS NULL THEN $1
                            WHEN $1::BIGINT IS NULL THEN wake_at
                            ELSE LEAST(wake_at, $1) END,
             attempts = CASE WHEN $2 THEN attempts + 1
                             WHEN $3::TEXT IS NULL THEN 0 ELSE attempts END,
             last_error = $3
          WHERE object = $4 AND owner = $5 AND token = $6",
    );
    let update = query(update)
        .bind(release.wake_at.map(|t| t as i64))
        .bind(release.failed)
        .bind(&release.error)
        .bind(claim.object.to_string())
        .bind(&claim.owner)
        .bind(claim.token);
    held_if_one(c.execute(update).await?, claim)
}

/// A guard or claim release touches the claim's one row while the claim is held; no row means
/// someone else may be the writer: `Error::Fenced`.
pub(crate) fn held_if_one(rows: u64, claim: &Claim) -> Result<()> {
    if rows != 1 {
        return Err(Error::Fenced {
            object: claim.object,
            token: claim.token,
        });
    }
    Ok(())
}
