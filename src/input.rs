//! Reading records from JSON text as a stream: one value, an array of records, or many values one per line
//! (NDJSON), in bounded memory whatever the length of the input.
//!
//! The text is read in blocks into one buffer and parsed from the slice (serde_json parses a slice several
//! times faster than a reader, byte by byte). A block is parsed only up to its last white space, so a value is
//! never taken for whole because the block ended inside it (`12` of `1234`); a value cut by the block's end is
//! parsed again once more text is in. Errors name the line and column in the whole input, as serde_json does.

use std::{collections::VecDeque, io::Read, ops::Range};

use serde::de::DeserializeOwned;
use serde_json::{Deserializer, Value};

/// Bytes read from the input at a time (the buffer grows for a longer value).
const BLOCK: usize = 64 << 10;

/// Why standard input could not be read as records.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The text is not JSON; serde_json's message names line and column.
    #[error("stdin is not valid JSON: record {record}: {message}")]
    NotJson {
        /// 1-based index of the record being read.
        record: usize,
        /// serde_json's message, which names line and column in the whole input.
        message: String,
    },
    /// `--format avro` input is not a readable Avro object container file.
    #[error("stdin is not an Avro object container file: {0}")]
    NotAvro(String),
    /// There was nothing but white space.
    #[error("stdin holds no JSON records")]
    Empty,
    /// Reading standard input failed.
    #[error("cannot read stdin: {0}")]
    Read(#[from] std::io::Error),
}

/// One record as the input gives it.
#[derive(Debug, PartialEq)]
pub enum Record<T> {
    /// Parsed from the text as `T` (its text is [`Records::last_text`] until the next record is read).
    Parsed(T),
    /// An element of a lone top-level array, which was read whole as a tree.
    Tree(Value),
}

/// The records of a JSON text, one at a time.
///
/// The text is a sequence of JSON values separated by white space, which covers NDJSON. When it holds exactly
/// one value and that value is an array, the array's elements are the records (that array is held in memory
/// whole; use NDJSON for large inputs); every other value is one record.
pub struct Records<R: Read> {
    reader: R,
    /// Text read and not yet discarded; `buf[..filled]` holds input.
    buf: Vec<u8>,
    filled: usize,
    /// Where the next value starts to be looked for.
    pos: usize,
    /// Text is parsed up to here: just after the last white space read, or all of it at the end of input.
    cut: usize,
    /// The input has ended (a read gave nothing).
    eof: bool,
    /// Bytes of input discarded before `buf[0]`.
    discarded: usize,
    /// Line breaks in the discarded input, and bytes after the last of them.
    discarded_lines: usize,
    discarded_column: usize,
    /// The text of the last record parsed, in `buf`.
    last: Range<usize>,
    /// The first value was looked at (to decide whether a lone array is a batch of records).
    started: bool,
    /// Elements of a lone top-level array not handed out yet.
    queued: VecDeque<Value>,
    /// A record parsed after the first value, to hand out after it.
    pending: Option<Value>,
    /// The text was found bad (or unreadable): nothing more is parsed.
    failed: bool,
    number: usize,
}

impl<R: Read> Records<R> {
    /// Reads records from `reader` (it is read in large blocks; there is no need to buffer it).
    pub fn new(reader: R) -> Self {
        Self::with_block(reader, BLOCK)
    }

    /// Reads `reader` `block` bytes at a time (at first: the buffer grows for longer values).
    fn with_block(reader: R, block: usize) -> Self {
        Records {
            reader,
            buf: vec![0; block.max(1)],
            filled: 0,
            pos: 0,
            cut: 0,
            eof: false,
            discarded: 0,
            discarded_lines: 0,
            discarded_column: 0,
            last: 0..0,
            started: false,
            queued: VecDeque::new(),
            pending: None,
            failed: false,
            number: 0,
        }
    }

    /// How many records have been handed out so far.
    pub fn records_read(&self) -> usize {
        self.number
    }

    /// Bytes of JSON text consumed so far, up to the end of the last value parsed (for a lone top-level array,
    /// the whole array).
    pub fn bytes_read(&self) -> usize {
        self.discarded + self.pos
    }

    /// The text of the last record parsed from the text (not of an element of a lone array).
    pub fn last_text(&self) -> &[u8] {
        &self.buf[self.last.clone()]
    }

    /// The next record, parsed as `T` from the text, or as a tree when it is an element of a lone top-level
    /// array or the value after such an array; `None` at the end.
    pub fn next_record<T: DeserializeOwned>(&mut self) -> Option<Result<Record<T>, InputError>> {
        if !self.started
            && let Err(e) = self.start()
        {
            return Some(Err(e));
        }
        let record = match self.queued.pop_front() {
            Some(value) => Ok(Record::Tree(value)),
            None => match self.pending.take() {
                Some(value) => Ok(Record::Tree(value)),
                None => self.parse::<T>()?.map(Record::Parsed),
            },
        };
        if record.is_ok() {
            self.number += 1;
        }
        Some(record)
    }

    /// Looks at the first one or two values to decide whether a lone top-level array is a batch of records.
    fn start(&mut self) -> Result<(), InputError> {
        self.started = true;
        if self.peek()? != Some(b'[') {
            return match self.peek()? {
                None => Err(InputError::Empty),
                Some(_) => Ok(()),
            };
        }
        let first = self.parse::<Value>().transpose()?;
        let Some(first) = first else {
            return Err(InputError::Empty);
        };
        match self.parse::<Value>().transpose()? {
            Some(second) => {
                self.queued.push_back(first);
                self.pending = Some(second);
                Ok(())
            }
            None => match first {
                Value::Array(items) if items.is_empty() => Err(InputError::Empty),
                Value::Array(items) => {
                    self.queued.extend(items);
                    Ok(())
                }
                _ => unreachable!("it starts with ["),
            },
        }
    }

    /// The first byte of the next value, reading as needed; `None` when only white space is left.
    fn peek(&mut self) -> Result<Option<u8>, InputError> {
        loop {
            if let Some(at) = self.buf[self.pos..self.filled]
                .iter()
                .position(|&b| !is_space(b))
            {
                return Ok(Some(self.buf[self.pos + at]));
            }
            self.pos = self.filled;
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Parses the next value from the text; `None` at the end of input.
    fn parse<T: DeserializeOwned>(&mut self) -> Option<Result<T, InputError>> {
        if self.failed {
            return None;
        }
        loop {
            let window = &self.buf[self.pos..self.cut];
            let mut values = Deserializer::from_slice(window).into_iter::<T>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    let blank = window[..used].iter().take_while(|&&b| is_space(b)).count();
                    self.last = self.pos + blank..self.pos + used;
                    self.pos += used;
                    return Some(Ok(value));
                }
                Some(Err(e)) if !e.is_eof() || self.at_end() => {
                    self.failed = true;
                    return Some(Err(self.positioned(&e)));
                }
                // Only white space in the window: nothing of it is needed any more.
                None if self.at_end() => return None,
                None => self.pos = self.cut,
                // A value cut by the end of the window: it is parsed again with more text.
                Some(Err(_)) => {}
            }
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }

    /// True when the window holds the rest of the input.
    fn at_end(&self) -> bool {
        self.eof && self.cut == self.filled
    }

    /// Drops the text before `pos` and reads one more block (growing the buffer when it is full), then moves the
    /// window's end to the last white space read (or to the end of input).
    fn fill(&mut self) -> Result<(), InputError> {
        let keep = self.pos;
        self.last = 0..0;
        if keep > 0 {
            let dropped = &self.buf[..keep];
            match memchr::memrchr(b'\n', dropped) {
                Some(at) => {
                    self.discarded_lines += memchr::memchr_iter(b'\n', dropped).count();
                    self.discarded_column = keep - at - 1;
                }
                None => self.discarded_column += keep,
            }
            self.discarded += keep;
            self.buf.copy_within(keep..self.filled, 0);
            self.filled -= keep;
            self.pos -= keep;
        }
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.filled += n;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(InputError::Read(e)),
            }
        }
        self.cut = if self.eof {
            self.filled
        } else {
            self.buf[self.pos..self.filled]
                .iter()
                .rposition(|&b| is_space(b))
                .map_or(self.pos, |at| self.pos + at + 1)
        };
        Ok(())
    }

    /// serde_json's error for the window, with its line and column made those of the whole input.
    fn positioned(&self, e: &serde_json::Error) -> InputError {
        let record = self.number + self.queued.len() + 1;
        let text = e.to_string();
        if e.line() == 0 {
            return InputError::NotJson {
                record,
                message: text,
            };
        }
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let what = text.strip_suffix(&suffix).unwrap_or(&text);
        let before = &self.buf[..self.pos];
        let lines = self.discarded_lines + memchr::memchr_iter(b'\n', before).count();
        let column = match memchr::memrchr(b'\n', before) {
            Some(at) => self.pos - at - 1,
            None => self.discarded_column + self.pos,
        };
        let (line, column) = if e.line() == 1 {
            (lines + 1, column + e.column())
        } else {
            (lines + e.line(), e.column())
        };
        InputError::NotJson {
            record,
            message: format!("{what} at line {line} column {column}"),
        }
    }
}

/// JSON's white space (not the form feed and vertical tab of ASCII's).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Value, InputError>;

    /// Every record as a tree.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_record::<Value>()?.map(|record| match record {
            Record::Parsed(value) | Record::Tree(value) => value,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a whole JSON text into records.
    fn parse_records(text: &str) -> Result<Vec<Value>, InputError> {
        Records::new(text.as_bytes()).collect()
    }
    use serde_json::json;

    #[test]
    fn one_object_is_one_record() {
        assert_eq!(
            parse_records(r#" {"a": 1} "#).unwrap(),
            vec![json!({"a": 1})]
        );
    }

    #[test]
    fn a_top_level_array_is_a_batch_of_records() {
        assert_eq!(
            parse_records("[1, {\"b\": 2}]").unwrap(),
            vec![json!(1), json!({"b": 2})]
        );
    }

    #[test]
    fn ndjson_lines_are_records_even_when_they_are_arrays() {
        let text = "{\"a\":1}\n[1,2]\n\"s\"\n";
        assert_eq!(
            parse_records(text).unwrap(),
            vec![json!({"a": 1}), json!([1, 2]), json!("s")]
        );
        assert_eq!(
            parse_records("[1]\n[2]").unwrap(),
            vec![json!([1]), json!([2])],
            "two arrays are two records"
        );
    }

    #[test]
    fn bad_json_names_the_record_and_line() {
        let err = parse_records("{\"a\":1}\n{\"b\":}\n").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("record 2") && message.contains("line 2"),
            "{message}"
        );
    }

    #[test]
    fn records_stream_before_a_later_error() {
        let mut records = Records::new("1\n2\nnope".as_bytes());
        assert_eq!(records.next().unwrap().unwrap(), json!(1));
        assert_eq!(records.next().unwrap().unwrap(), json!(2));
        assert!(records.next().unwrap().is_err());
        assert_eq!(records.records_read(), 2);
    }

    /// The reader before this one: serde_json's stream of values over the reader, byte by byte.
    fn old_records(text: &[u8]) -> Vec<Result<Value, String>> {
        let mut values = Deserializer::from_reader(text).into_iter::<Value>();
        let mut out = Vec::new();
        let mut queued: VecDeque<Value> = VecDeque::new();
        let not_json = |record: usize, e: serde_json::Error| {
            Err(format!("stdin is not valid JSON: record {record}: {e}"))
        };
        match values.next() {
            None => return vec![Err(InputError::Empty.to_string())],
            Some(Err(e)) => return vec![not_json(1, e)],
            Some(Ok(first)) if first.is_array() => match values.next() {
                Some(Err(e)) => return vec![not_json(1, e)],
                Some(Ok(second)) => queued.extend([first, second]),
                None => match first {
                    Value::Array(items) if items.is_empty() => {
                        return vec![Err(InputError::Empty.to_string())];
                    }
                    Value::Array(items) => queued.extend(items),
                    _ => unreachable!(),
                },
            },
            Some(Ok(first)) => queued.push_back(first),
        }
        loop {
            if let Some(value) = queued.pop_front() {
                out.push(Ok(value));
                continue;
            }
            match values.next() {
                None => return out,
                Some(Ok(value)) => out.push(Ok(value)),
                Some(Err(e)) => {
                    let record = out.len() + 1;
                    out.push(not_json(record, e));
                    return out;
                }
            }
        }
    }

    fn new_records(text: &[u8], block: usize) -> Vec<Result<Value, String>> {
        let mut out = Vec::new();
        for record in Records::with_block(text, block) {
            let failed = record.is_err();
            out.push(record.map_err(|e| e.to_string()));
            if failed {
                break;
            }
        }
        out
    }

    fn piece() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("{\"a\": 1}".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("[]".to_owned()),
            Just("12345".to_owned()),
            Just("-1.5e3".to_owned()),
            Just("\"s\\u00e9 t\"".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("{\"nested\": {\"b\": [true, null, \"x y\"]}}".to_owned()),
            "[ \n\t\r]{1,3}",
            "[\\[\\]{}:,\"0-9a-z.\\\\-]",
            "\\PC{1,3}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn records_and_errors_are_those_of_the_reader_before_whatever_the_block_size(
            pieces in proptest::collection::vec(piece(), 0..12),
            block in 1usize..40,
        ) {
            let text = pieces.concat();
            proptest::prop_assert_eq!(
                new_records(text.as_bytes(), block),
                old_records(text.as_bytes()),
                "{:?}",
                text
            );
        }
    }

    #[test]
    fn errors_name_the_line_and_column_in_the_whole_input() {
        let text = format!("{}\n{{\"b\": [1,\n 2, }}", "{\"a\": 1}\n".repeat(1000));
        for block in [1, 7, 64, BLOCK] {
            let records = new_records(text.as_bytes(), block);
            let error = records.last().unwrap().as_ref().unwrap_err();
            assert_eq!(
                Err(error.clone()),
                old_records(text.as_bytes()).pop().unwrap(),
                "block {block}"
            );
            assert!(
                error.ends_with("record 1001: expected value at line 1003 column 5"),
                "{error}"
            );
        }
    }

    #[test]
    fn empty_input_and_empty_array_are_errors() {
        assert!(matches!(parse_records("  \n"), Err(InputError::Empty)));
        assert!(matches!(parse_records("[]"), Err(InputError::Empty)));
    }
}
