//! `/readyz` and the store-size gauge kept current from the server loop's thread, the only one that touches the
//! store (the HTTP thread only reads what is set here). Every group says whether the store took it; while no
//! group comes, the store is asked at most every [`PROBE_INTERVAL`]: cheaply, without writing, while it
//! answers; with the small durable write `serve` makes at start-up and every minute (recording its nonce window)
//! once it has failed, so that a store that can be read but not written stays not ready.

use std::time::{Duration, Instant};

use super::log::{Event, Fields, Log};
use crate::{metrics::Metrics, store::RequestStore};

/// How long the loop goes without hearing from the store before it asks.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What the loop last heard from the store, and where it reports it.
pub struct StoreWatch {
    metrics: Metrics,
    last_heard: Instant,
    available: bool,
}

impl StoreWatch {
    /// A watch that reports into `metrics`; the store is taken as available (`serve` checked it at start-up).
    pub fn new(metrics: Metrics) -> StoreWatch {
        StoreWatch {
            metrics,
            last_heard: Instant::now(),
            available: true,
        }
    }

    /// Notes what became of a group: the store refused it (its requests were answered `internal`), or took it.
    pub fn group_done(&mut self, refused_by_store: bool, log: &mut Log) {
        self.last_heard = Instant::now();
        let why = refused_by_store.then(|| "it could not take a group".to_owned());
        self.set(why, log);
    }

    /// Asks the store whether it answers, once nothing was heard from it for [`PROBE_INTERVAL`].
    pub fn probe_if_due<S: RequestStore>(
        &mut self,
        store: &mut S,
        max_skew_secs: i64,
        log: &mut Log,
    ) {
        if self.last_heard.elapsed() < PROBE_INTERVAL {
            return;
        }
        let answered = if self.available {
            store.answers()
        } else {
            store
                .still_in_place()
                .and_then(|()| store.widen_nonce_window(max_skew_secs).map(|_| ()))
        };
        self.last_heard = Instant::now();
        self.set(answered.err().map(|e| e.to_string()), log);
    }

    /// Reads the store's size on disk into its gauge; a failure is logged and the gauge keeps its value.
    pub fn refresh_size<S: RequestStore>(&self, store: &mut S, log: &mut Log) {
        match store.size_on_disk() {
            Ok(bytes) => self.metrics.store_size(bytes),
            Err(e) => {
                let message = format!("cannot read the store's size for --metrics: {e}");
                log.event(
                    Event::StoreError,
                    Fields::message(&message),
                    format_args!("{message}"),
                );
            }
        }
    }

    /// Records whether the store is available (`why` not, if not), logging each change.
    fn set(&mut self, why: Option<String>, log: &mut Log) {
        let available = why.is_none();
        if available != self.available {
            let (event, message) = match why {
                Some(why) => (
                    Event::StoreError,
                    format!("not ready (/readyz): the store: {why}"),
                ),
                None => (
                    Event::StoreRecovered,
                    "ready (/readyz): the store answers again".to_owned(),
                ),
            };
            log.event(event, Fields::message(&message), format_args!("{message}"));
        }
        self.available = available;
        self.metrics.readiness().store_available(available);
    }
}
