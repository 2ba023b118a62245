//! `zavro store copy FROM TO`: a SQLite store copied into a PostgreSQL database, for users who start with one
//! server and grow to many sharing one database.
//!
//! Everything a store holds goes over unchanged: keys (secrets sealed under the target's master key), server
//! keys, the schemas with their ids, the audit trail with its ids, hashes, links, payloads and pruning
//! checkpoints (so `audit verify` on the copy checks the same chain and reaches the same row with the same
//! hash), and the nonces still inside the replay window with their signatures and audit ids (so a request sent
//! before the move and retried after it is still recognised as a `duplicate`, and a replay still refused), and
//! every request id (PROTOCOL.md, "Request ids": a spooled request sent again after the move is a `duplicate`). Then
//! the target's counters are moved past the copied ids and an audit row (`store_copy`) is chained on after the
//! copied rows.
//!
//! The source is read in one read transaction (one snapshot, while its servers may keep writing) and its chain is
//! verified as it is read: a source that does not verify is not copied ([`CopyError::SourceTampered`]). The
//! target is written in one transaction that first takes the `audit_chain` lock, and only into an empty store
//! ([`CopyError::NotEmpty`]); on any failure nothing of the copy is kept.

mod source;
mod target;

use rusqlite::TransactionBehavior;

use super::{
    AuditEntry, ChainBreak, PgStore, Store, StoreError,
    chain::{ChainVerifier, GENESIS, check_schema},
    postgres::{ChainWriter, Statements},
    sealing,
};
use crate::sealed::MasterKey;

/// Most audit rows held in memory at once: one batch, written with one COPY (and one for its payloads).
const BATCH_ROWS: usize = 2_000;

/// Most bytes of audit rows (mostly payloads) held in memory at once, roughly.
const BATCH_BYTES: usize = 16 << 20;

/// How `store copy` runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// The source, as messages and the `store_copy` audit row name it (a path, or a URL without password).
    pub source_name: String,
    /// Nonces of requests with a timestamp (Unix seconds) before this are outside every server's replay
    /// window and are not copied.
    pub nonces_since: i64,
    /// Now (µs), for the `store_copy` row and the sealing record.
    pub now_us: i64,
}

/// What a copy copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// API keys.
    pub keys: usize,
    /// Server key pairs.
    pub server_keys: usize,
    /// Schemas.
    pub schemas: usize,
    /// Audit rows.
    pub rows: u64,
    /// Stored payloads.
    pub payloads: u64,
    /// Nonces inside the replay window.
    pub nonces: u64,
    /// Request ids (all: each lives as long as its audit row).
    pub request_ids: u64,
    /// Pruning checkpoints.
    pub checkpoints: usize,
    /// The source's head, which the copy's chain holds with the same hash (`None` for an empty trail).
    pub source_head: Option<(i64, String)>,
    /// The id of the `store_copy` row chained on after the copied rows.
    pub copy_row: i64,
    /// Requests acknowledged after the source was settled for the copy, still pending in its snapshot: not
    /// copied, like anything a server appends once the copy has begun.
    pub left_pending: u64,
}

/// Why a copy was refused or failed; nothing of it was kept.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds something.
    #[error(
        "store {target} is not empty ({contents}); `zavro store copy` copies only into a new store"
    )]
    NotEmpty {
        /// The target.
        target: String,
        /// What it holds.
        contents: String,
    },
    /// The source's audit chain does not verify: a copy would carry the damage on, hidden behind a new row.
    #[error(
        "the audit trail of {from} does not verify, so nothing was copied (`zavro audit verify` tells more): {broken}"
    )]
    SourceTampered {
        /// The source.
        from: String,
        /// Where the chain breaks.
        broken: ChainBreak,
    },
    /// The source is sealed under another master key than the one the copy is sealed under.
    #[error(
        "store {from} is sealed under master key {sealed_under}, and the copy is sealed under the key in {key_file} \
         ({given}); give the source's key file, or first reseal the source to that key (`zavro --db {from} \
         --master-key-file OLD store reseal --new-master-key-file {key_file}`)"
    )]
    SourceSealedUnderAnotherKey {
        /// The source.
        from: String,
        /// The fingerprint the source is sealed under.
        sealed_under: String,
        /// The fingerprint of the key given.
        given: String,
        /// Where the key given came from.
        key_file: String,
    },
    /// Reading the source or writing the target failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CopyError {
    fn from(e: rusqlite::Error) -> Self {
        CopyError::Store(e.into())
    }
}

impl From<postgres::Error> for CopyError {
    fn from(e: postgres::Error) -> Self {
        CopyError::Store(e.into())
    }
}

/// Copies the SQLite store `from` into the PostgreSQL store `to`, whose secrets are sealed under `master`.
/// `from` may be unsealed, or sealed under `master`.
pub fn copy_into_postgres(
    from: &mut Store,
    to: &mut PgStore,
    master: &MasterKey,
    options: &CopyOptions,
) -> Result<Copied, CopyError> {
    let tampered = |broken| CopyError::SourceTampered {
        from: options.source_name.clone(),
        broken,
    };
    // Requests acknowledged since the store was opened (while the target was being reached) go into the audit
    // tables first; what cannot be settled now is left out with its nonces and request ids, and
    // `Store::pending_not_shown` says so.
    from.settle_for_readers();
    // One read transaction: the first read below fixes the snapshot every later read sees.
    let snapshot = rusqlite::Transaction::new_unchecked(&from.conn, TransactionBehavior::Deferred)?;
    let source_master = match sealing::sealed_under(&snapshot)? {
        None => None,
        Some(fingerprint) if fingerprint == master.fingerprint() => Some(master),
        Some(sealed_under) => {
            return Err(CopyError::SourceSealedUnderAnotherKey {
                from: options.source_name.clone(),
                sealed_under,
                given: master.fingerprint(),
                key_file: master.describe_source(),
            });
        }
    };
    let left_pending: i64 =
        snapshot.query_row("SELECT count(*) FROM pending", [], |row| row.get(0))?;
    let schemas = source::schemas(&snapshot)?;
    for schema in &schemas {
        check_schema(&schema.fingerprint, &schema.canonical, &schema.schema).map_err(tampered)?;
    }
    let keys = source::keys(&snapshot, source_master)?;
    let server_keys = source::server_keys(&snapshot, source_master)?;
    let checkpoints = source::checkpoints(&snapshot)?;

    let target_name = to.url().to_string();
    let mut tx = to.client().transaction()?;
    let contents = target::lock_and_count(&mut tx, master)?;
    if let Some(contents) = contents.describe() {
        return Err(CopyError::NotEmpty {
            target: target_name,
            contents,
        });
    }
    target::record_master_key(&mut tx, master, options.now_us)?;
    target::keys(&mut tx, &keys, master)?;
    target::server_keys(&mut tx, &server_keys, master)?;
    target::schemas(&mut tx, &schemas)?;
    target::checkpoints(&mut tx, &checkpoints)?;

    let checkpoint = checkpoints
        .last()
        .map(|c| (c.last_row, c.last_hash.clone()));
    let mut verifier = ChainVerifier::new(checkpoint.clone(), None);
    let (mut rows, mut payloads) = (0u64, 0u64);
    {
        let mut stmt = snapshot.prepare(source::AUDIT_ROWS)?;
        let mut source_rows = stmt.query([])?;
        let mut batch = Vec::new();
        let mut weight = 0;
        loop {
            let next = source_rows.next()?;
            if let Some(row) = next {
                let row = source::audit_row(row)?;
                // Checked before it is written: a broken chain is not carried on.
                verifier.row(&row.stored()).map_err(tampered)?;
                weight += row.weight();
                batch.push(row);
            }
            let full = batch.len() >= BATCH_ROWS || weight >= BATCH_BYTES;
            if (full || next.is_none()) && !batch.is_empty() {
                target::audit_batch(&mut tx, &batch)?;
                rows += batch.len() as u64;
                payloads += batch.iter().filter(|r| r.payload.is_some()).count() as u64;
                batch.clear();
                weight = 0;
            }
            if next.is_none() {
                break;
            }
        }
    }
    let issued = source::issued(&snapshot)?;
    let verified = verifier.finish(issued).map_err(tampered)?;

    let nonces = {
        let mut writer = target::NonceWriter::start(&mut tx)?;
        let mut stmt = snapshot.prepare(source::NONCES)?;
        let mut source_nonces = stmt.query([options.nonces_since])?;
        while let Some(row) = source_nonces.next()? {
            writer.write(&source::nonce(row)?)?;
        }
        writer.finish()?
    };
    let request_ids = {
        let mut writer = target::RequestIdWriter::start(&mut tx)?;
        let mut stmt = snapshot.prepare(source::REQUEST_IDS)?;
        let mut source_ids = stmt.query([])?;
        while let Some(row) = source_ids.next()? {
            writer.write(&source::request_id(row)?)?;
        }
        writer.finish()?
    };

    // The next row chains onto the newest copied row (or the checkpoint, when every row was pruned), and takes
    // an id past every id the source handed out.
    let head_hash = match (&verified.head, &checkpoint) {
        (Some((_, hash)), _) | (None, Some((_, hash))) => hash.clone(),
        (None, None) => GENESIS.to_owned(),
    };
    let newest = verified
        .head
        .as_ref()
        .map(|(id, _)| *id)
        .or(checkpoint.as_ref().map(|(row, _)| *row))
        .unwrap_or(0);
    target::move_counters(&mut tx, issued.max(newest), &head_hash)?;

    let mut copied = Copied {
        keys: keys.len(),
        server_keys: server_keys.len(),
        schemas: schemas.len(),
        rows,
        payloads,
        nonces,
        request_ids,
        checkpoints: checkpoints.len(),
        source_head: verified.head,
        copy_row: 0,
        left_pending: left_pending.try_into().unwrap_or(0),
    };
    let detail = describe(&options.source_name, &copied);
    let entry = AuditEntry {
        detail: Some(&detail),
        records: rows,
        ..AuditEntry::admin("store_copy", None, options.now_us)
    };
    // Locked already (by `lock_and_count`); this reads the head `move_counters` left.
    let mut statements = Statements::default();
    let mut chain = ChainWriter::lock(&mut tx, &mut statements)?;
    copied.copy_row = chain.append(&entry, None, None);
    chain.write(&mut tx, &mut statements)?;
    tx.commit()?;
    snapshot.finish()?;
    Ok(copied)
}

impl Copied {
    /// What was copied, for the `store_copy` row and the command's report: `2 API keys, 1 server key, …`.
    pub fn summary(&self) -> String {
        let n = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let m = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut parts = vec![
            count(n(self.keys), "API key"),
            count(n(self.server_keys), "server key"),
            count(m(self.rows), "audit row"),
            count(m(self.payloads), "payload"),
            count(n(self.schemas), "schema"),
            count(m(self.nonces), "nonce"),
            count(n(self.checkpoints), "pruning checkpoint"),
        ];
        // Named only when there are some, so the summary of a store without them reads as before.
        if self.request_ids > 0 {
            parts.push(count(m(self.request_ids), "request id"));
        }
        parts.join(", ")
    }
}

/// The `store_copy` row's detail: where from, what, and the source's head.
fn describe(source_name: &str, copied: &Copied) -> String {
    let head = copied
        .source_head
        .as_ref()
        .map_or_else(|| "none".to_owned(), |(row, hash)| format!("{row}:{hash}"));
    format!(
        "copied from {source_name}: {}; source head {head}",
        copied.summary()
    )
}

/// "1 API key", "2 API keys".
pub fn count(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests;
