//! `capacity`: a generation per resource type, moved on whenever capacity for it may have
//! appeared, so that a lease going to sleep on a type cannot miss the change.

use super::super::conn::{Conn, Dialect, query};
use super::super::{ObjectId, Result};
use super::{lease, work_item};

/// A type's capacity generation, as last committed.
pub(crate) async fn generation(c: &mut dyn Conn, resource_type: &str) -> Result<i64> {
    let select = query(
        "SELECT coalesce((SELECT generation FROM capacity WHERE resource_type = $1), 0) AS n",
    );
    c.one(select.bind(resource_type), |row| row.int("n")).await
}

/// A type's capacity generation inside a write transaction; on PostgreSQL the type's row is
/// locked, so that a change of capacity and a lease going to sleep on it happen one after the
/// other.
pub(crate) async fn lock_generation(c: &mut dyn Conn, resource_type: &str) -> Result<i64> {
    if c.dialect() == Dialect::Sqlite {
        return generation(c, resource_type).await;
    }
    let upsert = query(
        "INSERT INTO capacity (resource_type, generation) VALUES ($1, 0)
         ON CONFLICT (resource_type) DO UPDATE SET generation = capacity.generation
         RETURNING generation",
    );
    c.one(upsert.bind(resource_type), |row| row.int("generation"))
        .await
}

/// Capacity for `resource_type` may have appeared: a new generation, and every lease waiting
/// for it woken, each due at its request time so that they are claimed oldest first.
pub(crate) async fn changed(c: &mut dyn Conn, resource_type: &str) -> Result<()> {
    let bump = query(
        "INSERT INTO capacity (resource_type, generation) VALUES ($1, 1)
         ON CONFLICT (resource_type) DO UPDATE SET generation = capacity.generation + 1",
    );
    c.execute(bump.bind(resource_type)).await?;
    for (id, requested) in lease::take_waiting(c, resource_type).await? {
        work_item::wake(c, ObjectId::Lease(id), requested).await?;
    }
    Ok(())
}
