//! The benchmark harness (BENCHMARKS.md): measures, in one run on one machine, (1) zavro end to end, (2) zavro
//! lockstep, (3) the bare ZeroMQ transport and a durable single-row SQLite commit, and prints each figure and the
//! ratios the targets are stated in. `cargo bench --bench throughput` runs it; `-- --memory` adds the memory runs
//! (10 M records into `serve`, a 1 GiB input into `send`), `--runs N` repeats the timed runs (median reported),
//! `--lockstep-only` measures only the lockstep figures.
//!
//! Everything talks over 127.0.0.1 and writes only inside a temporary directory.

use std::{
    fs::{self, File},
    path::Path,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

mod common;

use common::{
    Env, Transport, commit_one_row, durable_table, micros, middle, peak_rss_kib,
    sqlite_single_row_commit, write_ndjson,
};
use zavro::{
    bench::{Percentiles, record},
    store::{AuditEntry, Nonce, RequestGroup, RequestStore, Status, Store},
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let memory = args.iter().any(|a| a == "--memory");
    // Only the lockstep figures, for iterating on the per-request path without the longer runs.
    let lockstep_only = args.iter().any(|a| a == "--lockstep-only");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("temporary directory");
    let env = Env::new(dir.path());

    println!("zavro benchmark harness: {runs} runs of each timed figure, median reported");
    println!(
        "machine: {} cores; sender and server share them\n",
        thread::available_parallelism().map_or(0, |n| n.get())
    );

    let bare_rtt = median(runs, || bare_transport_lockstep(20_000, 200));
    println!("(3) bare transport lockstep round trip p50: {bare_rtt:.1} µs");
    let throughput = (!lockstep_only).then(|| {
        let bare = median(runs, || bare_transport_pipelined(2_000_000, 200));
        println!(
            "(3) bare transport, DEALER/ROUTER pipelined, 200-byte messages: {bare:.0} messages/s"
        );
        let input = env.dir.join("records.ndjson");
        let bytes = write_ndjson(&input, 1_000_000, 150);
        println!(
            "\ninput: 1,000,000 NDJSON records, {:.1} MB ({} bytes per record on average)",
            bytes as f64 / 1e6,
            bytes / 1_000_000
        );
        // CURVE (the default) and plaintext alternate, run by run, so that drift affects both alike.
        let plain_env = Env::new(&env.dir.join("plaintext")).with_transport(Transport::Plaintext);
        let mut curve_runs = Vec::new();
        let mut plain_runs = Vec::new();
        for _ in 0..runs.max(1) {
            curve_runs.push(env.send_file(&input, 1_000_000));
            plain_runs.push(plain_env.send_file(&input, 1_000_000));
        }
        let (end_to_end, plain) = (middle(curve_runs), middle(plain_runs));
        println!(
            "(1) zavro end to end (send < file into serve, default options: CURVE, durable): {end_to_end:.0} records/s"
        );
        println!("    the same over --plaintext: {plain:.0} records/s");
        (bare, end_to_end, plain)
    });
    // The disk's fsync latency drifts over minutes, so each lockstep run is bracketed by single-row commits on
    // the same file system, on a fresh store, and compared with their mean.
    let mut lockstep_runs = Vec::new();
    for run in 0..runs.max(1) {
        let fresh = Env::new(&env.dir.join(format!("lockstep-{run}")));
        let before = sqlite_single_row_commit(&fresh.dir.join("commit.db"), 1_000);
        let lockstep = fresh.lockstep_p50(2_000);
        let store_commit = store_request_commit(&fresh.dir.join("store.db"), 1_000);
        let echo_commit =
            bare_transport_lockstep_with_commit(2_000, 200, &fresh.dir.join("echo.db"));
        let after = sqlite_single_row_commit(&fresh.dir.join("commit.db"), 1_000);
        let plain = Env::new(&env.dir.join(format!("lockstep-plaintext-{run}")))
            .with_transport(Transport::Plaintext)
            .lockstep_p50(2_000);
        lockstep_runs.push((
            lockstep,
            (before + after) / 2.0,
            store_commit,
            echo_commit,
            plain,
        ));
    }
    lockstep_runs.sort_by(|a, b| f64::total_cmp(&(a.0 - a.1), &(b.0 - b.1)));
    let (lockstep, commit, store_commit, echo_commit, _) = lockstep_runs[lockstep_runs.len() / 2];
    let plain_lockstep = middle(lockstep_runs.iter().map(|run| run.4).collect());
    println!("(2) zavro lockstep (batch 1, window 1, CURVE) ack latency p50: {lockstep:.1} µs");
    println!("    the same over --plaintext, p50 (median of runs): {plain_lockstep:.1} µs");
    println!(
        "    durable single-row SQLite commit p50 around it (WAL, synchronous=FULL): {commit:.1} µs"
    );
    println!(
        "    of which the store: one accepted request committed on its own (audit row, payload, nonce) p50: \
         {store_commit:.1} µs"
    );
    println!(
        "    bare lockstep round trip with a durable single-row commit before each echo, p50: {echo_commit:.1} µs \
         (zavro's own work, in-process, is the lockstep figure minus this: {:.1} µs)",
        lockstep - echo_commit
    );

    println!("\nratios");
    if let Some((bare, end_to_end, plain)) = throughput {
        println!(
            "  (1)/(3) end-to-end records/s over bare messages/s: {:.1} % (target ≥ 25 %)",
            100.0 * end_to_end / bare
        );
        println!(
            "  CURVE over plaintext, end to end: {:.2}× (target ≥ 0.8×)",
            end_to_end / plain
        );
    }
    println!(
        "  CURVE minus plaintext, lockstep p50: {:+.1} µs (target ≤ 50 µs)",
        lockstep - plain_lockstep
    );
    println!(
        "  (2)/(3) lockstep p50 over bare round trip p50: {:.1}×; lockstep p50 − bare p50 − SQLite commit p50 = {:.1} µs (target ≤ 100 µs)",
        lockstep / bare_rtt,
        lockstep - bare_rtt - commit
    );

    let Some((_, end_to_end, _)) = throughput else {
        return;
    };
    let (chained, plain) = chain_cost(&env.dir, 20_000);
    println!(
        "\naudit hash chain: {chained:.2} µs per audit row with the chain, {plain:.2} µs for the same insert without it; \
         +{:.2} µs per request, {:.2} % of a 1000-record request's end-to-end time",
        chained - plain,
        100.0 * (chained - plain) / (1000.0 * 1e6 / end_to_end)
    );

    if memory {
        println!("\nmemory");
        let serve_peak = env.serve_peak_rss(10_000_000);
        println!(
            "  serve peak RSS while ingesting 10,000,000 records: {:.1} MiB (target < 64 MiB)",
            serve_peak as f64 / 1024.0
        );
        let big = env.dir.join("big.ndjson");
        let records = 1usize << 30 >> 7; // about 1 GiB of ~150-byte lines
        let written = write_ndjson(&big, records, 150);
        let send_peak = env.send_peak_rss(&big);
        println!(
            "  send peak RSS on a {:.2} GiB input: {:.1} MiB (target < 64 MiB)",
            written as f64 / f64::from(1u32 << 30),
            send_peak as f64 / 1024.0
        );
    }
}

/// The median of `runs` measurements.
fn median(runs: usize, mut measure: impl FnMut() -> f64) -> f64 {
    middle((0..runs.max(1)).map(|_| measure()).collect())
}

/// Messages/s of pipelined round trips: a DEALER keeps up to 100 messages in flight to a ROUTER that echoes.
fn bare_transport_pipelined(messages: usize, size: usize) -> f64 {
    let context = zmq::Context::new();
    let router = context.socket(zmq::ROUTER).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let echo = thread::spawn(move || echo(&router, messages));
    let dealer = context.socket(zmq::DEALER).unwrap();
    dealer.connect(&endpoint).unwrap();
    let payload = vec![b'x'; size];
    let mut reply = zmq::Message::new();
    let started = Instant::now();
    let (mut sent, mut received) = (0, 0);
    while received < messages {
        // 100 in flight: far below the default high-water mark of 1000, at which a ROUTER drops replies.
        while sent < messages && sent - received < 100 {
            dealer.send(&payload, 0).unwrap();
            sent += 1;
        }
        assert!(
            dealer.poll(zmq::POLLIN, 10_000).unwrap() > 0,
            "bare transport stalled"
        );
        dealer.recv(&mut reply, 0).unwrap();
        received += 1;
        while dealer.recv(&mut reply, zmq::DONTWAIT).is_ok() {
            received += 1;
        }
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    echo.join().unwrap();
    rate
}

/// Sends every message back where it came from, reusing one message buffer.
fn echo(router: &zmq::Socket, messages: usize) {
    let mut frame = zmq::Message::new();
    for _ in 0..messages {
        loop {
            router.recv(&mut frame, 0).unwrap();
            let more = router.get_rcvmore().unwrap();
            router
                .send(&*frame, if more { zmq::SNDMORE } else { 0 })
                .unwrap();
            if !more {
                break;
            }
        }
    }
}

/// p50 in µs of one-at-a-time round trips REQ → ROUTER → REQ.
fn bare_transport_lockstep(round_trips: usize, size: usize) -> f64 {
    lockstep_round_trips(round_trips, size, move |router| echo(&router, round_trips))
}

/// p50 in µs of the bare lockstep round trip when the echo first commits one row durably, as a server that
/// did nothing but store would: what the transport and the commit cost together, wake-ups after the fsync
/// included, with none of zavro's work.
fn bare_transport_lockstep_with_commit(round_trips: usize, size: usize, db: &Path) -> f64 {
    let conn = durable_table(db);
    lockstep_round_trips(round_trips, size, move |router| {
        for _ in 0..round_trips {
            let frames = router.recv_multipart(0).unwrap();
            commit_one_row(&conn, frames.last().unwrap());
            router.send_multipart(frames, 0).unwrap();
        }
    })
}

/// p50 in µs of `round_trips` REQ round trips of `size`-byte messages to a ROUTER that `serve` answers on its
/// own thread.
fn lockstep_round_trips(
    round_trips: usize,
    size: usize,
    serve: impl FnOnce(zmq::Socket) + Send + 'static,
) -> f64 {
    let context = zmq::Context::new();
    let router = context.socket(zmq::ROUTER).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let server = thread::spawn(move || serve(router));
    let req = context.socket(zmq::REQ).unwrap();
    req.connect(&endpoint).unwrap();
    let payload = vec![b'x'; size];
    let mut samples = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let started = Instant::now();
        req.send(&payload, 0).unwrap();
        req.recv_bytes(0).unwrap();
        samples.push(started.elapsed());
    }
    server.join().unwrap();
    micros(Percentiles::of(&mut samples).unwrap().p50)
}

/// p50 in µs of committing one accepted one-record request through the store on its own, as `serve` does for
/// each request in lockstep: the part of the lockstep figure that is the store's, without the transport.
fn store_request_commit(path: &Path, commits: usize) -> f64 {
    let _ = fs::remove_file(path);
    let mut store = Store::open(path).unwrap();
    let payload = serde_json::to_string(&[record(0, 150)]).unwrap();
    let mut samples = Vec::with_capacity(commits);
    for i in 0..commits {
        let nonce = format!("nonce-{i}");
        let accepted = AuditEntry {
            status: Status::Accepted,
            reason: None,
            detail: None,
            records: 1,
            ..entry(i as i64)
        };
        let started = Instant::now();
        let mut group = store.begin_group().unwrap();
        group
            .append_accepted(
                &accepted,
                &Nonce {
                    nonce: &nonce,
                    timestamp: 0,
                    signature: "signature",
                },
                &payload,
            )
            .unwrap();
        group.commit().unwrap();
        samples.push(started.elapsed());
    }
    micros(Percentiles::of(&mut samples).unwrap().p50)
}

/// µs per audit row inserted through the store (hash chain included) and through a plain INSERT of the same
/// columns, both in transactions of 100 rows on a durable file.
fn chain_cost(dir: &Path, rows: usize) -> (f64, f64) {
    let path = dir.join("chain.db");
    let mut store = Store::open(&path).unwrap();
    let started = Instant::now();
    for chunk in 0..rows / 100 {
        let mut batch = store.begin_group().unwrap();
        for i in 0..100 {
            batch.append(&entry((chunk * 100 + i) as i64)).unwrap();
        }
        batch.commit().unwrap();
    }
    let chained = started.elapsed().as_secs_f64() * 1e6 / rows as f64;

    let plain_path = dir.join("plain.db");
    let conn = rusqlite::Connection::open(&plain_path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_us INTEGER, action TEXT, status TEXT,
             reason TEXT, detail TEXT, key_id TEXT, peer TEXT, records INTEGER, size INTEGER, payload_sha256 TEXT,
             prev_hash TEXT, hash TEXT);
         CREATE INDEX audit_by_time ON audit (time_us); CREATE INDEX audit_by_key ON audit (key_id, id);",
    )
    .unwrap();
    let started = Instant::now();
    for chunk in 0..rows / 100 {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in 0..100 {
            conn.prepare_cached(
                "INSERT INTO audit (time_us, action, status, reason, detail, key_id, peer, records, size)
                 VALUES (?1, 'send', 'rejected', 'bad_signature', 'detail', 'ZK0123456789ABCDEF', '127.0.0.1', 0, 500)",
            )
            .unwrap()
            .execute([(chunk * 100 + i) as i64])
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    let plain = started.elapsed().as_secs_f64() * 1e6 / rows as f64;
    (chained, plain)
}

fn entry(time_us: i64) -> AuditEntry<'static> {
    AuditEntry {
        time_us,
        action: "send",
        status: Status::Rejected,
        reason: Some("bad_signature"),
        detail: Some("detail"),
        key_id: Some("ZK0123456789ABCDEF"),
        peer: Some("127.0.0.1"),
        records: 0,
        size: 500,
        schema: None,
        requests: 1,
        transport: Some("curve"),
        server: Some("bench"),
    }
}

/// The figures of this harness that need a server.
impl Env {
    /// Records/s of `zavro send < input`, timed from start to exit.
    fn send_file(&self, input: &Path, records: usize) -> f64 {
        let (_server, endpoint) = self.serve();
        let started = Instant::now();
        let status = self
            .client("send")
            .arg(&endpoint)
            .stdin(File::open(input).unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let elapsed = started.elapsed();
        assert!(status.success(), "send failed");
        records as f64 / elapsed.as_secs_f64()
    }

    /// p50 µs of `zavro bench --batch 1 --window 1`.
    fn lockstep_p50(&self, count: usize) -> f64 {
        let (_server, endpoint) = self.serve();
        self.lockstep(&endpoint, count, Duration::from_secs(600))
            .expect("bench failed")
            .p50_us
    }

    /// Peak RSS (KiB) of `serve` while `zavro bench` sends it `records` records.
    fn serve_peak_rss(&self, records: usize) -> u64 {
        let (server, endpoint) = self.serve();
        let pid = server.pid();
        let mut bench = self
            .client("bench")
            .args([&endpoint, "--json", "--count"])
            .arg(records.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let peak = peak_rss_while(pid, &mut bench);
        assert!(bench.wait().unwrap().success(), "bench failed");
        peak
    }

    /// Peak RSS (KiB) of `zavro send < input`.
    fn send_peak_rss(&self, input: &Path) -> u64 {
        let (_server, endpoint) = self.serve();
        let mut send = self
            .client("send")
            .arg(&endpoint)
            .stdin(File::open(input).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = send.id();
        let peak = peak_rss_while(pid, &mut send);
        assert!(send.wait().unwrap().success(), "send failed");
        peak
    }
}

/// Samples VmHWM (the kernel's peak resident set) of `pid` until `child` exits; returns the last sample.
fn peak_rss_while(pid: u32, child: &mut Child) -> u64 {
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
