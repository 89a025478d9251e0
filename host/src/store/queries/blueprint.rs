//! `blueprint`: the plugins that make resources, their grants, limits and failure streaks.
//! Every change to a blueprint is logged on it in the same transaction.

use super::super::conn::{Conn, query};
use super::super::rows::{self, json};
use super::super::{
    Blueprint, BlueprintSwitch, BlueprintUpdate, Error, Kept, NewBlueprint, ObjectId, Result,
};
use super::{capacity, component, log};
use crate::grant::{Grant, GrantChange};
use crate::limits::{Change, Limits};

/// Stores a new blueprint (and its component, unless stored already); a taken name is a
/// conflict.
pub(crate) async fn insert(c: &mut dyn Conn, new: &NewBlueprint, now: i64) -> Result<Blueprint> {
    component::insert(c, &new.digest, &new.wasm, now).await?;
    let insert = query(
        "INSERT INTO blueprint (name, component, component_name, resource_type, config, grants,
                                created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO NOTHING RETURNING *",
    )
    .bind(&new.name)
    .bind(&new.digest)
    .bind(&new.component_name)
    .bind(&new.resource_type)
    .bind(&new.config)
    .bind(json(&new.grants))
    .bind(now);
    let blueprint = c.optional(insert, rows::blueprint).await?.ok_or_else(|| {
        Error::Conflict(format!("a blueprint named {:?} already exists", new.name))
    })?;
    let message = format!(
        "added {:?} with grants [{}]",
        new.name,
        grant_list(&new.grants)
    );
    log::add(c, blueprint.id, "blueprint.added", &message, now).await?;
    Ok(blueprint)
}

/// A blueprint.
pub(crate) async fn get(c: &mut dyn Conn, id: ObjectId) -> Result<Blueprint> {
    let select = query("SELECT * FROM blueprint WHERE id = $1").bind(id.number());
    c.optional(select, rows::blueprint)
        .await?
        .ok_or_else(|| Error::NotFound(id.to_string()))
}

/// The blueprint named `name`.
pub(crate) async fn by_name(c: &mut dyn Conn, name: &str) -> Result<Blueprint> {
    let select = query("SELECT * FROM blueprint WHERE name = $1").bind(name);
    c.optional(select, rows::blueprint)
        .await?
        .ok_or_else(|| Error::NotFound(format!("blueprint {name:?}")))
}

/// Every blueprint, oldest first.
pub(crate) async fn list(c: &mut dyn Conn) -> Result<Vec<Blueprint>> {
    c.all(
        query("SELECT * FROM blueprint ORDER BY id"),
        rows::blueprint,
    )
    .await
}

/// A blueprint, locked until the transaction ends: what a change computed from it starts
/// from.
pub(crate) async fn lock(c: &mut dyn Conn, id: ObjectId) -> Result<Blueprint> {
    let select = c.dialect().pick(
        "SELECT * FROM blueprint WHERE id = $1",
        "SELECT * FROM blueprint WHERE id = $1 FOR UPDATE",
    );
    c.optional(query(select).bind(id.number()), rows::blueprint)
        .await?
        .ok_or_else(|| Error::NotFound(id.to_string()))
}

/// Enables or disables a blueprint, or ends its back-off (`switch`).
pub(crate) async fn switch(
    c: &mut dyn Conn,
    id: ObjectId,
    switch: BlueprintSwitch,
    now: i64,
) -> Result<Blueprint> {
    let before = lock(c, id).await?;
    let clears = switch.clears_back_off();
    let update = query(
        "UPDATE blueprint SET enabled = COALESCE($1, enabled),
                failures = CASE WHEN $2 THEN 0 ELSE failures END,
                retry_at = CASE WHEN $2 THEN NULL ELSE retry_at END,
                last_failure = CASE WHEN $2 THEN NULL ELSE last_failure END
          WHERE id = $3 RETURNING *",
    )
    .bind(switch.enabled())
    .bind(clears)
    .bind(id.number());
    let switched = c.one(update, rows::blueprint).await?;
    log::add(c, id, switch.log_kind(), &switch.message(&before), now).await?;
    if clears {
        // Leases waiting while it backed off may be served at once.
        capacity::changed(c, &before.resource_type).await?;
    }
    Ok(switched)
}

/// Grants or revokes host capabilities, as `author`.
pub(crate) async fn change_grants(
    c: &mut dyn Conn,
    id: ObjectId,
    change: &GrantChange,
    author: &str,
    now: i64,
) -> Result<Blueprint> {
    let before = lock(c, id).await?;
    let grants = change.apply(&before.grants).map_err(|missing| {
        Error::Precondition(format!("{} has no grant {missing} to revoke", before.name))
    })?;
    let update = query("UPDATE blueprint SET grants = $1 WHERE id = $2 RETURNING *")
        .bind(json(&grants))
        .bind(id.number());
    let changed = c.one(update, rows::blueprint).await?;
    let message = format!(
        "grants changed by {author} from [{}] to [{}]",
        grant_list(&before.grants),
        grant_list(&grants)
    );
    log::add(c, id, "blueprint.grants", &message, now).await?;
    Ok(changed)
}

/// Changes limits, as `author`; the resource bucket starts full again.
pub(crate) async fn change_limits(
    c: &mut dyn Conn,
    id: ObjectId,
    changes: &[Change],
    author: &str,
    now: i64,
) -> Result<Blueprint> {
    let before = lock(c, id).await?;
    let mut limits = before.limits.clone();
    limits.apply(changes);
    let update =
        query("UPDATE blueprint SET limits = $1, resource_tat = 0 WHERE id = $2 RETURNING *")
            .bind(json(&limits))
            .bind(id.number());
    let changed = c.one(update, rows::blueprint).await?;
    let shown = |limits: &Limits| match limits.overrides() {
        set if set.is_empty() => "the defaults".to_string(),
        set => format!("[{}]", set.join(", ")),
    };
    let message = format!(
        "limits changed by {author} from {} to {}",
        shown(&before.limits),
        shown(&limits)
    );
    log::add(c, id, "blueprint.limits", &message, now).await?;
    // Leases waiting on a limit that was raised may be served at once.
    capacity::changed(c, &before.resource_type).await?;
    Ok(changed)
}

/// Replaces the component and config, as `author`, if the blueprint is still at the version
/// the update was prepared from.
pub(crate) async fn update(
    c: &mut dyn Conn,
    id: ObjectId,
    update: &BlueprintUpdate,
    author: &str,
    now: i64,
) -> Result<Blueprint> {
    let before = lock(c, id).await?;
    if before.version != update.from_version {
        return Err(Error::Superseded {
            blueprint: id,
            from: update.from_version,
            current: before.version,
        });
    }
    if let Some(wasm) = &update.wasm {
        component::insert(c, &update.digest, wasm, now).await?;
    }
    let change = query(
        "UPDATE blueprint SET component = $1, component_name = $2, config = $3,
                              version = version + 1,
                              failures = 0, retry_at = NULL, last_failure = NULL
          WHERE id = $4 RETURNING *",
    )
    .bind(&update.digest)
    .bind(&update.component_name)
    .bind(&update.config)
    .bind(id.number());
    let updated = c.one(change, rows::blueprint).await?;
    let message = update_message(&before, update, author);
    log::add(c, id, "blueprint.updated", &message, now).await?;
    // The new component or config may serve leases that were waiting.
    capacity::changed(c, &before.resource_type).await?;
    Ok(updated)
}

/// Adds what blueprints' logs and steps kept since the last count to their totals.
pub(crate) async fn add_kept(c: &mut dyn Conn, kept: &[(ObjectId, Kept)]) -> Result<()> {
    for (blueprint, kept) in kept {
        let update = query(
            "UPDATE blueprint SET log_bytes = log_bytes + $1, step_bytes = step_bytes + $2
              WHERE id = $3",
        )
        .bind(kept.log)
        .bind(kept.steps)
        .bind(blueprint.number());
        c.execute(update).await?;
    }
    Ok(())
}

/// A blueprint's name and its resource bucket (`limits::Rate`: the time, in µs, at which it is
/// full again), the row locked until the transaction ends.
pub(crate) async fn lock_bucket(c: &mut dyn Conn, blueprint: ObjectId) -> Result<(String, i64)> {
    let select = c.dialect().pick(
        "SELECT name, resource_tat FROM blueprint WHERE id = $1",
        "SELECT name, resource_tat FROM blueprint WHERE id = $1 FOR UPDATE",
    );
    let select = query(select).bind(blueprint.number());
    c.optional(select, |row| {
        Ok((row.text("name")?, row.int("resource_tat")?))
    })
    .await?
    .ok_or_else(|| Error::NotFound(blueprint.to_string()))
}

/// Stores a blueprint's resource bucket.
pub(crate) async fn set_bucket(c: &mut dyn Conn, blueprint: ObjectId, tat: i64) -> Result<()> {
    let update = query("UPDATE blueprint SET resource_tat = $1 WHERE id = $2")
        .bind(tat)
        .bind(blueprint.number());
    c.execute(update).await?;
    Ok(())
}

/// A blueprint's failures in a row, the row locked until the transaction ends.
pub(crate) async fn failures(c: &mut dyn Conn, blueprint: ObjectId) -> Result<i64> {
    let select = c.dialect().pick(
        "SELECT failures FROM blueprint WHERE id = $1",
        "SELECT failures FROM blueprint WHERE id = $1 FOR UPDATE",
    );
    let select = query(select).bind(blueprint.number());
    c.optional(select, |row| row.int("failures"))
        .await?
        .ok_or_else(|| Error::NotFound(blueprint.to_string()))
}

/// Adds a failure to a blueprint's streak; the streak's length.
pub(crate) async fn add_failure(
    c: &mut dyn Conn,
    blueprint: ObjectId,
    reason: &str,
    retry_at: i64,
) -> Result<i64> {
    let update = query(
        "UPDATE blueprint SET failures = failures + 1, retry_at = $1, last_failure = $2
          WHERE id = $3 RETURNING failures",
    )
    .bind(retry_at)
    .bind(reason)
    .bind(blueprint.number());
    c.one(update, |row| row.int("failures")).await
}

/// Ends a blueprint's failure streak.
pub(crate) async fn clear_failures(c: &mut dyn Conn, blueprint: ObjectId) -> Result<()> {
    let update = query(
        "UPDATE blueprint SET failures = 0, retry_at = NULL, last_failure = NULL WHERE id = $1",
    );
    c.execute(update.bind(blueprint.number())).await?;
    Ok(())
}

/// What `blueprint update` changed, for the blueprint's log.
fn update_message(before: &Blueprint, update: &BlueprintUpdate, author: &str) -> String {
    let short = |digest: &str| digest.chars().take(12).collect::<String>();
    let mut changes = Vec::new();
    if before.component != update.digest {
        changes.push(format!(
            "component {} ({}) → {} ({})",
            short(&before.component),
            before.component_name,
            short(&update.digest),
            update.component_name
        ));
    }
    if before.config != update.config {
        let clip = |config: &str| match config.char_indices().nth(200) {
            Some((end, _)) => format!("{}…", &config[..end]),
            None => config.to_string(),
        };
        changes.push(format!(
            "config {} → {}",
            clip(&before.config),
            clip(&update.config)
        ));
    }
    if changes.is_empty() {
        changes.push("nothing changed".into());
    }
    format!(
        "updated by {author} to version {}: {}",
        before.version + 1,
        changes.join("; ")
    )
}

/// Grants as one line for log messages.
fn grant_list(grants: &[Grant]) -> String {
    grants
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
