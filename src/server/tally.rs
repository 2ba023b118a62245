//! Refusals that no key vouches for (malformed frames, an unknown or revoked key, a bad signature…) cost the
//! store a bounded amount: per peer, reason and claimed key id, the first one of each window gets its own audit row (a sample,
//! with its message) and the rest are counted and written as one summary row when the window closes. Anyone who
//! can reach the port can send those; refusals of a correctly signed request stay one row each.

use std::collections::HashMap;

use crate::protocol::RejectCode;

/// How long a window of counted refusals stays open before its summary row is written.
pub const WINDOW_US: i64 = 10_000_000;

/// (peer, reason, key) entries counted at once; beyond this, everything shares one entry per reason, so a flood
/// from many addresses or with many made-up key ids stays bounded in memory and in rows.
const MAX_TRACKED: usize = 10_000;

/// The peer under which refusals beyond [`MAX_TRACKED`] are counted together.
pub const OTHER_PEERS: &str = "(other peers)";

/// The refusal codes that can be reached before a request's signature is verified.
pub fn unvouched(code: RejectCode) -> bool {
    matches!(
        code,
        RejectCode::Malformed
            | RejectCode::UnsupportedVersion
            | RejectCode::UnknownKey
            | RejectCode::RevokedKey
            | RejectCode::ExpiredKey
            | RejectCode::BadSignature
    )
}

/// What to do with one unvouched refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// Write its own row: the first of its window.
    Sample,
    /// Counted into its window's summary; no row now.
    Counted,
}

/// A closed window's summary, to be written as one audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The peer, or [`OTHER_PEERS`].
    pub peer: String,
    /// The reason.
    pub code: RejectCode,
    /// The key id the refused requests named, if any (not verified: that is why they were refused).
    pub key: Option<String>,
    /// The audit row of the window's first refusal; `None` for connections libzmq cut off, of which no request
    /// reached zavro.
    pub sample_id: Option<i64>,
    /// Refusals counted after the sample.
    pub count: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// When the first and the last of them arrived (µs).
    pub first_us: i64,
    /// See `first_us`.
    pub last_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    opened_us: i64,
    /// `None` until the group that wrote the sample commits.
    sample_id: Option<i64>,
    count: u64,
    bytes: u64,
    first_us: i64,
    last_us: i64,
}

type Key = (String, RejectCode, Option<String>);

/// The open windows, and what the group in hand changed (undone if that group does not commit).
#[derive(Debug, Default)]
pub struct Tally {
    windows: HashMap<Key, Window>,
    /// Each window the group in hand touched, as it was before (`None`: it did not exist).
    undo: Vec<(Key, Option<Window>)>,
    /// Samples written by the group in hand, waiting for their audit ids.
    samples: Vec<Key>,
    /// Connections libzmq cut off for a message past `--max-message-size`, since the last summary of them.
    cutoffs: Option<Cutoffs>,
}

/// Connections cut off within one window: libzmq says how many, not from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cutoffs {
    count: u64,
    first_us: i64,
    last_us: i64,
}

impl Tally {
    /// Notes one unvouched refusal from `peer`, naming `key`, at `now_us`.
    pub fn note(
        &mut self,
        peer: &str,
        code: RejectCode,
        key: Option<&str>,
        size: u64,
        now_us: i64,
    ) -> Noted {
        let mut key = (peer.to_owned(), code, key.map(str::to_owned));
        if self.windows.len() >= MAX_TRACKED && !self.windows.contains_key(&key) {
            key = (OTHER_PEERS.to_owned(), code, None);
        }
        if !self.undo.iter().any(|(k, _)| *k == key) {
            self.undo
                .push((key.clone(), self.windows.get(&key).cloned()));
        }
        match self.windows.get_mut(&key) {
            // A window past its time whose summary is not written yet is still counted into: it closes at the
            // next flush, which is never far off.
            Some(window)
                if window.opened_us + WINDOW_US > now_us
                    || window.count > 0
                    || window.sample_id.is_none() =>
            {
                if window.count == 0 {
                    window.first_us = now_us;
                }
                window.count += 1;
                window.bytes += size;
                window.last_us = now_us;
                Noted::Counted
            }
            _ => {
                self.windows.insert(
                    key.clone(),
                    Window {
                        opened_us: now_us,
                        sample_id: None,
                        count: 0,
                        bytes: 0,
                        first_us: now_us,
                        last_us: now_us,
                    },
                );
                self.samples.push(key);
                Noted::Sample
            }
        }
    }

    /// The group in hand committed: its samples have these audit ids, in the order they were noted.
    pub fn committed(&mut self, sample_ids: &[i64]) {
        for (key, id) in self.samples.drain(..).zip(sample_ids) {
            if let Some(window) = self.windows.get_mut(&key) {
                window.sample_id = Some(*id);
            }
        }
        self.undo.clear();
    }

    /// The group in hand was not kept: the windows are as they were before it.
    pub fn rolled_back(&mut self) {
        for (key, before) in self.undo.drain(..).rev() {
            match before {
                Some(window) => self.windows.insert(key, window),
                None => self.windows.remove(&key),
            };
        }
        self.samples.clear();
    }

    /// Counts `count` connections libzmq cut off for a message past the size limit, seen at `now_us`.
    pub fn note_cutoffs(&mut self, count: u64, now_us: i64) {
        let cutoffs = self.cutoffs.get_or_insert(Cutoffs {
            count: 0,
            first_us: now_us,
            last_us: now_us,
        });
        cutoffs.count += count;
        cutoffs.last_us = now_us;
    }

    /// Closes the windows opened `WINDOW_US` or more before `now_us` (all of them with `everything`), returning
    /// the summaries to write for those that counted anything. A summary that is not written must be given
    /// back with [`Tally::restore`].
    pub fn close(&mut self, now_us: i64, everything: bool) -> Vec<Summary> {
        let mut summaries = Vec::new();
        self.windows.retain(|(peer, code, key), window| {
            let open = !everything && window.opened_us + WINDOW_US > now_us;
            if open || window.sample_id.is_none() {
                return true;
            }
            if window.count > 0 {
                summaries.push(Summary {
                    peer: peer.clone(),
                    code: *code,
                    key: key.clone(),
                    sample_id: window.sample_id,
                    count: window.count,
                    bytes: window.bytes,
                    first_us: window.first_us,
                    last_us: window.last_us,
                });
            }
            false
        });
        if let Some(cutoffs) = self
            .cutoffs
            .take_if(|c| everything || c.first_us + WINDOW_US <= now_us)
        {
            summaries.push(Summary {
                peer: "-".to_owned(),
                code: RejectCode::Malformed,
                key: None,
                sample_id: None,
                count: cutoffs.count,
                bytes: 0,
                first_us: cutoffs.first_us,
                last_us: cutoffs.last_us,
            });
        }
        summaries.sort_by_key(|s| s.first_us);
        summaries
    }

    /// Puts back summaries [`Tally::close`] returned that could not be written, to be closed again later.
    pub fn restore(&mut self, summaries: Vec<Summary>) {
        for s in summaries {
            if s.sample_id.is_none() {
                self.note_cutoffs(s.count, s.last_us);
                continue;
            }
            self.windows.insert(
                (s.peer, s.code, s.key),
                Window {
                    opened_us: s.first_us - WINDOW_US,
                    sample_id: s.sample_id,
                    count: s.count,
                    bytes: s.bytes,
                    first_us: s.first_us,
                    last_us: s.last_us,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn the_first_refusal_of_a_window_is_a_sample_and_the_rest_one_summary() {
        let mut tally = Tally::default();
        assert_eq!(
            tally.note("10.0.0.1", RejectCode::Malformed, None, 5, 0),
            Noted::Sample
        );
        assert_eq!(
            tally.note("10.0.0.1", RejectCode::BadSignature, Some("ZK1"), 5, 0),
            Noted::Sample
        );
        for t in 1..=100 {
            assert_eq!(
                tally.note("10.0.0.1", RejectCode::Malformed, None, 7, t),
                Noted::Counted
            );
        }
        tally.committed(&[41, 42]);
        assert!(
            tally.close(5 * S, false).is_empty(),
            "the window is still open"
        );
        let summaries = tally.close(10 * S, false);
        assert_eq!(
            summaries,
            [Summary {
                peer: "10.0.0.1".into(),
                code: RejectCode::Malformed,
                key: None,
                sample_id: Some(41),
                count: 100,
                bytes: 700,
                first_us: 1,
                last_us: 100
            }],
            "a window that counted nothing past its sample writes nothing more"
        );
        assert_eq!(
            tally.note("10.0.0.1", RejectCode::Malformed, None, 5, 10 * S),
            Noted::Sample
        );
    }

    #[test]
    fn a_group_that_does_not_commit_leaves_the_windows_as_they_were() {
        let mut tally = Tally::default();
        tally.note("p", RejectCode::Malformed, None, 1, 0);
        tally.committed(&[1]);
        tally.note("p", RejectCode::Malformed, None, 1, 1);
        tally.note("q", RejectCode::Malformed, None, 1, 1);
        tally.rolled_back();
        assert_eq!(
            tally.note("q", RejectCode::Malformed, None, 1, 2),
            Noted::Sample
        );
        tally.committed(&[2]);
        let summaries = tally.close(0, true);
        assert!(
            summaries.is_empty(),
            "p's rolled-back count is gone: {summaries:?}"
        );
    }

    #[test]
    fn many_peers_share_one_entry_per_reason_beyond_the_limit() {
        let mut tally = Tally::default();
        for i in 0..MAX_TRACKED + 500 {
            tally.note(
                &format!("peer-{i}"),
                RejectCode::UnknownKey,
                Some("ZK1"),
                1,
                0,
            );
        }
        assert_eq!(tally.windows.len(), MAX_TRACKED + 1);
        assert!(
            tally
                .windows
                .contains_key(&(OTHER_PEERS.into(), RejectCode::UnknownKey, None))
        );
    }

    #[test]
    fn only_refusals_reached_before_the_signature_is_verified_are_unvouched() {
        assert!(unvouched(RejectCode::BadSignature) && unvouched(RejectCode::RevokedKey));
        assert!(!unvouched(RejectCode::Replay) && !unvouched(RejectCode::ClockSkew));
        assert!(!unvouched(RejectCode::BadPayload) && !unvouched(RejectCode::Internal));
    }

    #[test]
    fn connections_cut_off_by_libzmq_are_one_summary_per_window_with_no_sample() {
        let mut tally = Tally::default();
        tally.note_cutoffs(2, 0);
        tally.note_cutoffs(3, 5 * S);
        assert!(
            tally.close(9 * S, false).is_empty(),
            "the window is still open"
        );
        let summaries = tally.close(10 * S, false);
        assert_eq!(summaries.len(), 1);
        assert_eq!((summaries[0].count, summaries[0].sample_id), (5, None));
        assert_eq!((summaries[0].first_us, summaries[0].last_us), (0, 5 * S));
        tally.restore(summaries);
        assert_eq!(
            tally.close(0, true)[0].count,
            5,
            "a summary not written is kept"
        );
    }
}
