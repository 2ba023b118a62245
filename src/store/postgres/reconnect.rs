//! Riding out a database that goes away: a connection found broken is replaced at the next use, but after a
//! failed attempt the next one waits a back-off, so that while the database is down a server answers each group
//! at once (`internal`, retryable) instead of waiting a connect timeout every time.

use std::time::{Duration, Instant};

use super::{PgStore, connect};
use crate::store::StoreError;

/// The pause after the first failed attempt to reconnect; doubled after each failure in a row.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// When the next attempt to replace a broken connection may be made.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    /// No attempt before this (`None`: at once).
    next_attempt: Option<Instant>,
    /// The pause after the next failure.
    pause: Option<Duration>,
    /// Why the last attempt failed, for the errors in between.
    last_failure: String,
}

impl Backoff {
    /// Notes a failed attempt at `now`.
    fn failed(&mut self, now: Instant, why: String) {
        let pause = self.pause.unwrap_or(FIRST_PAUSE);
        self.next_attempt = Some(now + pause);
        self.pause = Some((pause * 2).min(MAX_PAUSE));
        self.last_failure = why;
    }
}

impl PgStore {
    /// Replaces a connection that broke (the database restarted, a network cut it) with a new one; forgets
    /// what belonged to the old one (prepared statements, cached schema ids). While the database cannot be
    /// reached, fails at once until the back-off has passed.
    pub fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if !self.client.is_closed() {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(next) = self.backoff.next_attempt.filter(|next| *next > now) {
            return Err(StoreError::PgDown {
                url: self.url.to_string(),
                reason: format!(
                    "{}; trying again in {} ms",
                    self.backoff.last_failure,
                    (next - now).as_millis()
                ),
            });
        }
        match connect::connect_client(&self.url) {
            Ok(client) => {
                self.client = client;
                self.statements.clear();
                self.schema_ids.clear();
                self.backoff = Backoff::default();
                Ok(())
            }
            Err(e) => {
                let why = match &e {
                    StoreError::PgConnect { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                self.backoff.failed(now, why);
                Err(e)
            }
        }
    }

    /// True while the connection is known to be broken (until [`PgStore::ensure_connected`] replaces it).
    pub fn is_disconnected(&self) -> bool {
        self.client.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_its_cap() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let mut pauses = Vec::new();
        for _ in 0..7 {
            backoff.failed(start, "down".into());
            pauses.push(backoff.next_attempt.unwrap() - start);
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.last_failure, "down");
    }
}
