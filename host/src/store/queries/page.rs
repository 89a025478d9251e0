//! One page of the lease or resource list, newest first, with only the filters asked for in
//! its SQL, so that each can use its index.

use super::super::conn::{Arg, Conn, query};
use super::super::rows::Columns;
use super::super::{ListQuery, ObjectId, Page, Result};

/// The tables listed a page at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `lease`.
    Lease,
    /// `resource`.
    Resource,
}

/// One page of `table` under `list`, rows converted by `row`, the next page after the last
/// item's `id`.
pub(crate) async fn fetch<T: Send>(
    c: &mut dyn Conn,
    table: Table,
    list: &ListQuery,
    row: fn(&dyn Columns) -> Result<T>,
    id: fn(&T) -> ObjectId,
) -> Result<Page<T>> {
    let (sql, args) = select(table, list);
    let mut select = query(sql);
    select.args = args;
    let items = c.all(select, row).await?;
    Ok(paged(items, list.limit, |item| id(item).number()))
}

/// The SELECT of one page of `table` under `list`, one row more than the page holds (it says
/// whether there is a next page), and its arguments in order.
fn select(table: Table, list: &ListQuery) -> (String, Vec<Arg>) {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    let mut when = |condition: &str, arg: Arg| {
        args.push(arg);
        conditions.push(condition.replace('?', &format!("${}", args.len())));
    };
    if let Some(status) = &list.status {
        when("status = ?", Arg::from(status));
    }
    if let Some(resource_type) = &list.resource_type {
        when("resource_type = ?", Arg::from(resource_type));
    }
    if let Some(blueprint) = list.blueprint {
        let condition = match table {
            Table::Lease => "resource_id IN (SELECT id FROM resource WHERE blueprint_id = ?)",
            Table::Resource => "blueprint_id = ?",
        };
        when(condition, Arg::from(blueprint.number()));
    }
    if let (Some(owner), Table::Lease) = (&list.owner, table) {
        when("owner = ?", Arg::from(owner));
    }
    if let Some(before) = list.before {
        when("id < ?", Arg::from(before));
    }
    if list.failed {
        conditions.push("end_kind = 'broken'".to_string());
    }
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conditions.join(" AND ")),
    };
    args.push(Arg::from(i64::from(list.limit) + 1));
    let name = match table {
        Table::Lease => "lease",
        Table::Resource => "resource",
    };
    let sql = format!(
        "SELECT * FROM {name}{filter} ORDER BY id DESC LIMIT ${}",
        args.len()
    );
    (sql, args)
}

/// A page from up to `limit + 1` items: the extra one only says there is a next page.
fn paged<T>(mut items: Vec<T>, limit: u32, number: impl Fn(&T) -> i64) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = more.then(|| items.last().map(number)).flatten();
    Page { items, next }
}
