//! Refusals that no key vouches for (malformed frames, an unknown or revoked key, a bad signature…) cost the
//! store a bounded amount: per peer, reason and claimed key id, the first one of each window gets its own audit
//! row (a sample, with its message) and the rest are counted and written as one summary row when the window
//! closes. Anyone who can reach the port can send those; refusals of a correctly signed request stay one row
//! each. Refused CURVE handshakes and connections libzmq cut off are counted the same way, with no sample: no
//! request of theirs ever reached zavro.

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

/// What was refused, as its summary row's reason says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A request, refused with this reply code.
    Reply(RejectCode),
    /// A CURVE handshake whose client key is not an active API key's: no request of it reached zavro.
    HandshakeRefused,
    /// A connection libzmq cut off for a message past `--max-message-size` (audited as `malformed`).
    CutOff,
    /// A connection libzmq cut off because its peer let its reply queue fill: it does not read its replies.
    UnreadReplies,
}

impl Reason {
    /// The reason in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reply(code) => code.as_str(),
            Reason::HandshakeRefused => "handshake_refused",
            Reason::CutOff => RejectCode::Malformed.as_str(),
            Reason::UnreadReplies => "unread_replies",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub reason: Reason,
    /// The key id the refused requests named (not verified: that is why they were refused), or the key a
    /// refused handshake's client key belongs to, if any.
    pub key: Option<String>,
    /// The audit row of the window's first refusal; `None` for refusals that have no sample (handshakes,
    /// connections cut off), of which no request reached zavro.
    pub sample_id: Option<i64>,
    /// Refusals counted after the sample (all of them, without one).
    pub count: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// When the first and the last of them arrived (µs).
    pub first_us: i64,
    /// See `first_us`.
    pub last_us: i64,
}

/// A window's own audit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    /// Written by the group in hand, which has not committed yet.
    Pending,
    /// This audit row.
    Row(i64),
    /// None: refused handshakes have no message to keep, only a count.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    opened_us: i64,
    sample: Sample,
    count: u64,
    bytes: u64,
    first_us: i64,
    last_us: i64,
}

impl Window {
    /// False once the window's time is over and its summary may be written: a window past its time whose
    /// summary is not written yet is still counted into (it closes at the next flush, which is never far off).
    fn takes(&self, now_us: i64) -> bool {
        self.opened_us + WINDOW_US > now_us || self.count > 0 || self.sample == Sample::Pending
    }
}

type Key = (String, Reason, Option<String>);

/// The open windows, and what the group in hand changed (undone if that group does not commit).
#[derive(Debug, Default)]
pub struct Tally {
    windows: HashMap<Key, Window>,
    /// Each window the group in hand touched, as it was before (`None`: it did not exist).
    undo: Vec<(Key, Option<Window>)>,
    /// Samples written by the group in hand, waiting for their audit ids.
    samples: Vec<Key>,
    /// Connections libzmq cut off, per reason ([`Reason::CutOff`], [`Reason::UnreadReplies`]), since the last
    /// summary of them.
    cutoffs: HashMap<Reason, Cutoffs>,
}

/// Connections cut off within one window: libzmq says how many, not from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cutoffs {
    count: u64,
    first_us: i64,
    last_us: i64,
}

impl Tally {
    /// The entry to count under: `key` itself, or its reason's shared entry once [`MAX_TRACKED`] are in use.
    fn bounded(&self, key: Key) -> Key {
        if self.windows.len() >= MAX_TRACKED && !self.windows.contains_key(&key) {
            (OTHER_PEERS.to_owned(), key.1, None)
        } else {
            key
        }
    }

    /// Notes one unvouched refusal from `peer`, naming `key`, at `now_us`.
    pub fn note(
        &mut self,
        peer: &str,
        code: RejectCode,
        key: Option<&str>,
        size: u64,
        now_us: i64,
    ) -> Noted {
        let key = self.bounded((peer.to_owned(), Reason::Reply(code), key.map(str::to_owned)));
        if !self.undo.iter().any(|(k, _)| *k == key) {
            self.undo
                .push((key.clone(), self.windows.get(&key).cloned()));
        }
        match self.windows.get_mut(&key) {
            Some(window) if window.takes(now_us) => {
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
                        sample: Sample::Pending,
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

    /// Counts `count` CURVE handshakes from `peer` refused at `at_us`, whose client key is `key`'s if it is an
    /// API key's at all. They have no sample row: the summary counts them all. Not part of any group.
    pub fn note_handshakes(&mut self, peer: &str, key: Option<&str>, count: u64, at_us: i64) {
        let key = self.bounded((
            peer.to_owned(),
            Reason::HandshakeRefused,
            key.map(str::to_owned),
        ));
        match self.windows.get_mut(&key) {
            Some(window) if window.takes(at_us) => {
                if window.count == 0 {
                    window.first_us = at_us;
                }
                window.count += count;
                window.last_us = window.last_us.max(at_us);
            }
            _ => {
                self.windows.insert(
                    key,
                    Window {
                        opened_us: at_us,
                        sample: Sample::Never,
                        count,
                        bytes: 0,
                        first_us: at_us,
                        last_us: at_us,
                    },
                );
            }
        }
    }

    /// The group in hand committed: its samples have these audit ids, in the order they were noted.
    pub fn committed(&mut self, sample_ids: &[i64]) {
        for (key, id) in self.samples.drain(..).zip(sample_ids) {
            if let Some(window) = self.windows.get_mut(&key) {
                window.sample = Sample::Row(*id);
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

    /// Counts `count` connections libzmq cut off for `reason` ([`Reason::CutOff`] or [`Reason::UnreadReplies`]),
    /// seen at `now_us`.
    pub fn note_cutoffs(&mut self, reason: Reason, count: u64, now_us: i64) {
        let cutoffs = self.cutoffs.entry(reason).or_insert(Cutoffs {
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
        self.windows.retain(|(peer, reason, key), window| {
            let open = !everything && window.opened_us + WINDOW_US > now_us;
            let sample_id = match window.sample {
                Sample::Pending => return true,
                Sample::Row(id) => Some(id),
                Sample::Never => None,
            };
            if open {
                return true;
            }
            if window.count > 0 {
                summaries.push(Summary {
                    peer: peer.clone(),
                    reason: *reason,
                    key: key.clone(),
                    sample_id,
                    count: window.count,
                    bytes: window.bytes,
                    first_us: window.first_us,
                    last_us: window.last_us,
                });
            }
            false
        });
        self.cutoffs.retain(|&reason, cutoffs| {
            if !everything && cutoffs.first_us + WINDOW_US > now_us {
                return true;
            }
            summaries.push(Summary {
                peer: "-".to_owned(),
                reason,
                key: None,
                sample_id: None,
                count: cutoffs.count,
                bytes: 0,
                first_us: cutoffs.first_us,
                last_us: cutoffs.last_us,
            });
            false
        });
        summaries.sort_by_key(|s| (s.first_us, s.reason.as_str()));
        summaries
    }

    /// Puts back summaries [`Tally::close`] returned that could not be written, to be closed again later.
    pub fn restore(&mut self, summaries: Vec<Summary>) {
        for s in summaries {
            let sample = match (s.reason, s.sample_id) {
                (Reason::CutOff | Reason::UnreadReplies, _) => {
                    self.note_cutoffs(s.reason, s.count, s.last_us);
                    continue;
                }
                (_, Some(id)) => Sample::Row(id),
                (_, None) => Sample::Never,
            };
            self.windows.insert(
                (s.peer, s.reason, s.key),
                Window {
                    opened_us: s.first_us - WINDOW_US,
                    sample,
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
                reason: Reason::Reply(RejectCode::Malformed),
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
        assert!(tally.windows.contains_key(&(
            OTHER_PEERS.into(),
            Reason::Reply(RejectCode::UnknownKey),
            None
        )));
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
        tally.note_cutoffs(Reason::CutOff, 2, 0);
        tally.note_cutoffs(Reason::CutOff, 3, 5 * S);
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

    #[test]
    fn connections_cut_off_for_unread_replies_are_counted_apart_from_oversized_messages() {
        let mut tally = Tally::default();
        tally.note_cutoffs(Reason::CutOff, 2, 0);
        tally.note_cutoffs(Reason::UnreadReplies, 1, S);
        tally.note_cutoffs(Reason::UnreadReplies, 4, 2 * S);
        assert!(
            tally.close(9 * S, false).is_empty(),
            "the windows are still open"
        );
        let oversized = tally.close(10 * S, false);
        assert_eq!(oversized.len(), 1, "{oversized:?}");
        assert_eq!(
            (oversized[0].reason, oversized[0].count),
            (Reason::CutOff, 2)
        );
        let unread = tally.close(11 * S, false);
        assert_eq!(unread.len(), 1, "{unread:?}");
        assert_eq!(
            (unread[0].reason, unread[0].count),
            (Reason::UnreadReplies, 5)
        );
        assert_eq!(unread[0].reason.as_str(), "unread_replies");
        assert_eq!((unread[0].first_us, unread[0].last_us), (S, 2 * S));
        tally.restore(unread);
        let again = tally.close(0, true);
        assert_eq!(
            (again[0].reason, again[0].count),
            (Reason::UnreadReplies, 5),
            "a summary not written is kept under its reason"
        );
    }

    #[test]
    fn refused_handshakes_are_counted_per_peer_and_key_with_no_sample() {
        let mut tally = Tally::default();
        tally.note_handshakes("10.0.0.1", None, 1, 0);
        tally.note_handshakes("10.0.0.1", None, 2, 3 * S);
        tally.note_handshakes("10.0.0.1", Some("ZKREVOKED"), 1, S);
        tally.note_handshakes("10.0.0.2", None, 1, 2 * S);
        assert!(
            tally.close(9 * S, false).is_empty(),
            "the windows are still open"
        );
        let summaries = tally.close(11 * S, false);
        let seen: Vec<_> = summaries
            .iter()
            .map(|s| {
                (
                    s.peer.as_str(),
                    s.reason,
                    s.key.as_deref(),
                    s.sample_id,
                    s.count,
                    s.first_us,
                    s.last_us,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "10.0.0.1",
                    Reason::HandshakeRefused,
                    None,
                    None,
                    3,
                    0,
                    3 * S
                ),
                (
                    "10.0.0.1",
                    Reason::HandshakeRefused,
                    Some("ZKREVOKED"),
                    None,
                    1,
                    S,
                    S
                ),
            ],
            "10.0.0.2's window opened later"
        );
        assert_eq!(summaries[0].reason.as_str(), "handshake_refused");
        tally.restore(summaries);
        let again = tally.close(0, true);
        assert_eq!(
            again.iter().map(|s| s.count).collect::<Vec<_>>(),
            [3, 1, 1],
            "summaries not written are kept, and everything closes at the end"
        );
        assert!(tally.close(0, true).is_empty(), "once each");
    }

    #[test]
    fn refused_handshakes_share_the_bound_with_refused_requests() {
        let mut tally = Tally::default();
        for i in 0..MAX_TRACKED {
            tally.note(&format!("peer-{i}"), RejectCode::Malformed, None, 1, 0);
        }
        for i in 0..100 {
            tally.note_handshakes(&format!("other-{i}"), Some("ZK1"), 1, 0);
        }
        assert_eq!(tally.windows.len(), MAX_TRACKED + 1);
        tally.committed(&(0..MAX_TRACKED as i64).collect::<Vec<_>>());
        let handshakes: Vec<_> = tally
            .close(0, true)
            .into_iter()
            .filter(|s| s.reason == Reason::HandshakeRefused)
            .collect();
        assert_eq!(handshakes.len(), 1);
        assert_eq!(
            (handshakes[0].peer.as_str(), handshakes[0].key.as_deref()),
            (OTHER_PEERS, None)
        );
        assert_eq!(handshakes[0].count, 100);
    }
}
