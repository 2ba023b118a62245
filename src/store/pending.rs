//! Accepted requests acknowledged before their rows reach the audit tables (migration 13, `pending`).
//!
//! A small request's durable acknowledgement is mostly fixed cost: its audit row touches the table, five
//! indexes, `payloads` and the id counter, nine pages made durable for some 200 bytes of data. A request whose
//! payload is at most [`MAX_PAYLOAD`] is instead committed as one `pending` row (beside its nonce, and its request
//! id if it has one): the audit row it will become, already numbered and hash-chained, with its payload. The rows
//! are [settled](settle) into `audit` and `payloads`, in id order and in one statement each, later:
//!
//! - by the server, once [`SETTLE_AFTER`] of its rows wait, when it is idle, and when it stops;
//! - in the same transaction, before any row goes into `audit` directly (a refusal, a larger request, a key
//!   command), so `audit` never has a gap below its newest row;
//! - when any command opens the store, so every reader (`audit`, `keys list`, `store copy`, …) sees every
//!   acknowledged request, and rows left by a server that was killed are settled by whoever comes next.
//!
//! Every pending id is above every `audit` id (a direct insert settles first), so the chain's newest link is the
//! newest pending row when there is one. Replays stay refused exactly: the nonce (and request id) rows are
//! written at the acknowledgement, as before, and the lookups read a pending row where the audit row is not yet.

use rusqlite::Connection;

/// Largest payload (its JSON text, in bytes) committed as a pending row. Larger payloads write pages of their own
/// whichever way they go, and a pending row would write them twice.
pub const MAX_PAYLOAD: usize = 8 * 1024;

/// How many pending rows a server commits before it settles them, when it is never idle: each settlement writes
/// the rows' audit and index entries together (a few pages for all of them) at the cost of one pause.
pub const SETTLE_AFTER: usize = 32;

/// Whether any row is pending.
pub fn any(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM pending)")?
        .query_row([], |row| row.get(0))
}

/// Moves every pending row into `audit` and `payloads`, in id order, and returns how many there were. The caller
/// holds a write transaction.
pub fn settle(conn: &Connection) -> rusqlite::Result<usize> {
    // A cheap read first: most calls find nothing, and the statements below would each still run.
    if !any(conn)? {
        return Ok(0);
    }
    // AUTOINCREMENT raises the id counter to each explicit id, as if the rows had been inserted one by one.
    let moved = conn
        .prepare_cached(
            "INSERT INTO audit (id, time_us, action, status, reason, detail, key_id, peer, records, size,
                                payload_sha256, schema_id, prev_hash, hash, requests, transport, server)
             SELECT audit_id, time_us, action, status, reason, detail, key_id, peer, records, size,
                    payload_sha256, schema_id, prev_hash, hash, requests, transport, server
             FROM pending ORDER BY audit_id",
        )?
        .execute([])?;
    conn.prepare_cached(
        "INSERT INTO payloads (audit_id, json) SELECT audit_id, json FROM pending ORDER BY audit_id",
    )?
    .execute([])?;
    conn.prepare_cached("DELETE FROM pending")?.execute([])?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        avro::SchemaFingerprint,
        store::{
            AuditEntry, AuditStore, Committed, Nonce, RequestGroup, RequestId, RequestStore,
            SeenNonce, Status, Store,
        },
    };

    fn nonce(nonce: &str) -> Nonce<'_> {
        Nonce {
            nonce,
            timestamp: crate::timestamp::now_seconds(),
            signature: "sig",
            request_id: None,
        }
    }

    /// Commits one small accepted request (`test_send(time_us)`, `nonce`, `payload`) in a group of its own.
    fn acknowledge(store: &mut Store, time_us: i64, nonce: &str, payload: &str) {
        let mut group = store.begin_group().unwrap();
        let committed = group
            .append_accepted(
                &AuditEntry::test_send(time_us),
                &self::nonce(nonce),
                payload,
            )
            .unwrap();
        assert!(matches!(committed, Committed::Stored(_)), "{committed:?}");
        group.commit().unwrap();
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    /// Every audit row with its payload, as (id, prev_hash, hash, payload).
    fn trail(store: &Store) -> Vec<(i64, String, String, Option<String>)> {
        let mut stmt = store
            .conn
            .prepare(
                "SELECT a.id, a.prev_hash, a.hash, p.json FROM audit a
                 LEFT JOIN payloads p ON p.audit_id = a.id ORDER BY a.id",
            )
            .unwrap();
        stmt.query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn schema() -> &'static SchemaFingerprint {
        let text = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}"#;
        Box::leak(Box::new(SchemaFingerprint::of(
            &apache_avro::Schema::parse_str(text).unwrap(),
            text,
        )))
    }

    #[test]
    fn a_small_request_is_one_pending_row_that_settles_into_the_audit_row_a_direct_write_makes() {
        let entries = [
            AuditEntry::test_send(10),
            AuditEntry {
                schema: Some(schema()),
                records: 3,
                ..AuditEntry::test_send(20)
            },
            AuditEntry::test_send(30),
        ];
        let payloads = ["[1]", "[2,3,4]", "[5]"];

        let mut through_pending = Store::open_in_memory().unwrap();
        let mut group = through_pending.begin_group().unwrap();
        for (i, (entry, payload)) in entries.iter().zip(payloads).enumerate() {
            let n = format!("n{i}");
            let committed = group.append_accepted(entry, &nonce(&n), payload).unwrap();
            assert_eq!(committed, Committed::Stored(i as i64 + 1));
        }
        group.commit().unwrap();
        assert_eq!(count(&through_pending, "pending"), 3);
        assert_eq!(
            count(&through_pending, "audit"),
            0,
            "acknowledged as pending"
        );
        assert_eq!(through_pending.unsettled(), 3);

        assert_eq!(through_pending.settle().unwrap(), 3);
        assert_eq!(count(&through_pending, "pending"), 0);
        assert_eq!(through_pending.unsettled(), 0);

        // The same rows written straight into `audit`, as every row was before pending rows.
        let direct = Store::open_in_memory().unwrap();
        for (entry, payload) in entries.iter().zip(payloads) {
            let schema_id = entry.schema.map(|s| {
                crate::store::schemas::remember_schema(&direct.conn, s, entry.time_us).unwrap()
            });
            entry
                .insert(&direct.conn, schema_id, Some(payload))
                .unwrap();
        }
        assert_eq!(
            trail(&through_pending),
            trail(&direct),
            "ids, links and payloads"
        );
        assert!(through_pending.verify_audit(None).unwrap().is_ok());
        let counter = |store: &Store| -> i64 {
            store
                .conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
                    [],
                    |row| row.get(0),
                )
                .unwrap()
        };
        assert_eq!(
            counter(&through_pending),
            3,
            "the id counter moved with the rows"
        );
    }

    #[test]
    fn while_pending_a_request_refuses_its_replays_and_recognises_its_retries() {
        let mut store = Store::open_in_memory().unwrap();
        let first = Nonce {
            request_id: Some(RequestId {
                id: "req-1",
                payload_digest: "digest",
            }),
            ..nonce("n1")
        };
        let entry = AuditEntry {
            records: 2,
            ..AuditEntry::test_send(10)
        };
        let mut group = store.begin_group().unwrap();
        assert_eq!(
            group.append_accepted(&entry, &first, "[1,2]").unwrap(),
            Committed::Stored(1)
        );
        group.commit().unwrap();
        assert_eq!(count(&store, "audit"), 0);

        let mut group = store.begin_group().unwrap();
        assert_eq!(
            group.nonce("ZK1", "n1").unwrap(),
            Some(SeenNonce {
                audit_id: 1,
                signature: Some("sig".into()),
                records: 2
            }),
            "a retry is answered with the pending row's id and records"
        );
        let seen = group.request_id("ZK1", "req-1").unwrap().unwrap();
        assert_eq!((seen.audit_id, seen.records), (1, 2));
        assert_eq!(
            group.append_accepted(&entry, &nonce("n1"), "[9]").unwrap(),
            Committed::Replay,
            "the nonce is taken"
        );
        let resigned = Nonce {
            nonce: "n2",
            ..first
        };
        assert_eq!(
            group.append_accepted(&entry, &resigned, "[1,2]").unwrap(),
            Committed::Replay,
            "the request id is taken"
        );
        group.commit().unwrap();
        assert_eq!(count(&store, "pending"), 1, "replays keep nothing");
    }

    #[test]
    fn a_row_written_straight_into_audit_settles_the_pending_rows_before_it() {
        let mut store = Store::open_in_memory().unwrap();
        acknowledge(&mut store, 1, "a", "[1]");

        // A refusal in a later group, then a small request, then a payload too large to be pending.
        let large = format!("[\"{}\"]", "x".repeat(MAX_PAYLOAD));
        let mut group = store.begin_group().unwrap();
        let refused = AuditEntry {
            status: Status::Rejected,
            reason: Some("bad_signature"),
            ..AuditEntry::test_send(2)
        };
        assert_eq!(group.append(&refused).unwrap(), 2);
        group
            .append_accepted(&AuditEntry::test_send(3), &nonce("b"), "[3]")
            .unwrap();
        group
            .append_accepted(&AuditEntry::test_send(4), &nonce("c"), &large)
            .unwrap();
        group.commit().unwrap();
        let ids: Vec<i64> = trail(&store).into_iter().map(|row| row.0).collect();
        assert_eq!(ids, [1, 2, 3, 4], "no gap below the newest audit row");
        assert_eq!(count(&store, "pending"), 0);
        assert_eq!(store.unsettled(), 0);

        // A command's own row (key_add) settles too.
        acknowledge(&mut store, 5, "d", "[5]");
        store
            .add_key("ZK2", "secret-secret-secret", None, 6)
            .unwrap();
        let ids: Vec<i64> = trail(&store).into_iter().map(|row| row.0).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn rows_left_pending_by_a_server_that_died_are_settled_by_whoever_opens_the_store_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zavro.db");
        {
            let mut server = Store::open(&path).unwrap();
            let mut group = server.begin_group().unwrap();
            for n in ["a", "b", "c"] {
                group
                    .append_accepted(&AuditEntry::test_send(1), &nonce(n), "[1]")
                    .unwrap();
            }
            group.commit().unwrap();
            // Gone without settling, as a server killed right after its acknowledgements.
            assert_eq!(count(&server, "pending"), 3);
        }
        let reader = Store::open_existing(&path).unwrap();
        assert_eq!(count(&reader, "pending"), 0);
        assert_eq!(trail(&reader).len(), 3);
        assert!(reader.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn every_read_through_the_audit_seam_sees_the_pending_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zavro.db");
        let mut server = Store::open(&path).unwrap();
        let mut reader = Store::open_existing(&path).unwrap();
        acknowledge(&mut server, 1, "a", "[1]");
        // The reader was opened before the row was written, as `audit query --follow` is.
        assert_eq!(AuditStore::audit_head(&mut reader).unwrap().unwrap().0, 1);
        assert_eq!(count(&server, "pending"), 0);
    }

    #[test]
    fn pruning_settles_first_and_keeps_the_schema_a_pending_row_names() {
        let mut store = Store::open_in_memory().unwrap();
        // An old row, written straight into `audit`, then a newer pending one naming a schema no other row names.
        AuditEntry::test_send(10)
            .insert(&store.conn, None, Some("[0]"))
            .unwrap();
        let mut group = store.begin_group().unwrap();
        let entry = AuditEntry {
            schema: Some(schema()),
            ..AuditEntry::test_send(100)
        };
        group.append_accepted(&entry, &nonce("a"), "[1]").unwrap();
        group.commit().unwrap();
        assert_eq!(count(&store, "pending"), 1);
        let pruned = store.prune_audit(50, 1_000, false).unwrap();
        assert_eq!(pruned.rows, 1, "the old row, not the pending one");
        assert_eq!((pruned.schemas, count(&store, "schemas")), (0, 1));
        assert_eq!(count(&store, "pending"), 0);
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn a_row_numbered_from_audit_alone_is_refused_while_rows_are_pending() {
        let mut store = Store::open_in_memory().unwrap();
        let mut group = store.begin_group().unwrap();
        for n in ["a", "b"] {
            group
                .append_accepted(&AuditEntry::test_send(1), &nonce(n), "[1]")
                .unwrap();
        }
        group.commit().unwrap();
        // What a server of zavro before store version 13, still running after the migration, would write: the
        // next id after `audit`'s newest row, chained onto that row.
        let forked = store.conn.execute(
            "INSERT INTO audit (id, time_us, action, status, records, size, prev_hash, hash)
             VALUES (1, 2, 'send', 'accepted', 1, 10, ?1, 'forged')",
            [crate::store::chain::GENESIS],
        );
        let message = forked.unwrap_err().to_string();
        assert!(message.contains("older than store version 13"), "{message}");
        // An automatic id is refused alike; the rows waiting still settle, and the chain holds.
        assert!(
            store
                .conn
                .execute(
                    "INSERT INTO audit (time_us, action, status, records, size) VALUES (2, 'send', 'accepted', 1, 10)",
                    [],
                )
                .is_err()
        );
        assert_eq!(store.settle().unwrap(), 2);
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn a_reader_that_cannot_settle_reads_without_the_pending_rows_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zavro.db");
        let mut server = Store::open(&path).unwrap();
        acknowledge(&mut server, 1, "a", "[1]");
        // Another process holds the write lock (a long `audit prune`, say).
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut reader = Store::open_existing(&path).unwrap();
        let note = reader.pending_not_shown().unwrap().to_owned();
        assert!(
            note.starts_with("1 acknowledged request(s) still wait"),
            "{note}"
        );
        assert_eq!(AuditStore::audit_head(&mut reader).unwrap(), None);
        holder.execute_batch("COMMIT").unwrap();
        assert_eq!(AuditStore::audit_head(&mut reader).unwrap().unwrap().0, 1);
        assert_eq!(reader.pending_not_shown(), None);
    }

    #[test]
    fn after_a_failed_settlement_small_requests_go_straight_into_audit_until_one_succeeds() {
        let mut store = Store::open_in_memory().unwrap();
        acknowledge(&mut store, 1, "a", "[1]");
        store.refuse_writes(true);
        assert!(store.settle().is_err());
        store.refuse_writes(false);

        acknowledge(&mut store, 2, "b", "[2]");
        assert_eq!(
            (count(&store, "audit"), count(&store, "pending")),
            (2, 0),
            "written straight into audit, the waiting row settled before it"
        );
        // That group's own settlement succeeded, which is enough to go back to pending rows.
        acknowledge(&mut store, 3, "c", "[3]");
        assert_eq!(
            count(&store, "pending"),
            1,
            "pending again once a settlement succeeded"
        );
    }
}
