//! The direct route against the old one: unit cases per type, and random schemas with fitting and unfitting
//! JSON.

use apache_avro::{Codec, Schema};
use proptest::prelude::*;

use super::*;
use crate::avro::{BatchEncoder, UserSchema};

/// What one record of `text` became: its bytes, or the error the sender stops with.
type Outcome = Result<Vec<u8>, String>;

/// The old route: the text read as a tree, converted by `typed`, written by apache-avro.
fn old(schema: &str, text: &str) -> Outcome {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let batch = BatchEncoder::with_schema(Codec::Null, UserSchema::parse(schema).unwrap());
    let mut out = Vec::new();
    batch
        .record_encoder()
        .write_value(&mut out, &value, 1)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The direct route alone: `Some(bytes)` when it wrote the record, `None` when it left it to the old route.
fn direct(schema: &str, text: &str) -> Result<Option<Vec<u8>>, String> {
    let batch = BatchEncoder::with_schema(Codec::Null, UserSchema::parse(schema).unwrap());
    use_plan(batch.record_encoder().plan().expect("a user schema"));
    transcode::with_writer(|writer| writer.out.clear());
    let outcome: Direct = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let bytes = transcode::with_writer(|writer| std::mem::take(&mut writer.out));
    Ok(match outcome {
        Direct::Written => Some(bytes),
        Direct::Refused => {
            assert!(bytes.is_empty(), "a refused record leaves nothing behind");
            None
        }
    })
}

/// The sender's route now: direct, or the old route for what the direct one leaves to it.
fn new(schema: &str, text: &str) -> Outcome {
    match direct(schema, text)? {
        Some(bytes) => Ok(bytes),
        None => old(schema, text),
    }
}

/// The same record: the same bytes, or (where maps of several entries make the old route's order vary from
/// run to run) the same decoded value in as many bytes.
fn same(schema: &str, a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) if a != b => {
            let schema = Schema::parse_str(schema).unwrap();
            let decode = |bytes: &[u8]| {
                #[allow(deprecated)]
                apache_avro::from_avro_datum(&schema, &mut &bytes[..], None)
                    .map_err(|e| e.to_string())
            };
            a.len() == b.len() && decode(a).is_ok() && decode(a) == decode(b)
        }
        (a, b) => a == b,
    }
}

const READING: &str = r#"{"type":"record","name":"Reading","namespace":"t","fields":[
    {"name":"id","type":"long"},
    {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["POWER","HEAT"]}},
    {"name":"value","type":["null","double"]},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":8,"scale":2}},
    {"name":"tags","type":{"type":"map","values":"string"}},
    {"name":"unit","type":"string","default":"kW"}]}"#;

/// Each case written directly, and as the old route writes it (or refused as it refuses it).
fn check(schema: &str, cases: &[(&str, bool)]) {
    for &(text, written) in cases {
        let got = direct(schema, text);
        assert_eq!(
            got.as_ref().map(Option::is_some),
            Ok(written),
            "{text}: written directly?"
        );
        let (new, old) = (new(schema, text), old(schema, text));
        assert!(same(schema, &new, &old), "{text}: {new:?} vs {old:?}");
    }
}

fn one(type_json: &str) -> String {
    format!(r#"{{"type":"record","name":"R","fields":[{{"name":"v","type":{type_json}}}]}}"#)
}

/// [`check`] per type, each value as the one field of a record of that type ([`one`]).
fn check_one_field(cases: &[(&str, &[(&str, bool)])]) {
    for (type_json, texts) in cases {
        let schema = one(type_json);
        let records: Vec<String> = texts
            .iter()
            .map(|(t, _)| format!(r#"{{"v":{t}}}"#))
            .collect();
        let cases: Vec<(&str, bool)> = records
            .iter()
            .zip(texts.iter())
            .map(|(r, (_, w))| (r.as_str(), *w))
            .collect();
        check(&schema, &cases);
    }
}

#[test]
fn a_record_in_any_key_order_with_defaults_is_written_directly() {
    check(
        READING,
        &[
            (
                r#"{"id":7,"kind":"HEAT","value":5.5,"at":"2025-11-28T03:47:15.123Z","price":"123.45","tags":{"a":"1","b":"2"}}"#,
                true,
            ),
            (
                r#"{"tags":{},"price":"-0.5","at":1764301635123,"value":null,"kind":"POWER","id":1,"unit":"MW"}"#,
                true,
            ),
            // What the old route refuses, it still refuses, with its message.
            (
                r#"{"id":"seven","kind":"HEAT","value":1,"at":0,"price":"1","tags":{}}"#,
                false,
            ),
            (
                r#"{"id":7,"kind":"COLD","value":1,"at":0,"price":"1","tags":{}}"#,
                false,
            ),
            (
                r#"{"id":7,"kind":"HEAT","value":1,"at":0,"price":"1","tags":{},"colour":"red"}"#,
                false,
            ),
            (
                r#"{"kind":"HEAT","value":1,"at":0,"price":"1","tags":{}}"#,
                false,
            ),
            (
                r#"{"id":7,"kind":"HEAT","value":1,"at":0,"price":"1.234","tags":{}}"#,
                false,
            ),
            (
                r#"{"id":7,"kind":"HEAT","value":3.14159265358979323846,"at":0,"price":"1","tags":{}}"#,
                false,
            ),
            // The last fields missing: one has a default, the other none.
            (
                r#"{"id":7,"kind":"HEAT","value":1,"at":0,"price":"1"}"#,
                false,
            ),
            // A repeated key: the old route keeps the last value.
            (
                r#"{"id":"x","kind":"HEAT","value":1,"at":0,"price":"1","tags":{},"id":8}"#,
                false,
            ),
            (
                r#"{"id":7,"kind":"HEAT","value":1,"at":0,"price":"1","tags":{"a":"1","a":"2"}}"#,
                false,
            ),
        ],
    );
}

#[test]
fn each_primitive_type_is_written_as_before() {
    let cases: &[(&str, &[(&str, bool)])] = &[
        ("\"null\"", &[("null", true), ("0", false)]),
        (
            "\"boolean\"",
            &[("true", true), ("false", true), ("1", false)],
        ),
        (
            "\"int\"",
            &[
                ("-2147483648", true),
                ("2147483647", true),
                ("2147483648", false),
                ("1.0", false),
                ("-0", true),
                ("\"1\"", false),
            ],
        ),
        (
            "\"long\"",
            &[
                ("-9223372036854775808", true),
                ("9223372036854775808", false),
                ("1e2", false),
            ],
        ),
        (
            "\"float\"",
            &[
                ("0.1", true),
                ("1", true),
                ("-0", true),
                ("18446744073709551615", true),
                ("16777217", true),
                ("1e400", false),
                ("3.4e39", true),
                ("null", false),
            ],
        ),
        (
            "\"double\"",
            &[
                ("0.1", true),
                ("-0", true),
                ("-0.0", true),
                ("-9223372036854775808", true),
                ("9223372036854775808", false),
                ("1.10", true),
                ("1e2", true),
                ("9007199254740993", true),
                ("3.14159265358979323846", false),
                ("18446744073709551616", false),
            ],
        ),
        (
            "\"string\"",
            &[("\"\"", true), ("\"h\\u00e9\\n\"", true), ("1", false)],
        ),
        (
            "\"bytes\"",
            &[
                ("\"\\u0000\\u00ff\"", true),
                ("\"\\u0100\"", false),
                ("[1]", false),
            ],
        ),
        (
            r#"{"type":"fixed","name":"F","size":2}"#,
            &[
                ("\"ab\"", true),
                ("\"abc\"", false),
                ("\"\\u00ff\\u0000\"", true),
                ("\"\u{100}a\"", false),
            ],
        ),
        (
            r#"{"type":"enum","name":"E","symbols":["A","B"]}"#,
            &[("\"B\"", true), ("\"C\"", false), ("1", false)],
        ),
    ];
    check_one_field(cases);
}

#[test]
fn arrays_maps_and_unions_are_written_as_before() {
    let array = one(r#"{"type":"array","items":"long"}"#);
    let long_array = format!(
        r#"{{"v":{}}}"#,
        serde_json::to_string(&vec![1; 100]).unwrap()
    );
    check(
        &array,
        &[
            (r#"{"v":[]}"#, true),
            (r#"{"v":[1,2]}"#, true),
            (&long_array, true),
            (r#"{"v":[1,"x"]}"#, false),
            (r#"{"v":{}}"#, false),
        ],
    );
    let map = one(r#"{"type":"map","values":"int"}"#);
    let wide: serde_json::Map<String, Value> =
        (0..70).map(|i| (i.to_string(), Value::from(i))).collect();
    let wide = format!(r#"{{"v":{}}}"#, serde_json::to_string(&wide).unwrap());
    // Past 64 keys a map's keys are not compared for repeats: the old route writes it.
    check(
        &map,
        &[
            (r#"{"v":{}}"#, true),
            (r#"{"v":{"a":1}}"#, true),
            (r#"{"v":{"a":1,"b":2}}"#, true),
            (&wide, false),
            (r#"{"v":[]}"#, false),
        ],
    );
    // The first branch that takes the value wins: 1 is a long, 1.5 a double, "x" a string.
    let union = one(
        r#"["null","long","double","string",{"type":"array","items":"int"},{"type":"map","values":"string"}]"#,
    );
    check(
        &union,
        &[
            (r#"{"v":null}"#, true),
            (r#"{"v":1}"#, true),
            (r#"{"v":1.5}"#, true),
            (r#"{"v":"x"}"#, true),
            (r#"{"v":[1]}"#, true),
            (r#"{"v":{"a":"b"}}"#, true),
            (r#"{"v":true}"#, false),
            (r#"{"v":{"a":1}}"#, false),
        ],
    );
    // Several record branches: the object is read whole and tried in order, as before.
    let records = one(
        r#"["null",{"type":"record","name":"A","fields":[{"name":"a","type":"int"}]},{"type":"record","name":"B","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":3}]},{"type":"map","values":"boolean"}]"#,
    );
    check(
        &records,
        &[
            (r#"{"v":{"a":1}}"#, true),
            (r#"{"v":{"a":"x"}}"#, true),
            (r#"{"v":{"a":true}}"#, true),
            (r#"{"v":{}}"#, true),
            (r#"{"v":{"a":[]}}"#, false),
            (r#"{"v":{"a":"x","a":1}}"#, true),
        ],
    );
    // A recursive type.
    let list = r#"{"type":"record","name":"List","fields":[{"name":"head","type":"int"},{"name":"tail","type":["null","List"],"default":null}]}"#;
    check(
        list,
        &[
            (r#"{"head":1,"tail":{"head":2,"tail":{"head":3}}}"#, true),
            (r#"{"head":1,"tail":{"tail":null}}"#, false),
        ],
    );
}

#[test]
fn logical_types_take_their_integer_and_their_text_as_before() {
    let cases: &[(&str, &[(&str, bool)])] = &[
        (
            r#"{"type":"int","logicalType":"date"}"#,
            &[
                ("20420", true),
                ("\"2025-11-28\"", true),
                ("\"2025-13-01\"", false),
                ("1.0", false),
                ("3000000", false),
            ],
        ),
        (
            r#"{"type":"int","logicalType":"time-millis"}"#,
            &[
                ("3723004", true),
                ("\"01:02:03.004\"", true),
                ("86400000", false),
                ("-1", false),
            ],
        ),
        (
            r#"{"type":"long","logicalType":"time-micros"}"#,
            &[("\"23:59:59\"", true), ("86400000000", false)],
        ),
        (
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            &[
                ("\"2025-11-28T04:47:15.123+01:00\"", true),
                ("\"2025-11-28T03:47:15.123\"", true),
                ("9223372036854775807", false),
                ("true", false),
            ],
        ),
        (
            r#"{"type":"long","logicalType":"timestamp-nanos"}"#,
            &[
                ("1764301635123456789", true),
                ("\"2300-01-01T00:00:00Z\"", false),
            ],
        ),
        (
            r#"{"type":"long","logicalType":"local-timestamp-micros"}"#,
            &[
                ("\"2025-11-28T03:47:15.123456\"", true),
                ("\"2025-11-28T03:47:15Z\"", false),
            ],
        ),
        (
            r#"{"type":"string","logicalType":"uuid"}"#,
            &[
                ("\"67e55044-10b1-426f-9247-bb680e5fe0c8\"", true),
                ("\"67E5504410B1426F9247BB680E5FE0C8\"", true),
                ("\"nope\"", false),
            ],
        ),
        (
            r#"{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}"#,
            &[("\"67e55044-10b1-426f-9247-bb680e5fe0c8\"", true)],
        ),
        (
            r#"{"type":"bytes","logicalType":"decimal","precision":8,"scale":2}"#,
            &[
                ("\"-0.5\"", true),
                ("\"128\"", true),
                ("\"1.234\"", false),
                ("1.5", false),
            ],
        ),
        (
            r#"{"type":"fixed","name":"D","size":2,"logicalType":"decimal","precision":4,"scale":1}"#,
            &[
                ("\"-0.5\"", true),
                ("\"3276.7\"", true),
                ("\"3276.8\"", false),
                ("\"-3276.8\"", true),
            ],
        ),
        (
            r#"{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}"#,
            &[("\"abcdefghijkl\"", false)],
        ),
    ];
    check_one_field(cases);
}

#[test]
fn broken_text_fails_as_reading_a_tree_fails() {
    for text in [
        r#"{"id":7,"#,
        r#"{"id":"\u12"}"#,
        r#"{"id":7,"tags":{"$serde_json::private::Number":"x"}}"#,
        r#"{"id":"x","tags":{"$serde_json::private::Number":"x"}}"#,
        r#"{"id":01}"#,
    ] {
        let not_json = old(READING, text)
            .err()
            .filter(|e| e.starts_with("not JSON"));
        assert!(not_json.is_some(), "{text}");
        assert_eq!(direct(READING, text).err(), not_json, "{text}");
    }
}

/// A schema, as the generator builds it.
#[derive(Debug, Clone)]
enum S {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Str,
    Bytes,
    Fixed(usize),
    Enum(Vec<&'static str>),
    Array(Box<S>),
    Map(Box<S>),
    /// Fields: name, type, whether it has a default.
    Record(Vec<(String, S, bool)>),
    Union(Vec<S>),
    Logical(&'static str, &'static str),
    Decimal(usize, Option<usize>),
}

impl S {
    /// Which branches a union may not hold twice.
    fn kind(&self) -> String {
        match self {
            S::Record(_) | S::Enum(_) | S::Fixed(_) => String::new(),
            S::Logical(base, _) => (*base).to_owned(),
            S::Decimal(_, None) => "bytes".into(),
            S::Decimal(_, Some(_)) => String::new(),
            other => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("")
                .to_owned(),
        }
    }

    fn json(&self, names: &mut usize) -> String {
        let mut name = || {
            *names += 1;
            format!("N{names}")
        };
        match self {
            S::Null => "\"null\"".into(),
            S::Boolean => "\"boolean\"".into(),
            S::Int => "\"int\"".into(),
            S::Long => "\"long\"".into(),
            S::Float => "\"float\"".into(),
            S::Double => "\"double\"".into(),
            S::Str => "\"string\"".into(),
            S::Bytes => "\"bytes\"".into(),
            S::Fixed(size) => {
                format!(r#"{{"type":"fixed","name":"{}","size":{size}}}"#, name())
            }
            S::Enum(symbols) => format!(
                r#"{{"type":"enum","name":"{}","symbols":{}}}"#,
                name(),
                serde_json::to_string(symbols).unwrap()
            ),
            S::Array(items) => format!(r#"{{"type":"array","items":{}}}"#, items.json(names)),
            S::Map(values) => format!(r#"{{"type":"map","values":{}}}"#, values.json(names)),
            S::Record(fields) => {
                let record = name();
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(field, schema, default)| {
                        let default = match (default, schema.default()) {
                            (true, Some(d)) => format!(r#","default":{d}"#),
                            _ => String::new(),
                        };
                        format!(
                            r#"{{"name":"{field}","type":{}{default}}}"#,
                            schema.json(names)
                        )
                    })
                    .collect();
                format!(
                    r#"{{"type":"record","name":"{record}","fields":[{}]}}"#,
                    fields.join(",")
                )
            }
            S::Union(variants) => format!(
                "[{}]",
                variants
                    .iter()
                    .map(|v| v.json(names))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            S::Logical(base, logical) => {
                format!(r#"{{"type":"{base}","logicalType":"{logical}"}}"#)
            }
            S::Decimal(scale, None) => format!(
                r#"{{"type":"bytes","logicalType":"decimal","precision":20,"scale":{scale}}}"#
            ),
            S::Decimal(scale, Some(size)) => format!(
                r#"{{"type":"fixed","name":"{}","size":{size},"logicalType":"decimal","precision":4,"scale":{scale}}}"#,
                name()
            ),
        }
    }

    /// A default for a field of this type, where a simple one exists.
    fn default(&self) -> Option<&'static str> {
        Some(match self {
            S::Null => "null",
            S::Boolean => "true",
            S::Int | S::Long => "7",
            S::Float | S::Double => "1.5",
            S::Str => "\"d\"",
            S::Bytes => "\"\\u00ff\"",
            S::Array(_) => "[]",
            S::Map(_) => "{}",
            S::Union(variants) => return variants.first().and_then(S::default),
            _ => return None,
        })
    }
}

fn schema() -> impl Strategy<Value = S> {
    let leaf = prop_oneof![
        Just(S::Null),
        Just(S::Boolean),
        Just(S::Int),
        Just(S::Long),
        Just(S::Float),
        Just(S::Double),
        Just(S::Str),
        Just(S::Bytes),
        (0usize..4).prop_map(S::Fixed),
        Just(S::Enum(vec!["A", "B", "C"])),
        Just(S::Logical("int", "date")),
        Just(S::Logical("int", "time-millis")),
        Just(S::Logical("long", "time-micros")),
        Just(S::Logical("long", "timestamp-millis")),
        Just(S::Logical("long", "timestamp-micros")),
        Just(S::Logical("long", "local-timestamp-nanos")),
        Just(S::Logical("string", "uuid")),
        (0usize..4).prop_map(|scale| S::Decimal(scale, None)),
        (0usize..3).prop_map(|scale| S::Decimal(scale, Some(3))),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            inner.clone().prop_map(|s| S::Array(Box::new(s))),
            inner.clone().prop_map(|s| S::Map(Box::new(s))),
            prop::collection::vec((inner.clone(), any::<bool>()), 0..5).prop_map(|fields| {
                S::Record(
                    fields
                        .into_iter()
                        .enumerate()
                        .map(|(i, (s, d))| (format!("f{i}"), s, d))
                        .collect(),
                )
            }),
            prop::collection::vec(inner, 1..4).prop_map(|variants| {
                let mut kinds = std::collections::HashSet::new();
                S::Union(
                    variants
                        .into_iter()
                        .filter(|v| !matches!(v, S::Union(_)))
                        .filter(|v| {
                            let kind = v.kind();
                            kind.is_empty() || kinds.insert(kind)
                        })
                        .collect(),
                )
            }),
        ]
    })
}

/// JSON written by hand, so objects can repeat keys and numbers keep their spelling.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Number(String),
    Text(String),
    Array(Vec<J>),
    Object(Vec<(String, J)>),
}

impl J {
    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Number(n) => out.push_str(n),
            J::Text(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            J::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Object(entries) => {
                out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push(':');
                    item.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
    ]
}

/// Any JSON, most of which fits no particular schema.
fn wrong() -> BoxedStrategy<J> {
    prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Number),
        "\\PC{0,6}".prop_map(J::Text),
        Just(J::Array(vec![])),
        Just(J::Object(vec![])),
        Just(J::Object(vec![("zz".into(), J::Null)])),
    ]
    .boxed()
}

/// JSON that fits `schema` (mostly: `bad` in 1000 is replaced by any JSON, a field dropped, one added or
/// repeated).
fn fitting(schema: &S, bad: u32) -> BoxedStrategy<J> {
    let good = match schema {
        S::Null => Just(J::Null).boxed(),
        S::Boolean => any::<bool>().prop_map(J::Bool).boxed(),
        S::Int => any::<i32>().prop_map(|n| J::Number(n.to_string())).boxed(),
        S::Long => any::<i64>().prop_map(|n| J::Number(n.to_string())).boxed(),
        S::Float | S::Double => prop_oneof![
            any::<f32>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| J::Number(serde_json::to_string(&f).unwrap())),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| J::Number(serde_json::to_string(&f).unwrap())),
            any::<i32>().prop_map(|n| J::Number(n.to_string())),
            any::<i64>().prop_map(|n| J::Number(n.to_string())),
            Just(J::Number("-0".into())),
        ]
        .boxed(),
        S::Str => "\\PC{0,8}".prop_map(J::Text).boxed(),
        S::Bytes => "[\\x00-\\xff]{0,6}".prop_map(J::Text).boxed(),
        &S::Fixed(size) => prop::collection::vec(0u8..=255, size).prop_map(|b| J::Text(b.into_iter().map(char::from).collect())).boxed(),
        S::Enum(symbols) => prop::sample::select(symbols.clone()).prop_map(|s| J::Text(s.into())).boxed(),
        S::Array(items) => prop::collection::vec(fitting(items, bad), 0..4).prop_map(J::Array).boxed(),
        S::Map(values) => prop::collection::btree_map("[a-d]{1,2}", fitting(values, bad), 0..4)
            .prop_map(|m| J::Object(m.into_iter().collect()))
            .boxed(),
        S::Record(fields) => {
            let entries: Vec<BoxedStrategy<Option<(String, J)>>> = fields
                .iter()
                .map(|(name, s, default)| {
                    let name = name.clone();
                    let value = fitting(s, bad).prop_map(move |j| Some((name.clone(), j)));
                    if *default && s.default().is_some() {
                        prop_oneof![3 => value, 1 => Just(None)].boxed()
                    } else {
                        value.boxed()
                    }
                })
                .collect();
            (entries, Just(()).prop_perturb(|(), mut rng| rng.random::<u64>()))
                .prop_map(|(entries, seed)| {
                    let mut entries: Vec<(String, J)> = entries.into_iter().flatten().collect();
                    // Some records in another key order than the schema's.
                    if seed % 3 == 0 && !entries.is_empty() {
                        let by = (seed as usize / 3) % entries.len();
                        entries.rotate_left(by);
                    }
                    J::Object(entries)
                })
                .boxed()
        }
        S::Union(variants) if variants.is_empty() => Just(J::Null).boxed(),
        S::Union(variants) => {
            let variants = variants.clone();
            (0..variants.len()).prop_flat_map(move |i| fitting(&variants[i], bad)).boxed()
        }
        S::Logical(_, "date") => prop_oneof![
            (-719_000i32..2_900_000).prop_map(|d| J::Number(d.to_string())),
            (1i32..9999, 1u8..13, 1u8..29).prop_map(|(y, m, d)| J::Text(format!("{y:04}-{m:02}-{d:02}"))),
        ]
        .boxed(),
        S::Logical(_, "time-millis") => (0i64..86_400_000).prop_map(|t| J::Number(t.to_string())).boxed(),
        S::Logical(_, "time-micros") => prop_oneof![
            (0i64..86_400_000_000).prop_map(|t| J::Number(t.to_string())),
            (0u8..24, 0u8..60, 0u8..60, 0u32..1_000_000).prop_map(|(h, m, s, f)| J::Text(format!("{h:02}:{m:02}:{s:02}.{f:06}"))),
        ]
        .boxed(),
        S::Logical(_, "uuid") => any::<[u8; 16]>()
            .prop_map(|b| J::Text(apache_avro::Uuid::from_bytes(b).to_string()))
            .boxed(),
        S::Logical(..) => prop_oneof![
            (-10_000_000_000_000i64..200_000_000_000_000).prop_map(|t| J::Number(t.to_string())),
            (1i32..9999, 1u8..13, 1u8..29, 0u8..24, 0u32..1000)
                .prop_map(|(y, mo, d, h, ms)| J::Text(format!("{y:04}-{mo:02}-{d:02}T{h:02}:00:00.{ms:03}"))),
        ]
        .boxed(),
        &S::Decimal(scale, _) => "-?[0-9]{1,3}(\\.[0-9]{1,3})?".prop_map(J::Text).prop_filter("scale", move |j| matches!(j, J::Text(t) if t.split_once('.').is_none_or(|(_, f)| f.len() <= scale))).boxed(),
    };
    if bad == 0 {
        return good;
    }
    let mutated = match schema {
        S::Record(_) => (good.clone(), wrong(), any::<prop::sample::Index>())
            .prop_map(|(record, extra, at)| match record {
                J::Object(mut entries) if !entries.is_empty() => {
                    let i = at.index(entries.len());
                    match at.index(3) {
                        0 => drop(entries.remove(i)),
                        1 => entries.push(("zz".into(), extra)),
                        _ => entries.push((entries[i].0.clone(), extra)),
                    }
                    J::Object(entries)
                }
                other => other,
            })
            .boxed(),
        _ => wrong(),
    };
    prop_oneof![1000 - bad => good, bad => mutated].boxed()
}

fn case(bad: u32) -> impl Strategy<Value = (String, String)> {
    schema()
        .prop_map(|s| match s {
            record @ S::Record(_) => record,
            other => S::Record(vec![("v".into(), other, false)]),
        })
        .prop_flat_map(move |s| {
            let text = s.json(&mut 0);
            fitting(&s, bad).prop_map(move |j| {
                let mut json = String::new();
                j.write(&mut json);
                (text.clone(), json)
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn records_that_fit_are_written_directly_with_the_old_routes_bytes((schema, text) in case(0)) {
        prop_assume!(UserSchema::parse(&schema).is_ok());
        let old = old(&schema, &text);
        prop_assume!(old.is_ok());
        let direct = direct(&schema, &text);
        prop_assert!(matches!(direct, Ok(Some(_))), "{} {}: {:?} vs {:?}", schema, text, direct, old);
        let new = new(&schema, &text);
        prop_assert!(same(&schema, &new, &old), "{} {}: {:?} vs {:?}", schema, text, new, old);
    }

    #[test]
    fn records_that_do_not_fit_are_refused_as_before((schema, text) in case(150)) {
        prop_assume!(UserSchema::parse(&schema).is_ok());
        let (new, old) = (new(&schema, &text), old(&schema, &text));
        prop_assert!(same(&schema, &new, &old), "{} {}: {:?} vs {:?}", schema, text, new, old);
    }
}

/// The property tests above mean something only if their cases reach every side: records written directly,
/// records refused, and records the old route writes that the direct one leaves to it.
#[test]
fn the_generated_cases_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut direct_written, mut refused, mut left_and_written, mut cases) = (0, 0, 0, 0);
    for _ in 0..600 {
        let (schema, text) = case(150).new_tree(&mut runner).unwrap().current();
        if UserSchema::parse(&schema).is_err() {
            continue;
        }
        cases += 1;
        match (direct(&schema, &text), old(&schema, &text)) {
            (Ok(Some(_)), _) => direct_written += 1,
            (_, Err(_)) => refused += 1,
            (_, Ok(_)) => left_and_written += 1,
        }
    }
    assert!(cases >= 500, "{cases} schemas parsed");
    assert!(
        direct_written * 5 >= cases,
        "{direct_written} of {cases} written directly"
    );
    assert!(refused * 5 >= cases, "{refused} of {cases} refused");
    assert!(
        left_and_written > 0,
        "none left to the old route and written by it"
    );
    eprintln!(
        "{cases} cases: {direct_written} written directly, {refused} refused, {left_and_written} left to the old route and written by it"
    );
}
