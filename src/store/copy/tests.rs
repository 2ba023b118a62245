//! `store copy` from real SQLite files into real PostgreSQL databases of the test cluster.

use std::ops::ControlFlow;

use super::*;
use crate::{
    sealed::SecretSlot,
    store::{AuditFilter, AuditRow, AuditStore, KeyStore, Nonce, PgUrl, postgres::test_cluster},
};

const SECRET_A: &str = "secret-of-key-a-0123456789";
const SECRET_B: &str = "secret-of-key-b-0123456789";

fn master(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

/// A SQLite store with two keys (one revoked), a server key pair, accepted requests with payloads, schemas and
/// nonces (one of them outside the window), a refusal, and a prune, so every table has rows; in `dir`. Rows 5
/// to 10 are left: requests 2 to 4 (nonces at 100, 1000, 1000), the refusal, the revocation, the prune.
fn source(dir: &std::path::Path) -> Store {
    let mut store = Store::open(&dir.join("zavro.db")).unwrap();
    store.add_key("ZKA", SECRET_A, Some("laptop"), 1).unwrap();
    store
        .add_key_expiring("ZKB", SECRET_B, None, Some(99_000), 2)
        .unwrap();
    store.server_key_pair(3).unwrap();
    let int = crate::avro::SchemaFingerprint::of(
        &apache_avro::Schema::parse_str(r#"{"type": "int", "doc": "d"}"#).unwrap(),
        r#"{"type": "int", "doc": "d"}"#,
    );
    for (i, timestamp) in [(1, 1_000), (2, 100), (3, 1_000), (4, 1_000)] {
        let nonce = format!("nonce-{i:010}");
        // The later two came from a spool: they carry request ids.
        let id = format!("request-id-{i:010}");
        let request_id = (i >= 3).then_some(crate::store::RequestId {
            id: &id,
            payload_digest: "digest",
        });
        let entry = AuditEntry {
            schema: Some(&int),
            server: Some("alpha"),
            ..AuditEntry::test_send(i * 10)
        };
        let nonce = Nonce {
            nonce: &nonce,
            timestamp,
            signature: "sig",
            request_id,
        };
        store
            .commit_accepted(&entry, &nonce, &format!("[{i}]"))
            .unwrap();
    }
    store
        .record(&AuditEntry {
            status: crate::store::Status::Rejected,
            reason: Some("bad_signature"),
            ..AuditEntry::test_send(50)
        })
        .unwrap();
    store.revoke_key("ZKA", 60).unwrap();
    // Rows 1 to 4 (the key actions, the server key and the first request) go; a checkpoint stays.
    assert_eq!(store.prune_audit(20, 70, false).unwrap().rows, 4);
    store
}

/// A fresh database of the test cluster, or `None` (after saying so) without PostgreSQL.
fn target() -> Option<PgStore> {
    let url = test_cluster::shared()?.fresh_database();
    Some(PgStore::connect_or_create(&PgUrl::parse(&url).unwrap()).unwrap())
}

fn options() -> CopyOptions {
    CopyOptions {
        source_name: "the source".into(),
        nonces_since: 500,
        now_us: 1_000_000,
    }
}

fn rows(store: &mut dyn AuditStore) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    let filter = AuditFilter {
        with_payload: true,
        ..Default::default()
    };
    store
        .for_each_audit(&filter, &mut |row| {
            rows.push(row);
            ControlFlow::Continue(())
        })
        .unwrap();
    rows
}

fn count(pg: &mut PgStore, sql: &str) -> i64 {
    pg.client().query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn everything_is_copied_and_the_copy_verifies_with_the_source_head() {
    let Some(mut pg) = target() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = source(dir.path());
    let source_head = AuditStore::audit_head(&mut sqlite).unwrap().unwrap();
    let copied = copy_into_postgres(&mut sqlite, &mut pg, &master(1), &options()).unwrap();
    assert_eq!(
        copied,
        Copied {
            keys: 2,
            server_keys: 1,
            schemas: 1,
            rows: 6,
            payloads: 3,
            nonces: 2,
            request_ids: 2,
            checkpoints: 1,
            source_head: Some(source_head.clone()),
            copy_row: source_head.0 + 1,
            left_pending: 0,
        }
    );

    // The audit trail: the same rows (ids, payloads, schemas), then the copy's own row chained onto them.
    let source_rows = rows(&mut sqlite);
    let copy_rows = rows(&mut pg);
    assert_eq!(copy_rows[..copy_rows.len() - 1], source_rows[..]);
    let copy_row = copy_rows.last().unwrap();
    assert_eq!(
        (
            copy_row.id,
            copy_row.action.as_str(),
            copy_row.peer.as_deref()
        ),
        (11, "store_copy", Some("local"))
    );
    let detail = copy_row.detail.as_deref().unwrap();
    assert_eq!(
        detail,
        format!(
            "copied from the source: 2 API keys, 1 server key, 6 audit rows, 3 payloads, 1 schema, 2 nonces, 1 \
             pruning checkpoint, 2 request ids; source head 10:{}",
            source_head.1
        )
    );
    let verified = pg.verify_audit(None).unwrap().unwrap();
    assert_eq!(verified.rows, 7);
    // The request ids name the same rows on the copy, so a spooled request sent again after the move is still a
    // duplicate.
    let ids: Vec<(String, i64)> = pg
        .client()
        .query(
            "SELECT id, audit_id FROM request_ids ORDER BY audit_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let request_ids: Vec<(String, i64)> = source_rows
        .iter()
        .filter_map(|row| Some((row.request_id.clone()?, row.id)))
        .collect();
    assert_eq!(ids, request_ids);
    assert_eq!(ids.len(), 2);
    assert!(
        pg.verify_audit(Some((source_head.0, &source_head.1)))
            .unwrap()
            .is_ok(),
        "the copy extends the source's head"
    );
    let checkpoint: (i64, i64) = {
        let row = pg
            .client()
            .query_one("SELECT id, last_row FROM audit_checkpoints", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(checkpoint, (1, 4));

    // Keys: the same listing, and each secret opens under the master key, bound to its own row.
    assert_eq!(
        KeyStore::list_keys(&mut pg).unwrap(),
        sqlite.list_keys().unwrap()
    );
    for (id, secret) in [("ZKA", SECRET_A), ("ZKB", SECRET_B)] {
        let sealed: Vec<u8> = pg
            .client()
            .query_one("SELECT secret_sealed FROM keys WHERE id = $1", &[&id])
            .unwrap()
            .get(0);
        assert_eq!(
            master(1)
                .open_text(SecretSlot::ApiKey(id), &sealed)
                .unwrap()
                .as_str(),
            secret
        );
    }
    assert_eq!(
        pg.sealed_under().unwrap(),
        Some(master(1).fingerprint()),
        "the copy records its master key"
    );
    pg.use_master_key(Some(master(1))).unwrap();
    assert_eq!(
        pg.server_key_pair(2_000_000).unwrap().secret_z85(),
        sqlite.server_key_pair(2_000_000).unwrap().secret_z85(),
        "the server key pair is the source's"
    );

    // Nonces inside the window, with signature and audit id; the one older than `nonces_since` is left.
    let nonces: Vec<(String, i64, i64, Option<String>)> = pg
        .client()
        .query(
            "SELECT nonce, timestamp, audit_id, signature FROM nonces ORDER BY nonce",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let sig = Some("sig".to_owned());
    assert_eq!(
        nonces,
        [
            ("nonce-0000000003".to_owned(), 1_000, 6, sig.clone()),
            ("nonce-0000000004".to_owned(), 1_000, 7, sig),
        ]
    );

    // Schemas keep their ids, and every counter is past what was copied: new rows never collide.
    assert_eq!(pg.list_schemas().unwrap(), sqlite.list_schemas().unwrap());
    assert_eq!(
        count(&mut pg, "SELECT last_id FROM audit_chain"),
        copied.copy_row
    );
    for (table, next) in [("schemas", 2), ("server_keys", 2), ("audit_checkpoints", 2)] {
        let given: i64 = count(
            &mut pg,
            &format!("SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"),
        );
        assert_eq!(given, next, "{table}");
    }
    KeyStore::add_key(&mut pg, "ZKC", SECRET_A, None, None, 3_000_000).unwrap();
    KeyStore::rotate_server_key(&mut pg, 3_000_001).unwrap();
    let pruned = pg.prune_audit(55, 4_000_000, false).unwrap();
    assert_eq!(pruned.range.map(|(first, _)| first.0), Some(5));
    assert!(pg.verify_audit(None).unwrap().is_ok());
}

#[test]
fn a_sealed_source_is_copied_under_the_same_key_and_refused_under_another() {
    let Some(mut pg) = target() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = source(dir.path());
    sqlite.seal_secrets(master(7), 80).unwrap();
    let err = copy_into_postgres(&mut sqlite, &mut pg, &master(8), &options()).unwrap_err();
    assert!(
        matches!(&err, CopyError::SourceSealedUnderAnotherKey { sealed_under, given, .. }
            if *sealed_under == master(7).fingerprint() && *given == master(8).fingerprint()),
        "{err}"
    );
    assert_eq!(count(&mut pg, "SELECT count(*) FROM keys"), 0);
    let copied = copy_into_postgres(&mut sqlite, &mut pg, &master(7), &options()).unwrap();
    assert_eq!(copied.keys, 2);
    let sealed: Vec<u8> = pg
        .client()
        .query_one("SELECT secret_sealed FROM keys WHERE id = 'ZKB'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        master(7)
            .open_text(SecretSlot::ApiKey("ZKB"), &sealed)
            .unwrap()
            .as_str(),
        SECRET_B
    );
    assert!(pg.verify_audit(None).unwrap().is_ok());
}

#[test]
fn a_store_that_is_not_empty_is_refused_and_left_as_it_was() {
    let Some(mut pg) = target() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = source(dir.path());
    pg.use_master_key(Some(master(1))).unwrap();
    KeyStore::add_key(&mut pg, "ZKX", SECRET_A, None, None, 5).unwrap();
    let err = copy_into_postgres(&mut sqlite, &mut pg, &master(1), &options()).unwrap_err();
    assert!(
        matches!(&err, CopyError::NotEmpty { contents, .. } if contents == "1 API key, 1 audit row"),
        "{err}"
    );
    assert!(
        err.to_string().contains("copies only into a new store"),
        "{err}"
    );
    assert_eq!(count(&mut pg, "SELECT count(*) FROM audit"), 1);
    assert_eq!(count(&mut pg, "SELECT count(*) FROM keys"), 1);

    // Only ids handed out (the rows deleted), or a seal under another key, is not empty either.
    let Some(mut pg) = target() else {
        return;
    };
    pg.client()
        .batch_execute("UPDATE audit_chain SET last_id = 3")
        .unwrap();
    let err = copy_into_postgres(&mut sqlite, &mut pg, &master(1), &options()).unwrap_err();
    assert!(
        err.to_string().contains("audit ids handed out up to #3"),
        "{err}"
    );
    let Some(mut pg) = target() else {
        return;
    };
    pg.client()
        .batch_execute(
            "INSERT INTO sealing (fingerprint, sealed_us) VALUES ('0011223344556677', 1)",
        )
        .unwrap();
    let err = copy_into_postgres(&mut sqlite, &mut pg, &master(1), &options()).unwrap_err();
    assert!(
        err.to_string()
            .contains("sealed under master key 0011223344556677"),
        "{err}"
    );
}

#[test]
fn a_source_whose_chain_does_not_verify_is_not_copied() {
    for (sql, says) in [
        (
            "UPDATE audit SET records = 9 WHERE id = 7",
            "row #7 was altered",
        ),
        (
            "DELETE FROM payloads WHERE audit_id = 6; DELETE FROM audit WHERE id = 6",
            "row #7 does not follow",
        ),
        (
            "DELETE FROM audit WHERE id = 10",
            "rows after #9 were deleted",
        ),
        (
            "UPDATE schemas SET schema = '\"long\"'",
            "was altered: its text does not give its canonical form",
        ),
    ] {
        let Some(mut pg) = target() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut sqlite = source(dir.path());
        sqlite.conn.execute_batch(sql).unwrap();
        let err = copy_into_postgres(&mut sqlite, &mut pg, &master(1), &options()).unwrap_err();
        assert!(
            matches!(err, CopyError::SourceTampered { .. }) && err.to_string().contains(says),
            "{sql}: {err}"
        );
        for table in ["keys", "audit", "payloads", "schemas", "sealing"] {
            assert_eq!(
                count(&mut pg, &format!("SELECT count(*) FROM {table}")),
                0,
                "{sql}: nothing of the copy is kept in {table}"
            );
        }
        assert_eq!(count(&mut pg, "SELECT last_id FROM audit_chain"), 0);
    }
}

#[test]
fn an_empty_source_and_one_pruned_to_nothing_are_copied_too() {
    let Some(mut pg) = target() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut empty = Store::open(&dir.path().join("empty.db")).unwrap();
    let copied = copy_into_postgres(&mut empty, &mut pg, &master(1), &options()).unwrap();
    assert_eq!(
        (copied.rows, copied.source_head, copied.copy_row),
        (0, None, 1)
    );
    assert_eq!(pg.verify_audit(None).unwrap().unwrap().rows, 1);

    let Some(mut pg) = target() else {
        return;
    };
    let mut sqlite = source(dir.path());
    // Every row but the prune's own goes; then that one too, leaving two checkpoints and the second prune row.
    sqlite.prune_audit(1_000, 2_000, false).unwrap();
    sqlite.prune_audit(3_000, 4_000, false).unwrap();
    let head = AuditStore::audit_head(&mut sqlite).unwrap().unwrap();
    let copied = copy_into_postgres(&mut sqlite, &mut pg, &master(1), &options()).unwrap();
    assert_eq!((copied.rows, copied.checkpoints), (1, 3));
    assert_eq!(copied.copy_row, head.0 + 1);
    assert_eq!(pg.verify_audit(None).unwrap().unwrap().rows, 2);
}

#[test]
fn a_trail_longer_than_a_batch_goes_over_whole() {
    let Some(mut pg) = target() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = Store::open(&dir.path().join("zavro.db")).unwrap();
    let rows_written = BATCH_ROWS as i64 * 2 + 7;
    {
        use crate::store::{RequestGroup, RequestStore};
        let mut group = sqlite.begin_group().unwrap();
        for i in 0..rows_written {
            let nonce = format!("n{i}");
            let nonce = Nonce {
                nonce: &nonce,
                timestamp: 1_000,
                signature: "sig",
                request_id: None,
            };
            group
                .append_accepted(&AuditEntry::test_send(i), &nonce, &format!("[{i}]"))
                .unwrap();
        }
        group.commit().unwrap();
    }
    // Left pending: the copy settles them before it takes its snapshot.
    let copied = copy_into_postgres(&mut sqlite, &mut pg, &master(1), &options()).unwrap();
    assert_eq!(
        (copied.rows, copied.payloads, copied.nonces),
        (
            rows_written as u64,
            rows_written as u64,
            rows_written as u64
        )
    );
    let verified = pg.verify_audit(None).unwrap().unwrap();
    assert_eq!(verified.rows, rows_written as u64 + 1);
    assert_eq!(
        rows(&mut pg)[..rows_written as usize],
        rows(&mut sqlite)[..]
    );
}
