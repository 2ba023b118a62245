//! How far each followed file has been read, as a value that travels with the requests it describes: a spool
//! append holds a request and the checkpoint after its last line, so "spooled" and "position" cannot disagree
//! after a crash. Serialised as JSON, matched to files by path and then by inode on restart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Event, FileId, Head, Position};

/// Why a saved checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The bytes are not a checkpoint this version wrote, or a path could not be written as UTF-8.
    #[error("the follow position cannot be read or written: {0}")]
    Json(#[from] serde_json::Error),
}

/// Where reading resumes in one file: its identity and the byte offset just after its last line taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The file, by device and inode.
    #[serde(flatten)]
    pub file: FileId,
    /// Bytes of it taken: every line before this offset was handed out.
    pub offset: u64,
    /// Its start, to tell it from another file at a reused inode.
    pub head: Head,
}

/// The cursors of one followed path: the file it names now and, after a rotation, the files it named before
/// that are still being read to their end, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathCursors {
    /// The followed path, absolute, as given (not resolved: like `tail -F`, the name is followed).
    pub path: PathBuf,
    /// Oldest first.
    pub cursors: Vec<Cursor>,
}

/// How far every followed path has been taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// In the order the paths were given.
    pub paths: Vec<PathCursors>,
}

impl Checkpoint {
    /// A checkpoint of `paths` with nothing read yet.
    pub fn new(paths: &[PathBuf]) -> Self {
        Checkpoint {
            paths: paths
                .iter()
                .map(|path| PathCursors {
                    path: path.clone(),
                    cursors: Vec::new(),
                })
                .collect(),
        }
    }

    /// The cursors saved for `path`, oldest first; none when it was not followed.
    pub fn cursors(&self, path: &Path) -> &[Cursor] {
        self.paths
            .iter()
            .find(|p| p.path == path)
            .map_or(&[], |p| &p.cursors)
    }

    /// Moves past an event, in the order the follower gave them: a line or a skip moves its file's cursor (a
    /// file not seen before is added as the newest of its path), a closed file's cursor goes.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Line(line) => self.advance(&line.position),
            Event::Skip(position) => self.advance(position),
            Event::Closed { path, file } => {
                if let Some(p) = self.paths.get_mut(*path) {
                    p.cursors.retain(|c| c.file != *file);
                }
            }
            Event::Notice(_) => {}
        }
    }

    fn advance(&mut self, position: &Position) {
        let Some(p) = self.paths.get_mut(position.path) else {
            return;
        };
        let moved = Cursor {
            file: position.file,
            offset: position.offset,
            head: position.head,
        };
        match p.cursors.iter_mut().find(|c| c.file == position.file) {
            Some(cursor) => *cursor = moved,
            None => p.cursors.push(moved),
        }
    }

    /// The checkpoint as bytes, to be saved with the request that carries the lines before it. Fails only for
    /// a path that is not UTF-8, which the follower refuses to start with.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// A checkpoint saved by [`Checkpoint::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow::Line;

    fn line(path: usize, ino: u64, offset: u64) -> Event {
        Event::Line(Line {
            text: b"{}".to_vec(),
            position: Position {
                path,
                file: FileId { dev: 1, ino },
                offset,
                head: Head::default(),
            },
        })
    }

    #[test]
    fn lines_move_their_files_cursor_and_closing_removes_it() {
        let mut checkpoint = Checkpoint::new(&["/a".into(), "/b".into()]);
        checkpoint.apply(&line(0, 7, 10));
        checkpoint.apply(&line(1, 9, 3));
        checkpoint.apply(&line(0, 8, 4));
        checkpoint.apply(&line(0, 7, 20));
        let cursor = |ino, offset| Cursor {
            file: FileId { dev: 1, ino },
            offset,
            head: Head::default(),
        };
        assert_eq!(
            checkpoint.cursors(Path::new("/a")),
            [cursor(7, 20), cursor(8, 4)]
        );
        checkpoint.apply(&Event::Closed {
            path: 0,
            file: FileId { dev: 1, ino: 7 },
        });
        assert_eq!(checkpoint.cursors(Path::new("/a")), [cursor(8, 4)]);
        assert_eq!(checkpoint.cursors(Path::new("/b")), [cursor(9, 3)]);
        assert_eq!(checkpoint.cursors(Path::new("/c")), []);
    }

    #[test]
    fn bytes_round_trip_and_garbage_is_refused() {
        let mut checkpoint = Checkpoint::new(&["/var/log/app.log".into()]);
        checkpoint.apply(&line(0, 7, 10));
        assert_eq!(
            Checkpoint::from_bytes(&checkpoint.to_bytes().unwrap()).unwrap(),
            checkpoint
        );
        assert!(Checkpoint::from_bytes(b"{\"paths\": 3}").is_err());
    }
}
