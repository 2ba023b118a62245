//! What the benchmark harnesses share: a store with a key (a SQLite file, or a database of a throwaway
//! PostgreSQL cluster), `zavro serve` on it (always stopped), the lockstep latency `zavro bench` measures, and a
//! process's CPU time and peak resident memory.

// Each harness uses a part of this module; the rest would be dead code in that harness's crate.
#![allow(dead_code)]

mod postgres;
// The cluster the tests use (initdb into a temporary directory, Unix socket only, fsync on), shared as the CLI
// tests share it.
#[path = "../../src/store/postgres/test_cluster.rs"]
mod test_cluster;

// Only the harnesses that measure PostgreSQL use these.
#[allow(unused_imports)]
pub use postgres::{PgCluster, StatementStats, WalStats};

use std::{
    ffi::OsString,
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
use zavro::bench::Percentiles;

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

/// Where an [`Env`]'s store is.
#[derive(Clone, Debug)]
pub enum StoreAt {
    /// A SQLite file, unsealed (the default store).
    Sqlite(PathBuf),
    /// A PostgreSQL database, whose secrets are always sealed under the master key in `master_key_file`.
    Postgres {
        /// The database's URL (no password: the throwaway cluster trusts its Unix socket).
        url: String,
        /// The master key file `keys add` and `serve` read.
        master_key_file: PathBuf,
    },
}

/// A store with one key, and servers started on it.
pub struct Env {
    /// Where the store (when SQLite), the master key file, the servers' logs and output files live.
    pub dir: PathBuf,
    /// The store.
    pub store: StoreAt,
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
    /// Creates `dir` and a SQLite store in it with one key.
    pub fn new(dir: &Path) -> Env {
        fs::create_dir_all(dir).expect("benchmark directory");
        let mut env = Env {
            dir: dir.to_owned(),
            store: StoreAt::Sqlite(dir.join("zavro.db")),
            key: String::new(),
            secret: String::new(),
            server_key: String::new(),
            transport: Transport::Curve,
        };
        (env.key, env.secret) = env.add_key();
        let out = env
            .store_command()
            .args(["server-key", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "server-key failed");
        let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
        env.server_key = keys["current"].as_str().unwrap().to_owned();
        env
    }

    /// Creates `dir` with a new master key file in it, and a store with one key in the (empty) PostgreSQL
    /// database at `url`, sealed under that master key.
    pub fn on_postgres(dir: &Path, url: String) -> Env {
        fs::create_dir_all(dir).expect("benchmark directory");
        let master_key_file = dir.join("master.key");
        zavro::sealed::MasterKey::generate_to(&master_key_file).expect("write a master key file");
        let mut env = Env {
            dir: dir.to_owned(),
            store: StoreAt::Postgres {
                url,
                master_key_file,
            },
            key: String::new(),
            secret: String::new(),
            server_key: String::new(),
            transport: Transport::Curve,
        };
        (env.key, env.secret) = env.add_key();
        // The server key the store's servers present (made on first use), from a server's start-up line: it is
        // what clients must pin, whichever of the store commands run on PostgreSQL.
        let (server, _, server_key) = env.start_server(Some("probe"), &[]);
        env.server_key = server_key.expect("a CURVE server prints its key");
        server.stop().expect("the probing server stops cleanly");
        env
    }

    /// The same store, its servers and clients using `transport`.
    pub fn with_transport(mut self, transport: Transport) -> Env {
        self.transport = transport;
        self
    }

    /// The SQLite store's path.
    pub fn db(&self) -> PathBuf {
        match &self.store {
            StoreAt::Sqlite(path) => path.clone(),
            StoreAt::Postgres { .. } => panic!("this environment's store is on PostgreSQL"),
        }
    }

    /// What `--db` names: the SQLite file or the PostgreSQL URL.
    pub fn db_arg(&self) -> OsString {
        match &self.store {
            StoreAt::Sqlite(path) => path.clone().into(),
            StoreAt::Postgres { url, .. } => url.into(),
        }
    }

    /// `zavro --db STORE`, with the master key file (named by `ZAVRO_MASTER_KEY_FILE`, the key itself never on
    /// the command line) when the store is sealed.
    pub fn store_command(&self) -> Command {
        let mut command = Command::new(ZAVRO);
        command
            .arg("--db")
            .arg(self.db_arg())
            .env_remove("ZAVRO_DB");
        match &self.store {
            StoreAt::Sqlite(_) => command.env_remove("ZAVRO_MASTER_KEY_FILE"),
            StoreAt::Postgres {
                master_key_file, ..
            } => command.env("ZAVRO_MASTER_KEY_FILE", master_key_file),
        };
        command
    }

    /// `zavro keys add --json` on this store (creating it if needed): a new key id and its secret.
    pub fn add_key(&self) -> (String, String) {
        let out = self
            .store_command()
            .args(["keys", "add", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keys add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            key["key"].as_str().unwrap().to_owned(),
            key["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// `zavro --db STORE` with this key's credentials and the server key in the environment (never on the
    /// command line).
    pub fn zavro(&self) -> Command {
        let mut command = self.store_command();
        command
            .env("ZAVRO_KEY", &self.key)
            .env("ZAVRO_SECRET", &self.secret)
            .env("ZAVRO_SERVER_KEY", &self.server_key);
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
        let (server, endpoint, _) = self.start_server(None, &[]);
        (server, endpoint)
    }

    /// Starts a server with `extra` arguments after the usual ones; returns it, its endpoint, and its log
    /// (`serve.log`, its stderr).
    pub fn serve_with(&self, extra: &[&str]) -> (Server, String, PathBuf) {
        let (server, endpoint, _) = self.start_server(None, extra);
        (server, endpoint, self.dir.join("serve.log"))
    }

    /// Starts a server `serve --name NAME` on its own OS-picked port, with its own log and output file
    /// (`serve-NAME.log`, `out-NAME.ndjson`); returns it with its endpoint.
    pub fn serve_named(&self, name: &str) -> (Server, String) {
        let (server, endpoint, key) = self.start_server(Some(name), &[]);
        if let Some(key) = key {
            assert_eq!(
                key, self.server_key,
                "server {name} presents another key than the store's other servers"
            );
        }
        (server, endpoint)
    }

    /// Starts a server (named `name` when given, with `extra` arguments) and waits for its start-up line: the server, its endpoint, and
    /// the server key it presents under CURVE.
    fn start_server(&self, name: Option<&str>, extra: &[&str]) -> (Server, String, Option<String>) {
        let suffix = name.map(|n| format!("-{n}")).unwrap_or_default();
        // The log goes to a file, as a deployment would send it to a file or the journal: a pipe read by this
        // harness would put a third process on the two cores, woken for every log line.
        let log = self.dir.join(format!("serve{suffix}.log"));
        let mut serve = self.zavro();
        serve.args(["serve", "127.0.0.1:*", "--output"]);
        serve.arg(self.dir.join(format!("out{suffix}.ndjson")));
        if let Some(name) = name {
            serve.args(["--name", name]);
        }
        if self.transport == Transport::Plaintext {
            serve.arg("--plaintext");
        }
        serve.args(extra);
        let child = serve.stderr(File::create(&log).unwrap()).spawn().unwrap();
        let mut server = Server(child);
        let deadline = Instant::now() + SERVER_DEADLINE;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            // `listening on ENDPOINT (CURVE, server key KEY)` or `listening on ENDPOINT (plaintext…)`
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("listening on "))
                .and_then(|rest| rest.split_once(" ("));
            if let Some((endpoint, rest)) = line {
                let key = rest
                    .strip_prefix("CURVE, server key ")
                    .and_then(|k| k.strip_suffix(')'))
                    .map(str::to_owned);
                return (server, endpoint.to_owned(), key);
            }
            assert!(server.running(), "server exited before listening: {text}");
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
        let mut latencies = self.lockstep_each(&[endpoint.to_owned()], count, within)?;
        Ok(latencies.remove(0))
    }

    /// [`Env::lockstep`] against each of `endpoints` at once, one `zavro bench` client per endpoint, started
    /// together: their latencies, in the order of `endpoints`.
    pub fn lockstep_each(
        &self,
        endpoints: &[String],
        count: usize,
        within: Duration,
    ) -> Result<Vec<Latency>, String> {
        let files = |i: usize| {
            (
                self.dir.join(format!("lockstep-{i}.json")),
                self.dir.join(format!("lockstep-{i}.err")),
            )
        };
        let mut clients: Vec<Child> = endpoints
            .iter()
            .enumerate()
            .map(|(i, endpoint)| {
                let (stdout, stderr) = files(i);
                self.client("bench")
                    .args([
                        endpoint, "--batch", "1", "--window", "1", "--json", "--count",
                    ])
                    .arg(count.to_string())
                    .stdout(File::create(&stdout).unwrap())
                    .stderr(File::create(&stderr).unwrap())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let deadline = Instant::now() + within;
        let statuses: Vec<_> = clients
            .iter_mut()
            .map(|client| wait_within(client, deadline.saturating_duration_since(Instant::now())))
            .collect();
        if statuses.iter().any(Option::is_none) {
            for (client, status) in clients.iter_mut().zip(&statuses) {
                if status.is_none() {
                    let _ = client.kill();
                    let _ = client.wait();
                }
            }
            return Err(format!("not finished within {} s", within.as_secs()));
        }
        let mut latencies = Vec::new();
        for (i, status) in statuses.into_iter().flatten().enumerate() {
            let (stdout, stderr) = files(i);
            if !status.success() {
                let text = fs::read_to_string(&stderr).unwrap_or_default();
                return Err(text.lines().next().unwrap_or("failed").to_owned());
            }
            let report: Value = serde_json::from_slice(&fs::read(&stdout).unwrap()).unwrap();
            let percentile = |name: &str| report["latency_us"][name].as_f64().unwrap();
            latencies.push(Latency {
                p50_us: percentile("p50"),
                p99_us: percentile("p99"),
                requests: report["requests"].as_u64().unwrap(),
                seconds: report["seconds"].as_f64().unwrap(),
            });
        }
        Ok(latencies)
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

/// `USER_HZ`: the unit of the CPU times in /proc/PID/stat, 100 on every Linux architecture (proc(5)).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// What /proc/PID/stat says of a process's CPU time, in seconds (all its threads).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcCpu {
    /// Its parent's process id.
    pub parent: u32,
    /// User and system time of the process itself.
    pub own: f64,
    /// User and system time of its children that have exited and that it has waited for.
    pub reaped_children: f64,
}

/// The CPU times of process `pid`; `None` once it has gone.
pub fn proc_cpu(pid: u32) -> Option<ProcCpu> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces) comes field 3 (the state); the parent is field 4, utime
    // and stime are fields 14 and 15, cutime and cstime 16 and 17.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let seconds = |ticks: u64| ticks as f64 / CLOCK_TICKS_PER_SECOND;
    Some(ProcCpu {
        parent: u32::try_from(field(4)?).ok()?,
        own: seconds(field(14)? + field(15)?),
        reaped_children: seconds(field(16)? + field(17)?),
    })
}

/// CPU seconds (user and system, all threads) process `pid` has used so far; `None` once it has gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    proc_cpu(pid).map(|cpu| cpu.own)
}

/// CPU seconds (user and system) of this process's children that have exited and been waited for. The
/// difference around one child's wait is that child's CPU time, when no other child is waited for meanwhile.
pub fn reaped_children_cpu_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage of this process's children");
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    seconds(usage.user_time()) + seconds(usage.system_time())
}

/// A fresh SQLite file in WAL mode with `synchronous=FULL` (durable commits, as zavro's store) and a table `t`.
pub fn durable_table(path: &Path) -> rusqlite::Connection {
    let _ = fs::remove_file(path);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)",
    )
    .unwrap();
    conn
}

/// Inserts one row in its own durable transaction.
pub fn commit_one_row(conn: &rusqlite::Connection, value: &[u8]) {
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn.prepare_cached("INSERT INTO t (v) VALUES (?1)")
        .unwrap()
        .execute([value])
        .unwrap();
    conn.execute_batch("COMMIT").unwrap();
}

/// p50 in µs of inserting one row in its own durable transaction, as a lockstep request needs.
pub fn sqlite_single_row_commit(path: &Path, commits: usize) -> f64 {
    let conn = durable_table(path);
    let mut samples = Vec::with_capacity(commits);
    for i in 0..commits {
        let started = Instant::now();
        commit_one_row(&conn, format!("row {i}").as_bytes());
        samples.push(started.elapsed());
    }
    micros(Percentiles::of(&mut samples).unwrap().p50)
}

/// A duration in µs.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
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
    /// A server process started elsewhere (under valgrind, say), stopped as the others are.
    pub fn adopt(child: Child) -> Server {
        Server(child)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it has not exited yet.
    fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
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

/// Writes `count` NDJSON records of about `size` bytes ([`zavro::bench::record`]); returns the file's size.
pub fn write_ndjson(path: &Path, count: usize, size: usize) -> u64 {
    use std::io::{BufWriter, Write};
    let mut out = BufWriter::new(File::create(path).unwrap());
    for i in 0..count {
        serde_json::to_writer(&mut out, &zavro::bench::record(i as u64, size)).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    fs::metadata(path).unwrap().len()
}

/// The median of measured values (the upper one of an even count).
pub fn middle(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// /proc/loadavg's 1-, 5- and 15-minute load averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The number after `flag` on the harness's command line (`-- --runs 5`), at least 1; `default` when the flag
/// is absent or not followed by a number.
pub fn number_arg(flag: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(default)
        .max(1)
}
