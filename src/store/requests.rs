//! The SQLite side of the server's seam ([`RequestStore`]): a group of requests' rows (audit rows, payloads,
//! nonces) in one durable transaction, and the nonce bookkeeping that refuses replays across restarts and
//! recognises retries.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{
    AuditEntry, Committed, Nonce, RequestGroup, RequestStore, SeenId, SeenNonce, Store, StoreError,
    StoredKey, pending, schemas::remember_schema, sqlite_chain,
};

impl RequestStore for Store {
    type Group<'s> = Batch<'s>;

    /// The transaction takes the write lock at once (`BEGIN IMMEDIATE`), in a file that is still the store's.
    fn begin_group(&mut self) -> Result<Batch<'_>, StoreError> {
        Store::still_in_place(self)?;
        // Cached statements rather than rusqlite's Transaction, which parses BEGIN and COMMIT again for every
        // group (about 11,000 instructions a group under callgrind).
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let batch = Batch {
            conn: &self.conn,
            master: self.master.as_ref(),
            open: true,
            next_link: None,
            schema_ids: &mut self.schema_ids,
            new_schema_ids: Vec::new(),
            unsettled: &mut self.unsettled,
            pending_allowed: &mut self.pending_allowed,
            pending_rows: 0,
            settled_all: false,
        };
        // Read under the write lock, so nobody can commit between this check and the group's own writes.
        let version: i64 = batch
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if version != self.data_version {
            batch.schema_ids.clear();
            self.data_version = version;
        }
        Ok(batch)
    }

    fn still_in_place(&self) -> Result<(), StoreError> {
        Store::still_in_place(self)
    }

    fn widen_nonce_window(&mut self, max_skew_secs: i64) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached(WIDEN_NONCE_WINDOW)?
            .query_row([max_skew_secs], |row| row.get(0))?)
    }

    /// Servers sharing a SQLite file share the host's clock, which is the store's.
    fn prune_nonces(&mut self, margin_secs: i64) -> Result<usize, StoreError> {
        Ok(self.conn.prepare_cached(PRUNE_NONCES)?.execute(params![
            crate::timestamp::now_seconds(),
            margin_secs,
            crate::cli::MAX_SKEW_LIMIT_SECS
        ])?)
    }

    fn answers(&mut self) -> Result<(), StoreError> {
        self.still_in_place()
    }

    fn size_on_disk(&mut self) -> Result<u64, StoreError> {
        self.file_sizes()
    }

    fn unsettled(&self) -> usize {
        self.unsettled
    }

    fn settle(&mut self, wait_for_lock: bool) -> Result<Option<usize>, StoreError> {
        if wait_for_lock {
            return Store::settle(self).map(Some);
        }
        match self.settle_within(std::time::Duration::ZERO) {
            Err(StoreError::Sqlite(e)) if super::is_busy(&e) => Ok(None),
            other => other.map(Some),
        }
    }
}

/// Raises the recorded nonce window to ?1 if that is larger, in one statement (SQLite's write lock makes it
/// atomic); returns the window recorded after it.
const WIDEN_NONCE_WINDOW: &str = "INSERT INTO nonce_window (id, max_skew_secs) VALUES (1, ?1)
     ON CONFLICT (id) DO UPDATE SET max_skew_secs = max(max_skew_secs, excluded.max_skew_secs)
     RETURNING max_skew_secs";

/// Forgets nonces older than the host's clock (?1) minus the recorded window and a margin (?2). Should the
/// window's row be gone, the largest window any server may use (?3) stands in, which forgets nothing needed.
const PRUNE_NONCES: &str = "DELETE FROM nonces WHERE timestamp < ?1 - ?2
     - COALESCE((SELECT max_skew_secs FROM nonce_window), ?3)";

impl Store {
    /// The nonce window recorded in the store: the largest `--max-skew` a server has run with on it.
    pub fn nonce_window(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT max_skew_secs FROM nonce_window", [], |row| {
                row.get(0)
            })?)
    }
}

#[cfg(test)]
impl Store {
    /// The accepted request that used this nonce with this key, read outside any group (for tests).
    pub(crate) fn find_nonce(
        &self,
        key_id: &str,
        nonce: &str,
    ) -> Result<Option<SeenNonce>, StoreError> {
        find_nonce(&self.conn, key_id, nonce)
    }

    /// The accepted request that carried this request id with this key, read outside any group (for tests).
    pub(crate) fn request_id_of(
        &self,
        key_id: &str,
        id: &str,
    ) -> Result<Option<SeenId>, StoreError> {
        find_request_id(&self.conn, key_id, id)
    }

    /// Stores one accepted request in a group of its own (for tests).
    pub(crate) fn commit_accepted(
        &mut self,
        entry: &AuditEntry,
        nonce: &Nonce,
        payload_json: &str,
    ) -> Result<Committed, StoreError> {
        let mut group = self.begin_group()?;
        let committed = group.append_accepted(entry, nonce, payload_json)?;
        group.commit()?;
        // Where the readers these tests call look for it.
        self.settle()?;
        Ok(committed)
    }
}

/// The SQLite group: a write transaction holding the rows of several requests; nothing is durable until
/// [`RequestGroup::commit`], and dropping it rolls everything back.
pub struct Batch<'s> {
    conn: &'s rusqlite::Connection,
    /// The master key of a sealed store, which opens the secrets the group reads.
    master: Option<&'s crate::sealed::MasterKey>,
    /// True until the transaction is committed; dropped while open, it is rolled back.
    open: bool,
    /// Where the group's next audit row goes, once a row of the group has been written: the group holds the
    /// write lock and only its own rows go into `audit`, so the link is carried from row to row instead of read
    /// from the table for each (natively 0.7 % of serve's CPU: the query's pages are cold after each payload).
    /// `None` at the start, and after a failed write, which reads it again.
    next_link: Option<sqlite_chain::Link>,
    /// The store's ids of schemas already committed; a schema seen before costs no statement.
    schema_ids: &'s mut HashMap<String, i64>,
    /// Schemas this batch resolved that are not committed yet: added to `schema_ids` only if it commits.
    new_schema_ids: Vec<(String, i64)>,
    /// The store's count of pending rows this connection committed and has not settled since.
    unsettled: &'s mut usize,
    /// Whether small requests may go into `pending` ([`Store`]'s `pending_allowed`); set again when this group
    /// settles and commits, which shows settling works.
    pending_allowed: &'s mut bool,
    /// Pending rows this group wrote since it last settled (or began).
    pending_rows: usize,
    /// True once this group settled every pending row, other servers' included.
    settled_all: bool,
}

impl RequestGroup for Batch<'_> {
    fn key(&mut self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.still_open()?;
        let found = super::keys::find_key(self.conn, id, self.master);
        match (found, self.master) {
            // A store resealed since this server started says so, rather than blaming the row.
            (Err(e @ StoreError::Seal(_)), Some(held)) => Err(super::secrets::explain_unopened(
                e,
                super::sealing::sealed_under(self.conn)?,
                held,
            )),
            (found, _) => found,
        }
    }

    fn nonce(&mut self, key_id: &str, nonce: &str) -> Result<Option<SeenNonce>, StoreError> {
        self.still_open()?;
        find_nonce(self.conn, key_id, nonce)
    }

    fn request_id(&mut self, key_id: &str, id: &str) -> Result<Option<SeenId>, StoreError> {
        self.still_open()?;
        find_request_id(self.conn, key_id, id)
    }

    /// The key's last use is read from the audit trail, not written here: one page fewer to make durable per
    /// request.
    fn append_accepted(
        &mut self,
        entry: &AuditEntry,
        nonce: &Nonce,
        payload_json: &str,
    ) -> Result<Committed, StoreError> {
        self.still_open()?;
        let schema_id = self.schema_id(entry)?;
        let link = self.take_link()?;
        // The nonce goes first, under the id the audit row will get, so a reused nonce leaves nothing to undo.
        // The primary key refuses it even if two servers share the store.
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO nonces (key_id, nonce, timestamp, audit_id, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                entry.key_id.unwrap_or_default(),
                nonce.nonce,
                nonce.timestamp,
                link.id,
                nonce.signature
            ])?;
        if inserted == 0 {
            self.next_link = Some(link);
            return Ok(Committed::Replay);
        }
        if let Some(request_id) = &nonce.request_id {
            let inserted = self
                .conn
                .prepare_cached(
                    "INSERT INTO request_ids (key_id, id, audit_id, payload_digest)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    entry.key_id.unwrap_or_default(),
                    request_id.id,
                    link.id,
                    request_id.payload_digest
                ])?;
            if inserted == 0 {
                // The group's checks read the id under the write lock, so only a second use inside the group
                // gets here: take back the nonce, so nothing of this request is kept.
                self.conn
                    .prepare_cached("DELETE FROM nonces WHERE key_id = ?1 AND nonce = ?2")?
                    .execute(params![entry.key_id.unwrap_or_default(), nonce.nonce])?;
                self.next_link = Some(link);
                return Ok(Committed::Replay);
            }
        }
        let after = if *self.pending_allowed && payload_json.len() <= pending::MAX_PAYLOAD {
            let after = entry.insert_pending_at(self.conn, &link, schema_id, payload_json)?;
            self.pending_rows += 1;
            after
        } else {
            self.settle_before_direct_row()?;
            entry.insert_at(self.conn, &link, schema_id, Some(payload_json))?
        };
        self.next_link = Some(after);
        Ok(Committed::Stored(link.id))
    }

    fn append(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        self.still_open()?;
        let schema_id = self.schema_id(entry)?;
        let link = self.take_link()?;
        self.settle_before_direct_row()?;
        self.next_link = Some(entry.insert_at(self.conn, &link, schema_id, None)?);
        Ok(link.id)
    }

    fn commit(mut self) -> Result<(), StoreError> {
        self.still_open()?;
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        // A committed id stays right until another connection deletes schemas (audit prune), which begin_group
        // notices through PRAGMA data_version.
        let new = std::mem::take(&mut self.new_schema_ids);
        self.schema_ids.extend(new);
        if self.settled_all {
            *self.unsettled = self.pending_rows;
            *self.pending_allowed = true;
        } else {
            *self.unsettled += self.pending_rows;
        }
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing of an uncommitted group is kept. A failed COMMIT may have ended the transaction already,
            // and then ROLLBACK has nothing to undo: its error is of no interest.
            let _ = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut rollback| rollback.execute([]));
        }
    }
}

impl Batch<'_> {
    /// Fails once SQLite has rolled the group's transaction back on its own (it does after some I/O and memory
    /// errors, which the checks turn into one request's refusal and go on): a write after that would commit by
    /// itself, and the group would be answered `internal` with some of its rows kept.
    fn still_open(&self) -> Result<(), StoreError> {
        if self.conn.is_autocommit() {
            Err(StoreError::TransactionLost)
        } else {
            Ok(())
        }
    }

    /// Where the next audit row goes: carried from the group's last row, or read from the table for its first. Taken,
    /// so that a write that fails leaves none behind and the next one reads the table again.
    fn take_link(&mut self) -> Result<sqlite_chain::Link, StoreError> {
        match self.next_link.take() {
            Some(link) => Ok(link),
            None => Ok(sqlite_chain::next_link(self.conn)?),
        }
    }

    /// Settles the pending rows before a row goes into `audit` directly, so that `audit` has no gap below it: all
    /// of them the first time in the group (the group holds the write lock, so no one else adds any until it
    /// commits), then only when the group itself has added some since.
    fn settle_before_direct_row(&mut self) -> Result<(), StoreError> {
        if !self.settled_all || self.pending_rows > 0 {
            pending::settle(self.conn)?;
            self.settled_all = true;
            self.pending_rows = 0;
        }
        Ok(())
    }

    /// The `schemas` row of the entry's schema, added if new; a schema seen before costs no statement.
    fn schema_id(&mut self, entry: &AuditEntry) -> Result<Option<i64>, StoreError> {
        let Some(schema) = entry.schema else {
            return Ok(None);
        };
        let fingerprint = &schema.fingerprint;
        let known = self.schema_ids.get(fingerprint).copied().or_else(|| {
            let new = self.new_schema_ids.iter().find(|(f, _)| f == fingerprint);
            new.map(|(_, id)| *id)
        });
        if let Some(id) = known {
            return Ok(Some(id));
        }
        let id = remember_schema(self.conn, schema, entry.time_us)?;
        self.new_schema_ids.push((fingerprint.clone(), id));
        Ok(Some(id))
    }
}

/// The accepted request that used this nonce with this key, if it is still inside the replay window.
fn find_nonce(
    conn: &rusqlite::Connection,
    key_id: &str,
    nonce: &str,
) -> Result<Option<SeenNonce>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.audit_id, n.signature, coalesce(a.records, p.records) FROM nonces n
         LEFT JOIN audit a ON a.id = n.audit_id LEFT JOIN pending p ON p.audit_id = n.audit_id
         WHERE n.key_id = ?1 AND n.nonce = ?2 AND (a.id IS NOT NULL OR p.audit_id IS NOT NULL)",
    )?;
    Ok(stmt
        .query_row([key_id, nonce], |row| {
            Ok(SeenNonce {
                audit_id: row.get(0)?,
                signature: row.get(1)?,
                records: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
            })
        })
        .optional()?)
}

/// The accepted request that carried this request id with this key, while its audit row is kept.
fn find_request_id(
    conn: &rusqlite::Connection,
    key_id: &str,
    id: &str,
) -> Result<Option<SeenId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.audit_id, r.payload_digest, coalesce(a.records, p.records) FROM request_ids r
         LEFT JOIN audit a ON a.id = r.audit_id LEFT JOIN pending p ON p.audit_id = r.audit_id
         WHERE r.key_id = ?1 AND r.id = ?2 AND (a.id IS NOT NULL OR p.audit_id IS NOT NULL)",
    )?;
    Ok(stmt
        .query_row([key_id, id], |row| {
            Ok(SeenId {
                audit_id: row.get(0)?,
                payload_digest: row.get(1)?,
                records: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
            })
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditFilter, RequestId, Status};

    fn nonce(nonce: &str, timestamp: i64) -> Nonce<'_> {
        Nonce {
            nonce,
            timestamp,
            signature: "sig",
            request_id: None,
        }
    }

    fn accepted(time_us: i64) -> AuditEntry<'static> {
        AuditEntry {
            records: 2,
            size: 100,
            ..AuditEntry::test_send(time_us)
        }
    }

    #[test]
    fn a_nonce_commits_once_and_its_payload_is_kept() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .add_key("ZK1", "secret-secret-secret", None, 1)
            .unwrap();
        assert_eq!(store.find_nonce("ZK1", "n1").unwrap(), None);
        let Committed::Stored(id) = store
            .commit_accepted(&accepted(5), &nonce("n1", 100), "[1,2]")
            .unwrap()
        else {
            panic!("first use of a nonce must be stored");
        };
        let seen = store.find_nonce("ZK1", "n1").unwrap().unwrap();
        assert_eq!(
            seen,
            SeenNonce {
                audit_id: id,
                signature: Some("sig".into()),
                records: 2
            }
        );
        assert_eq!(
            store
                .commit_accepted(&accepted(6), &nonce("n1", 100), "[3]")
                .unwrap(),
            Committed::Replay
        );

        let rows = store
            .query_audit(&AuditFilter {
                with_payload: true,
                status: Some(Status::Accepted),
                ..Default::default()
            })
            .unwrap();
        let sends: Vec<_> = rows.iter().filter(|r| r.action == "send").collect();
        assert_eq!(sends.len(), 1, "the replay left no row behind");
        assert_eq!(sends[0].id, id);
        assert_eq!(sends[0].payload.as_deref(), Some("[1,2]"));
        assert_eq!(store.list_keys().unwrap()[0].last_used_us, Some(5));
    }

    #[test]
    fn a_batch_commits_all_or_nothing_and_a_replay_inside_it_keeps_nothing_of_itself() {
        let mut store = Store::open_in_memory().unwrap();
        {
            let mut batch = store.begin_group().unwrap();
            batch
                .append_accepted(&accepted(1), &nonce("a", 100), "[1]")
                .unwrap();
            // Dropped without commit: rolled back.
        }
        assert!(store.find_nonce("ZK1", "a").unwrap().is_none());

        let mut batch = store.begin_group().unwrap();
        assert!(matches!(
            batch
                .append_accepted(&accepted(1), &nonce("a", 100), "[1]")
                .unwrap(),
            Committed::Stored(_)
        ));
        assert_eq!(
            batch
                .append_accepted(&accepted(2), &nonce("a", 100), "[2]")
                .unwrap(),
            Committed::Replay
        );
        assert!(matches!(
            batch
                .append_accepted(&accepted(3), &nonce("b", 100), "[3]")
                .unwrap(),
            Committed::Stored(_)
        ));
        batch.commit().unwrap();
        store.settle().unwrap();

        let payloads: Vec<_> = store
            .query_audit(&AuditFilter {
                with_payload: true,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .filter_map(|row| row.payload)
            .collect();
        assert_eq!(payloads, ["[1]", "[3]"]);
        assert!(
            store.verify_audit(None).unwrap().is_ok(),
            "the chain skips the rolled-back row cleanly"
        );
    }

    #[test]
    fn rows_of_one_group_follow_each_other_whatever_was_refused_or_replayed_between_them() {
        let mut store = Store::open_in_memory().unwrap();
        let with_id = |nonce: &'static str, id: &'static str| Nonce {
            request_id: Some(RequestId {
                id,
                payload_digest: "digest",
            }),
            ..self::nonce(nonce, 100)
        };
        let refused = |time_us| AuditEntry {
            status: Status::Rejected,
            reason: Some("bad_signature"),
            ..AuditEntry::test_send(time_us)
        };
        let mut ids = Vec::new();
        for round in 0..2 {
            let nonce = |n: &str| format!("{n}-{round}");
            let (a, b, c, d) = (nonce("a"), nonce("b"), nonce("c"), nonce("d"));
            let id = if round == 0 { "id-0" } else { "id-1" };
            let mut batch = store.begin_group().unwrap();
            ids.push(batch.append(&refused(1)).unwrap());
            let Committed::Stored(stored) = batch
                .append_accepted(
                    &accepted(2),
                    &Nonce {
                        nonce: &a,
                        ..with_id("", id)
                    },
                    "[1]",
                )
                .unwrap()
            else {
                panic!("a new nonce and id are stored");
            };
            ids.push(stored);
            // Replays of the nonce, then of the request id under a new nonce: neither writes a row.
            let replayed_nonce = Nonce {
                nonce: &a,
                ..self::nonce("", 100)
            };
            let replayed_id = Nonce {
                nonce: &b,
                ..with_id("", id)
            };
            for replay in [replayed_nonce, replayed_id] {
                let committed = batch.append_accepted(&accepted(3), &replay, "[2]").unwrap();
                assert_eq!(committed, Committed::Replay);
            }
            ids.push(batch.append(&refused(4)).unwrap());
            for n in [&c, &d] {
                let committed = batch
                    .append_accepted(
                        &accepted(5),
                        &Nonce {
                            nonce: n,
                            ..self::nonce("", 100)
                        },
                        "[3]",
                    )
                    .unwrap();
                let Committed::Stored(stored) = committed else {
                    panic!("{committed:?}");
                };
                ids.push(stored);
            }
            batch.commit().unwrap();
        }
        store.settle().unwrap();
        let first = ids[0];
        assert_eq!(
            ids,
            (first..first + 10).collect::<Vec<_>>(),
            "one id after the other"
        );
        let sends = store
            .query_audit(&AuditFilter::default())
            .unwrap()
            .into_iter()
            .filter(|row| row.action == "send")
            .count();
        assert_eq!(sends, 10, "no row for a replay");
        assert!(
            store.verify_audit(None).unwrap().is_ok(),
            "every row chained to the one before"
        );
    }

    #[test]
    fn pruning_forgets_only_old_nonces() {
        let mut store = Store::open_in_memory().unwrap();
        let now = crate::timestamp::now_seconds();
        store
            .commit_accepted(&accepted(1), &nonce("old", now - 1000), "[]")
            .unwrap();
        store
            .commit_accepted(&accepted(2), &nonce("new", now - 10), "[]")
            .unwrap();
        // The store's window is the default 300 s: 360 s with the margin.
        assert_eq!(store.prune_nonces(60).unwrap(), 1);
        assert!(store.find_nonce("ZK1", "old").unwrap().is_none());
        assert!(store.find_nonce("ZK1", "new").unwrap().is_some());
    }

    #[test]
    fn pruning_keeps_the_nonces_inside_the_recorded_window_whatever_the_servers_own_skew() {
        let mut store = Store::open_in_memory().unwrap();
        // A server with --max-skew 3000 started on the store, then one with 60.
        assert_eq!(store.widen_nonce_window(3000).unwrap(), 3000);
        assert_eq!(store.widen_nonce_window(60).unwrap(), 3000);
        let now = crate::timestamp::now_seconds();
        for (id, (name, age)) in [("inside", 2900), ("in-margin", 3050), ("outside", 3200)]
            .into_iter()
            .enumerate()
        {
            store
                .commit_accepted(&accepted(id as i64), &nonce(name, now - age), "[]")
                .unwrap();
        }
        // The server with --max-skew 60 prunes: by the recorded 3000 s plus a 100 s margin, not by its 60.
        assert_eq!(store.prune_nonces(100).unwrap(), 1);
        assert!(store.find_nonce("ZK1", "inside").unwrap().is_some());
        assert!(store.find_nonce("ZK1", "in-margin").unwrap().is_some());
        assert!(store.find_nonce("ZK1", "outside").unwrap().is_none());
    }

    #[test]
    fn the_recorded_nonce_window_never_decreases() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.nonce_window().unwrap(), 300, "the default --max-skew");
        for (skew, recorded) in [
            (60, 300),
            (300, 300),
            (1000, 1000),
            (600, 1000),
            (86_400, 86_400),
            (1, 86_400),
        ] {
            assert_eq!(store.widen_nonce_window(skew).unwrap(), recorded, "{skew}");
            assert_eq!(store.nonce_window().unwrap(), recorded, "{skew}");
        }
    }

    #[test]
    fn a_group_whose_transaction_sqlite_ended_writes_nothing_more() {
        let mut store = Store::open_in_memory().unwrap();
        let mut batch = store.begin_group().unwrap();
        batch
            .append_accepted(&accepted(1), &nonce("a", 100), "[1]")
            .unwrap();
        // What SQLite does by itself after some I/O and memory errors.
        batch.conn.execute_batch("ROLLBACK").unwrap();
        let lost = batch.append_accepted(&accepted(2), &nonce("b", 100), "[2]");
        assert!(matches!(lost, Err(StoreError::TransactionLost)), "{lost:?}");
        assert!(matches!(batch.commit(), Err(StoreError::TransactionLost)));
        assert!(store.find_nonce("ZK1", "a").unwrap().is_none());
        assert!(
            store.find_nonce("ZK1", "b").unwrap().is_none(),
            "no write committed on its own"
        );
    }
}
