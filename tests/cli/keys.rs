//! `zavro keys`: adding, importing, listing and revoking keys, and keeping secrets secret.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::common::{
    TestEnv, bare_zavro, on_both_backends, parse_json, parse_ndjson, stderr_of, stdout_of,
};

#[test]
fn send_with_a_key_revoked_while_the_server_runs_is_rejected() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    env.send(server.endpoint(), &key, &secret, "{\"before\":\"revoke\"}")
        .code(0);

    let revoked = env.zavro().args(["keys", "revoke", &key]).assert().code(0);
    assert!(
        stdout_of(&revoked).contains(&format!("revoked {key}")),
        "{}",
        stdout_of(&revoked)
    );

    let refused = env
        .send(server.endpoint(), &key, &secret, "{\"after\":\"revoke\"}")
        .code(4);
    assert!(
        stderr_of(&refused).contains("revoked_key"),
        "{}",
        stderr_of(&refused)
    );
    let rows = env.audit();
    let last = rows.last().unwrap();
    assert_eq!(
        (
            &last["action"],
            &last["status"],
            &last["reason"],
            &last["key"]
        ),
        (
            &json!("send"),
            &json!("rejected"),
            &json!("revoked_key"),
            &json!(key)
        )
    );
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key_add", "send", "key_revoke", "send"]);
    assert_eq!(rows[2]["peer"], "local");
    assert_eq!(env.output_lines(), ["{\"before\":\"revoke\"}"]);
}

#[test]
fn keys_list_and_audit_never_show_a_secret_and_the_store_is_private() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let mode = std::fs::metadata(&env.db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "store mode is {mode:o}");

    let server = env.start_server();
    env.send(server.endpoint(), &key, &secret, "{\"a\":1}")
        .code(0);
    env.send(
        server.endpoint(),
        &key,
        "wrong-secret-wrong-secret",
        "{\"a\":2}",
    )
    .code(4);
    env.zavro().args(["keys", "revoke", &key]).assert().code(0);

    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["audit", "query"],
        &["audit", "query", "--json"],
        &["audit", "query", "--json", "--payload"],
    ] {
        let out = env.zavro().args(args).assert().success();
        let text = format!("{}{}", stdout_of(&out), stderr_of(&out));
        assert!(
            text.contains(&key),
            "`{}` names the key: {text}",
            args.join(" ")
        );
        assert!(
            !text.contains(&secret),
            "`{}` shows the secret: {text}",
            args.join(" ")
        );
    }
    for line in server.stderr_lines() {
        assert!(
            !line.contains(&secret),
            "the server log shows the secret: {line}"
        );
    }
}

on_both_backends!(keys_list_json_has_label_creation_revocation_and_last_use);

fn keys_list_json_has_label_creation_revocation_and_last_use(env: TestEnv) {
    let added = env
        .zavro()
        .args(["keys", "add", "--label", "sensor-1", "--json"])
        .assert()
        .code(0);
    let added = parse_json(&added.get_output().stdout);
    let (key, secret) = (
        added["key"].as_str().unwrap(),
        added["secret"].as_str().unwrap(),
    );
    let (other, _) = env.add_key();
    let server = env.start_server();
    env.send(server.endpoint(), key, secret, "1").code(0);
    env.zavro().args(["keys", "revoke", key]).assert().code(0);

    let keys = env.keys();
    assert_eq!(keys.len(), 2);
    let first = keys[0].as_object().unwrap();
    let fields: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "key",
            "label",
            "created",
            "revoked",
            "expires",
            "last_used",
            "requests",
            "records"
        ]
    );
    assert_eq!(
        (&keys[0]["requests"], &keys[0]["records"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(keys[0]["key"], key);
    assert_eq!(keys[0]["label"], "sensor-1");
    for field in ["created", "revoked", "last_used"] {
        let time = keys[0][field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {}", keys[0]));
        assert!(time.ends_with('Z') && time.contains('T'), "{field}: {time}");
    }
    assert_eq!(keys[1]["key"], other.as_str());
    assert_eq!(
        (
            &keys[1]["label"],
            &keys[1]["revoked"],
            &keys[1]["last_used"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
}

on_both_backends!(keys_add_with_secret_stdin_imports_the_secret_and_prints_only_the_key);

fn keys_add_with_secret_stdin_imports_the_secret_and_prints_only_the_key(env: TestEnv) {
    let secret = "imported-secret-0123456789";
    let out = env
        .zavro()
        .args(["keys", "add", "--secret-stdin", "--json"])
        .write_stdin(format!("{secret}\n"))
        .assert()
        .code(0);
    let value = parse_json(&out.get_output().stdout);
    let object = value.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), ["key"], "{value}");
    assert!(!stdout_of(&out).contains(secret));
    let key = value["key"].as_str().unwrap();

    let server = env.start_server();
    env.send(server.endpoint(), key, secret, "{\"imported\":true}")
        .code(0);
    assert_eq!(env.output_lines(), ["{\"imported\":true}"]);
}

on_both_backends!(
    keys_add_refuses_a_short_imported_secret_as_a_usage_error,
    revoking_an_unknown_key_fails_and_names_it,
);

fn keys_add_refuses_a_short_imported_secret_as_a_usage_error(env: TestEnv) {
    env.zavro()
        .args(["keys", "add", "--secret-stdin"])
        .write_stdin("short\n")
        .assert()
        .code(2);
    assert!(env.keys().is_empty(), "no key was stored");
}

fn revoking_an_unknown_key_fails_and_names_it(env: TestEnv) {
    env.create_store();
    let out = env
        .zavro()
        .args(["keys", "revoke", "ZKFFFFFFFFFFFFFFFF"])
        .assert()
        .failure();
    assert!(
        stderr_of(&out).contains("ZKFFFFFFFFFFFFFFFF"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn zavro_db_environment_variable_selects_the_store() {
    let env = TestEnv::new();
    let db = env.path("from-env.db");
    let out = bare_zavro()
        .env("ZAVRO_DB", &db)
        .args(["keys", "add", "--json"])
        .assert()
        .code(0);
    let key = parse_json(&out.get_output().stdout)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "store mode is {mode:o}");

    let listed = bare_zavro()
        .arg("--db")
        .arg(&db)
        .args(["keys", "list", "--json"])
        .assert();
    let keys = parse_ndjson(&listed.code(0).get_output().stdout);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["key"], key.as_str());
    assert!(!env.db.exists(), "the default test store was not touched");
}
