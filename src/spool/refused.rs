//! Requests the server refused for good for their own content (`schema_mismatch`, `bad_payload`, …), kept aside
//! in the spool's `refused/` directory so they neither block the spool nor are lost.
//!
//! One file per refused request, `refused/{seq:020}.json` (`seq` its place in the spool), one JSON object:
//!
//! ```text
//! {"seq": 3, "records": 2, "request_id": "9c2d…", "key": "ZK3F…", "code": "schema_mismatch",
//!  "message": "…", "refused_at": "2026-12-01T18:50:02.123456Z",
//!  "envelope": "{\"key\":…}", "payload_base64": "T2JqAQ…"}
//! ```
//!
//! `envelope` is the envelope frame exactly as spooled (a JSON text, as a string) and `payload_base64` the payload
//! frame, an Avro object container file (`jq -r .payload_base64 F | base64 -d > F.avro` gives it to any Avro
//! tool): together the signed request as it was spooled, which [`Kept::request`] rebuilds. The request id stays
//! with it, so putting it back in line (`send --spool DIR --requeue-refused`) can never store it twice.
//!
//! A file is written to a temporary name, `fsync`ed, renamed, and the directory `fsync`ed before the spool counts
//! the request acknowledged; a crash in between leaves the request in the spool, and the copy made again names
//! the same file.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use super::{SpoolError, replace_durably, sync_dir};
use crate::{
    protocol::{PROTOCOL_VERSION, RejectCode, Request},
    timestamp,
};

/// The directory, inside the spool's, that holds the requests kept aside.
pub const DIR: &str = "refused";

/// The file name suffix of kept requests.
const SUFFIX: &str = ".json";

/// A request refused for good, as kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Its place in the spool.
    pub seq: u64,
    /// Records its payload holds.
    pub records: u64,
    /// Its request id (PROTOCOL.md, "Request ids"); every spooled request has one.
    pub request_id: Option<String>,
    /// The API key it was signed with.
    pub key: String,
    /// The server's reply code.
    pub code: RejectCode,
    /// The server's explanation.
    pub message: String,
    /// When the refusal came, RFC 3339 in UTC.
    pub refused_at: String,
    /// The envelope frame as spooled.
    pub envelope: String,
    /// The payload frame, base64.
    pub payload_base64: String,
}

impl Kept {
    /// The record of spooled request `seq`, holding `records` records, refused now with `code` and `message`.
    pub fn new(seq: u64, records: u64, request: &Request, code: RejectCode, message: &str) -> Self {
        let [_, envelope, _] = request.to_frames();
        Kept {
            seq,
            records,
            request_id: request.envelope.id.clone(),
            key: request.envelope.key.clone(),
            code,
            message: message.to_owned(),
            refused_at: timestamp::format_rfc3339(timestamp::now_micros()),
            // The envelope frame is JSON that zavro wrote: UTF-8.
            envelope: String::from_utf8_lossy(&envelope).into_owned(),
            payload_base64: STANDARD.encode(&request.payload),
        }
    }

    /// The signed request as it was spooled.
    pub fn request(&self) -> Result<Request, String> {
        let payload = STANDARD
            .decode(&self.payload_base64)
            .map_err(|e| format!("payload_base64 is not base64: {e}"))?;
        let frames = [
            PROTOCOL_VERSION.as_bytes().to_vec(),
            self.envelope.as_bytes().to_vec(),
            payload,
        ];
        Request::from_frames(&frames).map_err(|e| format!("not a request: {}", e.message))
    }
}

/// The directory of kept requests in the spool `spool_dir`.
pub fn dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join(DIR)
}

/// The file that keeps spooled request `seq`.
pub fn path(spool_dir: &Path, seq: u64) -> PathBuf {
    dir(spool_dir).join(format!("{seq:020}{SUFFIX}"))
}

/// Where `kept` goes: [`path`], unless that holds another request. A spool whose numbering was started again
/// (its pointer removed by hand) can refuse another request under a number already kept, and a kept copy is the
/// only one left of its request: it is never replaced, and the newcomer gets `SEQ-N.json`.
fn free_path(spool_dir: &Path, kept: &Kept) -> Result<PathBuf, SpoolError> {
    let mut candidate = path(spool_dir, kept.seq);
    for n in 1.. {
        let holder = match fs::read(&candidate) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(candidate),
            Err(source) => {
                return Err(SpoolError::Io {
                    path: candidate,
                    source,
                });
            }
            // A file that does not parse is not replaced either.
            Ok(bytes) => parse(spool_dir, &candidate, &bytes).ok(),
        };
        if holder.is_some_and(|holder| holder.request_id == kept.request_id) {
            return Ok(candidate);
        }
        candidate = dir(spool_dir).join(format!("{:020}-{n}{SUFFIX}", kept.seq));
    }
    unreachable!("the names run out only after u64::MAX files")
}

/// Writes `kept` durably and returns its file: the directory created (mode 0700) and its entry in the spool's
/// directory `fsync`ed, the file written to a temporary name, `fsync`ed, renamed over any earlier copy of the same
/// request ([`free_path`]), and the directory `fsync`ed.
pub(super) fn write(spool_dir: &Path, kept: &Kept) -> Result<PathBuf, SpoolError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SpoolError::Io { path, source }
    };
    let refused = dir(spool_dir);
    if !refused.is_dir() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&refused)
            .map_err(io(&refused))?;
        sync_dir(spool_dir)?;
    }
    let path = free_path(spool_dir, kept)?;
    let tmp = refused.join(format!("{:020}.tmp", kept.seq));
    let mut text = serde_json::to_vec(kept).map_err(|e| SpoolError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    text.push(b'\n');
    replace_durably(&tmp, &path, &text)?;
    Ok(path)
}

/// The kept copy of spooled request `seq`, if there is one.
pub fn read(spool_dir: &Path, seq: u64) -> Result<Option<Kept>, SpoolError> {
    let path = path(spool_dir, seq);
    match fs::read(&path) {
        Ok(bytes) => parse(spool_dir, &path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SpoolError::Io { path, source }),
    }
}

/// Every kept request with its file, in spool order.
pub fn read_all(spool_dir: &Path) -> Result<Vec<(PathBuf, Kept)>, SpoolError> {
    let refused = dir(spool_dir);
    let list = match fs::read_dir(&refused) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SpoolError::Io {
                path: refused,
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = list
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
            let kept = parse(spool_dir, &path, &bytes)?;
            Ok((path, kept))
        })
        .collect()
}

/// Removes the kept file `path` durably (the directory `fsync`ed).
pub(super) fn remove(path: &Path) -> Result<(), SpoolError> {
    fs::remove_file(path).map_err(|source| SpoolError::Io {
        path: path.to_owned(),
        source,
    })?;
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

fn parse(spool_dir: &Path, path: &Path, bytes: &[u8]) -> Result<Kept, SpoolError> {
    serde_json::from_slice(bytes).map_err(|e| SpoolError::Inconsistent {
        dir: spool_dir.to_owned(),
        problem: format!("{} is not a kept request: {e}", path.display()),
    })
}
