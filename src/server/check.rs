//! The checks of one request, in PROTOCOL.md's order (connection, key, signature, clock, nonce, payload), as
//! plain functions of the request and of what the store says of its key and nonce, and the [`Verdict`] they
//! reach. Nothing here reads or writes the store: the worker looks things up and hands them in.

use std::sync::Arc;

use super::Transport;
use crate::{
    auth,
    avro::{AvroError, Decoded, Ndjson, SchemaFingerprint},
    protocol::{self, Envelope, RejectCode, Rejection, Request},
    store::StoredKey,
    timestamp,
};

/// What the checks decided about one request, carrying everything its answer and its audit row need.
#[derive(Debug)]
pub struct Verdict {
    /// The nonce the reply names, when the envelope could be read.
    pub nonce: Option<String>,
    /// The key id the request named, when the envelope could be read.
    pub key: Option<String>,
    /// The peer's IP address, when the transport knew it.
    pub peer: Option<String>,
    /// The request's size in bytes, as it arrived.
    pub size: u64,
    /// The payload's writer schema, when its header was read (also for some refusals).
    pub schema: Option<Arc<SchemaFingerprint>>,
    /// True when the request proved to be signed with its key's secret ([`signed_by_key`] passed): the reply
    /// is then signed with it. False for every request refused before that.
    pub signable: bool,
    /// What is to be done with it.
    pub decision: Decision,
}

/// What is to be done with a request.
#[derive(Debug)]
pub enum Decision {
    /// New and valid: store it.
    Store(Box<Fresh>),
    /// A retry of a request committed earlier (byte-identical, or with the same request id): answer with the
    /// original.
    Retry(Original),
    /// A byte-identical retry of the request at this index of the same group: answer as that one is answered.
    RetryInGroup(usize),
    /// Refuse it.
    Refuse(Rejection),
}

/// A stored request that a retry is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original {
    /// Its audit row.
    pub audit_id: i64,
    /// How many records it carried.
    pub records: u64,
}

/// A new, valid request: what storing it needs.
#[derive(Debug)]
pub struct Fresh {
    /// The request's timestamp (Unix seconds), kept with its nonce.
    pub timestamp: i64,
    /// The request's signature, kept with its nonce to recognise a retry.
    pub signature: String,
    /// The request's stable id, when its envelope has one, kept with its audit row.
    pub request_id: Option<String>,
    /// The SHA-256 (lowercase hex) of the payload frame, kept with the request id.
    pub payload_digest: String,
    /// The records as JSON lines, for the output.
    pub records: Ndjson,
    /// The records as one JSON array, for the store.
    pub json: String,
}

impl Verdict {
    /// A refusal of a request whose envelope could not be read.
    pub fn unreadable(peer: Option<String>, size: u64, rejection: Rejection) -> Verdict {
        Verdict {
            nonce: None,
            key: None,
            peer,
            size,
            schema: None,
            signable: false,
            decision: Decision::Refuse(rejection),
        }
    }

    /// The same verdict for a group that could not be committed: nothing of it was kept, so what would have been
    /// stored or answered as a retry is refused as `internal`, which the client may retry. Refusals stand.
    pub fn retryable(self) -> Verdict {
        match self.decision {
            Decision::Refuse(_) => self,
            Decision::Store(_) | Decision::Retry(_) | Decision::RetryInGroup(_) => Verdict {
                decision: Decision::Refuse(internal(
                    "the server could not store the request; retry",
                )),
                ..self
            },
        }
    }
}

/// An `internal` refusal: the server's fault, safe to retry.
pub fn internal(message: &str) -> Rejection {
    Rejection::new(RejectCode::Internal, message)
}

/// Refuses the request unless it names the key its connection authenticated as: over CURVE, the ZAP handler
/// admitted the connection as `authenticated` (the user id of every message on it), and a request may name no
/// other key. Checked first: it needs no store lookup, and a connection that may not use a key never gets its
/// secret read. A CURVE connection with no key at all is refused too, as a second line of defence: serve makes
/// libzmq refuse handshakes no handler checked (`zap::fail_closed`).
pub fn connection_vouches<P>(
    request: &Request<P>,
    transport: Transport,
    authenticated: Option<&str>,
) -> Result<(), Rejection> {
    let named = request.envelope.key.as_str();
    match (authenticated, transport) {
        (Some(key), _) if key == named => Ok(()),
        (Some(key), _) => Err(Rejection::new(
            RejectCode::KeyMismatch,
            format!(
                "this connection authenticated as key {key:?} at the handshake; the request names key {named:?}"
            ),
        )),
        (None, Transport::Curve) => Err(Rejection::new(
            RejectCode::KeyMismatch,
            "this connection authenticated as no key at the handshake",
        )),
        (None, Transport::Plaintext) => Ok(()),
    }
}

/// Refuses the request unless `key` (what the store holds under its key id) is active, the signature is the
/// key's, and the timestamp is within `max_skew_secs` of the server's clock (`now_us`): both checks, in the
/// worker's order, for the tests of their codes.
#[cfg(test)]
fn authenticate<P: AsRef<[u8]>>(
    request: &Request<P>,
    key: Option<&StoredKey>,
    now_us: i64,
    max_skew_secs: i64,
) -> Result<(), Rejection> {
    signed_by_key(request, key, now_us)?;
    within_clock(request, now_us, max_skew_secs)
}

/// Refuses the request unless `key` (what the store holds under its key id) is active and the signature is the
/// key's. Once this passes, the request comes from the key's holder (or repeats one of theirs), and its reply
/// may be signed: a reply signed for a request anyone could have made up, with a victim's key and nonce and a
/// wrong signature, would be a genuine signed refusal an on-path attacker could hand that victim. Returns the
/// payload's digest ([`protocol::payload_digest`]), which the signature covered.
pub fn signed_by_key<P: AsRef<[u8]>>(
    request: &Request<P>,
    key: Option<&StoredKey>,
    now_us: i64,
) -> Result<String, Rejection> {
    let envelope = &request.envelope;
    let Some(stored) = key else {
        return Err(Rejection::new(
            RejectCode::UnknownKey,
            format!("no key {:?}", envelope.key),
        ));
    };
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
    // Hashed only once the key is known and active: an unknown key costs no pass over the payload. The digest
    // is the caller's too (a request id's record keeps it), so the payload is hashed once per request.
    let digest = protocol::payload_digest(request.payload.as_ref());
    let string_to_sign = request.string_to_sign_with_digest(&digest);
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
    Ok(digest)
}

/// Refuses a request whose timestamp is more than `max_skew_secs` from the server's clock (`now_us`).
pub fn within_clock<P>(
    request: &Request<P>,
    now_us: i64,
    max_skew_secs: i64,
) -> Result<(), Rejection> {
    let envelope = &request.envelope;
    let server_time = now_us.div_euclid(1_000_000);
    let skew = envelope.timestamp.abs_diff(server_time);
    if skew > max_skew_secs.unsigned_abs() {
        return Err(Rejection::new(
            RejectCode::ClockSkew,
            format!(
                "timestamp {} is {skew} s from the server's time {server_time}; at most {max_skew_secs} s allowed",
                envelope.timestamp
            ),
        ));
    }
    Ok(())
}

/// What an earlier use of the request's nonce makes of it: `None` when there was none, the earlier request
/// (`of`) when this one is a byte-identical retry of it, and a `replay` refusal otherwise.
///
/// The signature covers key, timestamp, nonce and payload digest: equal signatures mean the same bytes.
pub fn retry_of<T>(
    envelope: &Envelope,
    earlier: Option<(T, Option<&str>)>,
) -> Result<Option<T>, Rejection> {
    match earlier {
        None => Ok(None),
        Some((of, signature)) if signature == Some(envelope.signature.as_str()) => Ok(Some(of)),
        Some(_) => Err(Rejection::new(
            RejectCode::Replay,
            "nonce already used with this key for a different request",
        )),
    }
}

/// What an earlier accepted request with the same request id makes of this one (`digest` is its payload's
/// SHA-256): `None` when there was none, the earlier request (`of`) when it carried the same payload, whatever
/// its nonce and timestamp, and a `replay` refusal when the id was used for other data.
pub fn retry_of_id<T>(digest: &str, earlier: Option<(T, &str)>) -> Result<Option<T>, Rejection> {
    match earlier {
        None => Ok(None),
        Some((of, earlier_digest)) if earlier_digest == digest => Ok(Some(of)),
        Some(_) => Err(Rejection::new(
            RejectCode::Replay,
            "request id already used with this key for a different payload",
        )),
    }
}

/// The records of a decoded payload, or the refusal its decoding reached; with the writer schema either way
/// when the header was read.
pub fn payload(decoded: Decoded) -> (Option<Arc<SchemaFingerprint>>, Result<Ndjson, Rejection>) {
    let records = match (decoded.records, &decoded.schema) {
        (Ok(records), Some(_)) => Ok(records),
        (Ok(_), None) => Err(Rejection::new(RejectCode::BadPayload, "no writer schema")),
        (Err(e @ AvroError::SchemaMismatch(_)), _) => {
            Err(Rejection::new(RejectCode::SchemaMismatch, e.to_string()))
        }
        (Err(e @ AvroError::UnsupportedSchema(_)), _) => {
            Err(Rejection::new(RejectCode::UnsupportedSchema, e.to_string()))
        }
        (Err(e), _) => Err(Rejection::new(RejectCode::BadPayload, e.to_string())),
    };
    (decoded.schema, records)
}

/// The records as one JSON array (`[a,b,…]`), the form the store keeps, made in one copy of the lines: each
/// newline but the last becomes a comma, the last the closing bracket. Splitting the text into lines and pushing
/// them one by one, as the server once did, cost 615 instructions per record under callgrind against about 120;
/// the text is the same, byte for byte, so the audit hash of a payload did not change. `internal` if the lines are not UTF-8, which the decoder never writes.
pub fn json_array(records: &Ndjson) -> Result<String, Rejection> {
    let text = &records.text;
    let mut array = Vec::with_capacity(text.len() + 2);
    array.push(b'[');
    array.extend_from_slice(text);
    // A record holds no raw newline (JSON escapes one inside a string), so every newline ends a record.
    for end in memchr::memchr_iter(b'\n', text) {
        array[1 + end] = b',';
    }
    if text.last() == Some(&b'\n') {
        let last = array.len() - 1;
        array[last] = b']';
    } else {
        array.push(b']');
    }
    String::from_utf8(array).map_err(|_| internal("the decoded records are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    const SECRET: &str = "a-secret-of-enough-length-0123456789";
    const NOW_US: i64 = 1_700_000_000_000_000;

    fn request(timestamp: i64) -> Request {
        Request::sign(
            "ZK1",
            SECRET.as_bytes(),
            timestamp,
            "nonce-0123456789abcdef",
            b"payload".to_vec(),
        )
    }

    fn key(revoked: bool, expires_us: Option<i64>) -> StoredKey {
        StoredKey {
            secret: Zeroizing::new(SECRET.to_owned()),
            revoked,
            expires_us,
        }
    }

    fn code(result: Result<(), Rejection>) -> Option<RejectCode> {
        result.err().map(|r| r.code)
    }

    #[test]
    fn a_request_signed_by_an_active_key_within_the_clock_window_passes() {
        let now = NOW_US / 1_000_000;
        let active = key(false, Some(NOW_US + 1));
        assert_eq!(
            code(authenticate(&request(now), Some(&active), NOW_US, 300)),
            None
        );
        assert_eq!(
            code(authenticate(
                &request(now - 300),
                Some(&active),
                NOW_US,
                300
            )),
            None
        );
    }

    #[test]
    fn each_key_and_clock_failure_has_its_own_code() {
        let now = NOW_US / 1_000_000;
        let check = |key: Option<&StoredKey>, timestamp| {
            code(authenticate(&request(timestamp), key, NOW_US, 300))
        };
        assert_eq!(check(None, now), Some(RejectCode::UnknownKey));
        assert_eq!(
            check(Some(&key(true, None)), now),
            Some(RejectCode::RevokedKey)
        );
        assert_eq!(
            check(Some(&key(false, Some(NOW_US))), now),
            Some(RejectCode::ExpiredKey)
        );
        assert_eq!(
            check(Some(&key(false, None)), now + 301),
            Some(RejectCode::ClockSkew)
        );
        assert_eq!(
            check(Some(&key(false, None)), now - 301),
            Some(RejectCode::ClockSkew)
        );
        let mut other = key(false, None);
        other.secret = Zeroizing::new("another-secret-of-enough-length".into());
        assert_eq!(check(Some(&other), now), Some(RejectCode::BadSignature));
    }

    #[test]
    fn a_revoked_key_is_refused_before_its_signature_is_looked_at() {
        let mut revoked = key(true, None);
        revoked.secret = Zeroizing::new("not-the-signing-secret".into());
        let result = authenticate(&request(NOW_US / 1_000_000), Some(&revoked), NOW_US, 300);
        assert_eq!(code(result), Some(RejectCode::RevokedKey));
    }

    #[test]
    fn a_request_may_name_only_the_key_its_connection_authenticated_as() {
        let request = request(NOW_US / 1_000_000);
        let check =
            |transport, authenticated| code(connection_vouches(&request, transport, authenticated));
        assert_eq!(check(Transport::Curve, Some("ZK1")), None);
        assert_eq!(
            check(Transport::Curve, Some("ZK2")),
            Some(RejectCode::KeyMismatch)
        );
        assert_eq!(
            check(Transport::Curve, None),
            Some(RejectCode::KeyMismatch),
            "a CURVE connection that no handshake check admitted"
        );
        assert_eq!(check(Transport::Plaintext, None), None);
        let mismatch = connection_vouches(&request, Transport::Curve, Some("ZK2")).unwrap_err();
        assert_eq!(
            mismatch.message,
            r#"this connection authenticated as key "ZK2" at the handshake; the request names key "ZK1""#
        );
    }

    #[test]
    fn a_nonce_seen_before_is_a_retry_only_with_the_same_signature() {
        let envelope = request(1).envelope;
        assert_eq!(retry_of::<usize>(&envelope, None), Ok(None));
        let same = Some(envelope.signature.as_str());
        assert_eq!(retry_of(&envelope, Some((7, same))), Ok(Some(7)));
        let replay = retry_of(&envelope, Some((7, Some("other")))).unwrap_err();
        assert_eq!(replay.code, RejectCode::Replay);
        // Nonces stored before schema version 3 have no signature: never a retry.
        let old = retry_of(&envelope, Some((7, None))).unwrap_err();
        assert_eq!(old.code, RejectCode::Replay);
    }

    #[test]
    fn an_id_seen_before_is_a_retry_only_with_the_same_payload() {
        assert_eq!(retry_of_id::<usize>("d1", None), Ok(None));
        assert_eq!(retry_of_id("d1", Some((7, "d1"))), Ok(Some(7)));
        let other = retry_of_id("d1", Some((7, "d2"))).unwrap_err();
        assert_eq!(other.code, RejectCode::Replay);
    }

    #[test]
    fn retryable_turns_only_what_would_have_been_answered_as_accepted_into_internal() {
        let refused = Verdict::unreadable(None, 1, Rejection::new(RejectCode::Malformed, "x"));
        assert!(matches!(
            refused.retryable().decision,
            Decision::Refuse(Rejection {
                code: RejectCode::Malformed,
                ..
            })
        ));
        let retry = Verdict {
            decision: Decision::RetryInGroup(0),
            ..Verdict::unreadable(None, 1, Rejection::new(RejectCode::Malformed, "x"))
        };
        assert!(matches!(
            retry.retryable().decision,
            Decision::Refuse(Rejection {
                code: RejectCode::Internal,
                ..
            })
        ));
    }

    #[test]
    fn the_stored_array_is_the_records_joined_by_commas_in_brackets() {
        // The lines split on newlines and joined by commas, in brackets.
        for (text, array) in [
            ("", "[]"),
            ("1\n", "[1]"),
            (
                "{\"a\":\"x,y\"}\n[1,2]\n\"\\n\"\n",
                "[{\"a\":\"x,y\"},[1,2],\"\\n\"]",
            ),
            ("{\"é\":\"日本\"}\nnull\n", "[{\"é\":\"日本\"},null]"),
            ("1\n\n2\n", "[1,,2]"),
            ("1\n2", "[1,2]"),
        ] {
            let records = Ndjson {
                text: text.as_bytes().to_vec(),
                records: text.lines().count(),
            };
            assert_eq!(json_array(&records).unwrap(), array, "{text:?}");
        }
        let not_utf8 = Ndjson {
            text: b"\"\xff\"\n".to_vec(),
            records: 1,
        };
        assert_eq!(
            json_array(&not_utf8).unwrap_err().code,
            RejectCode::Internal
        );
    }
}
