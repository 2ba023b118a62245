//! Raw bytes straight into the server's payload decoder, `Decoder::decode_request`, as if they were a request's
//! third frame, after `avro::limit_decode_allocations()` once, as `zavro serve` does.
//!
//! When the decoder accepts, its output must be what a consumer of the server can read: as many lines as
//! records, each line exactly one JSON value. For zavro's JSON schema it must also be stable: the values the
//! lines hold, encoded again and decoded again, come back as exactly their own JSON text. Comparing with the
//! parsed values, not the first text, lets a repeated map key through: the decoder writes every pair and
//! serde_json's parser keeps the last.

#![no_main]

use std::sync::{LazyLock, Once};

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use zavro::avro::{self, Decoder};

static LIMIT: Once = Once::new();

/// The Parsing Canonical Form of zavro's JSON schema, to tell its payloads from other schemas'.
static JSON_CANONICAL: LazyLock<String> = LazyLock::new(|| {
    let schema =
        apache_avro::Schema::parse_str(avro::JSON_SCHEMA).expect("the built-in schema parses");
    avro::canonical_form(&schema)
});

/// One JSON value and nothing after it, at any depth: zavro's nesting limit is one more level than
/// serde_json's own recursion limit.
fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

fuzz_target!(|data: &[u8]| {
    LIMIT.call_once(avro::limit_decode_allocations);
    let decoded = Decoder::new().decode_request(data);
    let Ok(records) = decoded.records else {
        return;
    };
    let lines: Vec<&str> = records.lines().collect();
    assert_eq!(
        lines.len(),
        records.records,
        "line count differs from record count"
    );
    let values: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            parse(line).unwrap_or_else(|e| panic!("record {i}: not one JSON value ({e}): {line}"))
        })
        .collect();

    let json_schema = decoded
        .schema
        .is_some_and(|schema| schema.canonical == *JSON_CANONICAL);
    if json_schema {
        let again = avro::encode(&values)
            .unwrap_or_else(|e| panic!("decoded records do not encode again: {e}"));
        let again = Decoder::new()
            .decode_request(&again)
            .records
            .unwrap_or_else(|e| panic!("re-encoded records do not decode: {e}"));
        let expected: Vec<String> = values
            .iter()
            .map(|v| serde_json::to_string(v).expect("JSON values serialize"))
            .collect();
        assert_eq!(
            again.lines().collect::<Vec<_>>(),
            expected,
            "records changed on a second round trip"
        );
    }
});
