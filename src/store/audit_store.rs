//! The seam between the `audit` subcommands and a store: reading, counting, verifying and pruning the audit
//! trail, and listing the schemas its rows name, in domain types, as a trait each backend implements.
//!
//! Object-safe, so the commands take `&mut dyn AuditStore` and run unchanged on whichever backend was opened.
//! Every method takes `&mut self`: a backend's connection may need it even to read (a PostgreSQL client does).

use std::ops::ControlFlow;

use super::{
    AuditCount, AuditFilter, AuditRow, ChainBreak, Pruned, SchemaRow, Store, StoreError, Verified,
};

/// What `audit query|stats|export|verify|head|prune|schemas` need of a store.
pub trait AuditStore {
    /// Calls `each` with the rows matching `filter`, oldest first, one at a time, so memory stays bounded however
    /// many rows match; stops early when `each` breaks. `--follow` calls it again and again with
    /// [`AuditFilter::after_id`] set to the last row it printed, so a backend must give rows in id order and
    /// never skip a committed row with a larger id than one it already gave.
    fn for_each_audit(
        &mut self,
        filter: &AuditFilter,
        each: &mut dyn FnMut(AuditRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// The newest audit row's id and hash, or `None` when the trail is empty.
    fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError>;

    /// Checks the whole hash chain, over one consistent snapshot; with `against`
    /// (row id, hash), also that a recorded head is still in it.
    fn verify_audit(
        &mut self,
        against: Option<(i64, &str)>,
    ) -> Result<Result<Verified, ChainBreak>, StoreError>;

    /// Requests (action `send`) with time in `[since_us, until_us)` counted by key, status, reason and server,
    /// sorted by key, status, reason, then server (`None` first).
    fn count_audit(
        &mut self,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<AuditCount>, StoreError>;

    /// Removes the rows before the first one written at or after `before_us` (a prefix of the chain), with their
    /// payloads and nonces and the schemas no row names any more, leaving a checkpoint and an `audit_prune` row
    /// at `now_us`, in one transaction; with `dry_run`, only counts.
    fn prune_audit(
        &mut self,
        before_us: i64,
        now_us: i64,
        dry_run: bool,
    ) -> Result<Pruned, StoreError>;

    /// The schemas whose fingerprint starts with `prefix` (hex, any case; taken literally, no wildcards), in the
    /// order they were first seen.
    fn schemas_matching(&mut self, prefix: &str) -> Result<Vec<SchemaRow>, StoreError>;

    /// Every schema seen, in the order they were first seen.
    fn list_schemas(&mut self) -> Result<Vec<SchemaRow>, StoreError> {
        // Every fingerprint starts with the empty prefix.
        self.schemas_matching("")
    }
}

impl dyn AuditStore + '_ {
    /// [`AuditStore::for_each_audit`] with a callback that can fail: stops at the first error `each` returns,
    /// and returns it.
    pub fn try_for_each_audit<E: From<StoreError>>(
        &mut self,
        filter: &AuditFilter,
        mut each: impl FnMut(AuditRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut failed = None;
        self.for_each_audit(filter, &mut |row| match each(row) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}

/// Every read settles the pending rows first (`pending`): a long-running reader such as `audit query --follow`
/// sees each acknowledged request without waiting for a server to settle it. A settlement that fails (a full
/// disk, a lock held long) leaves the read to go on without those rows; [`Store::pending_not_shown`] says so.
impl AuditStore for Store {
    fn for_each_audit(
        &mut self,
        filter: &AuditFilter,
        each: &mut dyn FnMut(AuditRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.settle_for_readers();
        match Store::for_each_audit(self, filter, |row| match each(row) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(Walk::Stopped),
        }) {
            Ok(()) | Err(Walk::Stopped) => Ok(()),
            Err(Walk::Failed(e)) => Err(e),
        }
    }

    fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        self.settle_for_readers();
        Store::audit_head(self)
    }

    fn verify_audit(
        &mut self,
        against: Option<(i64, &str)>,
    ) -> Result<Result<Verified, ChainBreak>, StoreError> {
        self.settle_for_readers();
        Store::verify_audit(self, against)
    }

    fn count_audit(
        &mut self,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        self.settle_for_readers();
        Store::count_audit(self, since_us, until_us)
    }

    fn prune_audit(
        &mut self,
        before_us: i64,
        now_us: i64,
        dry_run: bool,
    ) -> Result<Pruned, StoreError> {
        Store::prune_audit(self, before_us, now_us, dry_run)
    }

    fn schemas_matching(&mut self, prefix: &str) -> Result<Vec<SchemaRow>, StoreError> {
        self.settle_for_readers();
        Store::schemas_matching(self, prefix)
    }
}

/// How the SQLite walk ended early: the caller's callback broke, or the store failed.
enum Walk {
    Stopped,
    Failed(StoreError),
}

impl From<StoreError> for Walk {
    fn from(e: StoreError) -> Self {
        Walk::Failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditEntry;

    /// A store with rows at times 1..=5, seen only through the seam.
    fn five_rows() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        for time_us in 1..=5 {
            store.record(&AuditEntry::test_send(time_us)).unwrap();
        }
        store
    }

    #[test]
    fn a_walk_stops_where_the_callback_breaks_or_fails() {
        let mut sqlite = five_rows();
        let store: &mut dyn AuditStore = &mut sqlite;
        let mut seen = Vec::new();
        store
            .for_each_audit(&AuditFilter::default(), &mut |row| {
                seen.push(row.id);
                if row.id == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(seen, [1, 2, 3]);

        #[derive(Debug)]
        enum Failed {
            At(i64),
            Store,
        }
        impl From<StoreError> for Failed {
            fn from(_: StoreError) -> Self {
                Failed::Store
            }
        }
        let mut seen = Vec::new();
        let result = store.try_for_each_audit(
            &AuditFilter {
                after_id: Some(1),
                ..Default::default()
            },
            |row| {
                seen.push(row.id);
                if row.id == 4 {
                    Err(Failed::At(4))
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(result, Err(Failed::At(4))), "{result:?}");
        assert_eq!(seen, [2, 3, 4]);
        assert!(
            store
                .try_for_each_audit(&AuditFilter::default(), |_| Ok::<_, Failed>(()))
                .is_ok()
        );
    }

    #[test]
    fn head_verify_count_and_prune_work_through_the_seam() {
        let mut sqlite = five_rows();
        let store: &mut dyn AuditStore = &mut sqlite;
        let (row, hash) = store.audit_head().unwrap().unwrap();
        assert_eq!(row, 5);
        let verified = store.verify_audit(Some((row, &hash))).unwrap().unwrap();
        assert_eq!(verified.rows, 5);
        let counts = store.count_audit(Some(2), None).unwrap();
        assert_eq!(
            counts.iter().map(|c| c.requests).sum::<u64>(),
            4,
            "times 2 to 5"
        );
        let pruned = store.prune_audit(3, 10, false).unwrap();
        assert_eq!(pruned.rows, 2);
        assert!(store.verify_audit(Some((row, &hash))).unwrap().is_ok());
        assert!(store.list_schemas().unwrap().is_empty());
        assert!(store.schemas_matching("ab").unwrap().is_empty());
    }
}
