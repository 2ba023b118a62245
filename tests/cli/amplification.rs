//! Attacks that need no key, over real sockets: a request that would make the server echo what it was sent,
//! and text crafted to forge a log line or drive an operator's terminal.

use serde_json::{Value, json};
use zavro::protocol::{MAX_MESSAGE_CHARS, ReplyFrame};

use crate::common::{RawClient, TestEnv, signed_now};

/// An envelope whose unknown field name is `name`: valid JSON, refused as malformed, and quoted by the refusal.
fn envelope_with_field(name: &str) -> Vec<u8> {
    let mut envelope = json!({
        "key": "ZKNOBODY", "timestamp": 1, "nonce": "nonce-0123456789abcdef", "signature": "x"
    });
    envelope[name] = json!(1);
    serde_json::to_vec(&envelope).unwrap()
}

fn reply_of(frames: &[Vec<u8>]) -> ReplyFrame {
    ReplyFrame::from_frame(frames.last().unwrap()).unwrap()
}

#[test]
fn a_request_of_megabytes_costs_a_short_reply_audit_row_and_log_line() {
    let env = TestEnv::new();
    env.create_store();
    let server = env.start_server();
    let client = RawClient::dealer(server.endpoint());
    // 1 MiB of DEL bytes in a field name (each would be escaped to six characters), then 1 MiB of junk.
    let huge_name = "\u{7f}".repeat(1 << 20);
    let cases = [
        envelope_with_field(&huge_name),
        format!("{{\"key\": \"{}\"", "\u{7f}".repeat(1 << 20)).into_bytes(),
        vec![b'{'; 1 << 20],
    ];
    for envelope in &cases {
        client.send(&[b"zavro/1".to_vec(), envelope.clone(), vec![0; 16]]);
        let reply = client.recv();
        let frame = reply.last().unwrap();
        assert!(frame.len() < 1024, "reply of {} bytes", frame.len());
        let reply = reply_of(&reply);
        let zavro::protocol::Reply::Rejected { code, message, .. } = reply.reply else {
            panic!("refused");
        };
        assert_eq!(code.as_str(), "malformed");
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS, "{message}");
    }

    let (key, secret) = env.add_key();
    env.send(server.endpoint(), &key, &secret, "{\"still\": \"served\"}")
        .success();
    let lines = server.stderr_lines();
    let stopped = server.stop();
    assert!(stopped.success());
    for row in env.audit() {
        let detail = row["message"].as_str().unwrap_or_default();
        assert!(detail.chars().count() <= MAX_MESSAGE_CHARS, "{detail}");
    }
    for line in &lines {
        assert!(line.len() < 1024, "log line of {} bytes", line.len());
        assert!(!line.contains('\u{7f}'), "{line:?}");
    }
}

#[test]
fn a_readable_envelope_refused_for_an_extra_field_still_gets_its_nonce_back() {
    let env = TestEnv::new();
    env.create_store();
    let server = env.start_server();
    let client = RawClient::dealer(server.endpoint());
    client.send(&[
        b"zavro/1".to_vec(),
        envelope_with_field("extra"),
        vec![0; 16],
    ]);
    let reply = reply_of(&client.recv());
    assert_eq!(reply.nonce.as_deref(), Some("nonce-0123456789abcdef"));
    assert!(server.stop().success());
}

#[test]
fn a_field_name_with_newlines_and_escapes_forges_no_log_line_and_no_terminal_row() {
    let env = TestEnv::new();
    env.create_store();
    let server = env.start_server();
    let client = RawClient::dealer(server.endpoint());
    let forged = "x\naccepted #1 key=ZKADMIN peer=10.0.0.1 records=1\n\u{1b}[2J\u{1b}]0;owned\u{7}";
    client.send(&[
        b"zavro/1".to_vec(),
        envelope_with_field(forged),
        vec![0; 16],
    ]);
    client.recv();
    let (key, secret) = env.add_key();
    // A valid request after it, so its line proves the log was written past the refusal.
    let valid = signed_now(&key, &secret, &[json!(1)]);
    client.send(&valid.to_frames());
    client.recv();
    let (status, lines) = server.stop_with_stderr();
    assert!(status.success());
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("accepted #1 key=ZKADMIN")),
        "{lines:?}"
    );
    let refusal = lines
        .iter()
        .find(|l| l.contains("malformed"))
        .expect("the refusal is logged");
    assert!(refusal.contains("\\u{a}accepted #1"), "{refusal}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains('\u{1b}') || l.contains('\u{7}'))
    );

    let table = env.zavro().args(["audit", "query"]).output().unwrap();
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("accepted #1")),
        "one audit row is one table row: {text}"
    );

    // JSON output stays exact: the stored message is what the reply said, and parses back.
    let rows: Vec<Value> = env.audit();
    assert!(
        rows.iter().any(|r| r["message"]
            .as_str()
            .is_some_and(|m| m.contains("\\u{1b}[2J"))),
        "{rows:?}"
    );
}

#[test]
fn a_peer_that_never_reads_its_replies_neither_grows_the_server_nor_holds_up_its_shutdown() {
    let env = TestEnv::new();
    env.create_store();
    let server = env.start_server();
    let context = zmq::Context::new();
    let reader_that_never_reads = context.socket(zmq::DEALER).unwrap();
    // The smallest buffers its side allows, so the replies back up into the server at once.
    reader_that_never_reads.set_rcvhwm(1).unwrap();
    reader_that_never_reads.set_rcvbuf(4096).unwrap();
    reader_that_never_reads.set_linger(0).unwrap();
    reader_that_never_reads.connect(server.endpoint()).unwrap();
    const REQUESTS: usize = 5000;
    let malformed = [
        b"zavro/1".to_vec(),
        envelope_with_field("extra"),
        vec![0; 16],
    ];
    for _ in 0..REQUESTS {
        reader_that_never_reads
            .send_multipart(malformed.iter(), 0)
            .unwrap();
    }
    // A valid request last on the same connection: once it is stored, every request before it was handled.
    let (key, secret) = env.add_key();
    let last = signed_now(&key, &secret, &[json!("last")]);
    reader_that_never_reads
        .send_multipart(last.to_frames(), 0)
        .unwrap();
    crate::common::wait_until("the server handled every request", || {
        env.output_lines().iter().any(|l| l == "\"last\"")
    });
    let peak_kib = server.peak_rss_kib();
    assert!(peak_kib < 64 * 1024, "serve peaked at {peak_kib} KiB");
    // Server::stop panics unless the server exits within its deadline, replies still queued or not.
    assert!(server.stop().success());
    assert_eq!(env.audited_requests(), REQUESTS as u64 + 1);
    assert!(
        env.audit_sends().len() <= 3,
        "a sample, a summary and the valid request"
    );
    let stats = env
        .zavro()
        .args(["audit", "stats", "--json"])
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let malformed = stats["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "malformed")
        .unwrap();
    assert_eq!(
        malformed["requests"], REQUESTS,
        "audit stats counts them all: {stats}"
    );
}
