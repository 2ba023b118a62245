//! `zavro serve` on PostgreSQL, alone and several on one database: real server processes, a real cluster (each
//! test in a fresh database of the shared one, or in a private one it stops and starts), real clients.

use predicates::prelude::*;
use serde_json::json;

use crate::{
    common::{Server, TestEnv, bare_zavro, stderr_of, zavro_process},
    test_cluster,
};

/// Runs `sql` in `env`'s database of the shared cluster and returns its one value.
fn value(env: &TestEnv, sql: &str) -> String {
    env.psql(sql).trim().to_owned()
}

#[test]
fn serve_on_postgres_refuses_asynchronous_commits_unless_allowed_and_needs_the_master_key() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    env.add_key();
    let serve = |extra: &[&str]| {
        let mut cmd = bare_zavro();
        cmd.arg("--db")
            .arg(&env.db)
            .env("ZAVRO_MASTER_KEY_FILE", env.master_key.as_ref().unwrap())
            .args(["serve", "127.0.0.1:*", "--plaintext"])
            .args(extra);
        cmd
    };
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

    env.psql(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off;",
        env.database()
    ));
    let refused = serve(&[]).assert().code(1);
    let message = stderr_of(&refused);
    assert!(
        message.contains("has synchronous_commit off")
            && message.contains("could lose requests already answered `accepted`")
            && message.contains("--allow-async-commit"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!message.contains("listening on"), "{message}");

    // Allowed explicitly, it serves, and says what it risks.
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
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    assert!(
        !server
            .stderr_lines()
            .iter()
            .any(|line| line.contains("warning")),
        "{:?}",
        server.stderr_lines()
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
    let proxy = crate::proxy::Proxy::start(server.endpoint());
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
    let greetings =
        |proxy: &crate::proxy::Proxy| proxy.seen().windows(6).filter(|w| w == b"CURVE\0").count();
    let before = greetings(&proxy);
    let mut patient = send("10").spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = patient.stdin.take().unwrap();
        stdin.write_all(b"{\"n\":2}\n").unwrap();
    }
    // Two handshakes (each greeting is seen both ways) mean the client came back after a refusal.
    crate::common::wait_until("the client to try its handshake again", || {
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
