//! The wire protocol (PROTOCOL.md): request frames, the envelope, the string-to-sign and replies.
//!
//! Pure data and parsing, no sockets: the server and client modules move these frames over ZeroMQ.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{auth, untrusted};

/// The first frame of every request: names the protocol version.
pub const PROTOCOL_VERSION: &str = "zavro/1";

/// The first line of the string-to-sign: names the protocol version and the signing algorithm.
pub const SIGNING_ALGORITHM: &str = "ZAVRO1-HMAC-SHA1";

/// Longest key id or nonce the protocol allows, in bytes.
pub const MAX_TOKEN_LEN: usize = 64;

/// Largest envelope frame the server reads; a real one is under 300 bytes, so anything larger is refused
/// before it is parsed.
pub const MAX_ENVELOPE_LEN: usize = 1024;

/// Longest refusal message, in characters: a message may quote what the peer sent, and never more than this.
pub const MAX_MESSAGE_CHARS: usize = 240;

/// Most bytes a reply frame can hold: a refusal message of [`MAX_MESSAGE_CHARS`] characters of four UTF-8 bytes
/// each (960), a nonce of [`MAX_TOKEN_LEN`], a signature, the longest code and server time, and the JSON around
/// them. What the server queues for a peer that does not read is bounded by this many bytes per reply.
pub const MAX_REPLY_LEN: usize = 1280;

/// Shortest nonce the protocol allows: 16 characters leave room for 64 random bits even in hex.
pub const MIN_NONCE_LEN: usize = 16;

/// Shortest request id the protocol allows, for the same reason as [`MIN_NONCE_LEN`].
pub const MIN_REQUEST_ID_LEN: usize = 16;

/// Who sent a request and how it is signed: the second frame of a request, as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The API key id.
    pub key: String,
    /// When the request was signed, in whole seconds since the Unix epoch (UTC).
    pub timestamp: i64,
    /// A value the client never reuses with this key (16 to 64 characters of `[A-Za-z0-9_-]`).
    pub nonce: String,
    /// The request's stable id (16 to 64 characters of `[A-Za-z0-9_-]`), optional: kept when a spooled request is
    /// signed again with a new timestamp and nonce, so the server stores it once whatever its nonce.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_id"
    )]
    pub id: Option<String>,
    /// `base64(HMAC-SHA1(secret, string-to-sign))`.
    pub signature: String,
}

/// The exact text that is signed, built from the envelope fields and the payload digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringToSign(String);

impl StringToSign {
    /// Builds the string-to-sign: five lines joined by `\n`, without a trailing newline; a sixth, the request id,
    /// only when the request has one, so requests without an id sign exactly as before.
    pub fn new(key: &str, timestamp: i64, nonce: &str, id: Option<&str>, payload: &[u8]) -> Self {
        Self::with_digest(key, timestamp, nonce, id, &payload_digest(payload))
    }

    /// [`StringToSign::new`] from the payload's digest ([`payload_digest`]), for a caller that needs the digest
    /// too and should not hash the payload twice.
    pub fn with_digest(
        key: &str,
        timestamp: i64,
        nonce: &str,
        id: Option<&str>,
        digest: &str,
    ) -> Self {
        StringToSign(match id {
            None => format!("{SIGNING_ALGORITHM}\n{key}\n{timestamp}\n{nonce}\n{digest}"),
            Some(id) => {
                format!("{SIGNING_ALGORITHM}\n{key}\n{timestamp}\n{nonce}\n{digest}\n{id}")
            }
        })
    }

    /// The text itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The lowercase hex SHA-256 of the payload bytes, as it appears in the string-to-sign.
pub fn payload_digest(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

/// A signed request: envelope plus the Avro object container file it covers. The payload is owned (`Vec<u8>`,
/// the default) or borrowed from the frames it arrived in (`&[u8]`, [`Request::view_frames`]), which spares the
/// server a copy of every payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<P = Vec<u8>> {
    /// Key id, timestamp, nonce and signature.
    pub envelope: Envelope,
    /// An Avro object container file holding the records.
    pub payload: P,
}

impl Request {
    /// Signs `payload` with the given credentials, timestamp and nonce.
    pub fn sign(key: &str, secret: &[u8], timestamp: i64, nonce: &str, payload: Vec<u8>) -> Self {
        Request::sign_with_id(key, secret, timestamp, nonce, None, payload)
    }

    /// Signs `payload` with the given credentials, timestamp, nonce and, when given, the request's stable id.
    pub fn sign_with_id(
        key: &str,
        secret: &[u8],
        timestamp: i64,
        nonce: &str,
        id: Option<&str>,
        payload: Vec<u8>,
    ) -> Self {
        let string_to_sign = StringToSign::new(key, timestamp, nonce, id, &payload);
        let signature = auth::sign(secret, string_to_sign.as_str());
        Request {
            envelope: Envelope {
                key: key.to_owned(),
                timestamp,
                nonce: nonce.to_owned(),
                id: id.map(str::to_owned),
                signature,
            },
            payload,
        }
    }

    /// The three frames of the request body (a REQ socket adds the empty delimiter itself).
    pub fn to_frames(&self) -> [Vec<u8>; 3] {
        let envelope = serde_json::to_vec(&self.envelope).expect("an envelope always serializes");
        [
            PROTOCOL_VERSION.as_bytes().to_vec(),
            envelope,
            self.payload.clone(),
        ]
    }

    /// Parses the body frames of a request (route frames already removed).
    pub fn from_frames<F: AsRef<[u8]>>(frames: &[F]) -> Result<Self, Rejection> {
        let request = Request::<&[u8]>::view_frames(frames)?;
        Ok(Request {
            envelope: request.envelope,
            payload: request.payload.to_vec(),
        })
    }
}

impl<P: AsRef<[u8]>> Request<P> {
    /// The string-to-sign this request's signature must match.
    pub fn string_to_sign(&self) -> StringToSign {
        self.string_to_sign_with_digest(&payload_digest(self.payload.as_ref()))
    }

    /// [`Request::string_to_sign`] from the payload's digest, already computed.
    pub fn string_to_sign_with_digest(&self, digest: &str) -> StringToSign {
        let e = &self.envelope;
        StringToSign::with_digest(&e.key, e.timestamp, &e.nonce, e.id.as_deref(), digest)
    }
}

impl<'a> Request<&'a [u8]> {
    /// [`Request::from_frames`], the payload read where it is in its frame instead of copied out.
    pub fn view_frames<F: AsRef<[u8]>>(frames: &'a [F]) -> Result<Self, Rejection> {
        let Some(version) = frames.first().map(AsRef::as_ref) else {
            return Err(Rejection::new(RejectCode::Malformed, "empty request"));
        };
        if version != PROTOCOL_VERSION.as_bytes() {
            return Err(Rejection::new(
                RejectCode::UnsupportedVersion,
                format!(
                    "first frame must be {PROTOCOL_VERSION:?}, got {:?}",
                    String::from_utf8_lossy(&version[..version.len().min(32)])
                ),
            ));
        }
        let [_, envelope, payload] = frames else {
            return Err(Rejection::new(
                RejectCode::Malformed,
                format!("a request has 3 frames, got {}", frames.len()),
            ));
        };
        let (envelope, payload) = (envelope.as_ref(), payload.as_ref());
        if envelope.len() > MAX_ENVELOPE_LEN {
            return Err(Rejection::new(
                RejectCode::Malformed,
                format!(
                    "envelope of {} bytes; at most {MAX_ENVELOPE_LEN}",
                    envelope.len()
                ),
            ));
        }
        let envelope: Envelope = serde_json::from_slice(envelope)
            .map_err(|e| Rejection::new(RejectCode::Malformed, format!("bad envelope: {e}")))?;
        check_token("key", &envelope.key, 1)?;
        check_token("nonce", &envelope.nonce, MIN_NONCE_LEN)?;
        if let Some(id) = &envelope.id {
            check_token("id", id, MIN_REQUEST_ID_LEN)?;
        }
        Ok(Request { envelope, payload })
    }
}

/// The nonce of a request whose envelope is readable JSON with a valid `nonce` field but is refused for another
/// reason (an extra field, a bad key), so the reply can still name the request it answers.
pub fn readable_nonce<F: AsRef<[u8]>>(frames: &[F]) -> Option<String> {
    #[derive(Deserialize)]
    struct NonceOnly {
        nonce: String,
    }
    let envelope = frames
        .get(1)
        .map(AsRef::as_ref)
        .filter(|e| e.len() <= MAX_ENVELOPE_LEN)?;
    let NonceOnly { nonce } = serde_json::from_slice(envelope).ok()?;
    check_token("nonce", &nonce, MIN_NONCE_LEN).ok()?;
    Some(nonce)
}

/// An envelope's `id` when the field is there: a string, never `null` (PROTOCOL.md: an `id` that is not a string
/// makes the request malformed), so `"id": null` cannot pass for a request without an id.
fn present_id<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

/// Key ids and nonces are short ASCII tokens, so they cannot smuggle a newline into the string-to-sign.
fn check_token(what: &str, value: &str, min_len: usize) -> Result<(), Rejection> {
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok_chars && (min_len..=MAX_TOKEN_LEN).contains(&value.len()) {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectCode::Malformed,
            format!("{what} must be {min_len} to {MAX_TOKEN_LEN} characters of [A-Za-z0-9_-]"),
        ))
    }
}

/// True when `value` is acceptable as a request id.
pub fn is_valid_request_id(value: &str) -> bool {
    check_token("id", value, MIN_REQUEST_ID_LEN).is_ok()
}

/// True when `value` is acceptable as a key id.
pub fn is_valid_key_id(value: &str) -> bool {
    check_token("key", value, 1).is_ok()
}

/// Why a request was refused: the stable codes of PROTOCOL.md, "Reply codes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The frames or the envelope do not follow the protocol.
    Malformed,
    /// The first frame names a protocol version this server does not speak.
    UnsupportedVersion,
    /// No key with this id exists.
    UnknownKey,
    /// The key exists but was revoked.
    RevokedKey,
    /// The key exists but its expiry time has passed.
    ExpiredKey,
    /// The signature does not match the string-to-sign under the key's secret.
    BadSignature,
    /// The request names another key than the one its connection authenticated as at the CURVE handshake.
    KeyMismatch,
    /// The timestamp is too far from the server's clock.
    ClockSkew,
    /// This key already used this nonce within the replay window.
    Replay,
    /// The payload is not a readable Avro object container file.
    BadPayload,
    /// The payload's writer schema is not one this server accepts.
    UnsupportedSchema,
    /// The writer schema resolves against none of the server's reader schemas (`serve --schema`).
    SchemaMismatch,
    /// The server failed to store the request; nothing was kept, so it is safe to retry.
    Internal,
}

impl RejectCode {
    /// The code as it appears on the wire and in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed",
            RejectCode::UnsupportedVersion => "unsupported_version",
            RejectCode::UnknownKey => "unknown_key",
            RejectCode::RevokedKey => "revoked_key",
            RejectCode::ExpiredKey => "expired_key",
            RejectCode::BadSignature => "bad_signature",
            RejectCode::KeyMismatch => "key_mismatch",
            RejectCode::ClockSkew => "clock_skew",
            RejectCode::Replay => "replay",
            RejectCode::BadPayload => "bad_payload",
            RejectCode::UnsupportedSchema => "unsupported_schema",
            RejectCode::SchemaMismatch => "schema_mismatch",
            RejectCode::Internal => "internal",
        }
    }

    /// True for a refusal for good that is about this one request's content (`replay`, `bad_payload`,
    /// `unsupported_schema`, `schema_mismatch`): the same key and server take other requests, so a spool can
    /// keep this one aside and deliver the rest.
    pub fn concerns_the_request_alone(self) -> bool {
        // The rest is about every request alike, or is temporary. Key and signature refusals (`unknown_key`,
        // `revoked_key`, `expired_key`, `bad_signature`, `key_mismatch`) are about the credentials: every later
        // request would be refused the same way, so keeping them aside would empty a spool into the side file
        // for one misconfiguration. `malformed` and `unsupported_version` are about how this client speaks to
        // the server (zavro builds every request's frames and envelope alike). `clock_skew` is signed again and
        // `internal` sent again. These are also exactly the refusals the server signs after checking the
        // request's signature (PROTOCOL.md, "Signed replies"), so one cannot be made up on the path.
        matches!(
            self,
            RejectCode::Replay
                | RejectCode::BadPayload
                | RejectCode::UnsupportedSchema
                | RejectCode::SchemaMismatch
        )
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: its stable code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stable, machine-readable reason.
    pub code: RejectCode,
    /// What exactly was wrong.
    pub message: String,
}

impl Rejection {
    /// A rejection with this code and message. The message is made safe here, where every refusal passes: its
    /// control characters escaped and its length cut to [`MAX_MESSAGE_CHARS`], so whatever it quotes of a
    /// request costs the reply, the audit row and the log line a small, fixed amount.
    pub fn new(code: RejectCode, message: impl AsRef<str>) -> Self {
        Rejection {
            code,
            message: untrusted::bounded(message.as_ref(), MAX_MESSAGE_CHARS),
        }
    }
}

/// The server's answer to a request: one frame holding this as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// The records are committed to the store.
    Accepted {
        /// The audit row that records this request.
        audit_id: i64,
        /// How many records the payload held.
        records: u64,
        /// True when this request was a byte-identical retry of one already committed (same nonce and
        /// signature): `audit_id` and `records` are the original's and nothing was stored again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// Nothing was stored.
    Rejected {
        /// The stable reason.
        code: RejectCode,
        /// What exactly was wrong.
        message: String,
        /// The server's clock (Unix seconds), present with `clock_skew`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_time: Option<i64>,
    },
}

impl Reply {
    /// The reply as the bytes of one frame.
    pub fn to_frame(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reply always serializes")
    }

    /// Parses a reply frame.
    pub fn from_frame(frame: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(frame)
    }
}

/// A reply as it travels: the [`Reply`] plus the nonce of the request it answers, so a client with several
/// requests in flight can match replies to requests whatever happens to its connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyFrame {
    /// The nonce of the request answered; absent when the request's envelope could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The answer.
    #[serde(flatten)]
    pub reply: Reply,
    /// `base64(HMAC-SHA1(secret, reply-string-to-sign))` under the secret of the request's key, present when the
    /// request proved to be signed with that key's secret (PROTOCOL.md, "Signed replies").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// First line of a reply's string-to-sign: names what is signed and its version, so that no request
/// string-to-sign can ever equal a reply's.
pub const REPLY_SIGNATURE_LABEL: &str = "zavro-reply-v1";

impl ReplyFrame {
    /// The string a reply's signature covers, one field per line (PROTOCOL.md, "Signed replies"); `None` for a
    /// reply without a nonce, which is never signed.
    pub fn string_to_sign(&self) -> Option<String> {
        let nonce = self.nonce.as_deref()?;
        let lines = match &self.reply {
            Reply::Accepted {
                audit_id,
                records,
                duplicate,
            } => format!("accepted\n{audit_id}\n{records}\n{duplicate}"),
            Reply::Rejected {
                code,
                message,
                server_time,
            } => {
                let server_time = server_time.map(|t| t.to_string()).unwrap_or_default();
                format!("rejected\n{code}\n{server_time}\n{message}")
            }
        };
        Some(format!("{REPLY_SIGNATURE_LABEL}\n{nonce}\n{lines}"))
    }

    /// Signs the reply under `secret` (nothing happens to a reply without a nonce).
    pub fn sign(&mut self, secret: &[u8]) {
        self.signature = self.string_to_sign().map(|text| auth::sign(secret, &text));
    }

    /// True when the reply carries a signature that is right under `secret`.
    pub fn signed_by(&self, secret: &[u8]) -> bool {
        match (self.string_to_sign(), &self.signature) {
            (Some(text), Some(signature)) => auth::verify(secret, &text, signature),
            _ => false,
        }
    }

    /// The reply frame as bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reply always serializes")
    }

    /// Parses a reply frame.
    pub fn from_frame(frame: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(frame)
    }
}

impl From<Rejection> for Reply {
    fn from(r: Rejection) -> Self {
        Reply::Rejected {
            code: r.code,
            message: r.message,
            server_time: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const PROTOCOL_MD: &str = include_str!("../PROTOCOL.md");

    #[test]
    fn the_largest_reply_fits_its_stated_bound() {
        // Four-byte characters survive escaping and JSON as four bytes each, the most any character costs.
        let message = "\u{1F600}".repeat(2 * MAX_MESSAGE_CHARS);
        let mut reply = ReplyFrame {
            nonce: Some("n".repeat(MAX_TOKEN_LEN)),
            reply: Reply::Rejected {
                code: RejectCode::UnsupportedVersion,
                message: Rejection::new(RejectCode::UnsupportedVersion, &message).message,
                server_time: Some(i64::MIN),
            },
            signature: None,
        };
        reply.sign(b"secret");
        let worst = reply.to_frame().len();
        assert!(worst <= MAX_REPLY_LEN, "{worst} bytes");
        // A character JSON escapes (a quote) costs two bytes; control characters six to ten as `\u{…}`, which
        // bounded() counts as that many characters.
        for text in [
            "\"".repeat(1000),
            "\u{7f}".repeat(1000),
            "\u{10FFFF}".repeat(1000),
        ] {
            let frame = ReplyFrame {
                nonce: Some("n".repeat(MAX_TOKEN_LEN)),
                reply: Rejection::new(RejectCode::UnsupportedVersion, &text).into(),
                signature: reply.signature.clone(),
            }
            .to_frame();
            assert!(
                frame.len() <= worst,
                "{} bytes for {:?}",
                frame.len(),
                &text[..4]
            );
        }
    }

    /// The value after `name:` in the worked example's `text` block of PROTOCOL.md.
    fn example_field(name: &str) -> &'static str {
        let section = &PROTOCOL_MD[PROTOCOL_MD
            .find("## Worked example")
            .expect("section exists")..];
        section
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("PROTOCOL.md's worked example has no {name:?} line"))
            .trim()
    }

    /// The body of the fenced block whose info string is `info`.
    fn fenced_block(info: &str) -> String {
        let start = PROTOCOL_MD
            .find(&format!("```{info}\n"))
            .expect("block exists")
            + info.len()
            + 4;
        let len = PROTOCOL_MD[start..].find("\n```").expect("block is closed");
        PROTOCOL_MD[start..start + len].to_owned()
    }

    /// The value after `name:` in the fenced block whose info string is `info`.
    fn block_field(info: &str, name: &str) -> String {
        fenced_block(info)
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("PROTOCOL.md's {info} block has no {name:?} line"))
            .trim()
            .to_owned()
    }

    #[test]
    fn curve_example_in_protocol_md_matches_the_code() {
        let field = |name| block_field("curve-example", name);
        let pair =
            crate::curve::KeyPair::for_client(&field("key"), field("secret").as_bytes()).unwrap();
        assert_eq!(hex::encode(pair.secret()), field("client secret hex"));
        assert_eq!(pair.secret_z85().as_str(), field("client secret z85"));
        assert_eq!(pair.public_z85(), field("client public z85"));
        assert_eq!(
            field("key"),
            example_field("key"),
            "the same key as the request example"
        );
    }

    #[test]
    fn reply_example_in_protocol_md_matches_the_code() {
        let field = |name| block_field("reply-example", name);
        let reply = ReplyFrame::from_frame(field("reply").as_bytes()).unwrap();
        assert_eq!(reply.nonce.as_deref(), Some(example_field("nonce")));
        assert_eq!(
            reply.string_to_sign().unwrap(),
            field("string-to-sign").replace("\\n", "\n")
        );
        assert_eq!(
            reply.signature.as_deref(),
            Some(field("signature").as_str())
        );
        assert!(reply.signed_by(example_field("secret").as_bytes()));
        let mut resigned = reply.clone();
        resigned.sign(example_field("secret").as_bytes());
        assert_eq!(
            resigned.to_frame(),
            field("reply").as_bytes(),
            "the example is what the server sends"
        );
    }

    #[test]
    fn worked_example_in_protocol_md_matches_the_code() {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(fenced_block("base64").trim())
            .unwrap();
        let records = crate::avro::Decoder::new()
            .decode_request(&payload)
            .records
            .unwrap();
        assert_eq!(
            records.lines().collect::<Vec<_>>(),
            [r#"{"indicator":"power","value":5.3}"#]
        );
        assert_eq!(payload_digest(&payload), example_field("payload sha256"));

        let timestamp: i64 = example_field("timestamp").parse().unwrap();
        let request = Request::sign(
            example_field("key"),
            example_field("secret").as_bytes(),
            timestamp,
            example_field("nonce"),
            payload,
        );
        assert_eq!(
            request.string_to_sign().as_str(),
            fenced_block("string-to-sign")
        );
        assert_eq!(request.envelope.signature, example_field("signature"));
        assert!(auth::verify(
            example_field("secret").as_bytes(),
            &fenced_block("string-to-sign"),
            example_field("signature")
        ));
        let envelope = String::from_utf8(request.to_frames()[1].clone()).unwrap();
        assert!(
            PROTOCOL_MD.contains(&envelope),
            "PROTOCOL.md shows the envelope {envelope}"
        );
    }

    #[test]
    fn id_example_in_protocol_md_matches_the_code() {
        let field = |name| block_field("id-example", name);
        let payload = base64::engine::general_purpose::STANDARD
            .decode(fenced_block("base64").trim())
            .unwrap();
        let request = Request::sign_with_id(
            example_field("key"),
            example_field("secret").as_bytes(),
            example_field("timestamp").parse().unwrap(),
            example_field("nonce"),
            Some(&field("id")),
            payload,
        );
        assert_eq!(
            request.string_to_sign().as_str(),
            field("string-to-sign").replace("\\n", "\n")
        );
        assert_eq!(
            request.string_to_sign().as_str(),
            format!("{}\n{}", fenced_block("string-to-sign"), field("id")),
            "the string-to-sign of the example without an id, and one line more"
        );
        let mac = base64::engine::general_purpose::STANDARD
            .decode(&request.envelope.signature)
            .unwrap();
        assert_eq!(hex::encode(mac), field("hmac-sha1 hex"));
        assert_eq!(request.envelope.signature, field("signature"));
        let envelope = String::from_utf8(request.to_frames()[1].clone()).unwrap();
        assert_eq!(envelope, field("envelope"));
        assert_eq!(
            Request::from_frames(&request.to_frames()).unwrap(),
            request,
            "the envelope with an id parses back"
        );
        let without = Request::sign(
            example_field("key"),
            example_field("secret").as_bytes(),
            request.envelope.timestamp,
            example_field("nonce"),
            request.payload.clone(),
        );
        assert_ne!(
            without.envelope.signature, request.envelope.signature,
            "the id is covered by the signature"
        );
    }

    #[test]
    fn an_id_that_is_null_is_malformed_not_taken_for_no_id() {
        let frames = [
            PROTOCOL_VERSION.as_bytes().to_vec(),
            br#"{"key":"k","timestamp":1,"nonce":"0123456789abcdef","signature":"x","id":null}"#
                .to_vec(),
            vec![],
        ];
        assert_eq!(
            Request::from_frames(&frames).map_err(|e| e.code),
            Err(RejectCode::Malformed),
            "PROTOCOL.md: an `id` that is not a string makes the request malformed"
        );
    }

    #[test]
    fn an_id_of_the_wrong_length_or_characters_is_malformed() {
        for id in [
            "short",
            "has space 0123456789",
            "new\nline-0123456789",
            &"x".repeat(65),
        ] {
            let request =
                Request::sign_with_id("ZK1", b"s", 1, "0123456789abcdef", Some(id), vec![]);
            let err = Request::from_frames(&request.to_frames()).unwrap_err();
            assert_eq!(err.code, RejectCode::Malformed, "{id:?}");
            assert!(err.message.starts_with("id must be"), "{}", err.message);
        }
        assert!(is_valid_request_id("0123456789abcdef"));
        let frames = [
            PROTOCOL_VERSION.as_bytes().to_vec(),
            br#"{"key":"k","timestamp":1,"nonce":"0123456789abcdef","signature":"x","id":17}"#
                .to_vec(),
            vec![],
        ];
        assert_eq!(
            Request::from_frames(&frames).unwrap_err().code,
            RejectCode::Malformed,
            "an id that is not a string"
        );
    }

    #[test]
    fn the_worked_examples_data_block_and_sync_marker_are_those_of_its_payload() {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(fenced_block("base64").trim())
            .unwrap();
        let block =
            hex::decode(fenced_block("hex").split_whitespace().collect::<String>()).unwrap();
        let (rest, sync) = payload.split_at(payload.len() - 16);
        assert!(
            rest.ends_with(&block),
            "the file ends with the block, then the sync marker"
        );
        let header = &rest[..rest.len() - block.len()];
        assert_eq!(
            &header[header.len() - 16..],
            sync,
            "the header ends with the same marker"
        );
        let spaced: Vec<String> = sync.iter().map(|b| format!("{b:02x}")).collect();
        assert!(PROTOCOL_MD.contains(&format!("`{}`", spaced.join(" "))));
    }

    #[test]
    fn reject_codes_read_the_same_on_the_wire_and_in_the_audit_trail() {
        for code in [
            RejectCode::Malformed,
            RejectCode::UnsupportedVersion,
            RejectCode::UnknownKey,
            RejectCode::RevokedKey,
            RejectCode::ExpiredKey,
            RejectCode::BadSignature,
            RejectCode::ClockSkew,
            RejectCode::Replay,
            RejectCode::BadPayload,
            RejectCode::UnsupportedSchema,
            RejectCode::SchemaMismatch,
            RejectCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert!(
                PROTOCOL_MD.contains(&format!("| `{code}` |")),
                "PROTOCOL.md documents {code}"
            );
        }
    }

    #[test]
    fn frames_round_trip() {
        let request = Request::sign(
            "ZKEXAMPLE",
            b"secret",
            1_700_000_000,
            "0123456789abcdef",
            vec![1, 2, 3],
        );
        let frames = request.to_frames();
        assert_eq!(Request::from_frames(&frames).unwrap(), request);
    }

    #[test]
    fn wrong_frame_count_and_version_are_rejected_with_their_codes() {
        let request = Request::sign("ZKEXAMPLE", b"secret", 1, "0123456789abcdef", vec![]);
        let [version, envelope, _] = request.to_frames();
        let short = Request::from_frames(&[version.clone(), envelope]).unwrap_err();
        assert_eq!(short.code, RejectCode::Malformed);
        let other = Request::from_frames(&[b"zavro/9".to_vec(), vec![], vec![]]).unwrap_err();
        assert_eq!(other.code, RejectCode::UnsupportedVersion);
        assert_eq!(
            Request::from_frames::<Vec<u8>>(&[]).unwrap_err().code,
            RejectCode::Malformed
        );
    }

    #[test]
    fn newline_in_key_or_short_nonce_is_malformed() {
        for (key, nonce) in [
            ("a\nb", "0123456789abcdef"),
            ("key", "short"),
            ("", "0123456789abcdef"),
        ] {
            let request = Request::sign(key, b"s", 1, nonce, vec![]);
            let err = Request::from_frames(&request.to_frames()).unwrap_err();
            assert_eq!(err.code, RejectCode::Malformed, "{key:?} {nonce:?}");
        }
    }

    #[test]
    fn unknown_envelope_fields_are_malformed() {
        let frames = [
            PROTOCOL_VERSION.as_bytes().to_vec(),
            br#"{"key":"k","timestamp":1,"nonce":"0123456789abcdef","signature":"x","extra":1}"#
                .to_vec(),
            vec![],
        ];
        assert_eq!(
            Request::from_frames(&frames).unwrap_err().code,
            RejectCode::Malformed
        );
    }

    #[test]
    fn replies_use_the_documented_json() {
        let accepted = Reply::Accepted {
            audit_id: 7,
            records: 2,
            duplicate: false,
        };
        assert_eq!(
            String::from_utf8(accepted.to_frame()).unwrap(),
            r#"{"status":"accepted","audit_id":7,"records":2}"#
        );
        let skew = Reply::Rejected {
            code: RejectCode::ClockSkew,
            message: "m".into(),
            server_time: Some(5),
        };
        assert_eq!(
            String::from_utf8(skew.to_frame()).unwrap(),
            r#"{"status":"rejected","code":"clock_skew","message":"m","server_time":5}"#
        );
        assert_eq!(Reply::from_frame(&skew.to_frame()).unwrap(), skew);
    }

    #[test]
    fn reply_frames_carry_the_nonce_beside_the_reply() {
        let frame = ReplyFrame {
            nonce: Some("0123456789abcdef".into()),
            reply: Reply::Accepted {
                audit_id: 7,
                records: 2,
                duplicate: true,
            },
            signature: None,
        };
        let text = String::from_utf8(frame.to_frame()).unwrap();
        assert_eq!(
            text,
            r#"{"nonce":"0123456789abcdef","status":"accepted","audit_id":7,"records":2,"duplicate":true}"#
        );
        assert_eq!(ReplyFrame::from_frame(text.as_bytes()).unwrap(), frame);
        assert_eq!(
            Reply::from_frame(text.as_bytes()).unwrap(),
            frame.reply,
            "old readers ignore the nonce"
        );
    }

    #[test]
    fn a_signed_reply_verifies_and_any_change_breaks_it() {
        let mut frame = ReplyFrame {
            nonce: Some("0123456789abcdef".into()),
            reply: Reply::Accepted {
                audit_id: 7,
                records: 2,
                duplicate: false,
            },
            signature: None,
        };
        assert!(
            !frame.signed_by(b"secret"),
            "an unsigned reply is not signed by anyone"
        );
        frame.sign(b"secret");
        assert!(frame.signed_by(b"secret"));
        assert!(!frame.signed_by(b"other"));
        let parsed = ReplyFrame::from_frame(&frame.to_frame()).unwrap();
        assert!(
            parsed.signed_by(b"secret"),
            "the signature survives the wire"
        );
        assert_eq!(
            Reply::from_frame(&frame.to_frame()).unwrap(),
            frame.reply,
            "old readers ignore the signature"
        );
        let altered = |change: &dyn Fn(&mut ReplyFrame)| {
            let mut copy = frame.clone();
            change(&mut copy);
            copy.signed_by(b"secret")
        };
        assert!(!altered(&|f| f.nonce = Some("0123456789abcdeX".into())));
        assert!(!altered(&|f| f.reply = Reply::Accepted {
            audit_id: 8,
            records: 2,
            duplicate: false
        }));
        assert!(!altered(&|f| f.reply = Reply::Accepted {
            audit_id: 7,
            records: 3,
            duplicate: false
        }));
        assert!(!altered(&|f| f.reply = Reply::Accepted {
            audit_id: 7,
            records: 2,
            duplicate: true
        }));
        let mut rejected = ReplyFrame {
            nonce: Some("0123456789abcdef".into()),
            reply: Reply::Rejected {
                code: RejectCode::ClockSkew,
                message: "m".into(),
                server_time: Some(5),
            },
            signature: None,
        };
        rejected.sign(b"secret");
        assert!(rejected.signed_by(b"secret"));
        rejected.reply = Reply::Rejected {
            code: RejectCode::ClockSkew,
            message: "m".into(),
            server_time: Some(6),
        };
        assert!(!rejected.signed_by(b"secret"));
        let mut anonymous = ReplyFrame {
            nonce: None,
            ..frame.clone()
        };
        anonymous.sign(b"secret");
        assert_eq!(
            anonymous.signature, None,
            "a reply without a nonce is never signed"
        );
    }

    #[test]
    fn a_refused_envelope_still_names_its_nonce_when_the_nonce_itself_is_valid() {
        let frames = |envelope: &str| vec![b"zavro/1".to_vec(), envelope.as_bytes().to_vec()];
        let nonce = "nonce-0123456789abcdef";
        let extra =
            format!(r#"{{"key":"K","timestamp":1,"nonce":"{nonce}","signature":"s","x":1}}"#);
        assert_eq!(readable_nonce(&frames(&extra)).as_deref(), Some(nonce));
        let float_time =
            format!(r#"{{"key":"K","timestamp":1.0,"nonce":"{nonce}","signature":"s"}}"#);
        assert_eq!(readable_nonce(&frames(&float_time)).as_deref(), Some(nonce));
        // A nonce that is not a valid token is never echoed, nor is anything from unreadable JSON.
        assert_eq!(
            readable_nonce(&frames(r#"{"nonce":"bad\nnonce-0123456789"}"#)),
            None
        );
        assert_eq!(readable_nonce(&frames("{")), None);
        assert_eq!(readable_nonce::<Vec<u8>>(&[]), None);
    }

    #[test]
    fn an_oversized_envelope_is_refused_unparsed_and_no_message_grows_with_the_request() {
        let big = format!(r#"{{"{}":1}}"#, "\u{7f}".repeat(MAX_ENVELOPE_LEN));
        let frames = [b"zavro/1".to_vec(), big.into_bytes(), Vec::new()];
        let rejection = Request::from_frames(&frames).unwrap_err();
        assert_eq!(rejection.code, RejectCode::Malformed);
        assert!(
            rejection.message.starts_with("envelope of "),
            "{}",
            rejection.message
        );
        let quoted = Rejection::new(RejectCode::Malformed, "x\n".repeat(10_000));
        assert_eq!(quoted.message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(!quoted.message.contains('\n'));
    }

    #[test]
    fn only_refusals_about_the_request_itself_let_a_spool_keep_it_aside() {
        use RejectCode::*;
        // Every code, so a new one must be placed on one side or the other here.
        let every = [
            Malformed,
            UnsupportedVersion,
            UnknownKey,
            RevokedKey,
            ExpiredKey,
            BadSignature,
            KeyMismatch,
            ClockSkew,
            Replay,
            BadPayload,
            UnsupportedSchema,
            SchemaMismatch,
            Internal,
        ];
        for code in every {
            let exhaustive = match code {
                Malformed | UnsupportedVersion | UnknownKey | RevokedKey | ExpiredKey
                | BadSignature | KeyMismatch | ClockSkew | Internal => false,
                Replay | BadPayload | UnsupportedSchema | SchemaMismatch => true,
            };
            assert_eq!(code.concerns_the_request_alone(), exhaustive, "{code:?}");
        }
    }
}
