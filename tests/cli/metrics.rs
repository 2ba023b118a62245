//! `serve --metrics`: a real server scraped over a real socket (plain HTTP/1.0 GETs on a std TcpStream), its
//! counters checked against the audit trail (`audit stats --json`, `audit query --json`) during and after real
//! `zavro send`s; `/healthz`, `/readyz` (and `/readyz` following a PostgreSQL cluster that stops and starts);
//! the text format's shape and the boundedness of its labels; a taken port.

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Stdio},
};

use serde_json::Value;

use crate::{
    common::{
        DEADLINE, RawClient, Server, TestEnv, on_both_backends, parse_json, stderr_of, wait_until,
        zavro_process,
    },
    connections::{descriptors, soft_open_files},
    slow_peers::{Attacker, flood_until_cut_off},
    test_cluster,
};

/// The label names the metrics may use: a fixed set, so no series can be made per key or per peer.
const ALLOWED_LABELS: [&str; 3] = ["code", "le", "version"];

/// Suffixes a sample's name may add to its family's (OpenMetrics).
const SUFFIXES: [&str; 5] = ["", "_total", "_bucket", "_sum", "_count"];

/// Every reply code: `accepted` and the refusal codes of PROTOCOL.md.
const CODES: [&str; 14] = [
    "accepted",
    "malformed",
    "unsupported_version",
    "unknown_key",
    "revoked_key",
    "expired_key",
    "bad_signature",
    "key_mismatch",
    "clock_skew",
    "replay",
    "bad_payload",
    "unsupported_schema",
    "schema_mismatch",
    "internal",
];

/// `GET path` over HTTP/1.0: the status and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics listener");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    (status, body.to_owned())
}

/// The metrics address a server announced (`metrics on http://ADDRESS/metrics …`, right after `listening on`).
fn metrics_address(server: &Server) -> String {
    let announced = || {
        server
            .stderr_lines()
            .iter()
            .find_map(|line| line.strip_prefix("metrics on http://"))
            .and_then(|rest| rest.split_once("/metrics"))
            .map(|(address, _)| address.to_owned())
    };
    wait_until("the `metrics on` line", || announced().is_some());
    announced().expect("announced")
}

/// A scrape: each sample's series (name and labels, as written) and value.
struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Scrapes `/metrics` and checks the text's shape (see [`Scrape::parse`]).
    fn of(address: &str) -> Scrape {
        let (status, text) = get(address, "/metrics");
        assert_eq!(status, 200, "{text}");
        Scrape::parse(&text)
    }

    /// Parses the OpenMetrics text, checking that every family has TYPE and HELP, every sample line is
    /// `name{labels} value` of a declared family, every label is one of [`ALLOWED_LABELS`] and no label value is
    /// a key id or an address, and the text ends with `# EOF`.
    fn parse(text: &str) -> Scrape {
        assert!(text.ends_with("# EOF\n"), "no # EOF at the end: {text}");
        let mut typed = HashSet::new();
        let mut helped = HashSet::new();
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|line| *line != "# EOF") {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.insert(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("# HELP name text");
                assert!(help.len() > 20, "a HELP that explains: {line}");
                helped.insert(name.to_owned());
            } else if line.starts_with("# UNIT ") {
                continue;
            } else {
                assert!(!line.starts_with('#'), "unknown comment: {line}");
                let (series, value) = line.rsplit_once(' ').expect("name{labels} value");
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number: {line}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (
                        name,
                        rest.strip_suffix('}')
                            .unwrap_or_else(|| panic!("unclosed labels: {line}")),
                    ),
                    None => (series, ""),
                };
                assert!(
                    name.starts_with("zavro_")
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                let family = SUFFIXES
                    .iter()
                    .filter_map(|suffix| name.strip_suffix(suffix))
                    .find(|family| typed.contains(*family))
                    .unwrap_or_else(|| panic!("no TYPE line before {line}"));
                assert!(helped.contains(family), "no HELP for {family}");
                for (label, value) in parse_labels(labels) {
                    assert!(ALLOWED_LABELS.contains(&label.as_str()), "{line}");
                    assert!(
                        !value.starts_with("ZK") && !value.contains("127.0.0.1"),
                        "a key id or an address as a label value: {line}"
                    );
                }
                assert!(
                    samples.insert(series.to_owned(), value).is_none(),
                    "series twice: {line}"
                );
            }
        }
        Scrape { samples }
    }

    /// The value of `series` (name and labels as written), which must be present.
    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:?}", self.samples.keys()))
    }

    /// `zavro_requests_total{code="CODE"}`.
    fn requests(&self, code: &str) -> u64 {
        self.value(&format!("zavro_requests_total{{code=\"{code}\"}}")) as u64
    }
}

/// `k="v",…` as pairs (values here hold no quote or comma).
fn parse_labels(labels: &str) -> Vec<(String, String)> {
    if labels.is_empty() {
        return Vec::new();
    }
    labels
        .split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("label=value");
            let value = value
                .strip_prefix('"')
                .and_then(|value| value.strip_suffix('"'))
                .unwrap_or_else(|| panic!("unquoted label value: {pair}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Requests in the audit trail by reply code (`accepted` for stored ones and recognised retries alike), and
/// the records stored, from `audit stats --json`.
fn audited(env: &TestEnv) -> (BTreeMap<String, u64>, u64) {
    let out = env
        .zavro()
        .args(["audit", "stats", "--json"])
        .assert()
        .success();
    let stats = parse_json(&out.get_output().stdout);
    let mut by_code = BTreeMap::new();
    for reason in stats["reasons"].as_array().expect("reasons") {
        let code = match reason["status"].as_str() {
            Some("accepted") => "accepted",
            _ => reason["reason"].as_str().expect("a refusal's reason"),
        };
        *by_code.entry(code.to_owned()).or_default() +=
            reason["requests"].as_u64().expect("a count");
    }
    let records = stats["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["records"].as_u64().expect("records"))
        .sum();
    (by_code, records)
}

/// Checks that the scrape's requests by code and records stored are the audit trail's.
fn assert_matches_audit(scrape: &Scrape, env: &TestEnv) {
    let (by_code, records) = audited(env);
    for code in CODES {
        assert_eq!(
            scrape.requests(code),
            by_code.get(code).copied().unwrap_or(0),
            "requests answered {code}: metrics against audit {by_code:?}"
        );
    }
    assert_eq!(
        scrape.value("zavro_accepted_records_total") as u64,
        records,
        "records"
    );
}

/// `zavro send ENDPOINT --plaintext` reading a pipe this test writes to, lingering 50 ms on a partial request.
fn streaming_send(env: &TestEnv, endpoint: &str, key: &str, secret: &str) -> Child {
    let mut cmd = zavro_process();
    if let Some(master) = &env.master_key {
        cmd.env("ZAVRO_MASTER_KEY_FILE", master);
    }
    cmd.arg("--db")
        .arg(&env.db)
        .args([
            "send",
            endpoint,
            "--plaintext",
            "--batch",
            "5",
            "--linger",
            "50ms",
        ])
        .env("ZAVRO_KEY", key)
        .env("ZAVRO_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zavro send")
}

/// Records `{"i": from}` to `{"i": to - 1}`, one JSON line each.
fn records(from: u32, to: u32) -> String {
    (from..to).map(|i| format!("{{\"i\":{i}}}\n")).collect()
}

on_both_backends!(counters_during_and_after_real_sends_match_the_audit_trail);

fn counters_during_and_after_real_sends_match_the_audit_trail(env: TestEnv) {
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&server);
    // The loop reads the store's size as it starts, then every minute.
    wait_until("the store's size", || {
        Scrape::of(&address).value("zavro_store_bytes") > 0.0
    });
    let before = Scrape::of(&address);
    assert_eq!(before.requests("accepted"), 0);
    assert_eq!(before.value("zavro_audit_last_id"), 0.0);
    assert_eq!(
        before.value(&format!(
            "zavro_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );

    // During a send: it has sent what it read so far and waits for more input.
    let mut send = streaming_send(&env, server.endpoint(), &key, &secret);
    let mut stdin = send.stdin.take().expect("piped stdin");
    stdin
        .write_all(records(0, 12).as_bytes())
        .and_then(|()| stdin.flush())
        .expect("write records to send");
    wait_until("12 records counted while send runs", || {
        Scrape::of(&address).value("zavro_accepted_records_total") == 12.0
    });
    assert!(
        send.try_wait().expect("look at send").is_none(),
        "send waits for more input"
    );
    let during = Scrape::of(&address);
    assert_matches_audit(&during, &env);
    assert_eq!(during.requests("accepted"), 3, "5 + 5 + 2 records");

    // The rest of the input, then the end of it.
    stdin
        .write_all(records(12, 20).as_bytes())
        .expect("write more records");
    drop(stdin);
    let status = send.wait().expect("wait for send");
    assert!(status.success(), "send: {status}");

    // Refusals: a wrong secret (bad_signature) and a frame that is no request (unsupported_version).
    let refused = env
        .zavro()
        .args(["send", server.endpoint(), "--plaintext"])
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", "not-the-secret")
        .write_stdin("{\"i\":1}\n")
        .assert()
        .code(4);
    assert!(stderr_of(&refused).contains("bad_signature"));
    let raw = RawClient::dealer(server.endpoint());
    raw.send(&[b"not a request".to_vec()]);
    raw.recv();

    let after = Scrape::of(&address);
    assert_eq!(after.value("zavro_accepted_records_total"), 20.0);
    assert!(after.requests("bad_signature") >= 1);
    assert_eq!(after.requests("unsupported_version"), 1);
    let sends: Vec<Value> = env.audit_sends();
    let newest = sends
        .iter()
        .filter_map(|row| row["id"].as_i64())
        .max()
        .expect("audit rows");
    assert_eq!(after.value("zavro_audit_last_id"), newest as f64);
    let answered: u64 = CODES.iter().map(|code| after.requests(code)).sum();
    assert_eq!(
        after.value("zavro_request_seconds_count") as u64,
        answered,
        "one latency per request"
    );
    assert!(after.value("zavro_commit_seconds_count") >= 1.0);
    assert!(after.value("zavro_accepted_request_bytes_total") > 0.0);
    assert_eq!(
        after.value("zavro_group_requests_sum") as u64,
        answered,
        "every request in one group"
    );

    // Refusals nobody vouched for are counted into summary rows, written at the latest when the server stops.
    assert!(server.stop().success());
    assert_matches_audit(&after, &env);
}

#[test]
fn healthz_and_readyz_answer_on_the_same_listener_and_other_paths_do_not() {
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&server);
    assert_eq!(get(&address, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(&address, "/readyz"), (200, "ready\n".to_owned()));
    let (status, _) = get(&address, "/nothing");
    assert_eq!(status, 404);
    assert!(server.stop().success());
}

#[test]
fn open_connections_rise_and_fall_with_real_clients() {
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&server);
    let open = || Scrape::of(&address).value("zavro_open_connections");
    assert_eq!(open(), 0.0);
    let clients: Vec<RawClient> = (0..3)
        .map(|_| RawClient::dealer(server.endpoint()))
        .collect();
    wait_until("3 open connections", || open() == 3.0);
    drop(clients);
    wait_until("no open connection", || open() == 0.0);
    assert!(server.stop().success());
}

#[test]
fn the_probes_answer_again_once_idle_peers_of_the_zeromq_port_gave_back_every_descriptor() {
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start(
        &env,
        "127.0.0.1:*",
        &["--max-connections", "10", "--metrics", "127.0.0.1:0"],
    );
    let address = metrics_address(&server);
    assert_eq!(get(&address, "/healthz").0, 200);
    // libzmq accepts until the process is out of descriptors: idle peers of the ZeroMQ port take them all but
    // one at most, the few kept for scrapes too.
    let pid = server.pid();
    let soft = soft_open_files(pid);
    let zeromq = server
        .endpoint()
        .strip_prefix("tcp://")
        .expect("a TCP endpoint");
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(zeromq).expect("connect to the ZeroMQ port"))
        .collect();
    let all_taken = || {
        descriptors(pid).iter().filter(|&&fd| fd < soft).count() + 1
            >= usize::try_from(soft).unwrap()
    };
    wait_until("every descriptor taken", all_taken);
    // A probe meanwhile waits in the kernel's queue (the handshake needs no `accept`): the listener's `accept`
    // fails (EMFILE) and is tried again a moment later, for as long as the descriptors are taken.
    let mut probe = TcpStream::connect(&address).expect("queued by the kernel");
    write!(probe, "GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    assert!(
        all_taken(),
        "the descriptors were still taken when the probe came"
    );
    drop(idle);
    probe.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = String::new();
    probe
        .read_to_string(&mut answer)
        .expect("the waiting probe answered");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(get(&address, "/readyz").0, 200);
    assert!(server.stop().success());
}

#[test]
fn idle_connections_to_the_metrics_port_hold_a_few_descriptors_and_no_threads() {
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&server);
    assert_eq!(get(&address, "/healthz").0, 200);
    let pid = server.pid();
    let threads = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the server's threads")
            .count()
    };
    let (threads_before, descriptors_before) = (threads(), descriptors(pid).len());
    // Connections that never send a request, and one that sends half of one.
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&address).expect("connect to the metrics port"))
        .collect();
    let mut half = TcpStream::connect(&address).unwrap();
    half.write_all(b"GET /metrics HT").unwrap();
    idle.push(half);
    // Once a scrape is answered, the listener has taken every connection queued before it.
    assert_eq!(get(&address, "/healthz").0, 200);
    assert!(
        descriptors(pid).len() <= descriptors_before + zavro::metrics::MAX_SCRAPES,
        "{} descriptors, {descriptors_before} before",
        descriptors(pid).len()
    );
    assert_eq!(threads(), threads_before, "no thread per connection");
    // Every one is closed in the end, those let go at once and the newest at their request deadline: reading
    // them ends (a read that times out instead fails the test).
    for stream in &mut idle {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        match stream.read(&mut [0; 16]) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection still open: {other:?}"),
        }
    }
    assert_eq!(Scrape::of(&address).value("zavro_open_connections"), 0.0);
    assert!(server.stop().success());
}

#[test]
fn a_peer_cut_off_for_not_reading_its_replies_is_no_longer_counted_open() {
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&server);
    let attacker = Attacker::connect(server.endpoint(), None);
    wait_until("its connection open", || {
        Scrape::of(&address).value("zavro_open_connections") == 1.0
    });
    flood_until_cut_off(&attacker, || {});
    wait_until("the cut-off counted", || {
        Scrape::of(&address).value("zavro_cut_off_connections_total") == 1.0
    });
    wait_until("its connection no longer open", || {
        Scrape::of(&address).value("zavro_open_connections") == 0.0
    });
    drop(attacker);
    assert!(server.stop().success());
}

#[test]
fn a_refused_curve_handshake_is_counted_and_its_connection_closed() {
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start_curve(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&server);
    let stranger = zavro::curve::KeyPair::generate().expect("a key pair");
    let client = RawClient::curve_dealer(
        server.endpoint(),
        server.server_key().expect("a CURVE server"),
        &stranger,
    );
    assert_eq!(client.handshake(), crate::common::Handshake::RefusedAuth);
    drop(client);
    wait_until("the refused handshake counted", || {
        Scrape::of(&address).value("zavro_refused_handshakes_total") == 1.0
    });
    wait_until("its connection closed", || {
        Scrape::of(&address).value("zavro_open_connections") == 0.0
    });
    assert!(server.stop().success());
}

#[test]
fn readyz_turns_not_ready_while_the_postgresql_store_is_down_and_ready_when_it_is_back() {
    let Some(cluster) = test_cluster::start_private() else {
        return;
    };
    let env = TestEnv::postgres_on(&cluster);
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&server);
    assert_eq!(get(&address, "/readyz").0, 200);

    cluster.stop();
    wait_until("/readyz 503 with the store down", || {
        get(&address, "/readyz").0 == 503
    });
    let (_, body) = get(&address, "/readyz");
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert!(body.starts_with("not ready: the store"), "{body:?}");
    assert!(!body.contains("postgres"), "no URL: {body:?}");
    assert_eq!(
        get(&address, "/healthz").0,
        200,
        "the process still answers"
    );

    cluster.start_again();
    wait_until("/readyz 200 with the store back", || {
        get(&address, "/readyz").0 == 200
    });
    env.send(server.endpoint(), &key, &secret, "{\"i\":1}\n")
        .success();
    assert!(server.stop().success());
}

#[test]
fn a_metrics_address_already_taken_is_one_line_and_exit_11() {
    let env = TestEnv::new();
    env.add_key();
    let first = Server::start(&env, "127.0.0.1:*", &["--metrics", "127.0.0.1:0"]);
    let address = metrics_address(&first);
    let second = env
        .zavro()
        .args(["serve", "127.0.0.1:*", "--plaintext", "--metrics", &address])
        .assert()
        .code(11);
    let stderr = stderr_of(&second);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "zavro: --metrics: cannot listen for metrics on {address}: "
        )),
        "{stderr}"
    );
    assert!(first.stop().success());
}
