//! The store on PostgreSQL: one database shared by many `zavro serve` (issue 16), and the commands beside them.
//!
//! This module connects ([`PgStore::connect`]), keeps the schema current ([`migrate`]), and replaces a connection
//! that broke ([`PgStore::ensure_connected`], with back-off); `keys` is the [`KeyStore`](super::KeyStore) the key
//! commands use, `requests` the [`RequestStore`](super::RequestStore) a server commits its groups to.
//!
//! # One audit chain for many servers
//!
//! The audit trail stays one hash chain with consecutive ids however many servers write to it. The table
//! `audit_chain` holds one row: the last id given and its hash. Every transaction that writes audit rows (a
//! server's group, `keys add`/`revoke`, `server-key` changes, `audit prune`, `store copy`):
//!
//! 1. reads what it decides on (keys, nonces) with plain reads, in READ COMMITTED: each statement sees every
//!    transaction committed before it;
//! 2. at its first write, takes the lock: `SELECT last_id, last_hash FROM audit_chain FOR UPDATE` waits for any
//!    other writer to commit or roll back, then reads the head that writer left;
//! 3. writes its rows with ids `last_id + 1, last_id + 2, …`, each `prev_hash` the hash before it;
//! 4. `UPDATE audit_chain SET last_id = …, last_hash = …` and commits, which releases the lock.
//!
//! The lock is taken at the write, not first, so that a server's checks (signatures, Avro decoding: the CPU work
//! of a group) run while other servers commit; writers take turns only for their writes and commit. What was read
//! before the lock may have changed by then, and each writer deals with that where it matters: a command simply
//! takes the lock first (it has no work worth overlapping); a server's group writes its nonces with
//! `ON CONFLICT DO NOTHING RETURNING`, so a nonce another server committed in between is found, the group rolled
//! back as [`StoreError::Raced`] and checked again (`requests`). A key revoked in between is in force from the
//! next group, as the guarantee says. Ids are never reused, even after the newest rows are pruned, because
//! `audit_chain` never moves back; and rows become visible in id order, since id N+1 is given only after the
//! transaction holding N committed, so a reader following the trail by id (`audit query --follow`) never skips a
//! row that commits late, as it could with a sequence.
//!
//! [`ChainWriter`] does steps 2 to 4 for every writer: it holds the head read under the lock, links and hashes
//! rows in memory as they are appended (the hash every backend computes, `AuditEntry::chained`), and writes them
//! with one statement per table.
//!
//! # Secrets
//!
//! Always sealed under the master key (`sealing`): the database alone yields no usable secret. The key's
//! fingerprint is recorded with the first secret sealed; a process given another key is refused at once.
//!
//! `audit.server` names the server that wrote a row (NULL for local actions), so a shared trail says who
//! answered each request.
//!
//! # Schema
//!
//! Numbered SQL files in `migrations/`, applied by [`migrate`] in one transaction under an advisory lock; the
//! version is kept in `zavro_schema`.

mod chain;
pub mod connect;
mod keys;
pub mod migrate;
pub mod pgpass;
mod reconnect;
mod requests;
mod sealing;
mod statements;
#[cfg(test)]
pub mod test_cluster;
pub mod tls;
pub mod url;

use std::collections::HashMap;

use postgres::Client;

pub use chain::ChainWriter;
pub use requests::PgGroup;
pub use statements::Statements;
pub use url::{ChannelBinding, PgHost, PgUrl, SslMode};

use super::StoreError;
use crate::sealed::MasterKey;

/// An open PostgreSQL store: a connection to a database whose zavro schema is current.
pub struct PgStore {
    client: Client,
    url: PgUrl,
    /// The statements prepared on `client`.
    statements: Statements,
    /// The master key secrets are sealed and opened with, once given ([`PgStore::use_master_key`]).
    master: Option<MasterKey>,
    /// Ids of the `schemas` rows this process has seen committed, by fingerprint.
    schema_ids: HashMap<String, i64>,
    /// When a broken connection may next be replaced, and how long the pause after that is.
    backoff: reconnect::Backoff,
}

impl PgStore {
    /// Connects and brings the schema up to date; a database without a zavro schema is
    /// [`StoreError::PgMissing`], as a missing SQLite file is [`StoreError::Missing`].
    pub fn connect(url: &PgUrl) -> Result<PgStore, StoreError> {
        Self::open(url, false)
    }

    /// Connects, creating the schema in a database that has none (for `keys add`), or bringing it up to date.
    pub fn connect_or_create(url: &PgUrl) -> Result<PgStore, StoreError> {
        Self::open(url, true)
    }

    /// As [`PgStore::connect`] or [`PgStore::connect_or_create`], with the password file given (`None`: none)
    /// instead of `PGPASSFILE` or `~/.pgpass`.
    pub fn connect_with_passfile(
        url: &PgUrl,
        passfile: Option<&std::path::Path>,
        create: bool,
    ) -> Result<PgStore, StoreError> {
        let mut client = connect::connect_with_passfile(url, passfile)?;
        migrate::migrate(&mut client, url, create)?;
        Ok(PgStore {
            client,
            url: url.clone(),
            statements: Statements::default(),
            master: None,
            schema_ids: HashMap::new(),
            backoff: reconnect::Backoff::default(),
        })
    }

    fn open(url: &PgUrl, create: bool) -> Result<PgStore, StoreError> {
        let mut client = connect::connect_client(url)?;
        migrate::migrate(&mut client, url, create)?;
        Ok(PgStore {
            client,
            url: url.clone(),
            statements: Statements::default(),
            master: None,
            schema_ids: HashMap::new(),
            backoff: reconnect::Backoff::default(),
        })
    }

    /// The database this store is connected to (its `Display` has no password).
    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    /// The connection, for the store's operations.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The schema version of the database.
    pub fn schema_version(&mut self) -> Result<usize, StoreError> {
        migrate::current_version(&mut self.client, &self.url)
    }
}

/// An error and its causes as one line (a server error's DETAIL and HINT lines joined with `; `), for messages.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
pub(crate) mod tests;
