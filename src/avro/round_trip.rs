//! Encoding then decoding: any JSON value Avro can carry comes back from send-side encoding and server-side
//! decoding as the same JSON text, key order and number kinds included; apache-avro reads what zavro writes
//! and zavro reads what apache-avro writes.

use apache_avro::{Codec, Reader, Writer};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

use super::{decode::decode_values, *};

#[test]
fn any_json_round_trips_with_key_order_and_number_kinds() {
    let records = vec![
        json!({"indicator": "power", "timestamp": 1700000000, "value": 5.3}),
        json!({"z": 1, "a": [1, 2.5, "x", null, true, {"nested": {"deep": []}}], "": {}}),
        json!(-9223372036854775808i64),
        json!(1.0),
        json!("unicode ☃ \u{0} \"quoted\""),
        json!(null),
        json!([]),
    ];
    let bytes = encode(&records).unwrap();
    let back = decode_values(&bytes).unwrap();
    assert_eq!(back, records);
    // Key order is kept, not only map equality.
    assert_eq!(
        serde_json::to_string(&back[1]).unwrap(),
        serde_json::to_string(&records[1]).unwrap()
    );
    assert!(back[0]["timestamp"].is_i64());
    assert!(back[3].is_f64());
}

#[test]
fn apache_avro_reads_what_we_write_and_we_read_what_it_writes() {
    let records = vec![json!({"a": [1, 2.5, "x"]}), json!(null)];
    let ours = encode_with_codec(&records, Codec::Deflate(Default::default())).unwrap();
    assert_eq!(Reader::new(&ours[..]).unwrap().count(), 2);

    let mut writer = Writer::with_codec(
        &JSON_SCHEMA_PARSED,
        Vec::new(),
        Codec::Deflate(Default::default()),
    )
    .unwrap();
    for record in &records {
        writer.append_ser(json::Record(record)).unwrap();
    }
    let theirs = writer.into_inner().unwrap();
    assert_eq!(decode_values(&theirs).unwrap(), records);
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)].prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        prop_oneof![Just(1.0), Just(-0.0), Just(1e300), Just(5e-324), Just(0.1)]
            .prop_map(|f: f64| Value::Number(Number::from_f64(f).unwrap())),
        ".*".prop_map(Value::String),
        "[\"\\\\\\u{0}-\\u{1f}\\u{7f}\\u{2028}\\u{fffd}☃😀]{0,8}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("(|.*)", inner), 0..6).prop_map(|entries| {
                let mut map = Map::new();
                for (key, value) in entries {
                    map.insert(key, value);
                }
                Value::Object(map)
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_json_comes_back_as_the_same_text(records in prop::collection::vec(json(), 1..8)) {
        let payload = encode(&records).unwrap();
        let text = Decoder::new().decode_request(&payload).records.unwrap();
        let expected: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        prop_assert_eq!(text.lines().collect::<Vec<_>>(), expected);
        prop_assert_eq!(decode_values(&payload).unwrap(), records);
    }
}

#[test]
fn nesting_up_to_the_parsers_limit_comes_back() {
    // serde_json refuses to parse deeper than 128 levels; everything it parses must come back.
    let depth = 127;
    let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let value: Value = serde_json::from_str(&text).unwrap();
    let payload = encode(&[value]).unwrap();
    assert_eq!(
        Decoder::new()
            .decode_request(&payload)
            .records
            .unwrap()
            .lines()
            .next(),
        Some(text.as_str())
    );
}
