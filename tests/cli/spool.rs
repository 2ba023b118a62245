//! `send --spool`: store and forward through real processes. A spool survives `send` killed with SIGKILL at
//! several points (observed through the spool directory and the server's audit trail, never by sleeping), a
//! server down for the whole send, and a request whose timestamp left the server's window while it waited; every
//! record ends up stored exactly once (counted in `audit query --json` and the output file).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Stdio},
};

use assert_cmd::assert::Assert;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::{
    common::{Server, TestEnv, on_both_backends, stderr_of, wait_until, zavro_process},
    proxy::Proxy,
};

/// `n` NDJSON records `{"n": first}` … in order.
fn records(range: std::ops::RangeInclusive<u64>) -> String {
    range.map(|n| format!("{{\"n\":{n}}}\n")).collect()
}

/// The `n` of every record in the output file, in file order.
fn output_numbers(env: &TestEnv) -> Vec<u64> {
    env.output_lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("output lines are JSON");
            value["n"].as_u64().expect("each record has its n")
        })
        .collect()
}

/// Panics unless every record 1..=n was stored exactly once: in the output file, and as `accepted` rows of the
/// audit trail that are not duplicates (whose records add up to n).
fn assert_stored_once(env: &TestEnv, n: u64) {
    let mut numbers = output_numbers(env);
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=n).collect::<Vec<_>>(), "the output file");
    let stored: Vec<Value> = env
        .audit_sends()
        .into_iter()
        .filter(|row| row["status"] == "accepted" && row["reason"].is_null())
        .collect();
    let total: u64 = stored
        .iter()
        .map(|row| row["records"].as_u64().unwrap())
        .sum();
    assert_eq!(total, n, "records of stored requests in the audit trail");
    let mut payload: Vec<u64> = stored
        .iter()
        .flat_map(|row| row["payload"].as_array().unwrap().clone())
        .map(|record| record["n"].as_u64().unwrap())
        .collect();
    payload.sort_unstable();
    assert_eq!(payload, (1..=n).collect::<Vec<_>>(), "stored payloads");
    assert!(
        stored.iter().all(|row| row["request_id"].is_string()),
        "every spooled request carried its id: {stored:?}"
    );
    env.zavro().args(["audit", "verify"]).assert().success();
}

/// The spooled entries on disk (every segment, acknowledged or not) and the acknowledgement pointer.
fn spool_state(dir: &Path) -> (Vec<zavro::spool::Entry>, u64) {
    let mut entries = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|list| list.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_str().unwrap();
        if zavro::spool::segment::first_seq(name).is_some() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            entries.extend(zavro::spool::segment::scan(&bytes).entries);
        }
    }
    let acked = std::fs::read_to_string(dir.join("acked"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    (entries, acked)
}

/// Segment files left in the spool.
fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| zavro::spool::segment::first_seq(e.file_name().to_str().unwrap()).is_some())
        .count()
}

/// A `zavro send ENDPOINT --plaintext --spool DIR EXTRA…` running in the background with its stdin open.
struct Sending {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Sending {
    fn start(env: &TestEnv, endpoint: &str, key: &str, secret: &str, extra: &[&str]) -> Sending {
        let mut cmd = zavro_process();
        cmd.env("XDG_CONFIG_HOME", env.config_dir())
            .env("ZAVRO_KEY", key)
            .env("ZAVRO_SECRET", secret)
            .arg("--db")
            .arg(&env.db)
            .args(["send", endpoint, "--plaintext", "--spool"])
            .arg(spool_dir(env))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn zavro send");
        let stdin = child.stdin.take();
        Sending { child, stdin }
    }

    fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).expect("write to send");
        stdin.flush().expect("flush to send");
    }

    fn kill(mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGKILL).expect("SIGKILL send");
        self.child.wait().expect("reap send");
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spool_dir(env: &TestEnv) -> PathBuf {
    env.path("spool")
}

/// `send`'s options for a server that is down: one try per request, given up after 0.5 s, so the requests are
/// left waiting in the spool at once. (Not for a server that is up: a loaded machine may take longer to answer.)
const ONE_QUICK_TRY: [&str; 4] = ["--timeout", "0.5", "--retries", "0"];

/// `zavro send SOCKET --plaintext --spool DIR EXTRA…` as `key` with `secret`, `input` on stdin.
fn spool_send(
    env: &TestEnv,
    socket: &str,
    (key, secret): (&str, &str),
    extra: &[&str],
    input: impl Into<Vec<u8>>,
) -> Assert {
    env.zavro()
        .args(["send", socket, "--plaintext", "--spool"])
        .arg(spool_dir(env))
        .args(extra)
        .env("ZAVRO_KEY", key)
        .env("ZAVRO_SECRET", secret)
        .write_stdin(input)
        .assert()
}

/// Accepted rows that stored records (not duplicates).
fn stored_rows(env: &TestEnv) -> usize {
    env.audit_sends()
        .iter()
        .filter(|row| row["status"] == "accepted" && row["reason"].is_null())
        .count()
}

#[test]
fn a_spool_survives_send_killed_at_several_points_and_stores_every_record_once() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    let one_per_request = ["--batch", "1", "--linger", "0"];

    // 1. Killed once three requests are acknowledged: the pointer is durable, nothing is sent again.
    let mut send = Sending::start(&env, server.endpoint(), &key, &secret, &one_per_request);
    send.write(&records(1..=3));
    wait_until("3 requests acknowledged in the spool", || {
        spool_state(&spool_dir(&env)).1 == 3
    });
    send.kill();
    assert_eq!(stored_rows(&env), 3);

    // 2. Killed with requests stored by the server whose replies were lost on the way (a proxy mutes them from
    //    the first request carrying a marker on): the spool still holds them as waiting.
    let proxy = Proxy::muting_replies_after(server.endpoint(), b"mute-from-here");
    let mut send = Sending::start(&env, &proxy.endpoint, &key, &secret, &one_per_request);
    send.write("{\"n\":4,\"marker\":\"mute-from-here\"}\n");
    send.write(&records(5..=6));
    wait_until("the server to store 6 requests", || stored_rows(&env) == 6);
    send.kill();
    drop(proxy);
    let (entries, acked) = spool_state(&spool_dir(&env));
    assert_eq!(acked, 3, "nothing after the kill was acknowledged");
    let waiting: Vec<u64> = entries.iter().map(|e| e.seq).filter(|s| *s >= 3).collect();
    assert_eq!(waiting, [3, 4, 5]);

    // 3. Killed before anything of this run is sent: the server is down and the spool fills from the input.
    let dead = env.path("nobody.sock");
    let dead = format!("ipc://{}", dead.display());
    let mut send = Sending::start(
        &env,
        &dead,
        &key,
        &secret,
        &["--batch", "1", "--linger", "0", "--timeout", "60"],
    );
    send.write(&records(7..=8));
    wait_until("the older requests and 2 new ones spooled", || {
        spool_state(&spool_dir(&env)).0.last().map(|e| e.seq) == Some(7)
    });
    send.kill();

    // 4. The next send delivers what waits first, in order, then its own input: each record stored once.
    env.zavro()
        .args(["send", server.endpoint(), "--plaintext", "--spool"])
        .arg(spool_dir(&env))
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .write_stdin(records(9..=10))
        .assert()
        .success();
    server.stop();
    assert_stored_once(&env, 10);
    let duplicates = env
        .audit_sends()
        .iter()
        .filter(|row| row["reason"] == "duplicate")
        .count();
    assert_eq!(
        duplicates, 3,
        "the three stored requests whose replies were lost"
    );
    assert_eq!(
        segments(&spool_dir(&env)),
        0,
        "acknowledged segments are deleted"
    );
    // In order: the output holds the records of each run in the order they were spooled.
    let numbers = output_numbers(&env);
    let after_three: Vec<u64> = numbers.iter().copied().filter(|n| *n > 6).collect();
    assert_eq!(after_three, [7, 8, 9, 10]);
}

on_both_backends!(a_server_down_for_the_whole_send_leaves_everything_spooled_for_flush);

fn a_server_down_for_the_whole_send_leaves_everything_spooled_for_flush(env: TestEnv) {
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let send = |extra: &[&str], input: String| {
        let extra = [&["--batch", "2"], extra].concat();
        spool_send(&env, &socket, (&key, &secret), &extra, input)
    };
    let down = send(&ONE_QUICK_TRY, records(1..=7)).success();
    let said = stderr_of(&down);
    assert!(said.contains("4 requests wait in spool"), "{said}");
    assert!(said.contains("--flush"), "{said}");
    // --flush with the server still down delivers nothing: exit 5, everything still waiting.
    let still = send(&[&ONE_QUICK_TRY[..], &["--flush"]].concat(), String::new()).code(5);
    assert!(
        stderr_of(&still).contains("4 requests wait"),
        "{}",
        stderr_of(&still)
    );

    let server = Server::start(&env, &socket, &[]);
    let flushed = send(&["--flush"], String::new()).success();
    assert!(
        stderr_of(&flushed).contains("accepted 7 records"),
        "{}",
        stderr_of(&flushed)
    );
    server.stop();
    assert_stored_once(&env, 7);
    assert_eq!(
        output_numbers(&env),
        (1..=7).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(segments(&spool_dir(&env)), 0);
}

#[test]
fn empty_or_bad_input_still_delivers_what_waits_in_the_spool_then_says_the_input_is_bad() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let send = |extra: &[&str], input: &str| {
        let extra = [&["--batch", "2"], extra].concat();
        spool_send(&env, &socket, (&key, &secret), &extra, input)
    };
    // Spooled while the server is down.
    send(&ONE_QUICK_TRY, &records(1..=3)).success();
    let server = Server::start(&env, &socket, &[]);

    let empty = send(&[], "").code(3);
    let said = stderr_of(&empty);
    assert!(said.contains("accepted 3 records"), "{said}");
    assert!(said.contains("0 requests wait"), "{said}");
    assert_eq!(output_numbers(&env), [1, 2, 3]);

    // Input that is not JSON, with more waiting: the same.
    server.stop();
    send(&ONE_QUICK_TRY, &records(4..=5)).success();
    let server = Server::start(&env, &socket, &[]);
    let bad = send(&[], "not json\n").code(3);
    assert!(
        stderr_of(&bad).contains("accepted 2 records"),
        "{}",
        stderr_of(&bad)
    );
    // And stdin that is not an Avro file, with --format avro.
    server.stop();
    send(&ONE_QUICK_TRY, &records(6..=7)).success();
    let server = Server::start(&env, &socket, &[]);
    let not_avro = send(&["--format", "avro"], "not avro").code(3);
    assert!(
        stderr_of(&not_avro).contains("accepted 2 records"),
        "{}",
        stderr_of(&not_avro)
    );
    // With nothing waiting, bad input stops before anything is sent, as without a spool.
    let alone = send(&[], "").code(3);
    assert!(
        !stderr_of(&alone).contains("accepted"),
        "{}",
        stderr_of(&alone)
    );
    server.stop();
    assert_stored_once(&env, 7);
    assert_eq!(output_numbers(&env), [1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn a_request_whose_timestamp_left_the_window_is_signed_again_with_its_id_and_stored_once() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let send =
        |extra: &[&str], input: String| spool_send(&env, &socket, (&key, &secret), extra, input);
    send(
        &[&ONE_QUICK_TRY[..], &["--batch", "2"]].concat(),
        records(1..=4),
    )
    .success();
    let (entries, _) = spool_state(&spool_dir(&env));
    let spooled: Vec<(i64, String)> = entries
        .iter()
        .map(|e| {
            (
                e.request.envelope.timestamp,
                e.request.envelope.id.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(spooled.len(), 2);
    // The server allows 2 s of skew: once the clock is 3 s past the newest timestamp, both are stale.
    let newest = spooled.iter().map(|(t, _)| *t).max().unwrap();
    wait_until("the spooled timestamps to leave a 2 s window", || {
        zavro::timestamp::now_seconds() > newest + 3
    });
    let server = Server::start(&env, &socket, &["--max-skew", "2"]);
    send(&["--flush"], String::new()).success();
    server.stop();

    assert_stored_once(&env, 4);
    let sends = env.audit_sends();
    let refused: Vec<&Value> = sends.iter().filter(|r| r["status"] == "rejected").collect();
    // At least once each (a loaded machine may take a re-signed request past 2 s too).
    assert!(refused.len() >= 2, "each was refused as stale: {sends:?}");
    assert!(refused.iter().all(|r| r["reason"] == "clock_skew"));
    let ids: Vec<String> = sends
        .iter()
        .filter(|r| r["status"] == "accepted")
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    let spooled_ids: Vec<String> = spooled.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        ids, spooled_ids,
        "stored under the ids they were spooled with"
    );
}

#[test]
fn a_second_sender_on_one_spool_is_refused_in_one_line() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    let mut first = Sending::start(&env, server.endpoint(), &key, &secret, &["--linger", "0"]);
    first.write(&records(1..=1));
    // Spooled, and maybe already acknowledged (then its segment is gone): the first sender is under way.
    wait_until("the first sender to spool a request", || {
        let (entries, acked) = spool_state(&spool_dir(&env));
        !entries.is_empty() || acked > 0
    });
    let second = env
        .zavro()
        .args(["send", server.endpoint(), "--plaintext", "--spool"])
        .arg(spool_dir(&env))
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .write_stdin(records(2..=2))
        .assert()
        .code(1);
    let said = stderr_of(&second);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("is in use by another process"), "{said}");
    first.kill();
    server.stop();
}

#[test]
fn a_full_spool_stops_the_input_says_so_and_exits_10_with_everything_read_spooled() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let send = |extra: &[&str], input: String| {
        let extra = [&["--spool-max-size", "4K"], extra].concat();
        spool_send(&env, &socket, (&key, &secret), &extra, input)
    };
    let full = send(
        &[&ONE_QUICK_TRY[..], &["--batch", "1"]].concat(),
        records(1..=100),
    )
    .code(10);
    let said = stderr_of(&full);
    let spooled = spool_state(&spool_dir(&env)).0.len() as u64;
    assert!(spooled > 0 && spooled < 100, "{spooled}");
    assert!(
        said.contains(&format!("stopped reading input after record {spooled} ")),
        "{said}"
    );
    assert!(said.contains("--spool-max-size"), "{said}");

    let server = Server::start(&env, &socket, &[]);
    send(&["--flush"], String::new()).success();
    server.stop();
    assert_stored_once(&env, spooled);
}

/// A reader schema of readings `{"n": long}`, as the server runs with it.
const READING: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"n","type":"long"}]}"#;

/// The schema an older producer wrote its readings with: `n` as a string, which does not resolve against
/// [`READING`] (`schema_mismatch`).
const OLD_READING: &str =
    r#"{"type":"record","name":"Reading","fields":[{"name":"n","type":"string"}]}"#;

/// Writes [`READING`] and [`OLD_READING`] into `env`'s directory; their paths.
fn reading_schemas(env: &TestEnv) -> (String, String) {
    let (reading, old) = (env.path("reading.avsc"), env.path("old.avsc"));
    std::fs::write(&reading, READING).unwrap();
    std::fs::write(&old, OLD_READING).unwrap();
    (
        reading.to_str().unwrap().to_owned(),
        old.to_str().unwrap().to_owned(),
    )
}

/// Spools into `env`'s spool with `send`, with the server down: a request of the old producer
/// (`{"n":"one"}`, [`OLD_READING`]) first, then records 2 and 3 of the current one ([`READING`]), one per
/// request; returns the entries spooled.
fn spool_an_old_reading_then_current_ones(
    env: &TestEnv,
    send: impl Fn(&[&str], &str) -> Assert,
    (reading, old): (&str, &str),
) -> Vec<zavro::spool::Entry> {
    send(
        &[&ONE_QUICK_TRY[..], &["--schema", old]].concat(),
        "{\"n\":\"one\"}\n",
    )
    .success();
    send(
        &[&ONE_QUICK_TRY[..], &["--schema", reading]].concat(),
        &records(2..=3),
    )
    .success();
    let (spooled, acked) = spool_state(&spool_dir(env));
    assert_eq!((spooled.len(), acked), (3, 0));
    spooled
}

#[test]
fn a_refusal_whose_signature_was_taken_off_on_the_path_moves_nothing_aside() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let (reading, old) = reading_schemas(&env);
    let server = Server::start(&env, "tcp://127.0.0.1:*", &["--schema", &reading]);
    // Someone on the path blanks each reply's signature (same length, JSON white space): the refusal could as
    // well have been made up, so it must not push the request out of line.
    let strip: crate::proxy::Rewrite = std::sync::Arc::new(|bytes: &mut [u8]| {
        let field = b",\"signature\":\"";
        if let Some(at) = bytes.windows(field.len()).position(|w| w == field) {
            let end = bytes[at + field.len()..]
                .iter()
                .position(|&b| b == b'"')
                .map_or(bytes.len() - 1, |i| at + field.len() + i);
            bytes[at..=end].fill(b' ');
        }
    });
    let proxy = Proxy::rewriting(server.endpoint(), strip);
    let sent = spool_send(
        &env,
        &proxy.endpoint,
        (&key, &secret),
        &["--batch", "1", "--schema", &old],
        "{\"n\":\"one\"}\n",
    )
    .code(4);
    assert!(
        stderr_of(&sent).contains("schema_mismatch"),
        "{}",
        stderr_of(&sent)
    );
    server.stop();
    let (waiting, acked) = spool_state(&spool_dir(&env));
    assert_eq!((waiting.len(), acked), (1, 0), "still first in line");
    assert!(!zavro::spool::refused::dir(&spool_dir(&env)).exists());
}

#[test]
fn a_request_refused_for_good_is_kept_aside_the_rest_delivered_and_it_is_never_sent_again() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let (reading, old) = reading_schemas(&env);
    let (reading, old) = (reading.as_str(), old.as_str());
    let send = |extra: &[&str], input: &str| {
        let extra = [&["--batch", "1"], extra].concat();
        spool_send(&env, &socket, (&key, &secret), &extra, input)
    };
    let spooled = spool_an_old_reading_then_current_ones(&env, send, (reading, old));

    let server = Server::start(&env, &socket, &["--schema", reading]);
    let flushed = send(&["--flush"], "").code(12);
    let said = stderr_of(&flushed);
    let kept_path = zavro::spool::refused::path(&spool_dir(&env), 0);
    let line = said
        .lines()
        .find(|l| l.contains("refused for good: schema_mismatch"))
        .unwrap_or_else(|| panic!("one line for the refused request: {said}"));
    assert!(
        line.starts_with("zavro: spooled request 0 (1 record) refused for good: schema_mismatch: ")
            && line.contains(&kept_path.display().to_string()),
        "{line}"
    );
    assert!(said.contains("accepted 2 records"), "{said}");
    assert!(said.contains("--requeue-refused"), "{said}");
    assert_eq!(output_numbers(&env), [2, 3], "the requests behind it");
    let (_, acked) = spool_state(&spool_dir(&env));
    assert_eq!(acked, 3, "the refused request no longer blocks the spool");
    assert_eq!(segments(&spool_dir(&env)), 0);

    // The kept copy: the request exactly as spooled (its id with it), the reply, the time.
    let kept = zavro::spool::refused::read(&spool_dir(&env), 0)
        .unwrap()
        .expect("the refused request is kept");
    assert_eq!(kept.request().unwrap(), spooled[0].request, "as spooled");
    assert_eq!(
        (kept.code, kept.records, kept.key.as_str()),
        (zavro::protocol::RejectCode::SchemaMismatch, 1, key.as_str())
    );
    assert_eq!(kept.request_id, spooled[0].request.envelope.id);
    assert!(zavro::timestamp::parse_rfc3339(&kept.refused_at).is_ok());
    let audited: Vec<Value> = env
        .audit_sends()
        .into_iter()
        .filter(|row| row["status"] == "rejected")
        .collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["reason"], "schema_mismatch");
    assert_eq!(audited[0]["message"], kept.message.as_str());

    // The next run does not send it again: only its own input goes, and it exits 0.
    send(&["--schema", reading], &records(4..=4)).success();
    assert_eq!(output_numbers(&env), [2, 3, 4]);
    let rejected = env
        .audit_sends()
        .iter()
        .filter(|row| row["status"] == "rejected")
        .count();
    assert_eq!(rejected, 1, "the kept request was not sent again");
    server.stop();

    // Once the cause is fixed (a server that takes the old schema too), it goes back in line with its id.
    let server = Server::start(&env, &socket, &[]);
    let requeued = send(&["--requeue-refused", "--flush"], "").success();
    server.stop();
    let said = stderr_of(&requeued);
    assert!(said.contains("put 1 kept request back in line"), "{said}");
    assert!(
        zavro::spool::refused::read_all(&spool_dir(&env))
            .unwrap()
            .is_empty()
    );
    let last = env.output_lines().last().cloned().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&last).unwrap(),
        serde_json::json!({"n": "one"})
    );
    let stored_under: Vec<Value> = env
        .audit_sends()
        .into_iter()
        .filter(|row| {
            row["status"] == "accepted" && row["request_id"] == kept.request_id.as_deref().unwrap()
        })
        .collect();
    assert_eq!(
        stored_under.len(),
        1,
        "stored once, under the id it was spooled with"
    );
    env.zavro().args(["audit", "verify"]).assert().success();
}

#[test]
fn a_refusal_of_the_key_moves_nothing_aside_and_the_spool_is_delivered_once_the_cause_is_fixed() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let send = |extra: &[&str], input: &str| {
        let extra = [&["--batch", "1"], extra].concat();
        spool_send(&env, &socket, (&key, &secret), &extra, input)
    };
    let nothing_moved = |waiting: usize| {
        assert!(
            !zavro::spool::refused::dir(&spool_dir(&env)).exists(),
            "nothing kept aside"
        );
        let (entries, acked) = spool_state(&spool_dir(&env));
        let still: Vec<u64> = entries
            .iter()
            .map(|e| e.seq)
            .filter(|s| *s >= acked)
            .collect();
        assert_eq!(still.len(), waiting, "{still:?}");
    };
    send(&ONE_QUICK_TRY, &records(1..=3)).success();

    // The wrong deployment answers (a server whose store does not know the key): every request would be
    // refused alike, so nothing is moved aside and `send` stops, the spool waiting in order; again next time.
    let elsewhere = TestEnv::new();
    elsewhere.add_key();
    let wrong = Server::start(&elsewhere, &socket, &[]);
    for _ in 0..2 {
        let refused = send(&["--flush"], "").code(4);
        assert!(
            stderr_of(&refused).contains("unknown_key"),
            "{}",
            stderr_of(&refused)
        );
        nothing_moved(3);
    }
    wrong.stop();
    // Fixed: the right server delivers all of it, in order.
    let right = Server::start(&env, &socket, &[]);
    send(&["--flush"], "").success();
    right.stop();
    assert_stored_once(&env, 3);
    assert_eq!(output_numbers(&env), [1, 2, 3]);

    // A revoked key: the same, every request stays in line.
    send(&ONE_QUICK_TRY, &records(4..=5)).success();
    env.zavro()
        .args(["keys", "revoke", &key])
        .assert()
        .success();
    let right = Server::start(&env, &socket, &[]);
    let revoked = send(&["--flush"], "").code(4);
    right.stop();
    assert!(
        stderr_of(&revoked).contains("revoked_key"),
        "{}",
        stderr_of(&revoked)
    );
    nothing_moved(2);
}

#[test]
fn a_run_that_kept_a_request_aside_and_then_stops_on_a_key_refusal_still_says_what_it_kept() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let (other, other_secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let (reading, old) = reading_schemas(&env);
    // First in line an old reading (kept aside for its content), then a request of a key revoked meanwhile.
    spool_send(
        &env,
        &socket,
        (&key, &secret),
        &[&ONE_QUICK_TRY[..], &["--batch", "1", "--schema", &old]].concat(),
        "{\"n\":\"one\"}\n",
    )
    .success();
    spool_send(
        &env,
        &socket,
        (&other, &other_secret),
        &[&ONE_QUICK_TRY[..], &["--batch", "1", "--schema", &reading]].concat(),
        records(2..=2),
    )
    .success();
    env.zavro()
        .args(["keys", "revoke", &other])
        .assert()
        .success();
    let server = Server::start(&env, &socket, &["--schema", &reading]);
    let flushed = spool_send(
        &env,
        &socket,
        (&key, &secret),
        // One in flight: the first request is answered (and kept aside) before the second goes.
        &["--batch", "1", "--window", "1", "--flush"],
        "",
    )
    .code(4);
    server.stop();
    let said = stderr_of(&flushed);
    assert!(said.contains("revoked_key"), "{said}");
    assert!(
        said.contains("1 spooled request refused for good by the server was kept in")
            && said.contains("--requeue-refused"),
        "no later run would say it: {said}"
    );
}

/// Spools an old reading then current ones ([`spool_an_old_reading_then_current_ones`]), delivers them to a
/// server taking only the current schema (which keeps the old one aside), then puts the spool back as a run
/// that died after keeping it aside, before its pointer moved, leaves it: the entries and pointer as before,
/// the kept file as after. Returns the server, still running, and the spool's directory.
fn a_spool_left_by_a_run_that_died_after_keeping_a_request(
    env: &TestEnv,
    socket: &str,
    send: &impl Fn(&[&str], &str) -> Assert,
) -> (Server, PathBuf) {
    let (reading, old) = reading_schemas(env);
    spool_an_old_reading_then_current_ones(env, send, (&reading, &old));
    let dir = spool_dir(env);
    let before = env.path("spool-before");
    std::fs::create_dir(&before).unwrap();
    for file in std::fs::read_dir(&dir).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), before.join(file.file_name())).unwrap();
    }
    let server = Server::start(env, socket, &["--schema", &reading]);
    send(&["--flush"], "").code(12);
    let kept = zavro::spool::refused::dir(&dir);
    std::fs::rename(&kept, before.join(zavro::spool::refused::DIR)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&before, &dir).unwrap();
    assert_eq!(spool_state(&dir).1, 0, "the pointer as before the run");
    (server, dir)
}

#[test]
fn requeueing_a_request_kept_by_a_run_that_died_before_its_pointer_moved_sends_it_once() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let send = |extra: &[&str], input: &str| {
        let extra = [&["--batch", "1"], extra].concat();
        spool_send(&env, &socket, (&key, &secret), &extra, input)
    };
    let (server, dir) =
        a_spool_left_by_a_run_that_died_after_keeping_a_request(&env, &socket, &send);
    // The cause is not fixed: the request is refused again, once, and kept again, once.
    let requeued = send(&["--requeue-refused", "--flush"], "").code(12);
    server.stop();
    let rejected = env
        .audit_sends()
        .iter()
        .filter(|r| r["status"] == "rejected")
        .count();
    assert_eq!(
        rejected,
        2,
        "sent once more, not twice: {}",
        stderr_of(&requeued)
    );
    let kept = zavro::spool::refused::read_all(&dir).unwrap();
    assert_eq!(kept.len(), 1, "one kept copy: {kept:?}");
    assert_eq!(spool_state(&dir).1, 3);
}

#[test]
fn a_request_kept_aside_by_a_run_that_died_before_its_pointer_moved_is_not_sent_again() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("server.sock").display());
    let send = |extra: &[&str], input: &str| {
        let extra = [&["--batch", "1"], extra].concat();
        spool_send(&env, &socket, (&key, &secret), &extra, input)
    };
    let (server, dir) =
        a_spool_left_by_a_run_that_died_after_keeping_a_request(&env, &socket, &send);

    let again = send(&["--flush"], "").code(12);
    server.stop();
    let said = stderr_of(&again);
    assert!(
        said.contains("spooled request 0 was refused for good and kept in")
            && said.contains("already; not sent again"),
        "{said}"
    );
    let sends = env.audit_sends();
    let rejected = sends.iter().filter(|r| r["status"] == "rejected").count();
    assert_eq!(
        rejected, 1,
        "the kept request was not sent again: {sends:?}"
    );
    let duplicates = sends.iter().filter(|r| r["reason"] == "duplicate").count();
    assert_eq!(
        duplicates, 2,
        "the two behind it were sent again: {sends:?}"
    );
    assert_eq!(output_numbers(&env), [2, 3]);
    assert_eq!(spool_state(&dir).1, 3);
    assert!(zavro::spool::refused::read(&dir, 0).unwrap().is_some());
}
