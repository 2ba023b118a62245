//! What `serve --metrics ADDRESS` exposes: the server's counters, gauges and histograms in the Prometheus
//! (OpenMetrics) text format on `/metrics`, and `/healthz` and `/readyz`, on one HTTP listener of its own thread
//! ([`http`]).
//!
//! The server loop updates [`Metrics`] with relaxed atomic operations only, and the HTTP thread only reads them:
//! a scrape never holds anything the loop waits for, and never touches the store (the loop refreshes the store's
//! size itself, on its housekeeping schedule). Labels are bounded: a reply code from the fixed set, the build's
//! version; never a key id or a peer address, which anyone who can reach the port could multiply at will.

mod connections;
mod http;
mod readiness;
mod types;

use std::time::Duration;

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::{Registry, Unit},
};

pub use connections::ConnectionWatch;
pub use http::{Endpoint, MAX_SCRAPES, MetricsError};
pub use readiness::Readiness;
use types::{Histogram, InfoGauge, LabelledCounters};

use crate::protocol::{RejectCode, Reply};

/// Every refusal code, in the order of [`code_slot`] (PROTOCOL.md, "Reply codes").
const REJECT_CODES: [RejectCode; 13] = [
    RejectCode::Malformed,
    RejectCode::UnsupportedVersion,
    RejectCode::UnknownKey,
    RejectCode::RevokedKey,
    RejectCode::ExpiredKey,
    RejectCode::BadSignature,
    RejectCode::KeyMismatch,
    RejectCode::ClockSkew,
    RejectCode::Replay,
    RejectCode::BadPayload,
    RejectCode::UnsupportedSchema,
    RejectCode::SchemaMismatch,
    RejectCode::Internal,
];

/// The `code` label of an accepted request (a recognised retry included).
const ACCEPTED: &str = "accepted";

/// A refusal code's place in [`REJECT_CODES`]; a new code fails to compile here until it is given one.
const fn code_slot(code: RejectCode) -> usize {
    match code {
        RejectCode::Malformed => 0,
        RejectCode::UnsupportedVersion => 1,
        RejectCode::UnknownKey => 2,
        RejectCode::RevokedKey => 3,
        RejectCode::ExpiredKey => 4,
        RejectCode::BadSignature => 5,
        RejectCode::KeyMismatch => 6,
        RejectCode::ClockSkew => 7,
        RejectCode::Replay => 8,
        RejectCode::BadPayload => 9,
        RejectCode::UnsupportedSchema => 10,
        RejectCode::SchemaMismatch => 11,
        RejectCode::Internal => 12,
    }
}

/// Upper bounds of the latency histograms, in nanoseconds: 100 µs to 10 s, about three per decade.
const LATENCY_BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Upper bounds of the group size histogram, in requests: powers of two up to the largest group (256).
const GROUP_BOUNDS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Handles to the server's metrics, cheap to clone: each is an atomic shared with the registry the HTTP thread
/// encodes.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `accepted`, then each refusal code in [`REJECT_CODES`] order.
    requests: Vec<Counter>,
    duplicates: Counter,
    records: Counter,
    accepted_bytes: Counter,
    group_requests: Histogram,
    commit_seconds: Histogram,
    request_seconds: Histogram,
    open_connections: Gauge,
    refused_handshakes: Counter,
    cut_off_connections: Counter,
    store_bytes: Gauge,
    audit_last_id: Gauge,
    readiness: Readiness,
}

impl Metrics {
    /// The metrics, and the registry that renders them (for the HTTP thread).
    pub fn new() -> (Metrics, Registry) {
        let mut registry = Registry::with_prefix("zavro");
        let codes: Vec<&'static str> = std::iter::once(ACCEPTED)
            .chain(REJECT_CODES.iter().map(|code| code.as_str()))
            .collect();
        let requests = LabelledCounters::new("code", &codes);
        let metrics = Metrics {
            requests: requests.counters(),
            duplicates: Counter::default(),
            records: Counter::default(),
            accepted_bytes: Counter::default(),
            group_requests: Histogram::new(&GROUP_BOUNDS, 1.0),
            commit_seconds: Histogram::new(&LATENCY_BOUNDS_NS, 1e-9),
            request_seconds: Histogram::new(&LATENCY_BOUNDS_NS, 1e-9),
            open_connections: Gauge::default(),
            refused_handshakes: Counter::default(),
            cut_off_connections: Counter::default(),
            store_bytes: Gauge::default(),
            audit_last_id: Gauge::default(),
            readiness: Readiness::new(),
        };
        registry.register(
            "requests",
            "Requests answered, by reply code: `accepted` (a recognised retry of a stored request included) or \
             the refusal's code (PROTOCOL.md, \"Reply codes\")",
            requests,
        );
        registry.register(
            "duplicate_requests",
            "Accepted requests that were retries of a request already stored: nothing new was stored",
            metrics.duplicates.clone(),
        );
        registry.register(
            "accepted_records",
            "Records stored (retries of stored requests not counted again)",
            metrics.records.clone(),
        );
        registry.register_with_unit(
            "accepted_request",
            "Size of the requests whose records were stored, as received (all frames)",
            Unit::Bytes,
            metrics.accepted_bytes.clone(),
        );
        registry.register(
            "group_requests",
            "Requests per group: what the server took off the socket together and committed in one transaction",
            metrics.group_requests.clone(),
        );
        registry.register_with_unit(
            "commit",
            "Time to write a group's rows into the store and commit them durably, per successful commit",
            Unit::Seconds,
            metrics.commit_seconds.clone(),
        );
        registry.register_with_unit(
            "request",
            "Time from taking a request off the socket until its reply is sent, its group committed and its \
             records written out",
            Unit::Seconds,
            metrics.request_seconds.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now (TCP or IPC; over CURVE, those still in their handshake included)",
            metrics.open_connections.clone(),
        );
        registry.register(
            "refused_handshakes",
            "CURVE handshakes refused because the client key is not an active API key's",
            metrics.refused_handshakes.clone(),
        );
        registry.register(
            "cut_off_connections",
            "Connections cut off, unanswered, for a message past --max-message-size or for not reading their replies",
            metrics.cut_off_connections.clone(),
        );
        registry.register_with_unit(
            "store",
            "Size of the store on disk: the SQLite file and its WAL, or the PostgreSQL database; refreshed every \
             minute",
            Unit::Bytes,
            metrics.store_bytes.clone(),
        );
        registry.register(
            "audit_last_id",
            "Id of the newest audit row this server wrote (0 before its first)",
            metrics.audit_last_id.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; the label is the version of zavro serving",
            InfoGauge::new("version", env!("CARGO_PKG_VERSION")),
        );
        (metrics, registry)
    }

    /// Counts one answered request: its reply, its size as received, and how long it waited for the reply.
    pub fn answered(&self, reply: &Reply, size: u64, waited: Duration, audit_id: Option<i64>) {
        let slot = match reply {
            Reply::Accepted {
                records, duplicate, ..
            } => {
                if *duplicate {
                    self.duplicates.inc();
                } else {
                    self.records.inc_by(*records);
                    self.accepted_bytes.inc_by(size);
                }
                0
            }
            Reply::Rejected { code, .. } => 1 + code_slot(*code),
        };
        self.requests[slot].inc();
        self.request_seconds.observe(nanoseconds(waited));
        if let Some(id) = audit_id {
            self.audit_row(id);
        }
    }

    /// Counts one group of `requests` taken off the socket together.
    pub fn group(&self, requests: usize) {
        self.group_requests
            .observe(u64::try_from(requests).unwrap_or(u64::MAX));
    }

    /// Counts one successful commit that took `took`.
    pub fn committed(&self, took: Duration) {
        self.commit_seconds.observe(nanoseconds(took));
    }

    /// Notes an audit row this server wrote.
    pub fn audit_row(&self, id: i64) {
        self.audit_last_id
            .inner()
            .fetch_max(id, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts CURVE handshakes the ZAP handler refused.
    pub fn refused_handshakes(&self, count: u64) {
        self.refused_handshakes.inc_by(count);
    }

    /// Counts connections libzmq cut off for an oversized message.
    pub fn cut_off(&self, count: u64) {
        self.cut_off_connections.inc_by(count);
    }

    /// Records the store's size on disk.
    pub fn store_size(&self, bytes: u64) {
        self.store_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// What `/readyz` answers from.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The open-connections gauge, for the socket monitor's thread.
    pub fn open_connections(&self) -> Gauge {
        self.open_connections.clone()
    }
}

/// A duration in whole nanoseconds (saturating: 584 years).
fn nanoseconds(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_codes_are_listed_once_each_in_slot_order() {
        for (index, code) in REJECT_CODES.iter().enumerate() {
            assert_eq!(code_slot(*code), index, "{code:?}");
        }
    }

    #[test]
    fn an_answered_request_counts_under_its_code_with_its_records_and_bytes() {
        let (metrics, registry) = Metrics::new();
        let accepted = Reply::Accepted {
            audit_id: 7,
            records: 3,
            duplicate: false,
        };
        metrics.answered(&accepted, 100, Duration::from_millis(2), Some(7));
        let retry = Reply::Accepted {
            audit_id: 7,
            records: 3,
            duplicate: true,
        };
        metrics.answered(&retry, 100, Duration::from_millis(2), Some(8));
        let refused = Reply::Rejected {
            code: RejectCode::ClockSkew,
            message: String::new(),
            server_time: None,
        };
        metrics.answered(&refused, 50, Duration::from_millis(1), Some(5));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "zavro_requests_total{code=\"accepted\"} 2\n",
            "zavro_requests_total{code=\"clock_skew\"} 1\n",
            "zavro_requests_total{code=\"internal\"} 0\n",
            "zavro_duplicate_requests_total 1\n",
            "zavro_accepted_records_total 3\n",
            "zavro_accepted_request_bytes_total 100\n",
            "zavro_request_seconds_count 3\n",
            "zavro_audit_last_id 8\n",
            "zavro_build_info{version=\"",
        ] {
            assert!(text.contains(line), "no {line:?} in {text}");
        }
    }
}
