//! The client's durable spool (`send --spool DIR`): signed requests' payloads are appended here, made durable,
//! and only then sent; what the server acknowledged is recorded, and what it has not is sent again by the next
//! `send` on the spool, in order. Nothing that was spooled is lost when `send` is killed, and each request keeps
//! one request id (PROTOCOL.md, "Request ids") however often it is signed, so nothing is stored twice.
//!
//! The directory holds:
//!
//! - `lock`: held with `flock` by the one process using the spool;
//! - segment files (`segment`): append-only, each record checksummed. A record is appended and the file
//!   `fsync`ed before the caller goes on (a new segment's directory entry too), so an appended entry survives a
//!   crash; a record torn by a crash is found by its checksum when the spool is opened and cut off;
//! - `acked`: the acknowledgement pointer, the sequence number below which every entry is acknowledged;
//!   replaced atomically (written to `acked.tmp`, `fsync`ed, renamed over, directory `fsync`ed);
//! - `refused/`: requests the server refused for good for their own content, one file each ([`refused`]), made
//!   durable before the request counts as acknowledged, so the rest of the spool is delivered and nothing is
//!   dropped.
//!
//! Segments whose entries are all acknowledged are deleted. The API, for `send` and anything else that feeds a
//! spool (such as following files):
//!
//! - [`Spool::open`] takes the lock, reads the pointer, checks every segment and cuts a torn tail;
//! - [`Spool::pending`] reads the entries still waiting (oldest first, one segment at a time);
//! - [`Spool::append`] adds an entry durably and gives its sequence number, or [`SpoolError::Full`];
//! - [`Spool::ack`] marks entries acknowledged, in any order, and [`Spool::commit_acks`] makes the pointer
//!   durable (over the acknowledged prefix) and deletes spent segments;
//! - [`Spool::keep_refused`] keeps a refused entry aside durably, then marks it acknowledged;
//!   [`Spool::kept_already`] tells whether an entry still waiting was kept before (a crash before the pointer
//!   moved); [`Spool::requeue_refused`] puts kept entries back in line.

pub mod refused;
pub mod segment;

use std::{
    collections::BTreeSet,
    fs::{self, File, OpenOptions},
    io::{Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};

pub use segment::Entry;

use crate::protocol::{RejectCode, Request};

/// The default `--spool-max-size`: 1 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// Largest segment before the next entry starts a new one; smaller for a small spool, so spent segments can be
/// deleted while it fills.
const SEGMENT_SIZE: u64 = 8 << 20;

/// What [`Spool::requeue_refused`] did.
#[derive(Debug, Default)]
pub struct Requeued {
    /// Kept requests put back in line.
    pub back: u64,
    /// Kept requests left aside, because the spool became full ([`Requeued::full`]).
    pub still_kept: u64,
    /// The spool's refusal of the next one, when it became full.
    pub full: Option<SpoolError>,
}

/// The file holding the acknowledgement pointer.
const ACKED: &str = "acked";

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process holds the spool's lock.
    #[error(
        "spool {0} is in use by another process (one `zavro send --spool` per spool directory at a time)"
    )]
    Busy(PathBuf),
    /// Adding the entry would take the spool past its size limit.
    #[error(
        "spool {dir} is full: {size} bytes waiting, and the next request of {entry} bytes would pass --spool-max-size {max}"
    )]
    Full {
        /// The spool directory.
        dir: PathBuf,
        /// Bytes in its segments now.
        size: u64,
        /// Bytes the entry would add.
        entry: u64,
        /// The limit.
        max: u64,
    },
    /// A segment is damaged: not a torn tail from a crash, which only the newest can have, and only at its end.
    #[error(
        "spool segment {file} is damaged at byte {offset} (only the newest segment may end in a torn record, and only at its end); move it aside to go on, its requests after that byte are lost"
    )]
    Damaged {
        /// The segment file.
        file: PathBuf,
        /// Where its intact records end.
        offset: u64,
    },
    /// A request too large for one spool record: it is not spooled, and nothing is written.
    #[error(
        "a request of {bytes} bytes is larger than a spool record may be ({max} bytes); send it without --spool, or split its records"
    )]
    TooLarge {
        /// The size of its record's body.
        bytes: usize,
        /// The largest body a record may have.
        max: usize,
    },
    /// The acknowledgement pointer or the segments contradict each other.
    #[error("spool {dir} is inconsistent: {problem}")]
    Inconsistent {
        /// The spool directory.
        dir: PathBuf,
        /// What does not fit.
        problem: String,
    },
    /// A file-system operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A segment on disk: its first sequence number, and one past its last (equal when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    first: u64,
    end: u64,
    size: u64,
}

/// An open spool directory, locked for this process.
pub struct Spool {
    dir: PathBuf,
    _lock: Flock<File>,
    max_size: u64,
    segment_size: u64,
    /// The segments on disk, oldest first.
    segments: Vec<Segment>,
    /// The newest segment, open for appending; `None` until the next append creates one.
    active: Option<File>,
    /// The next entry's sequence number.
    next_seq: u64,
    /// Every entry below this is acknowledged, durably.
    acked_durable: u64,
    /// Every entry below this is acknowledged (durable once [`Spool::commit_acks`] runs).
    acked_below: u64,
    /// Entries at or above `acked_below` acknowledged out of order.
    acked_ahead: BTreeSet<u64>,
}

impl Spool {
    /// Opens (creating, mode 0700) the spool in `dir` with a size limit of `max_size` bytes: takes its lock
    /// ([`SpoolError::Busy`] when another process holds it), reads the acknowledgement pointer, checks every
    /// segment, cuts a torn record off the newest, and deletes segments already acknowledged.
    pub fn open(dir: &Path, max_size: u64) -> Result<Spool, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SpoolError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(SpoolError::Busy(dir.to_owned()));
            }
            Err((_, errno)) => {
                return Err(SpoolError::Io {
                    path: lock_path,
                    source: errno.into(),
                });
            }
        };
        let acked = read_pointer(dir)?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            _lock: lock,
            max_size,
            segment_size: SEGMENT_SIZE.min((max_size / 4).max(1)),
            segments: Vec::new(),
            active: None,
            next_seq: acked,
            acked_durable: acked,
            acked_below: acked,
            acked_ahead: BTreeSet::new(),
        };
        spool.check_segments()?;
        spool.delete_spent()?;
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many entries are not acknowledged yet.
    pub fn waiting(&self) -> u64 {
        self.next_seq - self.acked_below - self.acked_ahead.len() as u64
    }

    /// Bytes the segments take on disk now.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// The size limit.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// The entries not acknowledged durably, oldest first, read one segment at a time.
    pub fn pending(&self) -> Pending {
        Pending {
            dir: self.dir.clone(),
            segments: self.segments.clone(),
            from: self.acked_durable,
            buffered: Vec::new().into_iter(),
        }
    }

    /// Appends a signed request holding `records` records (with a request id in its envelope, so that signing
    /// it again cannot store it twice) and makes it durable before returning its sequence number: the record is
    /// written and the segment `fsync`ed, and a new segment's directory entry `fsync`ed too. Fails with
    /// [`SpoolError::Full`], writing nothing, when it would take the spool past its limit.
    pub fn append(&mut self, request: &Request, records: u64) -> Result<u64, SpoolError> {
        self.append_with_position(request, records, &[])
    }

    /// [`Spool::append`] with `position` (opaque here; `send --follow` keeps where reading resumes after this
    /// request's lines) in the same record: durable together, or not at all.
    pub fn append_with_position(
        &mut self,
        request: &Request,
        records: u64,
        position: &[u8],
    ) -> Result<u64, SpoolError> {
        let entry = Entry {
            seq: self.next_seq,
            records,
            request: request.clone(),
            position: position.to_vec(),
        };
        let bytes =
            segment::encode(&entry).map_err(|segment::TooLarge(bytes)| SpoolError::TooLarge {
                bytes,
                max: segment::MAX_BODY,
            })?;
        let size = self.size();
        if size + bytes.len() as u64 > self.max_size {
            return Err(SpoolError::Full {
                dir: self.dir.clone(),
                size,
                entry: bytes.len() as u64,
                max: self.max_size,
            });
        }
        let full = self
            .segments
            .last()
            .is_none_or(|s| s.size >= self.segment_size);
        if self.active.is_none() || full {
            self.start_segment()?;
        }
        let path = self.segment_path(self.segments.last().map_or(0, |s| s.first));
        let file = self
            .active
            .as_mut()
            .ok_or_else(|| SpoolError::Inconsistent {
                dir: self.dir.clone(),
                problem: "no segment to append to".into(),
            })?;
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        file.write_all(&bytes).map_err(io)?;
        file.sync_data().map_err(io)?;
        if let Some(last) = self.segments.last_mut() {
            last.end = entry.seq + 1;
            last.size += bytes.len() as u64;
        }
        self.next_seq += 1;
        Ok(entry.seq)
    }

    /// Marks the entry `seq` acknowledged by the server; durable at the next [`Spool::commit_acks`].
    pub fn ack(&mut self, seq: u64) {
        if seq < self.acked_below || seq >= self.next_seq {
            return;
        }
        self.acked_ahead.insert(seq);
        while self.acked_ahead.remove(&self.acked_below) {
            self.acked_below += 1;
        }
    }

    /// True when entry `seq` is marked acknowledged (durably or not yet).
    pub fn is_acked(&self, seq: u64) -> bool {
        seq < self.acked_below || self.acked_ahead.contains(&seq)
    }

    /// Makes the acknowledgements so far durable (the pointer moves over their unbroken prefix: an entry
    /// acknowledged after one that is not yet stays pending on disk, and its resend would be a `duplicate`), and
    /// deletes the segments whose entries are all acknowledged.
    pub fn commit_acks(&mut self) -> Result<(), SpoolError> {
        if self.acked_below == self.acked_durable {
            return Ok(());
        }
        write_pointer(&self.dir, self.acked_below)?;
        self.acked_durable = self.acked_below;
        self.delete_spent()
    }

    /// Keeps entry `seq` (its signed request `request` as spooled, holding `records` records), which the server
    /// refused for good with `code` and `message`, in `refused/`: written and `fsync`ed (file and directory)
    /// first, and only then marked acknowledged, durable at the next [`Spool::commit_acks`]. Returns the file.
    pub fn keep_refused(
        &mut self,
        seq: u64,
        records: u64,
        request: &Request,
        code: RejectCode,
        message: &str,
    ) -> Result<PathBuf, SpoolError> {
        let kept = refused::Kept::new(seq, records, request, code, message);
        let path = refused::write(&self.dir, &kept)?;
        self.ack(seq);
        Ok(path)
    }

    /// True when `entry`, still waiting, was kept aside already (the process stopped before the pointer moved
    /// over it, or an entry before it is not acknowledged yet): it is to be marked acknowledged, not sent again.
    pub fn kept_already(&self, entry: &Entry) -> Result<bool, SpoolError> {
        Ok(refused::read(&self.dir, entry.seq)?
            .is_some_and(|kept| kept.request_id == entry.request.envelope.id))
    }

    /// Puts every kept request back in line: appended as new entries (same signed request, same request id, so
    /// a delivery stores it at most once), each durable before its kept file is removed. A crash in between
    /// leaves both, and the second copy in line is answered `duplicate` if the first was stored. Returns how
    /// many were put back, how many are still kept, and why they are: a spool that became full (the rest stays
    /// aside for a later run, once what waits is delivered).
    pub fn requeue_refused(&mut self) -> Result<Requeued, SpoolError> {
        let kept_all = refused::read_all(&self.dir)?;
        // A request kept aside by a run that died before the pointer moved over it is still in line: putting it
        // back means only forgetting the kept copy (a second copy in line would be sent twice).
        let mut still_in_line = std::collections::HashMap::new();
        if !kept_all.is_empty() {
            for entry in self.pending() {
                let entry = entry?;
                if !self.is_acked(entry.seq) {
                    still_in_line.insert(entry.seq, entry.request.envelope.id);
                }
            }
        }
        let mut requeued = Requeued::default();
        let total = kept_all.len() as u64;
        for (path, kept) in kept_all {
            if still_in_line.get(&kept.seq) == Some(&kept.request_id) {
                refused::remove(&path)?;
                requeued.back += 1;
                continue;
            }
            let request = kept.request().map_err(|problem| SpoolError::Inconsistent {
                dir: self.dir.clone(),
                problem: format!("{}: {problem}", path.display()),
            })?;
            match self.append(&request, kept.records) {
                Ok(_) => {}
                Err(full @ SpoolError::Full { .. }) => {
                    requeued.still_kept = total - requeued.back;
                    requeued.full = Some(full);
                    return Ok(requeued);
                }
                Err(e) => return Err(e),
            }
            refused::remove(&path)?;
            requeued.back += 1;
        }
        Ok(requeued)
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir.join(segment::file_name(first))
    }

    /// Starts a new segment for the next entry: created with its header, `fsync`ed, and the directory too.
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let path = self.segment_path(self.next_seq);
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.write_all(segment::MAGIC).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            first: self.next_seq,
            end: self.next_seq,
            size: segment::MAGIC.len() as u64,
        });
        self.active = Some(file);
        Ok(())
    }

    /// Reads every segment: checks its records follow on from the one before, cuts a torn tail off the newest,
    /// and reopens the newest for appending.
    fn check_segments(&mut self) -> Result<(), SpoolError> {
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)
            .map_err(|source| SpoolError::Io {
                path: self.dir.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                segment::first_seq(name.to_str()?).map(|first| (first, e.path()))
            })
            .collect();
        names.sort();
        let count = names.len();
        for (index, (first, path)) in names.into_iter().enumerate() {
            let newest = index + 1 == count;
            let bytes = read_file(&path)?;
            let scanned = segment::scan(&bytes);
            if scanned.damaged && !(newest && scanned.torn_tail) {
                return Err(SpoolError::Damaged {
                    file: path,
                    offset: scanned.good_len as u64,
                });
            }
            let inconsistent = |problem: String| SpoolError::Inconsistent {
                dir: self.dir.clone(),
                problem,
            };
            if let Some(previous) = self.segments.last()
                && previous.end != first
            {
                return Err(inconsistent(format!(
                    "segment {} does not follow on from the one before it (which ends before entry {})",
                    path.display(),
                    previous.end
                )));
            }
            if self.segments.is_empty() && first > self.acked_durable {
                return Err(inconsistent(format!(
                    "the oldest segment starts at entry {first}, but only entries below {} are acknowledged",
                    self.acked_durable
                )));
            }
            for (offset, entry) in scanned.entries.iter().enumerate() {
                if entry.seq != first + offset as u64 {
                    return Err(inconsistent(format!(
                        "segment {} holds entry {} where {} belongs",
                        path.display(),
                        entry.seq,
                        first + offset as u64
                    )));
                }
            }
            let end = first + scanned.entries.len() as u64;
            let mut size = bytes.len() as u64;
            if scanned.damaged {
                // A torn tail of the newest segment: what a crash in the middle of an append leaves. That entry
                // was never acknowledged to the caller (the append had not returned), so cutting it loses nothing.
                size = scanned.good_len as u64;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| SpoolError::Io {
                        path: path.clone(),
                        source,
                    })?;
                let io = |source| SpoolError::Io {
                    path: path.clone(),
                    source,
                };
                file.set_len(size).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
            if size == 0 {
                // Created, but a crash came before its header was durable: it holds nothing.
                fs::remove_file(&path).map_err(|source| SpoolError::Io {
                    path: path.clone(),
                    source,
                })?;
                sync_dir(&self.dir)?;
                continue;
            }
            self.segments.push(Segment { first, end, size });
            self.next_seq = self.next_seq.max(end);
        }
        if let Some(newest) = self.segments.last() {
            let path = self.segment_path(newest.first);
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|source| SpoolError::Io { path, source })?;
            self.active = Some(file);
        }
        Ok(())
    }

    /// Deletes the segments whose entries are all durably acknowledged, the newest too (the next append starts
    /// a new one).
    fn delete_spent(&mut self) -> Result<(), SpoolError> {
        let spent = self
            .segments
            .iter()
            .take_while(|s| s.end <= self.acked_durable)
            .count();
        if spent == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..spent).collect::<Vec<_>>() {
            let path = self.segment_path(segment.first);
            fs::remove_file(&path).map_err(|source| SpoolError::Io { path, source })?;
        }
        if self.segments.is_empty() {
            self.active = None;
        }
        sync_dir(&self.dir)
    }
}

/// The entries of a spool not acknowledged when it was read, oldest first; one segment in memory at a time.
pub struct Pending {
    dir: PathBuf,
    segments: Vec<Segment>,
    from: u64,
    buffered: std::vec::IntoIter<Entry>,
}

impl Iterator for Pending {
    type Item = Result<Entry, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.buffered.next() {
                return Some(Ok(entry));
            }
            if self.segments.is_empty() {
                return None;
            }
            let segment = self.segments.remove(0);
            if segment.end <= self.from {
                continue;
            }
            let path = self.dir.join(segment::file_name(segment.first));
            let bytes = match read_file(&path) {
                Ok(bytes) => bytes,
                Err(e) => return Some(Err(e)),
            };
            // Only what was checked at open: later appends are the caller's own, and it has them already.
            let from = self.from;
            let entries: Vec<Entry> = segment::scan(&bytes)
                .entries
                .into_iter()
                .filter(|e| e.seq >= from && e.seq < segment.end)
                .collect();
            self.buffered = entries.into_iter();
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|source| SpoolError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// The acknowledgement pointer: 0 for a new spool.
fn read_pointer(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join(ACKED);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| SpoolError::Inconsistent {
            dir: dir.to_owned(),
            problem: format!("{} does not hold a number", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(SpoolError::Io { path, source }),
    }
}

/// Replaces the pointer atomically and durably.
fn write_pointer(dir: &Path, acked: u64) -> Result<(), SpoolError> {
    replace_durably(
        &dir.join("acked.tmp"),
        &dir.join(ACKED),
        format!("{acked}\n").as_bytes(),
    )
}

/// Makes `path` hold `bytes` (mode 0600), atomically and durably: written to `tmp` (in the same directory),
/// `fsync`ed, renamed over `path`, and the directory `fsync`ed.
pub(crate) fn replace_durably(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SpoolError::Io { path, source }
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io(tmp))?;
    file.write_all(bytes).map_err(io(tmp))?;
    file.sync_all().map_err(io(tmp))?;
    fs::rename(tmp, path).map_err(io(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// `fsync` of a directory, so the names created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn ids(spool: &Spool) -> Vec<(u64, String)> {
        spool
            .pending()
            .map(|e| e.map(|e| (e.seq, e.request.envelope.id.unwrap())).unwrap())
            .collect()
    }

    fn id(n: u64) -> String {
        format!("id-{n:016}")
    }

    /// A request with the id `id(n)` and this payload.
    fn request(n: u64, payload: &[u8]) -> Request {
        Request::sign_with_id(
            "ZK1",
            b"secret",
            1_700_000_000,
            "nonce-0123456789abcdef",
            Some(&id(n)),
            payload.to_vec(),
        )
    }

    #[test]
    fn entries_wait_until_acknowledged_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        for n in 0..3 {
            assert_eq!(spool.append(&request(n, b"payload"), n + 1).unwrap(), n);
        }
        assert_eq!(spool.waiting(), 3);
        // Acknowledged out of order: the pointer moves over the unbroken prefix only.
        spool.ack(1);
        spool.commit_acks().unwrap();
        assert_eq!(spool.waiting(), 2);
        assert_eq!(
            (spool.is_acked(0), spool.is_acked(1), spool.is_acked(2)),
            (false, true, false)
        );
        drop(spool);
        let spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(ids(&spool), [(0, id(0)), (1, id(1)), (2, id(2))]);
        let mut spool = spool;
        spool.ack(0);
        spool.ack(1);
        spool.commit_acks().unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(ids(&spool), [(2, id(2))]);
        let entry = spool.pending().next().unwrap().unwrap();
        assert_eq!(
            (entry.records, entry.request),
            (3, request(2, b"payload")),
            "the signed request as appended"
        );
        // Numbering goes on after the entries on disk.
        assert_eq!(spool.append(&request(3, b"p"), 1).unwrap(), 3);
    }

    #[test]
    fn a_position_appended_with_a_request_reads_back_with_it_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        spool.append(&request(0, b"plain"), 1).unwrap();
        spool
            .append_with_position(&request(1, b"followed"), 2, b"{\"after\":\"line 2\"}")
            .unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        let entries: Vec<Entry> = spool.pending().map(Result::unwrap).collect();
        let read: Vec<(&[u8], &[u8])> = entries
            .iter()
            .map(|e| (&e.request.payload[..], &e.position[..]))
            .collect();
        assert_eq!(
            read,
            [
                (&b"plain"[..], &b""[..]),
                (&b"followed"[..], &b"{\"after\":\"line 2\"}"[..])
            ]
        );
    }

    #[test]
    fn fully_acknowledged_segments_are_deleted_and_numbering_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        // 1200 bytes: segments of 100 bytes, so each entry of ~140 starts a segment of its own.
        let mut spool = Spool::open(dir.path(), 1200).unwrap();
        for n in 0..2 {
            spool.append(&request(n, &[0; 200]), 1).unwrap();
        }
        let segments = |dir: &Path| {
            fs::read_dir(dir)
                .unwrap()
                .filter(|e| {
                    segment::first_seq(e.as_ref().unwrap().file_name().to_str().unwrap()).is_some()
                })
                .count()
        };
        assert_eq!(segments(dir.path()), 2);
        spool.ack(0);
        spool.commit_acks().unwrap();
        assert_eq!(segments(dir.path()), 1);
        spool.ack(1);
        spool.commit_acks().unwrap();
        assert_eq!(segments(dir.path()), 0);
        assert_eq!(spool.size(), 0);
        assert_eq!(spool.append(&request(2, b"p"), 1).unwrap(), 2);
        drop(spool);
        let spool = Spool::open(dir.path(), 1200).unwrap();
        assert_eq!(ids(&spool), [(2, id(2))]);
    }

    #[test]
    fn a_full_spool_refuses_the_entry_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1000).unwrap();
        spool.append(&request(0, &[0; 100]), 1).unwrap();
        let full = spool.append(&request(1, &[0; 700]), 1).unwrap_err();
        assert!(matches!(full, SpoolError::Full { max: 1000, .. }), "{full}");
        assert_eq!(spool.waiting(), 1);
        drop(spool);
        assert_eq!(ids(&Spool::open(dir.path(), 1000).unwrap()), [(0, id(0))]);
    }

    #[test]
    fn requeueing_into_a_spool_that_becomes_full_puts_back_what_fits_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1000).unwrap();
        for n in 0..2 {
            let kept = request(n, &[0; 300]);
            spool
                .keep_refused(n, 1, &kept, RejectCode::SchemaMismatch, "no")
                .unwrap();
        }
        spool.append(&request(2, &[0; 100]), 1).unwrap();
        let requeued = spool.requeue_refused().unwrap();
        assert_eq!((requeued.back, requeued.still_kept), (1, 1));
        assert!(matches!(requeued.full, Some(SpoolError::Full { .. })));
        let kept = refused::read_all(dir.path()).unwrap();
        assert_eq!(kept.len(), 1, "the one that did not fit stays kept");
        assert_eq!(kept[0].1.request().unwrap(), request(1, &[0; 300]));
        assert_eq!(spool.waiting(), 2);
    }

    #[test]
    fn a_request_too_large_for_a_record_is_refused_and_what_was_spooled_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), u64::MAX).unwrap();
        spool.append(&request(0, b"small"), 1).unwrap();
        let refused = spool
            .append(&request(1, &vec![0; segment::MAX_BODY]), 1)
            .unwrap_err();
        assert!(matches!(refused, SpoolError::TooLarge { .. }), "{refused}");
        spool.append(&request(2, b"after"), 1).unwrap();
        drop(spool);
        // Reopened, nothing was cut as a torn tail: both requests reported spooled are there.
        assert_eq!(
            ids(&Spool::open(dir.path(), u64::MAX).unwrap()),
            [(0, id(0)), (1, id(2))]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_spool_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        spool.append(&request(0, b"whole"), 1).unwrap();
        spool.append(&request(1, b"torn by a crash"), 1).unwrap();
        drop(spool);
        let path = dir.path().join(segment::file_name(0));
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(ids(&spool), [(0, id(0))]);
        assert_eq!(spool.append(&request(1, b"again"), 1).unwrap(), 1);
        drop(spool);
        let spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(ids(&spool), [(0, id(0)), (1, id(1))]);
    }

    #[test]
    fn damage_before_the_newest_segment_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1200).unwrap();
        spool.append(&request(0, &[1; 200]), 1).unwrap();
        spool.append(&request(1, &[2; 200]), 1).unwrap();
        drop(spool);
        let path = dir.path().join(segment::file_name(0));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let damaged = Spool::open(dir.path(), 1200).err().unwrap();
        assert!(matches!(damaged, SpoolError::Damaged { .. }), "{damaged}");
    }

    #[test]
    fn a_kept_copy_is_never_replaced_by_another_request_kept_under_the_same_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        let first = request(0, b"first");
        let again = |spool: &mut Spool, request: &Request| {
            spool
                .keep_refused(0, 1, request, RejectCode::SchemaMismatch, "no")
                .unwrap()
        };
        let path = again(&mut spool, &first);
        assert_eq!(path, refused::path(dir.path(), 0));
        // The numbering started again (a pointer removed by hand): another request refused as number 0.
        let other = request(1, b"other");
        let other_path = again(&mut spool, &other);
        assert_ne!(other_path, path);
        // The same request kept again replaces only its own copy.
        assert_eq!(again(&mut spool, &first), path);
        let mut kept: Vec<Request> = refused::read_all(dir.path())
            .unwrap()
            .into_iter()
            .map(|(_, kept)| kept.request().unwrap())
            .collect();
        kept.sort_by(|a, b| a.envelope.id.cmp(&b.envelope.id));
        assert_eq!(kept, [first, other], "both kept, once each");
    }

    #[test]
    fn a_refused_entry_is_kept_aside_before_it_counts_as_acknowledged_and_can_be_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        for n in 0..3 {
            spool.append(&request(n, b"payload"), n + 1).unwrap();
        }
        let refused = spool.pending().next().unwrap().unwrap();
        let path = spool
            .keep_refused(
                0,
                1,
                &refused.request,
                RejectCode::SchemaMismatch,
                "no reader schema",
            )
            .unwrap();
        assert_eq!(path, refused::path(dir.path(), 0));
        // Not durable in the pointer yet (as after a crash here): the entry still waits, but is known as kept.
        drop(spool);
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        let waiting: Vec<Entry> = spool.pending().map(Result::unwrap).collect();
        assert!(spool.kept_already(&waiting[0]).unwrap());
        assert!(!spool.kept_already(&waiting[1]).unwrap());
        spool.ack(0);
        spool.commit_acks().unwrap();
        assert_eq!(ids(&spool), [(1, id(1)), (2, id(2))]);

        let kept = refused::read(dir.path(), 0).unwrap().unwrap();
        assert_eq!(
            kept.request().unwrap(),
            request(0, b"payload"),
            "as spooled"
        );
        assert_eq!((kept.code, kept.records), (RejectCode::SchemaMismatch, 1));
        assert_eq!(kept.request_id.as_deref(), Some(&id(0)[..]));
        assert_eq!(
            fs::metadata(refused::dir(dir.path()))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );

        // Put back: at the end of the line, same request and id; the kept file goes.
        assert_eq!(spool.requeue_refused().unwrap().back, 1);
        assert!(refused::read_all(dir.path()).unwrap().is_empty());
        drop(spool);
        let spool = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        let entries: Vec<Entry> = spool.pending().map(Result::unwrap).collect();
        let last = entries.last().unwrap();
        assert_eq!(
            (last.seq, last.records, &last.request),
            (3, 1, &request(0, b"payload"))
        );
    }

    #[test]
    fn a_second_process_cannot_open_a_spool_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), DEFAULT_MAX_SIZE).unwrap();
        // flock locks belong to the open file description: a second open is refused even in this process.
        let second = Spool::open(dir.path(), DEFAULT_MAX_SIZE).err().unwrap();
        assert!(matches!(second, SpoolError::Busy(_)), "{second}");
    }
}
