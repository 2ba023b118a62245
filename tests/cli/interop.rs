//! Real Avro peers: container files written by another implementation (fastavro, see
//! tests/fixtures/fastavro/generate.py) in every codec, sent as they are with `send --format avro`.

use crate::common::{TestEnv, fastavro_fixture};

#[test]
fn files_written_by_fastavro_in_every_codec_are_accepted_and_logged_as_natural_json() {
    let expected: Vec<String> =
        std::fs::read_to_string(fastavro_fixture("readings.expected.ndjson"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    for codec in ["null", "deflate", "snappy", "zstandard"] {
        let env = TestEnv::new();
        let (key, secret) = env.add_key();
        let server = env.start_server();
        let file = std::fs::read(fastavro_fixture(&format!("readings.{codec}.avro"))).unwrap();
        env.send_with(
            server.endpoint(),
            &key,
            &secret,
            file,
            &["--format", "avro", "--batch", "10"],
        )
        .code(0);
        assert_eq!(env.output_lines(), expected, "codec {codec}");
        let sends = env.audit_sends();
        assert!(
            sends.len() >= 3,
            "codec {codec}: 25 records in batches of at most 10: {}",
            sends.len()
        );
        assert!(sends.iter().all(|row| row["status"] == "accepted"));
        drop(server);
    }
}

#[test]
fn json_sent_with_each_codec_round_trips() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let input = "{\"a\":1,\"b\":[true,null,2.5,\"☃\"]}\n{\"c\":{}}\n";
    for codec in ["null", "deflate", "snappy", "zstandard"] {
        env.send_with(server.endpoint(), &key, &secret, input, &["--codec", codec])
            .code(0);
    }
    let expected: Vec<&str> = input.lines().cycle().take(8).collect();
    assert_eq!(env.output_lines(), expected);
}

#[test]
fn a_file_that_is_not_avro_is_bad_input_and_sends_nothing() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        "{\"not\":\"avro\"}",
        &["--format", "avro"],
    )
    .code(3);
    assert!(env.audit_sends().is_empty());
}

/// The fastavro fixture's schema, evolved: `samples` and `note` removed, `unit` added with a default.
const READINGS_V2: &str = r#"{"type": "record", "name": "Reading", "namespace": "example.power", "fields": [
    {"name": "id", "type": "long"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["POWER", "HEAT"]}},
    {"name": "value", "type": ["null", "double"]},
    {"name": "unit", "type": "string", "default": "kW"}]}"#;

#[test]
fn a_server_with_a_reader_schema_stores_old_data_in_the_new_shape() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let schema = env.path("readings-v2.avsc");
    std::fs::write(&schema, READINGS_V2).unwrap();
    let server =
        crate::common::Server::start(&env, "127.0.0.1:*", &["--schema", schema.to_str().unwrap()]);
    let file = std::fs::read(fastavro_fixture("readings.null.avro")).unwrap();
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        file,
        &["--format", "avro"],
    )
    .code(0);
    let lines = env.output_lines();
    assert_eq!(lines.len(), 25);
    assert_eq!(
        lines[0],
        r#"{"id":0,"kind":"POWER","value":0.0,"unit":"kW"}"#
    );
    assert_eq!(
        lines[4],
        r#"{"id":4,"kind":"POWER","value":null,"unit":"kW"}"#
    );

    // JSON input (zavro's own schema) does not resolve against this reader: refused, naming the reason.
    let out = env
        .send(server.endpoint(), &key, &secret, "{\"id\":1}")
        .code(4);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("schema_mismatch"), "{stderr}");
    assert_eq!(
        env.audit_sends().last().unwrap()["reason"],
        "schema_mismatch"
    );
}

#[test]
fn a_reader_schema_that_changes_a_fields_type_refuses_the_data_and_names_the_field() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let dir = env.path("schemas");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("readings.avsc"),
        r#"{"type": "record", "name": "Reading", "namespace": "example.power",
            "fields": [{"name": "id", "type": "string"}]}"#,
    )
    .unwrap();
    let server =
        crate::common::Server::start(&env, "127.0.0.1:*", &["--schema", dir.to_str().unwrap()]);
    let file = std::fs::read(fastavro_fixture("readings.deflate.avro")).unwrap();
    let out = env
        .send_with(
            server.endpoint(),
            &key,
            &secret,
            file,
            &["--format", "avro"],
        )
        .code(4);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("schema_mismatch") && stderr.contains("'id'"),
        "{stderr}"
    );
    assert!(env.output_lines().is_empty());
}

const TYPED: &str = r#"{"type": "record", "name": "Reading", "fields": [
    {"name": "id", "type": "long"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["POWER", "HEAT"]}},
    {"name": "value", "type": ["null", "double"]},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 8, "scale": 2}},
    {"name": "unit", "type": "string", "default": "kW"}]}"#;

#[test]
fn send_with_a_schema_encodes_natural_json_with_it_and_the_server_logs_it_back() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let schema = env.path("reading.avsc");
    std::fs::write(&schema, TYPED).unwrap();
    let server = env.start_server();
    let input = concat!(
        r#"{"id": 1, "kind": "POWER", "value": 5.3, "at": "2025-11-28T03:47:15.123Z", "price": "12.5"}"#,
        "\n",
        r#"{"id": 2, "kind": "HEAT", "value": null, "at": "2025-11-28T03:47:16Z", "price": "-0.25", "unit": "MW"}"#,
        "\n"
    );
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        input,
        &["--schema", schema.to_str().unwrap()],
    )
    .code(0);
    assert_eq!(
        env.output_lines(),
        [
            r#"{"id":1,"kind":"POWER","value":5.3,"at":"2025-11-28T03:47:15.123Z","price":"12.50","unit":"kW"}"#,
            r#"{"id":2,"kind":"HEAT","value":null,"at":"2025-11-28T03:47:16Z","price":"-0.25","unit":"MW"}"#,
        ]
    );
}

#[test]
fn json_that_does_not_fit_the_schema_is_refused_naming_record_and_field_and_sends_nothing() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let schema = env.path("reading.avsc");
    std::fs::write(&schema, TYPED).unwrap();
    let server = env.start_server();
    let input = concat!(
        r#"{"id": 1, "kind": "POWER", "value": 5.3, "at": "2025-11-28T03:47:15Z", "price": "1"}"#,
        "\n",
        r#"{"id": 2, "kind": "COLD", "value": 1, "at": "2025-11-28T03:47:15Z", "price": "1"}"#,
        "\n"
    );
    let out = env
        .send_with(
            server.endpoint(),
            &key,
            &secret,
            input,
            &["--schema", schema.to_str().unwrap()],
        )
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("record 2") && stderr.contains("$.kind"),
        "{stderr}"
    );
    assert!(env.audit_sends().is_empty(), "nothing was sent");
}

/// A container file written by apache-avro (another writer than `zavro send`) of `schema` and `values`.
fn written_by_apache_avro(schema: &str, values: Vec<apache_avro::types::Value>) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
    for value in values {
        writer.append_value(value).unwrap();
    }
    writer.into_inner().unwrap()
}

#[test]
fn nan_infinities_and_floats_from_another_writer_are_logged_and_stored_as_avros_json_encoding() {
    use apache_avro::types::Value as Avro;
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let schema = r#"{"type":"record","name":"Sample","fields":[
        {"name":"d","type":"double"},{"name":"f","type":"float"}]}"#;
    let sample = |d: f64, f: f32| {
        Avro::Record(vec![
            ("d".into(), Avro::Double(d)),
            ("f".into(), Avro::Float(f)),
        ])
    };
    let file = written_by_apache_avro(
        schema,
        vec![
            sample(f64::NAN, f32::INFINITY),
            sample(f64::NEG_INFINITY, f32::NAN),
            sample(0.1, 0.1),
            sample(f64::INFINITY, f32::NEG_INFINITY),
        ],
    );
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        file,
        &["--format", "avro"],
    )
    .code(0);
    let expected = [
        r#"{"d":"NaN","f":"Infinity"}"#,
        r#"{"d":"-Infinity","f":"NaN"}"#,
        r#"{"d":0.1,"f":0.1}"#,
        r#"{"d":"Infinity","f":"-Infinity"}"#,
    ];
    assert_eq!(env.output_lines(), expected);
    let sends = env.audit_sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["status"], "accepted");
    let stored: Vec<serde_json::Value> = expected
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(sends[0]["payload"], serde_json::Value::Array(stored));
}

#[test]
fn a_record_that_does_not_decode_is_refused_naming_the_record_not_the_container() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    // A well-framed file of longs whose one block declares two objects but holds one.
    let mut file = zavro::avro::container::ContainerWriter::new(
        r#""long""#,
        apache_avro::Codec::Null,
        [9; 16],
    );
    file.write_block(2, vec![2]).unwrap();
    let request = zavro::protocol::Request::sign(
        &key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        &zavro::credentials::new_nonce().unwrap(),
        file.finish(),
    );
    let reply = crate::common::request_once(server.endpoint(), &request.to_frames());
    let zavro::protocol::Reply::Rejected { code, message, .. } = reply else {
        panic!("expected a rejection, got {reply:?}");
    };
    assert_eq!(code.as_str(), "bad_payload");
    assert!(
        message.starts_with("record 2 does not decode with the writer schema"),
        "{message}"
    );
    assert!(!message.contains("container"), "{message}");
}

/// Every time-like logical type, as `send --schema` users write them.
const LOGICAL: &str = r#"{"type": "record", "name": "Times", "fields": [
    {"name": "date", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tms", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tus", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "ns", "type": ["null", {"type": "long", "logicalType": "timestamp-nanos"}]},
    {"name": "lms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "lus", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    {"name": "lns", "type": {"type": "long", "logicalType": "local-timestamp-nanos"}}]}"#;

#[test]
fn send_with_a_schema_takes_logical_types_as_their_integer_or_their_text_and_both_log_the_same() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let schema = env.path("times.avsc");
    std::fs::write(&schema, LOGICAL).unwrap();
    let server = env.start_server();
    let input = concat!(
        // Avro's JSON encoding: the underlying int or long.
        r#"{"date": 20420, "tms": 3723004, "tus": 3723000004, "ms": 1764301635123, "us": 1764301635123456,"#,
        r#" "ns": 1764301635123456789, "lms": 1764301635123, "lus": 1764301635123456, "lns": 1764301635123456789}"#,
        "\n",
        // The text the server writes.
        r#"{"date": "2025-11-28", "tms": "01:02:03.004", "tus": "01:02:03.000004", "ms": "2025-11-28T03:47:15.123Z","#,
        r#" "us": "2025-11-28T03:47:15.123456Z", "ns": "2025-11-28T03:47:15.123456789Z","#,
        r#" "lms": "2025-11-28T03:47:15.123", "lus": "2025-11-28T03:47:15.123456", "lns": "2025-11-28T03:47:15.123456789"}"#,
        "\n"
    );
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        input,
        &["--schema", schema.to_str().unwrap()],
    )
    .code(0);
    let line = concat!(
        r#"{"date":"2025-11-28","tms":"01:02:03.004000","tus":"01:02:03.000004","ms":"2025-11-28T03:47:15.123Z","#,
        r#""us":"2025-11-28T03:47:15.123456Z","ns":"2025-11-28T03:47:15.123456789Z","lms":"2025-11-28T03:47:15.123","#,
        r#""lus":"2025-11-28T03:47:15.123456","lns":"2025-11-28T03:47:15.123456789"}"#
    );
    assert_eq!(env.output_lines(), [line, line]);

    // A number that is not an integer literal is refused before anything is sent, naming the field.
    let out = env
        .send_with(
            server.endpoint(),
            &key,
            &secret,
            input
                .lines()
                .next()
                .unwrap()
                .replace("1764301635123,", "1764301635123.0,"),
            &["--schema", schema.to_str().unwrap()],
        )
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("record 1") && stderr.contains("$.ms: expected a timestamp-millis"),
        "{stderr}"
    );
    assert_eq!(env.audit_sends().len(), 1, "the refused input sent nothing");
}

#[test]
fn a_send_schema_that_does_not_parse_is_named_as_a_bad_schema() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let schema = env.path("broken.avsc");
    std::fs::write(
        &schema,
        r#"{"type": "record", "name": "R", "fields": [{"name": "a"}]}"#,
    )
    .unwrap();
    let out = env
        .send_with(
            "tcp://127.0.0.1:1",
            &key,
            &secret,
            "{\"a\":1}",
            &["--schema", schema.to_str().unwrap()],
        )
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("broken.avsc: not a valid Avro schema"),
        "{stderr}"
    );
    assert!(!stderr.contains("container"), "{stderr}");
}

/// A correctly signed request whose envelope frame is written by hand from `template`, in which `KEY`, `TS`,
/// `NONCE` and `SIG` stand for the signed key, timestamp, nonce and signature; with its nonce.
fn hand_written_envelope(key: &str, secret: &str, template: &str) -> (String, Vec<Vec<u8>>) {
    hand_written_envelope_at(zavro::timestamp::now_seconds(), key, secret, template)
}

/// [`hand_written_envelope`] signed at `timestamp`.
fn hand_written_envelope_at(
    timestamp: i64,
    key: &str,
    secret: &str,
    template: &str,
) -> (String, Vec<Vec<u8>>) {
    let signed =
        crate::common::signed_request(key, secret, timestamp, &[serde_json::json!({"n": 1})]);
    let e = &signed.envelope;
    let text = template
        .replace("KEY", &e.key)
        .replace("TS", &e.timestamp.to_string())
        .replace("NONCE", &e.nonce)
        .replace("SIG", &e.signature);
    let frames = vec![
        zavro::protocol::PROTOCOL_VERSION.as_bytes().to_vec(),
        text.into_bytes(),
        signed.payload.clone(),
    ];
    (e.nonce.clone(), frames)
}

/// The reply frame to `frames` on a fresh REQ socket, as the JSON object it is.
fn raw_reply(endpoint: &str, frames: &[Vec<u8>]) -> serde_json::Map<String, serde_json::Value> {
    let client = crate::common::RawClient::req(endpoint);
    client.send(frames);
    let reply = client.recv();
    assert_eq!(reply.len(), 1, "one reply frame: {reply:?}");
    match serde_json::from_slice(&reply[0]).unwrap() {
        serde_json::Value::Object(map) => map,
        other => panic!("a reply is a JSON object: {other}"),
    }
}

#[test]
fn envelope_rules_a_third_party_must_know_are_what_protocol_md_says() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint();

    // The control: the same hand-written envelope, as PROTOCOL.md shows it, is accepted.
    let (_, good) = hand_written_envelope(
        &key,
        &secret,
        r#"{"key":"KEY","timestamp":TS,"nonce":"NONCE","signature":"SIG"}"#,
    );
    assert_eq!(raw_reply(ep, &good)["status"], "accepted");

    for (what, template) in [
        (
            "timestamp with a fraction",
            r#"{"key":"KEY","timestamp":TS.0,"nonce":"NONCE","signature":"SIG"}"#,
        ),
        (
            "timestamp with an exponent",
            r#"{"key":"KEY","timestamp":TSe0,"nonce":"NONCE","signature":"SIG"}"#,
        ),
        (
            "timestamp as a string",
            r#"{"key":"KEY","timestamp":"TS","nonce":"NONCE","signature":"SIG"}"#,
        ),
        (
            "a field twice, same value",
            r#"{"key":"KEY","timestamp":TS,"nonce":"NONCE","nonce":"NONCE","signature":"SIG"}"#,
        ),
        (
            "a field twice, the second value different",
            r#"{"key":"KEY","timestamp":TS,"timestamp":0,"nonce":"NONCE","signature":"SIG"}"#,
        ),
    ] {
        let (_, frames) = hand_written_envelope(&key, &secret, template);
        let reply = raw_reply(ep, &frames);
        assert_eq!(reply["status"], "rejected", "{what}: {reply:?}");
        assert_eq!(reply["code"], "malformed", "{what}: {reply:?}");
    }

    // serde_json reads `-0` as the float -0.0, so it is no integer either; `0` is, and is signed as `0` (the
    // signature holds: the clock check is what refuses it).
    let at_zero = |timestamp: &str| {
        let (_, frames) = hand_written_envelope_at(
            0,
            &key,
            &secret,
            &format!(
                r#"{{"key":"KEY","timestamp":{timestamp},"nonce":"NONCE","signature":"SIG"}}"#
            ),
        );
        raw_reply(ep, &frames)
    };
    let reply = at_zero("-0");
    assert_eq!(reply["code"], "malformed", "{reply:?}");
    assert_eq!(at_zero("0")["code"], "clock_skew");

    // bad_signature: the request's nonce, status, code and message, and nothing more: no server_time, and no
    // signature (anyone can make up a request with a wrong signature; PROTOCOL.md, "Signed replies").
    let (nonce, frames) = hand_written_envelope(
        &key,
        &secret,
        r#"{"key":"KEY","timestamp":TS,"nonce":"NONCE","signature":"LL0duTQ3yeWw3PFtF9fpz331UwE="}"#,
    );
    let reply = raw_reply(ep, &frames);
    let mut fields: Vec<&str> = reply.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["code", "message", "nonce", "status"], "{reply:?}");
    assert_eq!(reply["nonce"], nonce.as_str());
    assert_eq!(reply["code"], "bad_signature");

    assert_eq!(
        env.output_lines(),
        [r#"{"n":1}"#],
        "only the control was stored"
    );
}
