//! `slot_lock`: named locks a resource or lease holds while it lives.

use super::super::conn::{Conn, query};
use super::super::{ObjectId, Result, SlotLock, rows};

/// Takes the lock `name` for `owner` if it is free; its holder (`owner` if it took it).
pub(crate) async fn take(
    c: &mut dyn Conn,
    name: &str,
    owner: ObjectId,
    now: i64,
) -> Result<String> {
    let insert = query(
        "INSERT INTO slot_lock (name, owner, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET name = slot_lock.name
         RETURNING owner",
    );
    let insert = insert.bind(name).bind(owner.to_string()).bind(now);
    c.one(insert, |row| row.text("owner")).await
}

/// Frees every lock `owner` holds.
pub(crate) async fn free(c: &mut dyn Conn, owner: ObjectId) -> Result<()> {
    let delete = query("DELETE FROM slot_lock WHERE owner = $1").bind(owner.to_string());
    c.execute(delete).await?;
    Ok(())
}

/// The locks held, by `owner` if given, by name.
pub(crate) async fn list(c: &mut dyn Conn, owner: Option<ObjectId>) -> Result<Vec<SlotLock>> {
    let select = match owner {
        Some(owner) => {
            query("SELECT * FROM slot_lock WHERE owner = $1 ORDER BY name").bind(owner.to_string())
        }
        None => query("SELECT * FROM slot_lock ORDER BY name"),
    };
    c.all(select, rows::slot_lock).await
}
