//! Where accepted records go once committed: appended to a file, where a group's lines are written whole or not
//! at all (a full disk never leaves half a line), or to a stream such as stdout.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// The records output of a server.
pub struct RecordsOut {
    sink: Sink,
    /// A group's lines, gathered so a file gets them in one write.
    buffer: Vec<u8>,
}

enum Sink {
    File {
        file: File,
        path: PathBuf,
        /// The file's length before the group being written: what a failed write is cut back to.
        len: u64,
    },
    Stream(Box<dyn Write + Send>),
}

impl RecordsOut {
    /// Appends to the file at `path`, created with mode 0600 (private like the store it copies from) unless it
    /// exists.
    pub fn append_to(path: &Path) -> io::Result<RecordsOut> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(RecordsOut {
            sink: Sink::File {
                file,
                path: path.to_owned(),
                len,
            },
            buffer: Vec::new(),
        })
    }

    /// Writes to a stream, flushed after each group.
    pub fn stream(out: impl Write + Send + 'static) -> RecordsOut {
        RecordsOut {
            sink: Sink::Stream(Box::new(out)),
            buffer: Vec::new(),
        }
    }

    /// What the records go to, for messages.
    pub fn name(&self) -> String {
        match &self.sink {
            Sink::File { path, .. } => path.display().to_string(),
            Sink::Stream(_) => "the output".to_owned(),
        }
    }

    /// True when a failed write is cut back to the last whole line (a file, not a stream).
    pub fn cuts_back_failed_writes(&self) -> bool {
        matches!(self.sink, Sink::File { .. })
    }

    /// Writes a group's lines. To a file, they go in one write, and a write that fails (a full disk) is cut
    /// back so the file ends with the previous group's last whole line.
    pub fn write_group<'a>(&mut self, texts: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
        match &mut self.sink {
            Sink::File { file, len, .. } => {
                self.buffer.clear();
                for text in texts {
                    self.buffer.extend_from_slice(text);
                }
                if self.buffer.is_empty() {
                    return Ok(());
                }
                // Read again rather than counted: something else (logrotate's copytruncate) may have cut it.
                *len = file.metadata()?.len();
                match file.write_all(&self.buffer) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // Best effort: if even the cut fails, the error below still stops the server.
                        let _ = file.set_len(*len);
                        Err(e)
                    }
                }
            }
            Sink::Stream(out) => {
                for text in texts {
                    out.write_all(text)?;
                }
                out.flush()
            }
        }
    }
}
