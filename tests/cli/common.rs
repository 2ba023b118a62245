//! Shared fixtures: a private store per test, the `zavro` binary with a clean environment, a running server
//! that is always stopped, raw ZeroMQ clients for protocol-level tests, and bounded waiting.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command as StdCommand, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use assert_cmd::{Command, assert::Assert};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use tempfile::TempDir;
use zavro::protocol::{Reply, Request};

/// How long any single condition, server start or shutdown may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Every environment variable zavro reads; removed so the developer's own settings never leak into a test.
/// `CREDENTIALS_DIRECTORY` is systemd's, where zavro looks for the master key credential.
pub const ZAVRO_VARS: [&str; 8] = [
    "ZAVRO_DB",
    "ZAVRO_KEY",
    "ZAVRO_SECRET",
    "ZAVRO_SERVER_KEY",
    "ZAVRO_PROFILE",
    "ZAVRO_COMPLETE",
    "ZAVRO_MASTER_KEY_FILE",
    "CREDENTIALS_DIRECTORY",
];

/// Path of the binary under test.
pub fn zavro_bin() -> &'static Path {
    assert_cmd::cargo::cargo_bin!("zavro")
}

/// A private store (and room for output files) in a temporary directory, removed when dropped: a SQLite file,
/// or ([`TestEnv::postgres`]) a fresh database of the test cluster with a master key file.
pub struct TestEnv {
    pub dir: TempDir,
    /// What `--db` is given: the SQLite file, or the PostgreSQL URL.
    pub db: PathBuf,
    /// The master key file every command and server is given (`ZAVRO_MASTER_KEY_FILE`): on PostgreSQL, whose
    /// secrets are always sealed.
    pub master_key: Option<PathBuf>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let db = dir.path().join("zavro.db");
        TestEnv {
            dir,
            db,
            master_key: None,
        }
    }

    /// A fresh database of the test process's PostgreSQL cluster (no zavro schema yet) and a master key file;
    /// `None` when PostgreSQL is not installed (the skip was printed).
    pub fn postgres() -> Option<TestEnv> {
        Some(TestEnv::postgres_on(crate::test_cluster::shared()?))
    }

    /// A fresh database of `cluster` (a private one, which a test may stop and start) and a master key file.
    pub fn postgres_on(cluster: &crate::test_cluster::Cluster) -> TestEnv {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let master_key = dir.path().join("master.key");
        zavro::sealed::MasterKey::generate_to(&master_key).expect("write a master key file");
        TestEnv {
            db: PathBuf::from(cluster.fresh_database()),
            dir,
            master_key: Some(master_key),
        }
    }

    /// True for a store on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.db
            .to_str()
            .is_some_and(|db| db.starts_with("postgres"))
    }

    /// The database name of a store on PostgreSQL (for `psql`).
    pub fn database(&self) -> &str {
        let url = self.db.to_str().expect("a PostgreSQL URL is text");
        crate::test_cluster::database_name(url)
    }

    /// Runs `sql` in this store's database (PostgreSQL only) and returns psql's unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let cluster = crate::test_cluster::shared().expect("a PostgreSQL store has a cluster");
        cluster.psql(self.database(), sql)
    }

    /// A path inside the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where servers started by [`TestEnv::start_server`] append accepted records.
    pub fn output_path(&self) -> PathBuf {
        self.path("out.ndjson")
    }

    /// `zavro --db <tmp>/zavro.db` with no `ZAVRO_*` variables and a timeout, so a hang fails the test.
    pub fn zavro(&self) -> Command {
        let mut cmd = bare_zavro();
        cmd.env("XDG_CONFIG_HOME", self.config_dir())
            .arg("--db")
            .arg(&self.db);
        if let Some(key) = &self.master_key {
            cmd.env("ZAVRO_MASTER_KEY_FILE", key);
        }
        cmd
    }

    /// The configuration directory `zavro` sees (XDG_CONFIG_HOME): the credentials file is `zavro/credentials`.
    pub fn config_dir(&self) -> PathBuf {
        self.path("config")
    }

    /// The credentials file `zavro` run by [`TestEnv::zavro`] reads.
    pub fn credentials_path(&self) -> PathBuf {
        self.config_dir().join("zavro").join("credentials")
    }

    /// Creates the store, empty, as `keys add` would (every other command refuses a store that does not exist).
    pub fn create_store(&self) {
        match self.db.to_str().filter(|_| self.is_postgres()) {
            Some(url) => {
                let url = zavro::store::PgUrl::parse(url).expect("the cluster's URL parses");
                zavro::store::PgStore::connect_or_create(&url).expect("create the schema");
            }
            None => {
                zavro::store::Store::open(&self.db).expect("create the store");
            }
        }
    }

    /// `keys add --json`: a new key id and its secret.
    pub fn add_key(&self) -> (String, String) {
        let out = self
            .zavro()
            .args(["keys", "add", "--json"])
            .assert()
            .success();
        let value = parse_json(&out.get_output().stdout);
        let key = value["key"].as_str().expect("keys add --json prints a key");
        let secret = value["secret"]
            .as_str()
            .expect("keys add --json prints a secret");
        assert!(key.starts_with("ZK"), "{value}");
        (key.to_owned(), secret.to_owned())
    }

    /// `zavro send ENDPOINT --plaintext` with the key and secret in ZAVRO_KEY / ZAVRO_SECRET and `stdin` as
    /// input. Plaintext, since the servers [`TestEnv::start_server`] starts are (`serve --plaintext`).
    pub fn send(&self, endpoint: &str, key: &str, secret: &str, stdin: &str) -> Assert {
        self.send_with(endpoint, key, secret, stdin, &[])
    }

    /// Like [`TestEnv::send`], with extra arguments after the endpoint.
    pub fn send_with(
        &self,
        endpoint: &str,
        key: &str,
        secret: &str,
        stdin: impl AsRef<[u8]>,
        extra: &[&str],
    ) -> Assert {
        self.zavro()
            .args(["send", endpoint, "--plaintext"])
            .args(extra)
            .env("ZAVRO_KEY", key)
            .env("ZAVRO_SECRET", secret)
            .write_stdin(stdin.as_ref())
            .assert()
    }

    /// `zavro send ENDPOINT --server-key KEY`, over CURVE, with the key and secret in ZAVRO_KEY / ZAVRO_SECRET.
    pub fn send_curve(
        &self,
        endpoint: &str,
        server_key: &str,
        key: &str,
        secret: &str,
        stdin: impl AsRef<[u8]>,
    ) -> Assert {
        self.zavro()
            .args(["send", endpoint, "--server-key", server_key])
            .env("ZAVRO_KEY", key)
            .env("ZAVRO_SECRET", secret)
            .write_stdin(stdin.as_ref())
            .assert()
    }

    /// Every audit row, oldest first, from `audit query --json --payload`.
    pub fn audit(&self) -> Vec<Value> {
        self.audit_with(&[])
    }

    /// Audit rows from `audit query --json --payload` with extra filter arguments.
    pub fn audit_with(&self, args: &[&str]) -> Vec<Value> {
        let out = self
            .zavro()
            .args(["audit", "query", "--json", "--payload"])
            .args(args)
            .assert()
            .success();
        parse_ndjson(&out.get_output().stdout)
    }

    /// The keys from `keys list --json`, oldest first (the command must succeed).
    pub fn keys(&self) -> Vec<Value> {
        let out = self
            .zavro()
            .args(["keys", "list", "--json"])
            .assert()
            .success();
        parse_ndjson(&out.get_output().stdout)
    }

    /// Audit rows of requests that reached a server (action `send`), oldest first.
    pub fn audit_sends(&self) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|row| row["action"] == "send")
            .collect()
    }

    /// How many requests the `send` rows stand for: a summary of refusals that no key vouched for counts many.
    pub fn audited_requests(&self) -> u64 {
        self.audit_sends()
            .iter()
            .map(|row| {
                row["requests"]
                    .as_u64()
                    .expect("every row says how many requests")
            })
            .sum()
    }

    /// The lines of the server output file (empty when it does not exist yet).
    pub fn output_lines(&self) -> Vec<String> {
        match std::fs::read_to_string(self.output_path()) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read the output file: {e}"),
        }
    }

    /// `zavro serve 127.0.0.1:* --output <tmp>/out.ndjson --plaintext`.
    pub fn start_server(&self) -> Server {
        Server::start(self, "127.0.0.1:*", &[])
    }
}

/// Makes each named test (a function taking a [`TestEnv`]) two tests, `NAME::sqlite` and `NAME::postgres`: the
/// same body on a SQLite store and on a fresh PostgreSQL database (skipped, saying so, without PostgreSQL).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::common::TestEnv::new());
            }

            #[test]
            fn postgres() {
                if let Some(env) = $crate::common::TestEnv::postgres() {
                    super::$name(env);
                }
            }
        }
    )*};
}
pub(crate) use on_both_backends;

/// The binary with a clean environment and a timeout, without `--db`. The configuration directory points
/// nowhere, so the developer's own credentials file is never read.
pub fn bare_zavro() -> Command {
    let mut cmd = Command::from_std(zavro_process());
    cmd.timeout(Duration::from_secs(60));
    cmd
}

/// The binary as a plain process, to spawn in the background, with the same clean environment as
/// [`bare_zavro`]: no `ZAVRO_*` variables and no credentials file of the developer's.
pub fn zavro_process() -> StdCommand {
    let mut cmd = StdCommand::new(zavro_bin());
    for var in ZAVRO_VARS {
        cmd.env_remove(var);
    }
    // The PostgreSQL password file zavro reads like libpq: a file that is not there, so the runner's ~/.pgpass is
    // never read; a test that wants one sets its own. Likewise libpq's TLS variables are not inherited.
    cmd.env("PGPASSFILE", "/nonexistent/zavro-test-pgpass");
    cmd.env_remove("PGSSLMODE");
    cmd.env_remove("PGSSLROOTCERT");
    cmd.env_remove("PGCHANNELBINDING");
    cmd.env("XDG_CONFIG_HOME", "/nonexistent/zavro-test-config");
    cmd
}

/// A running `zavro serve`; stopped (SIGTERM, then SIGKILL if it lingers) when dropped.
pub struct Server {
    child: Option<Child>,
    endpoint: String,
    server_key: Option<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// The endpoint and the server key (none for plaintext) of a `listening on ENDPOINT (NOTE)` line's rest: the
/// endpoint ends at the first " (" (a Z85 key may itself begin with "(").
pub fn parse_listening(rest: &str) -> (String, Option<String>) {
    let (endpoint, note) = rest
        .split_once(" (")
        .unwrap_or_else(|| panic!("no (transport) after the endpoint: {rest:?}"));
    let key = note
        .strip_prefix("CURVE, server key ")
        .and_then(|key| key.strip_suffix(')'))
        .map(str::to_owned);
    assert!(
        key.is_some() || note.starts_with("plaintext: "),
        "neither CURVE nor plaintext: {rest:?}"
    );
    (endpoint.to_owned(), key)
}

/// The endpoint and server key a `listening` line announces, in either log format (`--log-format json`: the
/// `listening` event's `endpoint` and `server_key`); `None` for any other line.
pub fn listening_of(line: &str) -> Option<(String, Option<String>)> {
    if let Some(rest) = line.strip_prefix("listening on ") {
        return Some(parse_listening(rest));
    }
    let event: Value = serde_json::from_str(line).ok()?;
    (event["event"] == "listening").then(|| {
        let endpoint = event["endpoint"]
            .as_str()
            .expect("a listening event has an endpoint");
        (
            endpoint.to_owned(),
            event["server_key"].as_str().map(str::to_owned),
        )
    })
}

impl Server {
    /// Starts `zavro serve ENDPOINT --output <tmp>/out.ndjson --plaintext EXTRA…` and waits for its
    /// `listening on` line: the existing tests and [`RawClient`] speak plaintext.
    pub fn start(env: &TestEnv, endpoint: &str, extra: &[&str]) -> Server {
        Server::start_with_output(env, endpoint, &env.output_path(), extra)
    }

    /// [`Server::start`] with the records written to `output`.
    pub fn start_with_output(
        env: &TestEnv,
        endpoint: &str,
        output: &Path,
        extra: &[&str],
    ) -> Server {
        let args: Vec<&str> = ["--plaintext"].iter().chain(extra).copied().collect();
        Server::spawn(env, endpoint, output, &args)
    }

    /// Starts `zavro serve ENDPOINT --output <tmp>/out.ndjson EXTRA…` as it runs by default, over CURVE;
    /// [`Server::server_key`] is the key its `listening on` line announced.
    pub fn start_curve(env: &TestEnv, endpoint: &str, extra: &[&str]) -> Server {
        let server = Server::spawn(env, endpoint, &env.output_path(), extra);
        assert!(
            server.server_key.is_some(),
            "serve did not announce a server key: {:?}",
            server.stderr_lines()
        );
        server
    }

    fn spawn(env: &TestEnv, endpoint: &str, output: &Path, extra: &[&str]) -> Server {
        let mut cmd = zavro_process();
        if let Some(key) = &env.master_key {
            cmd.env("ZAVRO_MASTER_KEY_FILE", key);
        }
        cmd.arg("--db")
            .arg(&env.db)
            .args(["serve", endpoint, "--output"])
            .arg(output)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn zavro serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        // Always drain stderr so the server never blocks on a full pipe.
        let reader = {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let bound = listening_of(&line);
                    // Kept before the start is reported, so the line is among stderr_lines() once start returns.
                    lines.lock().unwrap().push(line);
                    if let Some(bound) = bound {
                        let _ = tx.send(bound);
                    }
                }
            })
        };
        let mut server = Server {
            child: Some(child),
            endpoint: String::new(),
            server_key: None,
            stderr: lines,
            reader: Some(reader),
        };
        match rx.recv_timeout(DEADLINE) {
            Ok(bound) => (server.endpoint, server.server_key) = bound,
            Err(_) => panic!(
                "zavro serve {endpoint} printed no `listening on` line within {DEADLINE:?}; stderr: {:?}",
                server.stderr_lines()
            ),
        }
        server
    }

    /// The endpoint from the `listening on` line, e.g. `tcp://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The server public key (Z85) the `listening on` line announced; `None` for a plaintext server.
    pub fn server_key(&self) -> Option<&str> {
        self.server_key.as_deref()
    }

    /// The stderr lines read so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's peak resident set size in KiB (VmHWM from /proc).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmHWM line in kB")
    }

    /// True once the server process has ended by itself.
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|child| matches!(child.try_wait(), Ok(Some(_))))
    }

    /// The OS process id.
    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("server still running");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
    }

    /// Sends SIGTERM and waits (bounded) for the exit; panics if the server does not stop in time.
    pub fn stop(mut self) -> ExitStatus {
        let status = self.terminate();
        status.unwrap_or_else(|| {
            panic!(
                "zavro serve did not exit within {DEADLINE:?} of SIGTERM; stderr: {:?}",
                self.stderr_lines()
            )
        })
    }

    /// Like [`Server::stop`], also returning every stderr line the server printed.
    pub fn stop_with_stderr(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.terminate();
        let lines = self.stderr_lines();
        let status = status.unwrap_or_else(|| {
            panic!("zavro serve did not exit within {DEADLINE:?} of SIGTERM; stderr: {lines:?}")
        });
        (status, lines)
    }

    /// SIGTERM, bounded wait, SIGKILL if needed; then joins the stderr reader. `None` when it had to be killed.
    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A file of tests/fixtures/fastavro: written by another Avro implementation (see generate.py there).
pub fn fastavro_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fastavro")
        .join(name)
}

/// Polls `condition` until it holds, panicking with `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn parse_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// One JSON value per non-empty line.
pub fn parse_ndjson(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .expect("UTF-8 output")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| parse_json(line.as_bytes()))
        .collect()
}

/// The compact JSON text the server writes for a record (object keys keep their order).
pub fn compact(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON values serialize")
}

pub fn stderr_of(assert: &Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

pub fn stdout_of(assert: &Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// A request for `records`, signed with the library exactly as `zavro send` signs, at `timestamp`.
pub fn signed_request(key: &str, secret: &str, timestamp: i64, records: &[Value]) -> Request {
    let payload = zavro::avro::encode(records).expect("records encode as Avro");
    let nonce = zavro::credentials::new_nonce().expect("a random nonce");
    Request::sign(key, secret.as_bytes(), timestamp, &nonce, payload)
}

/// A request for `records` signed now.
pub fn signed_now(key: &str, secret: &str, records: &[Value]) -> Request {
    signed_request(key, secret, zavro::timestamp::now_seconds(), records)
}

/// A raw ZeroMQ client socket with bounded waits.
pub struct RawClient {
    _context: zmq::Context,
    socket: zmq::Socket,
    /// For a CURVE client: the socket's monitor, which reports how its handshakes end.
    monitor: Option<zmq::Socket>,
}

/// How a CURVE client's handshake ended, as its socket monitor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The server admitted the client.
    Succeeded,
    /// The server refused the client's credentials (its ZAP handler said no).
    RefusedAuth,
    /// Another failure: ZeroMQ's event number.
    Failed(u16),
}

/// The monitor events a CURVE client listens for: how handshakes end.
const HANDSHAKE_EVENTS: [zmq::SocketEvent; 4] = [
    zmq::SocketEvent::HANDSHAKE_SUCCEEDED,
    zmq::SocketEvent::HANDSHAKE_FAILED_AUTH,
    zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL,
    zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL,
];

impl RawClient {
    pub fn req(endpoint: &str) -> RawClient {
        RawClient::connect(endpoint, zmq::REQ, |_, _| None)
    }

    pub fn dealer(endpoint: &str) -> RawClient {
        RawClient::connect(endpoint, zmq::DEALER, |_, _| None)
    }

    /// A DEALER that connects over CURVE: it pins `server_key` (Z85, as `serve` announces it) and proves
    /// `client`'s key pair (for an API key, `KeyPair::for_client(key, secret)`), watching how handshakes end.
    pub fn curve_dealer(
        endpoint: &str,
        server_key: &str,
        client: &zavro::curve::KeyPair,
    ) -> RawClient {
        let server_key = zavro::curve::decode(server_key).expect("a Z85 server key");
        RawClient::connect(endpoint, zmq::DEALER, |context, socket| {
            socket
                .set_curve_serverkey(&server_key)
                .expect("set server key");
            socket
                .set_curve_publickey(&client.public)
                .expect("set client public key");
            socket
                .set_curve_secretkey(client.secret())
                .expect("set client secret key");
            let events = HANDSHAKE_EVENTS
                .iter()
                .fold(0, |all, event| all | i32::from(event.to_raw()));
            // Each client has a context of its own, so the name need not be unique.
            let address = "inproc://handshake-monitor";
            socket.monitor(address, events).expect("monitor the socket");
            let monitor = context.socket(zmq::PAIR).expect("create monitor socket");
            monitor.connect(address).expect("connect the monitor");
            Some(monitor)
        })
    }

    /// A socket of `kind` connected to `endpoint` once `setup` (which may return a monitor) has run.
    fn connect(
        endpoint: &str,
        kind: zmq::SocketType,
        setup: impl FnOnce(&zmq::Context, &zmq::Socket) -> Option<zmq::Socket>,
    ) -> RawClient {
        let context = zmq::Context::new();
        let socket = context.socket(kind).expect("create socket");
        socket.set_linger(0).expect("set linger");
        socket
            .set_sndtimeo(i32::try_from(DEADLINE.as_millis()).unwrap())
            .expect("set send timeout");
        let monitor = setup(&context, &socket);
        socket.connect(endpoint).expect("connect");
        RawClient {
            _context: context,
            socket,
            monitor,
        }
    }

    /// How the next handshake of this CURVE client ends; panics when none ends within [`DEADLINE`].
    pub fn handshake(&self) -> Handshake {
        let monitor = self.monitor.as_ref().expect("a CURVE client has a monitor");
        monitor
            .set_rcvtimeo(i32::try_from(DEADLINE.as_millis()).unwrap())
            .expect("set monitor timeout");
        let event = loop {
            match monitor.recv_multipart(0) {
                Ok(frames) => break frames,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => panic!("no handshake ended within {DEADLINE:?}: {e}"),
            }
        };
        let number = event
            .first()
            .and_then(|frame| frame.get(..2))
            .map(|bytes| u16::from_ne_bytes([bytes[0], bytes[1]]))
            .expect("a monitor event starts with its number");
        match number {
            n if n == zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw() => Handshake::Succeeded,
            n if n == zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw() => Handshake::RefusedAuth,
            n => Handshake::Failed(n),
        }
    }

    pub fn send(&self, frames: &[Vec<u8>]) {
        self.socket
            .send_multipart(frames, 0)
            .expect("send a request");
    }

    /// The next message, or `None` when nothing arrives within `timeout`.
    pub fn try_recv(&self, timeout: Duration) -> Option<Vec<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let millis = i64::try_from(left.as_millis()).unwrap();
            // A signal may interrupt the wait (EINTR); wait again for what is left.
            match self.socket.poll(zmq::POLLIN, millis) {
                Ok(0) => return None,
                Ok(_) => return Some(self.socket.recv_multipart(0).expect("receive a reply")),
                Err(zmq::Error::EINTR) => continue,
                Err(e) => panic!("poll: {e}"),
            }
        }
    }

    /// The next message; panics when none arrives within [`DEADLINE`].
    pub fn recv(&self) -> Vec<Vec<u8>> {
        self.try_recv(DEADLINE)
            .unwrap_or_else(|| panic!("no reply within {DEADLINE:?}"))
    }

    /// For a REQ socket: sends the frames and returns the single reply frame, parsed.
    pub fn request(&self, frames: &[Vec<u8>]) -> Reply {
        self.send(frames);
        let reply = self.recv();
        assert_eq!(reply.len(), 1, "a reply is one frame: {reply:?}");
        Reply::from_frame(&reply[0]).unwrap_or_else(|e| {
            panic!(
                "reply is not protocol JSON ({e}): {}",
                String::from_utf8_lossy(&reply[0])
            )
        })
    }
}

/// Sends `frames` on a fresh REQ socket and returns the reply.
pub fn request_once(endpoint: &str, frames: &[Vec<u8>]) -> Reply {
    RawClient::req(endpoint).request(frames)
}

/// The code of a rejected reply; panics on an accepted one.
pub fn reject_code(reply: &Reply) -> &'static str {
    match reply {
        Reply::Rejected { code, .. } => code.as_str(),
        Reply::Accepted { .. } => panic!("expected a rejection, got {reply:?}"),
    }
}

/// Panics unless the reply accepted `records` records.
pub fn assert_accepted(reply: &Reply, records: u64) {
    assert!(
        matches!(reply, Reply::Accepted { records: n, .. } if *n == records),
        "expected {records} records accepted, got {reply:?}"
    );
}
