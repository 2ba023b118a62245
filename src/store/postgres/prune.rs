//! `audit prune` on PostgreSQL: the SQLite prune (`store::prune`, AUDIT.md "Pruning") as a writer of the one
//! audit chain: it takes the `audit_chain` lock first, so no server appends while it cuts, and its `audit_prune`
//! row takes the next id like any other row.

use postgres::Client;

use super::{chain::ChainWriter, statements::Statements};
use crate::store::{AuditEntry, Pruned, StoreError};

/// Removes the audit rows before the first one written at or after `before_us`, their payloads and nonces, and
/// the schemas no row names any more; records a checkpoint and an `audit_prune` row at `now_us`, all in one
/// transaction. With `dry_run`, only counts, in a read-only transaction that takes no lock.
pub fn prune(
    client: &mut Client,
    statements: &mut Statements,
    before_us: i64,
    now_us: i64,
    dry_run: bool,
) -> Result<Pruned, StoreError> {
    let mut tx = if dry_run {
        client.build_transaction().read_only(true).start()?
    } else {
        client.transaction()?
    };
    // The lock comes first, so what is read below is what the cut removes: no server can append (or prune)
    // until this transaction ends.
    let mut chain = if dry_run {
        None
    } else {
        Some(ChainWriter::lock(&mut tx, statements)?)
    };
    // The prefix ends just before the first row (by id) written at or after the cut, so no row that new is ever
    // removed, even if a clock once went backwards and ids and times disagree.
    let last = tx.query_opt(
        "SELECT id, time_us, hash FROM audit
         WHERE id < COALESCE((SELECT min(id) FROM audit WHERE time_us >= $1), 9223372036854775807)
         ORDER BY id DESC LIMIT 1",
        &[&before_us],
    )?;
    let Some(last) = last else {
        return Ok(Pruned {
            rows: 0,
            payloads: 0,
            nonces: 0,
            schemas: 0,
            range: None,
            last_hash: None,
        });
    };
    let (last_id, last_time, last_hash): (i64, i64, String) =
        (last.try_get(0)?, last.try_get(1)?, last.try_get(2)?);
    let counts = tx.query_one(
        "SELECT (SELECT count(*) FROM audit WHERE id <= $1),
                (SELECT count(*) FROM payloads WHERE audit_id <= $1),
                (SELECT count(*) FROM nonces WHERE audit_id <= $1)",
        &[&last_id],
    )?;
    let count = |i| -> Result<u64, StoreError> {
        Ok(u64::try_from(counts.try_get::<_, i64>(i)?).unwrap_or(0))
    };
    let (rows, payloads, nonces) = (count(0)?, count(1)?, count(2)?);
    let first = tx.query_one("SELECT id, time_us FROM audit ORDER BY id LIMIT 1", &[])?;
    let first: (i64, i64) = (first.try_get(0)?, first.try_get(1)?);
    let mut pruned = Pruned {
        rows,
        payloads,
        nonces,
        schemas: 0,
        range: Some((first, (last_id, last_time))),
        last_hash: Some(last_hash.clone()),
    };
    let Some(mut chain) = chain.take() else {
        return Ok(pruned);
    };
    tx.execute("DELETE FROM payloads WHERE audit_id <= $1", &[&last_id])?;
    tx.execute("DELETE FROM nonces WHERE audit_id <= $1", &[&last_id])?;
    // A request id lives as long as its audit row (PROTOCOL.md, "Request ids").
    tx.execute("DELETE FROM request_ids WHERE audit_id <= $1", &[&last_id])?;
    tx.execute("DELETE FROM audit WHERE id <= $1", &[&last_id])?;
    // A schema no remaining row names is not needed to verify the chain any more.
    pruned.schemas = tx.execute(
        "DELETE FROM schemas WHERE NOT EXISTS (SELECT 1 FROM audit WHERE audit.schema_id = schemas.id)",
        &[],
    )?;
    tx.execute(
        "INSERT INTO audit_checkpoints (time_us, last_row, last_hash, rows) VALUES ($1, $2, $3, $4)",
        &[
            &now_us,
            &last_id,
            &last_hash,
            &i64::try_from(rows).unwrap_or(i64::MAX),
        ],
    )?;
    // Pruning is itself an action on the trail: the first row after the checkpoint says who cut what.
    let detail = format!("removed rows #{} to #{last_id}", first.0);
    let entry = AuditEntry {
        detail: Some(&detail),
        records: rows,
        ..AuditEntry::admin("audit_prune", None, now_us)
    };
    chain.append(&entry, None, None);
    chain.write(&mut tx, statements)?;
    tx.commit()?;
    Ok(pruned)
}
