//! One request, start to finish: parse, check key, signature, clock and nonce, decode, commit, and the reply.

use serde_json::Value;

use super::{Incoming, Log, MAX_FRAMES, Settings};
use crate::{
    auth,
    avro::{self, Decoder},
    protocol::{RejectCode, Rejection, Reply, Request},
    store::{AuditEntry, Committed, Nonce, SeenNonce, Status, Store, StoreError},
    timestamp,
};

/// What the checks concluded about a correctly signed, timely request.
enum Verdict {
    /// New: these are its records.
    Fresh(Vec<Value>),
    /// A byte-identical retry of a request already committed.
    Retry(SeenNonce),
}

/// Handles one request; returns the reply and, when newly accepted, the records to write out.
pub(super) fn handle(
    store: &mut Store,
    settings: &Settings,
    log: &mut Log,
    decoder: &mut Decoder,
    incoming: &Incoming,
) -> (Reply, Option<Vec<Value>>) {
    let now_us = timestamp::now_micros();
    let parsed = if incoming.too_many_frames {
        Err(Rejection::new(
            RejectCode::Malformed,
            format!("more than {MAX_FRAMES} frames"),
        ))
    } else {
        Request::from_frames(&incoming.body)
    };
    let request = match parsed {
        Ok(request) => request,
        Err(rejection) => return (reject(store, log, incoming, now_us, None, rejection), None),
    };
    let key = request.envelope.key.as_str();
    match check(store, settings, log, decoder, &request, now_us) {
        Ok(Verdict::Fresh(records)) => commit(store, log, incoming, &request, now_us, records),
        Ok(Verdict::Retry(seen)) => (retried(store, log, incoming, key, now_us, seen), None),
        Err(rejection) => (
            reject(store, log, incoming, now_us, Some(key), rejection),
            None,
        ),
    }
}

/// The checks, in PROTOCOL.md's order: key, signature, clock, nonce, payload.
fn check(
    store: &Store,
    settings: &Settings,
    log: &mut Log,
    decoder: &mut Decoder,
    request: &Request,
    now_us: i64,
) -> Result<Verdict, Rejection> {
    let envelope = &request.envelope;
    let mut internal = |e: StoreError| {
        log.info(format_args!("store error: {e}"));
        Rejection::new(
            RejectCode::Internal,
            "the server could not read its store; retry",
        )
    };
    let stored = store
        .find_key(&envelope.key)
        .map_err(&mut internal)?
        .ok_or_else(|| {
            Rejection::new(RejectCode::UnknownKey, format!("no key {:?}", envelope.key))
        })?;
    if stored.revoked {
        return Err(Rejection::new(
            RejectCode::RevokedKey,
            format!("key {:?} was revoked", envelope.key),
        ));
    }
    let string_to_sign = request.string_to_sign();
    if !auth::verify(
        stored.secret.as_bytes(),
        string_to_sign.as_str(),
        &envelope.signature,
    ) {
        return Err(Rejection::new(
            RejectCode::BadSignature,
            "signature does not match the request under this key's secret",
        ));
    }
    let server_time = now_us.div_euclid(1_000_000);
    let skew = envelope.timestamp.abs_diff(server_time);
    if skew > settings.max_skew_secs.unsigned_abs() {
        return Err(Rejection::new(
            RejectCode::ClockSkew,
            format!(
                "timestamp {} is {skew} s from the server's time {server_time}; at most {} s allowed",
                envelope.timestamp, settings.max_skew_secs
            ),
        ));
    }
    if let Some(seen) = store
        .find_nonce(&envelope.key, &envelope.nonce)
        .map_err(&mut internal)?
    {
        // The signature covers key, timestamp, nonce and payload digest: equal signatures mean the same bytes.
        if seen.signature.as_deref() == Some(envelope.signature.as_str()) {
            return Ok(Verdict::Retry(seen));
        }
        return Err(Rejection::new(
            RejectCode::Replay,
            "nonce already used with this key for a different request",
        ));
    }
    decoder
        .decode(&request.payload)
        .map(Verdict::Fresh)
        .map_err(|e| match e {
            avro::AvroError::UnsupportedSchema(_) => {
                Rejection::new(RejectCode::UnsupportedSchema, e.to_string())
            }
            _ => Rejection::new(RejectCode::BadPayload, e.to_string()),
        })
}

/// Commits a fresh request and builds its reply.
fn commit(
    store: &mut Store,
    log: &mut Log,
    incoming: &Incoming,
    request: &Request,
    now_us: i64,
    records: Vec<Value>,
) -> (Reply, Option<Vec<Value>>) {
    let key = request.envelope.key.as_str();
    let peer = incoming.peer.as_deref();
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
    let nonce = Nonce {
        nonce: &request.envelope.nonce,
        timestamp: request.envelope.timestamp,
        signature: &request.envelope.signature,
    };
    let json = serde_json::to_string(&records).expect("JSON values always serialize");
    let rejection = match store.commit_accepted(&entry, &nonce, &json) {
        Ok(Committed::Stored(audit_id)) => {
            log.info(format_args!(
                "accepted #{audit_id} key={key} peer={} records={}",
                peer.unwrap_or("-"),
                records.len()
            ));
            let reply = Reply::Accepted {
                audit_id,
                records: records.len() as u64,
                duplicate: false,
            };
            return (reply, Some(records));
        }
        Ok(Committed::Replay) => {
            Rejection::new(RejectCode::Replay, "nonce already used with this key")
        }
        Err(e) => {
            log.info(format_args!("store error, request not kept: {e}"));
            Rejection::new(
                RejectCode::Internal,
                "the server could not store the request; retry",
            )
        }
    };
    (
        reject(store, log, incoming, now_us, Some(key), rejection),
        None,
    )
}

/// Answers a retry of an accepted request with the original audit id; stores nothing again but an audit row.
fn retried(
    store: &mut Store,
    log: &mut Log,
    incoming: &Incoming,
    key: &str,
    now_us: i64,
    seen: SeenNonce,
) -> Reply {
    let detail = format!("retry of #{}; already stored", seen.audit_id);
    let entry = AuditEntry {
        time_us: now_us,
        action: "send",
        status: Status::Accepted,
        reason: Some("duplicate"),
        detail: Some(&detail),
        key_id: Some(key),
        peer: incoming.peer.as_deref(),
        records: 0,
        size: incoming.size,
    };
    let audit = match store.record(&entry) {
        Ok(id) => format!("#{id}"),
        Err(e) => format!("(not audited: {e})"),
    };
    log.info(format_args!(
        "duplicate {audit} key={key} peer={}: {detail}",
        incoming.peer.as_deref().unwrap_or("-")
    ));
    Reply::Accepted {
        audit_id: seen.audit_id,
        records: seen.records,
        duplicate: true,
    }
}

/// Audits a refusal and builds its reply; a clock-skew reply carries the server's time.
fn reject(
    store: &mut Store,
    log: &mut Log,
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
    log.rejection(
        peer.unwrap_or("-"),
        format_args!(
            "rejected {audit} {} key={} peer={}: {}",
            rejection.code,
            key.unwrap_or("-"),
            peer.unwrap_or("-"),
            rejection.message
        ),
    );
    let server_time =
        (rejection.code == RejectCode::ClockSkew).then(|| now_us.div_euclid(1_000_000));
    Reply::Rejected {
        code: rejection.code,
        message: rejection.message,
        server_time,
    }
}
