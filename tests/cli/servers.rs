//! `zavro serve` on PostgreSQL, alone and several on one database: real server processes, a real cluster (each
//! test in a fresh database of the shared one, or in a private one it stops and starts), real clients.

use std::{io::Write, process::Stdio};

use nix::sys::signal::{Signal, kill};
use predicates::prelude::*;
use serde_json::{Value, json};
use zavro::protocol::{Reply, Request};

use crate::{
    common::{
        Server, TestEnv, bare_zavro, on_both_backends, reject_code, request_once, stderr_of,
        wait_until, zavro_process,
    },
    proxy::Proxy,
    test_cluster,
};

/// Runs `sql` in `env`'s database of the shared cluster and returns its one value.
fn value(env: &TestEnv, sql: &str) -> String {
    env.psql(sql).trim().to_owned()
}

#[test]
fn serve_on_postgres_commits_synchronously_refuses_a_url_turning_it_off_unless_allowed_and_needs_the_master_key()
 {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    env.add_key();
    // Without the master key no secret can be read: one line, exit 9, before anything listens.
    bare_zavro()
        .arg("--db")
        .arg(&env.db)
        .args(["serve", "127.0.0.1:*", "--plaintext"])
        .assert()
        .code(9)
        .stderr(predicate::str::contains(
            "keeps its secrets sealed under a master key",
        ))
        .stderr(predicate::function(|text: &str| text.lines().count() == 1));

    // The server's sessions force synchronous_commit on; only the URL's options (which come after) can turn
    // it off, and then the server refuses to start.
    let off = with_url_options(&env, "-c%20synchronous_commit%3Doff");
    let refused = bare_zavro()
        .arg("--db")
        .arg(&off.db)
        .env("ZAVRO_MASTER_KEY_FILE", env.master_key.as_ref().unwrap())
        .args(["serve", "127.0.0.1:*", "--plaintext"])
        .assert()
        .code(1);
    let message = stderr_of(&refused);
    assert!(
        message.contains("has synchronous_commit off")
            && message.contains("could lose requests already answered `accepted`")
            && message.contains("--allow-async-commit"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!message.contains("listening on"), "{message}");

    // A database (or role) set to off: the server's sessions commit synchronously anyway.
    env.psql(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off;",
        env.database()
    ));
    starts_without_a_warning(&env);
    // Allowed explicitly, it takes the database's setting, and says what it risks.
    let server = Server::start(&env, "127.0.0.1:*", &["--allow-async-commit"]);
    let warned = server
        .stderr_lines()
        .iter()
        .any(|line| line.contains("warning") && line.contains("synchronous_commit off"));
    assert!(warned, "{:?}", server.stderr_lines());
    assert!(server.stop().success());

    env.psql(&format!(
        "ALTER DATABASE {} RESET synchronous_commit;",
        env.database()
    ));
    starts_without_a_warning(&env);
}

/// Starts a server on `env`'s store, checks it warned of nothing, and stops it.
fn starts_without_a_warning(env: &TestEnv) {
    let server = Server::start(env, "127.0.0.1:*", &[]);
    let lines = server.stderr_lines();
    assert!(
        !lines.iter().any(|line| line.contains("warning")),
        "{lines:?}"
    );
    assert!(server.stop().success());
}

#[test]
fn serve_on_postgres_stores_what_it_accepts_and_names_itself_in_its_rows() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let (key, secret) = env.add_key();
    for (name, curve) in [("a", true), ("b", false)] {
        let server = if curve {
            Server::start_curve(&env, "127.0.0.1:*", &["--name", name])
        } else {
            Server::start(&env, "127.0.0.1:*", &["--name", name])
        };
        let record = json!({ "from": name });
        match server.server_key() {
            Some(server_key) => env
                .send_curve(
                    server.endpoint(),
                    server_key,
                    &key,
                    &secret,
                    record.to_string(),
                )
                .success(),
            None => env
                .send(server.endpoint(), &key, &secret, &record.to_string())
                .success(),
        };
        assert!(server.stop().success());
    }
    assert_eq!(env.output_lines(), [r#"{"from":"a"}"#, r#"{"from":"b"}"#]);
    // One row per request, each naming its server and transport, the key's row and the server key's naming none.
    assert_eq!(
        value(
            &env,
            "SELECT string_agg(action || ':' || coalesce(server, '-') || ':' || coalesce(transport, '-'), ' ' \
             ORDER BY id) FROM audit;"
        ),
        "key_add:-:- server_key_create:-:- send:a:curve send:b:plaintext"
    );
    assert_eq!(value(&env, "SELECT count(*) FROM payloads;"), "2");
}

#[test]
fn a_refused_handshake_the_server_could_not_check_is_tried_again_not_taken_as_a_wrong_key() {
    let Some(cluster) = test_cluster::start_private() else {
        return;
    };
    let env = TestEnv::postgres_on(&cluster);
    let (key, secret) = env.add_key();
    let server = Server::start_curve(&env, "127.0.0.1:*", &["--name", "a"]);
    let server_key = server.server_key().unwrap().to_owned();
    let proxy = Proxy::start(server.endpoint());
    let send = |retries: &str| {
        let mut cmd = zavro_process();
        cmd.arg("--db")
            .arg(&env.db)
            .args(["send", &proxy.endpoint, "--server-key", &server_key])
            .args(["--timeout", "2", "--retries", retries])
            .env("ZAVRO_KEY", &key)
            .env("ZAVRO_SECRET", &secret)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };

    cluster.stop();
    // The handshake check cannot read the keys: the client is told the server could not check its key, and
    // after its retries gives up as unreachable (exit 5), not as refused (exit 8).
    let out = assert_cmd::Command::from_std(send("1"))
        .write_stdin("{\"n\":1}\n")
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(5);
    let message = stderr_of(&out);
    assert!(
        message.contains(&format!(
            "could not check key {key} at the handshake (ZAP status 500"
        )) && message.contains("in 2 attempts"),
        "{message}"
    );
    // A client that keeps trying while the database is down gets through once it is back.
    let greetings = |proxy: &Proxy| proxy.seen().windows(6).filter(|w| w == b"CURVE\0").count();
    let before = greetings(&proxy);
    let mut patient = send("10").spawn().unwrap();
    patient
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"n\":2}\n")
        .unwrap();
    // Two handshakes (each greeting is seen both ways) mean the client came back after a refusal.
    wait_until("the client to try its handshake again", || {
        greetings(&proxy) >= before + 4
    });
    cluster.start_again();
    let output = patient.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("accepted 1 record"), "{stderr}");
    let (status, lines) = server.stop_with_stderr();
    assert!(status.success(), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("cannot check client keys"))
            && lines
                .iter()
                .any(|l| l.contains("client keys are checked again")),
        "{lines:?}"
    );
    assert_eq!(env.output_lines(), ["{\"n\":2}"]);
    assert_eq!(
        cluster
            .psql(env.database(), "SELECT count(*) FROM payloads;")
            .trim(),
        "1"
    );
}

/// A request of `records` signed by `key` now with this nonce, as its frames.
fn signed_with_nonce(key: &str, secret: &str, nonce: &str, records: &[Value]) -> [Vec<u8>; 3] {
    let payload = zavro::avro::encode(records).expect("records encode as Avro");
    Request::sign(
        key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        nonce,
        payload,
    )
    .to_frames()
}

#[test]
fn a_request_resent_to_another_server_is_a_duplicate_of_the_first_and_its_nonce_with_other_data_a_replay()
 {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let (key, secret) = env.add_key();
    let a = Server::start(&env, "127.0.0.1:*", &["--name", "a"]);
    let b = Server::start_with_output(&env, "127.0.0.1:*", &env.path("b.ndjson"), &["--name", "b"]);
    let nonce = "cross-server-nonce-0001";
    let request = signed_with_nonce(&key, &secret, nonce, &[json!({"n": 1}), json!({"n": 2})]);

    let first = request_once(a.endpoint(), &request);
    let Reply::Accepted {
        audit_id,
        records: 2,
        duplicate: false,
    } = first
    else {
        panic!("A stores it: {first:?}");
    };
    // The same bytes to the other server: recognised, answered with A's row, nothing stored again.
    assert_eq!(
        request_once(b.endpoint(), &request),
        Reply::Accepted {
            audit_id,
            records: 2,
            duplicate: true
        }
    );
    // The same nonce with other data, to either server: a replay.
    let forged = signed_with_nonce(&key, &secret, nonce, &[json!({"n": 3})]);
    for server in [&b, &a] {
        assert_eq!(
            reject_code(&request_once(server.endpoint(), &forged)),
            "replay"
        );
    }
    assert!(a.stop().success());
    assert!(b.stop().success());

    assert_eq!(value(&env, "SELECT count(*) FROM payloads;"), "1");
    assert_eq!(
        value(
            &env,
            "SELECT string_agg(audit_id::text, ',') FROM payloads;"
        ),
        audit_id.to_string()
    );
    assert_eq!(
        value(
            &env,
            "SELECT string_agg(server || ':' || status || ':' || coalesce(reason, '-'), ' ' ORDER BY id) \
             FROM audit WHERE action = 'send';"
        ),
        "a:accepted:- b:accepted:duplicate b:rejected:replay a:rejected:replay"
    );
    assert_eq!(
        value(&env, "SELECT detail FROM audit WHERE reason = 'duplicate';"),
        format!("retry of #{audit_id}; already stored")
    );
    assert_eq!(env.output_lines(), [r#"{"n":1}"#, r#"{"n":2}"#]);
    assert!(
        std::fs::read_to_string(env.path("b.ndjson"))
            .unwrap_or_default()
            .is_empty(),
        "B wrote nothing out"
    );
}

#[test]
fn send_fails_over_to_the_other_server_after_a_commit_whose_reply_was_lost_and_nothing_is_stored_twice()
 {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let (key, secret) = env.add_key();
    let a = Server::start(&env, "127.0.0.1:*", &["--name", "a"]);
    let b = Server::start_with_output(&env, "127.0.0.1:*", &env.path("b.ndjson"), &["--name", "b"]);
    // A's replies never reach the client once the request has passed: A commits, the client hears nothing.
    let marker = "failover-marker-7f3a9c";
    let proxy = Proxy::muting_replies_after(a.endpoint(), marker.as_bytes());
    let mut send = zavro_process()
        .arg("--db")
        .arg(&env.db)
        .args(["send", &proxy.endpoint, b.endpoint(), "--plaintext"])
        .args(["--timeout", "2", "--retries", "5"])
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin
        .take()
        .unwrap()
        .write_all(format!("{{\"failover\":\"{marker}\"}}\n").as_bytes())
        .unwrap();
    wait_until("A to commit the request", || {
        value(&env, "SELECT count(*) FROM payloads;") == "1"
    });
    let stored: i64 = value(&env, "SELECT audit_id FROM payloads;")
        .parse()
        .unwrap();
    kill(a.pid(), Signal::SIGKILL).unwrap();
    drop(a);

    let output = send.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "accepted 1 record in 1 request (last audit id {stored}); 1 resends"
        )),
        "the retry landed on B and was answered with A's row: {stderr}"
    );
    assert!(b.stop().success());
    assert_eq!(
        value(&env, "SELECT count(*) FROM payloads;"),
        "1",
        "stored once"
    );
    assert_eq!(
        value(
            &env,
            "SELECT string_agg(server || ':' || coalesce(reason, '-') || ':' || coalesce(detail, '-'), ' ' \
             ORDER BY id) FROM audit WHERE action = 'send';"
        ),
        format!("a:-:- b:duplicate:retry of #{stored}; already stored")
    );
    assert!(
        std::fs::read_to_string(env.path("b.ndjson"))
            .unwrap_or_default()
            .is_empty(),
        "B wrote nothing out"
    );
}

#[test]
fn a_key_revoked_on_the_shared_database_is_refused_by_every_server_from_its_next_group() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let (key, secret) = env.add_key();
    let a = Server::start(&env, "127.0.0.1:*", &["--name", "a"]);
    let b = Server::start_curve(&env, "127.0.0.1:*", &["--name", "b"]);
    let b_key = b.server_key().unwrap().to_owned();
    env.send(a.endpoint(), &key, &secret, "{\"before\":\"a\"}")
        .success();
    env.send_curve(b.endpoint(), &b_key, &key, &secret, "{\"before\":\"b\"}")
        .success();

    env.zavro()
        .args(["keys", "revoke", &key])
        .assert()
        .success();

    let refused = env
        .send(a.endpoint(), &key, &secret, "{\"after\":\"a\"}")
        .code(4);
    assert!(
        stderr_of(&refused).contains("revoked_key"),
        "{}",
        stderr_of(&refused)
    );
    // Over CURVE, the other server's handshake check already refuses the key's client key.
    let refused = env
        .send_curve(b.endpoint(), &b_key, &key, &secret, "{\"after\":\"b\"}")
        .code(8);
    assert!(
        stderr_of(&refused).contains(&format!("refused key {key} at the handshake")),
        "{}",
        stderr_of(&refused)
    );
    assert!(a.stop().success());
    assert!(b.stop().success());
    assert_eq!(value(&env, "SELECT count(*) FROM payloads;"), "2");
    assert_eq!(
        value(
            &env,
            "SELECT string_agg(server || ':' || coalesce(reason, '-'), ' ' ORDER BY id) FROM audit \
             WHERE action = 'send';"
        ),
        // B counts refused handshakes into a summary row, written at the latest when it stops.
        "a:- b:- a:revoked_key b:handshake_refused"
    );
}

#[test]
fn postgresql_restarting_under_a_sending_client_loses_nothing_acknowledged_and_stores_nothing_twice()
 {
    let Some(cluster) = test_cluster::start_private() else {
        return;
    };
    let env = TestEnv::postgres_on(&cluster);
    let sql = |query: &str| cluster.psql(env.database(), query).trim().to_owned();
    let (key, secret) = env.add_key();
    let mut a = Server::start(&env, "127.0.0.1:*", &["--name", "a"]);
    let mut b =
        Server::start_with_output(&env, "127.0.0.1:*", &env.path("b.ndjson"), &["--name", "b"]);
    let mut send = zavro_process()
        .arg("--db")
        .arg(&env.db)
        .args(["send", a.endpoint(), b.endpoint(), "--plaintext"])
        .args([
            "--batch",
            "5",
            "--linger",
            "0",
            "--timeout",
            "2",
            "--retries",
            "20",
        ])
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    let records = |range: std::ops::Range<u32>| -> String {
        range.map(|i| format!("{{\"i\":{i}}}\n")).collect()
    };
    stdin.write_all(records(0..150).as_bytes()).unwrap();
    let stored_records =
        || sql("SELECT coalesce(sum(json_array_length(json::json)), 0) FROM payloads;");
    wait_until("the first records to be stored", || {
        stored_records() == "150"
    });

    cluster.stop();
    stdin.write_all(records(150..300).as_bytes()).unwrap();
    // Both servers find the database gone and answer `internal`; neither stops.
    let saw_it = |server: &Server| {
        server
            .stderr_lines()
            .iter()
            .any(|line| line.contains("store error, group of"))
    };
    wait_until("a server to find the database down", || {
        saw_it(&a) || saw_it(&b)
    });
    assert!(!a.has_exited() && !b.has_exited());
    cluster.start_again();
    drop(stdin);

    let output = send.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("accepted 300 records"), "{stderr}");
    assert!(
        !a.has_exited() && !b.has_exited(),
        "both servers rode it out"
    );
    assert!(a.stop().success());
    assert!(b.stop().success());
    // Every record stored, each exactly once.
    assert_eq!(stored_records(), "300");
    assert_eq!(
        sql("SELECT count(DISTINCT e) FROM payloads, json_array_elements_text(json::json) e;"),
        "300"
    );
}

on_both_backends!(a_server_with_a_smaller_max_skew_never_prunes_a_nonce_another_server_still_needs);

/// Servers sharing a store may run with different `--max-skew`: the one with the smaller skew prunes nonces at
/// start-up, and must not forget one the other still accepts requests for, or a retry would be stored twice.
fn a_server_with_a_smaller_max_skew_never_prunes_a_nonce_another_server_still_needs(env: TestEnv) {
    let (key, secret) = env.add_key();
    let a = Server::start(&env, "127.0.0.1:*", &["--name", "a", "--max-skew", "3000"]);
    // Ten minutes old: inside A's window, far outside B's.
    let payload = zavro::avro::encode(&[json!({"n": 1})]).unwrap();
    let request = Request::sign(
        &key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds() - 600,
        "skew-nonce-0000000001",
        payload,
    )
    .to_frames();
    let Reply::Accepted {
        audit_id,
        duplicate: false,
        ..
    } = request_once(a.endpoint(), &request)
    else {
        panic!("A stores the request");
    };
    let b = Server::start_with_output(
        &env,
        "127.0.0.1:*",
        &env.path("b.ndjson"),
        &["--name", "b", "--max-skew", "60"],
    );
    // B prunes old nonces before it answers anything: once it has answered, its start-up prune is done.
    let other = signed_with_nonce(&key, &secret, "skew-nonce-0000000002", &[json!({"n": 2})]);
    assert!(matches!(
        request_once(b.endpoint(), &other),
        Reply::Accepted { .. }
    ));
    // The client retries the first request on A, whose window still holds it: a duplicate, stored once.
    assert_eq!(
        request_once(a.endpoint(), &request),
        Reply::Accepted {
            audit_id,
            records: 1,
            duplicate: true
        }
    );
    assert!(a.stop().success());
    assert!(b.stop().success());
    let sends: Vec<String> = env
        .audit_sends()
        .iter()
        .map(|row| format!("{}:{}:{}", row["server"], row["status"], row["reason"]))
        .collect();
    assert_eq!(
        sends,
        [
            r#""a":"accepted":null"#,
            r#""b":"accepted":null"#,
            r#""a":"accepted":"duplicate""#
        ]
    );
    assert_eq!(env.output_lines(), [r#"{"n":1}"#]);
}

/// A second handle on `env`'s database whose URL adds `options` (percent-encoded), with a temporary directory
/// of its own for output files.
fn with_url_options(env: &TestEnv, options: &str) -> TestEnv {
    let url = env.db.to_str().expect("a PostgreSQL URL is text");
    let separator = if url.contains('?') { '&' } else { '?' };
    TestEnv {
        dir: tempfile::tempdir().unwrap(),
        db: format!("{url}{separator}options={options}").into(),
        master_key: env.master_key.clone(),
    }
}

/// A connection of the test's own to `env`'s database, as zavro connects.
fn connect(env: &TestEnv) -> postgres::Client {
    let url = zavro::store::PgUrl::parse(env.db.to_str().unwrap()).unwrap();
    zavro::store::postgres::connect::connect_client(&url).unwrap()
}

#[test]
fn a_session_holding_the_chain_lock_costs_groups_a_lock_timeout_not_the_server_and_they_pass_once_it_ends()
 {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let (key, secret) = env.add_key();
    // The URL's options come after the server's own: a 1 s lock timeout instead of 5 s.
    let served = with_url_options(&env, "-c%20lock_timeout%3D1s");
    let server = Server::start(&served, "127.0.0.1:*", &["--name", "a"]);
    let mut holder = connect(&env);
    holder
        .batch_execute("BEGIN; SELECT * FROM audit_chain FOR UPDATE;")
        .unwrap();

    // A group cannot take the chain's lock: its request is refused `internal` (retryable), and the server goes on.
    let request = signed_with_nonce(&key, &secret, "held-lock-nonce-0001", &[json!({"n": 1})]);
    let reply = request_once(server.endpoint(), &request);
    assert_eq!(reject_code(&reply), "internal", "{reply:?}");
    let lock_errors = |server: &Server| {
        server
            .stderr_lines()
            .iter()
            .filter(|line| line.contains("store error, group of") && line.contains("lock timeout"))
            .count()
    };
    assert_eq!(lock_errors(&server), 1, "{:?}", server.stderr_lines());

    // A client that retries gets through once the session lets go.
    let mut send = zavro_process()
        .arg("--db")
        .arg(&env.db)
        .args(["send", server.endpoint(), "--plaintext"])
        .args(["--timeout", "5", "--retries", "10"])
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    send.stdin
        .take()
        .unwrap()
        .write_all(b"{\"n\":2}\n")
        .unwrap();
    wait_until("the client's request to meet the held lock", || {
        lock_errors(&server) >= 2
    });
    holder.batch_execute("COMMIT").unwrap();
    let output = send.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("accepted 1 record"), "{stderr}");
    // The refused request is accepted when sent again: nothing of it was kept.
    assert!(matches!(
        request_once(server.endpoint(), &request),
        Reply::Accepted {
            duplicate: false,
            ..
        }
    ));
    assert!(server.stop().success());
    assert_eq!(served.output_lines(), [r#"{"n":2}"#, r#"{"n":1}"#]);
    assert_eq!(value(&env, "SELECT count(*) FROM payloads;"), "2");
}

#[test]
fn a_server_reconnecting_after_synchronous_commit_was_turned_off_still_commits_synchronously() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let (key, secret) = env.add_key();
    // What the server's own sessions say at commit, recorded by a trigger inside its transactions.
    env.psql(
        "CREATE TABLE seen_commit (setting text);
         CREATE FUNCTION note_commit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO seen_commit VALUES (current_setting('synchronous_commit')); RETURN NULL; END $$;
         CREATE TRIGGER note_commit AFTER INSERT ON payloads FOR EACH STATEMENT EXECUTE FUNCTION note_commit();",
    );
    let server = Server::start(&env, "127.0.0.1:*", &["--name", "a"]);
    env.send(server.endpoint(), &key, &secret, "{\"n\":1}")
        .success();

    env.psql(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off;",
        env.database()
    ));
    let server_sessions = format!(
        "FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'zavro'",
        env.database()
    );
    let killed = value(
        &env,
        &format!("SELECT string_agg(pid::text, ',') {server_sessions};"),
    );
    assert!(!killed.is_empty());
    env.psql(&format!(
        "SELECT pg_terminate_backend(pid) {server_sessions};"
    ));
    wait_until("the server's sessions to end", || {
        value(
            &env,
            &format!("SELECT count(*) {server_sessions} AND pid IN ({killed});"),
        ) == "0"
    });
    // The server replaces its connection (the request may be answered `internal` once, and sent again).
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        "{\"n\":2}",
        &["--retries", "5"],
    )
    .success();
    assert!(server.stop().success());
    assert_eq!(
        value(&env, "SELECT string_agg(setting, ',') FROM seen_commit;"),
        "on,on",
        "the new session commits synchronously whatever the database says"
    );
    assert_eq!(env.output_lines(), [r#"{"n":1}"#, r#"{"n":2}"#]);
}
