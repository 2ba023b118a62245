//! Retention: removing the oldest audit rows, with their payloads and nonces, while keeping the rest of the
//! hash chain verifiable through a checkpoint (AUDIT.md, "Pruning").

use rusqlite::{OptionalExtension, params};

use super::{AuditEntry, Store, StoreError};

/// What a prune removed (or, for a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Audit rows removed.
    pub rows: u64,
    /// Stored payloads removed with them.
    pub payloads: u64,
    /// Nonces removed with them.
    pub nonces: u64,
    /// Schemas no row left names any more, removed with them (counted only when the rows are removed).
    pub schemas: u64,
    /// The oldest and newest rows removed: (id, time µs), or `None` when nothing was old enough.
    pub range: Option<((i64, i64), (i64, i64))>,
    /// The hash of the newest row removed, which the checkpoint keeps and the next row chains to.
    pub last_hash: Option<String>,
}

impl Store {
    /// Removes the audit rows before the first one written at or after `before_us`, their payloads and nonces, and
    /// records a checkpoint (and an `audit_prune` row) in the same transaction; with `dry_run`, only counts.
    ///
    /// Only a prefix of the chain is ever removed (every row up to an id), so the rows left still verify from
    /// the checkpoint. The caller keeps `before_us` out of the replay window: a nonce removed here can no
    /// longer refuse a replay.
    pub fn prune_audit(
        &mut self,
        before_us: i64,
        now_us: i64,
        dry_run: bool,
    ) -> Result<Pruned, StoreError> {
        let tx = self.conn.transaction()?;
        // Pending rows are the newest and never pruned, but they name schemas the cleanup below must keep.
        super::pending::settle(&tx)?;
        // The prefix ends just before the first row (by id) written at or after the cut, so no row that new is
        // ever removed, even if the clock once went backwards and ids and times disagree.
        let last: Option<(i64, i64, String)> = tx
            .query_row(
                "SELECT id, time_us, hash FROM audit
                 WHERE id < COALESCE((SELECT min(id) FROM audit WHERE time_us >= ?1), 9223372036854775807)
                 ORDER BY id DESC LIMIT 1",
                [before_us],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((last_id, last_time, last_hash)) = last else {
            return Ok(Pruned {
                rows: 0,
                payloads: 0,
                nonces: 0,
                schemas: 0,
                range: None,
                last_hash: None,
            });
        };
        let count = |sql: &str| -> Result<u64, StoreError> {
            let n: i64 = tx.query_row(sql, [last_id], |row| row.get(0))?;
            Ok(n.try_into().unwrap_or(0))
        };
        let rows = count("SELECT count(*) FROM audit WHERE id <= ?1")?;
        let payloads = count("SELECT count(*) FROM payloads WHERE audit_id <= ?1")?;
        let nonces = count("SELECT count(*) FROM nonces WHERE audit_id <= ?1")?;
        let first: (i64, i64) = tx.query_row(
            "SELECT id, time_us FROM audit ORDER BY id LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let mut pruned = Pruned {
            rows,
            payloads,
            nonces,
            schemas: 0,
            range: Some((first, (last_id, last_time))),
            last_hash: Some(last_hash.clone()),
        };
        if dry_run {
            return Ok(pruned);
        }
        tx.execute("DELETE FROM payloads WHERE audit_id <= ?1", [last_id])?;
        tx.execute("DELETE FROM nonces WHERE audit_id <= ?1", [last_id])?;
        // A request id lives as long as its audit row (PROTOCOL.md, "Request ids").
        tx.execute("DELETE FROM request_ids WHERE audit_id <= ?1", [last_id])?;
        tx.execute("DELETE FROM audit WHERE id <= ?1", [last_id])?;
        // A schema no remaining row names is not needed to verify the chain any more. A server that cached its
        // id sees this commit (`PRAGMA data_version`) and looks schemas up again.
        pruned.schemas = tx
            .execute(
                "DELETE FROM schemas WHERE NOT EXISTS (SELECT 1 FROM audit WHERE audit.schema_id = schemas.id)",
                [],
            )?
            .try_into()
            .unwrap_or(0);
        tx.execute(
            "INSERT INTO audit_checkpoints (time_us, last_row, last_hash, rows) VALUES (?1, ?2, ?3, ?4)",
            params![now_us, last_id, last_hash, i64::try_from(rows).unwrap_or(i64::MAX)],
        )?;
        // Pruning is itself an action on the trail: the first row after the checkpoint says who cut what.
        let detail = format!("removed rows #{} to #{last_id}", first.0);
        AuditEntry {
            detail: Some(&detail),
            records: rows,
            ..AuditEntry::admin("audit_prune", None, now_us)
        }
        .insert(&tx, None, None)?;
        tx.commit()?;
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{AuditEntry, AuditFilter, ChainBreak, Nonce, Status, Store};

    /// A store with ten accepted requests at times 10, 20, … 100 µs, each with a payload and a nonce.
    fn ten_requests() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        for i in 1..=10 {
            let nonce = format!("nonce-{i:010}");
            let entry = AuditEntry::test_send(i * 10);
            let nonce = Nonce {
                nonce: &nonce,
                timestamp: i,
                signature: "sig",
                request_id: None,
            };
            store
                .commit_accepted(&entry, &nonce, &format!("[{i}]"))
                .unwrap();
        }
        store
    }

    fn ids(store: &Store) -> Vec<i64> {
        store
            .query_audit(&AuditFilter::default())
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn a_row_newer_than_the_cut_is_never_removed_even_when_the_clock_went_back() {
        let mut store = ten_requests();
        // Row 11 was written with a clock that had gone back to 54 µs: before the cut by time, newest by id. Taking
        // "the newest row before the cut by time" as the end of the prefix would remove rows 6-10 (60-100 µs).
        store
            .record(&AuditEntry {
                status: Status::Rejected,
                reason: Some("bad_signature"),
                records: 0,
                ..AuditEntry::test_send(54)
            })
            .unwrap();
        let pruned = store.prune_audit(55, 1_000, false).unwrap();
        assert_eq!(
            pruned.rows, 5,
            "rows 1-5 (times 10-50) go; row 6 (time 60) and everything after stay"
        );
        let left: Vec<i64> = store
            .query_audit(&AuditFilter::default())
            .unwrap()
            .iter()
            .map(|row| row.time_us)
            .collect();
        assert!(left.starts_with(&[60, 70, 80, 90, 100, 54]), "{left:?}");
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn a_dry_run_counts_and_removes_nothing() {
        let mut store = ten_requests();
        let pruned = store.prune_audit(45, 1000, true).unwrap();
        assert_eq!((pruned.rows, pruned.payloads, pruned.nonces), (4, 4, 4));
        assert_eq!(pruned.range, Some(((1, 10), (4, 40))));
        assert_eq!(ids(&store).len(), 10);
    }

    #[test]
    fn after_pruning_the_rest_still_verifies_from_the_checkpoint() {
        let mut store = ten_requests();
        let (row4_hash,): (String,) = store
            .conn
            .query_row("SELECT hash FROM audit WHERE id = 4", [], |r| {
                Ok((r.get(0)?,))
            })
            .unwrap();
        let pruned = store.prune_audit(45, 1000, false).unwrap();
        assert_eq!(pruned.rows, 4);
        assert_eq!(
            ids(&store),
            [5, 6, 7, 8, 9, 10, 11],
            "row 11 records the prune"
        );
        let checkpoint: (i64, String, i64) = store
            .conn
            .query_row(
                "SELECT last_row, last_hash, rows FROM audit_checkpoints",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(checkpoint, (4, row4_hash.clone(), 4));
        let payloads: i64 = store
            .conn
            .query_row("SELECT count(*) FROM payloads", [], |r| r.get(0))
            .unwrap();
        assert_eq!(payloads, 6);
        assert!(
            store
                .find_nonce("ZK1", "nonce-0000000004")
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .find_nonce("ZK1", "nonce-0000000005")
                .unwrap()
                .is_some()
        );

        let verified = store.verify_audit(None).unwrap().unwrap();
        assert_eq!(verified.rows, 7);
        let (head_row, head_hash) = verified.head.clone().unwrap();
        assert!(
            store
                .verify_audit(Some((head_row, &head_hash)))
                .unwrap()
                .is_ok()
        );
        assert!(
            store.verify_audit(Some((4, &row4_hash))).unwrap().is_ok(),
            "a head equal to the checkpoint still verifies"
        );
        // Pruning again later chains on from the first checkpoint.
        store.prune_audit(75, 2000, false).unwrap();
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn a_head_that_was_pruned_is_reported_as_pruned() {
        let mut store = ten_requests();
        let (row2_hash,): (String,) = store
            .conn
            .query_row("SELECT hash FROM audit WHERE id = 2", [], |r| {
                Ok((r.get(0)?,))
            })
            .unwrap();
        store.prune_audit(45, 1000, false).unwrap();
        let broken = store
            .verify_audit(Some((2, &row2_hash)))
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(broken, ChainBreak::HeadPruned { row: 2, through: 4 }),
            "{broken}"
        );
        assert!(broken.to_string().contains("pruned"), "{broken}");
    }

    #[test]
    fn tampering_after_a_prune_is_still_caught() {
        let mut store = ten_requests();
        store.prune_audit(45, 1000, false).unwrap();
        store
            .conn
            .execute_batch("UPDATE audit SET records = 99 WHERE id = 7")
            .unwrap();
        let broken = store.verify_audit(None).unwrap().unwrap_err();
        assert!(
            matches!(broken, ChainBreak::Altered { id: 7, .. }),
            "{broken}"
        );

        let mut store = ten_requests();
        store.prune_audit(45, 1000, false).unwrap();
        store
            .conn
            .execute_batch(
                "DELETE FROM payloads WHERE audit_id = 5; DELETE FROM audit WHERE id = 5",
            )
            .unwrap();
        let broken = store.verify_audit(None).unwrap().unwrap_err();
        assert!(
            matches!(broken, ChainBreak::Link { id: 6, .. }),
            "deleting the first row after the checkpoint breaks the link: {broken}"
        );
    }

    #[test]
    fn pruning_everything_leaves_a_chain_that_new_rows_continue() {
        let mut store = ten_requests();
        assert_eq!(store.prune_audit(1000, 2000, false).unwrap().rows, 10);
        store
            .add_key("ZK2", "secret-secret-secret", None, 3000)
            .unwrap();
        let verified = store.verify_audit(None).unwrap().unwrap();
        assert_eq!(verified.rows, 2, "the prune row and the new key");
        assert_eq!(
            store.prune_audit(5, 4000, false).unwrap().rows,
            0,
            "nothing older"
        );
    }
}
