//! Operator features: key expiry, usage counts, audit query formats and filters, stats, export, prune, follow.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::mpsc,
    thread,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::json;

use crate::common::{
    DEADLINE, TestEnv, parse_json, parse_ndjson, stderr_of, stdout_of, wait_until,
};
use crate::common::{on_both_backends, zavro_process};

#[test]
fn an_expired_key_is_refused_with_its_own_code_and_keys_list_shows_the_expiry() {
    let env = TestEnv::new();
    let out = env
        .zavro()
        .args(["keys", "add", "--json", "--expires", "1s"])
        .assert()
        .code(0);
    let added = parse_json(&out.get_output().stdout);
    let (key, secret) = (
        added["key"].as_str().unwrap().to_owned(),
        added["secret"].as_str().unwrap().to_owned(),
    );
    let expires = env.keys()[0]["expires"]
        .as_str()
        .expect("keys list shows the expiry")
        .to_owned();
    let expires_us = zavro::timestamp::parse_rfc3339(&expires).unwrap();
    // Bounded wait for the wall clock to pass the expiry; nothing depends on how fast anything runs.
    wait_until("the key's expiry to pass", || {
        zavro::timestamp::now_micros() > expires_us
    });

    let server = env.start_server();
    let refused = env
        .send(server.endpoint(), &key, &secret, "{\"late\":true}")
        .code(4);
    assert!(
        stderr_of(&refused).contains("expired_key"),
        "{}",
        stderr_of(&refused)
    );
    let last = env.audit().pop().unwrap();
    assert_eq!(
        (&last["status"], &last["reason"]),
        (&json!("rejected"), &json!("expired_key"))
    );
    assert!(env.output_lines().is_empty());
}

on_both_backends!(keys_add_refuses_an_expiry_in_the_past_or_unreadable);

fn keys_add_refuses_an_expiry_in_the_past_or_unreadable(env: TestEnv) {
    for bad in ["2001-01-01T00:00:00Z", "soon", "0s"] {
        let out = env
            .zavro()
            .args(["keys", "add", "--expires", bad])
            .assert()
            .code(2);
        assert!(stderr_of(&out).contains("--expires"), "{}", stderr_of(&out));
    }
    assert!(env.keys().is_empty(), "no key was stored");
}

on_both_backends!(keys_list_counts_accepted_requests_and_records_per_key);

fn keys_list_counts_accepted_requests_and_records_per_key(env: TestEnv) {
    let (a, secret_a) = env.add_key();
    let (b, _) = env.add_key();
    let server = env.start_server();
    env.send(server.endpoint(), &a, &secret_a, "1 2 3").code(0);
    env.send_with(server.endpoint(), &a, &secret_a, "4 5", &["--batch", "1"])
        .code(0);
    env.send(server.endpoint(), &a, "wrong-secret-wrong-secret", "6")
        .code(4);
    let out = env
        .zavro()
        .args(["keys", "list", "--json"])
        .assert()
        .code(0);
    let keys = parse_ndjson(&out.get_output().stdout);
    assert_eq!(keys[0]["key"], a.as_str());
    assert_eq!(
        (&keys[0]["requests"], &keys[0]["records"]),
        (&json!(3), &json!(5))
    );
    assert_eq!(keys[1]["key"], b.as_str());
    assert_eq!(
        (&keys[1]["requests"], &keys[1]["records"]),
        (&json!(0), &json!(0))
    );

    let table = stdout_of(&env.zavro().args(["keys", "list"]).assert().code(0));
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "KEY",
            "LABEL",
            "CREATED",
            "REVOKED",
            "EXPIRES",
            "LAST USED",
            "REQUESTS",
            "RECORDS"
        ]
    );
}

/// A store with one accepted and one rejected request from a key; returns (env, key).
fn store_with_traffic() -> (TestEnv, String) {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    env.send(server.endpoint(), &key, &secret, "{\"a\":1}\n{\"a\":2}")
        .code(0);
    env.send(server.endpoint(), &key, "wrong-secret-wrong-secret", "3")
        .code(4);
    (env, key)
}

#[test]
fn audit_query_filters_by_reason_and_peer_and_takes_relative_times() {
    let (env, _) = store_with_traffic();
    let refused = env.audit_with(&["--reason", "bad_signature"]);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["status"], "rejected");
    assert_eq!(env.audit_with(&["--peer", "local"]).len(), 1, "the key_add");
    assert_eq!(env.audit_with(&["--peer", "127.0.0.1"]).len(), 2);
    assert_eq!(env.audit_with(&["--since", "1h"]).len(), 3);
    assert!(env.audit_with(&["--until", "1h"]).is_empty());
    let out = env
        .zavro()
        .args(["audit", "query", "--since", "5 minutes"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("duration"), "{}", stderr_of(&out));
}

#[test]
fn audit_query_formats_json_and_csv_carry_the_same_rows() {
    let (env, key) = store_with_traffic();
    let json_rows = parse_ndjson(
        &env.zavro()
            .args(["audit", "query", "--format", "json"])
            .assert()
            .code(0)
            .get_output()
            .stdout,
    );
    let shorthand = parse_ndjson(
        &env.zavro()
            .args(["audit", "query", "--json"])
            .assert()
            .code(0)
            .get_output()
            .stdout,
    );
    assert_eq!(json_rows, shorthand, "--json is --format json");
    let csv = stdout_of(
        &env.zavro()
            .args(["audit", "query", "--format", "csv"])
            .assert()
            .code(0),
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,time,action,status,reason,message,key,peer,records,size,schema,requests,transport,server"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[2].starts_with(&format!("{},", json_rows[1]["id"])));
    assert!(
        lines[2].contains(&format!(",{key},127.0.0.1,2,")),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("bad_signature"), "{}", lines[3]);
    env.zavro()
        .args(["audit", "query", "--json", "--format", "csv"])
        .assert()
        .code(2);
    let none = env
        .zavro()
        .args(["audit", "query", "--format", "csv", "--reason", "replay"])
        .assert()
        .code(0);
    assert_eq!(
        stdout_of(&none),
        "id,time,action,status,reason,message,key,peer,records,size,schema,requests,transport,server\n",
        "the header even without rows"
    );
}

#[test]
fn audit_query_csv_quotes_odd_fields_and_neutralises_formulas_from_clients() {
    let env = TestEnv::new();
    env.create_store();
    let server = env.start_server();
    // A key id may begin with `-`, and a spreadsheet would compute `-2-3`.
    env.send(server.endpoint(), "-2-3", "some-secret-of-20-chars", "1")
        .code(4);
    let formula = "=HYPERLINK(\"http://evil.example\", \"a\")\nsecond line";
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let changed = conn
        .execute(
            "UPDATE audit SET detail = ?1 WHERE key_id = '-2-3'",
            [formula],
        )
        .unwrap();
    assert_eq!(changed, 1, "the unknown key's request is audited");
    let csv = env
        .zavro()
        .args([
            "audit",
            "query",
            "--format",
            "csv",
            "--reason",
            "unknown_key",
        ])
        .assert()
        .code(0);
    let mut reader = csv::Reader::from_reader(csv.get_output().stdout.as_slice());
    let header = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1, "{}", stdout_of(&csv));
    let field = |name: &str| {
        let column = header.iter().position(|h| h == name);
        records[0][column.unwrap()].to_owned()
    };
    assert_eq!(field("key"), "'-2-3");
    assert_eq!(field("message"), format!("'{formula}"));
    assert_eq!(field("reason"), "unknown_key");
    assert_eq!(field("peer"), "127.0.0.1");
    assert!(field("id").parse::<i64>().unwrap() > 0);
}

#[test]
fn audit_stats_counts_requests_and_records_per_key_and_reason() {
    let (env, key) = store_with_traffic();
    let out = env
        .zavro()
        .args(["audit", "stats", "--since", "1h", "--json"])
        .assert()
        .code(0);
    let stats = parse_json(&out.get_output().stdout);
    assert_eq!(
        stats["keys"],
        json!([{"key": key, "accepted": 1, "records": 2, "duplicates": 0, "rejected": 1}])
    );
    assert_eq!(
        stats["reasons"],
        json!([
            {"status": "accepted", "reason": "stored", "requests": 1},
            {"status": "rejected", "reason": "bad_signature", "requests": 1}
        ])
    );
    let text = stdout_of(&env.zavro().args(["audit", "stats"]).assert().code(0));
    assert!(
        text.contains("bad_signature") && text.contains(&key),
        "{text}"
    );
    let empty = env
        .zavro()
        .args(["audit", "stats", "--until", "1h", "--json"])
        .assert()
        .code(0);
    assert_eq!(parse_json(&empty.get_output().stdout)["keys"], json!([]));
}

#[test]
fn audit_export_writes_the_rows_of_query_json_payload() {
    let (env, _) = store_with_traffic();
    let exported = parse_ndjson(
        &env.zavro()
            .args(["audit", "export", "--since", "1h"])
            .assert()
            .code(0)
            .get_output()
            .stdout,
    );
    assert_eq!(exported, env.audit());
    assert_eq!(exported[1]["payload"], json!([{"a": 1}, {"a": 2}]));
}

#[test]
fn audit_prune_refuses_the_replay_window_and_a_dry_run_removes_nothing() {
    let (env, _) = store_with_traffic();
    for before in ["1m", "299s"] {
        let out = env
            .zavro()
            .args(["audit", "prune", "--before", before])
            .assert()
            .code(2);
        assert!(
            stderr_of(&out).contains("replay window"),
            "{}",
            stderr_of(&out)
        );
    }
    env.zavro()
        .args(["audit", "prune", "--before", "10m", "--max-skew", "86400"])
        .assert()
        .code(2);
    let out = env
        .zavro()
        .args(["audit", "prune", "--before", "10m", "--dry-run"])
        .assert()
        .code(0);
    assert!(
        stdout_of(&out).contains("nothing to prune"),
        "{}",
        stdout_of(&out)
    );
    let out = env
        .zavro()
        .args(["audit", "prune", "--before", "10m"])
        .assert()
        .code(0);
    assert!(
        stdout_of(&out).contains("nothing to prune"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(env.audit().len(), 3);
    env.zavro().args(["audit", "verify"]).assert().code(0);
}

#[test]
fn audit_query_follow_prints_new_rows_and_exits_0_on_sigterm() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let mut child = zavro_process();
    let mut child = child
        .arg("--db")
        .arg(&env.db)
        .args(["audit", "query", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn audit query --follow");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(parse_json(line.as_bytes())).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(DEADLINE).expect("a row from --follow");
    assert_eq!(next()["action"], "key_add", "the backlog comes first");
    env.send(server.endpoint(), &key, &secret, "{\"live\":1}")
        .code(0);
    let row = next();
    assert_eq!(
        (&row["action"], &row["records"]),
        (&json!("send"), &json!(1))
    );
    env.send(server.endpoint(), &key, "wrong-secret-wrong-secret", "2")
        .code(4);
    assert_eq!(next()["reason"], "bad_signature");

    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let mut status = None;
    wait_until("audit query --follow to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{status:?}");
    reader.join().unwrap();
}
