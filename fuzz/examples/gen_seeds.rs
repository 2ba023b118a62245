//! Writes seed inputs for the fuzz targets: `cargo run --example gen_seeds -- DIR` creates `DIR/request/*`,
//! and the same payloads in `DIR/avro_decode/*` (by default DIR is `seeds`).
//!
//! Avro container files carry a random sync marker, so every run writes different bytes; the committed
//! files in `seeds/` are one such run.

use std::{fs, path::PathBuf};

use serde_json::{Value, json};
use zavro::{avro, protocol::Request};
use zavro_fuzz::{KEY, SECRET, join_frames};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));
    let mut deep = json!(1);
    for _ in 0..16 {
        deep = json!({"d": [deep]});
    }
    let payloads: Vec<(&str, Vec<Value>)> = vec![
        ("one_record", vec![json!({"indicator": "power", "value": 5.3})]),
        (
            "mixed",
            vec![
                json!({"z": 1, "a": [1, 2.5, "x", null, true, {"n": {}}], "": []}),
                json!(-9223372036854775808i64),
                json!("unicode \u{2603}"),
                json!(null),
            ],
        ),
        ("empty", vec![]),
        ("nested", vec![deep]),
    ];
    let request_dir = dir.join("request");
    let avro_dir = dir.join("avro_decode");
    fs::create_dir_all(&request_dir).unwrap();
    fs::create_dir_all(&avro_dir).unwrap();
    for (i, (name, records)) in payloads.iter().enumerate() {
        let payload = avro::encode(records).unwrap();
        assert_eq!(decoded_lines(&payload), json_lines(records));
        fs::write(avro_dir.join(name), &payload).unwrap();
        let nonce = format!("fuzzseed{i:08}");
        let request = Request::sign(KEY, SECRET, 1_700_000_000 + i as i64, &nonce, payload);
        let frames = request.to_frames().to_vec();
        let input = join_frames(&frames);
        assert_eq!(zavro_fuzz::split_frames(&input), frames);
        fs::write(request_dir.join(name), input).unwrap();
    }
    // The same records in a deflate-compressed block, for the decompression path.
    let deflated = avro::encode_with_codec(
        &payloads[1].1,
        apache_avro::Codec::Deflate(Default::default()),
    )
    .unwrap();
    assert_eq!(decoded_lines(&deflated), json_lines(&payloads[1].1));
    fs::write(avro_dir.join("mixed_deflate"), deflated).unwrap();
    // A payload of another (flat) writer schema, for the generic path: logical types, enum, fixed, map, union.
    let generic = generic_payload();
    fs::write(avro_dir.join("generic"), &generic).unwrap();
    let request = Request::sign(KEY, SECRET, 1_700_000_200, "fuzzseedgeneric0", generic);
    fs::write(request_dir.join("generic"), join_frames(&request.to_frames())).unwrap();
    // A request whose signature does not verify: the fuzzer reaches the `false` branch of verify directly.
    let payload = avro::encode(&[json!({"a": 1})]).unwrap();
    let request = Request::sign(KEY, b"another secret", 1_700_000_100, "fuzzseedbadsig00", payload);
    fs::write(request_dir.join("bad_signature"), join_frames(&request.to_frames())).unwrap();
    println!("wrote seeds under {}", dir.display());
}

/// A container file of a non-JSON flat schema, written by apache-avro's own `Writer`.
fn generic_payload() -> Vec<u8> {
    use apache_avro::{Decimal, Schema, Writer, types::Value as Avro};
    let schema = Schema::parse_str(
        r#"{"type":"record","name":"Reading","namespace":"fuzz","fields":[
            {"name":"id","type":"long"},
            {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"day","type":{"type":"int","logicalType":"date"}},
            {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
            {"name":"tag","type":{"type":"fixed","name":"Tag","size":4}},
            {"name":"labels","type":{"type":"map","values":"string"}},
            {"name":"note","type":["null","string"]},
            {"name":"values","type":{"type":"array","items":"double"}}]}"#,
    )
    .unwrap();
    let mut writer = Writer::new(&schema, Vec::new()).unwrap();
    for i in 0..2i64 {
        writer
            .append_value(Avro::Record(vec![
                ("id".into(), Avro::Long(i)),
                ("at".into(), Avro::TimestampMillis(1_700_000_000_000 + i)),
                ("day".into(), Avro::Date(19_000)),
                ("amount".into(), Avro::Decimal(Decimal::from(vec![0x01, 0x2c]))),
                ("kind".into(), Avro::Enum(1, "B".into())),
                ("tag".into(), Avro::Fixed(4, vec![0, 1, 2, 255])),
                (
                    "labels".into(),
                    Avro::Map([("site".to_owned(), Avro::String("x".into()))].into()),
                ),
                ("note".into(), Avro::Union(1, Box::new(Avro::String("n".into())))),
                ("values".into(), Avro::Array(vec![Avro::Double(1.5), Avro::Double(-0.0)])),
            ]))
            .unwrap();
    }
    let bytes = writer.into_inner().unwrap();
    assert_eq!(decoded_lines(&bytes).len(), 2);
    bytes
}

/// The payload's records as the server's decoder writes them.
fn decoded_lines(payload: &[u8]) -> Vec<String> {
    let records = avro::Decoder::new()
        .decode_request(payload)
        .records
        .unwrap();
    records.lines().map(str::to_owned).collect()
}

/// Each record's compact JSON text, as the server's decoder writes it.
fn json_lines(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect()
}
