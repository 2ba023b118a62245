//! The client side of the transport: `send` and `bench` against fake servers (a ZeroMQ ROUTER in a thread of
//! the test, CURVE or plaintext, with a ZAP handler when asked) that answer as each test chooses, so a wrong
//! server key, a transport mismatch, a key refused at the handshake and forged replies are all seen over real
//! sockets.

use std::{
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
};

use std::io::Write;

use zavro::{
    curve::{self, KeyPair},
    protocol::{RejectCode, Reply, ReplyFrame, Request},
};

use crate::common::{TestEnv, stderr_of, stdout_of, wait_until, zavro_process};

/// The API key the tests send with; the fake servers need no store.
const KEY: &str = "ZK00112233445566AA";
const SECRET: &str = "fake-server-test-secret-0123456789";
const OTHER_SECRET: &str = "some-other-secret-0123456789abcdef";

/// Two records in one request.
const INPUT: &str = "{\"a\":1}\n{\"a\":2}\n";

/// How a fake server answers each request.
#[derive(Clone, Copy)]
enum Answer {
    /// `accepted`, signed under this secret.
    AcceptSignedBy(&'static str),
    /// `accepted` with no signature.
    AcceptUnsigned,
    /// `accepted`, signed under this secret, then its audit id changed.
    AcceptAlteredAfterSigning(&'static str),
    /// `rejected` (bad_signature) with no signature, as a server that could not read the key answers.
    RejectUnsigned,
    /// `rejected`, signed under this secret.
    RejectSignedBy(&'static str),
}

/// What a fake server's ZAP handler does with a client's CURVE public key.
#[derive(Clone, Copy)]
enum Zap {
    /// No handler: libzmq admits every client.
    None,
    /// Admits only the key derived from [`KEY`] and [`SECRET`], refusing others with 400.
    AdmitDerived,
    /// Refuses every client with 400.
    RefuseAll,
}

/// A fake server: a ROUTER on 127.0.0.1 answering in its own thread until dropped.
struct FakeServer {
    endpoint: String,
    /// The public key in Z85, for CURVE servers.
    public_key: Option<String>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeServer {
    /// A CURVE server with a new key pair.
    fn curve(answer: Answer, zap: Zap) -> FakeServer {
        FakeServer::start(Some(KeyPair::generate().expect("a key pair")), answer, zap)
    }

    /// A plaintext server.
    fn plaintext(answer: Answer) -> FakeServer {
        FakeServer::start(None, answer, Zap::None)
    }

    fn start(keys: Option<KeyPair>, answer: Answer, zap: Zap) -> FakeServer {
        FakeServer::start_at("tcp://127.0.0.1:*", keys, answer, zap)
    }

    /// A server bound to `endpoint`.
    fn start_at(endpoint: &str, keys: Option<KeyPair>, answer: Answer, zap: Zap) -> FakeServer {
        let context = zmq::Context::new();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        if !matches!(zap, Zap::None) {
            // Bound before the ROUTER, so no handshake can happen without it.
            let handler = context.socket(zmq::REP).expect("a ZAP socket");
            handler.set_linger(0).unwrap();
            handler.bind("inproc://zeromq.zap.01").expect("bind ZAP");
            let stop = Arc::clone(&stop);
            threads.push(thread::spawn(move || answer_zap(&handler, zap, &stop)));
        }
        let router = context.socket(zmq::ROUTER).expect("a ROUTER");
        router.set_linger(0).unwrap();
        if let Some(keys) = &keys {
            router.set_curve_server(true).unwrap();
            router.set_curve_secretkey(keys.secret()).unwrap();
        }
        router.bind(endpoint).expect("bind");
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        {
            let (stop, requests) = (Arc::clone(&stop), Arc::clone(&requests));
            // The context moves with the ROUTER, so it lives as long as the sockets.
            threads.push(thread::spawn(move || {
                let _context = context;
                answer_requests(&router, answer, &requests, &stop);
            }));
        }
        FakeServer {
            endpoint,
            public_key: keys.map(|k| k.public_z85()),
            requests,
            stop,
            threads,
        }
    }

    fn public_key(&self) -> &str {
        self.public_key.as_deref().expect("a CURVE server")
    }

    /// Requests the server received and answered.
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Answers ZAP requests (ZeroMQ RFC 27) until `stop`.
fn answer_zap(handler: &zmq::Socket, zap: Zap, stop: &AtomicBool) {
    let derived = KeyPair::for_client(KEY, SECRET.as_bytes()).unwrap().public;
    while !stop.load(Ordering::SeqCst) {
        if handler.poll(zmq::POLLIN, 50).unwrap_or(0) == 0 {
            continue;
        }
        let Ok(request) = handler.recv_multipart(0) else {
            return;
        };
        // version, request id, domain, address, routing id, mechanism, then the client's public key.
        let admitted = matches!(zap, Zap::AdmitDerived)
            && request.get(6).map(Vec::as_slice) == Some(derived.as_slice());
        let (status, text) = if admitted {
            ("200", "OK")
        } else {
            ("400", "unknown key")
        };
        let request_id = request.get(1).cloned().unwrap_or_default();
        handler
            .send_multipart(
                [
                    b"1.0".to_vec(),
                    request_id,
                    status.as_bytes().to_vec(),
                    text.as_bytes().to_vec(),
                    Vec::new(),
                    Vec::new(),
                ],
                0,
            )
            .expect("answer ZAP");
    }
}

/// Answers each request as `answer` says until `stop`, counting them.
fn answer_requests(
    router: &zmq::Socket,
    answer: Answer,
    requests: &AtomicUsize,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        if router.poll(zmq::POLLIN, 50).unwrap_or(0) == 0 {
            continue;
        }
        let Ok(frames) = router.recv_multipart(0) else {
            return;
        };
        // Routing id, the empty delimiter, then the request's three frames.
        let (Some(routing_id), Some(request)) = (frames.first(), frames.get(2..)) else {
            continue;
        };
        let Ok(request) = Request::from_frames(request) else {
            continue;
        };
        let records = zavro::avro::Decoder::new()
            .decode_request(&request.payload)
            .records
            .map_or(0, |ndjson| ndjson.records as u64);
        let reply = reply_to(&request, records, answer);
        requests.fetch_add(1, Ordering::SeqCst);
        router
            .send_multipart([routing_id.clone(), Vec::new(), reply.to_frame()], 0)
            .expect("send a reply");
    }
}

/// The reply `answer` makes to `request`.
fn reply_to(request: &Request, records: u64, answer: Answer) -> ReplyFrame {
    let accepted = |audit_id| Reply::Accepted {
        audit_id,
        records,
        duplicate: false,
    };
    let rejected = Reply::Rejected {
        code: RejectCode::BadSignature,
        message: "refused by the fake server".into(),
        server_time: None,
    };
    let mut frame = ReplyFrame {
        nonce: Some(request.envelope.nonce.clone()),
        reply: accepted(41),
        signature: None,
    };
    match answer {
        Answer::AcceptSignedBy(secret) => frame.sign(secret.as_bytes()),
        Answer::AcceptUnsigned => {}
        Answer::AcceptAlteredAfterSigning(secret) => {
            frame.sign(secret.as_bytes());
            frame.reply = accepted(42);
        }
        Answer::RejectUnsigned => frame.reply = rejected,
        Answer::RejectSignedBy(secret) => {
            frame.reply = rejected;
            frame.sign(secret.as_bytes());
        }
    }
    frame
}

/// `zavro send ENDPOINT EXTRA…` with [`KEY`] and [`SECRET`] in the environment and [`INPUT`] on stdin; a
/// generous `--timeout` and no retries, so a failure that fell back to a timeout would show as exit 5.
fn send_command(env: &TestEnv, endpoint: &str, extra: &[&str]) -> assert_cmd::Command {
    let mut command = env.zavro();
    command
        .args(["send", endpoint, "--timeout", "20", "--retries", "0"])
        .args(extra)
        .env("ZAVRO_KEY", KEY)
        .env("ZAVRO_SECRET", SECRET)
        .write_stdin(INPUT);
    command
}

/// [`send_command`], run.
fn send(env: &TestEnv, endpoint: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    send_command(env, endpoint, extra).assert()
}

/// Writes the credentials file with one profile of these `name = value` settings.
fn write_profile(env: &TestEnv, name: &str, settings: &[(&str, &str)]) {
    let path = env.credentials_path();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path.parent().unwrap())
        .unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "[{name}]").unwrap();
    for (field, value) in settings {
        writeln!(file, "{field} = {value}").unwrap();
    }
}

/// Panics unless `send` failed with exit 8 and `expected` in its message, and claimed no record stored.
fn assert_unauthenticated(out: &assert_cmd::assert::Assert, expected: &str) {
    let stderr = stderr_of(out);
    assert_eq!(out.get_output().status.code(), Some(8), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, nothing else: {stderr}"
    );
    assert!(!stderr.contains("accepted 2"), "{stderr}");
    assert_eq!(stdout_of(out), "");
}

#[test]
fn the_right_server_key_and_a_derived_client_key_get_the_records_acknowledged() {
    let env = TestEnv::new();
    let server = FakeServer::curve(Answer::AcceptSignedBy(SECRET), Zap::AdmitDerived);
    let out = send(
        &env,
        &server.endpoint,
        &["--server-key", server.public_key()],
    )
    .code(0);
    assert!(
        stderr_of(&out).contains("accepted 2 records in 1 request"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(server.requests(), 1);
}

#[test]
fn a_server_key_that_starts_with_a_dash_is_taken_as_the_key() {
    // '-' is a Z85 character: one key in 85 starts with it, and must not be read as an option.
    let pair = (0..100_000)
        .map(|_| KeyPair::generate().unwrap())
        .find(|pair| pair.public_z85().starts_with('-'))
        .expect("a key starting with '-' among 100,000");
    let env = TestEnv::new();
    let server = FakeServer::start(Some(pair), Answer::AcceptSignedBy(SECRET), Zap::None);
    send(
        &env,
        &server.endpoint,
        &["--server-key", server.public_key()],
    )
    .code(0);
    assert_eq!(server.requests(), 1);
}

#[test]
fn a_wrong_server_key_is_a_clear_error_not_a_timeout() {
    let env = TestEnv::new();
    let server = FakeServer::curve(Answer::AcceptSignedBy(SECRET), Zap::None);
    let wrong = KeyPair::generate().unwrap().public_z85();
    let out = send(&env, &server.endpoint, &["--server-key", &wrong]);
    assert_unauthenticated(
        &out,
        &format!(
            "zavro: the server at {}: did not complete the CURVE handshake: wrong server key, or a \
             plaintext server?",
            server.endpoint
        ),
    );
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_curve_client_against_a_plaintext_server_fails_at_the_handshake() {
    let env = TestEnv::new();
    let server = FakeServer::plaintext(Answer::AcceptSignedBy(SECRET));
    let key = KeyPair::generate().unwrap().public_z85();
    let out = send(&env, &server.endpoint, &["--server-key", &key]);
    // Which of the two messages depends on whether the server's greeting or its close reaches the client first.
    assert_unauthenticated(&out, "did not complete the CURVE handshake");
    assert!(stderr_of(&out).contains("plaintext server"));
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_plaintext_client_against_a_curve_server_is_told_to_give_the_server_key() {
    let env = TestEnv::new();
    let server = FakeServer::curve(Answer::AcceptSignedBy(SECRET), Zap::None);
    let out = send(&env, &server.endpoint, &["--plaintext"]);
    assert_unauthenticated(&out, "--server-key");
    assert!(
        stderr_of(&out).contains("instead of --plaintext"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_key_the_servers_zap_handler_refuses_is_named_in_the_error() {
    let env = TestEnv::new();
    let server = FakeServer::curve(Answer::AcceptSignedBy(SECRET), Zap::RefuseAll);
    let out = send(
        &env,
        &server.endpoint,
        &["--server-key", server.public_key()],
    );
    assert_unauthenticated(
        &out,
        &format!(
            "zavro: the server at {}: refused key {KEY} at the handshake (unknown, revoked or expired key)",
            server.endpoint
        ),
    );
    assert_eq!(server.requests(), 0);
}

#[test]
fn forged_or_altered_replies_are_never_counted_as_stored() {
    let env = TestEnv::new();
    for (answer, what) in [
        (Answer::AcceptUnsigned, "accepted, without a signature"),
        (
            Answer::AcceptSignedBy(OTHER_SECRET),
            "accepted, with a wrong signature",
        ),
        (
            Answer::AcceptAlteredAfterSigning(SECRET),
            "accepted, with a wrong signature",
        ),
    ] {
        // Over CURVE a forger needs the server's key; over plaintext anyone on the path can answer, and the
        // signature is the only proof.
        let curve = FakeServer::curve(answer, Zap::None);
        let plaintext = FakeServer::plaintext(answer);
        for (server, transport) in [
            (&curve, vec!["--server-key", curve.public_key()]),
            (&plaintext, vec!["--plaintext"]),
        ] {
            let out = send(&env, &server.endpoint, &transport);
            assert_unauthenticated(
                &out,
                &format!(
                    "zavro: reply from {} ({what}) is not signed by the server under key {KEY}: possible \
                     forgery; the records may not be stored",
                    server.endpoint
                ),
            );
            assert_eq!(server.requests(), 1, "the request reached the server");
        }
    }
}

#[test]
fn an_unsigned_rejection_is_taken_as_it_is_and_a_wrongly_signed_one_is_a_forgery() {
    let env = TestEnv::new();
    // An unsigned rejection claims nothing was stored: what a server answers when the request did not prove to
    // be signed with the key's secret. A signed one can only be signed under the client's own secret.
    for answer in [Answer::RejectUnsigned, Answer::RejectSignedBy(SECRET)] {
        let server = FakeServer::plaintext(answer);
        let out = send(&env, &server.endpoint, &["--plaintext"]).code(4);
        let stderr = stderr_of(&out);
        assert!(
            stderr.starts_with(
                "zavro: rejected by the server: bad_signature: refused by the fake server"
            ),
            "{stderr}"
        );
    }
    let server = FakeServer::plaintext(Answer::RejectSignedBy(OTHER_SECRET));
    let out = send(&env, &server.endpoint, &["--plaintext"]).code(8);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("(rejected, with a wrong signature) is not signed by the server")
            && stderr.contains("possible forgery"),
        "{stderr}"
    );
}

#[test]
fn bench_pins_the_server_key_and_checks_signatures_too() {
    let env = TestEnv::new();
    let bench = |server: &FakeServer, transport: &[&str]| {
        env.zavro()
            .args([
                "bench",
                &server.endpoint,
                "--count",
                "5",
                "--batch",
                "5",
                "--json",
            ])
            .args(transport)
            .env("ZAVRO_KEY", KEY)
            .env("ZAVRO_SECRET", SECRET)
            .assert()
    };
    let good = FakeServer::curve(Answer::AcceptSignedBy(SECRET), Zap::AdmitDerived);
    let out = bench(&good, &["--server-key", good.public_key()]).code(0);
    assert_eq!(
        crate::common::parse_json(&out.get_output().stdout)["records"],
        5
    );

    let wrong = KeyPair::generate().unwrap().public_z85();
    let out = bench(&good, &["--server-key", &wrong]).code(8);
    assert!(
        stderr_of(&out).contains("did not complete the CURVE handshake"),
        "{}",
        stderr_of(&out)
    );

    let forger = FakeServer::plaintext(Answer::AcceptUnsigned);
    let out = bench(&forger, &["--plaintext"]).code(8);
    assert!(
        stderr_of(&out).contains("possible forgery"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(stdout_of(&out), "", "no figures for records not stored");
}

#[test]
fn server_key_flag_beats_environment_beats_profile() {
    let env = TestEnv::new();
    let server = FakeServer::curve(Answer::AcceptSignedBy(SECRET), Zap::None);
    let right = server.public_key();
    let wrong = KeyPair::generate().unwrap().public_z85();
    let refused = |command: &mut assert_cmd::Command| {
        let out = command.assert().code(8);
        assert!(
            stderr_of(&out).contains("did not complete the CURVE handshake"),
            "{}",
            stderr_of(&out)
        );
    };

    // The profile alone.
    write_profile(&env, "default", &[("server_key", right)]);
    send(&env, &server.endpoint, &[]).code(0);
    // The environment over the profile, both ways round.
    refused(send_command(&env, &server.endpoint, &[]).env("ZAVRO_SERVER_KEY", &wrong));
    write_profile(&env, "default", &[("server_key", &wrong)]);
    send_command(&env, &server.endpoint, &[])
        .env("ZAVRO_SERVER_KEY", right)
        .assert()
        .code(0);
    // The flag over the environment, both ways round.
    send_command(&env, &server.endpoint, &["--server-key", right])
        .env("ZAVRO_SERVER_KEY", &wrong)
        .assert()
        .code(0);
    refused(
        send_command(&env, &server.endpoint, &["--server-key", &wrong])
            .env("ZAVRO_SERVER_KEY", right),
    );
    assert_eq!(server.requests(), 3);

    // --plaintext overrides the environment and the profile (with --server-key it is a usage error: below).
    let plaintext = FakeServer::plaintext(Answer::AcceptSignedBy(SECRET));
    send_command(&env, &plaintext.endpoint, &["--plaintext"])
        .env("ZAVRO_SERVER_KEY", right)
        .assert()
        .code(0);
    assert_eq!(plaintext.requests(), 1);
}

#[test]
fn a_missing_malformed_or_contradicted_server_key_is_a_usage_error() {
    let env = TestEnv::new();
    let endpoint = "tcp://127.0.0.1:1";
    // Looks like a secret pasted into the wrong place: the message must not repeat it.
    let bad = "not-a-key-but-maybe-a-secret-0123456789AB";
    let usage_error = |command: &mut assert_cmd::Command, expected: &str| {
        let out = command.assert().code(2);
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains(expected) && !stderr.contains(bad) && stderr.lines().count() == 1,
            "{stderr}"
        );
    };

    let out = send(&env, endpoint, &[]).code(2);
    let stderr = stderr_of(&out);
    assert!(
        stderr.starts_with("zavro: no server key")
            && stderr.contains("`zavro server-key`")
            && stderr.contains("`zavro keys add --save-profile`")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    usage_error(
        &mut send_command(&env, endpoint, &["--server-key", bad]),
        "zavro: --server-key: not a CURVE key",
    );
    usage_error(
        send_command(&env, endpoint, &[]).env("ZAVRO_SERVER_KEY", bad),
        "zavro: ZAVRO_SERVER_KEY: not a CURVE key",
    );
    write_profile(&env, "edge", &[("server_key", bad)]);
    usage_error(
        &mut send_command(&env, endpoint, &["--profile", "edge"]),
        "zavro: the server_key of profile \"edge\": not a CURVE key",
    );

    let key = curve::encode(&KeyPair::generate().unwrap().public);
    let out = send(&env, endpoint, &["--server-key", &key, "--plaintext"]).code(2);
    assert!(
        stderr_of(&out).contains("'--server-key <KEY>' cannot be used with '--plaintext'"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_profile_from_keys_add_save_profile_is_all_send_needs() {
    let env = TestEnv::new();
    // The secret is imported, so the fake server below can sign with it.
    env.zavro()
        .args(["keys", "add", "--save-profile", "--secret-stdin"])
        .write_stdin(SECRET)
        .assert()
        .code(0);
    // The fake server holds the store's key pair, as `serve` on this store would.
    let pair = zavro::store::Store::open(&env.db)
        .unwrap()
        .server_key_pair(zavro::timestamp::now_micros())
        .unwrap();
    let server = FakeServer::start(Some(pair), Answer::AcceptSignedBy(SECRET), Zap::None);
    // Key, secret and server key all come from the default profile: the README's quick start.
    let out = env
        .zavro()
        .args(["send", &server.endpoint])
        .write_stdin(INPUT)
        .assert()
        .code(0);
    assert!(
        stderr_of(&out).contains("accepted 2 records"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(server.requests(), 1);
}

#[test]
fn a_server_restarted_under_a_running_send_is_served_again() {
    // After a handshake succeeds the client stops watching; libzmq then reconnects the same socket to the
    // restarted server and handshakes again. A monitor left running with nobody reading would block libzmq's I/O
    // thread on that event, and no request would get through again.
    let env = TestEnv::new();
    let endpoint = format!("ipc://{}", env.path("fake.sock").display());
    let first = FakeServer::start_at(&endpoint, None, Answer::AcceptSignedBy(SECRET), Zap::None);
    let mut send = zavro_process()
        .args([
            "send",
            &endpoint,
            "--plaintext",
            "--batch",
            "1",
            "--linger",
            "0",
        ])
        // One request in flight: the second goes only once the first reply (after the handshake) was read. One
        // retry: a request written before this client noticed the first server go (a loaded machine is slow to)
        // is lost with the old connection; what this test is about, a reconnection that never carries a request
        // again, fails with retries too.
        .args(["--window", "1", "--timeout", "10", "--retries", "1"])
        .env("ZAVRO_KEY", KEY)
        .env("ZAVRO_SECRET", SECRET)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn zavro send");
    let mut stdin = send.stdin.take().expect("piped stdin");
    stdin.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    wait_until("two requests at the first server", || first.requests() == 2);
    drop(first);
    let second = FakeServer::start_at(&endpoint, None, Answer::AcceptSignedBy(SECRET), Zap::None);
    stdin.write_all(b"{\"n\":3}\n").unwrap();
    drop(stdin);
    let out = send.wait_with_output().expect("wait for zavro send");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stderr.contains("accepted 3 records"), "{stderr}");
    assert_eq!(second.requests(), 1);
}
