//! Raw bytes into both payload decoders, checking they agree: `avro::decode` (JSON values) and
//! `Decoder::decode_text` (JSON text, the server's path). Both must accept or both refuse; when both accept,
//! they hold the same number of records and every line of the text parses back to the same JSON value.
//!
//! Comparing parsed values rather than text lets duplicate map keys through: the value path keeps the last
//! value of a repeated key, the text path writes every pair, and serde_json's parser keeps the last one too.

#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use zavro::avro::{self, Decoder};

static LIMIT: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    LIMIT.call_once(avro::limit_decode_allocations);
    let values = avro::decode(data);
    let text = Decoder::new().decode_text(data);
    match (values, text) {
        (Ok(values), Ok(text)) => {
            assert_eq!(text.records, values.len(), "record counts differ");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), values.len(), "line count differs from record count");
            for (i, (line, value)) in lines.iter().zip(&values).enumerate() {
                let mut de = serde_json::Deserializer::from_str(line);
                de.disable_recursion_limit();
                let parsed = Value::deserialize(&mut de)
                    .unwrap_or_else(|e| panic!("record {i}: decode_text wrote invalid JSON ({e}): {line}"));
                de.end()
                    .unwrap_or_else(|e| panic!("record {i}: trailing text after the JSON value ({e}): {line}"));
                assert_eq!(&parsed, value, "record {i}: text {line} differs from the decoded value");
            }
            let _ = text.to_json_array();
        }
        (Err(_), Err(_)) => {}
        (values, text) => panic!(
            "decode and decode_text disagree: decode gave {:?}, decode_text gave {:?}",
            values.map(|v| v.len()),
            text.map(|t| t.records)
        ),
    }
});
