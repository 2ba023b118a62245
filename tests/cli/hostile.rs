//! Untrusted input against a live server: thousands of mutated requests, raw non-ZeroMQ bytes, and a flood
//! whose log lines are rate-limited while every request is still audited.

use std::{collections::HashMap, io::Write, net::TcpStream, time::Duration};

use serde_json::json;
use zavro::protocol::Reply;

use crate::common::{RawClient, TestEnv, signed_now};

/// A small deterministic generator (xorshift64*), so a failure can be replayed from the seed in its message.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of a valid request's frames: bit flips, truncation, a splice with another request, a frame
/// dropped or duplicated, a length-field byte set to 0xff.
fn mutate(rng: &mut Rng, frames: &[Vec<u8>; 3], other: &[Vec<u8>; 3]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = frames.to_vec();
    let which = rng.below(3);
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(4) {
                let frame = &mut out[which];
                if !frame.is_empty() {
                    let at = rng.below(frame.len());
                    frame[at] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let len = out[which].len();
            out[which].truncate(rng.below(len));
        }
        2 => {
            let cut = rng.below(out[which].len());
            let from = rng.below(other[which].len());
            out[which].truncate(cut);
            out[which].extend_from_slice(&other[which][from..]);
        }
        3 => {
            out.remove(which);
        }
        4 => {
            let copy = out[which].clone();
            out.insert(which, copy);
        }
        _ => {
            let frame = &mut out[2];
            if !frame.is_empty() {
                let at = rng.below(frame.len());
                frame[at] = 0xff;
            }
        }
    }
    out
}

#[test]
fn thousands_of_mutated_requests_each_get_a_reply_and_an_audit_row_and_the_server_keeps_serving() {
    const MUTATIONS: usize = 3000;
    const WAVE: usize = 200;
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let record =
        json!({"indicator": "power", "value": 5.3, "tags": ["a", {"b": [1, 2, 3]}], "n": null});
    let base = signed_now(&key, &secret, &[record.clone(), json!([1, 2.5, "x"])]).to_frames();
    let other = signed_now(&key, &secret, &[json!({"other": true})]).to_frames();

    let seed = 0x5eed_0f2a_u64;
    let mut rng = Rng(seed);
    let dealer = RawClient::dealer(server.endpoint());
    let mut codes: HashMap<String, usize> = HashMap::new();
    let mut sent = 0;
    while sent < MUTATIONS {
        // A wave at a time keeps the requests in flight far below ZeroMQ's high-water mark.
        let wave = WAVE.min(MUTATIONS - sent);
        for _ in 0..wave {
            let mut frames = vec![Vec::new()];
            frames.extend(mutate(&mut rng, &base, &other));
            dealer.send(&frames);
        }
        for _ in 0..wave {
            let reply = dealer.recv();
            assert_eq!(
                reply.len(),
                2,
                "seed {seed:#x}: an enveloped reply: {reply:?}"
            );
            let parsed = Reply::from_frame(&reply[1])
                .unwrap_or_else(|e| panic!("seed {seed:#x}: reply is not protocol JSON: {e}"));
            let code = match parsed {
                Reply::Accepted { .. } => "accepted".to_owned(),
                Reply::Rejected { code, .. } => code.as_str().to_owned(),
            };
            *codes.entry(code).or_default() += 1;
        }
        sent += wave;
    }
    assert_eq!(codes.values().sum::<usize>(), MUTATIONS, "{codes:?}");
    for expected in ["malformed", "bad_signature"] {
        assert!(
            codes.contains_key(expected),
            "no {expected} among {codes:?}"
        );
    }

    // Still serving honest clients, and every mutated request was audited in an intact chain: refusals that no
    // key vouches for as one row per peer, reason and claimed key (with a count) rather than one row each.
    env.send(server.endpoint(), &key, &secret, &record.to_string())
        .code(0);
    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success());
    assert_eq!(env.audited_requests(), MUTATIONS as u64 + 1);
    let rows = env.audit_sends().len();
    assert!(
        rows < MUTATIONS / 10,
        "{rows} rows for {MUTATIONS} requests"
    );
    env.zavro().args(["audit", "verify"]).assert().success();

    // The flood came from one peer: its rejection lines are cut to a handful.
    let rejected_lines = stderr.iter().filter(|l| l.starts_with("rejected")).count();
    assert!(
        rejected_lines <= 10,
        "{rejected_lines} rejection lines logged for one peer's flood"
    );
}

#[test]
fn raw_bytes_that_are_not_zeromq_do_not_disturb_the_server() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let address = server.endpoint().trim_start_matches("tcp://").to_owned();
    let junk: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &[0xff; 4096],
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7fNULL",
        b"",
    ];
    for bytes in junk {
        let mut stream = TcpStream::connect(&address).expect("connect to the server's port");
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The server may close the connection as soon as the greeting is wrong; a failed write is fine.
        let _ = stream.write_all(bytes);
    }
    env.send(server.endpoint(), &key, &secret, "{\"after\":\"junk\"}")
        .code(0);
    assert_eq!(env.output_lines(), ["{\"after\":\"junk\"}"]);
    assert!(server.stop().success());
}
