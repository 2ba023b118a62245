//! The PostgreSQL schema: numbered SQL files in `migrations/`, applied in order, each exactly once.
//!
//! All pending migrations run in one transaction that first takes a transaction-scoped advisory lock, so two
//! servers starting at once on a fresh database take turns: the second finds the schema current and does nothing.
//! The version is the one row of `zavro_schema`; a database at a newer version than this build knows is refused.

use postgres::{Client, GenericClient};

use super::{PgUrl, one_line};
use crate::store::StoreError;

/// The schema, one numbered migration per file, in order; shipped migrations are never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_request_ids.sql"),
];

/// The schema version this build migrates PostgreSQL stores to.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The advisory lock key that serialises migrations ("zavro" in ASCII, then the lock's purpose, 1).
/// Advisory locks are per database, so stores in other databases of the cluster do not wait on each other.
const MIGRATION_LOCK: i64 = 0x7A61_7672_6F00_0001;

/// Brings the schema of `client`'s database to [`SCHEMA_VERSION`] and returns it. Without a zavro schema, creates
/// it when `create`, else fails with [`StoreError::PgMissing`] and leaves the database untouched.
pub fn migrate(client: &mut Client, url: &PgUrl, create: bool) -> Result<usize, StoreError> {
    let query_failed = |e: postgres::Error| StoreError::PgQuery {
        url: url.to_string(),
        reason: one_line(&e),
    };
    let mut tx = client.transaction().map_err(query_failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(query_failed)?;
    let found = match read_version(&mut tx).map_err(query_failed)? {
        Some(version) => version,
        None if create => {
            tx.batch_execute(
                "CREATE TABLE zavro_schema (
                     singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
                     version   BIGINT NOT NULL
                 );
                 INSERT INTO zavro_schema (version) VALUES (0);",
            )
            .map_err(query_failed)?;
            0
        }
        None => return Err(StoreError::PgMissing(url.to_string())),
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::PgTooNew {
            url: url.to_string(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found) {
        let version = index + 1;
        tx.batch_execute(sql).map_err(|e| StoreError::PgMigrate {
            url: url.to_string(),
            version,
            reason: one_line(&e),
        })?;
    }
    if found < SCHEMA_VERSION {
        tx.execute(
            "UPDATE zavro_schema SET version = $1",
            &[&(SCHEMA_VERSION as i64)],
        )
        .map_err(query_failed)?;
    }
    tx.commit().map_err(query_failed)?;
    Ok(SCHEMA_VERSION)
}

/// The schema version of `client`'s database (0 when it has no zavro schema).
pub fn current_version(client: &mut Client, url: &PgUrl) -> Result<usize, StoreError> {
    read_version(client)
        .map(Option::unwrap_or_default)
        .map_err(|e| StoreError::PgQuery {
            url: url.to_string(),
            reason: one_line(&e),
        })
}

/// The version in `zavro_schema`, or `None` when the table does not exist.
fn read_version(client: &mut impl GenericClient) -> Result<Option<usize>, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('zavro_schema') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let version: i64 = client
        .query_one("SELECT version FROM zavro_schema", &[])?
        .try_get(0)?;
    // A negative version is no version this build wrote; treat it as newer than known, so nothing touches it.
    Ok(Some(usize::try_from(version).unwrap_or(usize::MAX)))
}
