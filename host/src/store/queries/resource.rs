//! `resource`: what blueprints make, from pending to destroyed.

use super::super::apply::NewResource;
use super::super::conn::{Conn, Dialect, query};
use super::super::{Error, ListQuery, ObjectId, Page, Resource, Result, rows};
use super::page;
use crate::domain::ResourceStatus;
use crate::limits::Setup;

/// A resource.
pub(crate) async fn get(c: &mut dyn Conn, id: ObjectId) -> Result<Resource> {
    let select = query("SELECT * FROM resource WHERE id = $1").bind(id.number());
    c.optional(select, rows::resource)
        .await?
        .ok_or_else(|| Error::NotFound(id.to_string()))
}

/// Every resource, or those in `status`.
pub(crate) async fn list(
    c: &mut dyn Conn,
    status: Option<ResourceStatus>,
) -> Result<Vec<Resource>> {
    let select =
        query("SELECT * FROM resource WHERE CAST($1 AS TEXT) IS NULL OR status = $1 ORDER BY id")
            .bind(status.map(ResourceStatus::as_str));
    c.all(select, rows::resource).await
}

/// The resources of any of `blueprints` that are not destroyed.
pub(crate) async fn live_of_blueprints(
    c: &mut dyn Conn,
    blueprints: &[ObjectId],
) -> Result<Vec<Resource>> {
    let numbers = blueprints.iter().map(|b| b.number().to_string());
    let numbers = numbers.collect::<Vec<_>>().join(",");
    let select = match c.dialect() {
        Dialect::Sqlite => query(
            "SELECT * FROM resource INDEXED BY resource_live_of_blueprint
              WHERE status != 'destroyed' AND blueprint_id IN (SELECT value FROM json_each($1))
              ORDER BY id",
        )
        .bind(format!("[{numbers}]")),
        Dialect::Postgres => query(
            "SELECT * FROM resource
              WHERE status <> 'destroyed' AND blueprint_id = ANY(CAST($1 AS TEXT)::BIGINT[])
              ORDER BY id",
        )
        .bind(format!("{{{numbers}}}")),
    };
    c.all(select, rows::resource).await
}

/// One page of resources under `list`.
pub(crate) async fn page(c: &mut dyn Conn, list: &ListQuery) -> Result<Page<Resource>> {
    let table = page::Table::Resource;
    page::fetch(c, table, list, rows::resource, |resource| resource.id).await
}

/// A blueprint's resources being set up (pending): all of them and those made for leases of
/// `tenant`, with the blueprint's resource bucket.
pub(crate) async fn setup(c: &mut dyn Conn, blueprint: ObjectId, tenant: &str) -> Result<Setup> {
    let select = query(
        "SELECT count(*) AS setting_up, count(*) FILTER (WHERE made_for = $2) AS mine,
                (SELECT resource_tat FROM blueprint WHERE id = $1) AS tat
           FROM resource WHERE blueprint_id = $1 AND status = 'pending'",
    )
    .bind(blueprint.number())
    .bind(tenant);
    let (setting_up, mine, tat) = c
        .one(select, |row| {
            Ok((
                row.int("setting_up")?,
                row.int("mine")?,
                row.opt_int("tat")?,
            ))
        })
        .await?;
    Ok(Setup {
        setting_up: setting_up as u64,
        mine: mine as u64,
        tat: tat.ok_or_else(|| Error::NotFound(blueprint.to_string()))?,
    })
}

/// Inserts a pending resource; its number.
pub(crate) async fn insert(c: &mut dyn Conn, new: &NewResource<'_>, now: i64) -> Result<i64> {
    let insert = query(
        "INSERT INTO resource (blueprint_id, resource_type, status, depth, made_for,
                               made_for_lease, created_at, updated_at)
         VALUES ($1, $2, 'pending', $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(new.blueprint.number())
    .bind(new.resource_type)
    .bind(i64::from(new.depth))
    .bind(new.made_for)
    .bind(new.made_for_lease.map(ObjectId::number))
    .bind(now);
    c.one(insert, |row| row.int("id")).await
}

/// A resource's status, the row locked for update: the transaction is about to change it on
/// what it reads.
pub(crate) async fn lock_status(c: &mut dyn Conn, resource: ObjectId) -> Result<Option<String>> {
    let select = c.dialect().pick(
        "SELECT status FROM resource WHERE id = $1",
        "SELECT status FROM resource WHERE id = $1 FOR UPDATE",
    );
    let select = query(select).bind(resource.number());
    c.optional(select, |row| row.text("status")).await
}
