//! Reading a SQLite store for `store copy`: every table, from one read transaction (one snapshot, however long
//! the copy takes and whatever a server appends meanwhile), with each secret opened and the audit chain checked
//! as its rows go by.

use rusqlite::{Connection, OptionalExtension, Row as SqlRow};
use zeroize::Zeroizing;

use crate::{
    sealed::{MasterKey, SecretSlot},
    store::{
        StoreError,
        chain::{ChainedFields, StoredRow},
        sealing,
    },
};

/// An API key as `keys` holds it, its secret opened.
pub struct SourceKey {
    /// The key id.
    pub id: String,
    /// The secret, wiped from memory when dropped.
    pub secret: Zeroizing<String>,
    /// The label given at creation.
    pub label: Option<String>,
    /// Created (µs).
    pub created_us: i64,
    /// Revoked (µs), if it was.
    pub revoked_us: Option<i64>,
    /// Last used (µs), where an old store kept it.
    pub last_used_us: Option<i64>,
    /// Stops working (µs), if it expires.
    pub expires_us: Option<i64>,
    /// The key's CURVE client public key.
    pub curve_public: Option<String>,
}

/// A server key pair as `server_keys` holds it, its secret half opened.
pub struct SourceServerKey {
    /// Row id.
    pub id: i64,
    /// The public key (Z85).
    pub public_key: String,
    /// The secret key (Z85), wiped from memory when dropped.
    pub secret: Zeroizing<String>,
    /// `staged`, `current` or `retired`.
    pub state: String,
    /// Created (µs).
    pub created_us: i64,
    /// Retired (µs), if it was.
    pub retired_us: Option<i64>,
}

/// A `schemas` row.
pub struct SourceSchema {
    /// Row id, which audit rows name.
    pub id: i64,
    /// SHA-256 of the canonical form.
    pub fingerprint: String,
    /// The Parsing Canonical Form.
    pub canonical: String,
    /// The JSON text as first seen.
    pub schema: String,
    /// First seen (µs).
    pub first_seen_us: i64,
}

/// An `audit_checkpoints` row.
pub struct SourceCheckpoint {
    /// Row id.
    pub id: i64,
    /// When the prune ran (µs).
    pub time_us: i64,
    /// The last row it removed.
    pub last_row: i64,
    /// That row's hash.
    pub last_hash: String,
    /// How many rows it removed.
    pub rows: i64,
}

/// A `nonces` row.
pub struct SourceNonce {
    /// The key that used it.
    pub key_id: String,
    /// The nonce.
    pub nonce: String,
    /// The request's timestamp (Unix seconds).
    pub timestamp: i64,
    /// The request's audit row.
    pub audit_id: i64,
    /// The request's signature, which recognises a retry.
    pub signature: Option<String>,
}

/// An audit row with every stored column, its schema's fingerprint and its payload.
pub struct SourceRow {
    /// Row id.
    pub id: i64,
    /// Time (µs).
    pub time_us: i64,
    /// Action.
    pub action: String,
    /// `accepted` or `rejected`.
    pub status: String,
    /// Reject code.
    pub reason: Option<String>,
    /// Human detail.
    pub detail: Option<String>,
    /// Key id.
    pub key_id: Option<String>,
    /// Peer.
    pub peer: Option<String>,
    /// Records.
    pub records: i64,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the payload, as stored.
    pub payload_sha256: Option<String>,
    /// The `schemas` row it names.
    pub schema_id: Option<i64>,
    /// That row's fingerprint (which the hash covers).
    pub fingerprint: Option<String>,
    /// Requests it stands for.
    pub requests: i64,
    /// Transport.
    pub transport: Option<String>,
    /// Server name.
    pub server: Option<String>,
    /// Stored `prev_hash`.
    pub prev_hash: Option<String>,
    /// Stored `hash`.
    pub hash: Option<String>,
    /// The stored payload.
    pub payload: Option<String>,
}

impl SourceRow {
    /// The row as [`crate::store::ChainVerifier`] checks it.
    pub fn stored(&self) -> StoredRow<'_> {
        StoredRow {
            fields: ChainedFields {
                id: self.id,
                time_us: self.time_us,
                action: &self.action,
                status: &self.status,
                reason: self.reason.as_deref(),
                detail: self.detail.as_deref(),
                key_id: self.key_id.as_deref(),
                peer: self.peer.as_deref(),
                records: self.records,
                size: self.size,
                payload_sha256: self.payload_sha256.as_deref(),
                schema: self.fingerprint.as_deref(),
                requests: self.requests,
                transport: self.transport.as_deref(),
                server: self.server.as_deref(),
            },
            prev_hash: self.prev_hash.as_deref(),
            hash: self.hash.as_deref(),
            payload: self.payload.as_deref(),
        }
    }

    /// Bytes this row holds in memory, roughly: what bounds a batch.
    pub fn weight(&self) -> usize {
        256 + self.payload.as_ref().map_or(0, String::len)
            + self.detail.as_ref().map_or(0, String::len)
    }
}

/// Every audit row, oldest first, with its schema's fingerprint and its payload.
pub const AUDIT_ROWS: &str =
    "SELECT a.id, a.time_us, a.action, a.status, a.reason, a.detail, a.key_id, a.peer, a.records, a.size,
            a.payload_sha256, a.schema_id, s.fingerprint, a.requests, a.transport, a.server, a.prev_hash, a.hash,
            p.json
     FROM audit a LEFT JOIN schemas s ON s.id = a.schema_id LEFT JOIN payloads p ON p.audit_id = a.id
     ORDER BY a.id";

/// Reads a row of [`AUDIT_ROWS`].
pub fn audit_row(row: &SqlRow) -> rusqlite::Result<SourceRow> {
    Ok(SourceRow {
        id: row.get(0)?,
        time_us: row.get(1)?,
        action: row.get(2)?,
        status: row.get(3)?,
        reason: row.get(4)?,
        detail: row.get(5)?,
        key_id: row.get(6)?,
        peer: row.get(7)?,
        records: row.get(8)?,
        size: row.get(9)?,
        payload_sha256: row.get(10)?,
        schema_id: row.get(11)?,
        fingerprint: row.get(12)?,
        requests: row.get(13)?,
        transport: row.get(14)?,
        server: row.get(15)?,
        prev_hash: row.get(16)?,
        hash: row.get(17)?,
        payload: row.get(18)?,
    })
}

/// A `request_ids` row.
pub struct SourceRequestId {
    /// The key whose request carried it.
    pub key_id: String,
    /// The request id.
    pub id: String,
    /// The accepted request's audit row.
    pub audit_id: i64,
    /// The SHA-256 of that request's payload frame.
    pub payload_digest: String,
}

/// Every request id: each lives as long as its audit row, and every row is copied. Those of requests still
/// pending (acknowledged by a server after the store was opened for the copy) stay behind with their requests.
pub const REQUEST_IDS: &str = "SELECT key_id, id, audit_id, payload_digest FROM request_ids r
     WHERE NOT EXISTS (SELECT 1 FROM pending p WHERE p.audit_id = r.audit_id)";

/// Reads a row of [`REQUEST_IDS`].
pub fn request_id(row: &SqlRow) -> rusqlite::Result<SourceRequestId> {
    Ok(SourceRequestId {
        key_id: row.get(0)?,
        id: row.get(1)?,
        audit_id: row.get(2)?,
        payload_digest: row.get(3)?,
    })
}

/// Every nonce whose request's timestamp is `since` (Unix seconds) or later, but those of requests still pending,
/// which stay behind with their requests.
pub const NONCES: &str = "SELECT key_id, nonce, timestamp, audit_id, signature FROM nonces n
     WHERE timestamp >= ?1 AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.audit_id = n.audit_id)";

/// Reads a row of [`NONCES`].
pub fn nonce(row: &SqlRow) -> rusqlite::Result<SourceNonce> {
    Ok(SourceNonce {
        key_id: row.get(0)?,
        nonce: row.get(1)?,
        timestamp: row.get(2)?,
        audit_id: row.get(3)?,
        signature: row.get(4)?,
    })
}

/// Every API key, its secret opened with `master` (`None` for an unsealed store).
pub fn keys(conn: &Connection, master: Option<&MasterKey>) -> Result<Vec<SourceKey>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, secret, secret_sealed, label, created_us, revoked_us, last_used_us, expires_us, curve_public
         FROM keys ORDER BY created_us, id",
    )?;
    let mut rows = stmt.query([])?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let stored = sealing::stored_secret(row, 1)?;
        let secret = sealing::reveal(stored, conn, SecretSlot::ApiKey(&id), master)?;
        keys.push(SourceKey {
            secret,
            label: row.get(3)?,
            created_us: row.get(4)?,
            revoked_us: row.get(5)?,
            last_used_us: row.get(6)?,
            expires_us: row.get(7)?,
            curve_public: row.get(8)?,
            id,
        });
    }
    Ok(keys)
}

/// Every server key pair, its secret half opened with `master` (`None` for an unsealed store).
pub fn server_keys(
    conn: &Connection,
    master: Option<&MasterKey>,
) -> Result<Vec<SourceServerKey>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, public_key, secret_key, secret_sealed, state, created_us, retired_us
         FROM server_keys ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        let public_key: String = row.get(1)?;
        let stored = sealing::stored_secret(row, 2)?;
        let secret = sealing::reveal(stored, conn, SecretSlot::ServerKey(&public_key), master)?;
        keys.push(SourceServerKey {
            id: row.get(0)?,
            secret,
            state: row.get(4)?,
            created_us: row.get(5)?,
            retired_us: row.get(6)?,
            public_key,
        });
    }
    Ok(keys)
}

/// Every schema, by id.
pub fn schemas(conn: &Connection) -> Result<Vec<SourceSchema>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, fingerprint, canonical, schema, first_seen_us FROM schemas ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(SourceSchema {
            id: row.get(0)?,
            fingerprint: row.get(1)?,
            canonical: row.get(2)?,
            schema: row.get(3)?,
            first_seen_us: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every pruning checkpoint, oldest first.
pub fn checkpoints(conn: &Connection) -> Result<Vec<SourceCheckpoint>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, time_us, last_row, last_hash, rows FROM audit_checkpoints ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(SourceCheckpoint {
            id: row.get(0)?,
            time_us: row.get(1)?,
            last_row: row.get(2)?,
            last_hash: row.get(3)?,
            rows: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest audit id SQLite ever handed out (`sqlite_sequence`), 0 when none.
pub fn issued(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0))
}
