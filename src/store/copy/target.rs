//! Writing a copied store into PostgreSQL, inside the one transaction of the copy: rows keep their ids, secrets
//! are sealed under the target's master key, the audit trail goes in by binary COPY in batches, and the identity
//! sequences and `audit_chain` are moved past what was copied.

use postgres::{Transaction, binary_copy::BinaryCopyInWriter, types::Type};

use super::source::{
    SourceCheckpoint, SourceKey, SourceNonce, SourceRow, SourceSchema, SourceServerKey,
};
use crate::{
    sealed::{MasterKey, SecretSlot},
    store::StoreError,
};

/// What a target holds already, counted under the chain's lock; copying goes only into a store where all is 0.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// API keys.
    pub keys: i64,
    /// Server key pairs.
    pub server_keys: i64,
    /// Audit rows.
    pub audit: i64,
    /// The highest audit id handed out (rows may be gone).
    pub issued: i64,
    /// Schemas.
    pub schemas: i64,
    /// Nonces.
    pub nonces: i64,
    /// Pruning checkpoints.
    pub checkpoints: i64,
    /// The fingerprint of the master key the store is sealed under, when it is another than the copy's.
    pub sealed_under_another_key: Option<String>,
}

impl Contents {
    /// What is there, for a message (`None` when the store is empty).
    pub fn describe(&self) -> Option<String> {
        let mut parts: Vec<String> = [
            (self.keys, "API key"),
            (self.server_keys, "server key"),
            (self.audit, "audit row"),
            (self.schemas, "schema"),
            (self.nonces, "nonce"),
            (self.checkpoints, "pruning checkpoint"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| super::count(*n, what))
        .collect();
        if self.audit == 0 && self.issued > 0 {
            parts.push(format!("audit ids handed out up to #{}", self.issued));
        }
        if let Some(fingerprint) = &self.sealed_under_another_key {
            parts.push(format!("sealed under master key {fingerprint}"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Locks the chain (so no server or command writes to the target until the copy commits or rolls back) and
/// counts what the target holds.
pub fn lock_and_count(tx: &mut Transaction, master: &MasterKey) -> Result<Contents, StoreError> {
    let issued: i64 = tx
        .query_one("SELECT last_id FROM audit_chain FOR UPDATE", &[])?
        .try_get(0)?;
    let row = tx.query_one(
        "SELECT (SELECT count(*) FROM keys), (SELECT count(*) FROM server_keys), (SELECT count(*) FROM audit),
                (SELECT count(*) FROM schemas), (SELECT count(*) FROM nonces),
                (SELECT count(*) FROM audit_checkpoints),
                (SELECT fingerprint FROM sealing WHERE fingerprint <> $1)",
        &[&master.fingerprint()],
    )?;
    Ok(Contents {
        keys: row.try_get(0)?,
        server_keys: row.try_get(1)?,
        audit: row.try_get(2)?,
        issued,
        schemas: row.try_get(3)?,
        nonces: row.try_get(4)?,
        checkpoints: row.try_get(5)?,
        sealed_under_another_key: row.try_get(6)?,
    })
}

/// Records the master key's fingerprint, which every secret copied is sealed under.
pub fn record_master_key(
    tx: &mut Transaction,
    master: &MasterKey,
    now_us: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sealing (fingerprint, sealed_us) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&master.fingerprint(), &now_us],
    )?;
    Ok(())
}

/// Inserts the API keys, each secret sealed under `master` for its row.
pub fn keys(
    tx: &mut Transaction,
    keys: &[SourceKey],
    master: &MasterKey,
) -> Result<(), StoreError> {
    let insert = tx.prepare(
        "INSERT INTO keys (id, secret_sealed, label, created_us, revoked_us, last_used_us, expires_us,
                           curve_public)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )?;
    for key in keys {
        let sealed = master.seal_text(SecretSlot::ApiKey(&key.id), &key.secret)?;
        tx.execute(
            &insert,
            &[
                &key.id,
                &sealed,
                &key.label,
                &key.created_us,
                &key.revoked_us,
                &key.last_used_us,
                &key.expires_us,
                &key.curve_public,
            ],
        )?;
    }
    Ok(())
}

/// Inserts the server key pairs with their ids, each secret half sealed under `master` for its public key.
pub fn server_keys(
    tx: &mut Transaction,
    keys: &[SourceServerKey],
    master: &MasterKey,
) -> Result<(), StoreError> {
    let insert = tx.prepare(
        "INSERT INTO server_keys (id, public_key, secret_sealed, state, created_us, retired_us)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )?;
    for key in keys {
        let sealed = master.seal_text(SecretSlot::ServerKey(&key.public_key), &key.secret)?;
        tx.execute(
            &insert,
            &[
                &key.id,
                &key.public_key,
                &sealed,
                &key.state,
                &key.created_us,
                &key.retired_us,
            ],
        )?;
    }
    Ok(())
}

/// Inserts the schemas with their ids, which the audit rows name.
pub fn schemas(tx: &mut Transaction, schemas: &[SourceSchema]) -> Result<(), StoreError> {
    let insert = tx.prepare(
        "INSERT INTO schemas (id, fingerprint, canonical, schema, first_seen_us) VALUES ($1, $2, $3, $4, $5)",
    )?;
    for schema in schemas {
        tx.execute(
            &insert,
            &[
                &schema.id,
                &schema.fingerprint,
                &schema.canonical,
                &schema.schema,
                &schema.first_seen_us,
            ],
        )?;
    }
    Ok(())
}

/// Inserts the pruning checkpoints with their ids.
pub fn checkpoints(
    tx: &mut Transaction,
    checkpoints: &[SourceCheckpoint],
) -> Result<(), StoreError> {
    let insert = tx.prepare(
        "INSERT INTO audit_checkpoints (id, time_us, last_row, last_hash, rows) VALUES ($1, $2, $3, $4, $5)",
    )?;
    for checkpoint in checkpoints {
        tx.execute(
            &insert,
            &[
                &checkpoint.id,
                &checkpoint.time_us,
                &checkpoint.last_row,
                &checkpoint.last_hash,
                &checkpoint.rows,
            ],
        )?;
    }
    Ok(())
}

/// The columns of `audit` a copy writes, in the order of [`AUDIT_TYPES`].
const COPY_AUDIT: &str = "COPY audit (id, time_us, action, status, reason, detail, key_id, peer, records, size,
                                      payload_sha256, schema_id, requests, transport, server, prev_hash, hash)
                          FROM STDIN (FORMAT binary)";

const AUDIT_TYPES: [Type; 17] = [
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// Writes a batch of audit rows exactly as stored (ids, hashes, links), then their payloads: two COPY
/// statements per batch.
pub fn audit_batch(tx: &mut Transaction, batch: &[SourceRow]) -> Result<(), StoreError> {
    let mut writer = BinaryCopyInWriter::new(tx.copy_in(COPY_AUDIT)?, &AUDIT_TYPES);
    for row in batch {
        writer.write(&[
            &row.id,
            &row.time_us,
            &row.action,
            &row.status,
            &row.reason,
            &row.detail,
            &row.key_id,
            &row.peer,
            &row.records,
            &row.size,
            &row.payload_sha256,
            &row.schema_id,
            &row.requests,
            &row.transport,
            &row.server,
            &row.prev_hash,
            &row.hash,
        ])?;
    }
    writer.finish()?;
    if batch.iter().any(|row| row.payload.is_some()) {
        let mut writer = BinaryCopyInWriter::new(
            tx.copy_in("COPY payloads (audit_id, json) FROM STDIN (FORMAT binary)")?,
            &[Type::INT8, Type::TEXT],
        );
        for row in batch {
            if let Some(json) = &row.payload {
                writer.write(&[&row.id, json])?;
            }
        }
        writer.finish()?;
    }
    Ok(())
}

/// A COPY of nonces in progress: opened by [`NonceWriter::start`], written row by row, ended by
/// [`NonceWriter::finish`].
pub struct NonceWriter<'t> {
    writer: BinaryCopyInWriter<'t>,
    /// Rows written so far.
    pub count: u64,
}

impl<'t> NonceWriter<'t> {
    /// Starts `COPY nonces`; nothing else may run on the transaction until it is finished.
    pub fn start(tx: &'t mut Transaction) -> Result<NonceWriter<'t>, StoreError> {
        let copy = tx.copy_in(
            "COPY nonces (key_id, nonce, timestamp, audit_id, signature) FROM STDIN (FORMAT binary)",
        )?;
        Ok(NonceWriter {
            writer: BinaryCopyInWriter::new(
                copy,
                &[Type::TEXT, Type::TEXT, Type::INT8, Type::INT8, Type::TEXT],
            ),
            count: 0,
        })
    }

    /// Writes one nonce.
    pub fn write(&mut self, nonce: &SourceNonce) -> Result<(), StoreError> {
        self.writer.write(&[
            &nonce.key_id,
            &nonce.nonce,
            &nonce.timestamp,
            &nonce.audit_id,
            &nonce.signature,
        ])?;
        self.count += 1;
        Ok(())
    }

    /// Ends the COPY; returns how many nonces it wrote.
    pub fn finish(self) -> Result<u64, StoreError> {
        self.writer.finish()?;
        Ok(self.count)
    }
}

/// A COPY of request ids in progress (PROTOCOL.md, "Request ids"), as [`NonceWriter`] for nonces.
pub struct RequestIdWriter<'t> {
    writer: BinaryCopyInWriter<'t>,
    /// Rows written so far.
    pub count: u64,
}

impl<'t> RequestIdWriter<'t> {
    /// Starts `COPY request_ids`; nothing else may run on the transaction until it is finished.
    pub fn start(tx: &'t mut Transaction) -> Result<RequestIdWriter<'t>, StoreError> {
        let copy = tx.copy_in(
            "COPY request_ids (key_id, id, audit_id, payload_digest) FROM STDIN (FORMAT binary)",
        )?;
        Ok(RequestIdWriter {
            writer: BinaryCopyInWriter::new(
                copy,
                &[Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT],
            ),
            count: 0,
        })
    }

    /// Writes one request id.
    pub fn write(&mut self, id: &super::source::SourceRequestId) -> Result<(), StoreError> {
        self.writer
            .write(&[&id.key_id, &id.id, &id.audit_id, &id.payload_digest])?;
        self.count += 1;
        Ok(())
    }

    /// Ends the COPY; returns how many request ids it wrote.
    pub fn finish(self) -> Result<u64, StoreError> {
        self.writer.finish()?;
        Ok(self.count)
    }
}

/// Moves every identity sequence past the ids copied, so rows made later never collide with them, and the
/// chain's head to the source's: its id counter (ids handed out, as `sqlite_sequence` kept it) and the hash
/// the next row chains onto.
pub fn move_counters(tx: &mut Transaction, issued: i64, head_hash: &str) -> Result<(), StoreError> {
    for table in ["schemas", "server_keys", "audit_checkpoints"] {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) \
                 FROM {table}"
            ),
            &[],
        )?;
    }
    tx.execute(
        "UPDATE audit_chain SET last_id = $1, last_hash = $2",
        &[&issued, &head_hash],
    )?;
    Ok(())
}
