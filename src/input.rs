//! Reading records from JSON text: one value, an array of records, or many values one per line (NDJSON).

use serde_json::{Deserializer, Value};

/// Why standard input could not be read as records.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The text is not JSON; `line` and `column` point at the problem.
    #[error("stdin is not valid JSON: record {record}: {source}")]
    NotJson {
        /// 1-based index of the record being read.
        record: usize,
        /// serde_json's error, which names line and column.
        source: serde_json::Error,
    },
    /// There was nothing but white space.
    #[error("stdin holds no JSON records")]
    Empty,
    /// Reading standard input failed.
    #[error("cannot read stdin: {0}")]
    Read(#[from] std::io::Error),
}

/// Splits JSON text into records.
///
/// The text is a sequence of JSON values separated by white space, which covers NDJSON. When it holds exactly
/// one value and that value is an array, the array's elements are the records; every other value is one record.
pub fn parse_records(text: &str) -> Result<Vec<Value>, InputError> {
    let mut values = Vec::new();
    for (i, value) in Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        values.push(value.map_err(|source| InputError::NotJson {
            record: i + 1,
            source,
        })?);
    }
    let records = match values.as_slice() {
        [Value::Array(_)] => match values.pop() {
            Some(Value::Array(items)) => items,
            _ => unreachable!("matched a single array above"),
        },
        _ => values,
    };
    if records.is_empty() {
        return Err(InputError::Empty);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn empty_input_and_empty_array_are_errors() {
        assert!(matches!(parse_records("  \n"), Err(InputError::Empty)));
        assert!(matches!(parse_records("[]"), Err(InputError::Empty)));
    }
}
