//! Reading records from JSON text as a stream: one value, an array of records, or many values one per line
//! (NDJSON), in bounded memory whatever the length of the input.

use std::{collections::VecDeque, io::Read};

use serde_json::{Deserializer, Value, de::IoRead};

/// Why standard input could not be read as records.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The text is not JSON; serde_json's message names line and column.
    #[error("stdin is not valid JSON: record {record}: {source}")]
    NotJson {
        /// 1-based index of the record being read.
        record: usize,
        /// serde_json's error, which names line and column.
        source: serde_json::Error,
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

/// The records of a JSON text, one at a time.
///
/// The text is a sequence of JSON values separated by white space, which covers NDJSON. When it holds exactly
/// one value and that value is an array, the array's elements are the records (that array is held in memory
/// whole; use NDJSON for large inputs); every other value is one record.
pub struct Records<R: Read> {
    values: serde_json::StreamDeserializer<'static, IoRead<R>, Value>,
    queued: VecDeque<Value>,
    started: bool,
    number: usize,
}

impl<R: Read> Records<R> {
    /// Reads records from `reader` (buffer it: serde_json reads byte by byte).
    pub fn new(reader: R) -> Self {
        Records {
            values: Deserializer::from_reader(reader).into_iter(),
            queued: VecDeque::new(),
            started: false,
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
        self.values.byte_offset()
    }

    fn next_value(&mut self) -> Option<Result<Value, InputError>> {
        self.values.next().map(|value| {
            value.map_err(|source| {
                if source.is_io() {
                    InputError::Read(source.into())
                } else {
                    InputError::NotJson {
                        record: self.number + self.queued.len() + 1,
                        source,
                    }
                }
            })
        })
    }

    /// Looks at the first one or two values to decide whether a lone top-level array is a batch of records.
    fn start(&mut self) -> Result<(), InputError> {
        self.started = true;
        let Some(first) = self.next_value().transpose()? else {
            return Err(InputError::Empty);
        };
        if !first.is_array() {
            self.queued.push_back(first);
            return Ok(());
        }
        match self.next_value().transpose()? {
            Some(second) => self.queued.extend([first, second]),
            None => match first {
                Value::Array(items) if items.is_empty() => return Err(InputError::Empty),
                Value::Array(items) => self.queued.extend(items),
                _ => unreachable!("checked to be an array"),
            },
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Value, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started
            && let Err(e) = self.start()
        {
            return Some(Err(e));
        }
        let value = match self.queued.pop_front() {
            Some(value) => Ok(value),
            None => self.next_value()?,
        };
        if value.is_ok() {
            self.number += 1;
        }
        Some(value)
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

    #[test]
    fn empty_input_and_empty_array_are_errors() {
        assert!(matches!(parse_records("  \n"), Err(InputError::Empty)));
        assert!(matches!(parse_records("[]"), Err(InputError::Empty)));
    }
}
