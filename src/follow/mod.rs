//! Files followed as `tail -F` follows them: new lines as they are written, a rotation by rename (the old file
//! is read to its end, then the new one from its start), a truncation (read again from the start), a file that
//! does not exist yet or disappears and comes back, and a last line held back until its newline arrives.
//!
//! The files are polled, not watched with inotify: each [`Follower::poll`] stats every path and reads what is
//! new. A rotation can only be seen by asking what the path names now, so a stat per path is needed whatever
//! wakes the reader; polling works on every file system (inotify misses changes made over NFS and by other
//! containers), needs no thread or dependency, and a test drives it by calling `poll` after it wrote, waiting
//! for nothing. Its cost is a stat and an fstat per file per interval, and lines reach the sender up to one
//! interval late.
//!
//! Every line carries its position, the file (device and inode) and the offset just after it, and a
//! [`Checkpoint`] moved past the lines of a request says where to resume once that request is saved. On
//! [`Follower::new`] with a checkpoint, each path resumes in the file it named by inode: at the path, or, when
//! the path now names another file, beside it in the same directory (a rotated `app.log.1`), read to its end
//! before the file the path names now is read from its start. A file that is neither is gone (deleted or
//! compressed while nothing read it): what it held after the saved offset cannot be read, which a notice says.
//! A saved inode whose first bytes are not the saved ones is another file at a reused inode (beside the path:
//! gone) or the file truncated and rewritten (at the path: read from its start).
//!
//! What no reader can avoid: a truncation is seen only as a file shorter than what was read, or, once it has
//! grown again, as a file whose first bytes (up to 64, hashed into every position) changed. Lines written after
//! the last read and before the truncation are lost (`copytruncate` copies them to a file nobody follows), and a
//! file truncated and written again past the read position, starting with the same 64 bytes, looks as if it was
//! never truncated: reading goes on from the old offset, mid-text. The file itself keeps no trace of having been
//! cut. Rotate by rename to avoid both. Lines written to a rotated file more than the rotation wait after its
//! last growth are not read; a writer that keeps writing keeps it followed.

mod checkpoint;
mod requests;
pub mod saved;
mod source;

use std::{
    fs::Metadata,
    io::{self, ErrorKind},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use checkpoint::{Checkpoint, CheckpointError, Cursor, PathCursors};
pub use requests::{FollowedBatch, Refused, Requests};
use source::Source;

/// A file whatever its name: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    /// The device it is on.
    pub dev: u64,
    /// Its inode on that device.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The start of a file (up to 64 bytes), hashed: a file at a saved inode whose start is not the one saved is
/// another file (the inode was reused) or was truncated and written again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    /// Bytes hashed.
    pub len: u16,
    /// The first 8 bytes of their SHA-256, big-endian.
    pub sum: u64,
}

/// Where a line ends: the followed path (its index among the paths given), the file and the offset after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Index of the followed path, in the order given to [`Follower::new`].
    pub path: usize,
    /// The file the line was read from.
    pub file: FileId,
    /// The byte offset just after the line's newline.
    pub offset: u64,
    /// The start of the file as read.
    pub head: Head,
}

/// A complete line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its bytes, without the newline.
    pub text: Vec<u8>,
    /// Where it ends.
    pub position: Position,
}

/// What the follower hands out, in order; apply each to a [`Checkpoint`] once what came before it is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A line.
    Line(Line),
    /// The position moved without a line: back to 0 after a truncation, or past a line too long to take.
    Skip(Position),
    /// A rotated or deleted file was read to its end and given up: nothing more is read from it.
    Closed {
        /// Index of the followed path.
        path: usize,
        /// The file.
        file: FileId,
    },
    /// Something the user should know; the position does not move.
    Notice(Notice),
}

/// Something that happened to a followed path, for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Notice {
    /// The path names no file (yet); it is watched until one appears.
    #[error("{}: no such file yet; waiting for it", path.display())]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// A file appeared at a path that had none.
    #[error("{}: appeared; following it from its start", path.display())]
    Appeared {
        /// The path.
        path: PathBuf,
    },
    /// The path now names another file: the old one is read to its end, the new one from its start.
    #[error("{}: rotated; following the new file from its start", path.display())]
    Rotated {
        /// The path.
        path: PathBuf,
    },
    /// The file at the path was removed; it is read to its end, and the path watched for a new one.
    #[error("{}: removed; waiting for a new file", path.display())]
    Removed {
        /// The path.
        path: PathBuf,
    },
    /// The file is shorter than what was read of it: it is read again from its start.
    #[error(
        "{}: truncated (or its start rewritten) after byte {at} was read; reading it again from its start \
         (lines written just before the truncation may be lost)",
        path.display()
    )]
    Truncated {
        /// The path.
        path: PathBuf,
        /// The offset read up to.
        at: u64,
    },
    /// A line longer than the limit was dropped.
    #[error("{}: the line at byte {offset} is longer than {max} bytes; dropped", path.display())]
    TooLong {
        /// The path.
        path: PathBuf,
        /// Where the line starts.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// On resuming: the file the path named when the position was saved is neither at the path nor beside it.
    #[error(
        "{}: the file read up to byte {offset} before (inode {}) is gone; any lines written to it after that \
         were not read. Following the file there now from its start",
        path.display(),
        file.ino
    )]
    Gone {
        /// The path.
        path: PathBuf,
        /// The file saved.
        file: FileId,
        /// How far it had been taken.
        offset: u64,
    },
    /// On resuming: a path saved with a position is not among the paths followed now (a relative path given
    /// from another directory?); its position is kept.
    #[error(
        "{}: a position is saved for it, but it is not followed now; the position is kept for when it is",
        path.display()
    )]
    NotFollowed {
        /// The path saved.
        path: PathBuf,
    },
    /// The path or its file cannot be read for now (permissions, not a regular file); it is tried again.
    #[error("{}: cannot read it: {error}; trying again", path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

/// Why following cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The path is not UTF-8, which the saved position needs.
    #[error("{}: only UTF-8 paths can be followed", .0.display())]
    NotUtf8(PathBuf),
    /// The same path was given twice: its lines would be sent twice.
    #[error("{}: given twice", .0.display())]
    Duplicate(PathBuf),
    /// Two paths name the same file (a link): its lines would be sent twice.
    #[error("{} and {} are the same file: follow it once", .0.display(), .1.display())]
    SameFile(PathBuf, PathBuf),
    /// Reading an open file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path followed.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// How the follower reads.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a file no longer named by its path is still read after it last grew: a writer that has not
    /// reopened its log yet still writes there.
    pub rotate_wait: Duration,
    /// The longest line taken, in bytes; a longer one is dropped with a notice.
    pub max_line: usize,
    /// Bytes of lines one poll hands out per file before it moves on (more may be waiting: poll again).
    pub budget: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rotate_wait: Duration::from_secs(5),
            max_line: 1 << 20,
            budget: 4 << 20,
        }
    }
}

/// A file no longer named by its path, read until it has stopped growing for the rotation wait.
#[derive(Debug)]
struct Old {
    source: Source,
    deadline: Instant,
}

/// A followed path: the file it names and the files it named before, still being read.
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    current: Option<Source>,
    /// Oldest first.
    old: Vec<Old>,
    /// The last trouble reported for this path, so it is said once, not every poll.
    trouble: Option<String>,
    /// The path named no file: one that appears there is announced.
    waiting: bool,
}

impl Watched {
    /// Says `notice` unless it is the trouble already reported.
    fn report(&mut self, notice: Notice, events: &mut Vec<Event>) {
        let text = notice.to_string();
        if self.trouble.as_deref() != Some(&text) {
            self.trouble = Some(text);
            events.push(Event::Notice(notice));
        }
    }

    fn unreadable(&mut self, error: &io::Error, events: &mut Vec<Event>) {
        let notice = Notice::Unreadable {
            path: self.path.clone(),
            error: error.to_string(),
        };
        self.report(notice, events);
    }

    /// Looks at what the path names now: a rotation moves the current file to the old ones.
    fn look(&mut self, now: Instant, rotate_wait: Duration, events: &mut Vec<Event>) {
        let named = match std::fs::metadata(&self.path) {
            Ok(meta) => FileId::of(&meta),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.waiting = true;
                if let Some(current) = self.current.take() {
                    events.push(Event::Notice(Notice::Removed {
                        path: self.path.clone(),
                    }));
                    self.old.push(Old {
                        source: current,
                        deadline: now + rotate_wait,
                    });
                }
                return;
            }
            Err(e) => return self.unreadable(&e, events),
        };
        if self.current.as_ref().is_some_and(|c| c.id == named) {
            self.trouble = None;
            return;
        }
        // Open, then ask the open file what it is: the path may have changed again since the stat.
        let opened = match Source::open(&self.path, 0, None) {
            Ok((source, _)) => source,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) => return self.unreadable(&e, events),
        };
        self.trouble = None;
        if self.current.as_ref().is_some_and(|c| c.id == opened.id) {
            return;
        }
        // A file moved back to the path goes on where it was.
        let next = match self.old.iter().position(|o| o.source.id == opened.id) {
            Some(i) => self.old.remove(i).source,
            None => opened,
        };
        let path = self.path.clone();
        match self.current.take() {
            Some(previous) => {
                events.push(Event::Notice(Notice::Rotated { path }));
                self.old.push(Old {
                    source: previous,
                    deadline: now + rotate_wait,
                });
            }
            None if self.waiting => events.push(Event::Notice(Notice::Appeared { path })),
            None => {}
        }
        self.waiting = false;
        self.current = Some(next);
    }
}

/// Follows files and hands out their lines.
#[derive(Debug)]
pub struct Follower {
    watched: Vec<Watched>,
    settings: Settings,
}

impl Follower {
    /// Starts following `paths` (absolute ones are made of relative ones), from where `resume` says, else from
    /// the start of each file. A file saved in `resume` that exists but cannot be opened stops the start: its
    /// position would be lost, and the file read again from its start once it can be. Returns the follower,
    /// the checkpoint it starts from (apply its events to that), and the notices of the start: missing files,
    /// files gone or truncated since the checkpoint was saved, saved paths not followed now.
    pub fn new(
        paths: &[PathBuf],
        resume: Option<&Checkpoint>,
        settings: Settings,
        now: Instant,
    ) -> Result<(Follower, Checkpoint, Vec<Notice>), FollowError> {
        let mut notices = Vec::new();
        let mut watched: Vec<Watched> = Vec::new();
        let mut start = Checkpoint::default();
        // The files the paths name now, by device and inode: a link to a followed file is refused like a path
        // given twice. (A rotation that later makes two paths one file is not foreseen.)
        let mut files: Vec<((u64, u64), &PathBuf)> = Vec::new();
        for given in paths {
            let path = std::path::absolute(given).map_err(|source| FollowError::Io {
                path: given.clone(),
                source,
            })?;
            if path.to_str().is_none() {
                return Err(FollowError::NotUtf8(given.clone()));
            }
            if watched.iter().any(|w| w.path == path) {
                return Err(FollowError::Duplicate(given.clone()));
            }
            // A path that cannot be looked at now (missing, not readable) is compared by its name alone.
            if let Ok(meta) = std::fs::metadata(given) {
                let file = (meta.dev(), meta.ino());
                if let Some((_, first)) = files.iter().find(|(seen, _)| *seen == file) {
                    return Err(FollowError::SameFile((*first).clone(), given.clone()));
                }
                files.push((file, given));
            }
            let saved = resume.map_or(&[][..], |c| c.cursors(&path));
            let (path_watched, cursors) = resumed(path, saved, settings, now, &mut notices)?;
            start.paths.push(cursors);
            watched.push(path_watched);
        }
        // Positions of paths not followed this time are kept, so following them again later resumes there
        // instead of sending them again from the start.
        for kept in resume.map_or(&[][..], |c| &c.paths) {
            if !watched.iter().any(|w| w.path == kept.path) && !kept.cursors.is_empty() {
                notices.push(Notice::NotFollowed {
                    path: kept.path.clone(),
                });
                start.paths.push(kept.clone());
            }
        }
        Ok((Follower { watched, settings }, start, notices))
    }

    /// The paths followed, absolute, in the order given: a [`Position`]'s `path` indexes them.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.watched.iter().map(|w| w.path.clone()).collect()
    }

    /// Looks at every path once and hands out what is new, in order: per path, the lines of its old files
    /// first, then those of the file it names. An empty answer means nothing was new; a full one, that more
    /// may be waiting (poll again at once). `now` decides when a rotated file is given up.
    pub fn poll(&mut self, now: Instant) -> Result<Vec<Event>, FollowError> {
        let Settings {
            rotate_wait,
            max_line,
            budget,
        } = self.settings;
        let mut events = Vec::new();
        for (index, watched) in self.watched.iter_mut().enumerate() {
            watched.look(now, rotate_wait, &mut events);
            let path = watched.path.clone();
            let io_error = |source| FollowError::Io {
                path: path.clone(),
                source,
            };
            let mut given_up = Vec::new();
            for (i, old) in watched.old.iter_mut().enumerate() {
                let read = old
                    .source
                    .read(index, &path, max_line, budget, &mut events)
                    .map_err(io_error)?;
                if read > 0 {
                    old.deadline = now + rotate_wait;
                } else if now >= old.deadline {
                    given_up.push(i);
                }
            }
            for i in given_up.into_iter().rev() {
                let mut old = watched.old.remove(i);
                old.source.finish(index, &mut events);
                events.push(Event::Closed {
                    path: index,
                    file: old.source.id,
                });
            }
            if let Some(current) = &mut watched.current {
                if current.truncated().map_err(io_error)? {
                    events.push(Event::Notice(Notice::Truncated {
                        path: path.clone(),
                        at: current.read_at(),
                    }));
                    events.push(current.restart(index));
                }
                current
                    .read(index, &path, max_line, budget, &mut events)
                    .map_err(io_error)?;
            }
        }
        Ok(events)
    }
}

/// A path set up to resume from its `saved` cursors, and the cursors it resumes from: each saved file found by
/// inode, at the path or beside it. The file the path names now, unless saved, is new since and is read from
/// its start (by the first poll, which also opens a file that appears later).
fn resumed(
    path: PathBuf,
    saved: &[Cursor],
    settings: Settings,
    now: Instant,
    notices: &mut Vec<Notice>,
) -> Result<(Watched, PathCursors), FollowError> {
    let mut watched = Watched {
        path,
        current: None,
        old: Vec::new(),
        trouble: None,
        waiting: false,
    };
    let mut cursors = PathCursors {
        path: watched.path.clone(),
        cursors: Vec::new(),
    };
    let named = match std::fs::metadata(&watched.path) {
        Ok(meta) => Some(FileId::of(&meta)),
        Err(e) => {
            let mut events = Vec::new();
            if e.kind() == ErrorKind::NotFound {
                watched.waiting = true;
                let notice = Notice::Missing {
                    path: watched.path.clone(),
                };
                watched.report(notice, &mut events);
            } else {
                watched.unreadable(&e, &mut events);
            }
            notices.extend(events.into_iter().filter_map(|event| match event {
                Event::Notice(notice) => Some(notice),
                _ => None,
            }));
            None
        }
    };
    for cursor in saved {
        let at_path = named == Some(cursor.file);
        let found = if at_path {
            Some(watched.path.clone())
        } else {
            beside(&watched.path, cursor.file)
        };
        let opened = match found.map(|found| Source::open(&found, cursor.offset, Some(cursor.head)))
        {
            Some(Ok(opened)) => Some(opened),
            Some(Err(e)) if e.kind() == ErrorKind::NotFound => None,
            // Dropping its cursor would read it again from the start once it can be read: stop instead.
            Some(Err(source)) => {
                return Err(FollowError::Io {
                    path: watched.path.clone(),
                    source,
                });
            }
            None => None,
        };
        // Beside the path, a file whose start is not the one saved is another file at a reused inode.
        let opened = opened.filter(|(source, truncated)| {
            source.id == cursor.file && (at_path || truncated.is_none())
        });
        let Some((mut source, truncated)) = opened else {
            notices.push(Notice::Gone {
                path: watched.path.clone(),
                file: cursor.file,
                offset: cursor.offset,
            });
            continue;
        };
        let offset = match truncated {
            Some(Notice::Truncated { at, .. }) => {
                notices.push(Notice::Truncated {
                    path: watched.path.clone(),
                    at,
                });
                0
            }
            _ => cursor.offset,
        };
        cursors.cursors.push(Cursor {
            file: source.id,
            offset,
            head: source.head(),
        });
        if at_path {
            watched.current = Some(source);
        } else {
            watched.old.push(Old {
                source,
                deadline: now + settings.rotate_wait,
            });
        }
    }
    Ok((watched, cursors))
}

/// The path of the file `file` in the directory of `path`, where rotation by rename leaves it.
fn beside(path: &Path, file: FileId) -> Option<PathBuf> {
    let entries = std::fs::read_dir(path.parent()?).ok()?;
    entries
        .flatten()
        .find(|entry| entry.metadata().is_ok_and(|meta| FileId::of(&meta) == file))
        .map(|entry| entry.path())
}

#[cfg(test)]
mod tests;
