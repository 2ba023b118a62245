//! The wire protocol from a raw ZeroMQ client: replays, clock skew, DEALER peers, and hostile frames. Every
//! request gets a reply and an audit row, and the server keeps serving.

use serde_json::{Value, json};
use zavro::protocol::{PROTOCOL_VERSION, Reply, Request};

use crate::common::{
    RawClient, Server, TestEnv, assert_accepted, reject_code, request_once, signed_now,
    signed_request,
};

/// The same nonce with other content: another request under a used nonce.
fn same_nonce_other_payload(original: &Request, secret: &str, records: &[Value]) -> Request {
    let e = &original.envelope;
    let payload = zavro::avro::encode(records).unwrap();
    Request::sign(&e.key, secret.as_bytes(), e.timestamp, &e.nonce, payload)
}

fn duplicate_of(reply: &Reply) -> (i64, u64) {
    match reply {
        Reply::Accepted {
            audit_id,
            records,
            duplicate: true,
        } => (*audit_id, *records),
        other => panic!("expected a duplicate acceptance, got {other:?}"),
    }
}

fn audit_id_of(reply: &Reply) -> i64 {
    match reply {
        Reply::Accepted {
            audit_id,
            duplicate: false,
            ..
        } => *audit_id,
        other => panic!("expected a fresh acceptance, got {other:?}"),
    }
}

#[test]
fn a_reused_nonce_with_other_content_is_rejected_as_a_replay() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let original = signed_now(&key, &secret, &[json!({"once": "only"})]);
    let forged = same_nonce_other_payload(&original, &secret, &[json!({"once": "again"})]);

    audit_id_of(&request_once(server.endpoint(), &original.to_frames()));
    let reply = request_once(server.endpoint(), &forged.to_frames());
    assert_eq!(reject_code(&reply), "replay");
    // The same REQ socket, twice more.
    let client = RawClient::req(server.endpoint());
    assert_eq!(reject_code(&client.request(&forged.to_frames())), "replay");
    assert_eq!(reject_code(&client.request(&forged.to_frames())), "replay");

    let sends = env.audit_sends();
    let shape: Vec<_> = sends
        .iter()
        .map(|r| (r["status"].clone(), r["reason"].clone()))
        .collect();
    assert_eq!(
        shape,
        [
            (json!("accepted"), Value::Null),
            (json!("rejected"), json!("replay")),
            (json!("rejected"), json!("replay")),
            (json!("rejected"), json!("replay")),
        ]
    );
    assert_eq!(sends[1]["key"], key.as_str());
    assert_eq!(env.output_lines(), ["{\"once\":\"only\"}"]);
}

/// A byte-identical resend (a client retrying after a lost reply) is answered with the original audit id and
/// `duplicate: true`, and stores nothing twice.
#[test]
fn a_byte_identical_resend_is_a_duplicate_that_stores_nothing_twice() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let records = [json!({"retry": 1}), json!({"retry": 2})];
    let frames = signed_now(&key, &secret, &records).to_frames();

    let first = audit_id_of(&request_once(server.endpoint(), &frames));
    assert_eq!(
        duplicate_of(&request_once(server.endpoint(), &frames)),
        (first, 2)
    );
    let client = RawClient::req(server.endpoint());
    assert_eq!(duplicate_of(&client.request(&frames)), (first, 2));

    assert_eq!(env.output_lines(), ["{\"retry\":1}", "{\"retry\":2}"]);
    let sends = env.audit_sends();
    assert_eq!(sends.len(), 3);
    assert_eq!(sends[0]["id"], first);
    assert_eq!(sends[0]["payload"], json!(records));
    for dup in &sends[1..] {
        assert_eq!(
            (&dup["status"], &dup["reason"], &dup["records"]),
            (&json!("accepted"), &json!("duplicate"), &json!(0)),
            "{dup}"
        );
        assert!(
            dup["payload"].is_null(),
            "a duplicate stores no payload: {dup}"
        );
    }
}

#[test]
fn replays_and_duplicates_are_recognised_after_a_server_restart_on_the_same_store() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let original = signed_now(&key, &secret, &[json!({"restart": 1})]);
    let forged = same_nonce_other_payload(&original, &secret, &[json!({"restart": "forged"})]);

    let server = env.start_server();
    let first = audit_id_of(&request_once(server.endpoint(), &original.to_frames()));
    assert!(server.stop().success());

    let server = env.start_server();
    assert_eq!(
        reject_code(&request_once(server.endpoint(), &forged.to_frames())),
        "replay"
    );
    assert_eq!(
        duplicate_of(&request_once(server.endpoint(), &original.to_frames())),
        (first, 1)
    );
    // A fresh request with the same key still goes through.
    let fresh = signed_now(&key, &secret, &[json!({"restart": 2})]).to_frames();
    audit_id_of(&request_once(server.endpoint(), &fresh));

    assert_eq!(env.output_lines(), ["{\"restart\":1}", "{\"restart\":2}"]);
    let reasons: Vec<Value> = env
        .audit_sends()
        .iter()
        .map(|r| r["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            Value::Null,
            json!("replay"),
            json!("duplicate"),
            Value::Null
        ]
    );
}

#[test]
fn a_request_signed_1000_seconds_ago_is_rejected_for_clock_skew_with_the_server_time() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let before = zavro::timestamp::now_seconds();
    let request = signed_request(&key, &secret, before - 1000, &[json!({"late": true})]);

    let reply = request_once(server.endpoint(), &request.to_frames());
    let after = zavro::timestamp::now_seconds();

    match &reply {
        Reply::Rejected {
            code, server_time, ..
        } => {
            assert_eq!(code.as_str(), "clock_skew");
            let t = server_time.unwrap_or_else(|| panic!("no server_time in {reply:?}"));
            assert!(
                (before..=after).contains(&t),
                "server_time {t} not in {before}..={after}"
            );
        }
        other => panic!("expected clock_skew, got {other:?}"),
    }
    let sends = env.audit_sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["reason"], "clock_skew");
    assert_eq!(sends[0]["key"], key.as_str());
    assert!(env.output_lines().is_empty());
}

#[test]
fn max_skew_option_widens_the_accepted_clock_window() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--max-skew", "2000"]);
    let request = signed_request(
        &key,
        &secret,
        zavro::timestamp::now_seconds() - 1000,
        &[json!(1)],
    );
    assert_accepted(&request_once(server.endpoint(), &request.to_frames()), 1);
    let future = signed_request(
        &key,
        &secret,
        zavro::timestamp::now_seconds() + 3000,
        &[json!(2)],
    );
    assert_eq!(
        reject_code(&request_once(server.endpoint(), &future.to_frames())),
        "clock_skew"
    );
}

#[test]
fn a_dealer_client_with_an_empty_delimiter_gets_an_enveloped_reply_and_is_accepted() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let dealer = RawClient::dealer(server.endpoint());
    let request = signed_now(&key, &secret, &[json!({"via": "dealer"})]);
    let mut frames = vec![Vec::new()];
    frames.extend(request.to_frames());

    dealer.send(&frames);
    let reply = dealer.recv();

    assert_eq!(reply.len(), 2, "{reply:?}");
    assert!(
        reply[0].is_empty(),
        "the delimiter comes back first: {reply:?}"
    );
    assert_accepted(&Reply::from_frame(&reply[1]).unwrap(), 1);
    assert_eq!(env.output_lines(), ["{\"via\":\"dealer\"}"]);
    let sends = env.audit_sends();
    assert_eq!(sends[0]["peer"], "127.0.0.1");
}

#[test]
fn a_dealer_client_without_a_delimiter_gets_a_bare_reply() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let dealer = RawClient::dealer(server.endpoint());
    let request = signed_now(&key, &secret, &[json!({"via": "bare dealer"})]);

    dealer.send(&request.to_frames());
    let reply = dealer.recv();

    assert_eq!(reply.len(), 1, "{reply:?}");
    assert_accepted(&Reply::from_frame(&reply[0]).unwrap(), 1);
}

#[test]
fn hostile_frames_each_get_a_reply_and_an_audit_row_and_the_server_keeps_serving() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint().to_owned();
    let good = signed_now(&key, &secret, &[json!({"good": 1})]).to_frames();
    let version = PROTOCOL_VERSION.as_bytes().to_vec();
    let garbage: Vec<u8> = (0..=255u8).rev().collect();

    // A valid envelope over random payload bytes: the signature covers them, so only decoding can fail.
    let random_payload = Request::sign(
        &key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        &zavro::credentials::new_nonce().unwrap(),
        garbage.clone(),
    )
    .to_frames();
    // A valid envelope whose payload was swapped for other, valid records after signing.
    let mut tampered = good.clone();
    tampered[2] = zavro::avro::encode(&[json!({"good": 2})]).unwrap();

    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "one frame of garbage",
            vec![garbage.clone()],
            "unsupported_version",
        ),
        ("an empty frame", vec![Vec::new()], "unsupported_version"),
        ("the version alone", vec![version.clone()], "malformed"),
        (
            "wrong version",
            vec![b"zavro/9".to_vec(), good[1].clone(), good[2].clone()],
            "unsupported_version",
        ),
        (
            "envelope not JSON",
            vec![version.clone(), b"{not json".to_vec(), good[2].clone()],
            "malformed",
        ),
        (
            "envelope with a newline in the key",
            vec![
                version.clone(),
                br#"{"key":"ZK1\nx","timestamp":1,"nonce":"0123456789abcdef","signature":"x"}"#
                    .to_vec(),
                good[2].clone(),
            ],
            "malformed",
        ),
        ("too many frames", vec![version.clone(); 12], "malformed"),
        (
            "random payload bytes",
            random_payload.to_vec(),
            "bad_payload",
        ),
        (
            "payload swapped after signing",
            tampered.to_vec(),
            "bad_signature",
        ),
    ];
    for (what, frames, code) in &cases {
        let reply = request_once(&ep, frames);
        assert_eq!(reject_code(&reply), *code, "{what}");
    }
    assert_accepted(&request_once(&ep, &good), 1);
    // And the CLI still works against it.
    env.send(&ep, &key, &secret, "{\"good\":3}").code(0);

    // Every request is counted in the audit trail once the server has written its refusal summaries (at the
    // latest when it stops): each reason as often as it was given, all from this peer.
    let (status, lines) = server.stop_with_stderr();
    assert!(status.success());
    let sends = env.audit_sends();
    assert_eq!(env.audited_requests(), cases.len() as u64 + 2);
    for (_, _, code) in &cases {
        let given = cases.iter().filter(|(_, _, c)| c == code).count() as u64;
        let audited: u64 = sends
            .iter()
            .filter(|row| row["reason"] == *code)
            .map(|row| row["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(audited, given, "{code}: {sends:?}");
    }
    for row in sends.iter().filter(|row| row["status"] == "rejected") {
        assert_eq!(row["peer"], "127.0.0.1", "{row}");
    }
    assert_eq!(env.output_lines(), ["{\"good\":1}", "{\"good\":3}"]);
    // The log is rate-limited per peer, but what it prints names the audit rows.
    let first_line = format!("rejected #{} unsupported_version", sends[0]["id"]);
    assert!(
        lines.iter().any(|l| l.starts_with(&first_line)),
        "{lines:?}"
    );
}

#[test]
fn a_payload_with_a_recursive_foreign_schema_is_rejected_as_unsupported_schema() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let list =
        r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#;
    let payload = avro_file_with_schema(list.as_bytes(), 0, &[]);
    let request = Request::sign(
        &key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        &zavro::credentials::new_nonce().unwrap(),
        payload,
    );
    let reply = request_once(server.endpoint(), &request.to_frames());
    assert_eq!(reject_code(&reply), "unsupported_schema");
    assert_eq!(env.audit_sends()[0]["reason"], "unsupported_schema");
}

#[test]
fn a_payload_with_another_flat_schema_is_accepted_as_natural_json() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    // Two Avro strings, "hi" and "there": length (zig-zag) then bytes.
    let payload = avro_file_with_schema(b"\"string\"", 2, b"\x04hi\x0athere");
    let request = Request::sign(
        &key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        &zavro::credentials::new_nonce().unwrap(),
        payload,
    );
    assert_accepted(&request_once(server.endpoint(), &request.to_frames()), 2);
    assert_eq!(env.output_lines(), ["\"hi\"", "\"there\""]);
}

/// An Avro object container file (null codec) with this schema and, when `count` > 0, one block of `count`
/// objects serialized as `data`.
fn avro_file_with_schema(schema: &[u8], count: i64, data: &[u8]) -> Vec<u8> {
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    fn bytes(b: &[u8], out: &mut Vec<u8>) {
        long(b.len() as i64, out);
        out.extend_from_slice(b);
    }
    let mut out = b"Obj\x01".to_vec();
    long(2, &mut out);
    bytes(b"avro.schema", &mut out);
    bytes(schema, &mut out);
    bytes(b"avro.codec", &mut out);
    bytes(b"null", &mut out);
    long(0, &mut out);
    let sync = [7u8; 16];
    out.extend_from_slice(&sync);
    if count > 0 {
        long(count, &mut out);
        long(data.len() as i64, &mut out);
        out.extend_from_slice(data);
        out.extend_from_slice(&sync);
    }
    out
}
