//! What `serve --metrics` costs (issue 17: under 2% of end-to-end throughput): `zavro send` of the same input into
//! a server with and without `--metrics`, in one run, the two alternating round by round (which goes first
//! alternates too), with `/metrics` scraped every second meanwhile (Prometheus scrapes every 15 s to 1 min, so
//! this is the harsher case). It reports the median records/s of each, their ratio, and the server's CPU time per
//! record of each, which depends less on what else the machine runs.
//!
//! `-- --callgrind` measures instead, under valgrind's callgrind, the instructions the server executes for a fixed
//! number of requests (`--requests N`, default 1000) with and without `--metrics` (and a fixed number of scrapes):
//! a count that does not depend on the machine's load, for a loaded machine. Idle wake-ups (every 200 ms) add a
//! little that does. Two runs with different N give the cost per request apart from the fixed cost.
//!
//! `cargo bench --bench metrics` runs it; `-- --runs N` (rounds, default 5), `-- --records N` (per run, default
//! 200 000). SQLite store, plaintext (without encryption the server's own work is the larger share of the whole,
//! so a cost shows the more), servers on 127.0.0.1 on ports the OS picks.

use std::{
    fs::{self, File},
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

mod common;

use common::{Env, Transport, ZAVRO, cpu_seconds, load_average, middle, number_arg, write_ndjson};

/// Bytes of JSON per record, about.
const RECORD_SIZE: usize = 150;

/// How often the scraper asks for `/metrics` during a timed run.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a server may take to say where it listens.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// Requests (of [`CALLGRIND_BATCH`] records) sent to the server under callgrind, unless `--requests N`.
const CALLGRIND_REQUESTS: usize = 1_000;

/// Records per request under callgrind: small requests, so the per-request work (where the metrics are) weighs
/// the most.
const CALLGRIND_BATCH: usize = 10;

/// Scrapes of `/metrics` during the callgrind run with `--metrics`.
const CALLGRIND_SCRAPES: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    println!(
        "machine: {} cores; load average at the start: {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if args.iter().any(|a| a == "--callgrind") {
        callgrind(dir.path(), number_arg("--requests", CALLGRIND_REQUESTS));
    } else {
        throughput(
            dir.path(),
            number_arg("--runs", 5),
            number_arg("--records", 200_000),
        );
    }
    println!("load average at the end: {}", load_average());
}

/// One timed run: records/s end to end, the server's CPU seconds, the scrapes made.
struct Run {
    records_per_second: f64,
    serve_cpu: f64,
    scrapes: u64,
}

/// Alternating rounds with and without `--metrics`; prints each round and the medians.
fn throughput(dir: &Path, rounds: usize, records: usize) {
    let input = dir.join("records.ndjson");
    write_ndjson(&input, records, RECORD_SIZE);
    println!(
        "zavro serve with and without --metrics: {rounds} rounds of {records} records (~{RECORD_SIZE} B each, \
         `send`'s defaults, plaintext, SQLite), alternating; /metrics scraped every {} s when on",
        SCRAPE_INTERVAL.as_secs()
    );
    let env = Env::new(&dir.join("store")).with_transport(Transport::Plaintext);
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for metrics in order {
            let run = timed_send(&env, &input, records, metrics);
            println!(
                "round {}: {:<16} {:>9.0} records/s, serve {:.2} µs CPU per record{}",
                round + 1,
                if metrics { "with --metrics" } else { "without" },
                run.records_per_second,
                run.serve_cpu / records as f64 * 1e6,
                if metrics {
                    format!(", {} scrapes", run.scrapes)
                } else {
                    String::new()
                }
            );
            if metrics {
                with.push(run);
            } else {
                without.push(run);
            }
        }
    }
    let rate = |runs: &[Run]| middle(runs.iter().map(|r| r.records_per_second).collect());
    let cpu =
        |runs: &[Run]| middle(runs.iter().map(|r| r.serve_cpu).collect()) / records as f64 * 1e6;
    let (rate_without, rate_with) = (rate(&without), rate(&with));
    let (cpu_without, cpu_with) = (cpu(&without), cpu(&with));
    println!(
        "\nmedian end to end: without {rate_without:.0} records/s, with --metrics {rate_with:.0} records/s: \
         with/without = {:.3} ({:+.1}%)",
        rate_with / rate_without,
        (rate_with / rate_without - 1.0) * 100.0
    );
    println!(
        "median serve CPU per record: without {cpu_without:.2} µs, with --metrics {cpu_with:.2} µs: \
         with/without = {:.3} ({:+.1}%)",
        cpu_with / cpu_without,
        (cpu_with / cpu_without - 1.0) * 100.0
    );
}

/// Starts a server (with `--metrics` when asked, scraped meanwhile), sends the input, stops the server.
fn timed_send(env: &Env, input: &Path, records: usize, metrics: bool) -> Run {
    let extra: &[&str] = if metrics {
        &["--metrics", "127.0.0.1:0"]
    } else {
        &[]
    };
    let (server, endpoint, log) = env.serve_with(extra);
    let scraper = metrics.then(|| Scraper::start(&metrics_address(&log)));
    let cpu_before = cpu_seconds(server.pid()).unwrap_or_default();
    let started = Instant::now();
    let status = env
        .client("send")
        .arg(&endpoint)
        .stdin(File::open(input).expect("the input"))
        .stderr(Stdio::null())
        .status()
        .expect("run send");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "send failed ({status})");
    let serve_cpu = cpu_seconds(server.pid()).unwrap_or_default() - cpu_before;
    let scrapes = scraper.map_or(0, Scraper::stop);
    server.stop().expect("the server stops cleanly");
    // Nothing reads the server's output; the next run writes its own.
    let _ = fs::remove_file(env.dir.join("out.ndjson"));
    Run {
        records_per_second: records as f64 / seconds,
        serve_cpu,
        scrapes,
    }
}

/// A thread that scrapes `/metrics` every [`SCRAPE_INTERVAL`] until stopped.
struct Scraper {
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: thread::JoinHandle<()>,
}

impl Scraper {
    fn start(address: &str) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, scrapes, address) =
                (Arc::clone(&stop), Arc::clone(&scrapes), address.to_owned());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    scrape(&address);
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(SCRAPE_INTERVAL);
                }
            })
        };
        Scraper {
            stop,
            scrapes,
            thread,
        }
    }

    /// Stops it; the scrapes it made.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the scraper ends");
        self.scrapes.load(Ordering::Relaxed)
    }
}

/// `GET /metrics` over HTTP/1.0; panics unless it is a 200 with the metrics in it.
fn scrape(address: &str) {
    let mut stream = TcpStream::connect(address).expect("connect to /metrics");
    write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").expect("ask for /metrics");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read /metrics");
    assert!(
        response.starts_with("HTTP/1.")
            && response.contains(" 200 OK\r\n")
            && response.contains("zavro_requests_total"),
        "{response}"
    );
}

/// The metrics address in a server's log (`metrics on http://ADDRESS/metrics …`).
fn metrics_address(log: &Path) -> String {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        let address = text
            .lines()
            .find_map(|line| line.strip_prefix("metrics on http://"))
            .and_then(|rest| rest.split_once("/metrics"))
            .map(|(address, _)| address.to_owned());
        if let Some(address) = address {
            return address;
        }
        assert!(Instant::now() < deadline, "no metrics address: {text}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The instructions `serve` executes under callgrind for the same requests, without and with `--metrics`.
fn callgrind(dir: &Path, requests: usize) {
    let records = requests * CALLGRIND_BATCH;
    let input = dir.join("records.ndjson");
    write_ndjson(&input, records, RECORD_SIZE);
    println!(
        "instructions of zavro serve under callgrind: {requests} requests of {CALLGRIND_BATCH} records \
         (lockstep: --window 1), plaintext, SQLite; with --metrics, {CALLGRIND_SCRAPES} scrapes"
    );
    let mut counts = Vec::new();
    for metrics in [false, true] {
        let env = Env::new(&dir.join(if metrics { "with" } else { "without" }))
            .with_transport(Transport::Plaintext);
        let out = env.dir.join("callgrind.out");
        let log = env.dir.join("serve.log");
        let mut serve = Command::new("valgrind");
        serve
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(ZAVRO)
            .arg("--db")
            .arg(env.db_arg())
            .args(["serve", "127.0.0.1:*", "--plaintext", "--output"])
            .arg(env.dir.join("out.ndjson"));
        if metrics {
            serve.args(["--metrics", "127.0.0.1:0"]);
        }
        let child = serve
            .stderr(File::create(&log).expect("the log"))
            .spawn()
            .expect("valgrind (Debian: apt-get install valgrind)");
        let server = common::Server::adopt(child);
        let endpoint = listening_on(&log);
        let status = env
            .client("send")
            .arg(&endpoint)
            .args(["--batch", &CALLGRIND_BATCH.to_string(), "--window", "1"])
            .args(["--timeout", "60"])
            .stdin(File::open(&input).expect("the input"))
            .stderr(Stdio::null())
            .status()
            .expect("run send");
        assert!(status.success(), "send failed ({status})");
        if metrics {
            let address = metrics_address(&log);
            for _ in 0..CALLGRIND_SCRAPES {
                scrape(&address);
            }
        }
        server.stop().expect("the server stops cleanly");
        let instructions = callgrind_total(&out);
        println!(
            "{:<16} {instructions:>14} instructions ({:.0} per request)",
            if metrics { "with --metrics" } else { "without" },
            instructions as f64 / requests as f64
        );
        counts.push(instructions as f64);
    }
    println!(
        "with/without = {:.4} ({:+.2}%)",
        counts[1] / counts[0],
        (counts[1] / counts[0] - 1.0) * 100.0
    );
}

/// The endpoint in a server's log (`listening on ENDPOINT (…)`).
fn listening_on(log: &Path) -> String {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        let endpoint = text
            .lines()
            .find_map(|line| line.strip_prefix("listening on "))
            .and_then(|rest| rest.split_once(" ("))
            .map(|(endpoint, _)| endpoint.to_owned());
        if let Some(endpoint) = endpoint {
            return endpoint;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start: {text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The total of callgrind's `summary:` (or `totals:`) line: instructions executed by every thread.
fn callgrind_total(out: &Path) -> u64 {
    let text = fs::read_to_string(out).expect("callgrind's output");
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary: ")
                .or_else(|| line.strip_prefix("totals: "))
        })
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a summary line")
}
