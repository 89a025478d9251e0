//! `step`: the audit trail of the steps blueprints returned.

use super::super::conn::{Conn, query};
use super::super::{ObjectId, Result, StepRecord, rows};

/// Appends a step.
pub(crate) async fn insert(c: &mut dyn Conn, step: &StepRecord, now: i64) -> Result<()> {
    let insert = query(
        "INSERT INTO step (object, blueprint_id, hook, step, verdict, duration_us, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(step.object.to_string())
    .bind(step.blueprint.number())
    .bind(&step.hook)
    .bind(step.step.as_deref())
    .bind(&step.verdict)
    .bind(step.duration_us)
    .bind(now);
    c.execute(insert).await?;
    Ok(())
}

/// Up to `limit` steps about `object` after the step `after_id`, oldest first.
pub(crate) async fn list(
    c: &mut dyn Conn,
    object: ObjectId,
    after_id: i64,
    limit: i64,
) -> Result<Vec<StepRecord>> {
    let select = query("SELECT * FROM step WHERE object = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(object.to_string())
        .bind(after_id)
        .bind(limit);
    c.all(select, rows::step).await
}
