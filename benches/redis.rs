//! zavro beside its durable peer (issue 18, BENCHMARKS.md): Redis Streams with `appendonly yes` and
//! `appendfsync always`, where XADD is acknowledged only after the append-only file is `fdatasync`ed. Measured in
//! one run, the two alternating round by round, medians reported:
//!
//! - end to end: `zavro send` with its defaults (batch 1000, window 8: 8,000 records in flight) against
//!   `redis-benchmark -c 8 -P 1000` (8 connections of 1,000 pipelined `XADD s * f <record>`: 8,000 in flight);
//! - lockstep: `zavro bench --batch 1 --window 1` against `redis-benchmark -c 1 -P 1`: one record, one ack;
//! - CPU per record of each side's server and client, from /proc and `getrusage`;
//! - for scale, a bare 200-byte append and `fdatasync` on the same file system, and a bare ZeroMQ round trip
//!   (DEALER to an echoing ROUTER over CURVE, each in a context of its own, as client and server are): the two
//!   floors under any lockstep acknowledgement zavro can give, whatever it does in between.
//!
//! `cargo bench --bench redis` runs it; `-- --runs N` sets the rounds (default 3), `--records N` the records per
//! end-to-end run (default 200,000), `--requests N` the lockstep requests (default 2,000). Redis comes from
//! Debian's `redis-server` and `redis-tools` packages; where they are missing the harness says so and measures
//! nothing. Both servers listen on 127.0.0.1, zavro on a port the OS picks, Redis on a free port found the same
//! way, with a throwaway password (Redis, like a deployment, authenticates the connection).

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

mod common;

use common::{
    Env, cpu_seconds, load_average, micros, middle, number_arg, reaped_children_cpu_seconds,
    write_ndjson,
};
use zavro::bench::{Percentiles, record};

/// Bytes of JSON per record, about (the figure).
const RECORD_SIZE: usize = 150;

/// Connections and pipelined commands per connection on the Redis side: the same 8,000 records in flight as
/// `send`'s defaults (`--window 8` requests of `--batch 1000` records).
const REDIS_CONNECTIONS: usize = 8;
const REDIS_PIPELINE: usize = 1_000;

/// Appends measured for the bare-disk baseline.
const BARE_APPENDS: usize = 1_000;

/// Longest a server may take to come up, or a client to finish.
const DEADLINE: Duration = Duration::from_secs(600);

/// How much to measure.
struct Settings {
    rounds: usize,
    records: usize,
    lockstep_requests: usize,
}

impl Settings {
    fn from_args() -> Settings {
        Settings {
            rounds: number_arg("--runs", 3),
            records: number_arg("--records", 200_000),
            lockstep_requests: number_arg("--requests", 2_000),
        }
    }
}

/// One end-to-end run of either side.
#[derive(Clone, Copy, Debug)]
struct Throughput {
    records_per_second: f64,
    /// CPU µs per record of the server while the client ran.
    server_us_per_record: f64,
    /// CPU µs per record of the client.
    client_us_per_record: f64,
}

fn main() {
    let settings = Settings::from_args();
    let missing: Vec<&str> = ["redis-server", "redis-benchmark"]
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if !missing.is_empty() {
        println!(
            "SKIPPED: {} not installed (Debian: apt-get install redis-server redis-tools): nothing to compare",
            missing.join(" and ")
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let redis = Redis::start(&dir.path().join("redis"));
    let env = Env::new(&dir.path().join("zavro"));
    let input = dir.path().join("records.ndjson");
    let value = serde_json::to_string(&record(0, RECORD_SIZE)).unwrap();
    let bytes = write_ndjson(&input, settings.records, RECORD_SIZE);
    println!(
        "zavro beside {} (appendonly yes, appendfsync always), {} rounds alternating, medians reported",
        redis.version(),
        settings.rounds
    );
    println!(
        "machine: {} cores shared by clients and servers; load average at the start: {}; both stores in {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        dir.path().display()
    );
    println!(
        "end to end: {} records of {} bytes on average (Redis: XADD s * f <a {}-byte record>), {} in flight; \
         lockstep: {} requests\n",
        settings.records,
        bytes / settings.records as u64,
        value.len(),
        REDIS_CONNECTIONS * REDIS_PIPELINE,
        settings.lockstep_requests
    );

    let mut zavro_runs = Vec::new();
    let mut redis_runs = Vec::new();
    let mut zavro_lockstep = Vec::new();
    let mut redis_lockstep = Vec::new();
    let mut bare = Vec::new();
    let mut round_trips = Vec::new();
    for round in 0..settings.rounds {
        // Each round starts with the other side, so that neither always follows the other's disk traffic.
        for side in [round % 2, (round + 1) % 2] {
            if side == 0 {
                let run = zavro_end_to_end(&env, &input, settings.records);
                print_run(round, "zavro", &run);
                zavro_runs.push(run);
                let p50 = zavro_lockstep_p50(&env, settings.lockstep_requests);
                println!(
                    "round {}: {:<6} lockstep p50 {p50:.1} µs",
                    round + 1,
                    "zavro"
                );
                zavro_lockstep.push(p50);
            } else {
                let run = redis.end_to_end(&value, settings.records);
                print_run(round, "Redis", &run);
                redis_runs.push(run);
                let p50 = redis.lockstep_p50(&value, settings.lockstep_requests);
                println!(
                    "round {}: {:<6} lockstep p50 {p50:.1} µs",
                    round + 1,
                    "Redis"
                );
                redis_lockstep.push(p50);
            }
        }
        bare.push(bare_append_p50(&dir.path().join("bare.log")));
        round_trips.push(bare_zeromq_round_trip_p50());
    }
    println!("load average at the end: {}\n", load_average());

    let median_of = |runs: &[Throughput], field: fn(&Throughput) -> f64| {
        middle(runs.iter().map(field).collect())
    };
    let (z_rate, r_rate) = (
        median_of(&zavro_runs, |r| r.records_per_second),
        median_of(&redis_runs, |r| r.records_per_second),
    );
    let (z_p50, r_p50) = (middle(zavro_lockstep), middle(redis_lockstep));
    println!(
        "| | end to end, records/s | lockstep p50 | server CPU per record | client CPU per record |"
    );
    println!("|---|---|---|---|---|");
    for (name, rate, p50, runs) in [
        ("zavro", z_rate, z_p50, &zavro_runs),
        ("Redis AOF always", r_rate, r_p50, &redis_runs),
    ] {
        println!(
            "| {name} | {rate:.0} | {p50:.1} µs | {:.2} µs | {:.2} µs |",
            median_of(runs, |r| r.server_us_per_record),
            median_of(runs, |r| r.client_us_per_record),
        );
    }
    println!(
        "| bare 200-byte append + fdatasync | — | {:.1} µs | — | — |",
        middle(bare)
    );
    println!(
        "| bare ZeroMQ round trip over CURVE ({ROUND_TRIP_BYTES} bytes) | — | {:.1} µs | — | — |",
        middle(round_trips)
    );
    println!(
        "\nzavro / Redis: end to end {:.2}× (target ≥ 1.5×), lockstep p50 {:.2}× (target ≤ 1.0×)",
        z_rate / r_rate,
        z_p50 / r_p50
    );
    println!(
        "Redis stream length at the end: {} (every XADD acknowledged is there)",
        redis.stream_length()
    );
}

/// `zavro send` with its defaults against a fresh `zavro serve` on `env`'s SQLite store.
fn zavro_end_to_end(env: &Env, input: &Path, records: usize) -> Throughput {
    let (server, endpoint) = env.serve();
    let server_before = cpu_seconds(server.pid()).unwrap();
    let client_before = reaped_children_cpu_seconds();
    let started = Instant::now();
    let status = env
        .client("send")
        .arg(&endpoint)
        .stdin(File::open(input).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "send failed ({status})");
    let client = reaped_children_cpu_seconds() - client_before;
    let server_cpu = cpu_seconds(server.pid()).unwrap() - server_before;
    server.stop().expect("zavro serve stops");
    // Nothing reads the output; the next run writes its own.
    let _ = fs::remove_file(env.dir.join("out.ndjson"));
    Throughput {
        records_per_second: records as f64 / seconds,
        server_us_per_record: server_cpu * 1e6 / records as f64,
        client_us_per_record: client * 1e6 / records as f64,
    }
}

/// `zavro bench --batch 1 --window 1` against a fresh `zavro serve`: its p50 in µs.
fn zavro_lockstep_p50(env: &Env, requests: usize) -> f64 {
    let (server, endpoint) = env.serve();
    let latency = env
        .lockstep(&endpoint, requests, DEADLINE)
        .unwrap_or_else(|e| panic!("zavro lockstep failed: {e}"));
    server.stop().expect("zavro serve stops");
    latency.p50_us
}

fn print_run(round: usize, name: &str, run: &Throughput) {
    println!(
        "round {}: {name:<6} end to end {:>9.0} records/s, server {:.2} µs/record, client {:.2} µs/record",
        round + 1,
        run.records_per_second,
        run.server_us_per_record,
        run.client_us_per_record
    );
}

/// A `redis-server` on a loopback port with the append-only file synced before every acknowledgement; stopped
/// (SHUTDOWN NOSAVE, then SIGKILL if need be) when dropped.
struct Redis {
    child: Child,
    port: u16,
    password: String,
}

impl Redis {
    /// Starts it with its configuration, data and log in `dir`, and waits until it answers.
    fn start(dir: &Path) -> Redis {
        fs::create_dir_all(dir).unwrap();
        let port = free_port();
        // A throwaway password, so that Redis authenticates its connections as a deployment's would. It is in
        // the configuration file, not on redis-server's command line; redis-benchmark only takes it as `-a`.
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).expect("random bytes");
        let password = hex::encode(random);
        let config = dir.join("redis.conf");
        fs::write(
            &config,
            format!(
                "bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\ndir {}\nappendonly yes\n\
                 appendfsync always\nsave \"\"\nrequirepass {password}\nlogfile {}\n",
                dir.display(),
                dir.join("redis.log").display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Redis {
            child,
            port,
            password,
        };
        let deadline = Instant::now() + DEADLINE;
        while redis.command(&["PING"]).ok().as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// `INFO server`'s version line, as "Redis 7.0.15".
    fn version(&self) -> String {
        let out = Command::new("redis-server")
            .arg("--version")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .unwrap_or("(unknown version)");
        format!("Redis {version}")
    }

    /// `redis-benchmark` with 8 connections of 1,000 pipelined XADDs.
    fn end_to_end(&self, value: &str, records: usize) -> Throughput {
        let server_before = cpu_seconds(self.child.id()).unwrap();
        let client_before = reaped_children_cpu_seconds();
        let report = self.benchmark(value, records, REDIS_CONNECTIONS, REDIS_PIPELINE);
        let client = reaped_children_cpu_seconds() - client_before;
        let server = cpu_seconds(self.child.id()).unwrap() - server_before;
        Throughput {
            records_per_second: report.requests_per_second,
            server_us_per_record: server * 1e6 / records as f64,
            client_us_per_record: client * 1e6 / records as f64,
        }
    }

    /// `redis-benchmark -c 1 -P 1`: its p50 in µs.
    fn lockstep_p50(&self, value: &str, requests: usize) -> f64 {
        self.benchmark(value, requests, 1, 1).p50_us
    }

    /// Runs `redis-benchmark … --csv XADD s * f VALUE` and reads its one result line.
    fn benchmark(
        &self,
        value: &str,
        requests: usize,
        connections: usize,
        pipeline: usize,
    ) -> BenchmarkReport {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-a", &self.password])
            .args(["-c", &connections.to_string(), "-P", &pipeline.to_string()])
            .args(["-n", &requests.to_string(), "--csv"])
            .args(["XADD", "s", "*", "f", value])
            .stderr(Stdio::null())
            .output()
            .expect("redis-benchmark runs");
        assert!(
            out.status.success(),
            "redis-benchmark failed ({})",
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        BenchmarkReport::parse(&text)
            .unwrap_or_else(|| panic!("cannot read redis-benchmark's CSV: {text}"))
    }

    /// XLEN of the benchmark's stream.
    fn stream_length(&self) -> String {
        self.command(&["XLEN", "s"])
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }

    /// Sends AUTH and one command over a new connection; the command's reply line.
    fn command(&self, args: &[&str]) -> Result<String, std::io::Error> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = resp(&["AUTH", &self.password]);
        request.extend(resp(args));
        stream.write_all(&request)?;
        let mut lines = BufReader::new(stream).lines();
        let auth = lines.next().transpose()?.unwrap_or_default();
        if auth != "+OK" {
            return Err(std::io::Error::other(format!("AUTH answered {auth}")));
        }
        let reply = lines.next().transpose()?.unwrap_or_default();
        Ok(reply.strip_prefix(':').unwrap_or(&reply).to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.command(&["SHUTDOWN", "NOSAVE"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one redis-benchmark test reported.
struct BenchmarkReport {
    requests_per_second: f64,
    p50_us: f64,
}

impl BenchmarkReport {
    /// Reads the CSV redis-benchmark 7 prints: a header line, then `"test","rps","avg_latency_ms",
    /// "min_latency_ms","p50_latency_ms",…`.
    fn parse(csv: &str) -> Option<BenchmarkReport> {
        let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
        let header = fields(lines.next()?, usize::MAX);
        let values = fields(lines.next()?, header.len());
        let column = |name: &str| -> Option<f64> {
            let i = header.iter().position(|h| h == name)?;
            values.get(i)?.parse().ok()
        };
        Some(BenchmarkReport {
            requests_per_second: column("rps")?,
            p50_us: column("p50_latency_ms")? * 1e3,
        })
    }
}

/// The first `count` fields of a CSV line whose fields are all quoted, splitting from the right: only the first
/// field (the command, with the record in it) may hold `","` itself.
fn fields(line: &str, count: usize) -> Vec<String> {
    let mut fields: Vec<String> = line
        .trim()
        .trim_matches('"')
        .rsplitn(count, "\",\"")
        .map(str::to_owned)
        .collect();
    fields.reverse();
    fields
}

/// A command in RESP, Redis's wire format.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

/// p50 in µs of appending 200 bytes to a file and `fdatasync`ing it: what one durable acknowledgement costs at
/// the least on this disk.
fn bare_append_p50(path: &Path) -> f64 {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let line = [b'x'; 200];
    let mut samples = Vec::with_capacity(BARE_APPENDS);
    for _ in 0..BARE_APPENDS {
        let started = Instant::now();
        file.write_all(&line).unwrap();
        file.sync_data().unwrap();
        samples.push(started.elapsed());
    }
    micros(Percentiles::of(&mut samples).unwrap().p50)
}

/// Size of the bare ZeroMQ round trip's message: about what a one-record request of zavro's is.
const ROUND_TRIP_BYTES: usize = 400;

/// Round trips measured for the bare ZeroMQ baseline, after as many to warm up.
const ROUND_TRIPS: usize = 2_000;

/// p50 in µs of a bare ZeroMQ round trip on loopback TCP: a DEALER sends [`ROUND_TRIP_BYTES`] to a ROUTER that
/// sends them straight back, over CURVE (no ZAP handler), each socket in a context (and I/O thread) of its own
/// as zavro's client and server are. No signing, no store: what the transport alone costs one request.
fn bare_zeromq_round_trip_p50() -> f64 {
    let server_keys = zmq::CurveKeyPair::new().expect("libzmq has CURVE");
    let client_keys = zmq::CurveKeyPair::new().expect("libzmq has CURVE");
    let server_context = zmq::Context::new();
    let router = server_context.socket(zmq::ROUTER).unwrap();
    router.set_curve_server(true).unwrap();
    router.set_curve_secretkey(&server_keys.secret_key).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let echo = thread::spawn(move || {
        loop {
            let frames = router.recv_multipart(0).unwrap();
            let stop = frames.last().is_some_and(|f| f.is_empty());
            router.send_multipart(frames, 0).unwrap();
            if stop {
                return;
            }
        }
    });
    let client_context = zmq::Context::new();
    let dealer = client_context.socket(zmq::DEALER).unwrap();
    dealer.set_curve_serverkey(&server_keys.public_key).unwrap();
    dealer.set_curve_publickey(&client_keys.public_key).unwrap();
    dealer.set_curve_secretkey(&client_keys.secret_key).unwrap();
    dealer.connect(&endpoint).unwrap();
    let message = vec![b'x'; ROUND_TRIP_BYTES];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS * 2 {
        let started = Instant::now();
        dealer.send(&message, 0).unwrap();
        dealer.recv_bytes(0).unwrap();
        if i >= ROUND_TRIPS {
            samples.push(started.elapsed());
        }
    }
    dealer.send(Vec::<u8>::new(), 0).unwrap();
    dealer.recv_bytes(0).unwrap();
    echo.join().unwrap();
    micros(Percentiles::of(&mut samples).unwrap().p50)
}

/// A port no one listens on now (the OS picks it; Redis binds it a moment later).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether `program` is an executable file in a folder of PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir: PathBuf| dir.join(program).is_file())
    })
}
