//! One commit of a group: every verdict's audit row (and, for a request to store, its payload and nonce) written
//! into one group transaction, made durable by one commit. Nothing is acknowledged before that.

use super::{
    Transport,
    check::{Decision, Verdict},
    tally::{self, Noted, Reason, Summary, Tally},
};
use crate::{
    protocol::{RejectCode, Rejection},
    store::{AuditEntry, Committed, Nonce, RequestGroup, RequestId, Status, StoreError},
    timestamp,
};

/// What every row of a group shares: when it is written, how its requests reached the server, and which
/// server wrote it.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// The group's time (µs since the epoch).
    pub now_us: i64,
    /// How its requests arrived.
    pub transport: Transport,
    /// The server's name (`serve --name`).
    pub server: &'a str,
}

/// What became of one verdict in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The audit row that records the request; `None` for an unvouched refusal counted into its window's
    /// summary row.
    pub audit_id: Option<i64>,
    /// How it was settled.
    pub settled: Settled,
}

/// How a request was settled once its group was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Its records are stored, under its own audit row.
    Stored {
        /// How many records.
        records: u64,
    },
    /// It repeats a stored request: nothing new was stored.
    Duplicate {
        /// The audit row of the stored request.
        of: i64,
        /// How many records that request carried.
        records: u64,
    },
    /// Refused.
    Refused(Rejection),
}

/// Writes every verdict's rows into `group` and commits it: one [`Written`] per verdict, in order, once durable.
/// Unvouched refusals go through `tally`, which keeps its changes only if the group commits. On error nothing
/// of the group is kept.
pub fn commit<G: RequestGroup>(
    group: G,
    verdicts: &[Verdict],
    tally: &mut Tally,
    stamp: Stamp,
) -> Result<Vec<Written>, StoreError> {
    let result = write_all(group, verdicts, tally, stamp);
    match &result {
        Ok(written) => {
            let samples: Vec<i64> = verdicts
                .iter()
                .zip(written)
                .filter(|(verdict, _)| countable(verdict).is_some())
                .filter_map(|(_, written)| written.audit_id)
                .collect();
            tally.committed(&samples);
        }
        Err(_) => tally.rolled_back(),
    }
    result
}

fn write_all<G: RequestGroup>(
    mut group: G,
    verdicts: &[Verdict],
    tally: &mut Tally,
    stamp: Stamp,
) -> Result<Vec<Written>, StoreError> {
    let mut written = Vec::with_capacity(verdicts.len());
    for verdict in verdicts {
        if let Some(rejection) = countable(verdict) {
            let peer = verdict.peer.as_deref().unwrap_or("-");
            let key = verdict.key.as_deref();
            if tally.note(peer, rejection.code, key, verdict.size, stamp.now_us) == Noted::Counted {
                written.push(Written {
                    audit_id: None,
                    settled: Settled::Refused(rejection.clone()),
                });
                continue;
            }
        }
        let settled = settle(&mut group, verdict, &written, stamp)?;
        written.push(settled);
    }
    group.commit()?;
    Ok(written)
}

/// A refusal that no key vouches for, which the tally may count instead of writing.
fn countable(verdict: &Verdict) -> Option<&Rejection> {
    match &verdict.decision {
        Decision::Refuse(rejection) if tally::unvouched(rejection.code) => Some(rejection),
        _ => None,
    }
}

/// Writes the summary rows of closed tally windows in one group, as refusals of requests that came by
/// `transport`, written by the server named `server`; on error nothing is kept.
pub fn summaries<G: RequestGroup>(
    mut group: G,
    summaries: &[Summary],
    transport: Transport,
    server: &str,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(summaries.len());
    for summary in summaries {
        let (first, last) = (
            timestamp::format_rfc3339(summary.first_us),
            timestamp::format_rfc3339(summary.last_us),
        );
        let detail = match (summary.reason, summary.sample_id) {
            (Reason::CutOff, _) => format!(
                "{} connections cut off for a message past --max-message-size between {first} and {last} \
                 (libzmq names no peer)",
                summary.count
            ),
            (Reason::UnreadReplies, _) => format!(
                "{} connections cut off between {first} and {last} for not reading their replies: {} replies \
                 were queued for each, unread (libzmq names no peer)",
                summary.count,
                crate::server::REPLY_QUEUE_PER_PEER,
            ),
            (Reason::HandshakeRefused, _) => format!(
                "{} CURVE handshakes refused from this peer between {first} and {last}: its client key is not \
                 an active API key's{}",
                summary.count,
                match &summary.key {
                    Some(key) => format!(" (it is key {key}'s, which is revoked or expired)"),
                    None => String::new(),
                }
            ),
            (Reason::Reply(code), Some(sample)) => format!(
                "{} more {code} refusals from this peer between {first} and {last}; the first of the window is #{sample}",
                summary.count,
            ),
            (Reason::Reply(code), None) => format!(
                "{} {code} refusals from this peer between {first} and {last}",
                summary.count,
            ),
        };
        ids.push(group.append(&AuditEntry {
            time_us: summary.last_us,
            action: "send",
            status: Status::Rejected,
            reason: Some(summary.reason.as_str()),
            detail: Some(&detail),
            key_id: summary.key.as_deref(),
            peer: Some(&summary.peer),
            records: 0,
            size: summary.bytes,
            schema: None,
            requests: summary.count,
            transport: Some(transport.as_str()),
            server: Some(server),
        })?);
    }
    group.commit()?;
    Ok(ids)
}

/// Writes one verdict's rows; `earlier` holds how the group's earlier requests were settled.
fn settle<G: RequestGroup>(
    group: &mut G,
    verdict: &Verdict,
    earlier: &[Written],
    stamp: Stamp,
) -> Result<Written, StoreError> {
    match &verdict.decision {
        Decision::Store(fresh) => {
            let records = fresh.records.records as u64;
            let entry = AuditEntry {
                records,
                ..entry(verdict, Status::Accepted, stamp)
            };
            let nonce = Nonce {
                nonce: verdict.nonce.as_deref().unwrap_or_default(),
                timestamp: fresh.timestamp,
                signature: &fresh.signature,
                request_id: fresh.request_id.as_deref().map(|id| RequestId {
                    id,
                    payload_digest: &fresh.payload_digest,
                }),
            };
            match group.append_accepted(&entry, &nonce, &fresh.json)? {
                Committed::Stored(audit_id) => Ok(Written {
                    audit_id: Some(audit_id),
                    settled: Settled::Stored { records },
                }),
                // Only a store shared with a writer outside this group's lock can get here.
                Committed::Replay => refuse(
                    group,
                    verdict,
                    Rejection::new(
                        RejectCode::Replay,
                        "nonce or request id already used with this key",
                    ),
                    stamp,
                ),
            }
        }
        Decision::Retry(seen) => duplicate(group, verdict, seen.audit_id, seen.records, stamp),
        Decision::RetryInGroup(index) => match earlier.get(*index) {
            Some(Written {
                audit_id: Some(audit_id),
                settled: Settled::Stored { records },
            }) => duplicate(group, verdict, *audit_id, *records, stamp),
            Some(Written {
                settled: Settled::Refused(rejection),
                ..
            }) => refuse(group, verdict, rejection.clone(), stamp),
            // The checks point a retry only at an earlier request to store.
            Some(_) | None => refuse(
                group,
                verdict,
                Rejection::new(
                    RejectCode::Internal,
                    "the server lost track of an earlier request of this group; retry",
                ),
                stamp,
            ),
        },
        Decision::Refuse(rejection) => refuse(group, verdict, rejection.clone(), stamp),
    }
}

/// Writes the audit row of a refusal.
fn refuse<G: RequestGroup>(
    group: &mut G,
    verdict: &Verdict,
    rejection: Rejection,
    stamp: Stamp,
) -> Result<Written, StoreError> {
    let audit_id = group.append(&AuditEntry {
        reason: Some(rejection.code.as_str()),
        detail: Some(&rejection.message),
        ..entry(verdict, Status::Rejected, stamp)
    })?;
    Ok(Written {
        audit_id: Some(audit_id),
        settled: Settled::Refused(rejection),
    })
}

/// Writes the audit row of a recognised retry of the stored request `of`; it names no schema (`of` does).
fn duplicate<G: RequestGroup>(
    group: &mut G,
    verdict: &Verdict,
    of: i64,
    records: u64,
    stamp: Stamp,
) -> Result<Written, StoreError> {
    let detail = format!("retry of #{of}; already stored");
    let audit_id = group.append(&AuditEntry {
        reason: Some("duplicate"),
        detail: Some(&detail),
        schema: None,
        ..entry(verdict, Status::Accepted, stamp)
    })?;
    Ok(Written {
        audit_id: Some(audit_id),
        settled: Settled::Duplicate { of, records },
    })
}

/// The audit entry of a `send` action with no reason, detail or records yet.
fn entry<'a>(verdict: &'a Verdict, status: Status, stamp: Stamp<'a>) -> AuditEntry<'a> {
    AuditEntry {
        time_us: stamp.now_us,
        action: "send",
        status,
        reason: None,
        detail: None,
        key_id: verdict.key.as_deref(),
        peer: verdict.peer.as_deref(),
        records: 0,
        size: verdict.size,
        schema: verdict.schema.as_deref(),
        requests: 1,
        transport: Some(stamp.transport.as_str()),
        server: Some(stamp.server),
    }
}
