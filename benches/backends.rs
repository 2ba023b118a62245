//! PostgreSQL beside SQLite (issue 16, BENCHMARKS.md): end-to-end throughput and lockstep latency of `zavro serve`
//! on a SQLite store, on a PostgreSQL database with one server, and with two servers on that one database (`send`
//! given both endpoints, one lockstep client per server), measured in one run, the scenarios alternating round by
//! round; and where the time goes: the CPU time of `send`, of each `serve` and of the whole PostgreSQL cluster,
//! the WAL's fsyncs and their time, the transactions per request, and (in one more run with `pg_stat_statements`
//! on) the statements a group sends.
//!
//! `cargo bench --bench backends` runs it; `-- --runs N` sets the rounds (default 3; medians reported). It starts
//! one throwaway PostgreSQL cluster for the whole run (the tests' cluster: `initdb` into a temporary directory on
//! the file system of the SQLite stores, Unix socket only, fsync and synchronous_commit on), a database per
//! scenario, and stops and removes it at the end. Servers listen on 127.0.0.1 on ports the OS picks.

use std::{
    fs::{self, File},
    os::unix::fs::MetadataExt,
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

mod common;

use common::{
    Env, Latency, PgCluster, Server, StoreAt, WalStats, cpu_seconds, load_average, micros, middle,
    number_arg, reaped_children_cpu_seconds, sqlite_single_row_commit, write_ndjson,
};
use zavro::bench::Percentiles;

/// Bytes of JSON per record, about.
const RECORD_SIZE: usize = 150;

/// Records per request: `send`'s default `--batch`.
const BATCH: usize = 1_000;

/// Durable single-row commits per baseline measurement.
const SINGLE_ROW_COMMITS: usize = 1_000;

/// Longest a client may run before the harness gives up on it.
const CLIENT_DEADLINE: Duration = Duration::from_secs(600);

/// How much to measure: `--runs N` (rounds), `--records N` (per end-to-end run), `--requests N` (per lockstep
/// client).
struct Settings {
    rounds: usize,
    records: usize,
    lockstep_requests: usize,
}

impl Settings {
    fn from_args() -> Settings {
        Settings {
            rounds: number_arg("--runs", 3),
            records: number_arg("--records", 1_000_000),
            lockstep_requests: number_arg("--requests", 2_000),
        }
    }
}

fn main() {
    let settings = Settings::from_args();
    let rounds = settings.rounds;
    let dir = tempfile::tempdir().expect("temporary directory");
    println!(
        "zavro store backends: SQLite and PostgreSQL, {rounds} rounds, scenarios alternating, medians reported"
    );
    println!(
        "machine: {} cores shared by clients, servers and PostgreSQL; load average at the start: {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let Some(cluster) = PgCluster::start() else {
        println!(
            "PostgreSQL is not installed (Debian: apt-get install postgresql): nothing to compare"
        );
        return;
    };
    let same_disk = device(dir.path()) == device(cluster.dir());
    println!(
        "{}, cluster in {}, SQLite stores in {}: {}",
        cluster.version(),
        cluster.dir().display(),
        dir.path().display(),
        if same_disk {
            "the same file system"
        } else {
            "DIFFERENT file systems: the fsync costs do not compare"
        }
    );

    let scenarios = [
        Scenario::sqlite(&dir.path().join("sqlite")),
        Scenario::postgres(
            "PostgreSQL, 1 server",
            &cluster,
            &dir.path().join("pg1"),
            &["a"],
        ),
        Scenario::postgres(
            "PostgreSQL, 2 servers",
            &cluster,
            &dir.path().join("pg2"),
            &["a", "b"],
        ),
    ];
    let input = dir.path().join("records.ndjson");
    let records = settings.records;
    let requests = settings.lockstep_requests;
    let bytes = write_ndjson(&input, records, RECORD_SIZE);
    println!(
        "input: {records} NDJSON records, {:.1} MB ({} bytes per record on average), sent with `send`'s defaults; \
         lockstep: {requests} requests per client\n",
        bytes as f64 / 1e6,
        bytes / records as u64
    );
    let commit_url = cluster.fresh_database();

    let mut end_to_end: Vec<Vec<Run<f64>>> = scenarios.iter().map(|_| Vec::new()).collect();
    let mut lockstep: Vec<Vec<Run<Vec<Latency>>>> = scenarios.iter().map(|_| Vec::new()).collect();
    let mut sqlite_commit = Vec::new();
    let mut postgres_commit = Vec::new();
    let mut postgres_round_trip = Vec::new();
    for round in 0..rounds {
        // Each round starts with another scenario, so that none always follows the same one.
        let order: Vec<usize> = (0..scenarios.len())
            .map(|i| (i + round) % scenarios.len())
            .collect();
        for &i in &order {
            let run = scenarios[i].end_to_end(&cluster, &input, records);
            println!(
                "round {}: {:<22} end to end {:>9.0} records/s",
                round + 1,
                scenarios[i].name,
                run.result
            );
            end_to_end[i].push(run);
        }
        for &i in &order {
            let run = scenarios[i].lockstep(&cluster, requests);
            println!(
                "round {}: {:<22} lockstep p50 {}",
                round + 1,
                scenarios[i].name,
                run.result
                    .iter()
                    .map(|l| format!("{:.1} µs (p99 {:.1})", l.p50_us, l.p99_us))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            lockstep[i].push(run);
        }
        cluster.checkpoint();
        sqlite_commit.push(sqlite_single_row_commit(
            &dir.path().join("commit.db"),
            SINGLE_ROW_COMMITS,
        ));
        let (commit, round_trip) =
            postgres_single_row_commit(&cluster, &commit_url, SINGLE_ROW_COMMITS);
        postgres_commit.push(commit);
        postgres_round_trip.push(round_trip);
    }
    println!(
        "load average at the end of the timed rounds: {}",
        load_average()
    );

    report(&scenarios, &end_to_end, &lockstep, &settings);
    println!(
        "\ndurable single-row commit p50 (one INSERT per transaction, for scale): SQLite (WAL, synchronous=FULL) \
         {:.1} µs, PostgreSQL (over its Unix socket) {:.1} µs",
        middle(sqlite_commit),
        middle(postgres_commit)
    );
    println!(
        "PostgreSQL round trip p50 (a prepared `SELECT 1`, no transaction to commit): {:.1} µs",
        middle(postgres_round_trip)
    );

    println!("\nstatements per group (one more run of each, with pg_stat_statements counting)");
    for (name, servers) in [
        ("PostgreSQL, 1 server", &["a"][..]),
        ("PostgreSQL, 2 servers", &["a", "b"]),
    ] {
        let dir = dir.path().join(format!("statements-{}", servers.len()));
        let url = cluster.fresh_database_with_statements();
        let scenario = Scenario {
            name,
            env: Env::on_postgres(&dir, url),
            servers: servers.to_vec(),
        };
        cluster.psql("postgres", "SELECT pg_stat_statements_reset();");
        let run = scenario.end_to_end(&cluster, &input, records);
        let batches = records.div_ceil(BATCH) as f64;
        print_statements(&cluster, &scenario, "end to end", batches, &run);
        cluster.psql("postgres", "SELECT pg_stat_statements_reset();");
        let run = scenario.lockstep(&cluster, requests);
        let all = (requests * servers.len()) as f64;
        print_statements(&cluster, &scenario, "lockstep", all, &run);
    }

    let postmaster = cluster.dir().join("data").join("postmaster.pid");
    drop(cluster);
    println!(
        "\nPostgreSQL cluster stopped and removed: {}",
        if postmaster.exists() {
            "NOT removed"
        } else {
            "yes"
        }
    );
}

/// A store and the servers each run starts on it.
struct Scenario {
    /// How the report names it.
    name: &'static str,
    /// The store, its key and its server key.
    env: Env,
    /// The servers' names (`serve --name`), one server each.
    servers: Vec<&'static str>,
}

/// One timed run: what it measured, and what it cost whom.
struct Run<T> {
    /// Records/s end to end, or the lockstep clients' latencies.
    result: T,
    /// Wall-clock seconds of the clients.
    seconds: f64,
    /// CPU seconds of the clients (`send`, or the lockstep `zavro bench` processes).
    client_cpu: f64,
    /// CPU seconds of each server while the clients ran.
    serve_cpu: Vec<f64>,
    /// On PostgreSQL: CPU seconds of all the cluster's processes while the clients ran.
    database_cpu: Option<f64>,
    /// On PostgreSQL: the WAL counters from before the servers started to after their backends had gone.
    wal: Option<WalStats>,
    /// On PostgreSQL: transactions committed in the database, over the same span.
    commits: Option<u64>,
}

impl Scenario {
    /// One server on a fresh SQLite store in `dir` (unsealed: SQLite's default).
    fn sqlite(dir: &Path) -> Scenario {
        Scenario {
            name: "SQLite, 1 server",
            env: Env::new(dir),
            servers: vec!["a"],
        }
    }

    /// `servers` on one fresh database of `cluster`, sealed under a master key file in `dir`.
    fn postgres(
        name: &'static str,
        cluster: &PgCluster,
        dir: &Path,
        servers: &[&'static str],
    ) -> Scenario {
        Scenario {
            name,
            env: Env::on_postgres(dir, cluster.fresh_database()),
            servers: servers.to_vec(),
        }
    }

    /// The database's URL, on PostgreSQL.
    fn url(&self) -> Option<&str> {
        match &self.env.store {
            StoreAt::Sqlite(_) => None,
            StoreAt::Postgres { url, .. } => Some(url),
        }
    }

    /// `zavro send ENDPOINT… < input` with its defaults into this scenario's servers: records/s from its start to
    /// its exit (every record acknowledged, so committed).
    fn end_to_end(&self, cluster: &PgCluster, input: &Path, records: usize) -> Run<f64> {
        let run = self.measure(cluster, |endpoints| {
            let started = Instant::now();
            let status = self
                .env
                .client("send")
                .args(endpoints)
                .stdin(File::open(input).unwrap())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            let seconds = started.elapsed().as_secs_f64();
            assert!(status.success(), "send failed ({status})");
            (records as f64 / seconds, seconds)
        });
        for name in &self.servers {
            // Nothing reads the servers' output; the next run writes its own.
            let _ = fs::remove_file(self.env.dir.join(format!("out-{name}.ndjson")));
        }
        run
    }

    /// One lockstep client (`zavro bench --batch 1 --window 1`) per server, all at once.
    fn lockstep(&self, cluster: &PgCluster, requests: usize) -> Run<Vec<Latency>> {
        self.measure(cluster, |endpoints| {
            let latencies = self
                .env
                .lockstep_each(endpoints, requests, CLIENT_DEADLINE)
                .unwrap_or_else(|e| panic!("{}: lockstep failed: {e}", self.name));
            let seconds = latencies.iter().map(|l| l.seconds).fold(0.0, f64::max);
            (latencies, seconds)
        })
    }

    /// Starts the servers, runs `clients` against their endpoints (it returns its result and the seconds it
    /// took), stops the servers, and says what the clients, the servers and the database used meanwhile.
    fn measure<T>(
        &self,
        cluster: &PgCluster,
        clients: impl FnOnce(&[String]) -> (T, f64),
    ) -> Run<T> {
        // Every run starts with the database's dirty buffers written out, whichever scenario ran before.
        cluster.checkpoint();
        let wal_before = self.url().map(|_| cluster.wal());
        let commits_before = self.url().map(|url| cluster.commits(url));
        let servers: Vec<(Server, String)> = self
            .servers
            .iter()
            .map(|name| self.env.serve_named(name))
            .collect();
        let endpoints: Vec<String> = servers.iter().map(|(_, e)| e.clone()).collect();
        let serve_cpu = || -> Vec<f64> {
            servers
                .iter()
                .map(|(s, _)| cpu_seconds(s.pid()).expect("a server exited during the run"))
                .collect()
        };
        let serve_before = serve_cpu();
        let database_before = cluster.cpu_seconds();
        // Only the clients are waited for in between, so this difference is their CPU time.
        let clients_before = reaped_children_cpu_seconds();
        let (result, seconds) = clients(&endpoints);
        let client_cpu = reaped_children_cpu_seconds() - clients_before;
        let database_cpu = cluster.cpu_seconds() - database_before;
        let serve_after = serve_cpu();
        for (server, _) in servers {
            if let Err(e) = server.stop() {
                panic!("{}: a server did not stop cleanly: {e}", self.name);
            }
        }
        let (wal, commits) = match self.url() {
            Some(url) => {
                // A backend's WAL statistics reach the shared counters by the time it has exited.
                cluster.wait_until_idle(url);
                (
                    wal_before.map(|before| cluster.wal().since(&before)),
                    commits_before.map(|before| cluster.commits(url) - before),
                )
            }
            None => (None, None),
        };
        Run {
            result,
            seconds,
            client_cpu,
            serve_cpu: serve_after
                .iter()
                .zip(&serve_before)
                .map(|(after, before)| after - before)
                .collect(),
            database_cpu: self.url().map(|_| database_cpu),
            wal,
            commits,
        }
    }
}

/// Prints the medians of the rounds: the table, the ratios against the targets, and where the time goes.
fn report(
    scenarios: &[Scenario],
    end_to_end: &[Vec<Run<f64>>],
    lockstep: &[Vec<Run<Vec<Latency>>>],
    settings: &Settings,
) {
    let rate = |i: usize| middle(end_to_end[i].iter().map(|r| r.result).collect());
    // Per round, the median client's p50 and the worst client's p99; then the median over the rounds.
    let p50 = |i: usize| {
        middle(
            lockstep[i]
                .iter()
                .map(|r| middle(r.result.iter().map(|l| l.p50_us).collect()))
                .collect(),
        )
    };
    let p99 = |i: usize| {
        middle(
            lockstep[i]
                .iter()
                .map(|r| r.result.iter().map(|l| l.p99_us).fold(0.0, f64::max))
                .collect(),
        )
    };
    let acknowledged = |i: usize| {
        middle(
            lockstep[i]
                .iter()
                .map(|r| r.result.iter().map(|l| l.requests).sum::<u64>() as f64 / r.seconds)
                .collect(),
        )
    };
    println!("\nresults (medians of {} rounds)", end_to_end[0].len());
    println!(
        "| scenario | end to end, records/s | lockstep p50 | lockstep p99 | lockstep, requests/s in all |"
    );
    println!("|---|---|---|---|---|");
    for (i, scenario) in scenarios.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.1} µs | {:.1} µs | {:.0} |",
            scenario.name,
            rate(i),
            p50(i),
            p99(i),
            acknowledged(i)
        );
    }
    let verdict = |ratio: f64, target: f64| if ratio >= target { "met" } else { "NOT met" };
    let pg1 = rate(1) / rate(0);
    let pg2 = rate(2) / rate(1);
    println!("\nratios");
    println!(
        "  PostgreSQL 1 server / SQLite, end to end: {pg1:.2}× (target ≥ 0.5×: {})",
        verdict(pg1, 0.5)
    );
    println!(
        "  PostgreSQL 2 servers / 1 server, end to end: {pg2:.2}× (target ≥ 0.9×: {})",
        verdict(pg2, 0.9)
    );
    println!(
        "  lockstep p50, PostgreSQL 1 server − SQLite: {:+.1} µs; 2 servers − 1 server: {:+.1} µs",
        p50(1) - p50(0),
        p50(2) - p50(1)
    );

    let per_100k = 100_000.0 / settings.records as f64;
    println!(
        "\nwhere the time goes, end to end: seconds per 100,000 records (100 requests of 1000), medians of the rounds"
    );
    println!(
        "| scenario | wall | `send` CPU | each `serve`'s CPU | PostgreSQL CPU (all processes) | transactions | WAL fsyncs | in WAL fsync | WAL written |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, scenario) in scenarios.iter().enumerate() {
        let row = usage(&end_to_end[i], per_100k, per_100k, 1.0);
        println!("| {} | {} |", scenario.name, row.join(" | "));
    }
    println!(
        "\nwhere the time goes, lockstep: µs per request (per acknowledged one-record request, all clients), \
         medians of the rounds"
    );
    println!(
        "| scenario | wall per request per client | clients' CPU | each `serve`'s CPU | PostgreSQL CPU | transactions | WAL fsyncs | in WAL fsync | WAL written |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, scenario) in scenarios.iter().enumerate() {
        let per_request = 1.0 / (settings.lockstep_requests * scenario.servers.len()) as f64;
        // The clients run side by side: each one's wall time is shared by its own requests only.
        let per_client_request = 1.0 / settings.lockstep_requests as f64;
        let row = usage(&lockstep[i], per_request, per_client_request, 1e6);
        println!("| {} | {} |", scenario.name, row.join(" | "));
    }
}

/// A row of the "where the time goes" tables: each figure of `runs` times `per` (a share of the run; the wall
/// time times `wall_per`), times in seconds times `unit`, the median of the runs; transactions and fsyncs as
/// counts, WAL in bytes.
fn usage<T>(runs: &[Run<T>], per: f64, wall_per: f64, unit: f64) -> Vec<String> {
    let median_of = |f: &dyn Fn(&Run<T>) -> Option<f64>| -> Option<f64> {
        let values: Vec<f64> = runs.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| middle(values))
    };
    let time = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{:.3}", v * unit));
    let count = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2}"));
    let servers = runs[0].serve_cpu.len();
    let serve = (0..servers)
        .map(|s| time(median_of(&|r| Some(r.serve_cpu[s] * per))))
        .collect::<Vec<_>>()
        .join(" + ");
    vec![
        time(median_of(&|r| Some(r.seconds * wall_per))),
        time(median_of(&|r| Some(r.client_cpu * per))),
        serve,
        time(median_of(&|r| r.database_cpu.map(|c| c * per))),
        count(median_of(&|r| r.commits.map(|c| c as f64 * per))),
        count(median_of(&|r| r.wal.map(|w| w.syncs * per))),
        time(median_of(&|r| r.wal.map(|w| w.sync_seconds * per))),
        median_of(&|r| r.wal.map(|w| w.bytes * per)).map_or("—".to_owned(), bytes),
    ]
}

/// What `pg_stat_statements` counted in one run, per request (`requests` in the run).
fn print_statements<T>(
    cluster: &PgCluster,
    scenario: &Scenario,
    what: &str,
    requests: f64,
    run: &Run<T>,
) {
    let url = scenario.url().expect("a PostgreSQL scenario");
    let statements = cluster.statements(url);
    let calls: u64 = statements.iter().map(|s| s.calls).sum();
    let total_ms: f64 = statements.iter().map(|s| s.total_ms).sum();
    println!(
        "  {}, {what}: {:.0} requests, {} transactions, {calls} statements ({:.2} per transaction), {:.1} µs of \
         execution per request; WAL fsyncs {:.0} taking {:.3} s in all",
        scenario.name,
        requests,
        run.commits.unwrap_or_default(),
        calls as f64 / run.commits.unwrap_or(1).max(1) as f64,
        total_ms * 1e3 / requests,
        run.wal.map_or(0.0, |w| w.syncs),
        run.wal.map_or(0.0, |w| w.sync_seconds),
    );
    for statement in statements.iter().take(12) {
        println!(
            "    {:>8} calls ({:>6.3} per request) {:>8.1} µs each, {:>7.2} rows each: {}",
            statement.calls,
            statement.calls as f64 / requests,
            statement.total_ms * 1e3 / statement.calls.max(1) as f64,
            statement.rows as f64 / statement.calls.max(1) as f64,
            statement.query
        );
    }
}

/// p50 in µs of inserting one row in its own transaction through the `postgres` crate (one round trip with a
/// prepared statement; the commit is durable: synchronous_commit and fsync are on), and of a round trip that
/// commits nothing (a prepared `SELECT 1`), as many times.
fn postgres_single_row_commit(cluster: &PgCluster, url: &str, commits: usize) -> (f64, f64) {
    let mut client = cluster.connect(url);
    client
        .batch_execute("DROP TABLE IF EXISTS t; CREATE TABLE t (id bigserial PRIMARY KEY, v bytea)")
        .unwrap();
    let insert = client.prepare("INSERT INTO t (v) VALUES ($1)").unwrap();
    let mut samples = Vec::with_capacity(commits);
    for i in 0..commits {
        let value = format!("row {i}").into_bytes();
        let started = Instant::now();
        client.execute(&insert, &[&value]).unwrap();
        samples.push(started.elapsed());
    }
    let commit = micros(Percentiles::of(&mut samples).unwrap().p50);
    let select = client.prepare("SELECT 1").unwrap();
    samples.clear();
    for _ in 0..commits {
        let started = Instant::now();
        client.query_one(&select, &[]).unwrap();
        samples.push(started.elapsed());
    }
    (commit, micros(Percentiles::of(&mut samples).unwrap().p50))
}

/// The device a path is on.
fn device(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.dev()).unwrap_or_default()
}

fn bytes(n: f64) -> String {
    match n.abs() {
        a if a >= 1e6 => format!("{:.1} MB", n / 1e6),
        a if a >= 1e3 => format!("{:.1} kB", n / 1e3),
        _ => format!("{n:.0} B"),
    }
}
