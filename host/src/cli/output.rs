//! Printing records as text tables or JSON. Text that came from a blueprint or a user is
//! printed through [`safe`], so it can neither forge lines nor drive the terminal.

use crate::domain::{Attributes, Timestamp};
use serde::Serialize;
use std::borrow::Cow;

/// `text` with control characters written as visible escapes.
pub fn safe(text: &str) -> Cow<'_, str> {
    crate::text::escape(text)
}

/// Prints one JSON document.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A time as RFC 3339 in UTC, to the millisecond.
pub fn time(ms: Timestamp) -> String {
    crate::domain::format_time(ms)
}

/// An optional time, or `-`.
pub fn maybe_time(ms: Option<Timestamp>) -> String {
    ms.map(time).unwrap_or_else(|| "-".into())
}

/// How an object ended (`released by cli:alice`, `broken: …`), or `-` while it is live.
pub fn end(end: Option<&crate::store::End>) -> String {
    end.map_or_else(|| "-".into(), |end| end.to_string())
}

/// Says on stderr how to get the next page, when there is one.
pub fn next_page(next: Option<crate::store::ObjectId>) {
    if let Some(next) = next {
        eprintln!("more: add --before {next} for the next page");
    }
}

/// `k=v, k=v`, or `-`.
pub fn attributes(attributes: &Attributes) -> String {
    if attributes.is_empty() {
        return "-".into();
    }
    attributes
        .iter()
        .map(|(k, v)| format!("{}={}", safe(k), safe(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints rows under a header, with columns padded to fit; cells are made [`safe`].
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| safe(cell).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}
