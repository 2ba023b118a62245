//! A group of requests, start to finish: check each one (key, signature, clock, nonce, payload), then commit all
//! their audit rows and payloads in one transaction (group commit: one fsync for the group), then the replies.

use std::{collections::HashMap, sync::Arc};

use super::{Incoming, Log, MAX_FRAMES, Settings};
use crate::{
    auth,
    avro::{AvroError, Decoder, Ndjson, SchemaFingerprint},
    protocol::{RejectCode, Rejection, Reply, Request},
    store::{AuditEntry, Batch, Committed, Nonce, SeenNonce, Status, Store, StoreError},
    timestamp,
};

/// The answer to one request: its reply and, when newly accepted, the records to write out.
pub(super) struct Answer {
    /// What the client is told.
    pub reply: Reply,
    /// The accepted records as JSON lines, in order; `None` unless newly stored.
    pub records: Option<Ndjson>,
    /// The nonce of the request answered, when its envelope could be read.
    pub nonce: Option<String>,
    /// What to log about it once the group is durable; `None` when the store could not record it either.
    pub line: Option<LogLine>,
}

/// What the checks decided about one request, before anything is written.
enum Verdict {
    /// New and valid: its records as JSON lines, and as the JSON array the store keeps, and their schema.
    Fresh {
        request: Request,
        records: Ndjson,
        json: String,
        schema: Arc<SchemaFingerprint>,
    },
    /// A byte-identical retry of a request committed earlier.
    Retry { key: String, seen: SeenNonce },
    /// A byte-identical retry of an earlier request of the same group.
    RetryInGroup { key: String, of: usize },
    /// Refused; with the writer schema when the payload's header was read before the refusal.
    Reject {
        key: Option<String>,
        rejection: Rejection,
        schema: Option<Arc<SchemaFingerprint>>,
    },
}

/// Checks and commits groups of requests against one store.
pub(super) struct Worker<'a> {
    store: &'a mut Store,
    checker: Checker<'a>,
    /// The human log (shared with the loop, which rolls its rate-limit windows).
    pub log: Log,
}

/// What the checks need besides the store: the settings and the Avro decoder with its schema cache.
struct Checker<'a> {
    settings: &'a Settings,
    decoder: Decoder,
}

/// The accepted requests of a group so far, by (key, nonce): their index in the group and their signature.
type InGroup = HashMap<(String, String), (usize, String)>;

impl<'a> Worker<'a> {
    /// A worker for this store and these settings.
    pub fn new(store: &'a mut Store, settings: &'a Settings) -> Self {
        Worker {
            store,
            checker: Checker {
                settings,
                decoder: Decoder::with_reader_schemas(settings.reader_schemas.clone()),
            },
            log: Log::default(),
        }
    }

    /// The store, for housekeeping between groups.
    pub fn store(&self) -> &Store {
        self.store
    }

    /// Handles a group of requests: one answer per request, in order, given only after the group is committed.
    ///
    /// The checks read keys and nonces inside the group's write transaction: one transaction per group instead
    /// of one per lookup, and no other writer can use a nonce between its check and the commit.
    pub fn handle_group(&mut self, group: &[Incoming]) -> Vec<Answer> {
        let now_us = timestamp::now_micros();
        let (verdicts, nonces, written) = match self.store.begin_batch() {
            Ok(batch) => {
                let (verdicts, nonces) =
                    self.checker
                        .check_group(&batch, &mut self.log, group, now_us);
                let written = commit_group(batch, group, &verdicts, now_us);
                (verdicts, nonces, written)
            }
            Err(e) => {
                let (verdicts, nonces) = unchecked(group);
                (verdicts, nonces, Err(e))
            }
        };
        let answers = match written {
            Ok(written) => written_out(written, verdicts),
            Err(e) => commit_failed(self.store, &mut self.log, group, verdicts, now_us, e),
        };
        with_nonces(answers, nonces)
    }
}

impl Checker<'_> {
    /// Checks every request of the group, in order; also returns each request's nonce, when it has one.
    fn check_group(
        &mut self,
        batch: &Batch,
        log: &mut Log,
        group: &[Incoming],
        now_us: i64,
    ) -> (Vec<Verdict>, Vec<Option<String>>) {
        let mut in_group = InGroup::new();
        let mut verdicts = Vec::with_capacity(group.len());
        let mut nonces = Vec::with_capacity(group.len());
        for (index, incoming) in group.iter().enumerate() {
            let (verdict, nonce) = self.check(batch, log, incoming, now_us, &in_group);
            nonces.push(nonce);
            if let Verdict::Fresh { request, .. } = &verdict {
                let e = &request.envelope;
                in_group.insert(
                    (e.key.clone(), e.nonce.clone()),
                    (index, e.signature.clone()),
                );
            }
            verdicts.push(verdict);
        }
        (verdicts, nonces)
    }

    /// The checks, in PROTOCOL.md's order: frames, key, signature, clock, nonce, payload. Reads, never writes.
    fn check(
        &mut self,
        batch: &Batch,
        log: &mut Log,
        incoming: &Incoming,
        now_us: i64,
        in_group: &InGroup,
    ) -> (Verdict, Option<String>) {
        let request = match parse(incoming) {
            Ok(request) => request,
            Err(rejection) => {
                return (
                    Verdict::Reject {
                        key: None,
                        rejection,
                        schema: None,
                    },
                    None,
                );
            }
        };
        let key = request.envelope.key.clone();
        let nonce = request.envelope.nonce.clone();
        let verdict = match self.check_request(batch, log, request, now_us, in_group) {
            Ok(verdict) => verdict,
            Err(rejection) => Verdict::Reject {
                key: Some(key),
                rejection,
                schema: None,
            },
        };
        (verdict, Some(nonce))
    }

    fn check_request(
        &mut self,
        batch: &Batch,
        log: &mut Log,
        request: Request,
        now_us: i64,
        in_group: &InGroup,
    ) -> Result<Verdict, Rejection> {
        let envelope = &request.envelope;
        let mut internal = |e: StoreError| {
            log.info(format_args!("store error: {e}"));
            Rejection::new(
                RejectCode::Internal,
                "the server could not read its store; retry",
            )
        };
        let stored = batch
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
        if let Some(expired) = stored.expires_us.filter(|t| *t <= now_us) {
            return Err(Rejection::new(
                RejectCode::ExpiredKey,
                format!(
                    "key {:?} expired at {}",
                    envelope.key,
                    timestamp::format_rfc3339(expired)
                ),
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
        if skew > self.settings.max_skew_secs.unsigned_abs() {
            return Err(Rejection::new(
                RejectCode::ClockSkew,
                format!(
                    "timestamp {} is {skew} s from the server's time {server_time}; at most {} s allowed",
                    envelope.timestamp, self.settings.max_skew_secs
                ),
            ));
        }
        // The signature covers key, timestamp, nonce and payload digest: equal signatures mean the same bytes.
        let replay = || {
            Rejection::new(
                RejectCode::Replay,
                "nonce already used with this key for a different request",
            )
        };
        if let Some((of, signature)) = in_group.get(&(envelope.key.clone(), envelope.nonce.clone()))
        {
            return if *signature == envelope.signature {
                Ok(Verdict::RetryInGroup {
                    key: envelope.key.clone(),
                    of: *of,
                })
            } else {
                Err(replay())
            };
        }
        if let Some(seen) = batch
            .find_nonce(&envelope.key, &envelope.nonce)
            .map_err(&mut internal)?
        {
            return if seen.signature.as_deref() == Some(envelope.signature.as_str()) {
                Ok(Verdict::Retry {
                    key: envelope.key.clone(),
                    seen,
                })
            } else {
                Err(replay())
            };
        }
        let decoded = self.decoder.decode_request(&request.payload);
        let (records, schema) = match (decoded.records, decoded.schema) {
            (Ok(records), Some(schema)) => (records, schema),
            (result, schema) => {
                let rejection = match result {
                    Err(e @ AvroError::SchemaMismatch(_)) => {
                        Rejection::new(RejectCode::SchemaMismatch, e.to_string())
                    }
                    Err(e @ AvroError::UnsupportedSchema(_)) => {
                        Rejection::new(RejectCode::UnsupportedSchema, e.to_string())
                    }
                    Err(e) => Rejection::new(RejectCode::BadPayload, e.to_string()),
                    Ok(_) => Rejection::new(RejectCode::BadPayload, "no writer schema"),
                };
                return Ok(Verdict::Reject {
                    key: Some(envelope.key.clone()),
                    rejection,
                    schema,
                });
            }
        };
        let json = records.to_json_array();
        Ok(Verdict::Fresh {
            request,
            records,
            json,
            schema,
        })
    }
}

/// The request in the frames, or why there is none.
fn parse(incoming: &Incoming) -> Result<Request, Rejection> {
    if incoming.too_many_frames {
        Err(Rejection::new(
            RejectCode::Malformed,
            format!("more than {MAX_FRAMES} frames"),
        ))
    } else {
        Request::from_frames(&incoming.body)
    }
}

/// Verdicts for a group whose checks could not run because the store could not be read: every request is
/// refused as `internal` (safe to retry), with its key and nonce when its frames give them.
fn unchecked(group: &[Incoming]) -> (Vec<Verdict>, Vec<Option<String>>) {
    group
        .iter()
        .map(|incoming| {
            let request = parse(incoming).ok();
            let verdict = Verdict::Reject {
                key: request.as_ref().map(|r| r.envelope.key.clone()),
                rejection: Rejection::new(
                    RejectCode::Internal,
                    "the server could not read its store; retry",
                ),
                schema: None,
            };
            (verdict, request.map(|r| r.envelope.nonce))
        })
        .unzip()
}

/// Tells each answer which request nonce it answers.
fn with_nonces(mut answers: Vec<Answer>, nonces: Vec<Option<String>>) -> Vec<Answer> {
    for (answer, nonce) in answers.iter_mut().zip(nonces) {
        answer.nonce = nonce;
    }
    answers
}

/// Writes every verdict's rows into the batch and commits it; on error nothing of the batch is kept.
fn commit_group(
    mut batch: Batch,
    group: &[Incoming],
    verdicts: &[Verdict],
    now_us: i64,
) -> Result<Vec<(Answer, LogLine)>, StoreError> {
    let mut answers: Vec<Answer> = Vec::with_capacity(verdicts.len());
    let mut lines = Vec::with_capacity(verdicts.len());
    for (incoming, verdict) in group.iter().zip(verdicts) {
        let (answer, line) = write_verdict(&mut batch, incoming, verdict, now_us, &answers)?;
        answers.push(answer);
        lines.push(line);
    }
    batch.commit()?;
    Ok(answers.into_iter().zip(lines).collect())
}

/// The answers of a committed group: only now, with the group durable, are records handed out and lines decided.
fn written_out(written: Vec<(Answer, LogLine)>, verdicts: Vec<Verdict>) -> Vec<Answer> {
    written
        .into_iter()
        .zip(verdicts)
        .map(|((mut answer, line), verdict)| {
            if let (
                Reply::Accepted {
                    duplicate: false, ..
                },
                Verdict::Fresh { records, .. },
            ) = (&answer.reply, verdict)
            {
                answer.records = Some(records);
            }
            answer.line = Some(line);
            answer
        })
        .collect()
}

/// The group could not be committed: nothing of it was kept. Every request that would have been stored is
/// refused as `internal` (safe to retry); the refusals are audited if the store allows it.
fn commit_failed(
    store: &mut Store,
    log: &mut Log,
    group: &[Incoming],
    verdicts: Vec<Verdict>,
    now_us: i64,
    error: StoreError,
) -> Vec<Answer> {
    log.info(format_args!(
        "store error, group of {} requests not kept: {error}",
        group.len()
    ));
    let internal = || {
        Rejection::new(
            RejectCode::Internal,
            "the server could not store the request; retry",
        )
    };
    let refused: Vec<Verdict> = verdicts
        .into_iter()
        .map(|verdict| match verdict {
            Verdict::Fresh {
                request, schema, ..
            } => Verdict::Reject {
                key: Some(request.envelope.key),
                rejection: internal(),
                schema: Some(schema),
            },
            Verdict::Retry { key, .. } | Verdict::RetryInGroup { key, .. } => Verdict::Reject {
                key: Some(key),
                rejection: internal(),
                schema: None,
            },
            reject => reject,
        })
        .collect();
    let audited = store
        .begin_batch()
        .and_then(|batch| commit_group(batch, group, &refused, now_us));
    match audited {
        Ok(written) => written_out(written, refused),
        Err(e) => {
            log.info(format_args!(
                "store error, refusals not audited either: {e}"
            ));
            refused
                .into_iter()
                .map(|verdict| Answer {
                    nonce: None,
                    reply: match verdict {
                        Verdict::Reject { rejection, .. } => reply_for(rejection, now_us),
                        _ => reply_for(internal(), now_us),
                    },
                    records: None,
                    line: None,
                })
                .collect()
        }
    }
}

/// A log line decided while writing, printed once the group is durable.
pub(super) enum LogLine {
    Accepted {
        id: i64,
        key: String,
        peer: String,
        records: usize,
    },
    Duplicate {
        id: i64,
        key: String,
        peer: String,
        of: i64,
    },
    Rejected {
        id: i64,
        key: String,
        peer: String,
        code: RejectCode,
        message: String,
    },
}

impl LogLine {
    /// Writes the line to the log.
    pub fn print(self, log: &mut Log) {
        match self {
            LogLine::Accepted {
                id,
                key,
                peer,
                records,
            } => {
                log.info(format_args!(
                    "accepted #{id} key={key} peer={peer} records={records}"
                ));
            }
            LogLine::Duplicate { id, key, peer, of } => {
                log.info(format_args!(
                    "duplicate #{id} key={key} peer={peer}: retry of #{of}; already stored"
                ));
            }
            LogLine::Rejected {
                id,
                key,
                peer,
                code,
                message,
            } => {
                log.rejection(
                    &peer,
                    format_args!("rejected #{id} {code} key={key} peer={peer}: {message}"),
                );
            }
        }
    }
}

/// Writes one verdict's rows into the batch and decides its answer; `earlier` holds the group's answers so far.
fn write_verdict(
    batch: &mut Batch,
    incoming: &Incoming,
    verdict: &Verdict,
    now_us: i64,
    earlier: &[Answer],
) -> Result<(Answer, LogLine), StoreError> {
    let peer = incoming.peer.as_deref();
    let peer_text = peer.unwrap_or("-").to_owned();
    let size = incoming.size;
    let reject = |batch: &mut Batch,
                  key: Option<&str>,
                  rejection: &Rejection,
                  schema: Option<&SchemaFingerprint>| {
        let id = batch.record(&AuditEntry {
            reason: Some(rejection.code.as_str()),
            detail: Some(&rejection.message),
            schema,
            ..send_entry(Status::Rejected, key, peer, size, now_us)
        })?;
        let line = LogLine::Rejected {
            id,
            key: key.unwrap_or("-").to_owned(),
            peer: peer_text.clone(),
            code: rejection.code,
            message: rejection.message.clone(),
        };
        Ok::<_, StoreError>((answer(reply_for(rejection.clone(), now_us)), line))
    };
    let duplicate = |batch: &mut Batch, key: &str, of: i64, records: u64| {
        let detail = format!("retry of #{of}; already stored");
        let id = batch.record(&AuditEntry {
            reason: Some("duplicate"),
            detail: Some(&detail),
            ..send_entry(Status::Accepted, Some(key), peer, size, now_us)
        })?;
        let reply = Reply::Accepted {
            audit_id: of,
            records,
            duplicate: true,
        };
        let line = LogLine::Duplicate {
            id,
            key: key.to_owned(),
            peer: peer_text.clone(),
            of,
        };
        Ok::<_, StoreError>((answer(reply), line))
    };
    match verdict {
        Verdict::Fresh {
            request,
            records,
            json,
            schema,
        } => {
            let key = request.envelope.key.as_str();
            let nonce = Nonce {
                nonce: &request.envelope.nonce,
                timestamp: request.envelope.timestamp,
                signature: &request.envelope.signature,
            };
            let accepted = AuditEntry {
                records: records.records as u64,
                schema: Some(schema),
                ..send_entry(Status::Accepted, Some(key), peer, size, now_us)
            };
            match batch.accept(&accepted, &nonce, json)? {
                Committed::Stored(id) => {
                    let reply = Reply::Accepted {
                        audit_id: id,
                        records: records.records as u64,
                        duplicate: false,
                    };
                    let line = LogLine::Accepted {
                        id,
                        key: key.to_owned(),
                        peer: peer_text.clone(),
                        records: records.records,
                    };
                    Ok((answer(reply), line))
                }
                Committed::Replay => reject(
                    batch,
                    Some(key),
                    &Rejection::new(RejectCode::Replay, "nonce already used with this key"),
                    Some(schema),
                ),
            }
        }
        Verdict::Retry { key, seen } => duplicate(batch, key, seen.audit_id, seen.records),
        Verdict::RetryInGroup { key, of } => match &earlier[*of].reply {
            Reply::Accepted {
                audit_id, records, ..
            } => duplicate(batch, key, *audit_id, *records),
            Reply::Rejected { code, message, .. } => reject(
                batch,
                Some(key),
                &Rejection::new(*code, message.clone()),
                None,
            ),
        },
        Verdict::Reject {
            key,
            rejection,
            schema,
        } => reject(batch, key.as_deref(), rejection, schema.as_deref()),
    }
}

/// The audit entry of a `send` action with no reason, detail or records yet.
fn send_entry<'e>(
    status: Status,
    key: Option<&'e str>,
    peer: Option<&'e str>,
    size: u64,
    now_us: i64,
) -> AuditEntry<'e> {
    AuditEntry {
        time_us: now_us,
        action: "send",
        status,
        reason: None,
        detail: None,
        key_id: key,
        peer,
        records: 0,
        size,
        schema: None,
    }
}

fn answer(reply: Reply) -> Answer {
    Answer {
        nonce: None,
        reply,
        records: None,
        line: None,
    }
}

/// The reply for a refusal; a clock-skew reply carries the server's time.
fn reply_for(rejection: Rejection, now_us: i64) -> Reply {
    let server_time =
        (rejection.code == RejectCode::ClockSkew).then(|| now_us.div_euclid(1_000_000));
    Reply::Rejected {
        code: rejection.code,
        message: rejection.message,
        server_time,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use apache_avro::Codec;

    use super::*;
    use crate::{avro::BatchEncoder, store::AuditFilter};

    const KEY: &str = "ZK0123456789ABCDEF";
    const SECRET: &str = "a-secret-of-enough-length-0123456789";

    /// A store on disk with one key, and a server's settings.
    fn store_with_key(dir: &std::path::Path) -> (Store, Settings) {
        let mut store = Store::open(&dir.join("zavro.db")).unwrap();
        store.add_key(KEY, SECRET, None, 1).unwrap();
        let settings = Settings {
            max_skew_secs: 300,
            reader_schemas: Vec::new(),
        };
        (store, settings)
    }

    /// A signed one-record request as the server receives it.
    fn request(nonce: &str) -> Incoming {
        let mut encoder = BatchEncoder::new(Codec::Null);
        encoder.push(&serde_json::json!({"n": 1}), 1).unwrap();
        let request = Request::sign(
            KEY,
            SECRET.as_bytes(),
            timestamp::now_seconds(),
            nonce,
            encoder.finish().unwrap(),
        );
        let body = request.to_frames().to_vec();
        Incoming {
            route: vec![b"peer".to_vec()],
            size: body.iter().map(|f| f.len() as u64).sum(),
            body,
            peer: Some("127.0.0.1".into()),
            too_many_frames: false,
        }
    }

    fn sends(store: &Store) -> usize {
        let rows = store.query_audit(&AuditFilter::default()).unwrap();
        rows.iter().filter(|r| r.action == "send").count()
    }

    fn assert_refused_as_internal(answers: &[Answer], nonce: &str) {
        assert_eq!(answers.len(), 1);
        let answer = &answers[0];
        assert!(
            matches!(
                &answer.reply,
                Reply::Rejected {
                    code: RejectCode::Internal,
                    ..
                }
            ),
            "{:?}",
            answer.reply
        );
        assert!(answer.records.is_none(), "no records go out");
        assert_eq!(
            answer.nonce.as_deref(),
            Some(nonce),
            "the client can match the reply"
        );
    }

    #[test]
    fn a_group_the_store_cannot_write_is_refused_as_retryable_and_its_retry_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let nonce = "nonce-000000000001";
        let incoming = request(nonce);

        store.refuse_writes(true);
        let answers =
            Worker::new(&mut store, &settings).handle_group(std::slice::from_ref(&incoming));
        assert_refused_as_internal(&answers, nonce);
        assert!(
            answers[0].line.is_none(),
            "nothing was audited, so no audit id to log"
        );
        store.refuse_writes(false);
        assert_eq!(sends(&store), 0, "nothing of the group was kept");
        assert!(store.find_nonce(KEY, nonce).unwrap().is_none());

        let answers = Worker::new(&mut store, &settings).handle_group(&[incoming]);
        assert!(
            matches!(
                answers[0].reply,
                Reply::Accepted {
                    records: 1,
                    duplicate: false,
                    ..
                }
            ),
            "the same request, sent again, is stored: {:?}",
            answers[0].reply
        );
        assert!(answers[0].records.is_some());
        assert_eq!(sends(&store), 1);
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn a_group_that_cannot_take_the_write_lock_is_refused_as_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        store.set_busy_timeout(Duration::from_millis(50));
        let other = rusqlite::Connection::open(dir.path().join("zavro.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let nonce = "nonce-000000000002";

        let answers = Worker::new(&mut store, &settings).handle_group(&[request(nonce)]);
        assert_refused_as_internal(&answers, nonce);
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(sends(&store), 0, "nothing of the group was kept");
        assert!(store.find_nonce(KEY, nonce).unwrap().is_none());
    }
}
