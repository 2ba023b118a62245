//! One open file read in lines from a byte offset, with a partial last line held back until its newline comes.

use std::{
    fs::{File, OpenOptions},
    io::{self, ErrorKind},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
};

use super::{Event, FileId, Line, Notice, Position};

/// Bytes asked of the kernel per read.
const CHUNK: usize = 64 << 10;

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
}

impl Source {
    /// Opens the regular file at `path` to be read from `offset`; a file shorter than that is read from 0 and
    /// reported as truncated.
    pub fn open(path: &Path, offset: u64) -> io::Result<(Source, Option<Notice>)> {
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
        let (offset, notice) = if meta.len() < offset {
            (
                0,
                Some(Notice::Truncated {
                    path: path.to_path_buf(),
                    at: offset,
                }),
            )
        } else {
            (offset, None)
        };
        let source = Source {
            file,
            id: FileId::of(&meta),
            read_at: offset,
            taken: offset,
            partial: Vec::new(),
            discarding: false,
        };
        Ok((source, notice))
    }

    /// How far the file was read.
    pub fn read_at(&self) -> u64 {
        self.read_at
    }

    /// True when the file is now shorter than what was read of it: it was truncated.
    pub fn truncated(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() < self.read_at)
    }

    /// Starts again at byte 0 after a truncation, dropping a partial line read before it (that text is gone
    /// from the file), and says so as a skip back to 0.
    pub fn restart(&mut self, path: usize) -> Event {
        self.read_at = 0;
        self.taken = 0;
        self.partial.clear();
        self.discarding = false;
        Event::Skip(self.position(path, 0))
    }

    fn position(&self, path: usize, offset: u64) -> Position {
        Position {
            path,
            file: self.id,
            offset,
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
