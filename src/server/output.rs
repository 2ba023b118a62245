//! Where accepted records go once committed: appended to a file, where a group's lines are written whole or not
//! at all (a full disk never leaves half a line), or to a stream such as stdout.

use std::{
    fs::{File, OpenOptions},
    io::{self, IoSlice, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// The records output of a server.
pub struct RecordsOut {
    sink: Sink,
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
        })
    }

    /// Writes to a stream, flushed after each group.
    pub fn stream(out: impl Write + Send + 'static) -> RecordsOut {
        RecordsOut {
            sink: Sink::Stream(Box::new(out)),
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

    /// Writes a group's lines. To a file, they go in one gathering write (writev(2): each request's lines from
    /// where they are, rather than copied into one buffer first), and a write that fails (a full disk) is cut
    /// back so the file ends with the previous group's last whole line.
    pub fn write_group<'a>(&mut self, texts: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
        match &mut self.sink {
            Sink::File { file, len, .. } => {
                let mut slices: Vec<IoSlice> = texts
                    .filter(|text| !text.is_empty())
                    .map(IoSlice::new)
                    .collect();
                if slices.is_empty() {
                    return Ok(());
                }
                // Read again rather than counted: something else (logrotate's copytruncate) may have cut it.
                *len = file.metadata()?.len();
                match write_all_vectored(file, &mut slices) {
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

/// Writes all of `slices`, as few writev(2) calls as the kernel allows (one, unless it takes part of them, or
/// there are more than `IOV_MAX`, which std passes on at most); `Write::write_all_vectored` is not stable yet.
fn write_all_vectored(out: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `at_most` bytes per call, from the first slice only, as a kernel may.
    struct Dribble {
        taken: Vec<u8>,
        at_most: usize,
    }

    impl Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.at_most);
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_group_goes_to_the_file_whole_and_in_order_after_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, b"0\n").unwrap();
        let mut out = RecordsOut::append_to(&path).unwrap();
        let texts: Vec<Vec<u8>> = (1..=300)
            .map(|i| format!("{i}\n{i}\n").into_bytes())
            .collect();
        let with_empty = texts.iter().map(Vec::as_slice).chain([b"".as_slice()]);
        out.write_group(with_empty).unwrap();
        out.write_group(std::iter::empty()).unwrap();
        let expected: Vec<u8> = [b"0\n".to_vec()]
            .into_iter()
            .chain(texts)
            .flatten()
            .collect();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn short_writes_are_taken_up_where_they_stopped() {
        let texts: [&[u8]; 4] = [b"abc\n", b"", b"de\n", b"fghij\n"];
        for at_most in 1..8 {
            let mut out = Dribble {
                taken: Vec::new(),
                at_most,
            };
            let mut slices: Vec<IoSlice> = texts.iter().map(|t| IoSlice::new(t)).collect();
            write_all_vectored(&mut out, &mut slices).unwrap();
            assert_eq!(out.taken, b"abc\nde\nfghij\n", "{at_most} bytes a call");
        }
    }
}
