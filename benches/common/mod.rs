//! What the benchmark harnesses share: a store with a key, `zavro serve` on it (always stopped), the lockstep
//! latency `zavro bench` measures, and a process's peak resident memory.

// Each harness uses a part of this module; the rest would be dead code in that harness's crate.
#![allow(dead_code)]

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

/// The release binary `cargo bench` built.
pub const ZAVRO: &str = env!("CARGO_BIN_EXE_zavro");

/// How long a server may take to print its `listening on` line, and to exit after SIGTERM.
const SERVER_DEADLINE: Duration = Duration::from_secs(30);

/// How the servers an [`Env`] starts and the clients it runs talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// CurveZMQ, the default: clients pin the store's server key.
    Curve,
    /// `serve --plaintext` and `send --plaintext`.
    Plaintext,
}

/// A store with one key, and servers started on it.
pub struct Env {
    /// Where the store, the server's log and its output file live.
    pub dir: PathBuf,
    /// The key id `zavro` run through [`Env::zavro`] signs with.
    pub key: String,
    /// Its secret.
    pub secret: String,
    /// The store's server public key (Z85), which clients pin under CURVE.
    pub server_key: String,
    /// The transport of the servers started and clients run from now on.
    pub transport: Transport,
}

/// Acknowledgement latency percentiles of one `zavro bench` run, in µs, and what they were measured on.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Requests sent (and acknowledged).
    pub requests: u64,
    /// How long the run took, connecting included.
    pub seconds: f64,
}

impl Env {
    /// Creates `dir` and a store in it with one key.
    pub fn new(dir: &Path) -> Env {
        fs::create_dir_all(dir).expect("benchmark directory");
        let mut env = Env {
            dir: dir.to_owned(),
            key: String::new(),
            secret: String::new(),
            server_key: String::new(),
            transport: Transport::Curve,
        };
        (env.key, env.secret) = env.add_key();
        let out = Command::new(ZAVRO)
            .arg("--db")
            .arg(env.db())
            .args(["server-key", "--json"])
            .env_remove("ZAVRO_DB")
            .output()
            .unwrap();
        assert!(out.status.success(), "server-key failed");
        let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
        env.server_key = keys["current"].as_str().unwrap().to_owned();
        env
    }

    /// The same store, its servers and clients using `transport`.
    pub fn with_transport(mut self, transport: Transport) -> Env {
        self.transport = transport;
        self
    }

    /// The store's path.
    pub fn db(&self) -> PathBuf {
        self.dir.join("zavro.db")
    }

    /// `zavro keys add --json` on this store (creating it if needed): a new key id and its secret.
    pub fn add_key(&self) -> (String, String) {
        let out = Command::new(ZAVRO)
            .arg("--db")
            .arg(self.db())
            .args(["keys", "add", "--json"])
            .env_remove("ZAVRO_DB")
            .output()
            .unwrap();
        assert!(out.status.success(), "keys add failed");
        let key: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            key["key"].as_str().unwrap().to_owned(),
            key["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// `zavro --db STORE` with this key's credentials and the server key in the environment (never on the
    /// command line).
    pub fn zavro(&self) -> Command {
        let mut command = Command::new(ZAVRO);
        command
            .arg("--db")
            .arg(self.db())
            .env("ZAVRO_KEY", &self.key)
            .env("ZAVRO_SECRET", &self.secret)
            .env("ZAVRO_SERVER_KEY", &self.server_key)
            .env_remove("ZAVRO_DB");
        command
    }

    /// `zavro COMMAND` as a client (`send`, `bench`) of this environment's transport.
    pub fn client(&self, command: &str) -> Command {
        let mut client = self.zavro();
        client.arg(command);
        if self.transport == Transport::Plaintext {
            client.arg("--plaintext");
        }
        client
    }

    /// Starts a server writing its records to a file; returns it with its endpoint.
    pub fn serve(&self) -> (Server, String) {
        // The log goes to a file, as a deployment would send it to a file or the journal: a pipe read by this
        // harness would put a third process on the two cores, woken for every log line.
        let log = self.dir.join("serve.log");
        let mut serve = self.zavro();
        serve.args(["serve", "127.0.0.1:*", "--output"]);
        serve.arg(self.dir.join("out.ndjson"));
        if self.transport == Transport::Plaintext {
            serve.arg("--plaintext");
        }
        let child = serve.stderr(File::create(&log).unwrap()).spawn().unwrap();
        let server = Server(child);
        let deadline = Instant::now() + SERVER_DEADLINE;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            // `listening on ENDPOINT (TRANSPORT…)`
            let endpoint = text
                .lines()
                .find_map(|l| l.strip_prefix("listening on "))
                .and_then(|rest| rest.split_once(" ("));
            if let Some((endpoint, _)) = endpoint {
                return (server, endpoint.to_owned());
            }
            assert!(Instant::now() < deadline, "server did not start: {text}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `zavro bench ENDPOINT --batch 1 --window 1 --count COUNT --json`: one record per request, the next sent
    /// once the previous is acknowledged. Killed if it has not finished `within`; the error says why it failed.
    pub fn lockstep(
        &self,
        endpoint: &str,
        count: usize,
        within: Duration,
    ) -> Result<Latency, String> {
        let stdout = self.dir.join("lockstep.json");
        let stderr = self.dir.join("lockstep.err");
        let mut bench = self
            .client("bench")
            .args([
                endpoint, "--batch", "1", "--window", "1", "--json", "--count",
            ])
            .arg(count.to_string())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let Some(status) = wait_within(&mut bench, within) else {
            let _ = bench.kill();
            let _ = bench.wait();
            return Err(format!("not finished within {} s", within.as_secs()));
        };
        if !status.success() {
            let text = fs::read_to_string(&stderr).unwrap_or_default();
            return Err(text.lines().next().unwrap_or("failed").to_owned());
        }
        let report: Value = serde_json::from_slice(&fs::read(&stdout).unwrap()).unwrap();
        let percentile = |name: &str| report["latency_us"][name].as_f64().unwrap();
        Ok(Latency {
            p50_us: percentile("p50"),
            p99_us: percentile("p99"),
            requests: report["requests"].as_u64().unwrap(),
            seconds: report["seconds"].as_f64().unwrap(),
        })
    }
}

/// Waits for `child` to exit for at most `within`; `None` when it is still running.
fn wait_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The peak resident set (VmHWM, KiB) of process `pid` so far; `None` once it has gone.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// A running server, stopped with SIGTERM (SIGKILL if it has not exited 30 s later) when dropped.
pub struct Server(Child);

impl Server {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGTERM and waits for the exit: the time it took, or why it was not a clean exit in time.
    pub fn stop(mut self) -> Result<Duration, String> {
        let started = Instant::now();
        match self.terminate() {
            Some(status) if status.success() => Ok(started.elapsed()),
            Some(status) => Err(format!("exited with {status} after SIGTERM")),
            None => Err(format!(
                "killed: still running {} s after SIGTERM",
                SERVER_DEADLINE.as_secs()
            )),
        }
    }

    /// SIGTERM, a bounded wait, SIGKILL if needed; the exit status when the server exited by itself.
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.0.try_wait() {
            return Some(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.0.id()).expect("a pid fits in i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let status = wait_within(&mut self.0, SERVER_DEADLINE);
        if status.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}
