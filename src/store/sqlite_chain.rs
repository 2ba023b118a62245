//! The SQLite side of the audit hash chain: where the next row goes, migration 2's backfill, and reading the
//! rows, the checkpoint and the id counter for [`ChainVerifier`] (the encoding and the checks are in `chain`,
//! shared by every backend).

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    StoreError,
    chain::{
        ChainBreak, ChainVerifier, ChainedFields, GENESIS, StoredRow, Verified, check_schema,
        payload_sha256,
    },
};

/// The newest checkpoint left by pruning: (last pruned row id, its hash).
fn last_checkpoint(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT last_row, last_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
}

/// Where the next audit row goes: the id AUTOINCREMENT would give it, and the hash it follows.
pub struct Link {
    /// The new row's id: past every id ever handed out, so ids are never reused.
    pub id: i64,
    /// The newest row's hash; the newest checkpoint's when pruning removed every row; [`GENESIS`] at the start.
    pub prev_hash: String,
}

/// The [`Link`] for the next row; the caller holds the write transaction until that row is inserted.
pub fn next_link(conn: &Connection) -> rusqlite::Result<Link> {
    // AUTOINCREMENT's rule: one past the larger of the highest id ever issued and the highest id present, pending
    // rows counted as present (they are the newest rows when there are any: see `pending`).
    let (id, newest_hash): (i64, Option<String>) = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0),
                        coalesce((SELECT max(id) FROM audit), 0),
                        coalesce((SELECT max(audit_id) FROM pending), 0)) + 1,
                    coalesce((SELECT hash FROM pending ORDER BY audit_id DESC LIMIT 1),
                             (SELECT hash FROM audit ORDER BY id DESC LIMIT 1))",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let prev_hash = match newest_hash {
        Some(hash) => hash,
        None => last_checkpoint(conn)?.map_or_else(|| GENESIS.to_owned(), |(_, hash)| hash),
    };
    Ok(Link { id, prev_hash })
}

/// Sets `prev_hash` and `hash` of the existing row `id`: how migration 2 chains the rows written before the
/// chain existed.
fn backfill_seal(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    let prev: String = conn
        .prepare_cached("SELECT hash FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([id], |row| row.get(0))
        .optional()?
        .map_or_else(
            || last_checkpoint(conn).map(|c| c.map_or_else(|| GENESIS.to_owned(), |(_, h)| h)),
            Ok,
        )?;
    let mut stmt = conn.prepare_cached(BACKFILL_SELECT)?;
    let mut rows = stmt.query([id])?;
    let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let hash = fields_of(row)?.hash(&prev);
    conn.prepare_cached("UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3")?
        .execute(params![prev, hash, id])?;
    Ok(())
}

/// The hashed columns of `audit`, in `ChainedFields` order, ending with `$schema`, `$requests`, `$transport`
/// and `$server`: the expressions that give the row's schema fingerprint, request count, transport and server
/// (older stores have none of these columns). A macro so the SELECTs below are literals, built at compile time.
macro_rules! hashed_columns {
    ($schema:expr, $requests:expr, $transport:expr, $server:expr) => {
        concat!(
            "id, time_us, action, status, reason, detail, key_id, peer, records, size, payload_sha256, ",
            $schema,
            ", ",
            $requests,
            ", ",
            $transport,
            ", ",
            $server
        )
    };
}

/// The row's schema fingerprint, by its `schemas` row.
macro_rules! schema_fingerprint {
    () => {
        "(SELECT fingerprint FROM schemas WHERE schemas.id = audit.schema_id)"
    };
}

/// The hashed columns, for `verify`'s walk over every row.
const FIELDS: &str = hashed_columns!(schema_fingerprint!(), "requests", "transport", "server");

/// The hashed columns of one row as migration 2's backfill reads them: it runs on stores older than version 6,
/// which have no schemas.
const BACKFILL_SELECT: &str = concat!(
    "SELECT ",
    hashed_columns!("NULL", "1", "NULL", "NULL"),
    " FROM audit WHERE id = ?1"
);

/// Reads the hashed fields from a row selected with the `FIELDS` columns, in order.
fn fields_of<'r>(row: &'r rusqlite::Row) -> rusqlite::Result<ChainedFields<'r>> {
    let text = |i| {
        row.get_ref(i)
            .and_then(|v| v.as_str_or_null().map_err(Into::into))
    };
    Ok(ChainedFields {
        id: row.get(0)?,
        time_us: row.get(1)?,
        action: text(2)?.unwrap_or_default(),
        status: text(3)?.unwrap_or_default(),
        reason: text(4)?,
        detail: text(5)?,
        key_id: text(6)?,
        peer: text(7)?,
        records: row.get(8)?,
        size: row.get(9)?,
        payload_sha256: text(10)?,
        schema: text(11)?,
        requests: row.get(12)?,
        transport: text(13)?,
        server: text(14)?,
    })
}

/// Chains the rows written before the chain existed (migration 2's hook, so with the columns of version 2),
/// with the same encoding as new rows.
pub fn backfill(conn: &Connection) -> rusqlite::Result<()> {
    let payloads: Vec<(i64, String)> = conn
        .prepare("SELECT audit_id, json FROM payloads")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, json) in payloads {
        conn.execute(
            "UPDATE audit SET payload_sha256 = ?1 WHERE id = ?2",
            params![payload_sha256(&json), id],
        )?;
    }
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM audit ORDER BY id")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        backfill_seal(conn, id)?;
    }
    Ok(())
}

/// Walks the whole chain; with `against`, also checks that the recorded head (row id, hash) is still in it. The
/// caller holds one read transaction, so the checkpoint, the rows and the id counter are one snapshot.
pub fn verify(
    conn: &Connection,
    against: Option<(i64, &str)>,
) -> Result<Result<Verified, ChainBreak>, StoreError> {
    if let Some(broken) = verify_schemas(conn)? {
        return Ok(Err(broken));
    }
    let mut verifier = ChainVerifier::new(last_checkpoint(conn)?, against);
    let mut stmt = conn.prepare(&format!(
        "SELECT {FIELDS}, prev_hash, hash, (SELECT json FROM payloads WHERE audit_id = audit.id)
         FROM audit ORDER BY id"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let text = |i| {
            row.get_ref(i)
                .and_then(|v| v.as_str_or_null().map_err(rusqlite::Error::from))
        };
        let stored = StoredRow {
            fields: fields_of(row)?,
            prev_hash: text(15)?,
            hash: text(16)?,
            payload: text(17)?,
        };
        if let Err(broken) = verifier.row(&stored) {
            return Ok(Err(broken));
        }
    }
    let issued: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0);
    Ok(verifier.finish(issued))
}

/// Checks every stored schema with [`check_schema`]; the first one altered is the break.
fn verify_schemas(conn: &Connection) -> Result<Option<ChainBreak>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT fingerprint, canonical, schema FROM schemas ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (fingerprint, canonical, text): (String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?);
        if let Err(broken) = check_schema(&fingerprint, &canonical, &text) {
            return Ok(Some(broken));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEntry, RequestStore, Status, Store};

    /// A store with five chained rows: two key actions, two accepted requests with payloads, one rejection.
    fn populated() -> Store {
        let nonce = |nonce| crate::store::Nonce {
            nonce,
            timestamp: 1,
            signature: "sig",
            request_id: None,
        };
        let mut store = Store::open_in_memory().unwrap();
        store
            .add_key("ZK1", "secret-secret-secret", None, 1)
            .unwrap();
        let mut entry = AuditEntry::test_send(2);
        store
            .commit_accepted(&entry, &nonce("nonce-0000000001"), "[1]")
            .unwrap();
        entry.time_us = 3;
        store
            .commit_accepted(&entry, &nonce("nonce-0000000002"), "[2]")
            .unwrap();
        entry.status = Status::Rejected;
        entry.reason = Some("bad_signature");
        store.record(&entry).unwrap();
        store.revoke_key("ZK1", 5).unwrap();
        store
    }

    fn tamper(store: &Store, sql: &str) -> ChainBreak {
        store.conn.execute_batch(sql).unwrap();
        store.verify_audit(None).unwrap().unwrap_err()
    }

    /// Undoes what [`tamper`] did; the chain verifies again.
    fn tamper_undo(store: &Store, sql: &str) {
        store.conn.execute_batch(sql).unwrap();
        assert!(store.verify_audit(None).unwrap().is_ok(), "{sql}");
    }

    #[test]
    fn new_rows_take_the_id_autoincrement_would_give_them() {
        let mut store = populated();
        // The newest row deleted behind zavro's back: its id was handed out, so it is not given again.
        store
            .conn
            .execute("DELETE FROM audit WHERE id = 5", [])
            .unwrap();
        let id = store.record(&AuditEntry::test_send(6)).unwrap();
        assert_eq!(id, 6);
        let ids: Vec<i64> = store
            .conn
            .prepare("SELECT id FROM audit ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [1, 2, 3, 4, 6]);
        let issued: i64 = store
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(issued, 6, "SQLite's counter follows the explicit id");
    }

    #[test]
    fn an_untouched_chain_verifies_and_reports_its_head() {
        let store = populated();
        let verified = store.verify_audit(None).unwrap().unwrap();
        assert_eq!(verified.rows, 5);
        assert_eq!(verified.head, store.audit_head().unwrap());
        let (row, hash) = verified.head.unwrap();
        assert_eq!(row, 5);
        assert!(store.verify_audit(Some((row, &hash))).unwrap().is_ok());
        assert!(
            store.verify_audit(Some((3, &hash))).unwrap().is_err(),
            "wrong hash for row 3"
        );
    }

    #[test]
    fn an_edited_field_names_its_row() {
        let store = populated();
        let broken = tamper(&store, "UPDATE audit SET peer = '10.9.9.9' WHERE id = 3");
        assert!(
            matches!(broken, ChainBreak::Altered { id: 3, .. }),
            "{broken}"
        );
    }

    #[test]
    fn an_edited_payload_names_its_row() {
        let store = populated();
        let broken = tamper(
            &store,
            "UPDATE payloads SET json = '[666]' WHERE audit_id = 2",
        );
        assert!(
            matches!(broken, ChainBreak::Altered { id: 2, .. }),
            "{broken}"
        );
    }

    #[test]
    fn a_deleted_row_breaks_the_link_after_it() {
        let store = populated();
        let broken = tamper(
            &store,
            "DELETE FROM payloads WHERE audit_id = 3; DELETE FROM audit WHERE id = 3",
        );
        assert_eq!(
            broken,
            ChainBreak::Link {
                id: 4,
                after: "row #2".into()
            }
        );
    }

    #[test]
    fn deleting_the_newest_rows_is_caught_by_the_id_counter() {
        let store = populated();
        let broken = tamper(&store, "DELETE FROM audit WHERE id = 5");
        assert_eq!(
            broken,
            ChainBreak::Truncated {
                newest: 4,
                issued: 5
            }
        );
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_a_recorded_head() {
        let mut store = populated();
        let (row, hash) = store.audit_head().unwrap().unwrap();
        // Rewrite history from row 2 on and re-seal everything, as an attacker with the code could.
        store
            .conn
            .execute_batch("UPDATE audit SET peer = '10.9.9.9' WHERE id = 2")
            .unwrap();
        let tx = store.conn.transaction().unwrap();
        backfill(&tx).unwrap();
        tx.commit().unwrap();
        assert!(
            store.verify_audit(None).unwrap().is_ok(),
            "a rewritten chain is self-consistent"
        );
        let broken = store.verify_audit(Some((row, &hash))).unwrap().unwrap_err();
        assert!(
            matches!(broken, ChainBreak::HeadMismatch { row: 5, .. }),
            "{broken}"
        );
    }

    #[test]
    fn swapped_rows_are_caught() {
        let store = populated();
        let broken = tamper(
            &store,
            "UPDATE audit SET id = -1 WHERE id = 4; UPDATE audit SET id = 4 WHERE id = 5; \
             UPDATE audit SET id = 5 WHERE id = -1",
        );
        assert_eq!(
            broken,
            ChainBreak::Link {
                id: 4,
                after: "row #3".into()
            }
        );
    }

    #[test]
    fn an_inserted_row_is_caught() {
        let store = populated();
        let broken = tamper(
            &store,
            "UPDATE audit SET id = 10 WHERE id = 5; \
             INSERT INTO audit (id, time_us, action, status, records, size, prev_hash, hash) \
             SELECT 5, 4, 'send', 'accepted', 1, 1, hash, hash FROM audit WHERE id = 4",
        );
        assert!(
            matches!(broken, ChainBreak::Altered { id: 5, .. }),
            "{broken}"
        );
    }

    /// `populated()` plus a rejected request whose data used a schema (row 6), and another schema's row 7.
    fn with_schemas() -> Store {
        let mut store = populated();
        for (time_us, text) in [(6, r#"{"type": "long", "doc": "d"}"#), (7, r#""string""#)] {
            let schema = crate::avro::SchemaFingerprint::of(
                &apache_avro::Schema::parse_str(text).unwrap(),
                text,
            );
            store
                .record(&AuditEntry {
                    status: Status::Rejected,
                    reason: Some("schema_mismatch"),
                    schema: Some(&schema),
                    ..AuditEntry::test_send(time_us)
                })
                .unwrap();
        }
        assert!(store.verify_audit(None).unwrap().is_ok());
        store
    }

    #[test]
    fn a_rows_schema_is_covered_by_its_hash() {
        for sql in [
            "UPDATE audit SET schema_id = NULL WHERE id = 6",
            "UPDATE audit SET schema_id = (SELECT id FROM schemas WHERE canonical = '\"string\"') WHERE id = 6",
            "UPDATE schemas SET canonical = '\"int\"', schema = '\"int\"',              fingerprint = '3f2b87a9fe7cc9b13835598c3981cd45e3e355309e5090aa0933d7becb6fba45'              WHERE canonical = '\"long\"'",
        ] {
            let broken = tamper(&with_schemas(), sql);
            assert!(
                matches!(broken, ChainBreak::Altered { id: 6, .. }),
                "{sql}: {broken}"
            );
        }
    }

    #[test]
    fn an_edited_schema_is_caught() {
        for sql in [
            "UPDATE schemas SET schema = '\"int\"' WHERE canonical = '\"long\"'",
            "UPDATE schemas SET canonical = '\"int\"' WHERE canonical = '\"long\"'",
        ] {
            let broken = tamper(&with_schemas(), sql);
            assert!(
                matches!(broken, ChainBreak::SchemaAltered { .. }),
                "{sql}: {broken}"
            );
        }
        // Docs and defaults are not part of the canonical form, but the text is still checked against it only:
        // an edit that keeps the canonical form is not a change to what the rows' data meant.
        let store = with_schemas();
        store
            .conn
            .execute_batch(
                r#"UPDATE schemas SET schema = '{"type": "long"}' WHERE canonical = '"long"'"#,
            )
            .unwrap();
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    /// A store file made at schema version 1 with a key action and one accepted request (plus `more` SQL),
    /// migrated to `version`, as a store of that version would be (chained by migration 2's backfill); returns
    /// its path (mode 0600, ready for `Store::open`) and the hash its newest row then had.
    fn old_store(
        dir: &std::path::Path,
        more: &str,
        version: usize,
    ) -> (std::path::PathBuf, String) {
        let path = dir.join("old.db");
        let mut conn = Connection::open(&path).unwrap();
        super::super::MIGRATIONS.to_version(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO audit (time_us, action, status, key_id, peer) VALUES (1, 'key_add', 'accepted', 'ZK1', 'local');
             INSERT INTO audit (time_us, action, status, key_id, peer, records, size)
                 VALUES (2, 'send', 'accepted', 'ZK1', '10.0.0.1', 1, 99);",
        )
        .unwrap();
        conn.execute_batch(more).unwrap();
        super::super::MIGRATIONS
            .to_version(&mut conn, version)
            .unwrap();
        let head: String = conn
            .query_row("SELECT hash FROM audit WHERE id = 2", [], |row| row.get(0))
            .unwrap();
        drop(conn);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        (path, head)
    }

    #[test]
    fn rows_written_before_schemas_existed_keep_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, head_at_5) = old_store(
            dir.path(),
            "INSERT INTO payloads (audit_id, json) VALUES (2, '[1]');",
            5,
        );
        let store = Store::open(&path).unwrap();
        assert_eq!(store.audit_head().unwrap(), Some((2, head_at_5)));
        assert_eq!(store.verify_audit(None).unwrap().unwrap().rows, 2);
    }

    #[test]
    fn rows_written_before_transports_keep_their_hashes_and_new_rows_chain_onto_them() {
        let dir = tempfile::tempdir().unwrap();
        let (path, hash_at_7) = old_store(dir.path(), "", 7);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.audit_head().unwrap(), Some((2, hash_at_7)));
        for transport in ["curve", "plaintext"] {
            store
                .record(&AuditEntry {
                    transport: Some(transport),
                    ..AuditEntry::test_send(3)
                })
                .unwrap();
        }
        let rows = store.query_audit(&Default::default()).unwrap();
        let transports: Vec<_> = rows.iter().map(|r| r.transport.as_deref()).collect();
        assert_eq!(transports, [None, None, Some("curve"), Some("plaintext")]);
        assert_eq!(store.verify_audit(None).unwrap().unwrap().rows, 4);

        for (edit, undo, id) in [
            ("'plaintext'", "'curve'", 3),
            ("NULL", "'plaintext'", 4),
            ("'curve'", "NULL", 2),
        ] {
            let broken = tamper(
                &store,
                &format!("UPDATE audit SET transport = {edit} WHERE id = {id}"),
            );
            assert!(
                matches!(broken, ChainBreak::Altered { id: found, .. } if found == id),
                "transport {edit} on row {id}: {broken}"
            );
            tamper_undo(
                &store,
                &format!("UPDATE audit SET transport = {undo} WHERE id = {id}"),
            );
        }
    }

    #[test]
    fn a_store_made_before_the_nonce_window_starts_at_the_default_skew_and_prunes_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = old_store(dir.path(), "", 10);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.nonce_window().unwrap(), 300);
        let now = crate::timestamp::now_seconds();
        for (name, age) in [("kept", 200), ("old", 1000)] {
            let nonce = crate::store::Nonce {
                nonce: name,
                timestamp: now - age,
                signature: "sig",
                request_id: None,
            };
            store
                .commit_accepted(&AuditEntry::test_send(3), &nonce, "[]")
                .unwrap();
        }
        assert_eq!(store.prune_nonces(60).unwrap(), 1);
        assert!(store.find_nonce("ZK1", "kept").unwrap().is_some());
        assert!(store.find_nonce("ZK1", "old").unwrap().is_none());
        assert_eq!(store.widen_nonce_window(900).unwrap(), 900);
    }

    #[test]
    fn a_rows_server_is_covered_by_its_hash_and_older_rows_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let (path, hash_at_8) = old_store(dir.path(), "", 8);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.audit_head().unwrap(), Some((2, hash_at_8)));
        for server in [Some("alpha"), None, Some("beta")] {
            store
                .record(&AuditEntry {
                    server,
                    ..AuditEntry::test_send(3)
                })
                .unwrap();
        }
        let rows = store.query_audit(&Default::default()).unwrap();
        let servers: Vec<_> = rows.iter().map(|r| r.server.as_deref()).collect();
        assert_eq!(servers, [None, None, Some("alpha"), None, Some("beta")]);
        assert_eq!(store.verify_audit(None).unwrap().unwrap().rows, 5);

        for (edit, undo, id) in [
            ("'beta'", "'alpha'", 3),
            ("NULL", "'alpha'", 3),
            ("'alpha'", "NULL", 4),
            ("'alpha'", "NULL", 2),
            ("''", "'beta'", 5),
        ] {
            let broken = tamper(
                &store,
                &format!("UPDATE audit SET server = {edit} WHERE id = {id}"),
            );
            assert!(
                matches!(broken, ChainBreak::Altered { id: found, .. } if found == id),
                "server {edit} on row {id}: {broken}"
            );
            tamper_undo(
                &store,
                &format!("UPDATE audit SET server = {undo} WHERE id = {id}"),
            );
        }
    }
}
