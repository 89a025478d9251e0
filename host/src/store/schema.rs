//! Schema versions: a daemon refuses a database that a newer Drydock migrated, naming the
//! versions it does not know, rather than misread tables it has never seen; and only an open
//! that may migrate ([`Access::Migrate`]) upgrades an older one, so that a CLI of a newer
//! build never changes the schema under a running daemon.

use super::{Access, Error, Result};
use sqlx::migrate::Migrator;

/// Whether opening with `access` must apply migrations to a database that records `applied`
/// (version and description of each): refuses a schema newer than `known`, and one older
/// than it that `access` may not upgrade, naming the command that does.
pub(crate) fn must_migrate(
    access: Access,
    applied: &[(i64, String)],
    known: &Migrator,
) -> Result<bool> {
    refuse_newer(applied, known)?;
    let missing: Vec<String> = known
        .iter()
        .filter(|m| !applied.iter().any(|(version, _)| *version == m.version))
        .map(|m| format!("{} ({})", m.version, m.description))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    match (access, applied.is_empty()) {
        (Access::Migrate, _) | (Access::Setup, true) => Ok(true),
        (Access::Read | Access::Write, true) => Err(Error::SchemaTooOld(
            "the database has no Drydock tables yet; `drydock migrate`, `drydock serve` or \
             `drydock blueprint add` creates them"
                .into(),
        )),
        (Access::Read | Access::Write | Access::Setup, false) => Err(Error::SchemaTooOld(format!(
            "the database's schema is older than this drydock: it lacks migration {}; run \
             `drydock migrate` (or start this version's `drydock serve`) to upgrade it",
            missing.join(", ")
        ))),
    }
}

/// Refuses when `applied` (version and description of every migration the database records)
/// holds a version that `known` does not.
fn refuse_newer(applied: &[(i64, String)], known: &Migrator) -> Result<()> {
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
            error.contains("99 (from the future)")
                && error.contains(&format!("up to {}", ours.last().unwrap().0)),
            "{error}"
        );
    }

    #[test]
    fn only_a_migrating_open_upgrades_and_only_setup_creates() {
        let known = sqlx::migrate!("./migrations/sqlite");
        let ours: Vec<(i64, String)> = known
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        let older = &ours[..ours.len() - 1];
        for access in [Access::Read, Access::Write, Access::Setup, Access::Migrate] {
            assert!(!must_migrate(access, &ours, &known).unwrap(), "{access:?}");
        }
        assert!(must_migrate(Access::Migrate, older, &known).unwrap());
        assert!(must_migrate(Access::Migrate, &[], &known).unwrap());
        assert!(must_migrate(Access::Setup, &[], &known).unwrap());
        for access in [Access::Read, Access::Write, Access::Setup] {
            let error = must_migrate(access, older, &known).unwrap_err().to_string();
            assert!(
                error.contains("older than this drydock") && error.contains("`drydock migrate`"),
                "{error}"
            );
        }
        for access in [Access::Read, Access::Write] {
            let error = must_migrate(access, &[], &known).unwrap_err().to_string();
            assert!(error.contains("no Drydock tables"), "{error}");
        }
    }
}
