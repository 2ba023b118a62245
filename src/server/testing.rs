//! Fixtures for the server's unit tests: a store with a key, signed requests as they arrive, a log to read.

use std::{
    io::Write,
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use apache_avro::Codec;

use super::{Arrival, Log, Settings};
use crate::{avro::BatchEncoder, protocol::Request, store::Store, timestamp};

/// The key every fixture signs with.
pub const KEY: &str = "ZK0123456789ABCDEF";

/// Its secret.
pub const SECRET: &str = "a-secret-of-enough-length-0123456789";

/// Held by every test that cuts a connection off or runs a server loop, for as long as it does: libzmq's cut-off
/// counts are the whole process's, and a loop writes every cut-off made while it runs, so one test's cut-off
/// would otherwise land in another's counts or audit trail (and move its audit ids).
static CUT_OFF_COUNTS: Mutex<()> = Mutex::new(());

/// Takes [`CUT_OFF_COUNTS`]: a test that failed holding it left nothing the next one needs.
pub fn cut_off_counts_alone() -> MutexGuard<'static, ()> {
    CUT_OFF_COUNTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A store on disk holding [`KEY`], and a server's default settings.
pub fn store_with_key(dir: &Path) -> (Store, Settings) {
    let mut store = Store::open(&dir.join("zavro.db")).unwrap();
    store.add_key(KEY, SECRET, None, 1).unwrap();
    let settings = Settings {
        max_skew_secs: 300,
        reader_schemas: Vec::new(),
        transport: super::Transport::Plaintext,
        name: "test-server".into(),
        cutoffs_before_bind: super::CutoffCounts::now(),
    };
    (store, settings)
}

/// An Avro container file of these records with zavro's JSON schema.
pub fn payload(records: &[serde_json::Value]) -> Vec<u8> {
    let mut encoder = BatchEncoder::new(Codec::Null);
    for (number, record) in records.iter().enumerate() {
        encoder.push(record, number + 1).unwrap();
    }
    encoder.finish().unwrap()
}

/// A request signed by [`KEY`] now, as the server receives it from 127.0.0.1.
pub fn signed(nonce: &str, payload: Vec<u8>) -> Arrival {
    signed_at(timestamp::now_seconds(), nonce, payload)
}

/// A request signed by [`KEY`] with this timestamp.
pub fn signed_at(timestamp: i64, nonce: &str, payload: Vec<u8>) -> Arrival {
    let request = Request::sign(KEY, SECRET.as_bytes(), timestamp, nonce, payload);
    arrival(request.to_frames().to_vec())
}

/// A request signed by [`KEY`] with this timestamp, nonce and request id.
pub fn signed_with_id(timestamp: i64, nonce: &str, id: &str, payload: Vec<u8>) -> Arrival {
    let request =
        Request::sign_with_id(KEY, SECRET.as_bytes(), timestamp, nonce, Some(id), payload);
    arrival(request.to_frames().to_vec())
}

/// These body frames as they arrive from 127.0.0.1.
pub fn arrival<F: Into<super::request::Frame>>(frames: Vec<F>) -> Arrival {
    Arrival::new(frames, Some("127.0.0.1".into()))
}

/// A log whose lines a test can read.
pub fn captured_log() -> (Log, Captured) {
    let captured = Captured::default();
    (Log::to(captured.clone()), captured)
}

/// What a [`captured_log`] was given.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The bytes written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
