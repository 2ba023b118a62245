//! Crash safety: a server killed with SIGKILL in the middle of several streams, restarted on the same store,
//! loses no acknowledged record and stores none twice.

use std::{collections::HashMap, process::Stdio, thread};

use nix::sys::signal::{Signal, kill};

use crate::common::zavro_process;
use crate::common::{Server, TestEnv, wait_until};

#[test]
fn sigkill_mid_stream_then_restart_keeps_every_acknowledged_record_exactly_once() {
    const SENDERS: usize = 4;
    const RECORDS: usize = 300;
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let endpoint = format!("ipc://{}", env.path("zavro.sock").display());
    let server = Server::start(&env, &endpoint, &[]);

    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let input: String = (0..RECORDS)
                .map(|i| format!("{{\"sender\":{sender},\"i\":{i}}}\n"))
                .collect();
            let mut command = zavro_process();
            // Small batches and patient retries: the stream outlives the crash and the restart.
            let mut child = command
                .args([
                    "send",
                    &endpoint,
                    "--plaintext",
                    "--batch",
                    "5",
                    "--timeout",
                    "1",
                    "--retries",
                    "20",
                ])
                .env("ZAVRO_KEY", &key)
                .env("ZAVRO_SECRET", &secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn zavro send");
            let mut stdin = child.stdin.take().unwrap();
            thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(input.as_bytes());
            });
            child
        })
        .collect();

    // Kill the server once the streams are well under way, then bring it back on the same store.
    wait_until("some requests to be committed", || {
        env.audit_sends().len() >= 20
    });
    kill(server.pid(), Signal::SIGKILL).expect("SIGKILL the server");
    drop(server);
    let restarted = Server::start(&env, &endpoint, &[]);

    let mut succeeded = Vec::new();
    for (sender, mut child) in senders.into_iter().enumerate() {
        let status = child.wait().expect("wait for zavro send");
        if status.success() {
            succeeded.push(sender);
        }
    }
    assert!(!succeeded.is_empty(), "no sender survived the restart");
    assert!(restarted.stop().success());

    let mut stored: HashMap<(u64, u64), usize> = HashMap::new();
    for row in env.audit_sends() {
        for record in row["payload"].as_array().into_iter().flatten() {
            let id = (
                record["sender"].as_u64().unwrap(),
                record["i"].as_u64().unwrap(),
            );
            *stored.entry(id).or_default() += 1;
        }
    }
    if let Some((id, n)) = stored.iter().find(|(_, n)| **n > 1) {
        panic!("record {id:?} stored {n} times");
    }
    for sender in succeeded {
        for i in 0..RECORDS {
            assert_eq!(
                stored.get(&(sender as u64, i as u64)),
                Some(&1),
                "sender {sender} exited 0 but record {i} is not stored exactly once"
            );
        }
    }
    env.zavro().args(["audit", "verify"]).assert().success();
}
