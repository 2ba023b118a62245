//! Avro schema fingerprints: SHA-256 of the schema's Parsing Canonical Form (PCF), as the Avro specification
//! defines both, so the fingerprint zavro records matches what Java's `SchemaNormalization`, fastavro's
//! `fingerprint(to_parsing_canonical_form(s), "SHA-256")` and other implementations compute.
//!
//! The canonical form is built here from the parsed schema rather than with apache-avro 0.22's
//! `Schema::canonical_form()`: that one panics on some schemas its parser accepts (found by fuzzing, see
//! fuzz/README.md), which a server must not do on an untrusted header, and it keeps attributes the
//! specification strips (`order`, `precision`, `scale`), so its fingerprints differ from other implementations'.

use std::collections::HashSet;

use apache_avro::{
    Schema,
    schema::{FixedSchema, InnerDecimalSchema, Name, UuidSchema},
};
use sha2::{Digest, Sha256};

/// A writer schema as the store records it: its fingerprint, its canonical form, and the text it came as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFingerprint {
    /// SHA-256 of the Parsing Canonical Form, lowercase hex (64 characters).
    pub fingerprint: String,
    /// The Parsing Canonical Form.
    pub canonical: String,
    /// The schema's JSON as it was given (with docs, defaults and logical types, which the canonical form drops).
    pub text: String,
}

impl SchemaFingerprint {
    /// The fingerprint of a parsed schema and the text it was parsed from.
    pub fn of(schema: &Schema, text: &str) -> SchemaFingerprint {
        let canonical = canonical_form(schema);
        SchemaFingerprint {
            fingerprint: fingerprint_of_canonical(&canonical),
            canonical,
            text: text.to_owned(),
        }
    }
}

/// SHA-256 (lowercase hex) of a Parsing Canonical Form.
pub fn fingerprint_of_canonical(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// The Parsing Canonical Form of a schema: primitives as plain names, full names, only the attributes that
/// matter for reading data (`name`, `type`, `fields`, `symbols`, `items`, `values`, `size`) in that order, logical
/// types reduced to their underlying type, no whitespace. A named type appears in full the first time and by
/// name after that.
pub fn canonical_form(schema: &Schema) -> String {
    let mut out = String::new();
    write_schema(schema, &mut HashSet::new(), &mut out);
    out
}

fn write_schema(schema: &Schema, defined: &mut HashSet<Name>, out: &mut String) {
    let primitive = match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "int",
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => "bytes",
        Schema::String | Schema::Uuid(UuidSchema::String) => "string",
        Schema::Decimal(decimal) => match &decimal.inner {
            InnerDecimalSchema::Bytes => "bytes",
            InnerDecimalSchema::Fixed(fixed) => return write_fixed(fixed, defined, out),
        },
        Schema::Uuid(UuidSchema::Fixed(fixed)) | Schema::Duration(fixed) | Schema::Fixed(fixed) => {
            return write_fixed(fixed, defined, out);
        }
        Schema::Ref { name } => return write_string(&name.fullname(None), out),
        Schema::Array(array) => {
            out.push_str(r#"{"type":"array","items":"#);
            write_schema(&array.items, defined, out);
            out.push('}');
            return;
        }
        Schema::Map(map) => {
            out.push_str(r#"{"type":"map","values":"#);
            write_schema(&map.types, defined, out);
            out.push('}');
            return;
        }
        Schema::Union(union) => {
            out.push('[');
            for (i, variant) in union.variants().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(variant, defined, out);
            }
            out.push(']');
            return;
        }
        Schema::Record(record) => {
            if !write_name(&record.name, "record", defined, out) {
                return;
            }
            out.push_str(r#","fields":["#);
            for (i, field) in record.fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"name":"#);
                write_string(&field.name, out);
                out.push_str(r#","type":"#);
                write_schema(&field.schema, defined, out);
                out.push('}');
            }
            out.push_str("]}");
            return;
        }
        Schema::Enum(enumeration) => {
            if !write_name(&enumeration.name, "enum", defined, out) {
                return;
            }
            out.push_str(r#","symbols":["#);
            for (i, symbol) in enumeration.symbols.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(symbol, out);
            }
            out.push_str("]}");
            return;
        }
    };
    write_string(primitive, out);
}

fn write_fixed(fixed: &FixedSchema, defined: &mut HashSet<Name>, out: &mut String) {
    if write_name(&fixed.name, "fixed", defined, out) {
        out.push_str(&format!(r#","size":{}}}"#, fixed.size));
    }
}

/// Opens a named type's object (`{"name":…,"type":…`) and returns true, or, when the name was defined earlier
/// in the schema, writes just the name and returns false.
fn write_name(name: &Name, kind: &str, defined: &mut HashSet<Name>, out: &mut String) -> bool {
    let fullname = name.fullname(None);
    if !defined.insert(name.clone()) {
        write_string(&fullname, out);
        return false;
    }
    out.push_str(r#"{"name":"#);
    write_string(&fullname, out);
    out.push_str(r#","type":"#);
    write_string(kind, out);
    true
}

/// A JSON string with no escapes beyond those JSON requires ([STRINGS]: escapes are replaced by the characters).
fn write_string(text: &str, out: &mut String) {
    // serde_json escapes only `"`, `\` and control characters, and writes every other character as itself.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        canonical_form(&Schema::parse_str(text).unwrap())
    }

    #[test]
    fn primitives_and_logical_types_reduce_to_their_plain_names() {
        assert_eq!(canonical(r#""int""#), r#""int""#);
        assert_eq!(canonical(r#"{"type": "long"}"#), r#""long""#);
        assert_eq!(
            canonical(r#"{"type": "long", "logicalType": "timestamp-millis"}"#),
            r#""long""#
        );
        assert_eq!(
            canonical(r#"{"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}"#),
            r#""bytes""#
        );
        assert_eq!(
            canonical(r#"{"type": "string", "logicalType": "uuid"}"#),
            r#""string""#
        );
    }

    #[test]
    fn names_are_full_attributes_are_stripped_and_ordered() {
        let text = r#"{
            "fields": [
                {"type": "long", "name": "id", "doc": "the id", "default": 0, "order": "descending"},
                {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"], "default": "A"}},
                {"name": "again", "type": "Kind"},
                {"name": "tags", "type": {"type": "map", "values": {"type": "array", "items": "string"}}},
                {"name": "hash", "type": ["null", {"type": "fixed", "name": "md5", "namespace": "other", "size": 16}]}
            ],
            "name": "Event", "namespace": "com.example", "type": "record", "aliases": ["Old"], "doc": "x"
        }"#;
        assert_eq!(
            canonical(text),
            concat!(
                r#"{"name":"com.example.Event","type":"record","fields":["#,
                r#"{"name":"id","type":"long"},"#,
                r#"{"name":"kind","type":{"name":"com.example.Kind","type":"enum","symbols":["A","B"]}},"#,
                r#"{"name":"again","type":"com.example.Kind"},"#,
                r#"{"name":"tags","type":{"type":"map","values":{"type":"array","items":"string"}}},"#,
                r#"{"name":"hash","type":["null",{"name":"other.md5","type":"fixed","size":16}]}]}"#
            )
        );
    }

    #[test]
    fn canonical_forms_and_fingerprints_equal_fastavros() {
        // Computed by fastavro (tests/fixtures/fastavro/generate.py): another implementation's reading of the
        // specification, over namespaces, references, logical types and stripped attributes.
        let cases: Vec<serde_json::Value> = serde_json::from_str(include_str!(
            "../../tests/fixtures/fastavro/fingerprints.json"
        ))
        .unwrap();
        assert!(cases.len() >= 6);
        for case in cases {
            let text = case["schema"].to_string();
            let seen = SchemaFingerprint::of(&Schema::parse_str(&text).unwrap(), &text);
            assert_eq!(
                seen.canonical,
                case["canonical"].as_str().unwrap(),
                "{text}"
            );
            assert_eq!(seen.fingerprint, case["sha256"].as_str().unwrap(), "{text}");
        }
    }

    #[test]
    fn the_fingerprint_is_sha256_of_the_canonical_form() {
        let parsed = Schema::parse_str(r#"{"type": "int"}"#).unwrap();
        let seen = SchemaFingerprint::of(&parsed, r#"{"type": "int"}"#);
        assert_eq!(seen.canonical, r#""int""#);
        // printf '"int"' | sha256sum
        assert_eq!(
            seen.fingerprint,
            "3f2b87a9fe7cc9b13835598c3981cd45e3e355309e5090aa0933d7becb6fba45"
        );
        assert_eq!(seen.text, r#"{"type": "int"}"#);
    }
}
