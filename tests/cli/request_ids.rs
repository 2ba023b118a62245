//! The envelope's optional `id` (PROTOCOL.md, "Request ids") against a real server: a request signed twice under
//! one id, with two nonces, is stored once and the second answered `duplicate` with the first audit id, on both
//! backends; a bad id is `malformed`.

use serde_json::json;
use zavro::protocol::{Reply, Request};

use crate::common::{Server, TestEnv, on_both_backends, reject_code, request_once};

on_both_backends!(a_request_signed_twice_under_one_id_is_stored_once);

fn a_request_signed_twice_under_one_id_is_stored_once(env: TestEnv) {
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    let payload = zavro::avro::encode(&[json!({"n": 1}), json!({"n": 2})]).unwrap();
    let id = "0123456789abcdef0123456789abcdef";
    let now = zavro::timestamp::now_seconds();
    let sign = |timestamp, nonce: &str| {
        Request::sign_with_id(
            &key,
            secret.as_bytes(),
            timestamp,
            nonce,
            Some(id),
            payload.clone(),
        )
        .to_frames()
    };
    let Reply::Accepted {
        audit_id: first,
        records: 2,
        duplicate: false,
    } = request_once(server.endpoint(), &sign(now, "first-nonce-00000001"))
    else {
        panic!("the first signing is stored");
    };
    // Signed again with another nonce and timestamp, as a spool does after `clock_skew`.
    let again = request_once(server.endpoint(), &sign(now + 1, "second-nonce-0000001"));
    assert_eq!(
        again,
        Reply::Accepted {
            audit_id: first,
            records: 2,
            duplicate: true
        }
    );
    // The same id with other data is not taken for a retry.
    let other = Request::sign_with_id(
        &key,
        secret.as_bytes(),
        now,
        "third-nonce-00000001",
        Some(id),
        zavro::avro::encode(&[json!(3)]).unwrap(),
    );
    assert_eq!(
        reject_code(&request_once(server.endpoint(), &other.to_frames())),
        "replay"
    );
    server.stop();

    assert_eq!(
        env.output_lines().len(),
        2,
        "the records were written out once"
    );
    let sends = env.audit_sends();
    let reasons: Vec<_> = sends.iter().map(|row| row["reason"].clone()).collect();
    assert_eq!(reasons, [json!(null), json!("duplicate"), json!("replay")]);
    assert_eq!(sends[0]["id"], first);
    assert_eq!(
        sends[0]["request_id"], id,
        "audit query --json shows the id"
    );
    assert_eq!(sends[0]["payload"], json!([{"n": 1}, {"n": 2}]));
    assert_eq!(sends[1]["request_id"], json!(null));
    env.zavro().args(["audit", "verify"]).assert().success();
}

#[test]
fn an_id_with_characters_outside_the_alphabet_is_malformed() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    let payload = zavro::avro::encode(&[json!(1)]).unwrap();
    for id in ["not/an-id-0123456789", "short"] {
        let request = Request::sign_with_id(
            &key,
            secret.as_bytes(),
            zavro::timestamp::now_seconds(),
            &zavro::credentials::new_nonce().unwrap(),
            Some(id),
            payload.clone(),
        );
        let reply = request_once(server.endpoint(), &request.to_frames());
        assert_eq!(reject_code(&reply), "malformed", "{id:?}");
    }
    server.stop();
    assert!(env.output_lines().is_empty());
}
