//! The schemas requests used, recorded by fingerprint: `audit schemas`, `audit query --schema`, and the
//! fingerprints agreeing with another Avro implementation's (fastavro, tests/fixtures/fastavro/generate.py). On
//! SQLite and on PostgreSQL.

use serde_json::Value;

use crate::common::{
    Server, TestEnv, fastavro_fixture, on_both_backends, parse_ndjson, stderr_of, stdout_of,
};

on_both_backends!(
    each_request_names_its_schema_and_the_schemas_are_listed_by_fingerprint,
    a_refused_schema_is_recorded_too,
    a_schema_argument_that_names_nothing_is_a_clear_error,
);

/// fastavro's SHA-256 fingerprint of the schema of its `readings.*.avro` files.
fn fastavro_fingerprint_of_readings() -> String {
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(fastavro_fixture("fingerprints.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cases[0]["schema"]["name"], "Reading");
    cases[0]["sha256"].as_str().unwrap().to_owned()
}

const COUNTER: &str = r#"{"type": "record", "name": "Counter", "namespace": "example",
    "doc": "kept in the store as first seen",
    "fields": [{"name": "n", "type": "long"}]}"#;

fn schemas(env: &TestEnv) -> Vec<Value> {
    parse_ndjson(
        &env.zavro()
            .args(["audit", "schemas", "--json"])
            .assert()
            .code(0)
            .get_output()
            .stdout,
    )
}

fn query_ids(env: &TestEnv, schema: &str) -> Vec<i64> {
    env.audit_with(&["--schema", schema])
        .iter()
        .map(|row| row["id"].as_i64().unwrap())
        .collect()
}

fn each_request_names_its_schema_and_the_schemas_are_listed_by_fingerprint(env: TestEnv) {
    let (key, secret) = env.add_key();
    let counter = env.path("counter.avsc");
    std::fs::write(&counter, COUNTER).unwrap();
    let server = env.start_server();
    let endpoint = server.endpoint();

    env.send(endpoint, &key, &secret, "{\"a\":1}\n").code(0);
    let avro = std::fs::read(fastavro_fixture("readings.snappy.avro")).unwrap();
    env.send_with(endpoint, &key, &secret, avro, &["--format", "avro"])
        .code(0);
    let counter_arg = ["--schema", counter.to_str().unwrap()];
    env.send_with(
        endpoint,
        &key,
        &secret,
        "{\"n\":1}\n{\"n\":2}\n",
        &counter_arg,
    )
    .code(0);
    env.send_with(endpoint, &key, &secret, "{\"n\":3}\n", &counter_arg)
        .code(0);
    drop(server);

    let listed = schemas(&env);
    let names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["zavro.Json", "example.power.Reading", "example.Counter"]
    );
    let readings = &listed[1];
    assert_eq!(
        readings["fingerprint"],
        fastavro_fingerprint_of_readings(),
        "the fingerprint of a file written by fastavro is the one fastavro computes"
    );
    assert_eq!(listed[2]["schema"], COUNTER, "kept as first seen");
    assert_eq!(listed[2]["requests"], 2);
    assert_eq!(listed[0]["requests"], 1);

    let sends = env.audit_sends();
    let fingerprint_of = |name: &str| {
        listed.iter().find(|s| s["name"] == name).unwrap()["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(sends[0]["schema"], fingerprint_of("zavro.Json"));
    assert!(
        sends.iter().all(|row| row["schema"].is_string()),
        "{sends:?}"
    );

    // By full fingerprint, by a unique prefix, by the .avsc file: the same rows.
    let counter_fp = fingerprint_of("example.Counter");
    let counter_rows: Vec<i64> = sends
        .iter()
        .filter(|row| row["schema"] == counter_fp.as_str())
        .map(|row| row["id"].as_i64().unwrap())
        .collect();
    assert_eq!(counter_rows.len(), 2);
    assert_eq!(query_ids(&env, &counter_fp), counter_rows);
    assert_eq!(
        query_ids(&env, &counter_fp[..8].to_uppercase()),
        counter_rows
    );
    assert_eq!(query_ids(&env, counter.to_str().unwrap()), counter_rows);

    // The table shows short fingerprints one can paste back.
    let table = stdout_of(&env.zavro().args(["audit", "schemas"]).assert().code(0));
    assert!(
        table.lines().next().unwrap().starts_with("FINGERPRINT"),
        "{table}"
    );
    assert!(table.contains(&counter_fp[..12]), "{table}");
    let text = stdout_of(
        &env.zavro()
            .args(["audit", "schemas", &counter_fp[..12]])
            .assert()
            .code(0),
    );
    assert_eq!(text.trim_end(), COUNTER);

    env.zavro().args(["audit", "verify"]).assert().code(0);
}

fn a_refused_schema_is_recorded_too(env: TestEnv) {
    let (key, secret) = env.add_key();
    let reader = env.path("counter.avsc");
    std::fs::write(&reader, COUNTER).unwrap();
    let server = Server::start(&env, "127.0.0.1:*", &["--schema", reader.to_str().unwrap()]);
    let avro = std::fs::read(fastavro_fixture("readings.null.avro")).unwrap();
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        avro,
        &["--format", "avro"],
    )
    .code(4);
    drop(server);
    let refused = env.audit_sends();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["reason"], "schema_mismatch");
    assert_eq!(refused[0]["schema"], fastavro_fingerprint_of_readings());
    assert_eq!(schemas(&env)[0]["requests"], 1);
}

fn a_schema_argument_that_names_nothing_is_a_clear_error(env: TestEnv) {
    let (key, secret) = env.add_key();
    let server = env.start_server();
    env.send(server.endpoint(), &key, &secret, "{}").code(0);
    drop(server);
    for (arg, code, says) in [
        ("0000", 1, "no schema with fingerprint 0000"),
        ("xyz!", 2, "neither a file nor a fingerprint"),
        ("ab", 2, "at least 4 hex digits"),
    ] {
        let out = env
            .zavro()
            .args(["audit", "query", "--schema", arg])
            .assert()
            .code(code);
        assert!(stderr_of(&out).contains(says), "{arg}: {}", stderr_of(&out));
    }
    let not_avro = env.path("not.avsc");
    std::fs::write(&not_avro, "{\"type\": \"nope\"}").unwrap();
    let out = env
        .zavro()
        .args(["audit", "query", "--schema", not_avro.to_str().unwrap()])
        .assert()
        .code(2);
    assert!(
        stderr_of(&out).contains("not an Avro schema"),
        "{}",
        stderr_of(&out)
    );
}
