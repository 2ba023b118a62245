//! `zavro store copy FROM TO`: a SQLite store that a real server filled, copied into a real PostgreSQL database;
//! what it refuses, and how.

use serde_json::{Value, json};

use zavro::protocol::{Reply, Request};

use crate::common::{
    Server, TestEnv, assert_accepted, bare_zavro, parse_json, parse_ndjson, reject_code,
    request_once, signed_now, stderr_of, stdout_of,
};

/// A SQLite store filled through a real server: two keys, accepted and refused requests (one sent as raw
/// frames), and a revocation.
fn served_store() -> TestEnv {
    let env = TestEnv::new();
    let (a, secret_a) = env.add_key();
    let (b, secret_b) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint().to_owned();
    env.send(&ep, &a, &secret_a, "{\"n\":1}\n{\"n\":2}").code(0);
    env.send(&ep, &a, "wrong-secret-wrong-secret", "{\"n\":3}")
        .code(4);
    env.send(&ep, &b, &secret_b, "[{\"n\":4}]").code(0);
    let frames = signed_now(&a, &secret_a, &[json!({"kept": true})]).to_frames();
    assert_accepted(&request_once(&ep, &frames), 1);
    server.stop();
    env.zavro().args(["keys", "revoke", &b]).assert().success();
    env
}

/// `zavro store copy FROM TO` with the target's master key file in ZAVRO_MASTER_KEY_FILE.
fn copy(from: &TestEnv, to: &TestEnv) -> assert_cmd::assert::Assert {
    let mut cmd = bare_zavro();
    if let Some(key) = &to.master_key {
        cmd.env("ZAVRO_MASTER_KEY_FILE", key);
    }
    cmd.arg("store")
        .arg("copy")
        .arg(&from.db)
        .arg(&to.db)
        .assert()
}

fn stdout_json(env: &TestEnv, args: &[&str]) -> Vec<Value> {
    parse_ndjson(
        &env.zavro()
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
}

#[test]
fn a_served_store_is_copied_whole_and_the_copy_verifies_with_its_head() {
    let Some(target) = TestEnv::postgres() else {
        return;
    };
    let source = served_store();
    let head = stdout_of(&source.zavro().args(["audit", "head"]).assert().success())
        .trim()
        .to_owned();
    let (head_row, _) = head.split_once(':').expect("ROW:HASH");
    let head_row: i64 = head_row.parse().unwrap();

    let out = copy(&source, &target).success();
    let said = stdout_of(&out);
    assert!(
        said.starts_with(&format!("copied {} to postgres://", source.db.display()))
            && said.contains(": 2 API keys, ")
            && said.contains(&format!("the copy holds the source's head {head}"))
            && said.contains(&format!("row #{} records the copy", head_row + 1)),
        "{said}"
    );

    // The chain: the source's head is in the copy with the same hash, and one row records the copy.
    let verified = stdout_of(
        &target
            .zavro()
            .args(["audit", "verify", "--against", &head])
            .assert()
            .success(),
    );
    assert!(
        verified.starts_with(&format!(
            "verified {} rows; head {}:",
            head_row + 1,
            head_row + 1
        )),
        "{verified}"
    );
    let source_rows = source.audit();
    let copy_rows = target.audit();
    assert_eq!(copy_rows[..copy_rows.len() - 1], source_rows[..]);
    let copy_row = copy_rows.last().unwrap();
    assert_eq!(
        (&copy_row["action"], &copy_row["peer"], &copy_row["server"]),
        (&json!("store_copy"), &json!("local"), &Value::Null)
    );
    assert!(
        copy_row["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("copied from {}: 2 API keys", source.db.display())),
        "{copy_row}"
    );

    // Every listing gives what the source gives.
    assert_eq!(target.keys(), source.keys());
    for args in [&["audit", "schemas", "--json"][..], &["audit", "export"]] {
        let mut copied = stdout_json(&target, args);
        if args[1] == "export" {
            copied.pop();
        }
        assert_eq!(copied, stdout_json(&source, args), "{args:?}");
    }
    let stats = |env: &TestEnv| {
        let mut stats = parse_json(
            &env.zavro()
                .args(["audit", "stats", "--json"])
                .assert()
                .success()
                .get_output()
                .stdout,
        );
        stats["until"] = Value::Null;
        stats
    };
    assert_eq!(stats(&target), stats(&source));
}

#[test]
fn a_store_that_is_not_empty_is_refused_with_one_line_and_kept() {
    let Some(target) = TestEnv::postgres() else {
        return;
    };
    let source = served_store();
    target.add_key();
    let out = copy(&source, &target).code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.starts_with("zavro: store postgres://")
            && stderr.contains(" is not empty (1 API key, 1 audit row); `zavro store copy` copies only into a new store"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(target.keys().len(), 1);
    assert_eq!(target.audit().len(), 1);
    // Copying twice is refused the same way: the first copy made the store non-empty.
    let Some(second) = TestEnv::postgres() else {
        return;
    };
    copy(&source, &second).success();
    let out = copy(&source, &second).code(1);
    assert!(
        stderr_of(&out).contains("is not empty (2 API keys, "),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_source_whose_audit_trail_does_not_verify_is_refused_and_nothing_is_copied() {
    let Some(target) = TestEnv::postgres() else {
        return;
    };
    let source = served_store();
    let conn = rusqlite::Connection::open(&source.db).unwrap();
    conn.execute("UPDATE audit SET peer = '10.6.6.6' WHERE id = 4", [])
        .unwrap();
    drop(conn);
    let out = copy(&source, &target).code(6);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("does not verify, so nothing was copied")
            && stderr.contains("row #4 was altered"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        target
            .psql("SELECT (SELECT count(*) FROM keys) + (SELECT count(*) FROM audit);")
            .trim(),
        "0"
    );
}

#[test]
fn a_sealed_source_copies_with_its_own_key_and_is_refused_under_another() {
    let Some(target) = TestEnv::postgres() else {
        return;
    };
    let source = served_store();
    // The server key pair, made now, is sealed with the rest.
    let expected = stdout_of(&source.zavro().args(["server-key"]).assert().success());
    let source_key = source.path("source.key");
    source
        .zavro()
        .arg("--master-key-file")
        .arg(&source_key)
        .args(["store", "seal", "--create-key"])
        .assert()
        .success();
    // The target's key is another: refused with exit 9, saying what to do.
    let out = copy(&source, &target).code(9);
    assert!(
        stderr_of(&out).contains("is sealed under master key")
            && stderr_of(&out).contains("store reseal --new-master-key-file"),
        "{}",
        stderr_of(&out)
    );
    bare_zavro()
        .env("ZAVRO_MASTER_KEY_FILE", &source_key)
        .arg("store")
        .arg("copy")
        .arg(&source.db)
        .arg(&target.db)
        .assert()
        .success();
    let listed = stdout_of(
        &bare_zavro()
            .env("ZAVRO_MASTER_KEY_FILE", &source_key)
            .arg("--db")
            .arg(&target.db)
            .args(["server-key"])
            .assert()
            .success(),
    );
    assert_eq!(listed, expected, "the server key pair came over");
}

#[test]
fn bad_endpoints_of_a_copy_are_one_line_each_with_their_exit_code() {
    let Some(target) = TestEnv::postgres() else {
        return;
    };
    let source = TestEnv::new();
    // No source: exit 7, as for every command on a missing store; nothing is created.
    let out = copy(&source, &target).code(7);
    assert!(
        stderr_of(&out).contains("no store at"),
        "{}",
        stderr_of(&out)
    );
    assert!(!source.db.exists());
    source.add_key();
    // No master key for the target: exit 9.
    let out = bare_zavro()
        .arg("store")
        .arg("copy")
        .arg(&source.db)
        .arg(&target.db)
        .assert()
        .code(9);
    assert!(
        stderr_of(&out).contains("keeps its secrets sealed under a master key"),
        "{}",
        stderr_of(&out)
    );
    // Into SQLite, or from PostgreSQL: usage errors.
    let other = TestEnv::new();
    let out = copy(&source, &other).code(2);
    assert!(
        stderr_of(&out).contains("is not a postgres:// URL"),
        "{}",
        stderr_of(&out)
    );
    let out = copy(&target, &other).code(2);
    assert!(
        stderr_of(&out).contains("is a PostgreSQL database"),
        "{}",
        stderr_of(&out)
    );
    // A password on the command line is refused and never echoed.
    let with_password = target
        .db
        .to_str()
        .unwrap()
        .replacen("postgres@", "postgres:hunter2@", 1);
    let out = bare_zavro()
        .env("ZAVRO_MASTER_KEY_FILE", target.master_key.as_ref().unwrap())
        .arg("store")
        .arg("copy")
        .arg(&source.db)
        .arg(&with_password)
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("~/.pgpass"), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("hunter2"), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out).lines().count(), 1);
    // After all that, the target is still empty and a copy goes through.
    copy(&source, &target).success();
    assert_eq!(target.keys().len(), 1);
}

/// The frames of a request for `records` signed now with the nonce `nonce`.
fn signed_with_nonce(key: &str, secret: &str, nonce: &str, records: &[Value]) -> Vec<Vec<u8>> {
    let payload = zavro::avro::encode(records).expect("records encode as Avro");
    Request::sign(
        key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        nonce,
        payload,
    )
    .to_frames()
    .to_vec()
}

#[test]
fn a_server_on_the_copy_takes_the_copied_keys_and_knows_the_requests_sent_before_the_move() {
    let Some(target) = TestEnv::postgres() else {
        return;
    };
    let source = TestEnv::new();
    let (key, secret) = source.add_key();
    let server_key = stdout_of(&source.zavro().arg("server-key").assert().success())
        .trim()
        .to_owned();
    let server = Server::start(&source, "127.0.0.1:*", &["--name", "old"]);
    let nonce = "moved-across-nonce-0001";
    let request = signed_with_nonce(&key, &secret, nonce, &[json!({"n": 1})]);
    let Reply::Accepted {
        audit_id,
        records: 1,
        duplicate: false,
    } = request_once(server.endpoint(), &request)
    else {
        panic!("the SQLite server stores it");
    };
    assert!(server.stop().success());

    copy(&source, &target).success();

    let server = Server::start(&target, "127.0.0.1:*", &["--name", "new"]);
    // The client never heard its reply and retries, now reaching a server on the copy: recognised, answered
    // with the original row, nothing stored again.
    assert_eq!(
        request_once(server.endpoint(), &request),
        Reply::Accepted {
            audit_id,
            records: 1,
            duplicate: true
        }
    );
    // Its nonce with other data is a replay, as it was before the move.
    let forged = signed_with_nonce(&key, &secret, nonce, &[json!({"n": 2})]);
    assert_eq!(
        reject_code(&request_once(server.endpoint(), &forged)),
        "replay"
    );
    // The copied key and secret sign new requests.
    target
        .send(server.endpoint(), &key, &secret, "{\"after\":1}")
        .code(0);
    assert!(server.stop().success());

    // Over CURVE: the server on the copy presents the source's server key, and admits the copied key.
    let server = Server::start_curve(&target, "127.0.0.1:*", &["--name", "new"]);
    assert_eq!(server.server_key(), Some(server_key.as_str()));
    target
        .send_curve(
            server.endpoint(),
            &server_key,
            &key,
            &secret,
            "{\"curve\":1}",
        )
        .code(0);
    assert!(server.stop().success());

    let sends: Vec<(Value, Value, Value)> = target
        .audit_sends()
        .iter()
        .map(|row| {
            (
                row["server"].clone(),
                row["reason"].clone(),
                row["payload"].clone(),
            )
        })
        .collect();
    assert_eq!(
        sends,
        [
            (json!("old"), Value::Null, json!([{"n": 1}])),
            (json!("new"), json!("duplicate"), Value::Null),
            (json!("new"), json!("replay"), Value::Null),
            (json!("new"), Value::Null, json!([{"after": 1}])),
            (json!("new"), Value::Null, json!([{"curve": 1}])),
        ]
    );
    target.zavro().args(["audit", "verify"]).assert().success();
}
