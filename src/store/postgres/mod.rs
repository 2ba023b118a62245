//! The store on PostgreSQL: one database shared by many `zavro serve` (issue 16), and the commands beside them.
//!
//! This module connects ([`PgStore::connect`]) and keeps the schema current ([`migrate`]); the operations on it
//! are built on [`PgStore::client`].
//!
//! # One audit chain for many servers
//!
//! The audit trail stays one hash chain with consecutive ids however many servers write to it. The table
//! `audit_chain` holds one row: the last id given and its hash. Every transaction that writes audit rows (a
//! server's group, `keys add`/`revoke`, `server-key` changes, `audit prune`) must:
//!
//! 1. first of all, `SELECT last_id, last_hash FROM audit_chain FOR UPDATE`: this waits for any other writer to
//!    commit or roll back, and then reads the head that writer left;
//! 2. read what its checks need (keys, nonces): after the lock, in READ COMMITTED, each statement sees every
//!    transaction committed before, so a revocation or a nonce committed by another server before this writer got
//!    the lock is seen, and none can commit until it is done (they need the lock too);
//! 3. write its rows with ids `last_id + 1, last_id + 2, …`, each `prev_hash` the hash before it;
//! 4. `UPDATE audit_chain SET last_id = …, last_hash = …` and commit, which releases the lock.
//!
//! So writers of the audit trail take turns, one transaction at a time (the server amortises this over a group
//! of requests, as it amortises SQLite's write lock and fsync). Ids are never reused, even after the newest rows
//! are pruned, because `audit_chain` never moves back; and rows become visible in id order, since id N+1 is given
//! only after the transaction holding N committed, so a reader following the trail by id (`audit query --follow`)
//! never skips a row that commits late, as it could with a sequence. The nonces' primary key refuses a replay
//! sent to two servers at once even without the lock.
//!
//! [`ChainWriter`] does steps 1, 3 and 4 for every writer: it holds the head read under the lock, links and hashes
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

mod audit;
mod chain;
pub mod connect;
mod keys;
pub mod migrate;
pub mod pgpass;
mod prune;
mod sealing;
mod statements;
#[cfg(test)]
pub mod test_cluster;
pub mod tls;
pub mod url;
mod verify;

use postgres::Client;

pub use chain::ChainWriter;
pub use statements::Statements;
pub use url::{PgHost, PgUrl, SslMode};

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
mod audit_tests;
#[cfg(test)]
mod tests;
