//! One open file read in lines from a byte offset, with a partial last line held back until its newline comes.

use std::{
    fs::{File, OpenOptions},
    io::{self, ErrorKind},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
    time::SystemTime,
};

use sha2::{Digest, Sha256};

use super::{Event, FileId, Head, Line, Notice, Position};

/// Bytes asked of the kernel per read.
const CHUNK: usize = 64 << 10;

/// Bytes at the start of a file that tell it apart from another one at the same inode, or from itself truncated
/// and written again: a log line's time stamp is usually among them.
const HEAD_BYTES: usize = 64;

/// An open file and how far it was read and taken.
#[derive(Debug)]
pub(super) struct Source {
    file: File,
    /// Which file this is: it stays the same whatever name the file has now.
    pub id: FileId,
    /// The next byte to read.
    read_at: u64,
    /// The offset just after the last line handed out or skipped.
    taken: u64,
    /// Bytes from `taken` up to `read_at`: the start of a line whose newline has not come.
    partial: Vec<u8>,
    /// The line being read is longer than allowed: its bytes are dropped up to its newline.
    discarding: bool,
    /// The first bytes of the file read so far, up to [`HEAD_BYTES`].
    head: Vec<u8>,
    /// The file's size and modification time when its start was last compared with `head`: a file truncated
    /// and written again to the same size has another modification time.
    checked: (u64, Option<SystemTime>),
    /// The hash of `head` once it holds all [`HEAD_BYTES`].
    whole_head: Option<Head>,
}

impl Source {
    /// Opens the regular file at `path` to be read from `offset`; a file shorter than that, or whose start is
    /// not `expected` (when given), is read from 0 and reported as truncated.
    pub fn open(
        path: &Path,
        offset: u64,
        expected: Option<Head>,
    ) -> io::Result<(Source, Option<Notice>)> {
        // Non-blocking, so that a FIFO at the path is refused below instead of blocking the open until a
        // writer comes; a regular file reads the same either way.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut source = Source {
            file,
            id: FileId::of(&meta),
            read_at: offset,
            taken: offset,
            partial: Vec::new(),
            discarding: false,
            head: Vec::new(),
            checked: (meta.len(), meta.modified().ok()),
            whole_head: None,
        };
        let head_len = usize::try_from(offset).map_or(HEAD_BYTES, |o| o.min(HEAD_BYTES));
        source.head = source.start(head_len)?;
        let same =
            meta.len() >= offset && expected.is_none_or(|head| head == source.head_at(offset));
        if same {
            return Ok((source, None));
        }
        source.restart(0);
        let notice = Notice::Truncated {
            path: path.to_path_buf(),
            at: offset,
        };
        Ok((source, Some(notice)))
    }

    /// The first `len` bytes of the file as it is now (fewer if it is shorter).
    fn start(&self, len: usize) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match self.file.read_at(&mut bytes[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        bytes.truncate(filled);
        Ok(bytes)
    }

    /// The start of the file before `offset`, up to [`HEAD_BYTES`]: what a cursor at `offset` saves, and
    /// what [`Source::open`] compares at that offset. Once the whole head was read, its hash is kept.
    pub fn head_at(&mut self, offset: u64) -> Head {
        let len = usize::try_from(offset).map_or(HEAD_BYTES, |o| o.min(HEAD_BYTES));
        let whole = len == HEAD_BYTES && self.head.len() == HEAD_BYTES;
        if whole && let Some(head) = self.whole_head {
            return head;
        }
        let bytes = &self.head[..len.min(self.head.len())];
        let digest = Sha256::digest(bytes);
        let mut sum = [0; 8];
        sum.copy_from_slice(&digest[..8]);
        let head = Head {
            len: bytes.len() as u16,
            sum: u64::from_be_bytes(sum),
        };
        if whole {
            self.whole_head = Some(head);
        }
        head
    }

    /// The start of the file up to where it was read from or taken, as a cursor there saves it.
    pub fn head(&mut self) -> Head {
        self.head_at(self.taken)
    }

    /// How far the file was read.
    pub fn read_at(&self) -> u64 {
        self.read_at
    }

    /// True when the file was truncated: it is shorter than what was read of it, or, since it changed size, its
    /// start is not what was read (truncated and written again past the read position before this look).
    pub fn truncated(&mut self) -> io::Result<bool> {
        let meta = self.file.metadata()?;
        let size = meta.len();
        if size < self.read_at {
            return Ok(true);
        }
        let now = (size, meta.modified().ok());
        if now == self.checked {
            return Ok(false);
        }
        self.checked = now;
        Ok(self.start(self.head.len())? != self.head)
    }

    /// Starts again at byte 0 after a truncation, dropping a partial line read before it (that text is gone
    /// from the file), and says so as a skip back to 0.
    pub fn restart(&mut self, path: usize) -> Event {
        self.read_at = 0;
        self.taken = 0;
        self.partial.clear();
        self.discarding = false;
        self.head.clear();
        self.whole_head = None;
        Event::Skip(self.position(path, 0))
    }

    fn position(&mut self, path: usize, offset: u64) -> Position {
        Position {
            path,
            file: self.id,
            offset,
            head: self.head_at(offset),
        }
    }

    /// Reads what the file holds beyond what was read, and hands out every complete line as an event: until
    /// the end of the file, or until at least `budget` bytes of lines were handed out (then more may be
    /// waiting). A line longer than `max_line` bytes is dropped, with a notice, and skipped past once its
    /// newline comes. Returns the bytes read.
    pub fn read(
        &mut self,
        path: usize,
        name: &Path,
        max_line: usize,
        budget: usize,
        events: &mut Vec<Event>,
    ) -> io::Result<u64> {
        let first = self.read_at;
        let mut handed_out = 0;
        while handed_out < budget {
            let start = self.partial.len();
            self.partial.resize(start + CHUNK, 0);
            let read = self.file.read_at(&mut self.partial[start..], self.read_at);
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    self.partial.truncate(start);
                    continue;
                }
                Err(e) => {
                    self.partial.truncate(start);
                    return Err(e);
                }
            };
            self.partial.truncate(start + n);
            if n == 0 {
                break;
            }
            self.keep_head(start, n);
            self.read_at += n as u64;
            handed_out += self.hand_out_lines(path, start, events);
            if self.discarding {
                self.partial.clear();
            } else if self.partial.len() > max_line {
                events.push(Event::Notice(Notice::TooLong {
                    path: name.to_path_buf(),
                    offset: self.taken,
                    max: max_line,
                }));
                self.discarding = true;
                self.partial.clear();
            }
        }
        Ok(self.read_at - first)
    }

    /// Keeps what of the `n` bytes just read into `partial` at `start` lies within the file's first bytes.
    fn keep_head(&mut self, start: usize, n: usize) {
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        if room > 0 && self.head.len() as u64 == self.read_at {
            self.head
                .extend_from_slice(&self.partial[start..start + n.min(room)]);
        }
    }

    /// Hands out the complete lines in `partial`, whose bytes from `scan_from` on are new; keeps the rest.
    /// Returns the bytes of the lines handed out.
    fn hand_out_lines(&mut self, path: usize, scan_from: usize, events: &mut Vec<Event>) -> usize {
        let mut line_start = 0;
        let mut scan = scan_from;
        let mut handed_out = 0;
        while let Some(newline) = self.partial[scan..].iter().position(|&b| b == b'\n') {
            let end = scan + newline;
            let after = self.read_at - (self.partial.len() - end - 1) as u64;
            let position = self.position(path, after);
            if std::mem::take(&mut self.discarding) {
                events.push(Event::Skip(position));
            } else {
                handed_out += end - line_start;
                events.push(Event::Line(Line {
                    text: self.partial[line_start..end].to_vec(),
                    position,
                }));
            }
            self.taken = after;
            line_start = end + 1;
            scan = line_start;
        }
        self.partial.drain(..line_start);
        handed_out
    }

    /// Hands out a last line that has no newline, when the file is given up: whoever wrote it has moved on.
    pub fn finish(&mut self, path: usize, events: &mut Vec<Event>) {
        let position = self.position(path, self.read_at);
        if std::mem::take(&mut self.discarding) {
            events.push(Event::Skip(position));
        } else if !self.partial.is_empty() {
            events.push(Event::Line(Line {
                text: std::mem::take(&mut self.partial),
                position,
            }));
        }
        self.taken = self.read_at;
    }
}
