//! `audit verify` on PostgreSQL: the checkpoint, the schemas, every row and the id counter read from one
//! snapshot and fed to the backend-independent [`ChainVerifier`] (the SQLite reading in `sqlite_chain` is the
//! model).

use postgres::{Client, IsolationLevel, fallible_iterator::FallibleIterator};

use crate::store::{
    StoreError,
    chain::{ChainBreak, ChainVerifier, ChainedFields, StoredRow, Verified, check_schema},
};

/// Walks the whole chain; with `against`, also checks that the recorded head (row id, hash) is still in it.
///
/// Everything is read in one `REPEATABLE READ READ ONLY` transaction: one snapshot, so servers appending
/// meanwhile neither make the id counter (`audit_chain.last_id`, which stands in for SQLite's
/// `sqlite_sequence`) run ahead of the rows read, which would look like deleted rows, nor add rows halfway
/// through the walk. A read-only snapshot takes no lock a writer waits for.
pub fn verify(
    client: &mut Client,
    against: Option<(i64, &str)>,
) -> Result<Result<Verified, ChainBreak>, StoreError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    for row in tx.query(
        "SELECT fingerprint, canonical, schema FROM schemas ORDER BY id",
        &[],
    )? {
        if let Err(broken) = check_schema(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?) {
            return Ok(Err(broken));
        }
    }
    let checkpoint = match tx.query_opt(
        "SELECT last_row, last_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
        &[],
    )? {
        Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        None => None,
    };
    let mut verifier = ChainVerifier::new(checkpoint, against);
    {
        let mut rows = tx.query_raw(
            "SELECT a.id, a.time_us, a.action, a.status, a.reason, a.detail, a.key_id, a.peer, a.records,
                    a.size, a.payload_sha256, s.fingerprint, a.requests, a.transport, a.server,
                    a.prev_hash, a.hash, p.json
             FROM audit a LEFT JOIN schemas s ON s.id = a.schema_id
                          LEFT JOIN payloads p ON p.audit_id = a.id
             ORDER BY a.id",
            std::iter::empty::<i64>(),
        )?;
        while let Some(row) = rows.next()? {
            let stored = StoredRow {
                fields: ChainedFields {
                    id: row.try_get(0)?,
                    time_us: row.try_get(1)?,
                    action: row.try_get(2)?,
                    status: row.try_get(3)?,
                    reason: row.try_get(4)?,
                    detail: row.try_get(5)?,
                    key_id: row.try_get(6)?,
                    peer: row.try_get(7)?,
                    records: row.try_get(8)?,
                    size: row.try_get(9)?,
                    payload_sha256: row.try_get(10)?,
                    schema: row.try_get(11)?,
                    requests: row.try_get(12)?,
                    transport: row.try_get(13)?,
                    server: row.try_get(14)?,
                },
                prev_hash: row.try_get(15)?,
                hash: row.try_get(16)?,
                payload: row.try_get(17)?,
            };
            if let Err(broken) = verifier.row(&stored) {
                return Ok(Err(broken));
            }
        }
    }
    let issued: i64 = tx
        .query_one("SELECT last_id FROM audit_chain", &[])?
        .try_get(0)?;
    tx.commit()?;
    Ok(verifier.finish(issued))
}
