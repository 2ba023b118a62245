//! What an attacker between `zavro send` and `zavro serve` sees and can do, through a real TCP proxy: under CURVE
//! the records never cross the wire readable; under `--plaintext` they do, but a reply the proxy alters makes
//! `send` fail rather than report records stored.

use std::sync::Arc;

use crate::{
    common::{Server, TestEnv, stderr_of},
    proxy::Proxy,
};

/// A string that appears in the records sent and nowhere else.
const CANARY: &str = "canary-9f1c3e7a-only-in-the-records";

fn records() -> String {
    format!("{{\"secret_reading\":\"{CANARY}\",\"value\":1}}\n")
}

#[test]
fn under_curve_the_records_and_key_id_never_cross_the_wire_readable() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start_curve(&env, "tcp://127.0.0.1:*", &[]);
    let proxy = Proxy::start(server.endpoint());
    let server_key = server.server_key().expect("a CURVE server").to_owned();

    env.send_curve(&proxy.endpoint, &server_key, &key, &secret, records())
        .success();

    assert!(
        env.output_lines().iter().any(|line| line.contains(CANARY)),
        "the server stored the records"
    );
    assert!(proxy.seen().len() > 1000, "traffic went through the proxy");
    assert!(
        !proxy.saw(CANARY.as_bytes()),
        "a record crossed the wire in clear"
    );
    assert!(
        !proxy.saw(key.as_bytes()),
        "the key id crossed the wire in clear"
    );
    server.stop();
}

#[test]
fn under_plaintext_the_same_records_are_readable_on_the_wire() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "tcp://127.0.0.1:*", &[]);
    let proxy = Proxy::start(server.endpoint());

    env.send(&proxy.endpoint, &key, &secret, &records())
        .success();

    // The control for the test above: the same proxy does see the canary when nothing encrypts it.
    assert!(proxy.saw(CANARY.as_bytes()));
    assert!(proxy.saw(key.as_bytes()));
    server.stop();
}

/// Changes the first digit of the first `"audit_id":` in a chunk, keeping its length: a reply the server did
/// send, with one fact altered.
fn alter_audit_id(chunk: &mut [u8]) {
    let marker = b"\"audit_id\":";
    if let Some(at) = chunk.windows(marker.len()).position(|w| w == marker) {
        let digit = &mut chunk[at + marker.len()];
        if digit.is_ascii_digit() {
            *digit = b'0' + (*digit - b'0' + 1) % 10;
        }
    }
}

#[test]
fn a_reply_altered_on_the_path_makes_send_fail_and_never_report_the_records_stored() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "tcp://127.0.0.1:*", &[]);
    let proxy = Proxy::rewriting(server.endpoint(), Arc::new(alter_audit_id));

    let assert = env
        .send_with(
            &proxy.endpoint,
            &key,
            &secret,
            records(),
            &["--retries", "0"],
        )
        .code(8);
    let stderr = stderr_of(&assert);
    assert!(stderr.contains("forgery"), "{stderr}");
    // send reports what was stored on stderr ("accepted N record…"): nothing here.
    assert!(!stderr.contains("accepted 1 record"), "{stderr}");
    server.stop();
}

#[test]
fn send_against_a_real_server_names_each_handshake_failure_and_exits_8() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let curve = Server::start_curve(&env, "tcp://127.0.0.1:*", &[]);
    let plaintext = Server::start(&env, "tcp://127.0.0.1:*", &[]);
    let server_key = curve.server_key().expect("a CURVE server").to_owned();
    let stranger = zavro::curve::KeyPair::generate().unwrap().public_z85();
    let failure = |assert: assert_cmd::assert::Assert| stderr_of(&assert.code(8));

    let wrong_key = failure(env.send_curve(curve.endpoint(), &stranger, &key, &secret, "1"));
    assert!(
        wrong_key.contains("did not complete the CURVE handshake: wrong server key"),
        "{wrong_key}"
    );
    let curve_to_plaintext =
        failure(env.send_curve(plaintext.endpoint(), &server_key, &key, &secret, "1"));
    assert!(
        curve_to_plaintext.contains("did not complete the CURVE handshake"),
        "{curve_to_plaintext}"
    );
    let plaintext_to_curve = failure(env.send(curve.endpoint(), &key, &secret, "1"));
    // libzmq reports a mechanism mismatch, or only the closed connection when the server's close wins the race:
    // either way the message points at CURVE.
    assert!(
        plaintext_to_curve.contains("requires CURVE")
            || plaintext_to_curve.contains("does it require CURVE?"),
        "{plaintext_to_curve}"
    );
    env.zavro()
        .args(["keys", "revoke", &key])
        .assert()
        .success();
    let revoked = failure(env.send_curve(curve.endpoint(), &server_key, &key, &secret, "1"));
    assert!(
        revoked.contains(&format!("refused key {key} at the handshake")),
        "{revoked}"
    );
    assert!(env.output_lines().is_empty(), "nothing was stored");
    curve.stop();
    plaintext.stop();
}
