//! Hostile peers against a real `zavro serve`, one attack at a time for `--seconds N` (default 60): what each
//! costs the server (peak RSS, CPU, store growth, time to stop) and a valid client (its lockstep p50 and p99
//! beside the same without attack), printed as a Markdown table for SECURITY.md. The short tests in
//! `tests/cli/` do each attack briefly and assert its bound; this runs them long and prints figures.
//!
//! `cargo bench --bench attacks` (about 10 minutes; run it on an idle machine), `-- --smoke` for a 3-second run
//! of each with small sizes, `--seconds N`, `--count K` (the valid client's requests; fewer under an attack that
//! slows them down), `--idle N` (idle connections), `--only NAME` (one attack). Everything talks over
//! 127.0.0.1, writes only inside a temporary directory, and stops by itself: each attack thread is bounded in
//! time and in count.

mod common;

use std::{
    any::Any,
    fs,
    io::{self, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use apache_avro::Codec;
use common::{Env, Latency, Transport, cpu_seconds, peak_rss_kib};
use serde_json::json;
use zavro::{
    avro::container::{ContainerWriter, write_long},
    protocol::{Envelope, Reply, ReplyFrame, Request},
};

/// How long an attacker's socket operation may block before it looks at its stop signal again.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the attack runs before the valid client starts, once the attack says it is under way.
const WARM_UP: Duration = Duration::from_millis(500);

/// After this long without a reply, a pipelining attacker takes its outstanding requests as dropped.
const STALL: Duration = Duration::from_secs(2);

/// The count bound of each attack thread, far beyond what a minute at loopback speed sends: time ends every
/// attack long before, but no loop is unbounded.
const MAX_REQUESTS_PER_THREAD: u64 = 1_000_000_000;

/// The byte bound of each attack thread that counts bytes rather than requests (1 TiB).
const MAX_BYTES_PER_THREAD: u64 = 1 << 40;

fn main() {
    let settings = Settings::from_args();
    println!(
        "zavro attack harness: {} s per attack, valid client up to {} lockstep requests, {} cores shared by \
         attacker, client and server{}",
        settings.seconds.as_secs(),
        settings.count,
        thread::available_parallelism().map_or(0, |n| n.get()),
        if settings.smoke { " (smoke run)" } else { "" }
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut rows = Vec::new();
    for attack in Attack::ALL {
        if settings
            .only
            .as_ref()
            .is_some_and(|only| only != attack.name())
        {
            continue;
        }
        println!("\n== {}: {}", attack.name(), attack.describe(&settings));
        let row = run(attack, &settings, &dir.path().join(attack.name()));
        row.print();
        rows.push(row);
    }
    println!("\n{}", markdown_table(&rows, &settings));
}

/// What the command line asked for.
struct Settings {
    /// How long each attack runs (the valid client may make it run longer, up to [`Settings::cap`]).
    seconds: Duration,
    /// Requests the valid client sends, one at a time, with and without attack.
    count: usize,
    /// Idle connections the last attack opens.
    idle: usize,
    /// Bytes of the unknown field name in an amplification envelope.
    envelope: usize,
    /// Only this attack, by name.
    only: Option<String>,
    /// A run of seconds, to see that the harness works.
    smoke: bool,
}

impl Settings {
    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke = args.iter().any(|a| a == "--smoke");
        let mut settings = Settings {
            seconds: Duration::from_secs(if smoke { 3 } else { 60 }),
            count: if smoke { 100 } else { 2000 },
            idle: if smoke { 100 } else { 1000 },
            envelope: if smoke { 64 << 10 } else { 1 << 20 },
            only: None,
            smoke,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .unwrap_or_else(|| usage(&format!("{name} needs a value")))
                    .clone()
            };
            match arg.as_str() {
                // `cargo bench` passes `--bench` to every harness.
                "--smoke" | "--bench" => {}
                "--seconds" => settings.seconds = Duration::from_secs(number(&value(arg))),
                "--count" => settings.count = number(&value(arg)).max(1) as usize,
                "--idle" => settings.idle = number(&value(arg)) as usize,
                "--only" => {
                    let name = value(arg);
                    if !Attack::ALL.iter().any(|a| a.name() == name) {
                        usage(&format!("no attack named {name}"));
                    }
                    settings.only = Some(name);
                }
                other => usage(&format!("unknown argument {other}")),
            }
        }
        settings
    }

    /// The longest an attack may run: its length, plus as long again (at least 30 s) for a valid client slowed
    /// down by it to finish. Past it, the client is stopped and reported as not finished.
    fn cap(&self) -> Duration {
        self.seconds + self.seconds.max(Duration::from_secs(30))
    }
}

fn number(text: &str) -> u64 {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("{text} is not a number")))
}

fn usage(problem: &str) -> ! {
    let names: Vec<&str> = Attack::ALL.iter().map(|a| a.name()).collect();
    eprintln!(
        "attacks: {problem}\nusage: cargo bench --bench attacks -- [--smoke] [--seconds N] [--count K] [--idle N] \
         [--only {}]",
        names.join("|")
    );
    std::process::exit(2)
}

/// One attack, with its own server and store.
#[derive(Clone, Copy, PartialEq)]
enum Attack {
    /// Raw-TCP ZMTP peers sending frames with MORE forever, reconnecting when cut off.
    EndlessMessage,
    /// DEALERs sending envelopes with a huge unknown field name of DEL bytes, reading the replies.
    Amplification,
    /// A DEALER sending malformed requests and never reading a reply.
    NeverReads,
    /// Many DEALERs sending small requests no key vouches for: malformed, unknown key, bad signature.
    UnvouchedFlood,
    /// A key holder sending decompression bombs.
    Bombs,
    /// Connections that complete the ZeroMQ handshake and then send nothing.
    IdleConnections,
}

/// Raw ZMTP peers of the endless-message attack.
const ENDLESS_PEERS: usize = 2;
/// Frame size of the endless message, and frames written at a time.
const ENDLESS_FRAME: usize = 4096;
const ENDLESS_FRAMES_PER_WRITE: usize = 16;
/// Amplification: DEALERs and requests each keeps in flight.
const AMPLIFICATION_DEALERS: usize = 2;
const AMPLIFICATION_WINDOW: usize = 4;
/// Unvouched flood: threads, DEALERs per thread, requests in flight per DEALER.
const FLOOD_THREADS: usize = 2;
const FLOOD_DEALERS_PER_THREAD: usize = 8;
const FLOOD_WINDOW: usize = 64;
/// Bombs: DEALERs and bombs each keeps in flight; the NUL bytes of the string the bomb decodes to.
const BOMB_DEALERS: usize = 2;
const BOMB_WINDOW: usize = 2;
const BOMB_STRING: usize = 6 << 20;

impl Attack {
    const ALL: [Attack; 6] = [
        Attack::EndlessMessage,
        Attack::Amplification,
        Attack::NeverReads,
        Attack::UnvouchedFlood,
        Attack::Bombs,
        Attack::IdleConnections,
    ];

    fn name(self) -> &'static str {
        match self {
            Attack::EndlessMessage => "endless-message",
            Attack::Amplification => "amplification",
            Attack::NeverReads => "never-reads",
            Attack::UnvouchedFlood => "unvouched-flood",
            Attack::Bombs => "bombs",
            Attack::IdleConnections => "idle-connections",
        }
    }

    fn describe(self, settings: &Settings) -> String {
        match self {
            Attack::EndlessMessage => format!(
                "{ENDLESS_PEERS} raw-TCP ZMTP peers send {ENDLESS_FRAME}-byte frames with MORE forever, reconnecting \
                 when cut off (no key)"
            ),
            Attack::Amplification => format!(
                "{AMPLIFICATION_DEALERS} DEALERs send envelopes with an unknown field name of {} DEL bytes, \
                 {AMPLIFICATION_WINDOW} in flight each, reading the replies (no key)",
                settings.envelope
            ),
            Attack::NeverReads => {
                "1 DEALER sends malformed requests as fast as it can and never reads a reply (no key)".to_owned()
            }
            Attack::UnvouchedFlood => format!(
                "{} DEALERs send small requests no key vouches for, {FLOOD_WINDOW} in flight each, in turn \
                 malformed, unknown key (a new key id each time) and bad signature (the valid client's key id)",
                FLOOD_THREADS * FLOOD_DEALERS_PER_THREAD
            ),
            Attack::Bombs => format!(
                "{BOMB_DEALERS} DEALERs send deflate bombs signed with a valid key (a {} MiB string of NULs, about \
                 6 KB on the wire, past the 32 MiB decoded budget as JSON), {BOMB_WINDOW} in flight each",
                BOMB_STRING >> 20
            ),
            Attack::IdleConnections => format!(
                "{} connections complete the ZMTP handshake and send nothing (no key)",
                settings.idle
            ),
        }
    }

    /// Whether the attack sends requests the server answers (and may audit), so that store growth per million
    /// requests means something.
    fn sends_requests(self) -> bool {
        !matches!(self, Attack::EndlessMessage | Attack::IdleConnections)
    }

    /// Starts the attack's threads; each returns the connections it still holds when told to stop, so that the
    /// server is stopped with them open.
    fn launch(
        self,
        target: &Target,
        settings: &Settings,
        tally: &Arc<Tally>,
        stop: &Stop,
    ) -> Vec<JoinHandle<Held>> {
        let context = zmq::Context::new();
        let spawn = |work: Box<dyn FnOnce() -> Held + Send>| thread::spawn(work);
        match self {
            Attack::EndlessMessage => (0..ENDLESS_PEERS)
                .map(|_| {
                    let (address, tally, stop) = (target.address, Arc::clone(tally), stop.clone());
                    spawn(Box::new(move || endless_message(address, &tally, &stop)))
                })
                .collect(),
            Attack::Amplification => {
                let frames = envelope_with_field(&"\u{7f}".repeat(settings.envelope));
                let dealers = Dealers::new(
                    &context,
                    &target.endpoint,
                    AMPLIFICATION_DEALERS,
                    AMPLIFICATION_WINDOW,
                );
                let (tally, stop) = (Arc::clone(tally), stop.clone());
                vec![spawn(Box::new(move || {
                    dealers.pipeline(|| frames.clone(), &tally, &stop)
                }))]
            }
            Attack::NeverReads => {
                let endpoint = target.endpoint.clone();
                let (tally, stop) = (Arc::clone(tally), stop.clone());
                vec![spawn(Box::new(move || {
                    never_reads(&context, &endpoint, &tally, &stop)
                }))]
            }
            Attack::UnvouchedFlood => (0..FLOOD_THREADS)
                .map(|thread| {
                    let dealers = Dealers::new(
                        &context,
                        &target.endpoint,
                        FLOOD_DEALERS_PER_THREAD,
                        FLOOD_WINDOW,
                    );
                    let mut requests = UnvouchedRequests::new(thread, &target.key);
                    let (tally, stop) = (Arc::clone(tally), stop.clone());
                    spawn(Box::new(move || {
                        dealers.pipeline(|| requests.next(), &tally, &stop)
                    }))
                })
                .collect(),
            Attack::Bombs => {
                let bomb = deflate_bomb(BOMB_STRING);
                let (key, secret) = target.attacker.clone();
                let dealers = Dealers::new(&context, &target.endpoint, BOMB_DEALERS, BOMB_WINDOW);
                let (tally, stop) = (Arc::clone(tally), stop.clone());
                vec![spawn(Box::new(move || {
                    dealers.pipeline(|| signed(&key, &secret, bomb.clone()), &tally, &stop)
                }))]
            }
            Attack::IdleConnections => {
                let (address, count) = (target.address, settings.idle);
                let (tally, stop) = (Arc::clone(tally), stop.clone());
                vec![spawn(Box::new(move || {
                    idle_connections(address, count, &tally, &stop)
                }))]
            }
        }
    }
}

/// Where and as whom the attacks are made.
struct Target {
    /// `tcp://127.0.0.1:PORT`, for ZeroMQ sockets.
    endpoint: String,
    /// The same, for raw TCP.
    address: SocketAddr,
    /// The valid client's key id, which bad signatures claim.
    key: String,
    /// The attacker's own valid key and secret, for the bombs.
    attacker: (String, String),
}

/// What an attack did, counted by its threads.
#[derive(Default)]
struct Tally {
    /// Requests sent (whole messages).
    requests: AtomicU64,
    /// Bytes sent.
    bytes: AtomicU64,
    /// Replies received.
    replies: AtomicU64,
    /// Replies that said `accepted`: none is expected from any attack.
    accepted: AtomicU64,
    /// Connections made (for idle connections: that completed the handshake).
    connections: AtomicU64,
    /// Connections the server closed.
    cut_off: AtomicU64,
    /// Connections that failed or stalled on the attacker's side.
    failed: AtomicU64,
    /// Set once the attack is under way (connected, or all its idle connections opened).
    ready: AtomicBool,
}

impl Tally {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Connections and sockets an attack thread still holds when it stops.
type Held = Vec<Box<dyn Any + Send>>;

/// Tells attack threads to stop: when raised, or at its deadline whatever happens.
#[derive(Clone)]
struct Stop {
    raised: Arc<AtomicBool>,
    deadline: Instant,
}

impl Stop {
    fn new(deadline: Instant) -> Stop {
        Stop {
            raised: Arc::new(AtomicBool::new(false)),
            deadline,
        }
    }

    fn now(&self) -> bool {
        self.raised.load(Relaxed) || Instant::now() >= self.deadline
    }

    fn raise(&self) {
        self.raised.store(true, Relaxed);
    }
}

/// Runs one attack on a fresh store: the valid client without attack on one server, then the attack and the
/// valid client under it on a second server over the same store. Between and after, the server is stopped, so
/// the store's size is measured at rest (its WAL checkpointed).
fn run(attack: Attack, settings: &Settings, dir: &Path) -> Row {
    // The attacks speak ZMTP's NULL mechanism by hand, so they meet a `--plaintext` server: what a peer can make
    // zavro's own code pay once past the transport. Under CURVE, a peer without a key stops at the handshake.
    let env = Env::new(dir).with_transport(Transport::Plaintext);
    let attacker = env.add_key();
    let fresh = store_bytes(&env);

    let (server, endpoint) = env.serve();
    let baseline = env.lockstep(&endpoint, settings.count, settings.cap());
    let baseline_rss = peak_rss_kib(server.pid());
    if let Err(e) = server.stop() {
        println!("   the server without attack did not stop cleanly: {e}");
    }
    let at_rest = store_bytes(&env);

    let (server, endpoint) = env.serve();
    let pid = server.pid();
    let target = Target {
        address: endpoint
            .strip_prefix("tcp://")
            .and_then(|a| a.parse().ok())
            .expect("a tcp://IP:PORT endpoint"),
        endpoint,
        key: env.key.clone(),
        attacker,
    };
    let tally = Arc::new(Tally::default());
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let stop = Stop::new(started + settings.cap());
    let threads = attack.launch(&target, settings, &tally, &stop);
    while !tally.ready.load(Relaxed) && !stop.now() && started.elapsed() < settings.seconds / 2 {
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(WARM_UP);
    let under = valid_client_under_attack(&env, &target.endpoint, settings, started);
    if let Some(rest) = (started + settings.seconds).checked_duration_since(Instant::now()) {
        thread::sleep(rest);
    }
    stop.raise();
    let seconds = started.elapsed().as_secs_f64();
    let held: Vec<Held> = threads
        .into_iter()
        .map(|t| t.join().unwrap_or_default())
        .collect();
    let cpu = cpu_seconds(pid)
        .zip(cpu_before)
        .map(|(after, before)| (after - before) / seconds);
    let rss = peak_rss_kib(pid);
    let descriptors = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .ok();
    let open_files = max_open_files(pid);
    // With the attack's connections still open: SIGTERM must stop the server whatever its peers do.
    let shutdown = server.stop();
    drop(held);
    let after = store_bytes(&env);

    let t = |counter: &AtomicU64| Tally::get(counter);
    let requests = t(&tally.requests);
    let rate = match attack {
        Attack::EndlessMessage => format!("{:.1} MB/s", t(&tally.bytes) as f64 / seconds / 1e6),
        Attack::IdleConnections => format!("{} connections", t(&tally.connections)),
        Attack::Amplification => format!(
            "{:.0} req/s, {:.1} MB/s",
            requests as f64 / seconds,
            t(&tally.bytes) as f64 / seconds / 1e6
        ),
        _ => format!("{:.0} req/s", requests as f64 / seconds),
    };
    let note = match attack {
        Attack::EndlessMessage => format!(
            "{} connections, {} cut off by the server, {} stalled",
            t(&tally.connections),
            t(&tally.cut_off),
            t(&tally.failed)
        ),
        Attack::IdleConnections => format!(
            "{} of {} handshaken, {} failed; serve held {} descriptors (soft limit {})",
            t(&tally.connections),
            settings.idle,
            t(&tally.failed),
            descriptors.map_or("?".to_owned(), |d| d.to_string()),
            open_files.unwrap_or_else(|| "?".to_owned())
        ),
        Attack::NeverReads => format!("{requests} requests, no reply read"),
        _ => format!(
            "{requests} requests, {} replies, {} accepted",
            t(&tally.replies),
            t(&tally.accepted)
        ),
    };
    // The valid client's requests grew the store too: take away their share, at the rate they grew it without
    // the attack (a failed run's requests are not known and stay in).
    let valid_growth = at_rest.saturating_sub(fresh) as f64;
    let valid_share = match (&baseline, &under) {
        (Ok(without), Ok(with)) => {
            let probe = PROBE_REQUESTS.min(settings.count) as f64;
            valid_growth * (with.requests as f64 + probe) / without.requests.max(1) as f64
        }
        _ => 0.0,
    };
    let growth = after as i64 - at_rest as i64 - valid_share as i64;
    Row {
        attack,
        seconds,
        rate,
        note,
        baseline,
        under,
        baseline_rss,
        rss,
        cpu,
        growth,
        per_million: (attack.sends_requests() && requests > 0)
            .then(|| growth as f64 * 1e6 / requests as f64),
        shutdown,
    }
}

/// Requests of the valid client's first, short run under attack, which shows how slow the attack makes it.
const PROBE_REQUESTS: usize = 20;

/// The valid client's lockstep figures under an attack that began at `started`: a probe of a few requests, then
/// as many requests (up to `--count`) as the probe says fit in what is left of the attack's time, so that an
/// attack that slows every request down still gets figures, from fewer requests.
fn valid_client_under_attack(
    env: &Env,
    endpoint: &str,
    settings: &Settings,
    started: Instant,
) -> Result<Latency, String> {
    let cap_left = || (started + settings.cap()).saturating_duration_since(Instant::now());
    let probe = env.lockstep(endpoint, PROBE_REQUESTS.min(settings.count), cap_left())?;
    let per_request = probe.seconds / probe.requests.max(1) as f64;
    let left = (started + settings.seconds).saturating_duration_since(Instant::now());
    let fit = (left.as_secs_f64() / per_request) as usize;
    let count = fit.clamp(PROBE_REQUESTS.min(settings.count), settings.count);
    env.lockstep(endpoint, count, cap_left())
}

/// The figures of one attack.
struct Row {
    attack: Attack,
    seconds: f64,
    rate: String,
    note: String,
    baseline: Result<Latency, String>,
    under: Result<Latency, String>,
    baseline_rss: Option<u64>,
    rss: Option<u64>,
    /// Server CPU over the attack, in cores.
    cpu: Option<f64>,
    /// Store bytes the attack added (the valid client's share taken away).
    growth: i64,
    per_million: Option<f64>,
    shutdown: Result<Duration, String>,
}

impl Row {
    fn print(&self) {
        println!(
            "   attack: {} over {:.1} s; {}",
            self.rate, self.seconds, self.note
        );
        println!(
            "   valid client: p50 {} without attack, {} under it; p99 {} → {} ({} → {} requests)",
            p50(&self.baseline),
            p50(&self.under),
            p99(&self.baseline),
            p99(&self.under),
            requests(&self.baseline),
            requests(&self.under)
        );
        if let Err(e) = &self.under {
            println!("   valid client under attack failed: {e}");
        }
        println!(
            "   serve: peak RSS {} ({} without attack), CPU {} of a core, {} after SIGTERM",
            mib(self.rss),
            mib(self.baseline_rss),
            percent(self.cpu),
            stopped(&self.shutdown)
        );
        println!("   store: {}", self.store());
    }

    fn store(&self) -> String {
        match self.per_million {
            Some(per_million) => format!(
                "{} ({} per million requests)",
                bytes(self.growth as f64),
                bytes(per_million)
            ),
            None => bytes(self.growth as f64),
        }
    }
}

fn markdown_table(rows: &[Row], settings: &Settings) -> String {
    let mut table = format!(
        "`cargo bench --bench attacks{}`: {} s per attack. The valid client is `zavro bench --batch 1 --window 1`: \
         {} requests without attack; under attack, after a probe of {PROBE_REQUESTS}, as many as fit in the attack's \
         time, at most {} (the notes say how many).\n\n\
         | attack | attack's rate | valid p50: without → under | valid p99: without → under | serve peak RSS: \
         without → under | serve CPU | store growth | SIGTERM → exit | notes |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        if settings.smoke { " -- --smoke" } else { "" },
        settings.seconds.as_secs(),
        settings.count,
        settings.count
    );
    for row in rows {
        table.push_str(&format!(
            "| {} | {} | {} → {} | {} → {} | {} → {} | {} | {} | {} | {}; valid client: {} requests under \
             attack |\n",
            row.attack.name(),
            row.rate,
            p50(&row.baseline),
            p50(&row.under),
            p99(&row.baseline),
            p99(&row.under),
            mib(row.baseline_rss),
            mib(row.rss),
            percent(row.cpu),
            row.store(),
            stopped(&row.shutdown),
            row.note,
            requests(&row.under)
        ));
    }
    table
}

fn p50(latency: &Result<Latency, String>) -> String {
    latency
        .as_ref()
        .map_or("failed".to_owned(), |l| micros(l.p50_us))
}

fn p99(latency: &Result<Latency, String>) -> String {
    latency
        .as_ref()
        .map_or("failed".to_owned(), |l| micros(l.p99_us))
}

fn requests(latency: &Result<Latency, String>) -> String {
    latency
        .as_ref()
        .map_or("?".to_owned(), |l| l.requests.to_string())
}

fn micros(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn percent(cores: Option<f64>) -> String {
    cores.map_or("?".to_owned(), |c| format!("{:.0} %", c * 100.0))
}

fn bytes(n: f64) -> String {
    match n.abs() {
        a if a >= 1e9 => format!("{:.2} GB", n / 1e9),
        a if a >= 1e6 => format!("{:.1} MB", n / 1e6),
        a if a >= 1e3 => format!("{:.1} kB", n / 1e3),
        _ => format!("{n:.0} B"),
    }
}

fn stopped(shutdown: &Result<Duration, String>) -> String {
    match shutdown {
        Ok(took) => format!("{:.2} s", took.as_secs_f64()),
        Err(e) => e.clone(),
    }
}

/// The store's bytes on disk: the database and its write-ahead log.
fn store_bytes(env: &Env) -> u64 {
    let db = env.db();
    let wal = db.with_extension("db-wal");
    [db, wal]
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The soft limit on open files of process `pid`.
fn max_open_files(pid: u32) -> Option<String> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3).map(str::to_owned)
}

/// Attack 1: sends one message that never ends on each connection, frames with MORE set as fast as the
/// server reads them; when the server cuts the connection off, connects again.
fn endless_message(address: SocketAddr, tally: &Tally, stop: &Stop) -> Held {
    let write = zmtp::frame(&[b'x'; ENDLESS_FRAME], true).repeat(ENDLESS_FRAMES_PER_WRITE);
    let mut sent = 0u64;
    while !stop.now() && sent < MAX_BYTES_PER_THREAD {
        let Ok(mut stream) = zmtp_connect(address) else {
            Tally::add(&tally.failed, 1);
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        Tally::add(&tally.connections, 1);
        tally.ready.store(true, Relaxed);
        loop {
            if stop.now() {
                // Its message unfinished, for the server to be stopped with.
                return vec![Box::new(stream)];
            }
            match stream.write_all(&write) {
                Ok(()) => {
                    sent += write.len() as u64;
                    Tally::add(&tally.bytes, write.len() as u64);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Part of a frame may have been written: this connection's framing is lost.
                    Tally::add(&tally.failed, 1);
                    break;
                }
                Err(_) => {
                    Tally::add(&tally.cut_off, 1);
                    break;
                }
            }
        }
    }
    Vec::new()
}

/// DEALER sockets that each keep a window of requests in flight.
struct Dealers {
    sockets: Vec<zmq::Socket>,
    window: usize,
}

impl Dealers {
    fn new(context: &zmq::Context, endpoint: &str, count: usize, window: usize) -> Dealers {
        let sockets = (0..count)
            .map(|_| {
                let socket = context.socket(zmq::DEALER).expect("a DEALER socket");
                socket.set_linger(0).unwrap();
                socket.connect(endpoint).expect("connect to the server");
                socket
            })
            .collect();
        Dealers { sockets, window }
    }

    /// Sends `next()` requests as fast as replies free the windows, counting requests, bytes and replies.
    fn pipeline(self, mut next: impl FnMut() -> Vec<Vec<u8>>, tally: &Tally, stop: &Stop) -> Held {
        tally.ready.store(true, Relaxed);
        let mut in_flight = vec![0usize; self.sockets.len()];
        let mut last_reply = vec![Instant::now(); self.sockets.len()];
        let mut sent = 0u64;
        while !stop.now() && sent < MAX_REQUESTS_PER_THREAD {
            for (i, socket) in self.sockets.iter().enumerate() {
                while in_flight[i] < self.window {
                    let frames = next();
                    if socket.send_multipart(&frames, zmq::DONTWAIT).is_err() {
                        break;
                    }
                    in_flight[i] += 1;
                    sent += 1;
                    Tally::add(&tally.requests, 1);
                    Tally::add(&tally.bytes, frames.iter().map(|f| f.len() as u64).sum());
                }
                while let Ok(reply) = socket.recv_multipart(zmq::DONTWAIT) {
                    in_flight[i] = in_flight[i].saturating_sub(1);
                    last_reply[i] = Instant::now();
                    Tally::add(&tally.replies, 1);
                    let accepted = reply
                        .last()
                        .and_then(|frame| ReplyFrame::from_frame(frame).ok())
                        .is_some_and(|r| matches!(r.reply, Reply::Accepted { .. }));
                    if accepted {
                        Tally::add(&tally.accepted, 1);
                    }
                }
                if last_reply[i].elapsed() > STALL {
                    // The server dropped these replies (or the connection): stop waiting for them.
                    in_flight[i] = 0;
                    last_reply[i] = Instant::now();
                }
            }
            let mut items: Vec<zmq::PollItem> = self
                .sockets
                .iter()
                .map(|s| s.as_poll_item(zmq::POLLIN))
                .collect();
            let _ = zmq::poll(&mut items, 100);
        }
        self.sockets
            .into_iter()
            .map(|s| Box::new(s) as Box<dyn Any + Send>)
            .collect()
    }
}

/// Attack 3: malformed requests from a DEALER with the smallest receive buffers, which never reads a reply.
fn never_reads(context: &zmq::Context, endpoint: &str, tally: &Tally, stop: &Stop) -> Held {
    let socket = context.socket(zmq::DEALER).expect("a DEALER socket");
    socket.set_rcvhwm(1).unwrap();
    socket.set_rcvbuf(4096).unwrap();
    socket.set_linger(0).unwrap();
    socket.connect(endpoint).expect("connect to the server");
    tally.ready.store(true, Relaxed);
    let frames = envelope_with_field("extra");
    let size: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let mut sent = 0u64;
    while !stop.now() && sent < MAX_REQUESTS_PER_THREAD {
        if socket.send_multipart(&frames, zmq::DONTWAIT).is_ok() {
            sent += 1;
            Tally::add(&tally.requests, 1);
            Tally::add(&tally.bytes, size);
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
    vec![Box::new(socket)]
}

/// Attack 6: `count` connections that complete the ZeroMQ handshake and then say nothing, held open.
fn idle_connections(address: SocketAddr, count: usize, tally: &Tally, stop: &Stop) -> Held {
    let mut held: Held = Vec::new();
    for _ in 0..count {
        if stop.now() {
            break;
        }
        match TcpStream::connect_timeout(&address, IO_TIMEOUT) {
            Ok(mut stream) => {
                let counter = match zmtp::handshake(&mut stream, IO_TIMEOUT) {
                    Ok(()) => &tally.connections,
                    Err(_) => &tally.failed,
                };
                Tally::add(counter, 1);
                // Handshaken or not, the connection holds a descriptor of the server's.
                held.push(Box::new(stream));
            }
            Err(_) => Tally::add(&tally.failed, 1),
        }
    }
    tally.ready.store(true, Relaxed);
    while !stop.now() {
        thread::sleep(Duration::from_millis(50));
    }
    held
}

/// The frames of a request whose envelope has an unknown field `name`: valid JSON, refused as malformed.
fn envelope_with_field(name: &str) -> Vec<Vec<u8>> {
    let mut envelope = json!({
        "key": "ZKNOBODY", "timestamp": 1, "nonce": "nonce-0123456789abcdef", "signature": "x"
    });
    envelope[name] = json!(1);
    vec![
        b"zavro/1".to_vec(),
        serde_json::to_vec(&envelope).unwrap(),
        vec![0; 16],
    ]
}

/// Attack 4's requests: in turn malformed, from a key id never seen before, and with a bad signature.
struct UnvouchedRequests {
    thread: usize,
    sent: u64,
    known_key: String,
    malformed: Vec<Vec<u8>>,
    payload: Vec<u8>,
}

impl UnvouchedRequests {
    fn new(thread: usize, known_key: &str) -> UnvouchedRequests {
        UnvouchedRequests {
            thread,
            sent: 0,
            known_key: known_key.to_owned(),
            malformed: envelope_with_field("extra"),
            payload: zavro::avro::encode(&[json!({"flood": true})]).expect("a record encodes"),
        }
    }

    fn next(&mut self) -> Vec<Vec<u8>> {
        self.sent += 1;
        let key = match self.sent % 3 {
            0 => return self.malformed.clone(),
            1 => format!("ZKFLOOD{}X{:016X}", self.thread, self.sent),
            _ => self.known_key.clone(),
        };
        let envelope = Envelope {
            key,
            timestamp: zavro::timestamp::now_seconds(),
            nonce: format!("flood{}x{:032x}", self.thread, self.sent),
            id: None,
            signature: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        };
        vec![
            b"zavro/1".to_vec(),
            serde_json::to_vec(&envelope).unwrap(),
            self.payload.clone(),
        ]
    }
}

/// A deflated container file of one `"string"` record of `len` NUL bytes: about 1 KB per MiB on the wire.
fn deflate_bomb(len: usize) -> Vec<u8> {
    let mut file = ContainerWriter::new(r#""string""#, Codec::Deflate(Default::default()), [7; 16]);
    let mut data = Vec::new();
    write_long(&mut data, len as i64);
    data.resize(data.len() + len, 0);
    file.write_block(1, data).expect("a block of one string");
    file.finish()
}

/// `payload` signed now with a fresh nonce.
fn signed(key: &str, secret: &str, payload: Vec<u8>) -> Vec<Vec<u8>> {
    let nonce = zavro::credentials::new_nonce().expect("a random nonce");
    Request::sign(
        key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        &nonce,
        payload,
    )
    .to_frames()
    .to_vec()
}

/// Connects and completes the ZMTP handshake as a DEALER; reads and writes time out after [`IO_TIMEOUT`].
fn zmtp_connect(address: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)?;
    zmtp::handshake(&mut stream, IO_TIMEOUT)?;
    Ok(stream)
}

/// ZMTP spoken by hand, shared with the attack tests.
#[path = "../tests/cli/zmtp.rs"]
mod zmtp;
