//! The server loop: receive a request, hand it to [`handle`], write accepted records out, and only then
//! acknowledge. Every request gets a reply and an audit row, whatever it holds.

mod handle;
mod log;

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

pub use log::Log;

use handle::Worker;

use crate::{
    avro::Ndjson,
    protocol::{Reply, ReplyFrame},
    store::Store,
    timestamp,
};

/// How long the loop waits for a request before it looks at the shutdown flag again (a signal also ends the
/// wait at once).
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How often old nonces are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Frames kept from one request; more is malformed, and the rest are read and dropped.
const MAX_FRAMES: usize = 8;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted distance, in seconds, between a request's timestamp and the server's clock.
    pub max_skew_secs: i64,
    /// When not empty, only data whose writer schema resolves against one of these is accepted.
    pub reader_schemas: Vec<apache_avro::Schema>,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The ZeroMQ socket failed.
    #[error("socket error: {0}")]
    Socket(#[from] zmq::Error),
    /// Accepted records could not be written to the output; they are safe in the store.
    #[error("cannot write accepted records to the output (they are in the store): {0}")]
    Output(std::io::Error),
}

/// Counts of what a server run handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests accepted (including recognised retries of accepted requests).
    pub accepted: u64,
    /// Requests refused.
    pub rejected: u64,
}

/// Most requests committed together in one group.
const GROUP_MAX_REQUESTS: usize = 256;

/// A group stops growing once its requests hold this many bytes, which bounds the server's memory.
const GROUP_MAX_BYTES: u64 = 4 << 20;

/// Serves requests on an already-bound ROUTER socket until `shutdown` becomes true.
///
/// Requests are taken in groups (everything waiting, up to [`GROUP_MAX_REQUESTS`] or [`GROUP_MAX_BYTES`]),
/// checked, committed in one durable transaction, written out, and only then answered, in arrival order. A
/// group in hand when the signal arrives is finished before returning.
pub fn run(
    socket: &zmq::Socket,
    store: &mut Store,
    output: &mut dyn Write,
    settings: &Settings,
    shutdown: &AtomicBool,
) -> Result<Stats, ServeError> {
    let mut stats = Stats::default();
    let mut worker = Worker::new(store, settings);
    let mut last_prune = Instant::now();
    prune_nonces(&mut worker, settings);
    // A blocking receive with a timeout rather than poll-then-receive: the same wake-up, fewer calls into
    // ZeroMQ (and system calls) per request.
    socket.set_rcvtimeo(POLL_INTERVAL.as_millis() as i32)?;
    while !shutdown.load(Ordering::SeqCst) {
        match receive_group(socket) {
            Ok(None) => {}
            Ok(Some(group)) => {
                let answers = worker.handle_group(&group);
                // Records are already committed; write them out before acknowledging, and stop on failure
                // only after the clients have their answers.
                let mut written = Ok(());
                for answer in &answers {
                    match &answer.reply {
                        Reply::Accepted { .. } => stats.accepted += 1,
                        Reply::Rejected { .. } => stats.rejected += 1,
                    }
                    if let (Ok(()), Some(records)) = (&written, &answer.records) {
                        written = write_records(output, records);
                    }
                }
                if written.is_ok() {
                    written = output.flush();
                }
                let mut lines = Vec::with_capacity(answers.len());
                for (incoming, answer) in group.iter().zip(answers) {
                    lines.extend(answer.line);
                    let frame = ReplyFrame {
                        nonce: answer.nonce,
                        reply: answer.reply,
                    };
                    send_reply(socket, &incoming.route, &frame)?;
                }
                // The log is for people: it is written once the clients have their answers, not before.
                for line in lines {
                    line.print(&mut worker.log);
                }
                written.map_err(ServeError::Output)?;
            }
            Err(e) => return Err(e.into()),
        }
        worker.log.roll_windows();
        if last_prune.elapsed() >= PRUNE_INTERVAL {
            prune_nonces(&mut worker, settings);
            last_prune = Instant::now();
        }
    }
    Ok(stats)
}

/// Waits up to the socket's receive timeout for a request, then takes every further one already waiting, within
/// the group limits. `None` when none came in time or a signal interrupted the wait, so the loop can look at the
/// shutdown flag.
fn receive_group(socket: &zmq::Socket) -> Result<Option<Vec<Incoming>>, zmq::Error> {
    let first = match receive(socket, 0) {
        Ok(incoming) => incoming,
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = first.size;
    let mut group = vec![first];
    while group.len() < GROUP_MAX_REQUESTS && bytes < GROUP_MAX_BYTES {
        match receive(socket, zmq::DONTWAIT) {
            Ok(incoming) => {
                bytes += incoming.size;
                group.push(incoming);
            }
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(group))
}

/// One request as it came off the socket.
pub(crate) struct Incoming {
    /// Routing frames to echo: the peer identity, and the empty delimiter when the peer sent one.
    route: Vec<Vec<u8>>,
    /// The request frames after the route.
    body: Vec<Vec<u8>>,
    /// The peer's IP address, when the transport knows it.
    peer: Option<String>,
    /// Total bytes of the body frames, including any that were dropped.
    size: u64,
    /// True when the request had more frames than a request can have.
    too_many_frames: bool,
}

/// Runs a ZeroMQ call again when a signal interrupted it: SIGTERM may land inside any call, and must stop the
/// server only once the group in hand is answered (only the wait for a new request gives up, see [`receive`]).
/// A call that fails with EINTR has not sent or taken a frame, so repeating it is safe.
fn restarting<T>(mut call: impl FnMut() -> Result<T, zmq::Error>) -> Result<T, zmq::Error> {
    loop {
        match call() {
            Err(zmq::Error::EINTR) => continue,
            result => return result,
        }
    }
}

/// Receives one request. The first frame's call is not restarted: EINTR there means nothing was taken, and the
/// caller must get the chance to stop. The frames after it are part of the same message and always follow.
fn receive(socket: &zmq::Socket, flags: i32) -> Result<Incoming, zmq::Error> {
    let identity = socket.recv_msg(flags)?;
    let mut peer = None;
    let mut frames = Vec::new();
    let mut size = 0u64;
    let mut too_many_frames = false;
    while restarting(|| socket.get_rcvmore())? {
        let mut frame = restarting(|| socket.recv_msg(0))?;
        // The ROUTER socket makes up the identity frame; only frames from the wire carry the peer's metadata.
        if peer.is_none() {
            peer = frame.gets("Peer-Address").map(str::to_owned);
        }
        size += frame.len() as u64;
        if frames.len() < MAX_FRAMES {
            frames.push(frame.to_vec());
        } else {
            too_many_frames = true;
        }
    }
    let mut route = vec![identity.to_vec()];
    // A REQ peer (or a DEALER imitating one) puts an empty delimiter before the request; echo it back.
    if frames.first().is_some_and(Vec::is_empty) {
        route.push(frames.remove(0));
    }
    Ok(Incoming {
        route,
        body: frames,
        peer,
        size,
        too_many_frames,
    })
}

fn send_reply(
    socket: &zmq::Socket,
    route: &[Vec<u8>],
    reply: &ReplyFrame,
) -> Result<(), zmq::Error> {
    let reply = reply.to_frame();
    // Frame by frame rather than send_multipart, so an interrupted frame is sent again alone.
    for frame in route {
        restarting(|| socket.send(frame.as_slice(), zmq::SNDMORE))?;
    }
    restarting(|| socket.send(reply.as_slice(), 0))
}

fn write_records(output: &mut dyn Write, records: &Ndjson) -> std::io::Result<()> {
    output.write_all(&records.text)
}

fn prune_nonces(worker: &mut Worker, settings: &Settings) {
    let oldest = timestamp::now_seconds() - settings.max_skew_secs;
    if let Err(e) = worker.store().prune_nonces(oldest) {
        worker
            .log
            .info(format_args!("could not prune old nonces: {e}"));
    }
}
