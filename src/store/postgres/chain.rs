//! Writing audit rows on PostgreSQL: the `audit_chain` lock protocol of the module comment, as a type.
//!
//! [`ChainTail::lock`] takes the lock (first statement of the writer's transaction), [`ChainTail::append`]
//! numbers and chains each row onto the one before, and [`ChainTail::save`] moves `audit_chain` forward before
//! the caller commits. The lock is held until the transaction ends, so nobody else can take an id in between.

use postgres::GenericClient;

use super::super::{AuditEntry, StoreError, chain::payload_sha256};

/// The head of the one audit chain while this transaction holds its lock: the last id given and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTail {
    /// The last id handed out (0 before the first row); the next row is `last_id + 1`.
    pub last_id: i64,
    /// That row's hash: what the next row chains onto.
    pub last_hash: String,
    /// True once [`ChainTail::append`] has moved the tail, so [`ChainTail::save`] has something to write.
    moved: bool,
}

impl ChainTail {
    /// Locks `audit_chain` (`SELECT … FOR UPDATE`), waiting for any other writer to commit or roll back, and
    /// reads the head it left. Call it before anything else the transaction reads: what is read after it
    /// includes every transaction committed before, and nothing can commit audit rows until this one ends.
    pub fn lock(tx: &mut impl GenericClient) -> Result<ChainTail, StoreError> {
        let row = tx.query_one("SELECT last_id, last_hash FROM audit_chain FOR UPDATE", &[])?;
        Ok(ChainTail {
            last_id: row.try_get(0)?,
            last_hash: row.try_get(1)?,
            moved: false,
        })
    }

    /// Inserts `entry` (and its payload, if any) as row `last_id + 1`, chained onto `last_hash`, and moves the
    /// tail to it; returns its id. `schema_id` is the `schemas` row of `entry.schema`.
    pub fn append(
        &mut self,
        tx: &mut impl GenericClient,
        entry: &AuditEntry,
        schema_id: Option<i64>,
        payload: Option<&str>,
    ) -> Result<i64, StoreError> {
        debug_assert_eq!(schema_id.is_some(), entry.schema.is_some());
        let id = self.last_id + 1;
        let payload_sha256 = payload.map(payload_sha256);
        let fields = entry.chained(id, payload_sha256.as_deref());
        let hash = fields.hash(&self.last_hash);
        tx.execute(
            "INSERT INTO audit (id, time_us, action, status, reason, detail, key_id, peer, records, size,
                                payload_sha256, schema_id, prev_hash, hash, requests, transport, server)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            &[
                &fields.id,
                &fields.time_us,
                &fields.action,
                &fields.status,
                &fields.reason,
                &fields.detail,
                &fields.key_id,
                &fields.peer,
                &fields.records,
                &fields.size,
                &fields.payload_sha256,
                &schema_id,
                &self.last_hash,
                &hash,
                &fields.requests,
                &fields.transport,
                &fields.server,
            ],
        )?;
        if let Some(json) = payload {
            tx.execute(
                "INSERT INTO payloads (audit_id, json) VALUES ($1, $2)",
                &[&id, &json],
            )?;
        }
        self.last_id = id;
        self.last_hash = hash;
        self.moved = true;
        Ok(id)
    }

    /// Writes the tail back to `audit_chain` (when rows were appended); the caller then commits, which releases
    /// the lock.
    pub fn save(&self, tx: &mut impl GenericClient) -> Result<(), StoreError> {
        if self.moved {
            tx.execute(
                "UPDATE audit_chain SET last_id = $1, last_hash = $2",
                &[&self.last_id, &self.last_hash],
            )?;
        }
        Ok(())
    }
}
