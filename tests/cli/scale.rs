//! How the operator queries scale: a store filled with 10,000,000 audit rows by plain SQL, then the main queries
//! timed through the real binary. Ignored by default (it takes minutes and a few GB of disk); run it with
//! `cargo test --release --test cli scale -- --ignored --nocapture` and read the printed timings. It asserts
//! only that each command succeeds, never how fast: timings depend on the machine.

use std::time::Instant;

use crate::common::{TestEnv, stdout_of};

const ROWS: i64 = 10_000_000;

#[test]
#[ignore = "fills a store with 10 M rows; run by hand to measure"]
fn operator_queries_on_a_store_of_ten_million_audit_rows() {
    let env = TestEnv::new();
    let keys: Vec<String> = (0..10).map(|_| env.add_key().0).collect();
    let now_us = zavro::timestamp::now_micros();
    // 10 M rows spread evenly over the last 7 days, one in 100 rejected, one in 1000 from a rare peer.
    let step_us = 7 * 86_400_000_000 / ROWS;
    let started = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF")
            .unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch("CREATE TEMP TABLE k (n INTEGER PRIMARY KEY, id TEXT)")
            .unwrap();
        for (n, key) in keys.iter().enumerate() {
            tx.execute(
                "INSERT INTO k VALUES (?1, ?2)",
                rusqlite::params![n as i64, key],
            )
            .unwrap();
        }
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO audit (time_us, action, status, reason, detail, key_id, peer, records, size,
                                prev_hash, hash)
             SELECT ?2 + i * ?3, 'send',
                    CASE WHEN i % 100 = 0 THEN 'rejected' ELSE 'accepted' END,
                    CASE WHEN i % 100 = 0 THEN 'bad_signature' END,
                    CASE WHEN i % 100 = 0 THEN 'signature does not match' END,
                    (SELECT id FROM k WHERE n = i % 10),
                    CASE WHEN i % 1000 = 7 THEN '10.0.0.99' ELSE '10.0.0.' || (i % 50) END,
                    CASE WHEN i % 100 = 0 THEN 0 ELSE 10 END, 1500, 'x', 'x'
             FROM n",
            rusqlite::params![ROWS, now_us - ROWS * step_us, step_us],
        )
        .unwrap();
        // The key_add rows came first (ids 1 to 10): date them before every filled row, so that ids and times
        // rise together as in a real store. (When they do not, queries stay correct but read more rows.)
        tx.execute(
            "UPDATE audit SET time_us = ?1 WHERE action = 'key_add'",
            [now_us - ROWS * step_us - 1],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    println!(
        "filled {ROWS} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let key = keys[3].clone();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("keys list", vec!["keys", "list"]),
        (
            "audit query --limit 20",
            vec!["audit", "query", "--limit", "20"],
        ),
        (
            "audit query --key K --limit 20",
            vec!["audit", "query", "--key", &key, "--limit", "20"],
        ),
        (
            "audit query --status rejected --limit 20",
            vec!["audit", "query", "--status", "rejected", "--limit", "20"],
        ),
        (
            "audit query --reason bad_signature --limit 20",
            vec![
                "audit",
                "query",
                "--reason",
                "bad_signature",
                "--limit",
                "20",
            ],
        ),
        (
            "audit query --reason replay --limit 20 (no match)",
            vec!["audit", "query", "--reason", "replay", "--limit", "20"],
        ),
        (
            "audit query --peer 10.0.0.99 --limit 20",
            vec!["audit", "query", "--peer", "10.0.0.99", "--limit", "20"],
        ),
        (
            "audit query --since 15m --json",
            vec!["audit", "query", "--since", "15m", "--json"],
        ),
        (
            "audit query --since 2h --limit 20",
            vec!["audit", "query", "--since", "2h", "--limit", "20"],
        ),
        (
            "audit query --since 7d --until 6d --limit 20",
            vec![
                "audit", "query", "--since", "7d", "--until", "6d", "--limit", "20",
            ],
        ),
        (
            "audit query --key K --status rejected --since 1d --limit 20",
            vec![
                "audit", "query", "--key", &key, "--status", "rejected", "--since", "1d",
                "--limit", "20",
            ],
        ),
        (
            "audit query --since 7d --limit 20",
            vec!["audit", "query", "--since", "7d", "--limit", "20"],
        ),
        (
            "audit export --since 1h",
            vec!["audit", "export", "--since", "1h"],
        ),
        (
            "audit stats --since 1h",
            vec!["audit", "stats", "--since", "1h"],
        ),
        (
            "audit stats --since 1d",
            vec!["audit", "stats", "--since", "1d"],
        ),
        ("audit stats (all 10 M rows)", vec!["audit", "stats"]),
        (
            "audit prune --before 1d --dry-run",
            vec!["audit", "prune", "--before", "1d", "--dry-run"],
        ),
    ];
    for (name, args) in cases {
        let started = Instant::now();
        let out = env.zavro().args(&args).assert().success();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let lines = stdout_of(&out).lines().count();
        println!("{ms:>9.1} ms  {name}  ({lines} lines out)");
    }
}
