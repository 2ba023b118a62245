//! A peer that never reads its replies, over real sockets: the server cuts it off once its reply queue is full
//! (libzmq patch 0006) instead of serving it for nothing, counts the cut-off, stays small, keeps serving others,
//! and still stops promptly.

use serde_json::{Value, json};
use zavro::curve::KeyPair;

use crate::common::{Server, TestEnv};

/// Most requests the attacker sends before the test gives up on seeing it cut off: far more than the reply
/// queue (1000), both ends' socket buffers and libzmq's batches hold, at about 100 bytes a request.
const FLOOD_LIMIT: usize = 2_000_000;

/// What the server may reach while it is attacked: it idles at about 12 MiB (debug build).
const RSS_CEILING_KIB: u64 = 64 * 1024;

/// A DEALER that does not read its replies, with the smallest buffers its side allows, watched by a monitor.
/// Its libzmq stops reading from the connection once its own queue holds a message, and notices the connection
/// closed only when it reads again, so it takes one reply every [`BATCH`] requests: a thousandth of what it is
/// sent, which leaves the server's queue for it to fill.
pub struct Attacker {
    _context: zmq::Context,
    socket: zmq::Socket,
    monitor: zmq::Socket,
}

/// Requests sent between two looks at the monitor.
const BATCH: usize = 1000;

impl Attacker {
    pub fn connect(endpoint: &str, curve: Option<(&str, &KeyPair)>) -> Attacker {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::DEALER).unwrap();
        socket.set_rcvhwm(1).unwrap();
        socket.set_rcvbuf(4096).unwrap();
        socket.set_linger(0).unwrap();
        // Once cut off, it stays off: a reconnection would be a new connection, served afresh.
        socket.set_reconnect_ivl(-1).unwrap();
        socket.set_sndtimeo(1000).unwrap();
        if let Some((server_key, client)) = curve {
            let server_key = zavro::curve::decode(server_key).unwrap();
            socket.set_curve_serverkey(&server_key).unwrap();
            socket.set_curve_publickey(&client.public).unwrap();
            socket.set_curve_secretkey(client.secret()).unwrap();
        }
        let events = zmq::SocketEvent::DISCONNECTED.to_raw();
        socket
            .monitor("inproc://attacker", i32::from(events))
            .unwrap();
        let monitor = context.socket(zmq::PAIR).unwrap();
        monitor.connect("inproc://attacker").unwrap();
        socket.connect(endpoint).unwrap();
        Attacker {
            _context: context,
            socket,
            monitor,
        }
    }

    /// True once the connection is seen closed.
    fn cut_off(&self) -> bool {
        match self.socket.recv_bytes(zmq::DONTWAIT) {
            Ok(_) | Err(zmq::Error::EAGAIN) => {}
            Err(e) => panic!("recv: {e}"),
        }
        self.monitor.poll(zmq::POLLIN, 0).unwrap() > 0
    }
}

/// A malformed request (an unknown envelope field): refused without a key, the cheapest request to answer.
fn cheap_request() -> [Vec<u8>; 3] {
    let envelope = json!({
        "key": "ZKNOBODY", "timestamp": 1, "nonce": "nonce-0123456789abcdef", "signature": "x", "extra": 1
    });
    [
        b"zavro/1".to_vec(),
        serde_json::to_vec(&envelope).unwrap(),
        vec![0; 16],
    ]
}

/// Sends cheap requests from `attacker`, never reading their replies, until the server cuts it off; `during` runs
/// after the first batch. Returns how many were sent.
pub fn flood_until_cut_off(attacker: &Attacker, during: impl Fn()) -> usize {
    let request = cheap_request();
    let mut sent = 0;
    loop {
        assert!(
            sent < FLOOD_LIMIT,
            "not cut off after {FLOOD_LIMIT} unread replies"
        );
        for _ in 0..BATCH {
            // Once the connection is gone, its sends wait for a peer that never comes back: stop the batch.
            match attacker.socket.send_multipart(request.iter(), 0) {
                Ok(()) => sent += 1,
                // EINTR: a signal reached this test process (another test's child exiting, say).
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        if sent <= BATCH {
            during();
        }
        if attacker.cut_off() {
            return sent;
        }
    }
}

/// Floods `server` from `attacker` until it is cut off, with valid requests (`send` sends one, on another
/// connection) before, after its first batch and after the cut-off, and checks the bounds.
fn attack(env: &TestEnv, server: Server, attacker: &Attacker, send: impl Fn(&str)) {
    send("\"before\"");
    let sent = flood_until_cut_off(attacker, || send("\"during\""));
    let peak_kib = server.peak_rss_kib();
    eprintln!("cut off after {sent} unread requests; serve peaked at {peak_kib} KiB");
    assert!(peak_kib < RSS_CEILING_KIB, "serve peaked at {peak_kib} KiB");
    send("\"after\"");
    // stop_with_stderr panics unless the server exits within its deadline.
    let (status, log) = server.stop_with_stderr();
    assert!(status.success());
    let cut_lines: Vec<_> = log
        .iter()
        .filter(|l| l.contains("unread_replies"))
        .collect();
    assert_eq!(cut_lines.len(), 1, "one log line for the cut-off: {log:?}");
    assert!(
        cut_lines[0].contains("1 connections cut off for not reading their replies"),
        "{}",
        cut_lines[0]
    );
    let lines = env.output_lines();
    for record in ["\"before\"", "\"during\"", "\"after\""] {
        assert!(lines.iter().any(|l| l == record), "{record} in {lines:?}");
    }
    let stats = env
        .zavro()
        .args(["audit", "stats", "--json"])
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let cut = stats["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "unread_replies")
        .unwrap_or_else(|| panic!("no unread_replies in {stats}"));
    assert_eq!(cut["requests"], 1, "one connection cut off: {stats}");
}

#[test]
fn a_peer_that_never_reads_is_cut_off_while_others_are_served() {
    let env = TestEnv::new();
    env.create_store();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let endpoint = server.endpoint().to_owned();
    let attacker = Attacker::connect(&endpoint, None);
    attack(&env, server, &attacker, |record| {
        env.send(&endpoint, &key, &secret, record).success();
    });
}

#[test]
fn a_key_holder_that_never_reads_is_cut_off_over_curve() {
    let env = TestEnv::new();
    env.create_store();
    let (key, secret) = env.add_key();
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let endpoint = server.endpoint().to_owned();
    let server_key = server.server_key().unwrap().to_owned();
    let client = KeyPair::for_client(&key, secret.as_bytes()).unwrap();
    let attacker = Attacker::connect(&endpoint, Some((&server_key, &client)));
    attack(&env, server, &attacker, |record| {
        env.send_curve(&endpoint, &server_key, &key, &secret, record)
            .success();
    });
}
