//! The server's human log: one line per event, to stderr or any writer a test gives it. Rejections are
//! rate-limited per peer, so a flood of bad requests cannot flood the log; every one of them is still audited in
//! the store.

use std::{
    collections::HashMap,
    fmt::Arguments,
    io::Write,
    time::{Duration, Instant},
};

use crate::untrusted;

/// How long one rate-limit window lasts.
const WINDOW: Duration = Duration::from_secs(10);

/// Rejection lines printed per peer per window; the rest are counted and summarised.
const LINES_PER_WINDOW: u32 = 5;

/// Peers tracked at once; beyond this, peers share one window (a flood from many addresses stays bounded).
const MAX_PEERS: usize = 10_000;

/// The key under which peers beyond [`MAX_PEERS`] share a window.
const OVERFLOW_PEER: &str = "(other peers)";

/// The server's log: plain lines, rejections limited per peer.
pub struct Log {
    out: Box<dyn Write + Send>,
    windows: HashMap<String, Window>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("windows", &self.windows)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    printed: u32,
    suppressed: u64,
}

impl Log {
    /// A log written to stderr.
    pub fn stderr() -> Log {
        Log::to(std::io::stderr())
    }

    /// A log written to `out`, which should be unbuffered: each line is written with one call, as it happens.
    pub fn to(out: impl Write + Send + 'static) -> Log {
        Log {
            out: Box::new(out),
            windows: HashMap::new(),
        }
    }

    /// Prints a line unconditionally.
    pub fn info(&mut self, line: Arguments) {
        write_line(&mut self.out, line);
    }

    /// Prints a rejection line unless this peer already used its lines for the current window.
    pub fn rejection(&mut self, peer: &str, line: Arguments) {
        let now = Instant::now();
        let key = if self.windows.contains_key(peer) || self.windows.len() < MAX_PEERS {
            peer
        } else {
            OVERFLOW_PEER
        };
        let window = self.windows.entry(key.to_owned()).or_insert(Window {
            started: now,
            printed: 0,
            suppressed: 0,
        });
        if window.printed < LINES_PER_WINDOW {
            window.printed += 1;
            write_line(&mut self.out, line);
        } else {
            window.suppressed += 1;
        }
    }

    /// Closes windows older than [`WINDOW`], printing how many lines each one held back.
    pub fn roll_windows(&mut self) {
        let now = Instant::now();
        let out = &mut self.out;
        self.windows.retain(|peer, window| {
            if now.duration_since(window.started) < WINDOW {
                return true;
            }
            if window.suppressed > 0 {
                write_line(
                    out,
                    format_args!(
                    "suppressed {} more rejection lines from peer={peer} in {} s (all are in the audit trail)",
                    window.suppressed,
                    WINDOW.as_secs()
                ),
                );
            }
            false
        });
    }

    /// How many rejection lines are being held back right now (for tests).
    pub fn suppressed(&self) -> u64 {
        self.windows.values().map(|w| w.suppressed).sum()
    }
}

/// Writes one line in a single write: stderr is unbuffered, and `eprintln!` would make one system call per
/// formatted piece (nine for an "accepted" line), which showed in lockstep latency.
fn write_line(out: &mut dyn Write, line: Arguments) {
    // Every part of a line should already be safe; escaping the whole line as well keeps "one event, one line"
    // true whatever a future message quotes.
    let mut text = untrusted::escape(&line.to_string()).into_owned();
    text.push('\n');
    // A closed or full log must not stop the server; the audit trail is the record.
    let _ = out.write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_peer_is_cut_to_a_few_lines_but_other_peers_still_log() {
        let mut log = Log::to(std::io::sink());
        for i in 0..100 {
            log.rejection("10.0.0.1", format_args!("rejected #{i}"));
        }
        assert_eq!(log.suppressed(), 100 - u64::from(LINES_PER_WINDOW));
        log.rejection("10.0.0.2", format_args!("rejected"));
        assert_eq!(log.windows["10.0.0.2"].printed, 1);
    }
}
