//! The transport: `serve` speaks CURVE by default and checks each client's key at the handshake, signs its
//! replies, and says in its start-up line and audit rows how clients reach it (`--plaintext` too).

use std::time::Duration;

use serde_json::{Value, json};
use zavro::{
    curve::KeyPair,
    protocol::{Reply, ReplyFrame},
};

use crate::common::*;

/// How long a refused client is given to get a reply it must not get.
const SHORT_WAIT: Duration = Duration::from_millis(500);

/// The one reply frame of a DEALER's next message, parsed.
fn reply_frame(client: &RawClient) -> ReplyFrame {
    let frames = client.recv();
    let last = frames.last().expect("a reply has a frame");
    ReplyFrame::from_frame(last)
        .unwrap_or_else(|e| panic!("not a reply ({e}): {}", String::from_utf8_lossy(last)))
}

/// A CURVE client of `server` proving the client key derived from `key` and `secret`.
fn curve_client(server: &Server, key: &str, secret: &str) -> RawClient {
    let pair = KeyPair::for_client(key, secret.as_bytes()).expect("a client key pair");
    RawClient::curve_dealer(
        server.endpoint(),
        server.server_key().expect("a CURVE server"),
        &pair,
    )
}

/// `audit stats --json`'s reasons as (status, reason, requests).
fn stats_reasons(env: &TestEnv) -> Vec<(String, String, u64)> {
    let out = env
        .zavro()
        .args(["audit", "stats", "--json"])
        .assert()
        .success();
    let stats = parse_json(&out.get_output().stdout);
    stats["reasons"]
        .as_array()
        .expect("stats has reasons")
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn serve_speaks_curve_by_default_and_a_client_with_its_keys_derived_key_is_served_with_signed_replies()
 {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let server_key = server.server_key().unwrap().to_owned();
    assert_eq!(server_key.len(), 40, "{server_key}");
    assert_eq!(
        server.stderr_lines()[0],
        format!(
            "listening on {} (CURVE, server key {server_key})",
            server.endpoint()
        )
    );

    let client = curve_client(&server, &key, &secret);
    assert_eq!(client.handshake(), Handshake::Succeeded);
    client.send(&signed_now(&key, &secret, &[json!({"over": "curve"})]).to_frames());
    let reply = reply_frame(&client);
    assert_accepted(&reply.reply, 1);
    assert!(
        reply.signed_by(secret.as_bytes()),
        "the reply is signed with the key's secret: {reply:?}"
    );
    assert!(!reply.signed_by(b"another secret"));
    drop(server);

    assert_eq!(env.output_lines(), [r#"{"over":"curve"}"#]);
    let rows = env.audit_sends();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["transport"], "curve");
    assert_eq!(rows[0]["key"], key.as_str());
}

#[test]
fn serve_plaintext_says_so_at_start_up_and_in_each_audit_row_and_still_signs_replies() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    assert_eq!(server.server_key(), None);
    assert_eq!(
        server.stderr_lines()[0],
        format!(
            "listening on {} (plaintext: unencrypted, anyone on the path can read and forge traffic)",
            server.endpoint()
        )
    );
    let client = RawClient::dealer(server.endpoint());
    client.send(&signed_now(&key, &secret, &[json!(1)]).to_frames());
    let reply = reply_frame(&client);
    assert_accepted(&reply.reply, 1);
    assert!(reply.signed_by(secret.as_bytes()), "{reply:?}");
    drop(server);

    let transports: Vec<Value> = env.audit().iter().map(|r| r["transport"].clone()).collect();
    assert_eq!(
        transports,
        [Value::Null, json!("plaintext")],
        "keys add is a local action; the request came in plaintext"
    );
}

#[test]
fn a_client_whose_key_was_revoked_is_refused_at_the_handshake_and_only_counted() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    env.zavro()
        .args(["keys", "revoke", &key])
        .assert()
        .success();
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let client = curve_client(&server, &key, &secret);
    // Queued at once (a connection's pipe exists before its handshake) and sent only if the handshake succeeds;
    // after a refusal libzmq drops the pipe, so a send then would wait for a peer.
    client.send(&signed_now(&key, &secret, &[json!(1)]).to_frames());
    assert_eq!(client.handshake(), Handshake::RefusedAuth);
    assert_eq!(
        client.try_recv(SHORT_WAIT),
        None,
        "no reply to a refused client"
    );
    server.stop();

    let rows = env.audit_sends();
    assert!(!rows.is_empty(), "the refusals are counted");
    for row in &rows {
        assert_eq!(row["reason"], "handshake_refused", "{row}");
        assert_eq!(
            row["key"],
            key.as_str(),
            "the row names the revoked key: {row}"
        );
        assert_eq!(row["peer"], "127.0.0.1");
        assert_eq!(row["transport"], "curve");
        assert_eq!(row["size"], 0, "nothing of a message was read");
    }
    let refused: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert!(refused >= 1);
    assert_eq!(
        stats_reasons(&env),
        [(
            "rejected".to_owned(),
            "handshake_refused".to_owned(),
            refused
        )],
        "audit stats counts every refused handshake and nothing else"
    );
    assert!(env.output_lines().is_empty());
    env.zavro().args(["audit", "verify"]).assert().success();
}

#[test]
fn a_client_with_a_key_nobody_issued_is_refused_at_the_handshake_and_only_counted() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let stranger = RawClient::curve_dealer(
        server.endpoint(),
        server.server_key().unwrap(),
        &KeyPair::generate().unwrap(),
    );
    // Even a correctly signed request goes nowhere without the key's client key pair.
    stranger.send(&signed_now(&key, &secret, &[json!(1)]).to_frames());
    assert_eq!(stranger.handshake(), Handshake::RefusedAuth);
    assert_eq!(stranger.try_recv(SHORT_WAIT), None);
    server.stop();

    let rows = env.audit_sends();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["reason"] == "handshake_refused"
            && r["key"].is_null()
            && r["peer"] == "127.0.0.1"),
        "{rows:?}"
    );
    let reasons = stats_reasons(&env);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].1, "handshake_refused");
}

#[test]
fn a_connection_authenticated_as_one_key_may_not_send_for_another() {
    let env = TestEnv::new();
    let (key_a, secret_a) = env.add_key();
    let (key_b, secret_b) = env.add_key();
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let as_a = curve_client(&server, &key_a, &secret_a);
    assert_eq!(as_a.handshake(), Handshake::Succeeded);
    as_a.send(&signed_now(&key_b, &secret_b, &[json!("signed by B")]).to_frames());
    let reply = reply_frame(&as_a);
    assert!(
        matches!(&reply.reply, Reply::Rejected { code, .. } if code.as_str() == "key_mismatch"),
        "{reply:?}"
    );
    assert_eq!(reply.signature, None, "B's secret was never read: unsigned");
    as_a.send(&signed_now(&key_a, &secret_a, &[json!("signed by A")]).to_frames());
    assert_accepted(&reply_frame(&as_a).reply, 1);
    drop(server);

    let rows = env.audit_sends();
    let reasons: Vec<&Value> = rows.iter().map(|r| &r["reason"]).collect();
    assert_eq!(reasons, [&json!("key_mismatch"), &Value::Null]);
    assert_eq!(
        rows[0]["key"],
        key_a.as_str(),
        "recorded under the key the connection proved, not the one the request named"
    );
    assert!(
        rows[0]["message"].as_str().unwrap().contains(&key_b),
        "{}",
        rows[0]
    );
    assert_eq!(env.output_lines(), [r#""signed by A""#]);
}

on_both_backends!(a_key_revoked_while_its_client_is_connected_is_refused_per_request);

fn a_key_revoked_while_its_client_is_connected_is_refused_per_request(env: TestEnv) {
    let (key, secret) = env.add_key();
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let client = curve_client(&server, &key, &secret);
    client.send(&signed_now(&key, &secret, &[json!(1)]).to_frames());
    assert_accepted(&reply_frame(&client).reply, 1);
    env.zavro()
        .args(["keys", "revoke", &key])
        .assert()
        .success();
    client.send(&signed_now(&key, &secret, &[json!(2)]).to_frames());
    let reply = reply_frame(&client);
    assert!(
        matches!(&reply.reply, Reply::Rejected { code, .. } if code.as_str() == "revoked_key"),
        "{reply:?}"
    );
    assert_eq!(
        reply.signature, None,
        "refused before its signature was checked: unsigned"
    );
    let again = curve_client(&server, &key, &secret);
    assert_eq!(
        again.handshake(),
        Handshake::RefusedAuth,
        "a new connection is refused at once"
    );
}

#[test]
fn audit_verify_passes_on_rows_of_local_actions_plaintext_and_curve() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let plaintext = Server::start(&env, "127.0.0.1:*", &[]);
    request_once(
        plaintext.endpoint(),
        &signed_now(&key, &secret, &[json!(1)]).to_frames(),
    );
    drop(plaintext);
    let curve = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let client = curve_client(&curve, &key, &secret);
    client.send(&signed_now(&key, &secret, &[json!(2)]).to_frames());
    assert_accepted(&reply_frame(&client).reply, 1);
    drop(curve);

    let transports: Vec<Value> = env.audit().iter().map(|r| r["transport"].clone()).collect();
    assert_eq!(
        transports,
        [Value::Null, json!("plaintext"), Value::Null, json!("curve")],
        "key_add, a plaintext request, the server key made on first use, a CURVE request"
    );
    let out = env.zavro().args(["audit", "verify"]).assert().success();
    assert!(
        stdout_of(&out).starts_with("verified 4 rows"),
        "{}",
        stdout_of(&out)
    );
}

/// The server secret keys (Z85) the store holds, to check no command prints one.
fn stored_server_secrets(env: &TestEnv) -> Vec<String> {
    let conn = rusqlite::Connection::open(&env.db).expect("open the store");
    let mut stmt = conn
        .prepare("SELECT secret_key FROM server_keys")
        .expect("server_keys is a table");
    stmt.query_map([], |row| row.get(0))
        .expect("read server_keys")
        .collect::<Result<_, _>>()
        .expect("read server_keys")
}

/// Runs `zavro server-key ARGS`, expecting success; returns (stdout, stderr).
fn server_key(env: &TestEnv, args: &[&str]) -> (String, String) {
    let out = env.zavro().arg("server-key").args(args).assert().success();
    (stdout_of(&out), stderr_of(&out))
}

#[test]
fn server_key_prints_the_key_serve_presents_and_rotation_takes_effect_at_the_next_start() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let (printed, _) = server_key(&env, &[]);
    let current = printed.trim_end().to_owned();
    assert_eq!(printed, format!("{current}\n"), "one line: the key");
    zavro::curve::decode(&current).expect("a Z85 key");
    let (json, _) = server_key(&env, &["--json"]);
    assert_eq!(
        parse_json(json.as_bytes()),
        json!({"current": current, "staged": null})
    );
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    assert_eq!(
        server.server_key(),
        Some(current.as_str()),
        "serve presents it"
    );

    let (staged, stderr) = server_key(&env, &["rotate", "--stage"]);
    let staged = staged.trim_end().to_owned();
    assert_ne!(staged, current);
    assert!(
        stderr.contains("still presents the current key"),
        "{stderr}"
    );
    assert_eq!(
        server_key(&env, &[]).0.trim_end(),
        current,
        "staging changes nothing yet"
    );
    assert_eq!(
        parse_json(server_key(&env, &["--json"]).0.as_bytes()),
        json!({"current": current, "staged": staged})
    );

    let (rotated, stderr) = server_key(&env, &["rotate"]);
    assert_eq!(rotated.trim_end(), staged, "the staged key becomes current");
    assert!(
        stderr.contains("running servers keep presenting the old key until they are restarted"),
        "{stderr}"
    );
    assert_eq!(server_key(&env, &[]).0.trim_end(), staged);
    // The running server still presents the key it started with.
    let client = curve_client(&server, &key, &secret);
    assert_eq!(client.handshake(), Handshake::Succeeded);
    drop(client);
    drop(server);

    let restarted = Server::start_curve(&env, "127.0.0.1:*", &[]);
    assert_eq!(
        restarted.server_key(),
        Some(staged.as_str()),
        "a restarted serve presents the new key"
    );
    let client = curve_client(&restarted, &key, &secret);
    assert_eq!(client.handshake(), Handshake::Succeeded);
    client.send(&signed_now(&key, &secret, &[json!(1)]).to_frames());
    assert_accepted(&reply_frame(&client).reply, 1);
    let stale = RawClient::curve_dealer(
        restarted.endpoint(),
        &current,
        &KeyPair::for_client(&key, secret.as_bytes()).unwrap(),
    );
    stale.send(&signed_now(&key, &secret, &[json!(2)]).to_frames());
    assert_eq!(
        stale.try_recv(SHORT_WAIT),
        None,
        "a client pinning the old key reaches no one"
    );
    drop(restarted);

    let (fresh, _) = server_key(&env, &["rotate"]);
    let fresh = fresh.trim_end();
    assert!(
        fresh != staged && fresh != current,
        "no staged key: a new one"
    );

    let secrets = stored_server_secrets(&env);
    assert_eq!(secrets.len(), 3, "current and two retired");
    let actions: Vec<Value> = env.audit().iter().map(|r| r["action"].clone()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.as_str().is_some_and(|a| a.starts_with("server_key")))
            .count(),
        5,
        "created, staged, rotated, created, rotated: {actions:?}"
    );
    let everything = env.audit();
    for secret_key in &secrets {
        for text in [printed.as_str(), json.as_str(), fresh] {
            assert!(
                !text.contains(secret_key.as_str()),
                "a secret key was printed"
            );
        }
        assert!(
            !everything
                .iter()
                .any(|row| row.to_string().contains(secret_key.as_str())),
            "a secret key is in the audit trail"
        );
    }
}

on_both_backends!(server_key_needs_an_existing_store_and_takes_rotate_or_json_not_both);

fn server_key_needs_an_existing_store_and_takes_rotate_or_json_not_both(env: TestEnv) {
    for args in [
        &["server-key"][..],
        &["server-key", "rotate"],
        &["server-key", "rotate", "--stage"],
    ] {
        env.zavro().args(args).assert().code(7);
        let created = if env.is_postgres() {
            env.psql("SELECT to_regclass('zavro_schema') IS NOT NULL;")
                .trim()
                == "t"
        } else {
            env.db.exists()
        };
        assert!(!created, "zavro {args:?} created the store");
    }
    env.create_store();
    env.zavro()
        .args(["server-key", "--json", "rotate"])
        .assert()
        .code(2);
}

on_both_backends!(a_client_pinning_the_next_and_the_current_key_rides_through_a_rotation);

fn a_client_pinning_the_next_and_the_current_key_rides_through_a_rotation(env: TestEnv) {
    let (key, secret) = env.add_key();
    let old = server_key(&env, &[]).0.trim_end().to_owned();
    let new = server_key(&env, &["rotate", "--stage"])
        .0
        .trim_end()
        .to_owned();
    let both = format!("{new},{old}");
    let send = |server: &Server, pins: &str, record: &str| {
        env.send_curve(server.endpoint(), pins, &key, &secret, record)
    };

    // Before the rotation the server presents the old key: the client's first pin fails the handshake and the
    // connection moves to the second.
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    assert_eq!(server.server_key(), Some(old.as_str()));
    send(&server, &both, "{\"n\":1}").success();
    server.stop();

    server_key(&env, &["rotate"]);
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    assert_eq!(server.server_key(), Some(new.as_str()));
    send(&server, &both, "{\"n\":2}").success();
    // A client that still pins only the old key is told so, not left to time out.
    let stale = send(&server, &old, "{\"n\":3}").code(8);
    assert!(
        stderr_of(&stale).contains("did not complete the CURVE handshake"),
        "{}",
        stderr_of(&stale)
    );
    server.stop();
    assert_eq!(env.output_lines(), ["{\"n\":1}", "{\"n\":2}"]);

    let three = format!("{new},{old},{new}");
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let too_many = send(&server, &three, "{\"n\":4}").code(2);
    assert!(
        stderr_of(&too_many).contains("at most 2 server keys"),
        "{}",
        stderr_of(&too_many)
    );
    server.stop();
}
