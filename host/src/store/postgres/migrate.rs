//! PostgreSQL's schema migrations (`host/migrations/postgres`, run by `sqlx::migrate!`), on the
//! one line both backends share: version N is the same change on SQLite and on PostgreSQL.
//!
//! Before the line was one, PostgreSQL's numbers skipped SQLite's second migration ("liveness
//! and grants", which PostgreSQL's first schema already held): a database migrated then records
//! "ends and steps" as version 2 and every later migration one lower than today. A migrating
//! open renumbers such a history in place, under a lock so that daemons starting together do it
//! once; any other open reads it as renumbered, since the tables are the same.

use super::super::{Access, Result, schema};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnection;
use sqlx::{Acquire as _, Executor as _};

/// This build's migrations.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The first migration numbered differently before the line was one: the one version 2 named.
const FIRST_RENUMBERED: &str = "ends and steps";

/// Applies the migrations not yet applied, when `access` may (`schema::must_migrate`): an
/// up-to-date schema is checked without a lock (every CLI run opens the store). sqlx holds an
/// advisory lock while it migrates, so daemons starting together migrate once; a database
/// with a migration this build does not know is refused first.
pub(super) async fn migrate(conn: &mut PgConnection, access: Access) -> Result<()> {
    let recorded: Vec<(i64, String)> =
        match sqlx::query_as("SELECT version, description FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await
        {
            Ok(recorded) => recorded,
            // undefined_table: a new database
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(error) => return Err(error.into()),
        };
    let applied = on_one_line(recorded);
    if applied.renumbered && access == Access::Migrate {
        renumber(conn).await?;
    }
    if schema::must_migrate(access, &applied.versions, &MIGRATOR)? {
        // `run` on a `&mut PgConnection` makes the future not `Send` (sqlx's `Acquire` is
        // not general enough); `run_direct` is what it calls.
        MIGRATOR.run_direct(None, conn, false).await?;
    }
    Ok(())
}

/// A database's migration history, as the one line numbers it.
#[derive(Debug, PartialEq)]
struct Applied {
    /// Version and description of each applied migration.
    versions: Vec<(i64, String)>,
    /// Whether the history was recorded with the old numbers (and was renumbered here).
    renumbered: bool,
}

/// `recorded` (version and description of each migration a database records) on the one line.
fn on_one_line(recorded: Vec<(i64, String)>) -> Applied {
    let old = recorded
        .iter()
        .any(|(version, description)| *version == 2 && description == FIRST_RENUMBERED);
    if !old {
        return Applied {
            versions: recorded,
            renumbered: false,
        };
    }
    let mut versions: Vec<(i64, String)> = recorded
        .into_iter()
        .map(|(version, description)| match version {
            1 => (version, description),
            _ => (version + 1, description),
        })
        .collect();
    versions.push((2, skipped().description.to_string()));
    versions.sort();
    Applied {
        versions,
        renumbered: true,
    }
}

/// The migration the old numbers skipped.
fn skipped() -> &'static sqlx::migrate::Migration {
    MIGRATOR
        .iter()
        .find(|m| m.version == 2)
        .expect("migration 2 is built in")
}

/// Rewrites an old history to the one line's numbers in one transaction, holding the history
/// table against every other writer: whoever comes second finds it renumbered already.
async fn renumber(conn: &mut PgConnection) -> Result<()> {
    let mut tx = conn.begin().await?;
    tx.execute("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .await?;
    let second: Option<String> =
        sqlx::query_scalar("SELECT description FROM _sqlx_migrations WHERE version = 2")
            .fetch_optional(&mut *tx)
            .await?;
    if second.as_deref() == Some(FIRST_RENUMBERED) {
        // Through negative numbers: the versions are a primary key.
        tx.execute(
            "UPDATE _sqlx_migrations SET version = -(version + 1) WHERE version >= 2;
             UPDATE _sqlx_migrations SET version = -version WHERE version < 0",
        )
        .await?;
        let skipped = skipped();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, $2, TRUE, $3, 0)",
        )
        .bind(skipped.version)
        .bind(skipped.description.as_ref())
        .bind(skipped.checksum.as_ref())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(i64, &str)]) -> Vec<(i64, String)> {
        entries.iter().map(|(v, d)| (*v, d.to_string())).collect()
    }

    #[test]
    fn an_old_history_is_read_on_the_one_line() {
        let old = history(&[(1, "init"), (2, "ends and steps"), (3, "supporting count")]);
        let applied = on_one_line(old);
        assert!(applied.renumbered);
        assert_eq!(
            applied.versions,
            history(&[
                (1, "init"),
                (2, "liveness and grants"),
                (3, "ends and steps"),
                (4, "supporting count")
            ])
        );
    }

    #[test]
    fn a_history_on_the_one_line_is_left_as_it_is() {
        for recorded in [
            history(&[]),
            history(&[(1, "init")]),
            history(&[
                (1, "init"),
                (2, "liveness and grants"),
                (3, "ends and steps"),
            ]),
        ] {
            let applied = on_one_line(recorded.clone());
            assert_eq!(
                applied,
                Applied {
                    versions: recorded,
                    renumbered: false
                }
            );
        }
    }

    #[test]
    fn both_backends_number_their_migrations_on_one_line() {
        let line = |migrator: &Migrator| -> Vec<(i64, String)> {
            migrator
                .iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let sqlite = sqlx::migrate!("./migrations/sqlite");
        assert_eq!(line(&MIGRATOR), line(&sqlite));
        assert_eq!(skipped().description, "liveness and grants");
    }
}
