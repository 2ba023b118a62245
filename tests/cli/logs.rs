//! `serve --log-format json`: every line the server writes is one JSON object with the documented fields, and
//! what it says matches the audit trail exactly, for accepted requests, refusals (a real `send` with a wrong
//! secret, hostile bytes in the frames), start-up, shutdown and errors.

use serde_json::Value;

use crate::common::{RawClient, Server, TestEnv, bare_zavro, parse_json, signed_now};

/// Each line parsed; panics unless every one is a JSON object with `time` (RFC 3339, UTC), `level` and a known
/// `event`, and holds no raw control or invisible formatting character.
fn parse_log(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| {
            assert!(
                zavro::untrusted::is_printable(line),
                "a raw control or invisible formatting character in a log line: {line:?}"
            );
            let event = parse_json(line.as_bytes());
            let time = event["time"]
                .as_str()
                .unwrap_or_else(|| panic!("no time: {line}"));
            assert!(
                time.ends_with('Z') && zavro::timestamp::parse_rfc3339(time).is_ok(),
                "time is not RFC 3339 UTC: {line}"
            );
            assert!(
                ["info", "warn", "error"].contains(&event["level"].as_str().unwrap_or("")),
                "{line}"
            );
            assert!(
                zavro::server::Event::ALL
                    .iter()
                    .any(|known| event["event"] == known.as_str()),
                "unknown event: {line}"
            );
            event
        })
        .collect()
}

/// The events named `name`, in order.
fn events<'a>(log: &'a [Value], name: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn json_log_lines_say_exactly_what_the_audit_trail_says_for_accepted_and_refused_requests() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--log-format", "json"]);
    let endpoint = server.endpoint().to_owned();

    env.send(
        &endpoint,
        &key,
        &secret,
        "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n",
    )
    .success();
    env.send(
        &endpoint,
        &key,
        "not-the-secret-0123456789abcdef",
        "{\"a\":4}\n",
    )
    .code(4);
    // Hostile bytes from the wire, quoted back in refusals: a field name with a newline, an escape sequence and
    // a quote in the envelope, and a version frame with a newline and a bidirectional override.
    let client = RawClient::req(&endpoint);
    let good = signed_now(&key, &secret, &[serde_json::json!(1)]).to_frames();
    let hostile_envelope = b"{\"ke\\ny\\u001b[2J\\\"\": 1}".to_vec();
    client.request(&[good[0].clone(), hostile_envelope, good[2].clone()]);
    client.request(&[
        "zavro/9\nrejected #1 forged\u{202e}".as_bytes().to_vec(),
        good[1].clone(),
        good[2].clone(),
    ]);

    let (status, lines) = server.stop_with_stderr();
    assert!(status.success(), "{lines:?}");
    let log = parse_log(&lines);
    let audit = env.audit_sends();
    let row = |id: &Value| {
        audit
            .iter()
            .find(|row| row["id"] == *id)
            .unwrap_or_else(|| panic!("no audit row {id}: {audit:?}"))
    };

    assert_eq!(log[0]["event"], "listening", "{lines:?}");
    assert_eq!(log[0]["endpoint"], endpoint.as_str());
    assert_eq!(log[0]["transport"], "plaintext");
    assert_eq!(log[0]["level"], "info");

    let accepted = events(&log, "accepted");
    assert_eq!(accepted.len(), 1, "{lines:?}");
    let stored = row(&accepted[0]["audit_id"]);
    assert_eq!(stored["status"], "accepted");
    assert_eq!(accepted[0]["key"], key.as_str());
    assert_eq!(accepted[0]["peer"], stored["peer"]);
    assert_eq!(accepted[0]["records"], 3);
    assert_eq!(stored["records"], 3);
    assert_eq!(accepted[0]["level"], "info");

    let refused = events(&log, "refused");
    let codes: Vec<&str> = refused
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["bad_signature", "malformed", "unsupported_version"],
        "{lines:?}"
    );
    for event in &refused {
        let row = row(&event["audit_id"]);
        assert_eq!(event["level"], "warn");
        assert_eq!(row["status"], "rejected");
        assert_eq!(event["code"], row["reason"], "{event}");
        assert_eq!(event["message"], row["message"], "{event}");
        assert_eq!(event["peer"], row["peer"], "{event}");
        assert_eq!(event["key"], row["key"].as_str().unwrap_or("-"), "{event}");
    }
    assert_eq!(refused[0]["key"], key.as_str());
    // The wire's bytes arrive escaped as in the text log and the audit trail, never raw, and exactly so.
    let envelope_message = refused[1]["message"].as_str().unwrap();
    assert!(
        envelope_message.contains("ke\\u{a}y\\u{1b}[2J\""),
        "{envelope_message}"
    );
    let version_message = refused[2]["message"].as_str().unwrap();
    assert!(
        version_message.contains(r#"zavro/9\nrejected #1 forged\u{202e}"#),
        "{version_message}"
    );

    let stopping = events(&log, "stopping");
    assert_eq!(stopping.len(), 1, "{lines:?}");
    assert_eq!(stopping[0]["accepted"], 1);
    assert_eq!(stopping[0]["rejected"], 3);
    assert_eq!(log.last().unwrap()["event"], "stopping", "{lines:?}");
}

#[test]
fn a_curve_server_announces_its_key_in_json_and_its_fatal_errors_are_json_too() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = Server::start_curve(
        &env,
        "127.0.0.1:*",
        &["--log-format", "json", "--name", "edge-1"],
    );
    let server_key = server.server_key().expect("announced").to_owned();
    let printed = env.zavro().arg("server-key").assert().success();
    assert_eq!(
        String::from_utf8_lossy(&printed.get_output().stdout).trim(),
        server_key
    );
    env.send_curve(server.endpoint(), &server_key, &key, &secret, "[1, 2]")
        .success();
    let (status, lines) = server.stop_with_stderr();
    assert!(status.success(), "{lines:?}");
    let log = parse_log(&lines);
    let listening = events(&log, "listening");
    assert_eq!(listening.len(), 1, "{lines:?}");
    assert_eq!(listening[0]["transport"], "curve");
    assert_eq!(listening[0]["name"], "edge-1");
    let accepted = events(&log, "accepted");
    assert_eq!(accepted.len(), 1, "{lines:?}");
    assert_eq!(accepted[0]["records"], 2);

    // Errors serve stops on are JSON too, with the exit code: a store that does not exist (7), a bad endpoint (2).
    let missing = env.path("missing.db");
    let out = bare_zavro()
        .arg("--db")
        .arg(&missing)
        .args(["serve", "127.0.0.1:*", "--log-format", "json"])
        .assert()
        .code(7);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
    let log = parse_log(&lines);
    assert_eq!(log.len(), 1, "{stderr}");
    assert_eq!(log[0]["event"], "fatal");
    assert_eq!(log[0]["level"], "error");
    assert_eq!(log[0]["exit_code"], 7);
    assert!(
        log[0]["message"].as_str().unwrap().contains("missing.db"),
        "{stderr}"
    );
    let out = env
        .zavro()
        .args(["serve", "not an endpoint", "--log-format", "json"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let log = parse_log(&stderr.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(log.len(), 1, "{stderr}");
    assert_eq!(log[0]["event"], "fatal");
    assert_eq!(log[0]["exit_code"], 2);
}

#[test]
fn the_text_log_is_unchanged_by_default() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let endpoint = server.endpoint().to_owned();
    env.send(&endpoint, &key, &secret, "{\"a\":1}\n").success();
    let (status, lines) = server.stop_with_stderr();
    assert!(status.success());
    assert!(
        lines[0].starts_with("listening on tcp://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("accepted #") && lines[1].contains(&format!(" key={key} ")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "shutting down: 1 accepted, 0 rejected"
    );
}

#[test]
fn a_flood_of_refusals_is_rate_limited_in_json_and_its_summaries_are_json_events() {
    // Ten keys nobody has: each one's first refusal gets a row and a line of its own, more than the log's five
    // lines per peer; and twenty more for one of them, which the audit trail counts in one summary row.
    const KEYS: usize = 10;
    const REPEATS: usize = 20;
    const FLOOD: usize = KEYS + REPEATS;
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--log-format", "json"]);
    let client = RawClient::dealer(server.endpoint());
    let claimed: Vec<String> = (0..KEYS).map(|i| format!("ZKNOBODY{i:010}")).collect();
    for key in claimed
        .iter()
        .chain(std::iter::repeat_n(&claimed[0], REPEATS))
    {
        let secret = "not-the-secret-0123456789abcdef";
        client.send(&signed_now(key, secret, &[serde_json::json!(1)]).to_frames());
    }
    for _ in 0..FLOOD {
        client.recv();
    }
    // Both limits close their windows 10 s after they open: wait for the events, not for a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let summarised = |lines: &[String]| {
        let log = parse_log(lines);
        !events(&log, "suppressed").is_empty() && !events(&log, "refused_summary").is_empty()
    };
    while !summarised(&server.stderr_lines()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no suppressed and refused_summary events: {:?}",
            server.stderr_lines()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, lines) = server.stop_with_stderr();
    assert!(status.success(), "{lines:?}");
    let log = parse_log(&lines);
    let peer = "127.0.0.1";
    let refused = events(&log, "refused");
    let suppressed = events(&log, "suppressed");
    assert_eq!(refused.len(), 5, "{lines:?}");
    assert_eq!(suppressed.len(), 1, "{lines:?}");
    assert_eq!(suppressed[0]["peer"], peer);
    assert_eq!(suppressed[0]["window_secs"], 10);
    assert_eq!(suppressed[0]["level"], "warn");
    // Every refusal is in the audit trail, one row each or counted in a summary row; the log names the rows.
    let audit = env.audit_sends();
    assert_eq!(env.audited_requests(), FLOOD as u64);
    let summaries = events(&log, "refused_summary");
    for summary in &summaries {
        let row = audit
            .iter()
            .find(|row| row["id"] == summary["audit_id"])
            .unwrap_or_else(|| panic!("no audit row for {summary}"));
        assert_eq!(summary["code"], "unknown_key");
        assert_eq!(summary["key"], claimed[0].as_str());
        assert_eq!(summary["code"], row["reason"]);
        assert_eq!(summary["peer"], peer);
        assert_eq!(summary["count"], row["requests"], "{summary} {row}");
        // The row says when and from which row on; the line says how many, as the text log does.
        assert_eq!(
            summary["message"],
            format!(
                "{} more in 10 s (counted, not one row each)",
                row["requests"]
            ),
        );
    }
    // The lines held back and the lines written add up to the refusals that had a line to write.
    let written_or_held = refused.len() as u64 + suppressed[0]["count"].as_u64().unwrap();
    let own_rows = audit.iter().filter(|row| row["requests"] == 1).count() as u64;
    assert_eq!(written_or_held, own_rows, "{lines:?}");
}
