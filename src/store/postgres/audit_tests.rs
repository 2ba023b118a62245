//! [`AuditStore`] on PostgreSQL against a real cluster: the same rows written to a SQLite store and to a
//! PostgreSQL database give the same answers to every query, count, listing, verification and prune (down to the
//! hashes), and tampering with the database is caught as it is in a SQLite file.

use std::ops::ControlFlow;

use super::{PgStore, PgUrl, chain::ChainWriter, statements::Statements, test_cluster};
use crate::{
    avro::SchemaFingerprint,
    store::{
        AuditEntry, AuditFilter, AuditRow, AuditStore, ChainBreak, Nonce, Status, Store, StoreError,
    },
};

/// One action of the fixture: the audit entry, and for an accepted request its payload and nonce.
struct Action {
    entry: AuditEntry<'static>,
    accepted: Option<(&'static str, &'static str)>,
}

fn schema(text: &str) -> &'static SchemaFingerprint {
    Box::leak(Box::new(SchemaFingerprint::of(
        &apache_avro::Schema::parse_str(text).unwrap(),
        text,
    )))
}

/// Key actions, accepted requests with payloads and schemas, refusals, a retry and a summary, from two servers.
fn actions() -> Vec<Action> {
    let int = schema(r#"{"type": "int", "doc": "first seen"}"#);
    let long = schema(r#""long""#);
    let admin = |action, key, time_us| AuditEntry {
        time_us,
        action,
        peer: Some("local"),
        key_id: Some(key),
        records: 0,
        size: 0,
        ..AuditEntry::test_send(0)
    };
    let send = AuditEntry::test_send;
    vec![
        Action {
            entry: admin("key_add", "ZK1", 1),
            accepted: None,
        },
        Action {
            entry: admin("key_add", "ZK2", 2),
            accepted: None,
        },
        Action {
            entry: AuditEntry {
                schema: Some(int),
                transport: Some("curve"),
                server: Some("alpha"),
                ..send(10)
            },
            accepted: Some(("[1]", "nonce-0000000001")),
        },
        Action {
            entry: AuditEntry {
                status: Status::Rejected,
                reason: Some("bad_signature"),
                detail: Some("the signature does not match"),
                records: 0,
                server: Some("beta"),
                ..send(20)
            },
            accepted: None,
        },
        Action {
            entry: AuditEntry {
                key_id: Some("ZK2"),
                peer: Some("10.0.0.2"),
                records: 2,
                schema: Some(long),
                transport: Some("plaintext"),
                server: Some("beta"),
                ..send(30)
            },
            accepted: Some(("[2,3]", "nonce-0000000002")),
        },
        Action {
            entry: AuditEntry {
                reason: Some("duplicate"),
                records: 0,
                server: Some("alpha"),
                ..send(40)
            },
            accepted: None,
        },
        Action {
            entry: AuditEntry {
                status: Status::Rejected,
                reason: Some("malformed"),
                detail: Some("41 more malformed refusals from this peer"),
                key_id: None,
                peer: Some("192.0.2.7"),
                records: 0,
                size: 2911,
                requests: 41,
                server: Some("alpha"),
                ..send(50)
            },
            accepted: None,
        },
        Action {
            entry: AuditEntry {
                schema: Some(int),
                status: Status::Rejected,
                reason: Some("schema_mismatch"),
                records: 0,
                ..send(55)
            },
            accepted: None,
        },
        Action {
            entry: admin("key_revoke", "ZK1", 60),
            accepted: None,
        },
    ]
}

/// The fixture in a SQLite store.
fn sqlite_store() -> Store {
    let mut store = Store::open_in_memory().unwrap();
    for action in actions() {
        match action.accepted {
            Some((payload, nonce)) => {
                let nonce = Nonce {
                    nonce,
                    timestamp: action.entry.time_us,
                    signature: "sig",
                    request_id: None,
                };
                store
                    .commit_accepted(&action.entry, &nonce, payload)
                    .unwrap();
            }
            None => {
                store.record(&action.entry).unwrap();
            }
        }
    }
    store
}

/// A fresh database with the zavro schema, or `None` (after saying so) without PostgreSQL.
fn fresh_store() -> Option<(PgStore, String)> {
    let cluster = test_cluster::shared()?;
    let url = cluster.fresh_database();
    let store = PgStore::connect_or_create(&PgUrl::parse(&url).unwrap()).unwrap();
    Some((store, url))
}

/// The `schemas` row of `schema`, added the first time.
fn schema_id(tx: &mut postgres::Transaction, schema: &SchemaFingerprint, time_us: i64) -> i64 {
    tx.execute(
        "INSERT INTO schemas (fingerprint, canonical, schema, first_seen_us) VALUES ($1, $2, $3, $4)
         ON CONFLICT (fingerprint) DO NOTHING",
        &[
            &schema.fingerprint,
            &schema.canonical,
            &schema.text,
            &time_us,
        ],
    )
    .unwrap();
    tx.query_one(
        "SELECT id FROM schemas WHERE fingerprint = $1",
        &[&schema.fingerprint],
    )
    .unwrap()
    .get(0)
}

/// Writes `actions` as writers do: each in a transaction of its own that holds the chain's lock.
fn write(store: &mut PgStore, actions: &[Action]) {
    let mut statements = Statements::default();
    for action in actions {
        let mut tx = store.client().transaction().unwrap();
        let mut chain = ChainWriter::lock(&mut tx, &mut statements).unwrap();
        let schema = action
            .entry
            .schema
            .map(|schema| schema_id(&mut tx, schema, action.entry.time_us));
        let payload = action.accepted.map(|(payload, _)| payload);
        let id = chain.append(&action.entry, schema, payload);
        if let Some((_, nonce)) = action.accepted {
            tx.execute(
                "INSERT INTO nonces (key_id, nonce, timestamp, audit_id, signature)
                 VALUES ($1, $2, $3, $4, 'sig')",
                &[
                    &action.entry.key_id.unwrap_or_default(),
                    &nonce,
                    &action.entry.time_us,
                    &id,
                ],
            )
            .unwrap();
        }
        chain.write(&mut tx, &mut statements).unwrap();
        tx.commit().unwrap();
    }
}

/// The fixture in a fresh PostgreSQL database.
fn pg_store() -> Option<(PgStore, String)> {
    let (mut store, url) = fresh_store()?;
    write(&mut store, &actions());
    Some((store, url))
}

fn rows(store: &mut dyn AuditStore, filter: &AuditFilter) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    store
        .for_each_audit(filter, &mut |row| {
            rows.push(row);
            ControlFlow::Continue(())
        })
        .unwrap();
    rows
}

/// Every filter `audit query`, `--follow` and `export` use, alone and combined.
fn filters() -> Vec<AuditFilter> {
    let int = schema(r#""int""#).fingerprint.clone();
    let all = AuditFilter::default();
    vec![
        all.clone(),
        AuditFilter {
            with_payload: true,
            ..all.clone()
        },
        AuditFilter {
            key: Some("ZK1".into()),
            ..all.clone()
        },
        AuditFilter {
            status: Some(Status::Rejected),
            ..all.clone()
        },
        AuditFilter {
            status: Some(Status::Accepted),
            key: Some("ZK2".into()),
            with_payload: true,
            ..all.clone()
        },
        AuditFilter {
            peer: Some("local".into()),
            ..all.clone()
        },
        AuditFilter {
            reason: Some("duplicate".into()),
            ..all.clone()
        },
        AuditFilter {
            schema: Some(int),
            ..all.clone()
        },
        AuditFilter {
            schema: Some("0".repeat(64)),
            ..all.clone()
        },
        AuditFilter {
            since_us: Some(20),
            until_us: Some(50),
            ..all.clone()
        },
        AuditFilter {
            since_us: Some(30),
            limit: Some(2),
            ..all.clone()
        },
        AuditFilter {
            limit: Some(3),
            with_payload: true,
            ..all.clone()
        },
        AuditFilter {
            limit: Some(0),
            ..all.clone()
        },
        AuditFilter {
            after_id: Some(4),
            limit: Some(2),
            ..all.clone()
        },
        AuditFilter {
            after_id: Some(9),
            ..all
        },
    ]
}

#[test]
fn every_query_count_and_listing_gives_what_sqlite_gives() {
    let Some((mut pg, _)) = pg_store() else {
        return;
    };
    let mut sqlite = sqlite_store();
    for filter in filters() {
        let expected = rows(&mut sqlite, &filter);
        assert_eq!(rows(&mut pg, &filter), expected, "{filter:?}");
    }
    let everything = rows(&mut pg, &AuditFilter::default());
    assert_eq!(everything.len(), 9, "the fixture is all there");
    assert!(
        rows(
            &mut pg,
            &AuditFilter {
                with_payload: true,
                ..Default::default()
            }
        )
        .iter()
        .any(|row| row.payload.as_deref() == Some("[2,3]"))
    );
    for (since, until) in [(None, None), (Some(20), None), (Some(10), Some(40))] {
        let expected = AuditStore::count_audit(&mut sqlite, since, until).unwrap();
        assert_eq!(pg.count_audit(since, until).unwrap(), expected);
    }
    assert_eq!(
        pg.count_audit(None, None)
            .unwrap()
            .iter()
            .map(|c| c.requests)
            .sum::<u64>(),
        1 + 1 + 1 + 1 + 41 + 1,
        "a summary counts its requests"
    );
    for prefix in ["", "3F2B", "ffff", "%"] {
        let expected = AuditStore::schemas_matching(&mut sqlite, prefix).unwrap();
        assert_eq!(pg.schemas_matching(prefix).unwrap(), expected, "{prefix}");
    }
    assert_eq!(pg.list_schemas().unwrap().len(), 2);
    let head = AuditStore::audit_head(&mut sqlite).unwrap();
    assert!(head.is_some());
    assert_eq!(
        pg.audit_head().unwrap(),
        head,
        "the same chain, hash for hash"
    );
}

#[test]
fn a_walk_stops_where_the_callback_breaks() {
    let Some((mut pg, _)) = pg_store() else {
        return;
    };
    let mut seen = Vec::new();
    pg.for_each_audit(&AuditFilter::default(), &mut |row| {
        seen.push(row.id);
        if row.id == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(seen, [1, 2, 3]);
    // The connection is still usable after a walk left early.
    assert_eq!(pg.audit_head().unwrap().unwrap().0, 9);
}

#[test]
fn an_empty_trail_has_no_head_and_verifies() {
    let Some((mut pg, _)) = fresh_store() else {
        return;
    };
    assert_eq!(pg.audit_head().unwrap(), None);
    let verified = pg.verify_audit(None).unwrap().unwrap();
    assert_eq!((verified.rows, verified.head), (0, None));
    assert!(pg.count_audit(None, None).unwrap().is_empty());
    assert!(pg.list_schemas().unwrap().is_empty());
    let pruned = pg.prune_audit(100, 200, false).unwrap();
    assert_eq!((pruned.rows, pruned.range), (0, None));
}

#[test]
fn an_untouched_chain_verifies_with_the_head_sqlite_gives() {
    let Some((mut pg, _)) = pg_store() else {
        return;
    };
    let mut sqlite = sqlite_store();
    let expected = AuditStore::verify_audit(&mut sqlite, None)
        .unwrap()
        .unwrap();
    let verified = pg.verify_audit(None).unwrap().unwrap();
    assert_eq!(verified, expected);
    let (row, hash) = verified.head.unwrap();
    assert!(pg.verify_audit(Some((row, &hash))).unwrap().is_ok());
    assert!(matches!(
        pg.verify_audit(Some((3, &hash))).unwrap(),
        Err(ChainBreak::HeadMismatch { row: 3, .. })
    ));
}

/// Runs `sql` on the database behind zavro's back, then verifies.
fn tampered(pg: &mut PgStore, sql: &str) -> ChainBreak {
    pg.client().batch_execute(sql).unwrap();
    pg.verify_audit(None).unwrap().unwrap_err()
}

/// What a tampering must be reported as.
type Expected = fn(&ChainBreak) -> bool;

#[test]
fn edited_deleted_and_truncated_rows_and_edited_schemas_are_caught() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let cases: [(&str, Expected); 8] = [
        ("UPDATE audit SET peer = '10.9.9.9' WHERE id = 4", |b| {
            matches!(b, ChainBreak::Altered { id: 4, .. })
        }),
        ("UPDATE audit SET server = 'gamma' WHERE id = 5", |b| {
            matches!(b, ChainBreak::Altered { id: 5, .. })
        }),
        (
            "UPDATE payloads SET json = '[666]' WHERE audit_id = 3",
            |b| matches!(b, ChainBreak::Altered { id: 3, what } if what.contains("changed")),
        ),
        (
            "DELETE FROM payloads WHERE audit_id = 5",
            |b| matches!(b, ChainBreak::Altered { id: 5, what } if what.contains("deleted")),
        ),
        ("DELETE FROM audit WHERE id = 4", |b| {
            *b == ChainBreak::Link {
                id: 5,
                after: "row #3".into(),
            }
        }),
        ("DELETE FROM audit WHERE id = 9", |b| {
            *b == ChainBreak::Truncated {
                newest: 8,
                issued: 9,
            }
        }),
        (
            "UPDATE audit SET id = 100 WHERE id = 6; UPDATE audit SET id = 6 WHERE id = 7; \
             UPDATE audit SET id = 7 WHERE id = 100",
            |b| {
                *b == ChainBreak::Link {
                    id: 6,
                    after: "row #5".into(),
                }
            },
        ),
        (
            "UPDATE schemas SET schema = '\"string\"' WHERE canonical = '\"long\"'",
            |b| matches!(b, ChainBreak::SchemaAltered { .. }),
        ),
    ];
    for (sql, expected) in cases {
        let url = cluster.fresh_database();
        let mut pg = PgStore::connect_or_create(&PgUrl::parse(&url).unwrap()).unwrap();
        write(&mut pg, &actions());
        assert!(pg.verify_audit(None).unwrap().is_ok(), "the control");
        let broken = tampered(&mut pg, sql);
        assert!(expected(&broken), "{sql}: {broken}");
    }
}

#[test]
fn a_rewritten_tail_is_caught_by_a_recorded_head() {
    let Some((mut pg, _)) = pg_store() else {
        return;
    };
    let (row, hash) = pg.audit_head().unwrap().unwrap();
    // Rewrite the newest row and re-seal it, as someone with write access and AUDIT.md could.
    let prev: String = pg
        .client()
        .query_one("SELECT prev_hash FROM audit WHERE id = $1", &[&row])
        .unwrap()
        .get(0);
    let forged = AuditEntry {
        key_id: Some("ZK2"),
        ..AuditEntry::test_send(60)
    };
    let fields = forged.chained(row, None);
    let forged_hash = fields.hash(&prev);
    pg.client()
        .execute(
            "UPDATE audit SET action = 'send', key_id = 'ZK2', peer = '127.0.0.1', records = 1, size = 10,
                              hash = $2
             WHERE id = $1",
            &[&row, &forged_hash],
        )
        .unwrap();
    assert!(
        pg.verify_audit(None).unwrap().is_ok(),
        "a re-sealed chain is self-consistent"
    );
    assert!(matches!(
        pg.verify_audit(Some((row, &hash))).unwrap(),
        Err(ChainBreak::HeadMismatch { .. })
    ));
}

#[test]
fn verify_reads_one_snapshot_while_a_writer_appends() {
    let Some((mut pg, url)) = pg_store() else {
        return;
    };
    // Another connection holds the chain's lock with a row appended but not committed: verify neither waits for
    // it nor sees it, and the counter it reads is the committed one.
    let mut writer = PgStore::connect(&PgUrl::parse(&url).unwrap()).unwrap();
    let mut statements = Statements::default();
    let mut tx = writer.client().transaction().unwrap();
    let mut chain = ChainWriter::lock(&mut tx, &mut statements).unwrap();
    chain.append(&AuditEntry::test_send(70), None, None);
    chain.write(&mut tx, &mut statements).unwrap();
    let verified = pg.verify_audit(None).unwrap().unwrap();
    assert_eq!(verified.rows, 9);
    tx.commit().unwrap();
    let verified = pg.verify_audit(None).unwrap().unwrap();
    assert_eq!(verified.rows, 10);
}

#[test]
fn prune_removes_what_sqlite_removes_and_leaves_the_same_chain() {
    let Some((mut pg, _)) = pg_store() else {
        return;
    };
    let mut sqlite = sqlite_store();
    let (head_row, head_hash) = pg.audit_head().unwrap().unwrap();
    let dry = pg.prune_audit(35, 1_000, true).unwrap();
    assert_eq!(
        dry,
        AuditStore::prune_audit(&mut sqlite, 35, 1_000, true).unwrap()
    );
    assert_eq!((dry.rows, dry.payloads, dry.nonces), (5, 2, 2));
    assert_eq!(
        rows(&mut pg, &AuditFilter::default()).len(),
        9,
        "a dry run removes nothing"
    );

    let pruned = pg.prune_audit(35, 1_000, false).unwrap();
    let expected = AuditStore::prune_audit(&mut sqlite, 35, 1_000, false).unwrap();
    assert_eq!(pruned, expected);
    assert_eq!(
        pruned.schemas, 1,
        "only row 5 named the long schema; row 8 still names int"
    );
    assert_eq!(
        rows(&mut pg, &AuditFilter::default()),
        rows(&mut sqlite, &AuditFilter::default())
    );
    let verified = pg.verify_audit(None).unwrap().unwrap();
    assert_eq!(
        verified,
        AuditStore::verify_audit(&mut sqlite, None)
            .unwrap()
            .unwrap()
    );
    assert_eq!(
        verified.head.as_ref().map(|(id, _)| *id),
        Some(10),
        "the prune row"
    );
    assert!(
        pg.verify_audit(Some((head_row, &head_hash)))
            .unwrap()
            .is_ok()
    );
    let checkpoint_hash = pruned.last_hash.clone().unwrap();
    assert!(
        pg.verify_audit(Some((5, &checkpoint_hash)))
            .unwrap()
            .is_ok()
    );
    assert!(matches!(
        pg.verify_audit(Some((2, &checkpoint_hash))).unwrap(),
        Err(ChainBreak::HeadPruned { row: 2, through: 5 })
    ));
    let nonces: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM nonces", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        nonces, 0,
        "both accepted requests were pruned with their nonces"
    );

    // Deleting the first row after the checkpoint breaks the link to it.
    let broken = tampered(&mut pg, "DELETE FROM audit WHERE id = 6");
    assert_eq!(
        broken,
        ChainBreak::Link {
            id: 7,
            after: "the pruning checkpoint at #5".into()
        }
    );
}

#[test]
fn pruning_everything_then_writing_continues_the_chain_and_ids() {
    let Some((mut pg, _)) = pg_store() else {
        return;
    };
    let pruned = pg.prune_audit(1_000, 2_000, false).unwrap();
    assert_eq!((pruned.rows, pruned.schemas), (9, 2));
    assert!(pg.list_schemas().unwrap().is_empty());
    write(
        &mut pg,
        &[Action {
            entry: AuditEntry::test_send(3_000),
            accepted: None,
        }],
    );
    let ids: Vec<i64> = rows(&mut pg, &AuditFilter::default())
        .iter()
        .map(|row| row.id)
        .collect();
    assert_eq!(ids, [10, 11], "the prune row, then the new row: ids go on");
    assert_eq!(pg.verify_audit(None).unwrap().unwrap().rows, 2);
}

#[test]
fn a_prune_waits_for_a_writer_holding_the_chain() {
    let Some((mut pg, url)) = pg_store() else {
        return;
    };
    let mut writer = PgStore::connect(&PgUrl::parse(&url).unwrap()).unwrap();
    let mut statements = Statements::default();
    let mut tx = writer.client().transaction().unwrap();
    let mut chain = ChainWriter::lock(&mut tx, &mut statements).unwrap();
    // The prune starts while the writer holds the lock; it can only run once the writer commits, and then its
    // row goes after the writer's.
    let pruning = std::thread::spawn(move || pg.prune_audit(35, 1_000, false).map(|p| (p, pg)));
    crate::store::postgres::tests::wait_until("the prune waits for the chain's lock", || {
        let waiting: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        waiting == 1
    });
    chain.append(&AuditEntry::test_send(70), None, None);
    chain.write(&mut tx, &mut statements).unwrap();
    tx.commit().unwrap();
    let (pruned, mut pg) = pruning.join().unwrap().unwrap();
    assert_eq!(pruned.rows, 5);
    let newest = rows(&mut pg, &AuditFilter::default());
    let tail: Vec<(i64, &str)> = newest[newest.len() - 2..]
        .iter()
        .map(|row| (row.id, row.action.as_str()))
        .collect();
    assert_eq!(tail, [(10, "send"), (11, "audit_prune")]);
    assert!(pg.verify_audit(None).unwrap().is_ok());
}

#[test]
fn errors_name_the_failure_in_one_line() {
    let Some((mut pg, _)) = pg_store() else {
        return;
    };
    pg.client().batch_execute("DROP TABLE payloads").unwrap();
    let err = pg.verify_audit(None).expect_err("the table is gone");
    assert!(matches!(err, StoreError::Postgres(_)), "{err}");
    assert!(err.to_string().contains("payloads"), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");
}
