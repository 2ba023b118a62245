//! The server: requests come off a ROUTER socket in groups and go down one pipeline, each step a plain function
//! of the one before:
//!
//! 1. [`transport`]: ZeroMQ messages → an [`Arrival`] per request (body frames, peer, size) and its route;
//! 2. [`request`]: an arrival's frames → a [`Request`](crate::protocol::Request), or why not;
//! 3. [`check`]: a request against what the store says of its key and nonce → a [`check::Verdict`] that
//!    carries everything its answer needs;
//! 4. [`commit`]: the group's verdicts → their rows, in one durable transaction of the store;
//! 5. [`outcome`]: a verdict and what the store made of it → an [`Outcome`] (reply, audit id, records, log line);
//!
//! and then [`run`] writes the records out, sends the replies, and logs. [`Worker`] drives steps 2–5 for a
//! group; [`run`] owns the socket, the log and the schedule of housekeeping. Over CURVE, the [`zap`] handler
//! checks each connection's client key before any of this, on a thread of its own.

mod check;
mod commit;
mod health;
mod log;
pub mod name;
mod outcome;
mod output;
mod request;
mod tally;
#[cfg(test)]
mod testing;
mod transport;
mod worker;
pub mod zap;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

pub use log::{Event, Fields, Format as LogFormat, Log};
pub use outcome::{LogLine, Outcome};
pub use output::RecordsOut;
pub use request::{Arrival, MAX_FRAMES};
pub use transport::{REPLY_QUEUE_PER_PEER, cut_off_peers_that_do_not_read};
pub use worker::Worker;

use crate::{
    metrics::Metrics,
    protocol::{RejectCode, Reply},
    store::{RequestStore, pending},
    timestamp,
};

/// How long the loop waits for a request before it looks at the shutdown flag again (a signal also ends the
/// wait at once).
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How often old nonces are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// How far a server's clock may be behind the store's (on PostgreSQL the database's) before pruning could forget
/// a nonce it still needs: nonces are kept for the store's recorded window (the largest `--max-skew` any server
/// has used on it) plus this. Servers are expected to keep their clocks synchronised (NTP), far closer than this.
pub const NONCE_CLOCK_MARGIN_SECS: i64 = 60;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted distance, in seconds, between a request's timestamp and the server's clock.
    pub max_skew_secs: i64,
    /// When not empty, only data whose writer schema resolves against one of these is accepted.
    pub reader_schemas: Vec<apache_avro::Schema>,
    /// How clients reach the server, as each audit row records it.
    pub transport: Transport,
    /// The server's name (`serve --name`), written into every audit row it writes.
    pub name: String,
    /// libzmq's counts of connections cut off, read before the socket was bound ([`CutoffCounts::now`]): the
    /// counters are the whole process's, and every cut-off past them is this server's, including those made
    /// after the bind and before the loop's first turn (the socket takes connections as soon as it is bound).
    pub cutoffs_before_bind: CutoffCounts,
}

/// How clients reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// CurveZMQ: encrypted, and each connection authenticated as an API key at the handshake.
    Curve,
    /// ZeroMQ's NULL mechanism (`serve --plaintext`): neither encrypted nor authenticated.
    Plaintext,
}

impl Transport {
    /// The word in the audit trail's `transport` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Curve => "curve",
            Transport::Plaintext => "plaintext",
        }
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The ZeroMQ socket failed.
    #[error("socket error: {0}")]
    Socket(#[from] zmq::Error),
    /// The store was deleted or replaced under the server, which stopped acknowledging.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// The ZAP handler's thread ended: without it, libzmq would admit every CURVE client.
    #[error("the handshake check stopped (see the line before); restart the server")]
    HandshakeCheckStopped,
    /// Accepted records could not be written to the output; they are safe in the store.
    #[error(
        "cannot write accepted records to {output}: {error}; they are committed in the store, and \
         `zavro audit export --since {since}` writes them; {}",
        if *ends_whole {
            "the file ends with the last whole line before them"
        } else {
            "some of them may have been written already"
        }
    )]
    Output {
        /// The output's name.
        output: String,
        /// Why the write failed.
        error: std::io::Error,
        /// A time (RFC 3339) just before the group whose records were not written.
        since: String,
        /// True when the output was cut back to its last whole line (a file); a stream cannot be.
        ends_whole: bool,
    },
}

/// What runs beside the loop and hears from it.
#[derive(Clone, Copy, Default)]
pub struct Companions<'a> {
    /// Over CURVE, the socket's ZAP handler: the handshakes it refused are counted each turn, and the server
    /// stops if it stops.
    pub handshakes: Option<&'a zap::Handler>,
    /// With `serve --metrics`, where the loop counts what it does and says whether it is ready.
    pub metrics: Option<&'a Metrics>,
}

/// Counts of what a server run handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests accepted (including recognised retries of accepted requests).
    pub accepted: u64,
    /// Requests refused.
    pub rejected: u64,
}

/// Serves requests on an already-bound ROUTER socket until `shutdown` becomes true.
///
/// Requests are taken in groups (everything waiting, within limits), checked, committed in one durable
/// transaction, written out, and only then answered, in arrival order; the log follows the answers. A group in
/// hand when the signal arrives is finished before returning. `companions` are the ZAP handler (over CURVE) and
/// the metrics (with `--metrics`).
pub fn run<S: RequestStore>(
    socket: &zmq::Socket,
    store: &mut S,
    output: &mut RecordsOut,
    mut log: Log,
    settings: &Settings,
    shutdown: &AtomicBool,
    companions: Companions,
) -> Result<Stats, ServeError> {
    let Companions {
        handshakes,
        metrics,
    } = companions;
    let mut stats = Stats::default();
    let mut worker = Worker::new(settings).with_metrics(metrics.cloned());
    let mut store_watch = metrics.cloned().map(health::StoreWatch::new);
    prune_nonces(store, settings, &mut log);
    if let Some(watch) = &store_watch {
        watch.refresh_size(store, &mut log);
    }
    let mut last_prune = Instant::now();
    let mut settler = Settler::default();
    // From the counts before the bind, not the counts now: a peer can be cut off while the loop is still
    // starting (pruning above can take a while), and reading the counts here would leave that one out.
    let mut cutoffs_seen = settings.cutoffs_before_bind;
    // A blocking receive with a timeout rather than poll-then-receive: the same wake-up, fewer calls into
    // ZeroMQ (and system calls) per request.
    socket.set_rcvtimeo(POLL_INTERVAL.as_millis() as i32)?;
    while !shutdown.load(Ordering::SeqCst) {
        if let Some(group) = transport::receive_group(socket)? {
            let received = Instant::now();
            let (routes, arrivals): (Vec<_>, Vec<_>) =
                group.into_iter().map(|i| (i.route, i.arrival)).unzip();
            let mut done = 0;
            while done < arrivals.len() {
                // Before the group's rows are stamped: what `audit export --since` is told to recover from.
                let group_started_us = timestamp::now_micros();
                let outcomes = worker.handle(store, &arrivals[done..], &mut log);
                let routes = &routes[done..done + outcomes.len()];
                let sizes = arrivals[done..].iter().map(|arrival| arrival.size);
                done += outcomes.len();
                // A store replaced under the server refuses its groups (`begin_group` checks, so the group was
                // refused as internal); once that group is answered, stop: every later request would be refused
                // too, and a restart opens the right file.
                let refused_by_store = outcomes.iter().any(|o| {
                    matches!(
                        o.reply.reply,
                        Reply::Rejected {
                            code: RejectCode::Internal,
                            ..
                        }
                    )
                });
                let moved = if refused_by_store {
                    store.still_in_place()
                } else {
                    Ok(())
                };
                // Records are already committed; write them out before acknowledging, and stop on failure only
                // after the clients have their answers.
                let written = output.write_group(
                    outcomes
                        .iter()
                        .filter_map(|o| o.records.as_ref())
                        .map(|r| r.text.as_slice()),
                );
                // Counted just before the replies go out, so that whoever has a reply finds it counted.
                if let Some(metrics) = metrics {
                    let waited = received.elapsed();
                    metrics.group(outcomes.len());
                    for (outcome, size) in outcomes.iter().zip(sizes) {
                        metrics.answered(&outcome.reply.reply, size, waited, outcome.audit_id);
                    }
                }
                for (route, outcome) in routes.iter().zip(&outcomes) {
                    match outcome.reply.reply {
                        Reply::Accepted { .. } => stats.accepted += 1,
                        Reply::Rejected { .. } => stats.rejected += 1,
                    }
                    transport::send_reply(socket, route, &outcome.reply.to_frame())?;
                }
                if let Some(watch) = &mut store_watch {
                    watch.group_done(refused_by_store, &mut log);
                }
                // The log is for people: it is written once the clients have their answers, not before.
                for line in outcomes.into_iter().filter_map(|o| o.line) {
                    line.print(&mut log);
                }
                written.map_err(|error| ServeError::Output {
                    output: output.name(),
                    error,
                    since: timestamp::format_rfc3339(group_started_us - 1_000_000),
                    ends_whole: output.cuts_back_failed_writes(),
                })?;
                if let Err(e) = moved {
                    let message = e.to_string();
                    log.event(
                        Event::Stopping,
                        Fields::message(&message),
                        format_args!("stopping: {message}"),
                    );
                    return Err(e.into());
                }
                // After the replies, so that the pause delays the next group rather than these answers.
                if store.unsettled() >= pending::SETTLE_AFTER {
                    settler.settle(store, false, &mut log);
                }
            }
        } else {
            // Idle: a good moment to settle what waits, which every other reader would otherwise do first.
            settler.settle(store, false, &mut log);
        }
        log.roll_windows();
        let now_us = timestamp::now_micros();
        note_new_cutoffs(&mut worker, &mut cutoffs_seen, now_us);
        if let Some(handshakes) = handshakes {
            worker.note_refused_handshakes(handshakes.refused());
            if !handshakes.is_running() {
                worker.close_windows(store, now_us, true, &mut log);
                return Err(ServeError::HandshakeCheckStopped);
            }
        }
        worker.close_windows(store, now_us, false, &mut log);
        if last_prune.elapsed() >= PRUNE_INTERVAL {
            prune_nonces(store, settings, &mut log);
            if let Some(watch) = &store_watch {
                watch.refresh_size(store, &mut log);
            }
            last_prune = Instant::now();
        }
        if let Some(watch) = &mut store_watch {
            watch.probe_if_due(store, settings.max_skew_secs, &mut log);
        }
    }
    if let Some(metrics) = metrics {
        metrics.readiness().stopping();
    }
    // Connections cut off and handshakes refused since the last turn are counted too, before the last windows
    // close.
    let now_us = timestamp::now_micros();
    note_new_cutoffs(&mut worker, &mut cutoffs_seen, now_us);
    if let Some(handshakes) = handshakes {
        worker.note_refused_handshakes(handshakes.refused());
    }
    worker.close_windows(store, now_us, true, &mut log);
    settler.settle(store, true, &mut log);
    Ok(stats)
}

/// Settles the store's pending rows ([`pending`]) for the loop: while it serves, only when no other process holds
/// the write lock (an idle turn must not wait 30 s for an `audit prune`); when it stops, waiting as any write does.
/// A failure leaves the rows where they are, durable already, for the next try (or whoever opens the store next),
/// and the store writes every row straight into `audit` until a settlement succeeds, so that the failure shows
/// in the answers; it is logged once, and so is the recovery, not at every idle turn in between.
#[derive(Default)]
struct Settler {
    failing: bool,
}

impl Settler {
    fn settle<S: RequestStore>(&mut self, store: &mut S, wait_for_lock: bool, log: &mut Log) {
        match store.settle(wait_for_lock) {
            Err(e) if !self.failing => {
                self.failing = true;
                let message =
                    format!("cannot move acknowledged requests into the audit tables yet: {e}");
                log.event(
                    Event::StoreError,
                    Fields::message(&message),
                    format_args!("{message}"),
                );
            }
            // Busy (another process writes): nothing was tried, so nothing recovered either.
            Ok(Some(_)) if self.failing => {
                self.failing = false;
                let message = "acknowledged requests move into the audit tables again";
                log.event(
                    Event::StoreRecovered,
                    Fields::message(message),
                    format_args!("{message}"),
                );
            }
            _ => {}
        }
    }
}

/// libzmq's counts of the connections it cut off (patches 0004 and 0006), in the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutoffCounts {
    /// For a message past `--max-message-size`.
    oversized: u64,
    /// For replies left unread until the peer's queue was full.
    unread: u64,
}

impl CutoffCounts {
    /// The counts now.
    pub fn now() -> CutoffCounts {
        CutoffCounts {
            oversized: transport::oversized_message_cutoffs(),
            unread: transport::full_queue_cutoffs(),
        }
    }
}

/// Hands the worker the connections libzmq cut off since `seen` was last updated: each reason's are written,
/// and logged, as one summary per 10-second window, however many there were.
fn note_new_cutoffs(worker: &mut Worker, seen: &mut CutoffCounts, now_us: i64) {
    let now = CutoffCounts::now();
    if now.oversized > seen.oversized {
        worker.note_cutoffs(
            tally::Reason::CutOff,
            now.oversized - seen.oversized,
            now_us,
        );
    }
    if now.unread > seen.unread {
        worker.note_cutoffs(
            tally::Reason::UnreadReplies,
            now.unread - seen.unread,
            now_us,
        );
    }
    *seen = now;
}

/// Forgets nonces too old to pass any server's clock check (the store's recorded window plus
/// [`NONCE_CLOCK_MARGIN_SECS`]); a failure is logged and tried again next time. This server's own skew is
/// recorded again first (`serve` recorded it at start-up), so a window lowered by hand below a running server's
/// skew is put back within a minute.
fn prune_nonces<S: RequestStore>(store: &mut S, settings: &Settings, log: &mut Log) {
    let pruned = store
        .widen_nonce_window(settings.max_skew_secs)
        .and_then(|_| store.prune_nonces(NONCE_CLOCK_MARGIN_SECS));
    if let Err(e) = pruned {
        let message = format!("could not prune old nonces: {e}");
        log.event(
            Event::StoreError,
            Fields::message(&message),
            format_args!("{message}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, MutexGuard, atomic::AtomicBool},
        thread::{self, JoinHandle},
    };

    use serde_json::json;

    use super::{testing::*, *};
    use crate::protocol::{Reply, ReplyFrame, Request};

    /// A server loop on its own thread, on a ROUTER bound to a port the OS picked, with a store in `dir`.
    struct Running {
        endpoint: String,
        shutdown: Arc<AtomicBool>,
        thread: JoinHandle<Result<Stats, ServeError>>,
        output: Captured,
        log: Captured,
        context: zmq::Context,
        /// Held from before the bind to the end ([`cut_off_counts_alone`]).
        _alone: MutexGuard<'static, ()>,
    }

    impl Running {
        fn start(dir: &std::path::Path) -> Running {
            Running::start_with(dir, None)
        }

        /// [`Running::start`], counting into `metrics` when given.
        fn start_with(dir: &std::path::Path, metrics: Option<Metrics>) -> Running {
            Running::launch(dir, metrics, None, |_, _| {})
        }

        /// [`Running::start_with`], the socket limiting messages to `max_message_size` bytes when given, and
        /// `before_loop` called with the context and the bound socket's endpoint before the loop starts.
        fn launch(
            dir: &std::path::Path,
            metrics: Option<Metrics>,
            max_message_size: Option<i64>,
            before_loop: impl FnOnce(&zmq::Context, &str),
        ) -> Running {
            let alone = cut_off_counts_alone();
            let (mut store, settings) = store_with_key(dir);
            let context = zmq::Context::new();
            let socket = context.socket(zmq::ROUTER).unwrap();
            if let Some(limit) = max_message_size {
                socket.set_maxmsgsize(limit).unwrap();
            }
            socket.bind("tcp://127.0.0.1:*").unwrap();
            let endpoint = socket.get_last_endpoint().unwrap().unwrap();
            before_loop(&context, &endpoint);
            let shutdown = Arc::new(AtomicBool::new(false));
            let (log, captured) = captured_log();
            let output = Captured::default();
            let mut records_out = RecordsOut::stream(output.clone());
            let flag = Arc::clone(&shutdown);
            let thread = thread::spawn(move || {
                run(
                    &socket,
                    &mut store,
                    &mut records_out,
                    log,
                    &settings,
                    &flag,
                    Companions {
                        handshakes: None,
                        metrics: metrics.as_ref(),
                    },
                )
            });
            Running {
                endpoint,
                shutdown,
                thread,
                output,
                log: captured,
                context,
                _alone: alone,
            }
        }

        fn connect(&self, kind: zmq::SocketType) -> zmq::Socket {
            let socket = self.context.socket(kind).unwrap();
            socket.set_rcvtimeo(30_000).unwrap();
            socket.set_linger(0).unwrap();
            socket.connect(&self.endpoint).unwrap();
            socket
        }

        fn stop(self) -> (Stats, Vec<u8>, Vec<String>) {
            self.shutdown.store(true, Ordering::SeqCst);
            let stats = self.thread.join().unwrap();
            (stats.unwrap(), self.output.bytes(), self.log.lines())
        }
    }

    fn request(nonce: &str, record: serde_json::Value) -> Request {
        Request::sign(
            KEY,
            SECRET.as_bytes(),
            timestamp::now_seconds(),
            nonce,
            payload(&[record]),
        )
    }

    fn reply(socket: &zmq::Socket) -> ReplyFrame {
        let frames = socket.recv_multipart(0).unwrap();
        ReplyFrame::from_frame(frames.last().unwrap()).unwrap()
    }

    #[test]
    fn the_loop_answers_pipelined_requests_in_order_writes_their_records_and_logs_after() {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path());
        let dealer = server.connect(zmq::DEALER);
        let nonces: Vec<String> = (0..20).map(|i| format!("nonce-{i:012}")).collect();
        for (i, nonce) in nonces.iter().enumerate() {
            let frames = request(nonce, json!({ "i": i })).to_frames();
            dealer.send_multipart(frames, 0).unwrap();
        }
        dealer
            .send_multipart([b"zavro/1".to_vec(), b"{}".to_vec()], 0)
            .unwrap();
        for nonce in &nonces {
            let frame = reply(&dealer);
            assert_eq!(frame.nonce.as_deref(), Some(nonce.as_str()));
            assert!(matches!(frame.reply, Reply::Accepted { records: 1, .. }));
        }
        let malformed = reply(&dealer);
        assert!(matches!(malformed.reply, Reply::Rejected { .. }));
        assert_eq!(malformed.nonce, None);

        let (stats, output, log) = server.stop();
        assert_eq!(
            stats,
            Stats {
                accepted: 20,
                rejected: 1
            }
        );
        let expected: String = (0..20).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        assert_eq!(String::from_utf8(output).unwrap(), expected);
        let accepted = log.iter().filter(|l| l.starts_with("accepted #")).count();
        assert_eq!(accepted, 20, "{log:?}");
        assert!(
            log.iter()
                .any(|l| l.starts_with("rejected #") && l.contains("malformed"))
        );
    }

    #[test]
    fn a_server_never_idle_settles_once_its_pending_rows_reach_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path());
        let dealer = server.connect(zmq::DEALER);
        let requests = pending::SETTLE_AFTER + 8;
        for i in 0..requests {
            let frames = request(&format!("nonce-{i:012}"), json!({ "i": i })).to_frames();
            dealer.send_multipart(frames, 0).unwrap();
        }
        for _ in 0..requests {
            assert!(matches!(reply(&dealer).reply, Reply::Accepted { .. }));
        }
        // The loop settles after a group's replies: one more request is answered only once that is done.
        let last = request(&format!("nonce-{requests:012}"), json!("last")).to_frames();
        dealer.send_multipart(last, 0).unwrap();
        assert!(matches!(reply(&dealer).reply, Reply::Accepted { .. }));
        // Read straight from the file (opening it as a store would settle). An idle turn (200 ms without a
        // request) settles everything, and then this holds too.
        let pending: i64 = rusqlite::Connection::open(dir.path().join("zavro.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM pending", [], |row| row.get(0))
            .unwrap();
        assert!(
            pending <= pending::SETTLE_AFTER as i64,
            "{pending} of {} small requests still pending",
            requests + 1
        );
        server.stop();
    }

    #[test]
    fn a_req_peer_gets_its_reply_through_the_empty_delimiter() {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path());
        let req = server.connect(zmq::REQ);
        req.send_multipart(request("nonce-000000000001", json!(1)).to_frames(), 0)
            .unwrap();
        let frames = req.recv_multipart(0).unwrap();
        assert_eq!(
            frames.len(),
            1,
            "REQ strips the delimiter the server echoed"
        );
        let frame = ReplyFrame::from_frame(&frames[0]).unwrap();
        assert!(matches!(frame.reply, Reply::Accepted { .. }));
        let (stats, output, _) = server.stop();
        assert_eq!(stats.accepted, 1);
        assert_eq!(output, b"1\n");
    }

    #[test]
    fn a_connection_cut_off_after_the_bind_and_before_the_loop_starts_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        // On a loaded machine libzmq can cut a peer off while the loop is still starting: a loop that read
        // libzmq's counts when it started left that cut-off out of the audit trail.
        let server = Running::launch(dir.path(), None, Some(1024), |context, endpoint| {
            let dealer = context.socket(zmq::DEALER).unwrap();
            dealer.set_linger(0).unwrap();
            dealer.set_reconnect_ivl(-1).unwrap();
            dealer
                .monitor(
                    "inproc://cut-off-before-the-loop",
                    zmq::SocketEvent::DISCONNECTED as i32,
                )
                .unwrap();
            let events = context.socket(zmq::PAIR).unwrap();
            events.set_rcvtimeo(30_000).unwrap();
            events.connect("inproc://cut-off-before-the-loop").unwrap();
            dealer.connect(endpoint).unwrap();
            dealer.send(vec![b'x'; 2048], 0).unwrap();
            // libzmq counts the cut-off before it closes the connection, so it is counted once the peer sees
            // the close.
            let event = events
                .recv_multipart(0)
                .expect("the server cut off the peer of a message past its limit");
            let id = event
                .first()
                .and_then(|head| head.get(..2))
                .map(|id| u16::from_le_bytes([id[0], id[1]]));
            assert_eq!(id, Some(zmq::SocketEvent::DISCONNECTED.to_raw()));
        });
        let (_, _, log) = server.stop();
        // No other test of this process sends a message past a limit, so the process-wide count is this one.
        assert!(
            log.iter().any(|line| line
                .contains(": 1 connections cut off for a message past --max-message-size in 10 s")),
            "{log:?}"
        );
    }

    #[test]
    fn a_message_of_too_many_frames_is_refused_and_the_loop_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path());
        let dealer = server.connect(zmq::DEALER);
        let mut frames = request("nonce-000000000001", json!(1)).to_frames().to_vec();
        frames.extend((0..MAX_FRAMES).map(|_| b"x".to_vec()));
        dealer.send_multipart(frames, 0).unwrap();
        let refused = reply(&dealer);
        assert!(
            matches!(&refused.reply, Reply::Rejected { message, .. } if message == "more than 8 frames"),
            "{refused:?}"
        );
        dealer
            .send_multipart(request("nonce-000000000002", json!(2)).to_frames(), 0)
            .unwrap();
        assert!(matches!(reply(&dealer).reply, Reply::Accepted { .. }));
        let (stats, _, _) = server.stop();
        assert_eq!(
            stats,
            Stats {
                accepted: 1,
                rejected: 1
            }
        );
    }

    #[test]
    fn with_metrics_the_loop_counts_each_reply_by_code_and_says_it_is_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let (metrics, registry) = Metrics::new();
        metrics.readiness().bound();
        let server = Running::start_with(dir.path(), Some(metrics.clone()));
        let dealer = server.connect(zmq::DEALER);
        dealer
            .send_multipart(request("nonce-000000000001", json!(1)).to_frames(), 0)
            .unwrap();
        let accepted = reply(&dealer);
        let Reply::Accepted { audit_id, .. } = accepted.reply else {
            panic!("{accepted:?}")
        };
        dealer.send_multipart([b"x".to_vec()], 0).unwrap();
        assert!(matches!(reply(&dealer).reply, Reply::Rejected { .. }));
        assert_eq!(metrics.readiness().check(), Ok(()));
        server.stop();
        assert!(metrics.readiness().check().is_err(), "stopping");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "zavro_requests_total{code=\"accepted\"} 1\n".to_owned(),
            "zavro_requests_total{code=\"unsupported_version\"} 1\n".to_owned(),
            "zavro_accepted_records_total 1\n".to_owned(),
            "zavro_group_requests_count 2\n".to_owned(),
            "zavro_request_seconds_count 2\n".to_owned(),
            "zavro_commit_seconds_count 2\n".to_owned(),
            format!("zavro_audit_last_id {}\n", audit_id + 1),
        ] {
            assert!(text.contains(&line), "no {line:?} in {text}");
        }
        assert!(!text.contains("zavro_store_bytes 0\n"), "{text}");
    }

    #[test]
    fn a_settlement_that_fails_is_logged_once_tried_again_and_its_recovery_logged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let (mut log, captured) = captured_log();
        let outcome = Worker::new(&settings).handle(
            &mut store,
            &[signed("nonce-000000000001", payload(&[json!(1)]))],
            &mut log,
        );
        assert!(matches!(outcome[0].reply.reply, Reply::Accepted { .. }));
        assert_eq!(
            store.unsettled(),
            1,
            "a small request is acknowledged as pending"
        );

        let mut settler = Settler::default();
        store.refuse_writes(true);
        settler.settle(&mut store, false, &mut log);
        settler.settle(&mut store, false, &mut log);
        let failures = |lines: &[String]| {
            lines
                .iter()
                .filter(|l| l.contains("cannot move acknowledged requests"))
                .count()
        };
        assert_eq!(
            failures(&captured.lines()),
            1,
            "logged once, not at every try"
        );
        assert_eq!(store.unsettled(), 1, "still pending, for the next try");

        // Another process holds the write lock: the try is put off, which is no recovery.
        store.refuse_writes(false);
        let holder = rusqlite::Connection::open(dir.path().join("zavro.db")).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        settler.settle(&mut store, false, &mut log);
        assert!(
            !captured.lines().iter().any(|l| l.contains("again")),
            "{:?}",
            captured.lines()
        );
        holder.execute_batch("COMMIT").unwrap();
        settler.settle(&mut store, false, &mut log);
        let lines = captured.lines();
        assert!(
            lines
                .last()
                .unwrap()
                .contains("move into the audit tables again"),
            "{lines:?}"
        );
        assert_eq!(store.unsettled(), 0);
        assert_eq!(
            store
                .query_audit(&crate::store::AuditFilter::default())
                .unwrap()
                .len(),
            2,
            "the key's row and the request's"
        );
    }
}
