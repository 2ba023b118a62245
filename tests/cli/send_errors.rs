//! `zavro send` failures and their exit codes: bad input (3), usage (2), no reply (5).

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    time::{Duration, Instant},
};

use assert_cmd::Command;

use crate::common::zavro_process;
use crate::common::{TestEnv, stderr_of};

/// A localhost port that nobody listens on (bound by the OS, then released).
fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

#[test]
fn send_to_a_dead_server_exits_5_after_its_timeout_and_retry() {
    let env = TestEnv::new();
    let endpoint = format!("127.0.0.1:{}", unused_port());
    let started = Instant::now();
    let out = env
        .zavro()
        .args([
            "send",
            &endpoint,
            "--plaintext",
            "--timeout",
            "1",
            "--retries",
            "1",
        ])
        .env("ZAVRO_KEY", "ZK0123456789ABCDEF")
        .env("ZAVRO_SECRET", "some-secret-some-secret")
        .write_stdin("{\"a\":1}")
        .timeout(Duration::from_secs(20))
        .assert()
        .code(5);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up before two attempts of 1 s"
    );
    let stderr = stderr_of(&out);
    assert!(stderr.contains("no reply"), "{stderr}");
    assert!(stderr.contains("2 attempts"), "{stderr}");
}

#[test]
fn a_message_over_the_servers_size_limit_gets_no_reply_and_the_server_keeps_serving() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = crate::common::Server::start(&env, "127.0.0.1:*", &["--max-message-size", "2048"]);
    let big = format!("{{\"filler\":\"{}\"}}", "x".repeat(8192));

    let out = env
        .send_with(
            server.endpoint(),
            &key,
            &secret,
            &big,
            &["--timeout", "1", "--retries", "0"],
        )
        .code(5);
    assert!(stderr_of(&out).contains("no reply"), "{}", stderr_of(&out));

    env.send(server.endpoint(), &key, &secret, "{\"small\":true}")
        .code(0);
    assert_eq!(env.output_lines(), ["{\"small\":true}"]);
    let sends = env.audit_sends();
    assert_eq!(
        sends.len(),
        1,
        "the dropped message left no audit row: {sends:?}"
    );
}

/// Runs `zavro send` against a live server with `stdin` and returns the assertion.
fn send_input(env: &TestEnv, endpoint: &str, key: &str, secret: &str, stdin: &str) -> String {
    let out = env.send(endpoint, key, secret, stdin).code(3);
    stderr_of(&out)
}

#[test]
fn stdin_that_is_not_json_exits_3_and_sends_nothing() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint().to_owned();

    let stderr = send_input(&env, &ep, &key, &secret, "{\"ok\":1}\nthis is not json\n");
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    let stderr = send_input(&env, &ep, &key, &secret, "{\"unterminated\": ");
    assert!(stderr.contains("not valid JSON"), "{stderr}");

    // Had either run sent anything, it would be audited before this send, which goes over a new connection
    // only after both processes exited.
    env.send(&ep, &key, &secret, "{\"good\":true}").code(0);
    let sends = env.audit_sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["payload"], serde_json::json!([{"good": true}]));
    assert_eq!(env.output_lines(), ["{\"good\":true}"]);
}

#[test]
fn an_integer_beyond_i64_exits_3() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint().to_owned();

    for input in [
        "18446744073709551615",
        "{\"big\": 9223372036854775808}",
        "[{\"fine\": 1}, {\"nested\": [18446744073709551615]}]",
    ] {
        let stderr = send_input(&env, &ep, &key, &secret, input);
        assert!(stderr.contains("does not fit"), "{input}: {stderr}");
    }
    env.send(&ep, &key, &secret, "9223372036854775807").code(0);
    assert_eq!(env.audit_sends().len(), 1);
    assert_eq!(env.output_lines(), ["9223372036854775807"]);
}

#[test]
fn empty_stdin_or_an_empty_array_exits_3() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    for input in ["", "  \n\t\n", "[]"] {
        let stderr = send_input(&env, server.endpoint(), &key, &secret, input);
        assert!(stderr.contains("no JSON records"), "{input:?}: {stderr}");
    }
}

/// `zavro send` in a new session, so it has no controlling terminal to prompt on even when the tests run in one.
pub fn send_without_terminal(env: &TestEnv) -> Command {
    let mut cmd = zavro_process();
    cmd.env("XDG_CONFIG_HOME", env.config_dir())
        .arg("--db")
        .arg(&env.db);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut cmd = Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(20));
    cmd
}

#[test]
fn send_without_a_key_is_a_usage_error() {
    let env = TestEnv::new();
    let out = send_without_terminal(&env)
        .args(["send", "127.0.0.1:9", "--plaintext"])
        .env("ZAVRO_SECRET", "some-secret-some-secret")
        .write_stdin("{\"a\":1}")
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("ZAVRO_KEY"), "{}", stderr_of(&out));
}

#[test]
fn send_without_a_secret_and_without_a_terminal_is_a_usage_error() {
    let env = TestEnv::new();
    let (key, _) = env.add_key();
    let server = env.start_server();
    let out = send_without_terminal(&env)
        .args(["send", server.endpoint(), "--plaintext"])
        .env("ZAVRO_KEY", &key)
        .write_stdin("{\"a\":1}")
        .assert()
        .code(2);
    assert!(
        stderr_of(&out).contains("ZAVRO_SECRET"),
        "{}",
        stderr_of(&out)
    );
    assert!(env.output_lines().is_empty());
}

#[test]
fn send_reads_the_secret_from_the_first_line_of_secret_file() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let file = env.path("secret.txt");
    std::fs::write(&file, format!("{secret}\nignored second line\n")).unwrap();
    let server = env.start_server();

    env.zavro()
        .args([
            "send",
            server.endpoint(),
            "--plaintext",
            "--key",
            &key,
            "--secret-file",
        ])
        .arg(&file)
        .env("ZAVRO_SECRET", "a-different-wrong-secret")
        .write_stdin("{\"from\":\"file\"}")
        .assert()
        .code(0);
    assert_eq!(env.output_lines(), ["{\"from\":\"file\"}"]);
}

#[test]
fn send_with_a_malformed_endpoint_or_option_is_a_usage_error() {
    let env = TestEnv::new();
    for args in [
        &["send", "not-an-endpoint"][..],
        &["send", "127.0.0.1:*"],
        &["send", "127.0.0.1:5555", "--timeout", "0"],
        &["send", "127.0.0.1:5555", "--batch", "0"],
        &["send", "127.0.0.1:5555", "--linger", "5"],
        &["send", "127.0.0.1:5555", "--linger", "2h"],
    ] {
        // --plaintext, so that each fails for its own reason rather than for the missing server key.
        env.zavro()
            .args(args)
            .arg("--plaintext")
            .env("ZAVRO_KEY", "ZK0123456789ABCDEF")
            .env("ZAVRO_SECRET", "some-secret-some-secret")
            .write_stdin("{\"a\":1}")
            .assert()
            .code(2);
    }
}

#[test]
fn bad_input_after_the_first_batch_exits_3_keeping_the_batches_before_it() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let input = "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\nnot json\n{\"a\":5}\n";

    let out = env
        .send_with(server.endpoint(), &key, &secret, input, &["--batch", "2"])
        .code(3);

    let stderr = stderr_of(&out);
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert!(
        stderr.contains("2 records"),
        "says how many were accepted: {stderr}"
    );
    // The batch holding the bad record ({"a":3} and the bad line) was never sent.
    assert_eq!(env.output_lines(), ["{\"a\":1}", "{\"a\":2}"]);
    assert_eq!(env.audit_sends().len(), 1);
}
