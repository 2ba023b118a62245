//! `zavro serve --check-config [--json]`: the settings serve would use, checked as serve checks them, printed,
//! with nothing bound and nothing written to the store; a bad setting is serve's own error and exit code.

use std::net::TcpListener;

use predicates::prelude::*;
use serde_json::Value;

use crate::common::{TestEnv, bare_zavro, on_both_backends, parse_json, stdout_of};

/// `serve ENDPOINT --check-config --json EXTRA…` on `env`'s store, which must succeed; its JSON.
fn check_json(env: &TestEnv, endpoint: &str, extra: &[&str]) -> Value {
    let out = env
        .zavro()
        .args(["serve", endpoint, "--check-config", "--json"])
        .args(extra)
        .assert()
        .success();
    parse_json(&out.get_output().stdout)
}

/// A port this test holds open, so that a serve which bound it would fail.
fn held_port() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, format!("127.0.0.1:{port}"))
}

fn check_config_prints_the_settings_and_binds_and_writes_nothing(env: TestEnv) {
    env.add_key();
    let rows_before = env.audit().len();
    let (_held, endpoint) = held_port();
    let schema = env.path("reading.avsc");
    std::fs::write(
        &schema,
        r#"{"type":"record","name":"Reading","fields":[{"name":"v","type":"double"}]}"#,
    )
    .unwrap();
    let output = env.path("records.ndjson");
    let settings = check_json(
        &env,
        &endpoint,
        &[
            "--name",
            "edge-1",
            "--max-skew",
            "120",
            "--max-message-size",
            "65536",
            "--max-connections",
            "10",
            "--schema",
            schema.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    );
    assert_eq!(settings["endpoint"], format!("tcp://{endpoint}"));
    // A PostgreSQL URL is shown as zavro writes URLs (postgres://, no password).
    let store = env
        .db
        .to_str()
        .unwrap()
        .replacen("postgresql://", "postgres://", 1);
    assert_eq!(settings["store"], store.as_str());
    let backend = if env.is_postgres() {
        "postgresql"
    } else {
        "sqlite"
    };
    assert_eq!(settings["backend"], backend);
    assert_eq!(settings["transport"], "curve");
    // No server key yet: check-config does not make one (serve does, at its first start).
    assert_eq!(settings["server_key"], Value::Null, "{settings}");
    assert_eq!(settings["name"], "edge-1");
    assert_eq!(settings["max_skew_secs"], 120);
    assert_eq!(settings["max_message_size"], 65536);
    assert_eq!(settings["max_connections"], 10);
    assert_eq!(
        settings["schemas"],
        serde_json::json!([schema.to_str().unwrap()])
    );
    assert_eq!(settings["output"], output.to_str().unwrap());
    assert_eq!(settings["log_format"], "json");
    assert_eq!(settings["allow_async_commit"], false);
    let status = stdout_of(&env.zavro().args(["store", "status"]).assert().success());
    match status.trim().strip_prefix("sealed under master key ") {
        Some(fingerprint) => assert_eq!(settings["sealed_under"], fingerprint),
        None => assert_eq!(settings["sealed_under"], Value::Null, "{status}"),
    }
    assert!(!output.exists(), "check-config made the output file");
    assert_eq!(
        env.audit().len(),
        rows_before,
        "check-config wrote to the store"
    );

    // Once the store has a server key, it is the one printed, and the text form says the same.
    let key = stdout_of(&env.zavro().arg("server-key").assert().success())
        .trim()
        .to_owned();
    assert_eq!(check_json(&env, &endpoint, &[])["server_key"], key.as_str());
    let text = env
        .zavro()
        .args(["serve", &endpoint, "--check-config", "--plaintext"])
        .assert()
        .success();
    let text = stdout_of(&text);
    for line in [
        format!("endpoint          tcp://{endpoint}"),
        "transport         plaintext".to_owned(),
        "server key        none (plaintext)".to_owned(),
        "output            stdout".to_owned(),
        "log format        text".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

on_both_backends!(check_config_prints_the_settings_and_binds_and_writes_nothing);

#[test]
fn a_bad_setting_is_serve_s_own_one_line_error_and_exit_code() {
    let env = TestEnv::new();
    env.add_key();
    let bad_schema = env.path("bad.avsc");
    std::fs::write(&bad_schema, "{not a schema").unwrap();
    for (args, code, says) in [
        (vec!["not an endpoint"], 2, "is not HOST:PORT"),
        (vec!["127.0.0.1:0", "--name", "a\nb"], 2, "--name"),
        (
            vec!["127.0.0.1:0", "--schema", bad_schema.to_str().unwrap()],
            2,
            "is not a valid Avro schema",
        ),
        (
            vec!["127.0.0.1:0", "--max-connections", "1000000"],
            2,
            "connections",
        ),
        (
            vec!["127.0.0.1:0", "--output", "/nonexistent/dir/out.ndjson"],
            1,
            "cannot open output",
        ),
    ] {
        let out = env
            .zavro()
            .args(["serve", "--check-config"])
            .args(&args)
            .assert()
            .code(code)
            .stdout("");
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("zavro: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
    // A store that does not exist, or a sealed store without its key: the codes serve has (7, 9).
    bare_zavro()
        .arg("--db")
        .arg(env.path("missing.db"))
        .args(["serve", "127.0.0.1:0", "--check-config"])
        .assert()
        .code(7);
    let sealed = TestEnv::new();
    sealed
        .zavro()
        .arg("--master-key-file")
        .arg(sealed.path("master.key"))
        .args(["store", "seal", "--create-key"])
        .assert()
        .success();
    sealed
        .zavro()
        .args(["serve", "127.0.0.1:0", "--check-config"])
        .assert()
        .code(9);
    // --json belongs to --check-config.
    env.zavro()
        .args(["serve", "127.0.0.1:0", "--json"])
        .assert()
        .code(2);
}

#[test]
fn a_postgresql_store_is_shown_without_its_password() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    env.add_key();
    // Trust authentication over the cluster's socket: the password is accepted and ignored, but must not show.
    let url = env.db.to_str().unwrap().replacen('@', ":hunter3@", 1);
    let out = bare_zavro()
        .env("ZAVRO_DB", &url)
        .env("ZAVRO_MASTER_KEY_FILE", env.master_key.as_ref().unwrap())
        .args(["serve", "127.0.0.1:0", "--check-config"])
        .assert()
        .success()
        .stdout(predicate::str::contains("hunter3").not());
    let text = stdout_of(&out);
    assert!(
        text.contains("(postgresql)") && text.contains("sealed            under master key "),
        "{text}"
    );
}
