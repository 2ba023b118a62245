//! The server loop: receive a request, verify it, decode it, commit it with its audit row, write the records
//! out, and only then acknowledge. Every request gets a reply and an audit row, whatever it holds.

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    auth, avro,
    protocol::{RejectCode, Rejection, Reply, Request},
    store::{AuditEntry, Committed, Status, Store},
    timestamp,
};

/// How often the loop wakes up to notice a shutdown signal when no request arrives.
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
    /// Requests accepted and committed.
    pub accepted: u64,
    /// Requests refused.
    pub rejected: u64,
}

/// Serves requests on an already-bound ROUTER socket until `shutdown` becomes true.
///
/// A request in hand when the signal arrives is finished (committed and answered) before returning.
pub fn run(
    socket: &zmq::Socket,
    store: &mut Store,
    output: &mut dyn Write,
    settings: &Settings,
    shutdown: &AtomicBool,
) -> Result<Stats, ServeError> {
    let mut stats = Stats::default();
    let mut last_prune = Instant::now();
    prune_nonces(store, settings);
    while !shutdown.load(Ordering::SeqCst) {
        match socket.poll(zmq::POLLIN, POLL_INTERVAL.as_millis() as i64) {
            Ok(0) => {}
            Ok(_) => {
                let incoming = receive(socket)?;
                let (reply, accepted) = handle(store, settings, &incoming);
                match &reply {
                    Reply::Accepted { .. } => stats.accepted += 1,
                    Reply::Rejected { .. } => stats.rejected += 1,
                }
                let written = accepted.map(|records| write_records(output, &records));
                send_reply(socket, &incoming.route, &reply)?;
                written.transpose().map_err(ServeError::Output)?;
            }
            Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if last_prune.elapsed() >= PRUNE_INTERVAL {
            prune_nonces(store, settings);
            last_prune = Instant::now();
        }
    }
    Ok(stats)
}

/// One request as it came off the socket.
struct Incoming {
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

fn receive(socket: &zmq::Socket) -> Result<Incoming, zmq::Error> {
    let identity = socket.recv_msg(0)?;
    let mut peer = None;
    let mut frames = Vec::new();
    let mut size = 0u64;
    let mut too_many_frames = false;
    while socket.get_rcvmore()? {
        let mut frame = socket.recv_msg(0)?;
        // The ROUTER socket makes up the identity frame; only frames from the wire carry the peer's metadata.
        if peer.is_none() {
            peer = frame.gets("Peer-Address").map(str::to_owned);
        }
        let frame = frame.to_vec();
        size += frame.len() as u64;
        if frames.len() < MAX_FRAMES {
            frames.push(frame);
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

fn send_reply(socket: &zmq::Socket, route: &[Vec<u8>], reply: &Reply) -> Result<(), zmq::Error> {
    let mut frames: Vec<&[u8]> = route.iter().map(Vec::as_slice).collect();
    let reply = reply.to_frame();
    frames.push(&reply);
    socket.send_multipart(frames, 0)
}

/// Verifies, decodes and commits one request; returns the reply and, when accepted, the records to write out.
fn handle(
    store: &mut Store,
    settings: &Settings,
    incoming: &Incoming,
) -> (Reply, Option<Vec<Value>>) {
    let now_us = timestamp::now_micros();
    let peer = incoming.peer.as_deref();
    let request = if incoming.too_many_frames {
        Err(Rejection::new(
            RejectCode::Malformed,
            format!("more than {MAX_FRAMES} frames"),
        ))
    } else {
        Request::from_frames(&incoming.body)
    };
    let request = match request {
        Ok(request) => request,
        Err(rejection) => return (reject(store, incoming, now_us, None, rejection), None),
    };
    let key = request.envelope.key.as_str();
    let records = match check(store, settings, &request, now_us) {
        Ok(records) => records,
        Err(rejection) => return (reject(store, incoming, now_us, Some(key), rejection), None),
    };
    let entry = AuditEntry {
        time_us: now_us,
        action: "send",
        status: Status::Accepted,
        reason: None,
        detail: None,
        key_id: Some(key),
        peer,
        records: records.len() as u64,
        size: incoming.size,
    };
    let json = serde_json::to_string(&records).expect("JSON values always serialize");
    let committed = store.commit_accepted(
        &entry,
        &request.envelope.nonce,
        request.envelope.timestamp,
        &json,
    );
    match committed {
        Ok(Committed::Stored(audit_id)) => {
            log(format_args!(
                "accepted #{audit_id} key={key} peer={} records={}",
                peer.unwrap_or("-"),
                records.len()
            ));
            let reply = Reply::Accepted {
                audit_id,
                records: records.len() as u64,
            };
            (reply, Some(records))
        }
        Ok(Committed::Replay) => {
            let rejection = Rejection::new(RejectCode::Replay, "nonce already used with this key");
            (reject(store, incoming, now_us, Some(key), rejection), None)
        }
        Err(e) => {
            log(format_args!("store error, request not kept: {e}"));
            let rejection = Rejection::new(
                RejectCode::Internal,
                "the server could not store the request; retry",
            );
            (reject(store, incoming, now_us, Some(key), rejection), None)
        }
    }
}

/// The checks, in order: key, signature, clock, nonce, payload. Returns the decoded records.
fn check(
    store: &mut Store,
    settings: &Settings,
    request: &Request,
    now_us: i64,
) -> Result<Vec<Value>, Rejection> {
    let envelope = &request.envelope;
    let internal = |e: crate::store::StoreError| {
        log(format_args!("store error: {e}"));
        Rejection::new(
            RejectCode::Internal,
            "the server could not read its key store; retry",
        )
    };
    let stored = store
        .find_key(&envelope.key)
        .map_err(internal)?
        .ok_or_else(|| {
            Rejection::new(RejectCode::UnknownKey, format!("no key {:?}", envelope.key))
        })?;
    if stored.revoked {
        return Err(Rejection::new(
            RejectCode::RevokedKey,
            format!("key {:?} was revoked", envelope.key),
        ));
    }
    if !auth::verify(
        stored.secret.as_bytes(),
        request.string_to_sign().as_str(),
        &envelope.signature,
    ) {
        return Err(Rejection::new(
            RejectCode::BadSignature,
            "signature does not match the request under this key's secret",
        ));
    }
    let server_time = now_us.div_euclid(1_000_000);
    if envelope.timestamp.abs_diff(server_time) > settings.max_skew_secs.unsigned_abs() {
        return Err(Rejection::new(
            RejectCode::ClockSkew,
            format!(
                "timestamp {} is {} s from the server's time {server_time}; at most {} s allowed",
                envelope.timestamp,
                envelope.timestamp.abs_diff(server_time),
                settings.max_skew_secs
            ),
        ));
    }
    if store
        .nonce_seen(&envelope.key, &envelope.nonce)
        .map_err(internal)?
    {
        return Err(Rejection::new(
            RejectCode::Replay,
            "nonce already used with this key",
        ));
    }
    avro::decode(&request.payload).map_err(|e| match e {
        avro::AvroError::UnsupportedSchema(_) => {
            Rejection::new(RejectCode::UnsupportedSchema, e.to_string())
        }
        _ => Rejection::new(RejectCode::BadPayload, e.to_string()),
    })
}

/// Audits a refusal and builds its reply; a clock-skew reply carries the server's time.
fn reject(
    store: &mut Store,
    incoming: &Incoming,
    now_us: i64,
    key: Option<&str>,
    rejection: Rejection,
) -> Reply {
    let peer = incoming.peer.as_deref();
    let entry = AuditEntry {
        time_us: now_us,
        action: "send",
        status: Status::Rejected,
        reason: Some(rejection.code.as_str()),
        detail: Some(&rejection.message),
        key_id: key,
        peer,
        records: 0,
        size: incoming.size,
    };
    let audit = match store.record(&entry) {
        Ok(id) => format!("#{id}"),
        Err(e) => format!("(not audited: {e})"),
    };
    log(format_args!(
        "rejected {audit} {} key={} peer={}: {}",
        rejection.code,
        key.unwrap_or("-"),
        peer.unwrap_or("-"),
        rejection.message
    ));
    let server_time =
        (rejection.code == RejectCode::ClockSkew).then(|| now_us.div_euclid(1_000_000));
    Reply::Rejected {
        code: rejection.code,
        message: rejection.message,
        server_time,
    }
}

fn write_records(output: &mut dyn Write, records: &[Value]) -> std::io::Result<()> {
    for record in records {
        serde_json::to_writer(&mut *output, record)?;
        output.write_all(b"\n")?;
    }
    output.flush()
}

fn prune_nonces(store: &Store, settings: &Settings) {
    if let Err(e) = store.prune_nonces(timestamp::now_seconds() - settings.max_skew_secs) {
        log(format_args!("could not prune old nonces: {e}"));
    }
}

/// Writes one human log line to stderr.
fn log(line: std::fmt::Arguments) {
    eprintln!("{line}");
}
