//! `lease`: requests for a resource, from pending to destroyed.

use super::super::conn::{Conn, query};
use super::super::rows::{self, Columns, Prefixed, json};
use super::super::{Command, Error, Lease, ListQuery, NewLease, ObjectId, Page, Result, apply};
use super::{log, page, work_item};
use crate::domain::LeaseStatus;

/// A lease.
pub(crate) async fn get(c: &mut dyn Conn, id: ObjectId) -> Result<Lease> {
    let select = query("SELECT * FROM lease WHERE id = $1").bind(id.number());
    c.optional(select, rows::lease)
        .await?
        .ok_or_else(|| Error::NotFound(id.to_string()))
}

/// A lease and its pending commands, in one round trip: one row per pending command (or one
/// without a command).
pub(crate) async fn with_commands(c: &mut dyn Conn, id: ObjectId) -> Result<(Lease, Vec<Command>)> {
    let select = query(
        "SELECT lease.*, command.id AS command_id, command.target AS command_target,
                command.kind AS command_kind, command.author AS command_author,
                command.created_at AS command_created_at,
                command.consumed_at AS command_consumed_at,
                command.outcome AS command_outcome
           FROM lease LEFT JOIN command
             ON command.target = $2 AND command.consumed_at IS NULL
          WHERE lease.id = $1 ORDER BY command.id",
    )
    .bind(id.number())
    .bind(id.to_string());
    let joined = c
        .all(select, |row| {
            let command = match row.opt_int("command_id")? {
                Some(_) => Some(rows::command(&Prefixed(row, "command_"))?),
                None => None,
            };
            Ok((rows::lease(row)?, command))
        })
        .await?;
    let mut joined = joined.into_iter();
    let (lease, first) = joined
        .next()
        .ok_or_else(|| Error::NotFound(id.to_string()))?;
    let commands = first
        .into_iter()
        .chain(joined.filter_map(|(_, command)| command))
        .collect();
    Ok((lease, commands))
}

/// Every lease, or those in `status`.
pub(crate) async fn list(c: &mut dyn Conn, status: Option<LeaseStatus>) -> Result<Vec<Lease>> {
    let select =
        query("SELECT * FROM lease WHERE CAST($1 AS TEXT) IS NULL OR status = $1 ORDER BY id")
            .bind(status.map(LeaseStatus::as_str));
    c.all(select, rows::lease).await
}

/// The live leases on a resource.
pub(crate) async fn on_resource(c: &mut dyn Conn, resource: ObjectId) -> Result<Vec<Lease>> {
    let select =
        query("SELECT * FROM lease WHERE resource_id = $1 AND status != 'destroyed' ORDER BY id")
            .bind(resource.number());
    c.all(select, rows::lease).await
}

/// The supporting leases a resource holds, destroyed ones too.
pub(crate) async fn supporting(c: &mut dyn Conn, resource: ObjectId) -> Result<Vec<Lease>> {
    let select = query("SELECT * FROM lease WHERE parent_resource_id = $1 ORDER BY id")
        .bind(resource.number());
    c.all(select, rows::lease).await
}

/// One page of leases under `list`.
pub(crate) async fn page(c: &mut dyn Conn, list: &ListQuery) -> Result<Page<Lease>> {
    page::fetch(c, page::Table::Lease, list, rows::lease, |lease| lease.id).await
}

/// Inserts `count` pending leases of `new`, each queued and logged, unless the owner's
/// waiting leases would pass the blueprint's limit.
pub(crate) async fn insert(
    c: &mut dyn Conn,
    new: &NewLease,
    count: usize,
    now: i64,
) -> Result<Vec<Lease>> {
    if let Some((most, blueprint)) = &new.waiting_limit {
        let select = query(
            "SELECT count(*) AS n FROM lease
              WHERE owner = $1 AND resource_type = $2 AND status IN ('pending', 'acquired')",
        )
        .bind(&new.owner)
        .bind(&new.resource_type);
        let waiting = c.one(select, |row| row.int("n")).await?;
        if waiting as u64 + count as u64 > *most {
            let reason = format!(
                "{} has {waiting} {:?} leases waiting to become active; {count} more would pass \
                 {blueprint}'s limit of {most} per owner (pending-per-owner): wait for some to \
                 become active, or release some",
                new.owner, new.resource_type
            );
            let limit = crate::limits::Limit::PendingPerOwner;
            return Err(apply::limited(blueprint, limit, reason, None));
        }
    }
    let allowed: Vec<i64> = new.allowed_blueprints.iter().map(|b| b.number()).collect();
    let (attributes, allowed) = (json(&new.attributes), json(&allowed));
    let tenant = crate::scheduler::owner_tenant(&new.owner);
    let message = format!("requested by {} for a {}", new.owner, new.resource_type);
    let mut leases = Vec::with_capacity(count);
    for _ in 0..count {
        let insert = query(
            "INSERT INTO lease (resource_type, status, attributes, allowed_blueprints, owner, until,
                                created_at, updated_at)
             VALUES ($1, 'pending', $2, $3, $4, $5, $6, $6) RETURNING *",
        )
        .bind(&new.resource_type)
        .bind(&attributes)
        .bind(&allowed)
        .bind(&new.owner)
        .bind(new.until.map(|t| t as i64))
        .bind(now);
        let lease = c.one(insert, rows::lease).await?;
        work_item::enqueue(c, lease.id, &tenant, now).await?;
        log::add(c, lease.id, "lease.queued", &message, now).await?;
        leases.push(lease);
    }
    Ok(leases)
}

/// Inserts a pending supporting lease of `parent` (a resource of `requester`), one deeper; its
/// number, or `None` if the parent does not exist.
pub(crate) async fn insert_supporting(
    c: &mut dyn Conn,
    parent: ObjectId,
    requester: ObjectId,
    key: &str,
    resource_type: &str,
    attributes: &str,
    now: i64,
) -> Result<Option<i64>> {
    let insert = query(
        "INSERT INTO lease (resource_type, status, attributes, owner, parent_resource_id,
                            parent_key, requester, depth, created_at, updated_at)
         SELECT $1, 'pending', $2, $3, $4, $5, $6, depth + 1, $7, $7
           FROM resource WHERE id = $4
         RETURNING id",
    )
    .bind(resource_type)
    .bind(attributes)
    .bind(parent.to_string())
    .bind(parent.number())
    .bind(key)
    .bind(requester.number())
    .bind(now);
    let id = c.optional(insert, |row| row.int("id")).await?;
    if id.is_some() {
        let count = query("UPDATE resource SET supporting = supporting + 1 WHERE id = $1");
        c.execute(count.bind(parent.number())).await?;
    }
    Ok(id)
}

/// Supporting leases waiting (pending) that resources of `requester` asked for.
pub(crate) async fn supporting_waiting(c: &mut dyn Conn, requester: ObjectId) -> Result<i64> {
    let select =
        query("SELECT count(*) AS n FROM lease WHERE requester = $1 AND status = 'pending'")
            .bind(requester.number());
    c.one(select, |row| row.int("n")).await
}

/// Makes a lease acquired on a resource.
pub(crate) async fn acquire(
    c: &mut dyn Conn,
    lease: ObjectId,
    resource: ObjectId,
    now: i64,
) -> Result<()> {
    let update = query(
        "UPDATE lease SET status = 'acquired', resource_id = $1, acquiring = NULL,
                          waiting = FALSE, updated_at = $2
          WHERE id = $3",
    )
    .bind(resource.number())
    .bind(now)
    .bind(lease.number());
    c.execute(update).await?;
    Ok(())
}

/// Sends an acquired lease back to pending, forgetting its resource and exec results.
pub(crate) async fn reacquire(c: &mut dyn Conn, lease: ObjectId, now: i64) -> Result<()> {
    let update = query(
        "UPDATE lease SET status = 'pending', resource_id = NULL, acquiring = NULL,
                          exec_results = '[]', updated_at = $1
          WHERE id = $2",
    )
    .bind(now)
    .bind(lease.number());
    c.execute(update).await?;
    Ok(())
}

/// Remembers the resource an acquisition is about; exec results of another are forgotten.
pub(crate) async fn set_acquiring(
    c: &mut dyn Conn,
    lease: ObjectId,
    resource: Option<ObjectId>,
) -> Result<()> {
    let update = query(
        "UPDATE lease SET exec_results = CASE WHEN acquiring IS NOT DISTINCT FROM $1
                                              THEN exec_results ELSE '[]' END,
                          acquiring = $1
          WHERE id = $2",
    )
    .bind(resource.map(ObjectId::number))
    .bind(lease.number());
    c.execute(update).await?;
    Ok(())
}

/// Marks a lease as waiting for capacity.
pub(crate) async fn mark_waiting(c: &mut dyn Conn, lease: ObjectId) -> Result<()> {
    let update = query("UPDATE lease SET waiting = TRUE WHERE id = $1").bind(lease.number());
    c.execute(update).await?;
    Ok(())
}

/// Stops the leases waiting for capacity of a type from waiting; their numbers and request
/// times.
pub(crate) async fn take_waiting(c: &mut dyn Conn, resource_type: &str) -> Result<Vec<(i64, i64)>> {
    let update = c.dialect().pick(
        "UPDATE lease SET waiting = 0 WHERE waiting = 1 AND resource_type = $1
         RETURNING id, created_at",
        "UPDATE lease SET waiting = FALSE WHERE waiting AND resource_type = $1
         RETURNING id, created_at",
    );
    let update = query(update).bind(resource_type);
    c.all(update, |row| Ok((row.int("id")?, row.int("created_at")?)))
        .await
}

/// Numbers of the live leases holding a resource.
pub(crate) async fn holders(c: &mut dyn Conn, resource: ObjectId) -> Result<Vec<i64>> {
    let select = c.dialect().pick(
        "SELECT id FROM lease INDEXED BY lease_live_on_resource
          WHERE resource_id = $1 AND status != 'destroyed' ORDER BY id",
        "SELECT id FROM lease WHERE resource_id = $1 AND status <> 'destroyed' ORDER BY id",
    );
    let select = query(select).bind(resource.number());
    c.all(select, |row: &dyn Columns| row.int("id")).await
}
