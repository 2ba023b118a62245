//! The follow position kept beside a spool's segments, for when no spooled request carries it any more.
//!
//! Each spooled request carries the checkpoint after its lines (one append: a crash cannot separate them). But
//! the spool deletes a segment once its requests are acknowledged, and with it the newest checkpoint; so before
//! acknowledgements are committed (and segments deleted), the checkpoint of the newest request spooled is saved
//! here, with its sequence number, atomically. On restart the newer of the two is where reading resumes: the
//! newest spooled request that carries a checkpoint, or this file when no request after it remains.

use std::{
    fs::{self, File, OpenOptions},
    io::{ErrorKind, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::Checkpoint;

/// The file's name in the spool directory.
pub const FILE_NAME: &str = "follow-position";

/// Why the saved position cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// Reading, writing, syncing or renaming failed.
    #[error("follow position {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds something else than a saved position: it is only ever replaced whole, so it was damaged.
    #[error(
        "follow position {} is damaged ({source}); move it aside to go on: files are then read from where \
         the spooled requests say, or from their start",
        path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What serde_json found.
        source: serde_json::Error,
    },
    /// The position could not be written as JSON (a path that is not UTF-8, which the follower refuses).
    #[error("cannot write the follow position: {0}")]
    Encode(serde_json::Error),
}

/// A checkpoint and the spool sequence number of the request it was spooled with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The request's sequence number in the spool.
    pub seq: u64,
    /// Where reading resumes after that request's lines.
    pub checkpoint: Checkpoint,
}

/// The position saved in spool directory `dir`, if any.
pub fn load(dir: &Path) -> Result<Option<Saved>, SavedError> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SavedError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SavedError::Damaged { path, source })
}

/// Replaces the position saved in `dir` with `saved`, durably: written to a temporary file, synced, renamed over
/// the old one, and the directory synced, so a crash leaves the old position or the new one, never a mix.
pub fn store(dir: &Path, saved: &Saved) -> Result<(), SavedError> {
    let path = dir.join(FILE_NAME);
    let temporary = dir.join(format!("{FILE_NAME}.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SavedError::Io { path, source }
    };
    let bytes = serde_json::to_vec(saved).map_err(SavedError::Encode)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(&bytes).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    fs::rename(&temporary, &path).map_err(io(&path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Where reading resumes: the checkpoint of the newest spooled request that carries one (`spooled`, oldest
/// first, with their sequence numbers), unless the saved file is newer; `None` when neither exists (a first
/// start: every file from its start).
pub fn resume_point(
    saved: Option<Saved>,
    spooled: impl IntoIterator<Item = (u64, Checkpoint)>,
) -> Option<Checkpoint> {
    let newest_spooled = spooled.into_iter().last();
    match (saved, newest_spooled) {
        (Some(saved), Some((seq, checkpoint))) if seq > saved.seq => Some(checkpoint),
        (Some(saved), _) => Some(saved.checkpoint),
        (None, spooled) => spooled.map(|(_, checkpoint)| checkpoint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(path: &str) -> Checkpoint {
        Checkpoint::new(&[PathBuf::from(path)])
    }

    #[test]
    fn a_stored_position_loads_and_replaces_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let first = Saved {
            seq: 3,
            checkpoint: checkpoint("/a"),
        };
        store(dir.path(), &first).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(first));
        let second = Saved {
            seq: 9,
            checkpoint: checkpoint("/b"),
        };
        store(dir.path(), &second).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(second));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file is left");
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{\"seq\": 3, \"checkp").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, SavedError::Damaged { .. }), "{err}");
    }

    #[test]
    fn the_newer_of_the_spooled_requests_and_the_saved_file_wins() {
        let saved = || {
            Some(Saved {
                seq: 5,
                checkpoint: checkpoint("/saved"),
            })
        };
        let spooled = |seqs: &[u64]| -> Vec<(u64, Checkpoint)> {
            seqs.iter()
                .map(|&seq| (seq, checkpoint(&format!("/spooled/{seq}"))))
                .collect()
        };
        assert_eq!(resume_point(None, spooled(&[])), None);
        assert_eq!(
            resume_point(saved(), spooled(&[])),
            Some(checkpoint("/saved"))
        );
        assert_eq!(
            resume_point(saved(), spooled(&[4, 5])),
            Some(checkpoint("/saved"))
        );
        assert_eq!(
            resume_point(saved(), spooled(&[5, 6, 7])),
            Some(checkpoint("/spooled/7"))
        );
        assert_eq!(
            resume_point(None, spooled(&[1, 2])),
            Some(checkpoint("/spooled/2"))
        );
    }
}
