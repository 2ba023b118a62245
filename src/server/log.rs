//! The server's log: one line per event, to stderr or any writer a test gives it, as plain text for people or
//! (`serve --log-format json`) as one JSON object per line for log shippers. Rejections are rate-limited per
//! peer, so a flood of bad requests cannot flood the log; every one of them is still audited in the store.
//!
//! Both formats carry the same text: everything that came from the wire is escaped ([`untrusted::escape`]) and
//! bounded as the hostile-peer checks left it, so a JSON value holds exactly what the text line, the reply and
//! the audit row say. The JSON fields and the events are listed in README.md ("Logs").

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt::Arguments,
    io::Write,
    time::{Duration, Instant},
};

use serde_json::{Map, Value};

use crate::{timestamp, untrusted};

/// How long one rate-limit window lasts.
const WINDOW: Duration = Duration::from_secs(10);

/// Rejection lines printed per peer per window; the rest are counted and summarised.
const LINES_PER_WINDOW: u32 = 5;

/// Peers tracked at once; beyond this, peers share one window (a flood from many addresses stays bounded).
const MAX_PEERS: usize = 10_000;

/// The key under which peers beyond [`MAX_PEERS`] share a window.
const OVERFLOW_PEER: &str = "(other peers)";

/// Longest a short JSON field (key, peer, code, endpoint, …) may be, in characters after escaping. Nothing the
/// server logs comes near it (key ids and nonces are at most 64 characters, peers are addresses); it holds
/// should that ever change.
const MAX_FIELD_CHARS: usize = 256;

/// Longest a JSON `message` may be, in characters after escaping. A refusal's message is already cut to 240
/// characters where it is made ([`crate::protocol::MAX_MESSAGE_CHARS`]); this bounds the rest (store errors).
const MAX_MESSAGE_CHARS: usize = 4096;

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One line of text per event, as people read it.
    #[default]
    Text,
    /// One JSON object per line, with the fields of [`Fields`].
    Json,
}

/// How serious an event is: the `level` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The server doing its work.
    Info,
    /// A request refused, or something an operator may want to look at; the server goes on.
    Warn,
    /// Something failed: the store, the handshake check, or the server itself.
    Error,
}

impl Level {
    /// The word in the `level` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// What a log line is about: the `event` field, a fixed vocabulary (README.md, "Logs").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The socket is bound and the server serves: `endpoint`, `transport`, `server_key` (CURVE), `name`.
    Listening,
    /// `serve --metrics` listens for scrapes and probes: `endpoint` (its `/metrics` URL).
    Metrics,
    /// A request's records were stored: `audit_id`, `key`, `peer`, `records`.
    Accepted,
    /// A retry of a stored request, answered as accepted without storing again: `audit_id`, `key`, `peer`,
    /// `duplicate_of`.
    Duplicate,
    /// A request was refused: `audit_id`, `key`, `peer`, `code`, `message`.
    Refused,
    /// Refusals counted in one audit row rather than one row each: `audit_id`, `key`, `peer`, `code`, `count`,
    /// `window_secs`, `message`.
    RefusedSummary,
    /// `refused` lines of one peer held back by the log's rate limit (all are in the audit trail): `peer`,
    /// `count`, `window_secs`.
    Suppressed,
    /// Another server stored a nonce of the group meanwhile; the group is checked again: `requests`.
    GroupRetried,
    /// The store could not be read or written; requests are refused as `internal` meanwhile: `message`.
    StoreError,
    /// The store answers again after a `store_error` of the handshake check, or of the readiness probe of
    /// `--metrics`: `message`.
    StoreRecovered,
    /// The handshake check stopped; the server stops too: `message`.
    HandshakeCheckStopped,
    /// Something at start-up the operator should know; the server goes on: `message`.
    Warning,
    /// The server stops taking requests (a signal, or the error in `message`); `accepted` and `rejected` count
    /// what this run answered.
    Stopping,
    /// `serve` exits with this error (`message`) and a non-zero exit code (`exit_code`).
    Fatal,
}

impl Event {
    /// The word in the `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Listening => "listening",
            Event::Metrics => "metrics",
            Event::Accepted => "accepted",
            Event::Duplicate => "duplicate",
            Event::Refused => "refused",
            Event::RefusedSummary => "refused_summary",
            Event::Suppressed => "suppressed",
            Event::GroupRetried => "group_retried",
            Event::StoreError => "store_error",
            Event::StoreRecovered => "store_recovered",
            Event::HandshakeCheckStopped => "handshake_check_stopped",
            Event::Warning => "warning",
            Event::Stopping => "stopping",
            Event::Fatal => "fatal",
        }
    }

    /// Every event, for the test that README.md lists them all.
    pub const ALL: [Event; 14] = [
        Event::Listening,
        Event::Metrics,
        Event::Accepted,
        Event::Duplicate,
        Event::Refused,
        Event::RefusedSummary,
        Event::Suppressed,
        Event::GroupRetried,
        Event::StoreError,
        Event::StoreRecovered,
        Event::HandshakeCheckStopped,
        Event::Warning,
        Event::Stopping,
        Event::Fatal,
    ];

    /// The `level` of this event.
    pub fn level(self) -> Level {
        match self {
            Event::Listening
            | Event::Metrics
            | Event::Accepted
            | Event::Duplicate
            | Event::GroupRetried
            | Event::StoreRecovered
            | Event::Stopping => Level::Info,
            Event::Refused | Event::RefusedSummary | Event::Suppressed | Event::Warning => {
                Level::Warn
            }
            Event::StoreError | Event::HandshakeCheckStopped | Event::Fatal => Level::Error,
        }
    }
}

/// The fields of a JSON line besides `time`, `level` and `event`; those left `None` are left out. Written in
/// this order, `message` last.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields<'a> {
    /// The audit row that records the request.
    pub audit_id: Option<i64>,
    /// The request's key id.
    pub key: Option<&'a str>,
    /// The peer's address.
    pub peer: Option<&'a str>,
    /// The refusal's reply code (`bad_signature`, …).
    pub code: Option<&'a str>,
    /// Records stored.
    pub records: Option<u64>,
    /// The audit row of the stored request a duplicate repeats.
    pub duplicate_of: Option<i64>,
    /// How many refusals, or log lines, a summary stands for.
    pub count: Option<u64>,
    /// The length of the window a summary covers, in seconds.
    pub window_secs: Option<u64>,
    /// Requests in a group.
    pub requests: Option<u64>,
    /// The endpoint bound.
    pub endpoint: Option<&'a str>,
    /// `curve` or `plaintext`.
    pub transport: Option<&'a str>,
    /// The server's CURVE public key (Z85), which clients pin.
    pub server_key: Option<&'a str>,
    /// The server's name (`--name`).
    pub name: Option<&'a str>,
    /// Requests accepted in this run.
    pub accepted: Option<u64>,
    /// Requests refused in this run.
    pub rejected: Option<u64>,
    /// The process's exit code.
    pub exit_code: Option<u8>,
    /// What happened, in words: a refusal's message, an error.
    pub message: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Only a `message`.
    pub fn message(message: &'a str) -> Fields<'a> {
        Fields {
            message: Some(message),
            ..Fields::default()
        }
    }

    /// This line as one JSON object: `time`, `level`, `event`, then the fields given, `message` last.
    fn to_json(self, event: Event, now_us: i64) -> String {
        let mut object = Map::new();
        object.insert("time".into(), timestamp::format_rfc3339(now_us).into());
        object.insert("level".into(), event.level().as_str().into());
        object.insert("event".into(), event.as_str().into());
        let text =
            |object: &mut Map<String, Value>, name: &str, value: Option<&str>, max: usize| {
                if let Some(value) = value {
                    object.insert(name.into(), safe(value, max).into_owned().into());
                }
            };
        let number = |object: &mut Map<String, Value>, name: &str, value: Option<i64>| {
            if let Some(value) = value {
                object.insert(name.into(), value.into());
            }
        };
        let count = |object: &mut Map<String, Value>, name: &str, value: Option<u64>| {
            if let Some(value) = value {
                object.insert(name.into(), value.into());
            }
        };
        number(&mut object, "audit_id", self.audit_id);
        text(&mut object, "key", self.key, MAX_FIELD_CHARS);
        text(&mut object, "peer", self.peer, MAX_FIELD_CHARS);
        text(&mut object, "code", self.code, MAX_FIELD_CHARS);
        count(&mut object, "records", self.records);
        number(&mut object, "duplicate_of", self.duplicate_of);
        count(&mut object, "count", self.count);
        count(&mut object, "window_secs", self.window_secs);
        count(&mut object, "requests", self.requests);
        text(&mut object, "endpoint", self.endpoint, MAX_FIELD_CHARS);
        text(&mut object, "transport", self.transport, MAX_FIELD_CHARS);
        text(&mut object, "server_key", self.server_key, MAX_FIELD_CHARS);
        text(&mut object, "name", self.name, MAX_FIELD_CHARS);
        count(&mut object, "accepted", self.accepted);
        count(&mut object, "rejected", self.rejected);
        count(&mut object, "exit_code", self.exit_code.map(u64::from));
        text(&mut object, "message", self.message, MAX_MESSAGE_CHARS);
        Value::Object(object).to_string()
    }
}

/// `text` as the log may show it: escaped and at most `max_chars` characters; borrowed when already so.
fn safe(text: &str, max_chars: usize) -> Cow<'_, str> {
    // Bytes bound characters from above, so a short printable text is taken as it is without counting.
    if text.len() <= max_chars && untrusted::is_printable(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(untrusted::bounded(text, max_chars))
    }
}

/// The server's log: lines in one [`Format`], rejections limited per peer.
pub struct Log {
    out: Box<dyn Write + Send>,
    format: Format,
    windows: HashMap<String, Window>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("format", &self.format)
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
    /// A log written to stderr in `format`.
    pub fn stderr(format: Format) -> Log {
        Log::with_format(std::io::stderr(), format)
    }

    /// A text log written to `out`, which should be unbuffered: each line is written with one call, as it
    /// happens.
    pub fn to(out: impl Write + Send + 'static) -> Log {
        Log::with_format(out, Format::Text)
    }

    /// A log in `format` written to `out` (unbuffered, as for [`Log::to`]).
    pub fn with_format(out: impl Write + Send + 'static, format: Format) -> Log {
        Log {
            out: Box::new(out),
            format,
            windows: HashMap::new(),
        }
    }

    /// The format lines are written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes a line unconditionally: `text` in the text format, `event` and `fields` in JSON.
    pub fn event(&mut self, event: Event, fields: Fields, text: Arguments) {
        match self.format {
            Format::Text => write_text(&mut self.out, text),
            Format::Json => write_json(&mut self.out, event, fields),
        }
    }

    /// Writes a line in the JSON format only: an event the text log has never had a line for (so the text
    /// lines stay as they were).
    pub fn json_only(&mut self, event: Event, fields: Fields) {
        if self.format == Format::Json {
            write_json(&mut self.out, event, fields);
        }
    }

    /// Writes a rejection line unless its peer (`fields.peer`, `-` if none) already used its lines for the
    /// current window.
    pub fn rejection(&mut self, event: Event, fields: Fields, text: Arguments) {
        let now = Instant::now();
        let peer = fields.peer.unwrap_or("-");
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
            self.event(event, fields, text);
        } else {
            window.suppressed += 1;
        }
    }

    /// Closes windows older than [`WINDOW`], writing how many lines each one held back.
    pub fn roll_windows(&mut self) {
        let now = Instant::now();
        let (out, format) = (&mut self.out, self.format);
        self.windows.retain(|peer, window| {
            if now.duration_since(window.started) < WINDOW {
                return true;
            }
            if window.suppressed > 0 {
                match format {
                    Format::Text => write_text(
                        out,
                        format_args!(
                            "suppressed {} more rejection lines from peer={peer} in {} s (all are in the audit \
                             trail)",
                            window.suppressed,
                            WINDOW.as_secs()
                        ),
                    ),
                    Format::Json => write_json(
                        out,
                        Event::Suppressed,
                        Fields {
                            peer: Some(peer),
                            count: Some(window.suppressed),
                            window_secs: Some(WINDOW.as_secs()),
                            ..Fields::default()
                        },
                    ),
                }
            }
            false
        });
    }

    /// How many rejection lines are being held back right now (for tests).
    pub fn suppressed(&self) -> u64 {
        self.windows.values().map(|w| w.suppressed).sum()
    }
}

/// Writes one text line in a single write: stderr is unbuffered, and `eprintln!` would make one system call per
/// formatted piece (nine for an "accepted" line), which showed in lockstep latency.
fn write_text(out: &mut dyn Write, line: Arguments) {
    // Every part of a line should already be safe; escaping the whole line as well keeps "one event, one line"
    // true whatever a future message quotes.
    let mut text = untrusted::escape(&line.to_string()).into_owned();
    text.push('\n');
    // A closed or full log must not stop the server; the audit trail is the record.
    let _ = out.write_all(text.as_bytes());
}

/// Writes one JSON line in a single write, stamped now.
fn write_json(out: &mut dyn Write, event: Event, fields: Fields) {
    let mut text = fields.to_json(event, timestamp::now_micros());
    text.push('\n');
    let _ = out.write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::Captured;

    #[test]
    fn a_flood_from_one_peer_is_cut_to_a_few_lines_but_other_peers_still_log() {
        let mut log = Log::to(std::io::sink());
        let from = |peer| Fields {
            peer: Some(peer),
            ..Fields::default()
        };
        for i in 0..100 {
            log.rejection(
                Event::Refused,
                from("10.0.0.1"),
                format_args!("rejected #{i}"),
            );
        }
        assert_eq!(log.suppressed(), 100 - u64::from(LINES_PER_WINDOW));
        log.rejection(Event::Refused, from("10.0.0.2"), format_args!("rejected"));
        assert_eq!(log.windows["10.0.0.2"].printed, 1);
    }

    #[test]
    fn a_json_line_is_one_object_with_exact_values_and_nothing_raw_from_the_wire() {
        let captured = Captured::default();
        let mut log = Log::with_format(captured.clone(), Format::Json);
        let hostile = "bad\nline\u{1b}[2J\u{202e}\"quoted\" \\ end";
        log.event(
            Event::Refused,
            Fields {
                audit_id: Some(7),
                key: Some("ZK0123456789ABCDEF"),
                peer: Some("127.0.0.1"),
                code: Some("bad_signature"),
                message: Some(hostile),
                ..Fields::default()
            },
            format_args!("unused in JSON"),
        );
        let long = "x".repeat(MAX_FIELD_CHARS * 4);
        log.json_only(
            Event::Warning,
            Fields {
                peer: Some(&long),
                ..Fields::default()
            },
        );
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(!lines[0].contains(['\u{1b}', '\u{202e}']), "{:?}", lines[0]);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        let time = line["time"].as_str().unwrap();
        assert!(
            timestamp::parse_rfc3339(time).is_ok() && time.ends_with('Z'),
            "{time}"
        );
        assert_eq!(line["level"], "warn");
        assert_eq!(line["event"], "refused");
        assert_eq!(line["audit_id"], 7);
        assert_eq!(line["key"], "ZK0123456789ABCDEF");
        assert_eq!(line["peer"], "127.0.0.1");
        assert_eq!(line["code"], "bad_signature");
        assert_eq!(line["message"], untrusted::escape(hostile).as_ref());
        let names: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            [
                "time", "level", "event", "audit_id", "key", "peer", "code", "message"
            ]
        );
        let cut: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(
            cut["peer"].as_str().unwrap().chars().count(),
            MAX_FIELD_CHARS
        );
    }

    #[test]
    fn every_event_is_documented_in_the_readme_with_its_level() {
        let readme = include_str!("../../README.md");
        for event in Event::ALL {
            let row = format!("| `{}` | {} |", event.as_str(), event.level().as_str());
            assert!(
                readme.contains(&row),
                "README.md (\"Logs\") lacks the row {row}"
            );
        }
    }

    #[test]
    fn the_rate_limit_summary_is_a_json_event_too() {
        let captured = Captured::default();
        let mut log = Log::with_format(captured.clone(), Format::Json);
        let from = Fields {
            peer: Some("10.0.0.1"),
            ..Fields::default()
        };
        for _ in 0..LINES_PER_WINDOW + 3 {
            log.rejection(Event::Refused, from, format_args!("unused"));
        }
        for window in log.windows.values_mut() {
            window.started -= WINDOW;
        }
        log.roll_windows();
        let lines = captured.lines();
        assert_eq!(lines.len(), LINES_PER_WINDOW as usize + 1, "{lines:?}");
        let summary: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(summary["event"], "suppressed");
        assert_eq!(summary["peer"], "10.0.0.1");
        assert_eq!(summary["count"], 3);
        assert_eq!(summary["window_secs"], WINDOW.as_secs());
    }
}
