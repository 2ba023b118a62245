//! One commit of a group: every verdict's audit row (and, for a request to store, its payload and nonce) written
//! into one group transaction, made durable by one commit. Nothing is acknowledged before that.

use super::check::{Decision, Verdict};
use crate::{
    protocol::{RejectCode, Rejection},
    store::{AuditEntry, Committed, Nonce, RequestGroup, Status, StoreError},
};

/// What became of one verdict in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The audit row that records the request.
    pub audit_id: i64,
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
/// On error nothing of the group is kept.
pub fn commit<G: RequestGroup>(
    mut group: G,
    verdicts: &[Verdict],
    now_us: i64,
) -> Result<Vec<Written>, StoreError> {
    let mut written = Vec::with_capacity(verdicts.len());
    for verdict in verdicts {
        let settled = settle(&mut group, verdict, &written, now_us)?;
        written.push(settled);
    }
    group.commit()?;
    Ok(written)
}

/// Writes one verdict's rows; `earlier` holds how the group's earlier requests were settled.
fn settle<G: RequestGroup>(
    group: &mut G,
    verdict: &Verdict,
    earlier: &[Written],
    now_us: i64,
) -> Result<Written, StoreError> {
    match &verdict.decision {
        Decision::Store(fresh) => {
            let records = fresh.records.records as u64;
            let entry = AuditEntry {
                records,
                ..entry(verdict, Status::Accepted, now_us)
            };
            let nonce = Nonce {
                nonce: verdict.nonce.as_deref().unwrap_or_default(),
                timestamp: fresh.timestamp,
                signature: &fresh.signature,
            };
            match group.append_accepted(&entry, &nonce, &fresh.json)? {
                Committed::Stored(audit_id) => Ok(Written {
                    audit_id,
                    settled: Settled::Stored { records },
                }),
                // Only a store shared with a writer outside this group's lock can get here.
                Committed::Replay => refuse(
                    group,
                    verdict,
                    Rejection::new(RejectCode::Replay, "nonce already used with this key"),
                    now_us,
                ),
            }
        }
        Decision::Retry(seen) => duplicate(group, verdict, seen.audit_id, seen.records, now_us),
        Decision::RetryInGroup(index) => match earlier.get(*index) {
            Some(Written {
                audit_id,
                settled: Settled::Stored { records },
            }) => duplicate(group, verdict, *audit_id, *records, now_us),
            Some(Written {
                settled: Settled::Refused(rejection),
                ..
            }) => refuse(group, verdict, rejection.clone(), now_us),
            // The checks point a retry only at an earlier request to store.
            Some(_) | None => refuse(
                group,
                verdict,
                Rejection::new(
                    RejectCode::Internal,
                    "the server lost track of an earlier request of this group; retry",
                ),
                now_us,
            ),
        },
        Decision::Refuse(rejection) => refuse(group, verdict, rejection.clone(), now_us),
    }
}

/// Writes the audit row of a refusal.
fn refuse<G: RequestGroup>(
    group: &mut G,
    verdict: &Verdict,
    rejection: Rejection,
    now_us: i64,
) -> Result<Written, StoreError> {
    let audit_id = group.append(&AuditEntry {
        reason: Some(rejection.code.as_str()),
        detail: Some(&rejection.message),
        ..entry(verdict, Status::Rejected, now_us)
    })?;
    Ok(Written {
        audit_id,
        settled: Settled::Refused(rejection),
    })
}

/// Writes the audit row of a recognised retry of the stored request `of`; it names no schema (`of` does).
fn duplicate<G: RequestGroup>(
    group: &mut G,
    verdict: &Verdict,
    of: i64,
    records: u64,
    now_us: i64,
) -> Result<Written, StoreError> {
    let detail = format!("retry of #{of}; already stored");
    let audit_id = group.append(&AuditEntry {
        reason: Some("duplicate"),
        detail: Some(&detail),
        schema: None,
        ..entry(verdict, Status::Accepted, now_us)
    })?;
    Ok(Written {
        audit_id,
        settled: Settled::Duplicate { of, records },
    })
}

/// The audit entry of a `send` action with no reason, detail or records yet.
fn entry(verdict: &Verdict, status: Status, now_us: i64) -> AuditEntry<'_> {
    AuditEntry {
        time_us: now_us,
        action: "send",
        status,
        reason: None,
        detail: None,
        key_id: verdict.key.as_deref(),
        peer: verdict.peer.as_deref(),
        records: 0,
        size: verdict.size,
        schema: verdict.schema.as_deref(),
    }
}
