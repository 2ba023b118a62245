//! The main story: records sent with `zavro send` reach the output file and the audit trail exactly, refusals
//! are audited with their codes, and a server stopped by a signal keeps everything it acknowledged.

use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, ChildStdin, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::sys::signal::{Signal, kill};
use serde_json::{Value, json};
use zavro::protocol::Reply;

use crate::common::zavro_process;
use crate::common::{
    DEADLINE, RawClient, Server, TestEnv, compact, signed_now, stderr_of, wait_until,
};

#[test]
fn valid_message_is_accepted_then_wrong_secret_and_unknown_key_are_rejected_and_audited() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint().to_owned();
    let first = json!({"indicator": "power", "timestamp": 1_700_000_000, "value": 5.3});
    let second = json!({"indicator": "power", "timestamp": 1_700_000_060, "value": 5.4});

    let ok = env.send(&ep, &key, &secret, &first.to_string()).code(0);
    assert!(
        stderr_of(&ok).contains("accepted 1 record"),
        "{}",
        stderr_of(&ok)
    );
    assert_eq!(env.output_lines(), [compact(&first)]);

    let wrong = env.send(&ep, &key, "not-the-secret-at-all", &second.to_string());
    let wrong = wrong.code(4);
    assert!(
        stderr_of(&wrong).contains("bad_signature"),
        "{}",
        stderr_of(&wrong)
    );

    let unknown = env.send(&ep, "ZK0000000000000000", &secret, &second.to_string());
    let unknown = unknown.code(4);
    assert!(
        stderr_of(&unknown).contains("unknown_key"),
        "{}",
        stderr_of(&unknown)
    );

    env.send(&ep, &key, &secret, &second.to_string()).code(0);
    assert_eq!(env.output_lines(), [compact(&first), compact(&second)]);

    let rows = env.audit();
    let summary: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["reason"].clone(),
                r["key"].as_str().unwrap(),
                r["peer"].as_str().unwrap(),
                r["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("key_add", "accepted", Value::Null, key.as_str(), "local", 0),
            (
                "send",
                "accepted",
                Value::Null,
                key.as_str(),
                "127.0.0.1",
                1
            ),
            (
                "send",
                "rejected",
                json!("bad_signature"),
                key.as_str(),
                "127.0.0.1",
                0
            ),
            (
                "send",
                "rejected",
                json!("unknown_key"),
                "ZK0000000000000000",
                "127.0.0.1",
                0
            ),
            (
                "send",
                "accepted",
                Value::Null,
                key.as_str(),
                "127.0.0.1",
                1
            ),
        ]
    );
    assert_eq!(rows[1]["payload"], json!([first]));
    assert_eq!(rows[4]["payload"], json!([second]));
    assert!(
        rows[2].get("payload").is_none_or(Value::is_null),
        "{}",
        rows[2]
    );
    assert!(rows[2]["message"].as_str().is_some_and(|m| !m.is_empty()));
    let ids: Vec<_> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // The server logs a request just after answering it, and the test reads its stderr on another thread.
    let count = |prefix: &str| {
        server
            .stderr_lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    };
    wait_until("two accepted and two rejected log lines", || {
        count("accepted #") == 2 && count("rejected #") == 2
    });
    let stderr = server.stderr_lines();
    let port = stderr[0]
        .strip_prefix("listening on tcp://127.0.0.1:")
        .and_then(|rest| rest.split_once(' '))
        .map(|(port, _)| port)
        .unwrap_or_else(|| panic!("first line: {stderr:?}"));
    assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{stderr:?}");
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.starts_with("listening on"))
            .count(),
        1
    );
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.starts_with("accepted #"))
            .count(),
        2,
        "{stderr:?}"
    );
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.starts_with("rejected #"))
            .count(),
        2,
        "{stderr:?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with(&format!("rejected #{} bad_signature", ids[2]))),
        "{stderr:?}"
    );
}

#[test]
fn example_json_round_trips_exactly_into_the_output_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("example.json");
    if !example.exists() {
        std::fs::write(
            &example,
            "{\"indicator\": \"power\", \"timestamp\": 1700000000, \"value\": 5.3}\n",
        )
        .expect("create example.json");
    }
    let text = std::fs::read_to_string(&example).expect("read example.json");
    let record: Value = serde_json::from_str(&text).expect("example.json is one JSON value");

    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    env.zavro()
        .args(["send", server.endpoint(), "--plaintext"])
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .pipe_stdin(&example)
        .expect("example.json is readable")
        .assert()
        .code(0);

    assert_eq!(env.output_lines(), [compact(&record)]);
    let sends = env.audit_sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["payload"], json!([record]));
}

/// Records of every JSON shape, including the integer and float edges Avro must carry exactly.
fn varied_records() -> Vec<Value> {
    let mut records = vec![
        json!({"indicator": "power", "timestamp": 1_700_000_000, "value": 5.3}),
        json!({"z": 1, "a": 2, "m": {"y": [], "b": {}}}),
        json!({"max": i64::MAX, "min": i64::MIN, "zero": 0, "neg": -42}),
        json!({"floats": [0.1, -2.5e-300, 1.7976931348623157e308, 1e21, 3.0]}),
        json!({"text": "ünïcödé ✓ \"quoted\" \\ back\nslash\ttab", "empty": ""}),
        json!({"null": null, "t": true, "f": false}),
        json!([1, "two", [3, [4, {"five": 5}]], null]),
        json!("a bare string record"),
        json!(12345),
        json!(null),
        json!(false),
        json!({"deep": {"a": {"b": {"c": {"d": {"e": [[[["bottom"]]]]}}}}}}),
    ];
    for i in 0..38 {
        records.push(json!({"seq": i, "label": format!("record-{i}"), "ok": i % 2 == 0}));
    }
    records
}

#[test]
fn ndjson_of_many_varied_records_arrives_in_order_and_unchanged() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let records = varied_records();
    let ndjson: String = records
        .iter()
        .map(|r| format!("{}\n", compact(r)))
        .collect();

    let sent = env.send(server.endpoint(), &key, &secret, &ndjson).code(0);
    assert!(stderr_of(&sent).contains(&format!("accepted {} records", records.len())));

    let expected: Vec<String> = records.iter().map(compact).collect();
    assert_eq!(env.output_lines(), expected);
    let sends = env.audit_sends();
    assert_eq!(
        sends.len(),
        1,
        "the default batch holds all {} records",
        records.len()
    );
    assert_eq!(sends[0]["records"], records.len());
    assert_eq!(sends[0]["payload"], Value::Array(records));
}

#[test]
fn transcoded_records_keep_key_order_repeated_keys_number_spelling_and_order_across_many_requests()
{
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let wide: String = (0..70)
        .map(|i| format!("\"k{i}\": {i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let long_array: String = (0..100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // Written by hand: a repeated key (the tree keeps the first place and the last value), numbers spelled every
    // way (an integer stays an integer, `1.0` a double), serde_json's number token as a key, an object of more
    // than 64 keys, an array of more than 63 items, records spread over lines and sharing one.
    let special = format!(
        "{{\"b\": 1, \"a\": [1, 1.0, -0, -0.0, 1E2, 5e-324], \"b\": {{\"x\": true}}}}\n\
         {{\"$serde_json::private::Number\": \"12\"}} {{\"wide\": {{{wide}}}}}\n[{long_array}]\n{{\"split\":\n \"lines\"}}\n"
    );
    let many: String = (0..5000)
        .map(|n| format!("{{\"n\": {n}, \"pad\": \"{}\"}}\n", "y".repeat(n % 50)))
        .collect();
    let sent = env
        .send_with(
            server.endpoint(),
            &key,
            &secret,
            format!("{special}{many}"),
            &["--batch", "333"],
        )
        .code(0);
    assert!(
        stderr_of(&sent).contains("accepted 5005 records"),
        "{}",
        stderr_of(&sent)
    );

    let lines = env.output_lines();
    assert_eq!(lines.len(), 5005);
    assert_eq!(
        lines[0],
        r#"{"b":{"x":true},"a":[1,1.0,0,-0.0,100.0,5e-324]}"#
    );
    assert_eq!(lines[1], "12");
    let wide_out: Value = serde_json::from_str(&lines[2]).unwrap();
    let keys: Vec<&String> = wide_out["wide"].as_object().unwrap().keys().collect();
    let expected_keys: Vec<String> = (0..70).map(|i| format!("k{i}")).collect();
    assert_eq!(
        keys,
        expected_keys.iter().collect::<Vec<_>>(),
        "keys keep their order"
    );
    assert_eq!(lines[3], format!("[{long_array}]"));
    assert_eq!(lines[4], r#"{"split":"lines"}"#);
    for (n, line) in lines[5..].iter().enumerate() {
        assert_eq!(
            line,
            &format!("{{\"n\":{n},\"pad\":\"{}\"}}", "y".repeat(n % 50)),
            "record {} in its place",
            n + 6
        );
    }
}

#[test]
fn records_too_big_for_one_request_are_split_and_all_arrive_in_order() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    // Three records of about 700 KB: more than one request may carry (1 MiB), so send must split them.
    let records: Vec<Value> = (0..3)
        .map(|i| json!({"part": i, "filler": format!("{i}").repeat(700_000)}))
        .collect();
    let ndjson: String = records
        .iter()
        .map(|r| format!("{}\n", compact(r)))
        .collect();

    env.send(server.endpoint(), &key, &secret, &ndjson).code(0);

    let expected: Vec<String> = records.iter().map(compact).collect();
    assert!(
        env.output_lines() == expected,
        "the output differs from the input"
    );
    let sends = env.audit_sends();
    assert!(sends.len() >= 2, "{} requests", sends.len());
    assert!(sends.iter().all(|r| r["status"] == "accepted"));
    let counted: u64 = sends.iter().map(|r| r["records"].as_u64().unwrap()).sum();
    assert_eq!(counted, 3);
}

#[test]
fn send_over_a_dead_and_a_live_endpoint_fails_over_and_stores_each_record_once() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let records: Vec<Value> = (1..=6).map(|n| json!({"n": n})).collect();
    let ndjson: String = records
        .iter()
        .map(|r| format!("{}\n", compact(r)))
        .collect();

    let out = env
        .zavro()
        .args([
            "send",
            &dead,
            server.endpoint(),
            "--plaintext",
            "--batch",
            "1",
            "--timeout",
            "1",
        ])
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .write_stdin(ndjson)
        .assert()
        .code(0);
    assert!(
        stderr_of(&out).contains("accepted 6 records"),
        "{}",
        stderr_of(&out)
    );

    // Requests moved from the dead endpoint arrive later, so only the set of records is fixed.
    let mut lines = env.output_lines();
    lines.sort();
    let mut expected: Vec<String> = records.iter().map(compact).collect();
    expected.sort();
    assert_eq!(lines, expected);
    let stored: Vec<Value> = env
        .audit_sends()
        .into_iter()
        .filter(|r| r["status"] == "accepted" && r["reason"].is_null())
        .collect();
    assert_eq!(stored.len(), 6, "{stored:?}");
}

#[test]
fn a_single_top_level_array_is_a_batch_of_its_elements() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let records = [json!({"a": 1}), json!([2, 3]), json!("four")];

    env.send(
        server.endpoint(),
        &key,
        &secret,
        &json!(records).to_string(),
    )
    .code(0);

    let expected: Vec<String> = records.iter().map(compact).collect();
    assert_eq!(env.output_lines(), expected);
    assert_eq!(env.audit_sends()[0]["records"], 3);
}

#[test]
fn batch_of_two_sends_five_records_as_three_accepted_requests_in_order() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let records: Vec<Value> = (1..=5).map(|i| json!({"n": i, "sq": i * i})).collect();
    let ndjson: String = records
        .iter()
        .map(|r| format!("{}\n", compact(r)))
        .collect();

    env.send_with(server.endpoint(), &key, &secret, &ndjson, &["--batch", "2"])
        .code(0);

    let expected: Vec<String> = records.iter().map(compact).collect();
    assert_eq!(env.output_lines(), expected);
    let sends = env.audit_sends();
    let shape: Vec<_> = sends
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap(),
                r["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shape, [("accepted", 2), ("accepted", 2), ("accepted", 1)]);
    assert_eq!(sends[0]["payload"], json!(records[0..2]));
    assert_eq!(sends[1]["payload"], json!(records[2..4]));
    assert_eq!(sends[2]["payload"], json!(records[4..5]));
}

/// `zavro send ENDPOINT EXTRA…` in the background, its stdin a pipe the test writes to and keeps open.
fn spawn_send(
    env: &TestEnv,
    endpoint: &str,
    key: &str,
    secret: &str,
    extra: &[&str],
) -> (Child, ChildStdin) {
    let mut child = zavro_process()
        .env("XDG_CONFIG_HOME", env.config_dir())
        .arg("--db")
        .arg(&env.db)
        .args(["send", endpoint, "--plaintext"])
        .args(extra)
        .env("ZAVRO_KEY", key)
        .env("ZAVRO_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zavro send");
    let stdin = child.stdin.take().expect("piped stdin");
    (child, stdin)
}

/// Waits (bounded) for `send` to exit; its status and stderr. Kills it and fails when it does not exit in time.
fn exit_of(mut send: Child) -> (ExitStatus, String) {
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = send.try_wait().expect("wait for zavro send") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = send.kill();
            panic!("zavro send did not exit within {DEADLINE:?} of the end of its input");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    send.stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stderr)
}

/// Writes `line` to `send`'s stdin and waits until the server's output is exactly `expected`. Fails if `send`
/// exits meanwhile: its stdin is still open, so only the linger time can have sent the records.
fn write_and_wait_for(
    env: &TestEnv,
    send: &mut Child,
    stdin: &mut ChildStdin,
    line: &str,
    expected: &[String],
) {
    writeln!(stdin, "{line}").expect("write to zavro send");
    stdin.flush().expect("flush zavro send's stdin");
    wait_until(
        &format!("{expected:?} in the server's output while send's stdin is open"),
        || {
            if let Some(status) = send.try_wait().expect("poll zavro send") {
                panic!("zavro send exited ({status}) with its stdin still open");
            }
            env.output_lines() == expected
        },
    );
}

#[test]
fn a_slow_stream_is_delivered_record_by_record_while_stdin_stays_open() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let (mut send, mut stdin) = spawn_send(&env, server.endpoint(), &key, &secret, &[]);
    let records: Vec<Value> = (1..=3).map(|n| json!({"slow": n})).collect();

    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            // A quiet log under `tail -F`: one record a second, far from the 1,000 that fill a request.
            thread::sleep(Duration::from_secs(1));
        }
        let expected: Vec<String> = records[..=i].iter().map(compact).collect();
        write_and_wait_for(&env, &mut send, &mut stdin, &compact(record), &expected);
    }
    drop(stdin);

    let (status, stderr) = exit_of(send);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("accepted 3 records in 3 requests"),
        "each record went on its own, before the next was written: {stderr}"
    );
    let payloads: Vec<Value> = env
        .audit_sends()
        .iter()
        .map(|row| row["payload"].clone())
        .collect();
    assert_eq!(
        payloads,
        [
            json!([records[0]]),
            json!([records[1]]),
            json!([records[2]])
        ]
    );
}

#[test]
fn bad_input_after_a_lingering_request_exits_3_keeping_what_was_sent() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let (mut send, mut stdin) = spawn_send(&env, server.endpoint(), &key, &secret, &[]);
    let first = ["{\"first\":1}".to_owned()];
    write_and_wait_for(&env, &mut send, &mut stdin, &first[0], &first);
    // The bad line comes right behind the second record, well within the linger time.
    writeln!(stdin, "{{\"second\":2}}\nnot json").expect("write to zavro send");
    drop(stdin);

    let (status, stderr) = exit_of(send);
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert!(
        stderr.contains("the 1 records before the bad input"),
        "{stderr}"
    );
    assert_eq!(
        env.output_lines(),
        first,
        "the record read just before the bad line is never sent"
    );
}

#[test]
fn server_on_an_ipc_endpoint_accepts_and_audits() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let socket = format!("ipc://{}", env.path("zavro.sock").display());
    let server = Server::start(&env, &socket, &[]);
    assert_eq!(server.endpoint(), socket);
    let record = json!({"over": "ipc"});

    env.send(&socket, &key, &secret, &record.to_string())
        .code(0);

    assert_eq!(env.output_lines(), [compact(&record)]);
    let sends = env.audit_sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["status"], "accepted");
    assert_eq!(sends[0]["key"], key.as_str());
}

#[test]
fn sigterm_exits_zero_with_every_sent_record_committed() {
    const N: usize = 8;
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let records: Vec<Value> = (0..N).map(|i| json!({"msg": i})).collect();
    for record in &records {
        env.send(server.endpoint(), &key, &secret, &record.to_string())
            .code(0);
    }

    let (status, stderr) = server.stop_with_stderr();

    assert!(
        status.success(),
        "zavro serve exited with {status}; stderr: {stderr:?}"
    );
    assert_eq!(
        stderr.last().map(String::as_str),
        Some(format!("shutting down: {N} accepted, 0 rejected").as_str()),
        "{stderr:?}"
    );
    let accepted = env.audit_with(&["--status", "accepted"]);
    let payloads: Vec<Value> = accepted
        .iter()
        .filter(|r| r["action"] == "send")
        .map(|r| r["payload"].clone())
        .collect();
    let expected: Vec<Value> = records.iter().map(|r| json!([r])).collect();
    assert_eq!(payloads, expected);
    let lines: Vec<String> = records.iter().map(compact).collect();
    assert_eq!(env.output_lines(), lines);
}

#[test]
fn sigint_also_stops_the_server_cleanly() {
    let env = TestEnv::new();
    env.create_store();
    let server = env.start_server();
    kill(server.pid(), Signal::SIGINT).expect("send SIGINT");
    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "{status}; {stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l == "shutting down: 0 accepted, 0 rejected"),
        "{stderr:?}"
    );
}

/// SIGTERM arrives while requests are still queued: whatever the server acknowledged must be in the store and
/// the output file, and the output file must hold exactly the records of the accepted audit rows.
#[test]
fn sigterm_during_a_burst_loses_no_acknowledged_record() {
    const N: usize = 40;
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let dealer = RawClient::dealer(server.endpoint());
    for i in 0..N {
        let request = signed_now(&key, &secret, &[json!({"burst": i})]);
        let mut frames = vec![Vec::new()];
        frames.extend(request.to_frames());
        dealer.send(&frames);
    }
    // The server is now busy with the queue: stop it once the first answer is out.
    let mut replies = vec![dealer.recv()];

    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "{status}; {stderr:?}");
    while let Some(reply) = dealer.try_recv(Duration::from_millis(200)) {
        replies.push(reply);
    }

    let mut acknowledged = Vec::new();
    for reply in &replies {
        assert_eq!(
            reply.len(),
            2,
            "DEALER replies are [empty, reply]: {reply:?}"
        );
        match Reply::from_frame(&reply[1]).expect("protocol reply") {
            Reply::Accepted {
                audit_id, records, ..
            } => {
                assert_eq!(records, 1);
                acknowledged.push(audit_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let accepted: Vec<Value> = env
        .audit_with(&["--status", "accepted"])
        .into_iter()
        .filter(|r| r["action"] == "send")
        .collect();
    let stored_ids: Vec<i64> = accepted.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    for id in &acknowledged {
        assert!(
            stored_ids.contains(id),
            "acknowledged #{id} is not in the audit trail"
        );
    }
    let from_audit: Vec<String> = accepted
        .iter()
        .flat_map(|r| r["payload"].as_array().unwrap().clone())
        .map(|v| compact(&v))
        .collect();
    assert_eq!(env.output_lines(), from_audit);
    assert_eq!(
        stderr.last().map(String::as_str),
        Some(format!("shutting down: {} accepted, 0 rejected", accepted.len()).as_str())
    );
    assert!(!accepted.is_empty());
}

#[test]
fn output_file_is_appended_to_not_truncated_across_restarts() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    std::fs::write(env.output_path(), "{\"already\":\"here\"}\n").unwrap();

    let server = env.start_server();
    env.send(server.endpoint(), &key, &secret, "{\"run\":1}")
        .code(0);
    assert!(server.stop().success());
    let server = env.start_server();
    env.send(server.endpoint(), &key, &secret, "{\"run\":2}")
        .code(0);
    drop(server);

    assert_eq!(
        env.output_lines(),
        ["{\"already\":\"here\"}", "{\"run\":1}", "{\"run\":2}"]
    );
}

#[test]
fn serve_without_output_writes_accepted_records_to_stdout() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;

    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let mut cmd = zavro_process();
    let mut child = cmd
        .arg("--db")
        .arg(&env.db)
        .args(["serve", "127.0.0.1:*", "--plaintext"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = TerminateOnDrop(child.id());
    // Read both pipes in threads so nothing here can block without a deadline.
    let (tx, rx) = mpsc::channel();
    for (name, pipe) in [
        (
            "stderr",
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        ),
        ("stdout", Box::new(child.stdout.take().unwrap())),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send((name, line));
            }
        });
    }
    let next = |wanted: &str| loop {
        match rx.recv_timeout(DEADLINE) {
            Ok((name, line)) if name == wanted => return line,
            Ok(_) => {}
            Err(_) => panic!("no {wanted} line within {DEADLINE:?}"),
        }
    };
    let listening = next("stderr");
    let (endpoint, _) = crate::common::parse_listening(
        listening
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stderr line: {listening:?}")),
    );

    env.send(&endpoint, &key, &secret, "{\"to\": \"stdout\"}")
        .code(0);
    assert_eq!(next("stdout"), "{\"to\":\"stdout\"}");

    drop(guard);
    let mut status = None;
    wait_until("zavro serve to exit after SIGTERM", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
}

/// Sends SIGTERM to a process when dropped (for a test that spawns a server by hand).
struct TerminateOnDrop(u32);

impl Drop for TerminateOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0).unwrap());
        let _ = kill(pid, Signal::SIGTERM);
    }
}

#[test]
fn the_readme_quick_start_works_as_written_over_curve() {
    let env = crate::common::TestEnv::new();
    // zavro keys add --save-profile; zavro serve 127.0.0.1:PORT; zavro send 127.0.0.1:PORT < example.json
    env.zavro()
        .args(["keys", "add", "--save-profile"])
        .assert()
        .success();
    let server = crate::common::Server::start_curve(&env, "127.0.0.1:*", &[]);
    let endpoint = server
        .endpoint()
        .strip_prefix("tcp://")
        .expect("a TCP endpoint")
        .to_owned();
    let example = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/example.json")).unwrap();
    env.zavro()
        .args(["send", &endpoint])
        .write_stdin(example)
        .assert()
        .success();
    let stored = env.output_lines();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].contains("substation-7"), "{stored:?}");
    let sends = env.audit_sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["transport"], "curve", "{sends:?}");
    server.stop();
}
