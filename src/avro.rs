//! The JSON ↔ Avro mapping: the default schema that carries any JSON value, and container-file encode/decode.
//!
//! Both directions use apache-avro's schema-aware serde path (about 2.5× faster than its `Value` path) with
//! hand-written `Serialize`/`Deserialize` impls, so object keys keep their order and integers stay integers.

use std::{cell::Cell, fmt, sync::LazyLock};

use apache_avro::{Reader, Schema, Writer};
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, SeqAccess, Visitor},
    ser::{SerializeMap, SerializeSeq, SerializeStruct},
};
use serde_json::{Map, Number, Value};

/// The default schema: a record whose one field is a union of every JSON shape, recursive through arrays and maps.
pub const JSON_SCHEMA: &str = r#"{"type":"record","name":"Json","namespace":"zavro","fields":[{"name":"value","type":["null","boolean","long","double","string",{"type":"array","items":"Json"},{"type":"map","values":"Json"}]}]}"#;

/// Deepest JSON nesting accepted on either side; serde_json's parser stops at 128 too.
pub const MAX_DEPTH: usize = 128;

/// Most JSON values (scalars, arrays and objects, at any depth) decoded from one request, so that a small
/// message of tiny values cannot expand into a huge tree in memory. Every value takes at least one byte of
/// Avro, so any payload up to [`MAX_PAYLOAD_BYTES`] stays under it.
pub const MAX_VALUES: usize = 1 << 20;

/// Largest payload `zavro send` puts in one request; bigger batches are split.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Largest single allocation apache-avro may make while decoding; its 512 MiB default is far too trusting.
pub const MAX_DECODE_ALLOCATION: usize = 16 * 1024 * 1024;

static JSON_SCHEMA_PARSED: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(JSON_SCHEMA).expect("the built-in schema is valid"));

static JSON_SCHEMA_CANONICAL: LazyLock<String> =
    LazyLock::new(|| JSON_SCHEMA_PARSED.canonical_form());

/// Why records could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// A JSON number that Avro's `long` or `double` cannot hold exactly.
    #[error(
        "record {record}: number {number} does not fit Avro's long (64-bit signed) or double exactly"
    )]
    UnrepresentableNumber {
        /// 1-based index of the record.
        record: usize,
        /// The number as written.
        number: String,
    },
    /// The writer schema of a container file is not the default JSON schema.
    #[error("writer schema is not zavro's JSON schema: {0}")]
    UnsupportedSchema(String),
    /// The bytes are not a readable container file of the expected schema.
    #[error("not a valid Avro container file: {0}")]
    Invalid(String),
}

/// Limits apache-avro's decode allocations for the whole process; call once before decoding untrusted input.
pub fn limit_decode_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
}

/// Encodes records as an Avro object container file (null codec) with the default JSON schema.
pub fn encode(records: &[Value]) -> Result<Vec<u8>, AvroError> {
    for (i, record) in records.iter().enumerate() {
        check_numbers(record).map_err(|number| AvroError::UnrepresentableNumber {
            record: i + 1,
            number,
        })?;
    }
    let mut writer = Writer::new(&JSON_SCHEMA_PARSED, Vec::new())
        .map_err(|e| AvroError::Invalid(e.to_string()))?;
    for record in records {
        writer
            .append_ser(Record(record))
            .map_err(|e| AvroError::Invalid(e.to_string()))?;
    }
    writer
        .into_inner()
        .map_err(|e| AvroError::Invalid(e.to_string()))
}

/// Decodes a container file written with the default JSON schema back into its records.
pub fn decode(bytes: &[u8]) -> Result<Vec<Value>, AvroError> {
    let reader = Reader::new(bytes).map_err(|e| AvroError::Invalid(e.to_string()))?;
    let writer_schema = reader.writer_schema().canonical_form();
    if writer_schema != *JSON_SCHEMA_CANONICAL {
        return Err(AvroError::UnsupportedSchema(truncate(&writer_schema, 200)));
    }
    DEPTH.with(|d| d.set(0));
    VALUES.with(|n| n.set(0));
    reader
        .into_deser_iter::<OwnedRecord>()
        .map(|r| {
            r.map(|OwnedRecord(v)| v)
                .map_err(|e| AvroError::Invalid(truncate(&e.to_string(), 300)))
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Finds the first number Avro cannot carry exactly: an integer beyond i64 (serde_json keeps u64 exact).
fn check_numbers(value: &Value) -> Result<(), String> {
    match value {
        Value::Number(n) if n.is_u64() && n.as_i64().is_none() => Err(n.to_string()),
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// One value of the `zavro.Json` record, borrowed for serialization.
struct Record<'a>(&'a Value);

/// The union inside a `zavro.Json` record.
struct Node<'a>(&'a Value);

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("Json", 1)?;
        record.serialize_field("value", &Node(self.0))?;
        record.end()
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => serialize_number(n, serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Record(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, item) in map {
                    out.serialize_entry(key, &Record(item))?;
                }
                out.end()
            }
        }
    }
}

fn serialize_number<S: Serializer>(n: &Number, serializer: S) -> Result<S::Ok, S::Error> {
    if let Some(i) = n.as_i64() {
        serializer.serialize_i64(i)
    } else if let Some(f) = n.as_f64().filter(|_| !n.is_u64()) {
        serializer.serialize_f64(f)
    } else {
        Err(serde::ser::Error::custom(format!(
            "number {n} does not fit a long or double"
        )))
    }
}

thread_local! {
    /// Current nesting depth while decoding; bounds recursion so hostile input cannot overflow the stack.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Values decoded so far from the current container file.
    static VALUES: Cell<usize> = const { Cell::new(0) };
}

/// Holds the depth counter up for the lifetime of one nested value.
struct DepthGuard;

impl DepthGuard {
    fn enter<E: de::Error>() -> Result<Self, E> {
        DEPTH.with(|d| {
            let depth = d.get() + 1;
            if depth > MAX_DEPTH {
                return Err(E::custom(format!("nesting deeper than {MAX_DEPTH} levels")));
            }
            d.set(depth);
            Ok(DepthGuard)
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A decoded `zavro.Json` record.
struct OwnedRecord(Value);

/// A decoded union value inside a `zavro.Json` record.
struct OwnedNode(Value);

impl<'de> Deserialize<'de> for OwnedRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("Json", &["value"], RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = OwnedRecord;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a zavro.Json record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OwnedRecord, A::Error> {
        let mut value = None;
        while let Some(ValueField) = map.next_key()? {
            if value.is_some() {
                return Err(de::Error::duplicate_field("value"));
            }
            value = Some(map.next_value::<OwnedNode>()?.0);
        }
        value
            .map(OwnedRecord)
            .ok_or_else(|| de::Error::missing_field("value"))
    }
}

/// The one field name of `zavro.Json`; apache-avro hands field names over as identifiers.
struct ValueField;

impl<'de> Deserialize<'de> for ValueField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(ValueFieldVisitor)
    }
}

struct ValueFieldVisitor;

impl Visitor<'_> for ValueFieldVisitor {
    type Value = ValueField;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the field name \"value\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueField, E> {
        if v == "value" {
            Ok(ValueField)
        } else {
            Err(E::unknown_field(v, &["value"]))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ValueField, E> {
        if v == 0 {
            Ok(ValueField)
        } else {
            Err(E::custom(format!("zavro.Json has no field {v}")))
        }
    }
}

impl<'de> Deserialize<'de> for OwnedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let count = VALUES.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        if count > MAX_VALUES {
            return Err(de::Error::custom(format!(
                "more than {MAX_VALUES} JSON values in one request"
            )));
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = OwnedNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<OwnedNode, E> {
        Ok(OwnedNode(Value::Null))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<OwnedNode, E> {
        Ok(OwnedNode(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OwnedNode, E> {
        Ok(OwnedNode(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OwnedNode, E> {
        Number::from_f64(v)
            .map(|n| OwnedNode(Value::Number(n)))
            .ok_or_else(|| E::custom(format!("{v} is not a JSON number")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OwnedNode, E> {
        Ok(OwnedNode(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<OwnedNode, E> {
        Ok(OwnedNode(Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OwnedNode, A::Error> {
        let _depth = DepthGuard::enter()?;
        let mut items = Vec::new();
        while let Some(OwnedRecord(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(OwnedNode(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OwnedNode, A::Error> {
        let _depth = DepthGuard::enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let OwnedRecord(item) = map.next_value()?;
            out.insert(key, item);
        }
        Ok(OwnedNode(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let back = decode(&bytes).unwrap();
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
    fn integers_beyond_i64_are_refused_not_rounded() {
        let err = encode(&[json!({"ok": 1}), json!({"big": 18446744073709551615u64})]).unwrap_err();
        assert!(
            matches!(err, AvroError::UnrepresentableNumber { record: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn the_payload_is_a_standard_container_file() {
        let bytes = encode(&[json!({"a": 1})]).unwrap();
        assert_eq!(&bytes[..4], b"Obj\x01");
        let values: Vec<_> = Reader::new(&bytes[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(values.len(), 1);
    }

    #[test]
    fn other_schemas_are_refused() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#,
        )
        .unwrap();
        let mut writer = Writer::new(&schema, Vec::new()).unwrap();
        writer
            .append_value(apache_avro::types::Value::Record(vec![(
                "a".into(),
                apache_avro::types::Value::Long(1),
            )]))
            .unwrap();
        let bytes = writer.into_inner().unwrap();
        assert!(matches!(
            decode(&bytes),
            Err(AvroError::UnsupportedSchema(_))
        ));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let bytes = encode(&[json!({"a": [1, 2, 3]}), json!("x")]).unwrap();
        assert!(decode(b"").is_err());
        assert!(decode(b"not avro").is_err());
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut]);
        }
    }

    #[test]
    fn too_many_values_in_one_file_are_refused() {
        let records = vec![json!(null); MAX_VALUES + 1];
        let err = decode(&encode(&records).unwrap()).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        assert_eq!(
            decode(&encode(&records[1..]).unwrap()).unwrap().len(),
            MAX_VALUES
        );
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_when_decoding() {
        let mut deep = json!(1);
        for _ in 0..(MAX_DEPTH + 5) {
            deep = json!([deep]);
        }
        let bytes = encode(&[deep]).unwrap();
        let err = decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("nesting"), "{err}");
    }
}
