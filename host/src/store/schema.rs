//! Schema versions: a daemon refuses a database that a newer Drydock migrated, naming the
//! versions it does not know, rather than misread tables it has never seen.

use super::{Error, Result};
use sqlx::migrate::Migrator;

/// Refuses when `applied` (version and description of every migration the database records)
/// holds a version that `known` does not.
pub(crate) fn refuse_newer(applied: &[(i64, String)], known: &Migrator) -> Result<()> {
    let unknown: Vec<String> = applied
        .iter()
        .filter(|(version, _)| !known.iter().any(|m| m.version == *version))
        .map(|(version, description)| format!("{version} ({description})"))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let newest = known.iter().map(|m| m.version).max().unwrap_or(0);
    Err(Error::SchemaTooNew(format!(
        "the database's schema is newer than this drydock: it has migration {} that this build \
         does not know (it knows versions up to {newest}); run the newer drydock that migrated \
         it, or restore a backup",
        unknown.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_history_passes_and_a_newer_one_is_named() {
        let known = sqlx::migrate!("./migrations/sqlite");
        let ours: Vec<(i64, String)> = known
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        refuse_newer(&ours, &known).unwrap();
        refuse_newer(&ours[..1], &known).unwrap();
        let mut newer = ours.clone();
        newer.push((99, "from the future".into()));
        let error = refuse_newer(&newer, &known).unwrap_err().to_string();
        assert!(
            error.contains("99 (from the future)") && error.contains("up to 4"),
            "{error}"
        );
    }
}
