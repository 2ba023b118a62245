//! Appending to the one audit chain on PostgreSQL (the protocol in `postgres/mod.rs`): lock the `audit_chain`
//! row, give the new rows the next ids and chain their hashes in memory ([`AuditEntry::chained`], the encoding
//! every backend shares, so a row hashes as it would in SQLite), then write them all with one statement per table
//! and move the head forward, in the transaction that holds the lock.

use postgres::GenericClient;

use super::statements::Statements;
use crate::store::{AuditEntry, chain};

/// Locks the chain's head until the transaction ends: every writer of audit rows waits here for the one before.
const LOCK_HEAD: &str = "SELECT last_id, last_hash FROM audit_chain FOR UPDATE";

/// Moves the head forward; only ever to ids past the ones it had.
const SAVE_HEAD: &str = "UPDATE audit_chain SET last_id = $1, last_hash = $2";

/// Every new row of a transaction in one statement: one array per column, unnested into rows.
const INSERT_ROWS: &str = "INSERT INTO audit (id, time_us, action, status, reason, detail, key_id, peer, records, size,
                               payload_sha256, schema_id, prev_hash, hash, requests, transport, server)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                          $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::bigint[], $13::text[],
                          $14::text[], $15::bigint[], $16::text[], $17::text[])";

/// Every new payload of a transaction in one statement.
const INSERT_PAYLOADS: &str =
    "INSERT INTO payloads (audit_id, json) SELECT * FROM unnest($1::bigint[], $2::text[])";

/// The audit rows of one transaction that holds the chain's lock: linked and hashed as they are appended,
/// written by [`ChainWriter::write`]. Dropped unwritten, nothing of it is kept (and the ids it gave are given
/// again, since the head did not move).
#[derive(Debug)]
pub struct ChainWriter {
    /// The id of the last row appended (or of the head, before any).
    last_id: i64,
    /// The hash of that row.
    last_hash: String,
    /// The rows appended, in id order.
    rows: Vec<PendingRow>,
}

/// An audit row, linked and hashed, not yet written.
#[derive(Debug)]
struct PendingRow {
    id: i64,
    time_us: i64,
    action: String,
    status: &'static str,
    reason: Option<String>,
    detail: Option<String>,
    key_id: Option<String>,
    peer: Option<String>,
    records: i64,
    size: i64,
    payload_sha256: Option<String>,
    schema_id: Option<i64>,
    prev_hash: String,
    hash: String,
    requests: i64,
    transport: Option<String>,
    server: Option<String>,
    payload: Option<String>,
}

impl ChainWriter {
    /// Takes the chain's lock (waiting for any other writer to commit or roll back) and reads the head it
    /// left. The lock is held until `client`'s transaction ends; outside one, it would be released at once.
    pub fn lock(
        client: &mut impl GenericClient,
        statements: &mut Statements,
    ) -> Result<ChainWriter, postgres::Error> {
        let lock = statements.get(client, LOCK_HEAD)?;
        let head = client.query_one(&lock, &[])?;
        Ok(ChainWriter {
            last_id: head.try_get(0)?,
            last_hash: head.try_get(1)?,
            rows: Vec::new(),
        })
    }

    /// Appends `entry` as the next row (with its payload, if any) and returns its id. `schema_id` is the
    /// `schemas` row of `entry.schema`.
    pub fn append(
        &mut self,
        entry: &AuditEntry,
        schema_id: Option<i64>,
        payload: Option<&str>,
    ) -> i64 {
        debug_assert_eq!(schema_id.is_some(), entry.schema.is_some());
        let id = self.last_id + 1;
        let payload_sha256 = payload.map(chain::payload_sha256);
        let hash = entry
            .chained(id, payload_sha256.as_deref())
            .hash(&self.last_hash);
        let prev_hash = std::mem::replace(&mut self.last_hash, hash.clone());
        self.last_id = id;
        let owned = |text: Option<&str>| text.map(str::to_owned);
        self.rows.push(PendingRow {
            id,
            time_us: entry.time_us,
            action: entry.action.to_owned(),
            status: entry.status.as_str(),
            reason: owned(entry.reason),
            detail: owned(entry.detail),
            key_id: owned(entry.key_id),
            peer: owned(entry.peer),
            records: i64::try_from(entry.records).unwrap_or(i64::MAX),
            size: i64::try_from(entry.size).unwrap_or(i64::MAX),
            payload_sha256,
            schema_id,
            prev_hash,
            hash,
            requests: i64::try_from(entry.requests).unwrap_or(i64::MAX),
            transport: owned(entry.transport),
            server: owned(entry.server),
            payload: owned(payload),
        });
        id
    }

    /// The id the next appended row gets.
    pub fn next_id(&self) -> i64 {
        self.last_id + 1
    }

    /// True when nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the appended rows and their payloads, and moves the head to the last of them: three statements
    /// however many rows (two without payloads, none without rows). The caller then commits.
    pub fn write(
        self,
        client: &mut impl GenericClient,
        statements: &mut Statements,
    ) -> Result<(), postgres::Error> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = &self.rows;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let column = |get: fn(&PendingRow) -> Option<&str>| -> Vec<Option<&str>> {
            rows.iter().map(get).collect()
        };
        let number = |get: fn(&PendingRow) -> i64| -> Vec<i64> { rows.iter().map(get).collect() };
        let time_us = number(|r| r.time_us);
        let action = column(|r| Some(&r.action));
        let status = column(|r| Some(r.status));
        let reason = column(|r| r.reason.as_deref());
        let detail = column(|r| r.detail.as_deref());
        let key_id = column(|r| r.key_id.as_deref());
        let peer = column(|r| r.peer.as_deref());
        let records = number(|r| r.records);
        let size = number(|r| r.size);
        let payload_sha256 = column(|r| r.payload_sha256.as_deref());
        let schema_id: Vec<Option<i64>> = rows.iter().map(|r| r.schema_id).collect();
        let prev_hash = column(|r| Some(&r.prev_hash));
        let hash = column(|r| Some(&r.hash));
        let requests = number(|r| r.requests);
        let transport = column(|r| r.transport.as_deref());
        let server = column(|r| r.server.as_deref());
        let insert = statements.get(client, INSERT_ROWS)?;
        client.execute(
            &insert,
            &[
                &ids,
                &time_us,
                &action,
                &status,
                &reason,
                &detail,
                &key_id,
                &peer,
                &records,
                &size,
                &payload_sha256,
                &schema_id,
                &prev_hash,
                &hash,
                &requests,
                &transport,
                &server,
            ],
        )?;
        let (payload_ids, payloads): (Vec<i64>, Vec<&str>) = rows
            .iter()
            .filter_map(|r| Some((r.id, r.payload.as_deref()?)))
            .unzip();
        if !payloads.is_empty() {
            let insert = statements.get(client, INSERT_PAYLOADS)?;
            client.execute(&insert, &[&payload_ids, &payloads])?;
        }
        let save = statements.get(client, SAVE_HEAD)?;
        client.execute(&save, &[&self.last_id, &self.last_hash])?;
        Ok(())
    }
}
