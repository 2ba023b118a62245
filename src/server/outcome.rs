//! What the loop does for one request once its group is settled: the reply to send, the records to write out,
//! the line to log. Built in one place, from the verdict and what the store made of it.

use super::{
    check::{self, Decision, Verdict},
    commit::{Settled, Written},
    log::{Event, Fields, Log},
};
use crate::{
    avro::Ndjson,
    protocol::{RejectCode, Rejection, Reply, ReplyFrame},
};

/// Everything the loop does for one request.
#[derive(Debug)]
pub struct Outcome {
    /// The reply, with the nonce of the request it answers.
    pub reply: ReplyFrame,
    /// The audit row that records the request; `None` when the store could not record even a refusal.
    pub audit_id: Option<i64>,
    /// The newly stored records as JSON lines, to write out before the reply is sent.
    pub records: Option<Ndjson>,
    /// What to log once the reply is sent; `None` when there is no audit row to name.
    pub line: Option<LogLine>,
}

/// A log line about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    /// Its records were stored.
    Accepted {
        /// Its audit row.
        id: i64,
        /// Its key id.
        key: String,
        /// Its peer.
        peer: String,
        /// How many records.
        records: u64,
    },
    /// A retry of a stored request.
    Duplicate {
        /// Its audit row.
        id: i64,
        /// Its key id.
        key: String,
        /// Its peer.
        peer: String,
        /// The stored request's audit row.
        of: i64,
    },
    /// Refused.
    Rejected {
        /// Its audit row.
        id: i64,
        /// Its key id, or `-`.
        key: String,
        /// Its peer, or `-`.
        peer: String,
        /// Why.
        code: RejectCode,
        /// The refusal's message.
        message: String,
    },
}

/// The outcome of one request: `written` is what its group's commit made of it, `None` when the store could
/// not record it (then the verdict is a refusal, see [`Verdict::retryable`]). With the `secret` of the request's
/// key, the reply is signed with it (PROTOCOL.md, "Signed replies").
pub fn outcome(
    verdict: Verdict,
    written: Option<Written>,
    now_us: i64,
    secret: Option<&[u8]>,
) -> Outcome {
    let Verdict {
        nonce,
        key,
        peer,
        decision,
        ..
    } = verdict;
    let (audit_id, settled, fresh) = match (written, decision) {
        (Some(w), Decision::Store(fresh)) => (w.audit_id, w.settled, Some(fresh)),
        (Some(w), _) => (w.audit_id, w.settled, None),
        (None, Decision::Refuse(rejection)) => (None, Settled::Refused(rejection), None),
        (None, _) => (
            None,
            Settled::Refused(check::internal(
                "the server could not store the request; retry",
            )),
            None,
        ),
    };
    let key = key.unwrap_or_else(|| "-".to_owned());
    let peer = peer.unwrap_or_else(|| "-".to_owned());
    let (reply, records, line) = match settled {
        Settled::Stored { records } => (
            Reply::Accepted {
                audit_id: audit_id.unwrap_or_default(),
                records,
                duplicate: false,
            },
            fresh.map(|fresh| fresh.records),
            audit_id.map(|id| LogLine::Accepted {
                id,
                key,
                peer,
                records,
            }),
        ),
        Settled::Duplicate { of, records } => (
            Reply::Accepted {
                audit_id: of,
                records,
                duplicate: true,
            },
            None,
            audit_id.map(|id| LogLine::Duplicate { id, key, peer, of }),
        ),
        Settled::Refused(rejection) => {
            let line = audit_id.map(|id| LogLine::Rejected {
                id,
                key,
                peer,
                code: rejection.code,
                message: rejection.message.clone(),
            });
            (reply_for(rejection, now_us), None, line)
        }
    };
    let mut reply = ReplyFrame {
        nonce,
        reply,
        signature: None,
    };
    if let Some(secret) = secret {
        reply.sign(secret);
    }
    Outcome {
        reply,
        audit_id,
        records,
        line,
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

impl LogLine {
    /// Writes the line to the log; refusals are rate-limited per peer there.
    pub fn print(self, log: &mut Log) {
        match self {
            LogLine::Accepted {
                id,
                key,
                peer,
                records,
            } => log.event(
                Event::Accepted,
                Fields {
                    audit_id: Some(id),
                    key: Some(&key),
                    peer: Some(&peer),
                    records: Some(records),
                    ..Fields::default()
                },
                format_args!("accepted #{id} key={key} peer={peer} records={records}"),
            ),
            LogLine::Duplicate { id, key, peer, of } => log.event(
                Event::Duplicate,
                Fields {
                    audit_id: Some(id),
                    key: Some(&key),
                    peer: Some(&peer),
                    duplicate_of: Some(of),
                    ..Fields::default()
                },
                format_args!(
                    "duplicate #{id} key={key} peer={peer}: retry of #{of}; already stored"
                ),
            ),
            LogLine::Rejected {
                id,
                key,
                peer,
                code,
                message,
            } => log.rejection(
                Event::Refused,
                Fields {
                    audit_id: Some(id),
                    key: Some(&key),
                    peer: Some(&peer),
                    code: Some(code.as_str()),
                    message: Some(&message),
                    ..Fields::default()
                },
                format_args!("rejected #{id} {code} key={key} peer={peer}: {message}"),
            ),
        }
    }
}
