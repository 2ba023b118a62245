//! A group of requests, start to finish: parse each, check it against what the store says of its key and
//! nonce, commit the group's rows in one transaction, and settle one [`Outcome`] per request.

use std::{collections::HashMap, sync::Arc, time::Instant};

use super::{
    Settings, Transport,
    check::{self, Decision, Fresh, Original, Verdict},
    commit::{self, Stamp},
    log::{Event, Fields, Log},
    outcome::{Outcome, outcome},
    request::{self, Arrival},
    tally::{self, Reason, Tally},
    zap::RefusedHandshake,
};
use crate::{
    avro::{Decoder, SchemaFingerprint},
    metrics::Metrics,
    protocol::{self, Rejection, Request},
    store::{RequestGroup, RequestStore, StoreError, StoredKey},
    timestamp,
};

/// Most bytes of decoded records (their JSON lines and the stored array) a group holds before it is committed
/// and answered; the rest of what arrived together goes in the next group.
pub const GROUP_MAX_DECODED_BYTES: usize = 64 << 20;

/// How many times a group is checked again after another server stored one of its nonces meanwhile
/// ([`StoreError::Raced`]) before its requests are answered `internal`: each time the nonce raced for is seen as
/// stored, so a second race needs another request of the group to lose one too.
const RACE_RETRIES: u32 = 2;

/// Checks and commits groups of requests; holds the settings and the decoder's schema cache between groups.
pub struct Worker {
    max_skew_secs: i64,
    /// How the requests arrive: checked against their connection, and written into their audit rows.
    transport: Transport,
    /// The server's name, written into every audit row; shared so a group's rows can borrow it while the worker
    /// is busy.
    server: Arc<str>,
    decoder: Decoder,
    /// Unvouched refusals counted per peer and reason, between their summary rows.
    tally: Tally,
    /// [`GROUP_MAX_DECODED_BYTES`], smaller in tests.
    group_max_decoded: usize,
    /// Where commits, summary rows, refused handshakes and cut-off connections are counted (`serve --metrics`).
    metrics: Option<Metrics>,
}

/// The keys a group looked up, by id: a group holds the write lock, so they cannot change before it commits.
/// Kept until its replies are signed, so each secret is read once per group and never copied.
type Keys = HashMap<String, Option<StoredKey>>;

/// What the checks know of a group so far.
#[derive(Default)]
struct GroupState {
    /// The requests to store so far, by (key, nonce): their index in the group and their signature.
    to_store: HashMap<(String, String), (usize, String)>,
    /// The requests to store so far that have a request id, by (key, id): their index and payload digest.
    ids_to_store: HashMap<(String, String), (usize, String)>,
    /// The keys looked up so far.
    keys: Keys,
}

/// What the checks of one request found besides their decision.
#[derive(Default)]
struct Found {
    /// The payload's writer schema, once its header is read (also when its records are then refused).
    schema: Option<Arc<SchemaFingerprint>>,
    /// True once the request proved to be signed with its key's secret.
    signable: bool,
}

impl Worker {
    /// A worker for these settings.
    pub fn new(settings: &Settings) -> Worker {
        Worker {
            max_skew_secs: settings.max_skew_secs,
            transport: settings.transport,
            server: Arc::from(settings.name.as_str()),
            decoder: Decoder::with_reader_schemas(settings.reader_schemas.clone()),
            tally: Tally::default(),
            group_max_decoded: GROUP_MAX_DECODED_BYTES,
            metrics: None,
        }
    }

    /// Counts what the worker does into `metrics` too.
    pub fn with_metrics(mut self, metrics: Option<Metrics>) -> Worker {
        self.metrics = metrics;
        self
    }

    /// Counts `count` connections libzmq cut off for `reason` (a message past the size limit, or replies left
    /// unread); they are written with the next closed window.
    pub fn note_cutoffs(&mut self, reason: Reason, count: u64, now_us: i64) {
        if let Some(metrics) = &self.metrics {
            metrics.cut_off(count);
        }
        self.tally.note_cutoffs(reason, count, now_us);
    }

    /// Counts CURVE handshakes the ZAP handler refused; they are written with their window's summary.
    pub fn note_refused_handshakes(&mut self, refused: impl IntoIterator<Item = RefusedHandshake>) {
        for handshake in refused {
            if let Some(metrics) = &self.metrics {
                metrics.refused_handshakes(handshake.count);
            }
            self.tally.note_handshakes(
                &handshake.peer,
                handshake.key.as_deref(),
                handshake.count,
                handshake.at_us,
            );
        }
    }

    /// Writes the summary rows of the refusal windows that closed by `now_us` (all of them with
    /// `everything`, at shutdown). Summaries that cannot be written are kept for the next call.
    pub fn close_windows<S: RequestStore>(
        &mut self,
        store: &mut S,
        now_us: i64,
        everything: bool,
        log: &mut Log,
    ) {
        let closed = self.tally.close(now_us, everything);
        if closed.is_empty() {
            return;
        }
        match store
            .begin_group()
            .and_then(|group| commit::summaries(group, &closed, self.transport, &self.server))
        {
            Ok(ids) => {
                if let (Some(metrics), Some(last)) = (&self.metrics, ids.iter().max()) {
                    metrics.audit_row(*last);
                }
                for (id, summary) in ids.into_iter().zip(&closed) {
                    let what = match summary.reason {
                        Reason::Reply(_) => "more",
                        Reason::HandshakeRefused => "refused CURVE handshakes",
                        Reason::CutOff => {
                            "connections cut off for a message past --max-message-size"
                        }
                        Reason::UnreadReplies => {
                            "connections cut off for not reading their replies"
                        }
                    };
                    let code = summary.reason.to_string();
                    let key = summary.key.as_deref().unwrap_or("-");
                    let window = tally::WINDOW_US / 1_000_000;
                    let message = format!(
                        "{} {what} in {window} s (counted, not one row each)",
                        summary.count
                    );
                    log.event(
                        Event::RefusedSummary,
                        Fields {
                            audit_id: Some(id),
                            key: Some(key),
                            peer: Some(&summary.peer),
                            code: Some(&code),
                            count: Some(summary.count),
                            window_secs: u64::try_from(window).ok(),
                            message: Some(&message),
                            ..Fields::default()
                        },
                        format_args!(
                            "rejected #{id} {code} key={key} peer={peer}: {message}",
                            peer = summary.peer,
                        ),
                    );
                }
            }
            Err(e) => {
                let message = format!("store error, refusal counts not written yet: {e}");
                log.event(
                    Event::StoreError,
                    Fields::message(&message),
                    format_args!("{message}"),
                );
                self.tally.restore(closed);
            }
        }
    }

    /// Handles the first requests of a group: one outcome per arrival, in order, settled only once they are
    /// committed. Usually that is all of them; it stops after the request whose records take the group past
    /// [`GROUP_MAX_DECODED_BYTES`], and the caller hands the rest back in, so a group's decoded records stay
    /// bounded in memory. Always at least one.
    ///
    /// The checks read keys and nonces inside the group's write transaction: one transaction per group instead
    /// of one per lookup, and no other writer can use a nonce between its check and the commit. When the group
    /// cannot be committed, the same verdicts are settled as retryable refusals, audited if the store allows.
    pub fn handle<S: RequestStore>(
        &mut self,
        store: &mut S,
        group: &[Arrival],
        log: &mut Log,
    ) -> Vec<Outcome> {
        let now_us = timestamp::now_micros();
        let server = Arc::clone(&self.server);
        let stamp = Stamp {
            now_us,
            transport: self.transport,
            server: &server,
        };
        let mut races = 0;
        let (verdicts, keys, committed) = loop {
            match store.begin_group() {
                Ok(mut transaction) => {
                    let (verdicts, keys) = self.check_group(&mut transaction, group, now_us, log);
                    let started = Instant::now();
                    let committed = commit::commit(transaction, &verdicts, &mut self.tally, stamp);
                    if let (Ok(_), Some(metrics)) = (&committed, &self.metrics) {
                        metrics.committed(started.elapsed());
                    }
                    // Another server stored one of the group's nonces between its check and its commit: nothing
                    // was kept, and the group checked again sees that nonce for what it is.
                    if matches!(committed, Err(StoreError::Raced)) && races < RACE_RETRIES {
                        races += 1;
                        let requests = verdicts.len();
                        log.event(
                            Event::GroupRetried,
                            Fields {
                                requests: u64::try_from(requests).ok(),
                                ..Fields::default()
                            },
                            format_args!(
                                "another server stored a nonce or request id of this group meanwhile; checking the group of \
                                 {requests} requests again"
                            ),
                        );
                        continue;
                    }
                    break (verdicts, keys, committed);
                }
                Err(e) => break (unchecked(group), Keys::new(), Err(e)),
            }
        };
        let (verdicts, written) = match committed {
            Ok(written) => (verdicts, written.into_iter().map(Some).collect()),
            Err(e) => {
                let message = format!(
                    "store error, group of {} requests not kept: {e}",
                    verdicts.len()
                );
                log.event(
                    Event::StoreError,
                    Fields::message(&message),
                    format_args!("{message}"),
                );
                let refused: Vec<Verdict> = verdicts.into_iter().map(Verdict::retryable).collect();
                let audited = store.begin_group().and_then(|transaction| {
                    commit::commit(transaction, &refused, &mut self.tally, stamp)
                });
                let written: Vec<_> = match audited {
                    Ok(written) => written.into_iter().map(Some).collect(),
                    Err(e) => {
                        let message = format!("store error, refusals not audited either: {e}");
                        log.event(
                            Event::StoreError,
                            Fields::message(&message),
                            format_args!("{message}"),
                        );
                        refused.iter().map(|_| None).collect()
                    }
                };
                (refused, written)
            }
        };
        verdicts
            .into_iter()
            .zip(written)
            .map(|(verdict, written)| {
                let secret = signing_secret(&keys, &verdict);
                outcome(verdict, written, now_us, secret)
            })
            .collect()
    }

    /// The verdicts of a group, in order, and the keys they looked up.
    fn check_group<G: RequestGroup>(
        &mut self,
        transaction: &mut G,
        group: &[Arrival],
        now_us: i64,
        log: &mut Log,
    ) -> (Vec<Verdict>, Keys) {
        let mut state = GroupState::default();
        let mut verdicts = Vec::with_capacity(group.len());
        let mut decoded = 0;
        for (index, arrival) in group.iter().enumerate() {
            if decoded > self.group_max_decoded {
                break;
            }
            let verdict = self.check(transaction, &mut state, arrival, now_us, log);
            if let Decision::Store(fresh) = &verdict.decision {
                decoded += fresh.records.text.len() + fresh.json.len();
            }
            if let (Decision::Store(fresh), Some(key), Some(nonce)) =
                (&verdict.decision, &verdict.key, &verdict.nonce)
            {
                state.to_store.insert(
                    (key.clone(), nonce.clone()),
                    (index, fresh.signature.clone()),
                );
                if let Some(id) = &fresh.request_id {
                    state.ids_to_store.insert(
                        (key.clone(), id.clone()),
                        (index, fresh.payload_digest.clone()),
                    );
                }
            }
            verdicts.push(verdict);
        }
        (verdicts, state.keys)
    }

    /// The verdict on one request.
    fn check<G: RequestGroup>(
        &mut self,
        transaction: &mut G,
        state: &mut GroupState,
        arrival: &Arrival,
        now_us: i64,
        log: &mut Log,
    ) -> Verdict {
        let request = match request::parse(arrival) {
            Ok(request) => request,
            Err(rejection) => {
                return Verdict {
                    nonce: protocol::readable_nonce(&arrival.frames),
                    ..Verdict::unreadable(arrival.peer.clone(), arrival.size, rejection)
                };
            }
        };
        let mut found = Found::default();
        // The connection first: it needs no lookup, and a key the connection may not use is never read.
        let decision = check::connection_vouches(
            &request,
            self.transport,
            arrival.authenticated_key.as_deref(),
        )
        .and_then(|()| self.decide(transaction, state, &request, &mut found, now_us, log))
        .unwrap_or_else(Decision::Refuse);
        // A request refused for naming a key its connection did not prove is recorded under the key the
        // connection did prove (the message quotes the one named): otherwise any key holder could write audit
        // rows under any key id it likes.
        let key = match &decision {
            Decision::Refuse(rejection)
                if rejection.code == crate::protocol::RejectCode::KeyMismatch =>
            {
                arrival.authenticated_key.clone()
            }
            _ => Some(request.envelope.key),
        };
        Verdict {
            nonce: Some(request.envelope.nonce),
            key,
            peer: arrival.peer.clone(),
            size: arrival.size,
            schema: found.schema,
            signable: found.signable,
            decision,
        }
    }

    /// The checks of a readable request from a connection that may use its key, in PROTOCOL.md's order: key,
    /// signature, clock, nonce, payload. `found` records what they read on the way, also for a request they
    /// then refuse.
    fn decide<G: RequestGroup>(
        &mut self,
        transaction: &mut G,
        state: &mut GroupState,
        request: &Request<&[u8]>,
        found: &mut Found,
        now_us: i64,
        log: &mut Log,
    ) -> Result<Decision, Rejection> {
        let mut store_failed = |e| {
            let message = format!("store error: {e}");
            log.event(
                Event::StoreError,
                Fields::message(&message),
                format_args!("{message}"),
            );
            check::internal("the server could not read its store; retry")
        };
        let envelope = &request.envelope;
        let key = match state.keys.get(&envelope.key) {
            Some(key) => key,
            None => {
                let read = transaction.key(&envelope.key).map_err(&mut store_failed)?;
                state.keys.entry(envelope.key.clone()).or_insert(read)
            }
        };
        let digest = check::signed_by_key(request, key.as_ref(), now_us)?;
        found.signable = true;

        // A request id already stored answers the request whatever its timestamp and nonce: a spooled request
        // signed again after its first reply was lost, or resent after it left the window, is stored once.
        if let Some(id) = &envelope.id {
            let in_group = state
                .ids_to_store
                .get(&(envelope.key.clone(), id.clone()))
                .map(|(index, digest)| (*index, digest.as_str()));
            if let Some(index) = check::retry_of_id(&digest, in_group)? {
                return Ok(Decision::RetryInGroup(index));
            }
            let seen = transaction
                .request_id(&envelope.key, id)
                .map_err(&mut store_failed)?;
            let earlier = seen.as_ref().map(|s| {
                let original = Original {
                    audit_id: s.audit_id,
                    records: s.records,
                };
                (original, s.payload_digest.as_str())
            });
            if let Some(original) = check::retry_of_id(&digest, earlier)? {
                return Ok(Decision::Retry(original));
            }
        }
        check::within_clock(request, now_us, self.max_skew_secs)?;

        let id = (envelope.key.clone(), envelope.nonce.clone());
        let in_group = state
            .to_store
            .get(&id)
            .map(|(index, signature)| (*index, Some(signature.as_str())));
        if let Some(index) = check::retry_of(envelope, in_group)? {
            return Ok(Decision::RetryInGroup(index));
        }
        let seen = transaction
            .nonce(&envelope.key, &envelope.nonce)
            .map_err(&mut store_failed)?;
        let earlier = seen.as_ref().map(|s| {
            let original = Original {
                audit_id: s.audit_id,
                records: s.records,
            };
            (original, s.signature.as_deref())
        });
        if let Some(original) = check::retry_of(envelope, earlier)? {
            return Ok(Decision::Retry(original));
        }

        let records;
        (found.schema, records) = check::payload(self.decoder.decode_request(request.payload));
        let records = records?;
        Ok(Decision::Store(Box::new(Fresh {
            timestamp: envelope.timestamp,
            signature: envelope.signature.clone(),
            request_id: envelope.id.clone(),
            payload_digest: digest,
            json: check::json_array(&records)?,
            records,
        })))
    }
}

/// The secret to sign a verdict's reply with: its own key's, once the request proved to be signed with it.
fn signing_secret<'k>(keys: &'k Keys, verdict: &Verdict) -> Option<&'k [u8]> {
    if !verdict.signable {
        return None;
    }
    let stored = keys.get(verdict.key.as_deref()?)?.as_ref()?;
    Some(stored.secret.as_bytes())
}

/// Verdicts for a group whose checks could not run because the store could not be read: every request is
/// refused as `internal` (safe to retry), with its key and nonce when its frames give them.
fn unchecked(group: &[Arrival]) -> Vec<Verdict> {
    group
        .iter()
        .map(|arrival| {
            let request = request::parse(arrival).ok();
            Verdict {
                nonce: protocol::readable_nonce(&arrival.frames),
                key: request.map(|r| r.envelope.key),
                ..Verdict::unreadable(
                    arrival.peer.clone(),
                    arrival.size,
                    check::internal("the server could not read its store; retry"),
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use apache_avro::Codec;
    use serde_json::json;

    use super::*;
    use crate::{
        avro::container::ContainerWriter,
        protocol::{RejectCode, Reply},
        server::{
            LogLine,
            testing::{
                KEY, SECRET, arrival, captured_log, payload, signed, signed_at, signed_with_id,
                store_with_key,
            },
        },
        store::{AuditFilter, AuditRow, Store},
    };

    /// Handles one group with a fresh worker and a log nobody reads.
    fn handle(store: &mut Store, settings: &Settings, group: &[Arrival]) -> Vec<Outcome> {
        let (mut log, _) = captured_log();
        Worker::new(settings).handle(store, group, &mut log)
    }

    fn one(store: &mut Store, settings: &Settings, arrival: Arrival) -> Outcome {
        handle(store, settings, &[arrival]).pop().unwrap()
    }

    fn code(outcome: &Outcome) -> Option<RejectCode> {
        match &outcome.reply.reply {
            Reply::Rejected { code, .. } => Some(*code),
            Reply::Accepted { .. } => None,
        }
    }

    /// The `send` rows of the audit trail, pending rows settled first (as every reader of the store does).
    fn sends(store: &mut Store) -> Vec<AuditRow> {
        store.settle().unwrap();
        let rows = store.query_audit(&AuditFilter::default()).unwrap();
        rows.into_iter().filter(|r| r.action == "send").collect()
    }

    #[test]
    fn a_valid_request_is_stored_and_its_outcome_carries_reply_audit_id_records_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let (mut log, captured) = captured_log();
        let arrival = signed("nonce-000000000001", payload(&[json!({"n": 1}), json!(2)]));
        let outcome = Worker::new(&settings)
            .handle(&mut store, &[arrival], &mut log)
            .pop()
            .unwrap();

        let rows = sends(&mut store);
        assert_eq!(rows.len(), 1);
        assert_eq!(outcome.audit_id, Some(rows[0].id));
        assert_eq!(
            outcome.reply.reply,
            Reply::Accepted {
                audit_id: rows[0].id,
                records: 2,
                duplicate: false
            }
        );
        assert_eq!(outcome.reply.nonce.as_deref(), Some("nonce-000000000001"));
        assert_eq!(outcome.records.unwrap().text, b"{\"n\":1}\n2\n");
        assert_eq!(rows[0].records, 2);
        assert_eq!(rows[0].peer.as_deref(), Some("127.0.0.1"));
        assert!(rows[0].schema.is_some(), "the row names its writer schema");

        outcome.line.unwrap().print(&mut log);
        assert_eq!(
            captured.lines(),
            [format!(
                "accepted #{} key={KEY} peer=127.0.0.1 records=2",
                rows[0].id
            )]
        );
    }

    #[test]
    fn each_refusal_has_its_code_an_audit_row_and_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        store
            .add_key("ZKREVOKED", SECRET, None, 1)
            .and_then(|()| store.revoke_key("ZKREVOKED", 2).map(drop))
            .unwrap();
        store
            .add_key_expiring("ZKEXPIRED", SECRET, None, Some(1), 1)
            .unwrap();
        let now = timestamp::now_seconds();
        let data = || payload(&[json!(1)]);
        let by = |key: &str, secret: &str, nonce: &str| {
            let request = Request::sign(key, secret.as_bytes(), now, nonce, data());
            arrival(request.to_frames().to_vec())
        };
        let recursive =
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#;
        let mut unsupported = ContainerWriter::new(recursive, Codec::Null, [3; 16]);
        unsupported.write_block(1, vec![0]).unwrap();
        let mut wrong_version = by(KEY, SECRET, "nonce-000000000009").frames;
        wrong_version[0] = b"zavro/0".to_vec().into();

        let cases: Vec<(Arrival, RejectCode)> = vec![
            (arrival(vec![b"zavro/1".to_vec()]), RejectCode::Malformed),
            (arrival(wrong_version), RejectCode::UnsupportedVersion),
            (
                by("ZKNOBODY", SECRET, "nonce-000000000001"),
                RejectCode::UnknownKey,
            ),
            (
                by("ZKREVOKED", SECRET, "nonce-000000000002"),
                RejectCode::RevokedKey,
            ),
            (
                by("ZKEXPIRED", SECRET, "nonce-000000000003"),
                RejectCode::ExpiredKey,
            ),
            (
                by(KEY, "the-wrong-secret-0123456789", "nonce-000000000004"),
                RejectCode::BadSignature,
            ),
            (
                signed_at(now - 301, "nonce-000000000005", data()),
                RejectCode::ClockSkew,
            ),
            (
                signed("nonce-000000000006", b"not avro".to_vec()),
                RejectCode::BadPayload,
            ),
            (
                signed("nonce-000000000007", unsupported.finish()),
                RejectCode::UnsupportedSchema,
            ),
        ];
        for (arrival, expected) in cases {
            let outcome = one(&mut store, &settings, arrival);
            assert_eq!(code(&outcome), Some(expected), "{:?}", outcome.reply);
            assert!(outcome.records.is_none());
            let row = sends(&mut store).pop().unwrap();
            assert_eq!(outcome.audit_id, Some(row.id), "{expected}");
            assert_eq!(row.reason.as_deref(), Some(expected.as_str()));
            assert!(
                matches!(outcome.line, Some(LogLine::Rejected { code, .. }) if code == expected)
            );
        }
        let skewed = one(
            &mut store,
            &settings,
            signed_at(now + 1000, "nonce-000000000008", data()),
        );
        let Reply::Rejected { server_time, .. } = skewed.reply.reply else {
            panic!("a skewed request is refused");
        };
        assert!(
            server_time.is_some_and(|t| t >= now),
            "clock_skew tells the time"
        );
        assert!(
            store.verify_audit(None).unwrap().is_ok(),
            "every row is chained"
        );
    }

    #[test]
    fn data_that_fits_no_reader_schema_is_a_schema_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut settings) = store_with_key(dir.path());
        settings.reader_schemas = vec![
            apache_avro::Schema::parse_str(
                r#"{"type":"record","name":"R","fields":[{"name":"x","type":"string"}]}"#,
            )
            .unwrap(),
        ];
        let outcome = one(
            &mut store,
            &settings,
            signed("nonce-000000000001", payload(&[json!(1)])),
        );
        assert_eq!(code(&outcome), Some(RejectCode::SchemaMismatch));
        assert!(
            sends(&mut store)[0].schema.is_some(),
            "the refused writer schema is named"
        );
    }

    #[test]
    fn a_retry_in_a_later_group_is_a_duplicate_of_the_original_and_a_changed_request_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let nonce = "nonce-000000000001";
        let request = signed(nonce, payload(&[json!(1), json!(2)]));
        let first = one(&mut store, &settings, request.clone());
        let stored = first.audit_id.unwrap();

        let retry = one(&mut store, &settings, request);
        assert_eq!(
            retry.reply.reply,
            Reply::Accepted {
                audit_id: stored,
                records: 2,
                duplicate: true
            }
        );
        assert!(retry.records.is_none(), "nothing is written out twice");
        assert!(matches!(retry.line, Some(LogLine::Duplicate { of, .. }) if of == stored));

        let changed = one(&mut store, &settings, signed(nonce, payload(&[json!(3)])));
        assert_eq!(code(&changed), Some(RejectCode::Replay));
        let reasons: Vec<_> = sends(&mut store).into_iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [None, Some("duplicate".into()), Some("replay".into())]
        );
    }

    #[test]
    fn a_retry_inside_the_same_group_answers_as_the_first_and_stores_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let nonce = "nonce-000000000001";
        let request = signed(nonce, payload(&[json!(1)]));
        let changed = signed(nonce, payload(&[json!(2)]));
        let outcomes = handle(&mut store, &settings, &[request.clone(), request, changed]);
        let stored = outcomes[0].audit_id.unwrap();
        assert!(outcomes[0].records.is_some());
        assert_eq!(
            outcomes[1].reply.reply,
            Reply::Accepted {
                audit_id: stored,
                records: 1,
                duplicate: true
            }
        );
        assert!(outcomes[1].records.is_none());
        assert_eq!(code(&outcomes[2]), Some(RejectCode::Replay));
        assert_eq!(sends(&mut store).len(), 3, "one row per request");
        assert_eq!(
            store
                .query_audit(&AuditFilter {
                    with_payload: true,
                    ..Default::default()
                })
                .unwrap()
                .iter()
                .filter(|r| r.payload.is_some())
                .count(),
            1,
            "the records are stored once"
        );
    }

    #[test]
    fn a_reply_is_signed_with_its_own_keys_secret_once_the_request_proved_to_be_signed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        store.add_key("ZKREVOKED", SECRET, None, 1).unwrap();
        store.revoke_key("ZKREVOKED", 2).unwrap();
        let now = timestamp::now_seconds();
        let by = |key: &str, secret: &str, nonce: &str| {
            let request = Request::sign(key, secret.as_bytes(), now, nonce, payload(&[json!(1)]));
            arrival(request.to_frames().to_vec())
        };
        let good = signed("nonce-000000000001", payload(&[json!(1)]));
        // Claims KEY, whose secret the group reads for the requests around it, from a connection that
        // authenticated as another key: refused before KEY is looked at for it, so never signed with it.
        let mismatched = Arrival {
            authenticated_key: Some("ZKREVOKED".into()),
            ..signed("nonce-000000000002", payload(&[json!(2)]))
        };
        let group = [
            good.clone(),
            mismatched,
            by(KEY, "the-wrong-secret-0123456789", "nonce-000000000003"),
            by("ZKREVOKED", SECRET, "nonce-000000000004"),
            by("ZKNOBODY", SECRET, "nonce-000000000005"),
            arrival(vec![b"zavro/1".to_vec()]),
            good,
        ];
        let outcomes = handle(&mut store, &settings, &group);
        let seen: Vec<_> = outcomes
            .iter()
            .map(|o| {
                (
                    code(o),
                    o.reply.signature.is_some(),
                    o.reply.signed_by(SECRET.as_bytes()),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (None, true, true),
                (Some(RejectCode::KeyMismatch), false, false),
                (Some(RejectCode::BadSignature), false, false),
                (Some(RejectCode::RevokedKey), false, false),
                (Some(RejectCode::UnknownKey), false, false),
                (Some(RejectCode::Malformed), false, false),
                (None, true, true),
            ],
            "(code, signed, signed by the key's secret)"
        );
        assert!(
            matches!(
                outcomes[6].reply.reply,
                Reply::Accepted {
                    duplicate: true,
                    ..
                }
            ),
            "the retry in the group is answered, signed, as a duplicate"
        );
    }

    #[test]
    fn a_request_naming_another_key_than_its_connection_is_refused_and_audited_with_the_transport()
    {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut settings) = store_with_key(dir.path());
        settings.transport = Transport::Curve;
        let own = Arrival {
            authenticated_key: Some(KEY.into()),
            ..signed("nonce-000000000001", payload(&[json!(1)]))
        };
        let other = Arrival {
            authenticated_key: Some("ZKSOMEONEELSE".into()),
            ..signed("nonce-000000000002", payload(&[json!(2)]))
        };
        let anonymous = signed("nonce-000000000003", payload(&[json!(3)]));
        let outcomes = handle(&mut store, &settings, &[own, other, anonymous]);
        let codes: Vec<_> = outcomes.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                None,
                Some(RejectCode::KeyMismatch),
                Some(RejectCode::KeyMismatch)
            ]
        );
        let rows = sends(&mut store);
        assert_eq!(
            rows.len(),
            3,
            "one row each: the connections were admitted by their keys"
        );
        assert!(
            rows.iter().all(|r| r.transport.as_deref() == Some("curve")),
            "{rows:?}"
        );
        assert_eq!(
            rows[1].key_id.as_deref(),
            Some("ZKSOMEONEELSE"),
            "the key the connection proved, not the one the request named"
        );
        assert!(
            rows[1]
                .detail
                .as_deref()
                .unwrap()
                .contains("\"ZKSOMEONEELSE\""),
            "{:?}",
            rows[1].detail
        );

        settings.transport = Transport::Plaintext;
        let outcome = one(
            &mut store,
            &settings,
            signed("nonce-000000000004", payload(&[json!(4)])),
        );
        assert_eq!(code(&outcome), None, "plaintext connections carry no key");
        assert_eq!(
            sends(&mut store).pop().unwrap().transport.as_deref(),
            Some("plaintext")
        );
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn a_key_revoked_between_groups_is_refused_from_the_next_group_even_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let mut worker = Worker::new(&settings);
        let (mut log, _) = captured_log();
        let first = signed("nonce-000000000001", payload(&[json!(1)]));
        let outcomes = worker.handle(&mut store, std::slice::from_ref(&first), &mut log);
        assert_eq!(code(&outcomes[0]), None);

        // Revoked by another process (`zavro keys revoke`) while this worker keeps running.
        let mut admin = Store::open(&dir.path().join("zavro.db")).unwrap();
        admin.revoke_key(KEY, timestamp::now_micros()).unwrap();

        let second = signed("nonce-000000000002", payload(&[json!(2)]));
        let outcomes = worker.handle(&mut store, &[first, second], &mut log);
        assert_eq!(code(&outcomes[0]), Some(RejectCode::RevokedKey));
        assert_eq!(code(&outcomes[1]), Some(RejectCode::RevokedKey));
    }

    #[test]
    fn a_revocation_waits_for_the_group_in_hand_which_sees_one_state_of_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let path = dir.path().join("zavro.db");
        // Hold a group open, as the worker does while it checks, and revoke from another connection meanwhile.
        let group = store.begin_group().unwrap();
        let revoker = std::thread::spawn(move || {
            let mut admin = Store::open(&path).unwrap();
            admin.revoke_key(KEY, timestamp::now_micros()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !revoker.is_finished(),
            "the revocation waits for the write lock"
        );
        drop(group);
        revoker.join().unwrap();
        let outcome = one(
            &mut store,
            &settings,
            signed("nonce-000000000001", payload(&[json!(1)])),
        );
        assert_eq!(code(&outcome), Some(RejectCode::RevokedKey));
    }

    fn assert_refused_as_internal(outcomes: &[Outcome], nonce: &str) {
        assert_eq!(outcomes.len(), 1);
        let outcome = &outcomes[0];
        assert_eq!(
            code(outcome),
            Some(RejectCode::Internal),
            "{:?}",
            outcome.reply
        );
        assert!(outcome.records.is_none(), "no records go out");
        assert_eq!(
            outcome.reply.nonce.as_deref(),
            Some(nonce),
            "the client can match the reply"
        );
    }

    #[test]
    fn a_group_the_store_cannot_write_is_refused_as_retryable_and_its_retry_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let nonce = "nonce-000000000001";
        let incoming = signed(nonce, payload(&[json!({"n": 1})]));

        store.refuse_writes(true);
        let (mut log, captured) = captured_log();
        let outcomes =
            Worker::new(&settings).handle(&mut store, std::slice::from_ref(&incoming), &mut log);
        assert_refused_as_internal(&outcomes, nonce);
        assert!(outcomes[0].audit_id.is_none() && outcomes[0].line.is_none());
        assert!(
            captured.lines()[0].starts_with("store error, group of 1 requests not kept"),
            "{:?}",
            captured.lines()
        );
        store.refuse_writes(false);
        assert!(
            sends(&mut store).is_empty(),
            "nothing of the group was kept"
        );
        assert!(store.find_nonce(KEY, nonce).unwrap().is_none());

        let outcome = one(&mut store, &settings, incoming);
        assert_eq!(
            code(&outcome),
            None,
            "the same request, sent again, is stored"
        );
        assert!(outcome.records.is_some());
        assert_eq!(sends(&mut store).len(), 1);
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

        let outcomes = handle(
            &mut store,
            &settings,
            &[signed(nonce, payload(&[json!(1)]))],
        );
        assert_refused_as_internal(&outcomes, nonce);
        other.execute_batch("ROLLBACK").unwrap();
        assert!(
            sends(&mut store).is_empty(),
            "nothing of the group was kept"
        );
        assert!(store.find_nonce(KEY, nonce).unwrap().is_none());
    }

    #[test]
    fn a_group_whose_store_cannot_be_read_answers_every_request_in_order_as_internal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let nonce = "nonce-000000000001";
        let request = signed(nonce, payload(&[json!(1)]));
        store.refuse_writes(true);
        let outcomes = handle(
            &mut store,
            &settings,
            &[request.clone(), request, arrival(vec![b"zavro/1".to_vec()])],
        );
        let codes: Vec<_> = outcomes.iter().map(code).collect();
        // The store could not be read either (query_only refuses BEGIN IMMEDIATE), so the checks never ran.
        assert_eq!(
            codes,
            [
                Some(RejectCode::Internal),
                Some(RejectCode::Internal),
                Some(RejectCode::Internal)
            ]
        );
        assert_eq!(outcomes[0].reply.nonce.as_deref(), Some(nonce));
        assert_eq!(outcomes[2].reply.nonce, None);
    }

    #[test]
    fn a_failed_commit_maps_the_same_verdicts_to_retryable_answers_and_audits_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        // A store that refuses to keep records (as a full disk would for the payloads) but can still audit.
        let other = rusqlite::Connection::open(dir.path().join("zavro.db")).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER no_payloads BEFORE INSERT ON payloads
                 BEGIN SELECT RAISE(ABORT, 'no room for payloads'); END",
            )
            .unwrap();
        let nonce = "nonce-000000000001";
        let request = signed(nonce, payload(&[json!(1)]));
        let (mut log, captured) = captured_log();
        let outcomes = Worker::new(&settings).handle(
            &mut store,
            &[request.clone(), request, arrival(vec![b"zavro/1".to_vec()])],
            &mut log,
        );
        let codes: Vec<_> = outcomes.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                Some(RejectCode::Internal),
                Some(RejectCode::Internal),
                Some(RejectCode::Malformed)
            ],
            "what would have been stored or answered as a retry is retryable; a refusal stands"
        );
        assert!(outcomes.iter().all(|o| o.records.is_none()));
        assert_eq!(outcomes[0].reply.nonce.as_deref(), Some(nonce));
        let rows = sends(&mut store);
        let audited: Vec<_> = outcomes.iter().map(|o| o.audit_id).collect();
        assert_eq!(audited, rows.iter().map(|r| Some(r.id)).collect::<Vec<_>>());
        assert_eq!(rows[0].reason.as_deref(), Some("internal"));
        assert!(
            rows[0].schema.is_some(),
            "the refused payload's schema is named"
        );
        assert!(
            store.find_nonce(KEY, nonce).unwrap().is_none(),
            "the nonce is free"
        );
        assert!(
            captured.lines()[0].contains("no room for payloads"),
            "{:?}",
            captured.lines()
        );

        other.execute_batch("DROP TRIGGER no_payloads").unwrap();
        let retried = one(&mut store, &settings, signed(nonce, payload(&[json!(1)])));
        assert_eq!(code(&retried), None, "the client's retry is stored");
    }

    #[test]
    fn unvouched_refusals_cost_one_row_per_window_and_a_summary_that_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let (mut log, captured) = captured_log();
        let mut worker = Worker::new(&settings);
        let junk = || arrival(vec![b"zavro/1".to_vec()]);
        let forged = |nonce: &str| {
            let request = Request::sign(
                KEY,
                b"not-the-secret",
                timestamp::now_seconds(),
                nonce,
                vec![],
            );
            arrival(request.to_frames().to_vec())
        };
        let outcomes = worker.handle(
            &mut store,
            &[junk(), junk(), forged("nonce-000000000001"), junk()],
            &mut log,
        );
        let codes: Vec<_> = outcomes.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                Some(RejectCode::Malformed),
                Some(RejectCode::Malformed),
                Some(RejectCode::BadSignature),
                Some(RejectCode::Malformed)
            ],
            "every request is answered"
        );
        let audited: Vec<_> = outcomes.iter().map(|o| o.audit_id.is_some()).collect();
        assert_eq!(
            audited,
            [true, false, true, false],
            "a sample per peer, reason and key"
        );
        worker.handle(&mut store, &[forged("nonce-000000000002")], &mut log);
        assert_eq!(sends(&mut store).len(), 2);

        worker.close_windows(&mut store, timestamp::now_micros(), true, &mut log);
        let rows = sends(&mut store);
        let counts: Vec<_> = rows
            .iter()
            .map(|r| (r.reason.clone().unwrap(), r.requests))
            .collect();
        assert_eq!(
            counts,
            [
                ("malformed".into(), 1),
                ("bad_signature".into(), 1),
                ("malformed".into(), 2),
                ("bad_signature".into(), 1)
            ]
        );
        assert_eq!(
            rows[3].key_id.as_deref(),
            Some(KEY),
            "the key the requests named"
        );
        assert!(
            rows.iter()
                .all(|r| r.server.as_deref() == Some("test-server")),
            "samples and summaries alike name the server that wrote them: {rows:?}"
        );
        assert!(
            rows[2]
                .detail
                .as_deref()
                .unwrap()
                .contains(&format!("#{}", rows[0].id))
        );
        assert!(
            store.verify_audit(None).unwrap().is_ok(),
            "summaries are chained"
        );
        assert!(
            captured
                .lines()
                .iter()
                .any(|l| l.contains("2 more in 10 s")),
            "{:?}",
            captured.lines()
        );
        worker.close_windows(&mut store, timestamp::now_micros(), true, &mut log);
        assert_eq!(sends(&mut store).len(), 4, "a window is summarised once");
    }

    #[test]
    fn counts_of_a_group_that_is_not_kept_are_forgotten_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let (mut log, _) = captured_log();
        let mut worker = Worker::new(&settings);
        let junk = || arrival(vec![b"zavro/1".to_vec()]);
        worker.handle(&mut store, &[junk()], &mut log);
        store.refuse_writes(true);
        worker.handle(&mut store, &[junk(), junk()], &mut log);
        store.refuse_writes(false);
        worker.handle(&mut store, &[junk()], &mut log);
        worker.close_windows(&mut store, timestamp::now_micros(), true, &mut log);
        let requests: i64 = sends(&mut store).iter().map(|r| r.requests).sum();
        assert_eq!(
            requests, 2,
            "the two refused while the store could not write left no count"
        );
    }

    #[test]
    fn a_group_past_its_decoded_budget_is_committed_and_answered_in_parts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let (mut log, _) = captured_log();
        let mut worker = Worker::new(&settings);
        worker.group_max_decoded = 200;
        let big = |i: u32| signed(&format!("nonce-{i:012}"), payload(&[json!("x".repeat(60))]));
        let group: Vec<Arrival> = (0..5).map(big).collect();
        let mut parts = Vec::new();
        let mut done = 0;
        while done < group.len() {
            let outcomes = worker.handle(&mut store, &group[done..], &mut log);
            assert!(!outcomes.is_empty());
            done += outcomes.len();
            parts.push(outcomes);
        }
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [2, 2, 1],
            "each part stops after the request that passes the budget"
        );
        let ids: Vec<i64> = parts
            .iter()
            .flatten()
            .map(|o| o.audit_id.unwrap())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "in arrival order: {ids:?}"
        );
        assert!(parts.iter().flatten().all(|o| code(o).is_none()));
    }

    #[test]
    fn a_request_id_stored_once_answers_every_later_signing_as_a_duplicate_whatever_its_nonce_and_time()
     {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let now = timestamp::now_seconds();
        let id = "spool-id-0123456789abcdef";
        // One payload: a container file's sync marker is random, so each encoding is other bytes.
        let bytes = payload(&[json!({"n": 1}), json!(2)]);
        let data = || bytes.clone();
        let first = one(
            &mut store,
            &settings,
            signed_with_id(now, "nonce-000000000001", id, data()),
        );
        let Reply::Accepted {
            audit_id: stored,
            duplicate: false,
            ..
        } = first.reply.reply
        else {
            panic!("the first signing is stored: {:?}", first.reply);
        };
        // Signed again: a new nonce, and a timestamp far outside the window (the clock check comes after the id).
        for (nonce, timestamp) in [
            ("nonce-000000000002", now + 1),
            ("nonce-000000000003", now - 100_000),
        ] {
            let again = one(
                &mut store,
                &settings,
                signed_with_id(timestamp, nonce, id, data()),
            );
            assert_eq!(
                again.reply.reply,
                Reply::Accepted {
                    audit_id: stored,
                    records: 2,
                    duplicate: true
                },
                "{nonce}"
            );
            assert!(again.records.is_none(), "nothing written out again");
            assert!(again.reply.signed_by(SECRET.as_bytes()));
        }
        // The same id with other data is refused; a stale request with an unknown id is still a clock_skew.
        let other = one(
            &mut store,
            &settings,
            signed_with_id(now, "nonce-000000000004", id, payload(&[json!(3)])),
        );
        assert_eq!(code(&other), Some(RejectCode::Replay));
        let stale = one(
            &mut store,
            &settings,
            signed_with_id(
                now - 100_000,
                "nonce-000000000005",
                "another-id-0123456789",
                data(),
            ),
        );
        assert_eq!(code(&stale), Some(RejectCode::ClockSkew));

        let rows = sends(&mut store);
        let reasons: Vec<Option<&str>> = rows.iter().map(|r| r.reason.as_deref()).collect();
        assert_eq!(
            reasons,
            [
                None,
                Some("duplicate"),
                Some("duplicate"),
                Some("replay"),
                Some("clock_skew")
            ]
        );
        let with_ids: Vec<Option<&str>> = rows.iter().map(|r| r.request_id.as_deref()).collect();
        assert_eq!(
            with_ids,
            [Some(id), None, None, None, None],
            "the id is shown on the accepted row"
        );
        let payloads = store
            .query_audit(&AuditFilter {
                with_payload: true,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .filter_map(|row| row.payload)
            .count();
        assert_eq!(payloads, 1, "stored once");
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn two_signings_of_one_request_id_in_one_group_store_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let now = timestamp::now_seconds();
        let id = "spool-id-0123456789abcdef";
        let data = payload(&[json!(1)]);
        let outcomes = handle(
            &mut store,
            &settings,
            &[
                signed_with_id(now, "nonce-000000000001", id, data.clone()),
                signed_with_id(now, "nonce-000000000002", id, data),
            ],
        );
        let first = outcomes[0].audit_id.unwrap();
        assert_eq!(
            outcomes[1].reply.reply,
            Reply::Accepted {
                audit_id: first,
                records: 1,
                duplicate: true
            }
        );
        assert!(outcomes[1].records.is_none());
        assert_eq!(
            store
                .request_id_of(KEY, id)
                .unwrap()
                .map(|seen| seen.audit_id),
            Some(first)
        );
    }

    #[test]
    fn a_request_id_is_kept_as_long_as_its_audit_row() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let id = "spool-id-0123456789abcdef";
        let now = timestamp::now_seconds();
        let data = payload(&[json!(1)]);
        one(
            &mut store,
            &settings,
            signed_with_id(now, "nonce-000000000001", id, data.clone()),
        );
        assert!(store.request_id_of(KEY, id).unwrap().is_some());
        // Pruned by another process, as `audit prune` does.
        let mut admin = Store::open(&dir.path().join("zavro.db")).unwrap();
        let now_us = timestamp::now_micros();
        admin.prune_audit(now_us + 1, now_us, false).unwrap();
        assert_eq!(store.request_id_of(KEY, id).unwrap(), None);
        // Pruned with its row, the id is new again: the request is stored again (README says so).
        let again = one(
            &mut store,
            &settings,
            signed_with_id(now, "nonce-000000000002", id, data),
        );
        assert!(matches!(
            again.reply.reply,
            Reply::Accepted {
                duplicate: false,
                ..
            }
        ));
    }

    #[test]
    fn a_schema_pruned_by_another_process_is_written_again_not_named_by_a_stale_id() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, settings) = store_with_key(dir.path());
        let (mut log, _) = captured_log();
        let mut worker = Worker::new(&settings);
        let first = worker.handle(
            &mut store,
            &[signed("nonce-000000000001", payload(&[json!(1)]))],
            &mut log,
        );
        assert_eq!(code(&first[0]), None);

        let mut admin = Store::open(&dir.path().join("zavro.db")).unwrap();
        let now = timestamp::now_micros();
        let pruned = admin.prune_audit(now + 1, now, false).unwrap();
        assert_eq!(pruned.schemas, 1, "no row names the schema any more");

        let again = worker.handle(
            &mut store,
            &[signed("nonce-000000000002", payload(&[json!(2)]))],
            &mut log,
        );
        assert_eq!(code(&again[0]), None);
        assert!(
            sends(&mut store)[0].schema.is_some(),
            "the row names its schema"
        );
        assert!(store.verify_audit(None).unwrap().is_ok());
    }
}

/// Two servers on one PostgreSQL database racing for a nonce, through the real worker.
#[cfg(test)]
mod racing {
    use serde_json::json;

    use super::*;
    use crate::{
        protocol::{RejectCode, Reply},
        server::testing::{
            KEY, SECRET, captured_log, payload, signed, signed_with_id, store_with_key,
        },
        store::{
            KeyStore, PgStore, RequestGroup,
            postgres::{PgGroup, test_cluster},
        },
    };

    /// A PostgreSQL store whose first group, once checked and before it writes, lets a rival commit first.
    struct Racing {
        store: PgStore,
        rival: Option<Box<dyn FnOnce()>>,
    }

    struct RacingGroup<'s> {
        group: PgGroup<'s>,
        rival: Option<Box<dyn FnOnce()>>,
    }

    impl RequestStore for Racing {
        type Group<'s> = RacingGroup<'s>;

        fn begin_group(&mut self) -> Result<RacingGroup<'_>, StoreError> {
            Ok(RacingGroup {
                rival: self.rival.take(),
                group: self.store.begin_group()?,
            })
        }

        fn widen_nonce_window(&mut self, max_skew_secs: i64) -> Result<i64, StoreError> {
            self.store.widen_nonce_window(max_skew_secs)
        }

        fn prune_nonces(&mut self, margin_secs: i64) -> Result<usize, StoreError> {
            self.store.prune_nonces(margin_secs)
        }

        fn still_in_place(&self) -> Result<(), StoreError> {
            Ok(())
        }

        fn answers(&mut self) -> Result<(), StoreError> {
            self.store.answers()
        }

        fn size_on_disk(&mut self) -> Result<u64, StoreError> {
            self.store.size_on_disk()
        }
    }

    impl RequestGroup for RacingGroup<'_> {
        fn key(&mut self, id: &str) -> Result<Option<StoredKey>, StoreError> {
            self.group.key(id)
        }

        fn nonce(
            &mut self,
            key_id: &str,
            nonce: &str,
        ) -> Result<Option<crate::store::SeenNonce>, StoreError> {
            self.group.nonce(key_id, nonce)
        }

        fn request_id(
            &mut self,
            key_id: &str,
            id: &str,
        ) -> Result<Option<crate::store::SeenId>, StoreError> {
            self.group.request_id(key_id, id)
        }

        fn append_accepted(
            &mut self,
            entry: &crate::store::AuditEntry,
            nonce: &crate::store::Nonce,
            payload_json: &str,
        ) -> Result<crate::store::Committed, StoreError> {
            self.let_the_rival_in();
            self.group.append_accepted(entry, nonce, payload_json)
        }

        fn append(&mut self, entry: &crate::store::AuditEntry) -> Result<i64, StoreError> {
            self.let_the_rival_in();
            self.group.append(entry)
        }

        fn commit(self) -> Result<(), StoreError> {
            self.group.commit()
        }
    }

    impl RacingGroup<'_> {
        /// Runs the rival once, just before the group's first write: after its checks, before its lock.
        fn let_the_rival_in(&mut self) {
            if let Some(rival) = self.rival.take() {
                rival();
            }
        }
    }

    fn code(outcome: &Outcome) -> Option<RejectCode> {
        match &outcome.reply.reply {
            Reply::Rejected { code, .. } => Some(*code),
            Reply::Accepted { .. } => None,
        }
    }

    #[test]
    fn a_group_that_lost_a_nonce_to_another_server_is_checked_again_and_each_request_gets_its_answer()
     {
        let Some(cluster) = test_cluster::shared() else {
            return;
        };
        let url = crate::store::PgUrl::parse(&cluster.fresh_database()).unwrap();
        let key = || crate::sealed::MasterKey::from_bytes([7; 32]);
        let open = || {
            let mut store = PgStore::connect_or_create(&url).unwrap();
            store.use_master_key(Some(key())).unwrap();
            store
        };
        let mut a = open();
        a.add_key(KEY, SECRET, None, None, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_, settings) = store_with_key(dir.path());

        let own = signed("nonce-own-0000000001", payload(&[json!("own")]));
        let shared = signed("nonce-shared-000000001", payload(&[json!("shared")]));
        let stolen = signed("nonce-stolen-000000001", payload(&[json!("a's")]));
        let stolen_by_b = signed("nonce-stolen-000000001", payload(&[json!("b's")]));

        // Server B answers the same request and another one with A's third nonce, while A's group is checked.
        let b_outcomes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let rival = {
            let (mut b, settings, b_outcomes) = (open(), settings.clone(), b_outcomes.clone());
            let group = [shared.clone(), stolen_by_b];
            Box::new(move || {
                let (mut log, _) = captured_log();
                let outcomes = Worker::new(&settings).handle(&mut b, &group, &mut log);
                *b_outcomes.borrow_mut() = outcomes;
            })
        };
        let mut racing = Racing {
            store: a,
            rival: Some(rival),
        };
        let (mut log, captured) = captured_log();
        let outcomes = Worker::new(&settings).handle(&mut racing, &[own, shared, stolen], &mut log);

        let b_outcomes = b_outcomes.borrow();
        let by_b: Vec<i64> = b_outcomes.iter().map(|o| o.audit_id.unwrap()).collect();
        assert!(
            b_outcomes.iter().all(|o| code(o).is_none()),
            "B stored both"
        );
        assert!(
            captured
                .lines()
                .iter()
                .any(|l| l.contains("checking the group of 3 requests again")),
            "{:?}",
            captured.lines()
        );
        assert!(
            matches!(
                outcomes[0].reply.reply,
                Reply::Accepted {
                    duplicate: false,
                    ..
                }
            ),
            "A's own request is stored as if nothing happened: {:?}",
            outcomes[0].reply
        );
        assert_eq!(
            outcomes[1].reply.reply,
            Reply::Accepted {
                audit_id: by_b[0],
                records: 1,
                duplicate: true
            },
            "the request B stored first is a duplicate of B's row"
        );
        assert_eq!(
            code(&outcomes[2]),
            Some(RejectCode::Replay),
            "the nonce B used for other data"
        );
        assert!(outcomes[1].records.is_none() && outcomes[2].records.is_none());

        let stored: Vec<String> = racing
            .store
            .client()
            .query("SELECT json FROM payloads ORDER BY audit_id", &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(
            stored,
            ["[\"shared\"]", "[\"b's\"]", "[\"own\"]"],
            "each once"
        );
        assert_eq!(
            crate::store::postgres::tests::verify_chain(&mut racing.store)
                .unwrap()
                .rows,
            1 + 2 + 3,
            "key_add, B's two rows, A's three"
        );
    }

    #[test]
    fn a_group_that_lost_a_request_id_to_another_server_is_checked_again_and_answered_duplicate() {
        let Some(cluster) = test_cluster::shared() else {
            return;
        };
        let url = crate::store::PgUrl::parse(&cluster.fresh_database()).unwrap();
        let key = || crate::sealed::MasterKey::from_bytes([7; 32]);
        let open = || {
            let mut store = PgStore::connect_or_create(&url).unwrap();
            store.use_master_key(Some(key())).unwrap();
            store
        };
        let mut a = open();
        a.add_key(KEY, SECRET, None, None, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (_, settings) = store_with_key(dir.path());
        let now = timestamp::now_seconds();
        let id = "spool-id-0123456789abcdef";
        // The same spooled request, signed twice (two nonces), reaching two servers at once.
        let data = payload(&[json!(1)]);
        let by_a = signed_with_id(now, "nonce-a-000000000001", id, data.clone());
        let by_b = signed_with_id(now, "nonce-b-000000000001", id, data);

        let b_outcomes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let rival = {
            let (mut b, settings, b_outcomes) = (open(), settings.clone(), b_outcomes.clone());
            Box::new(move || {
                let (mut log, _) = captured_log();
                *b_outcomes.borrow_mut() = Worker::new(&settings).handle(&mut b, &[by_b], &mut log);
            })
        };
        let mut racing = Racing {
            store: a,
            rival: Some(rival),
        };
        let (mut log, captured) = captured_log();
        let outcomes = Worker::new(&settings).handle(&mut racing, &[by_a], &mut log);
        let stored_by_b = b_outcomes.borrow()[0].audit_id.unwrap();
        assert!(
            captured
                .lines()
                .iter()
                .any(|l| l.contains("checking the group of 1 requests again")),
            "{:?}",
            captured.lines()
        );
        assert_eq!(
            outcomes[0].reply.reply,
            Reply::Accepted {
                audit_id: stored_by_b,
                records: 1,
                duplicate: true
            }
        );
        let stored: i64 = racing
            .store
            .client()
            .query_one("SELECT count(*) FROM payloads", &[])
            .unwrap()
            .get(0);
        assert_eq!(stored, 1, "stored once");
    }
}
