//! The server's direct decoder of user schemas ([`super::natural_text`]) against the route it replaced
//! (apache-avro's generic reader, [`super::generic::to_json`] and serde_json): on random schemas and random
//! records of them, well formed or not, both write the same text or reach the same refusal.

use apache_avro::Schema;
use proptest::{prelude::*, strategy::ValueTree, test_runner::TestRunner};

use super::{
    AvroError, Decoder, MAX_DECODE_ALLOCATION, MAX_VALUES, Ndjson,
    container::write_long,
    limit_decode_allocations,
    natural_text::Plan,
    oracle::{self, Damage, damage, damaged_file},
};

/// A writer schema, as the tests build it.
#[derive(Debug, Clone)]
enum Shape {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    /// An enum of this many symbols.
    Enum(usize),
    /// A record of these fields, in a namespace of its own or not.
    Record(Vec<Shape>, bool),
    Array(Box<Shape>),
    Map(Box<Shape>),
    Union(Vec<Shape>),
    /// A record of two fields: the named type, then the same type by its name.
    Twice(Box<Shape>),
    /// A logical type (see [`logical`]).
    Logical(Logical),
}

/// The logical types apache-avro decodes to values of their own.
#[derive(Debug, Clone, Copy)]
enum Logical {
    /// `decimal` on a fixed of this size, or on bytes.
    Decimal(Option<usize>, usize),
    BigDecimal,
    UuidString,
    UuidBytes,
    UuidFixed,
    Date,
    TimeMillis,
    TimeMicros,
    /// `timestamp-*` and `local-timestamp-*`: the unit (0 millis, 1 micros, 2 nanos) and whether local.
    Timestamp(u8, bool),
    Duration,
}

impl Shape {
    /// The schema's JSON text; `names` numbers the named types.
    fn render(&self, names: &mut usize) -> String {
        let mut name = || {
            *names += 1;
            format!("T{names}")
        };
        match self {
            Shape::Null => r#""null""#.into(),
            Shape::Boolean => r#""boolean""#.into(),
            Shape::Int => r#""int""#.into(),
            Shape::Long => r#""long""#.into(),
            Shape::Float => r#""float""#.into(),
            Shape::Double => r#""double""#.into(),
            Shape::Bytes => r#""bytes""#.into(),
            Shape::String => r#""string""#.into(),
            Shape::Fixed(size) => {
                format!(r#"{{"type":"fixed","name":"{}","size":{size}}}"#, name())
            }
            Shape::Enum(n) => {
                let symbols: Vec<String> = (0..*n).map(|i| format!(r#""S{i}""#)).collect();
                format!(
                    r#"{{"type":"enum","name":"{}","symbols":[{}]}}"#,
                    name(),
                    symbols.join(",")
                )
            }
            Shape::Record(fields, namespaced) => {
                let name = name();
                let namespace = if *namespaced {
                    format!(r#","namespace":"ns.{name}""#)
                } else {
                    String::new()
                };
                let fields: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(i, field)| {
                        format!(r#"{{"name":"f{i}","type":{}}}"#, field.render(names))
                    })
                    .collect();
                format!(
                    r#"{{"type":"record","name":"{name}"{namespace},"fields":[{}]}}"#,
                    fields.join(",")
                )
            }
            Shape::Array(items) => format!(r#"{{"type":"array","items":{}}}"#, items.render(names)),
            Shape::Map(values) => format!(r#"{{"type":"map","values":{}}}"#, values.render(names)),
            Shape::Union(variants) => {
                let variants: Vec<String> = variants.iter().map(|v| v.render(names)).collect();
                format!("[{}]", variants.join(","))
            }
            Shape::Twice(named) => {
                let outer = name();
                let first = named.render(names);
                // The named type just rendered has the highest number; a record's own fields come after it,
                // so find its name in its text.
                let after = first.split_once(r#""name":""#).map_or("", |(_, rest)| rest);
                let short = after.split('"').next().unwrap_or_default();
                // A record in a namespace of its own is referred to by its full name.
                let inner = match after.strip_prefix(&format!(r#"{short}","namespace":""#)) {
                    Some(rest) => format!("{}.{short}", rest.split('"').next().unwrap_or_default()),
                    None => short.to_owned(),
                };
                format!(
                    r#"{{"type":"record","name":"{outer}","fields":[{{"name":"a","type":{first}}},{{"name":"b","type":"{inner}"}}]}}"#
                )
            }
            Shape::Logical(logical) => logical.render(&mut name),
        }
    }
}

impl Logical {
    fn render(&self, name: &mut impl FnMut() -> String) -> String {
        let on =
            |base: &str, logical: &str| format!(r#"{{"type":"{base}","logicalType":"{logical}"}}"#);
        match *self {
            Logical::Decimal(Some(size), scale) => format!(
                r#"{{"type":"fixed","name":"{}","size":{size},"logicalType":"decimal","precision":40,"scale":{scale}}}"#,
                name()
            ),
            Logical::Decimal(None, scale) => format!(
                r#"{{"type":"bytes","logicalType":"decimal","precision":40,"scale":{scale}}}"#
            ),
            Logical::BigDecimal => on("bytes", "big-decimal"),
            Logical::UuidString => on("string", "uuid"),
            Logical::UuidBytes => on("bytes", "uuid"),
            Logical::UuidFixed => format!(
                r#"{{"type":"fixed","name":"{}","size":16,"logicalType":"uuid"}}"#,
                name()
            ),
            Logical::Date => on("int", "date"),
            Logical::TimeMillis => on("int", "time-millis"),
            Logical::TimeMicros => on("long", "time-micros"),
            Logical::Timestamp(unit, local) => {
                let unit = ["millis", "micros", "nanos"][usize::from(unit)];
                let local = if local { "local-" } else { "" };
                on("long", &format!("{local}timestamp-{unit}"))
            }
            Logical::Duration => format!(
                r#"{{"type":"fixed","name":"{}","size":12,"logicalType":"duration"}}"#,
                name()
            ),
        }
    }
}

fn logical() -> impl Strategy<Value = Logical> {
    prop_oneof![
        (prop::option::of(1usize..20), 0usize..6)
            .prop_map(|(fixed, scale)| Logical::Decimal(fixed, scale)),
        Just(Logical::BigDecimal),
        Just(Logical::UuidString),
        Just(Logical::UuidBytes),
        Just(Logical::UuidFixed),
        Just(Logical::Date),
        Just(Logical::TimeMillis),
        Just(Logical::TimeMicros),
        (0u8..3, any::<bool>()).prop_map(|(unit, local)| Logical::Timestamp(unit, local)),
        Just(Logical::Duration),
    ]
}

fn leaf_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        1 => Just(Shape::Null),
        2 => Just(Shape::Boolean),
        2 => Just(Shape::Int),
        2 => Just(Shape::Long),
        2 => Just(Shape::Float),
        2 => Just(Shape::Double),
        2 => Just(Shape::Bytes),
        3 => Just(Shape::String),
        1 => (0usize..5).prop_map(Shape::Fixed),
        1 => (1usize..4).prop_map(Shape::Enum),
        4 => logical().prop_map(Shape::Logical),
    ]
}

/// A union of branches of distinct kinds (apache-avro refuses two of one kind), maybe one named or complex.
fn union(inner: impl Strategy<Value = Shape>) -> impl Strategy<Value = Shape> {
    let simple = vec![
        Shape::Null,
        Shape::Boolean,
        Shape::Int,
        Shape::Long,
        Shape::Float,
        Shape::Double,
        Shape::Bytes,
        Shape::String,
    ];
    prop_oneof![
        8 => (
            prop::sample::subsequence(simple, 1..4),
            prop::option::of(inner),
        )
            .prop_map(|(mut variants, extra)| {
                if let Some(extra) = extra
                    && matches!(
                        extra,
                        Shape::Record(..)
                            | Shape::Twice(_)
                            | Shape::Array(_)
                            | Shape::Map(_)
                            | Shape::Enum(_)
                            | Shape::Fixed(_)
                    )
                {
                    variants.push(extra);
                }
                Shape::Union(variants)
            }),
        // The usual optional logical value.
        3 => logical().prop_map(|logical| Shape::Union(vec![Shape::Null, Shape::Logical(logical)])),
        1 => Just(Shape::Union(Vec::new())),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    leaf_shape().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            3 => (prop::collection::vec(inner.clone(), 0..5), any::<bool>())
                .prop_map(|(fields, namespaced)| Shape::Record(fields, namespaced)),
            2 => inner.clone().prop_filter("no arrays of zero-size items", |s| !zero_size(s))
                .prop_map(|s| Shape::Array(Box::new(s))),
            2 => inner.clone().prop_filter("no maps of zero-size items", |s| !zero_size(s))
                .prop_map(|s| Shape::Map(Box::new(s))),
            2 => union(inner.clone()),
            1 => prop_oneof![
                (prop::collection::vec(inner, 1..3), any::<bool>())
                    .prop_map(|(fields, namespaced)| Shape::Record(fields, namespaced)),
                (1usize..4).prop_map(Shape::Enum),
                (1usize..5).prop_map(Shape::Fixed),
            ]
            .prop_map(|named| Shape::Twice(Box::new(named))),
        ]
    })
}

/// True when data of the shape takes no bytes (which the server refuses as array or map items).
fn zero_size(shape: &Shape) -> bool {
    match shape {
        Shape::Null | Shape::Fixed(0) => true,
        Shape::Record(fields, _) => fields.iter().all(zero_size),
        Shape::Twice(named) => zero_size(named),
        _ => false,
    }
}

/// Bytes of one value of `shape`, mostly well formed, sometimes not in the ways a hostile writer could.
fn value(shape: &Shape) -> BoxedStrategy<Vec<u8>> {
    let long = |n: i64| {
        let mut out = Vec::new();
        write_long(&mut out, n);
        out
    };
    match shape {
        Shape::Null => Just(Vec::new()).boxed(),
        Shape::Boolean => prop_oneof![8 => 0u8..2, 1 => any::<u8>()]
            .prop_map(|b| vec![b])
            .boxed(),
        Shape::Int => prop_oneof![
            8 => any::<i32>().prop_map(i64::from),
            1 => any::<i64>(),
        ]
        .prop_map(long)
        .boxed(),
        Shape::Long => prop_oneof![any::<i64>(), -300i64..300]
            .prop_map(long)
            .boxed(),
        Shape::Float => prop_oneof![
            any::<u32>(),
            prop::sample::select(vec![
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -0.0,
                0.1,
                1e-45,
                f32::MAX,
                16_777_217.0
            ])
            .prop_map(f32::to_bits),
        ]
        .prop_map(|bits| bits.to_le_bytes().to_vec())
        .boxed(),
        Shape::Double => prop_oneof![
            any::<u64>(),
            prop::sample::select(vec![f64::NAN, f64::NEG_INFINITY, -0.0, 5.3, 5e-324, 1e300])
                .prop_map(f64::to_bits),
        ]
        .prop_map(|bits| bits.to_le_bytes().to_vec())
        .boxed(),
        Shape::Bytes => raw_bytes().prop_map(length_prefixed).boxed(),
        Shape::String => text().prop_map(length_prefixed).boxed(),
        Shape::Fixed(size) => prop::collection::vec(any::<u8>(), *size).boxed(),
        Shape::Enum(n) => prop_oneof![8 => 0..*n as i64, 1 => -2i64..6]
            .prop_map(long)
            .boxed(),
        Shape::Record(fields, _) => fields
            .iter()
            .map(value)
            .collect::<Vec<_>>()
            .prop_map(|parts| parts.concat())
            .boxed(),
        Shape::Twice(named) => (value(named), value(named))
            .prop_map(|(a, b)| [a, b].concat())
            .boxed(),
        Shape::Array(items) => (prop::collection::vec(value(items), 0..5), blocking())
            .prop_map(|(items, blocking)| blocks(&items, blocking))
            .boxed(),
        Shape::Map(values) => (
            prop::collection::vec((key(), value(values)), 0..6),
            blocking(),
        )
            .prop_map(|(entries, blocking)| {
                let entries: Vec<Vec<u8>> = entries
                    .into_iter()
                    .map(|(key, value)| [length_prefixed(key), value].concat())
                    .collect();
                blocks(&entries, blocking)
            })
            .boxed(),
        Shape::Union(variants) if variants.is_empty() => {
            prop_oneof![Just(Vec::new()), (-1i64..2).prop_map(long)].boxed()
        }
        Shape::Union(variants) => {
            let n = variants.len();
            let branches: Vec<BoxedStrategy<Vec<u8>>> = variants
                .iter()
                .enumerate()
                .map(|(i, variant)| {
                    value(variant)
                        .prop_map(move |v| [long(i as i64), v].concat())
                        .boxed()
                })
                .collect();
            prop_oneof![
                8 => prop::strategy::Union::new(branches),
                1 => prop_oneof![Just(-1i64), Just(n as i64), Just(i64::MAX)].prop_map(long),
            ]
            .boxed()
        }
        Shape::Logical(logical) => logical_value(*logical),
    }
}

fn logical_value(logical: Logical) -> BoxedStrategy<Vec<u8>> {
    let long = |n: i64| {
        let mut out = Vec::new();
        write_long(&mut out, n);
        out
    };
    match logical {
        Logical::Decimal(Some(size), _) => prop::collection::vec(any::<u8>(), size).boxed(),
        Logical::Decimal(None, _) => prop::collection::vec(any::<u8>(), 0..20)
            .prop_map(length_prefixed)
            .boxed(),
        Logical::BigDecimal => prop_oneof![
            4 => (prop::collection::vec(any::<u8>(), 0..18), -40i64..40).prop_map(move |(unscaled, scale)| {
                let mut inner = length_prefixed(unscaled);
                write_long(&mut inner, scale);
                inner
            }),
            1 => prop::collection::vec(any::<u8>(), 0..6),
        ]
        .prop_map(length_prefixed)
        .boxed(),
        Logical::UuidString => prop_oneof![
            4 => any::<u128>().prop_map(|n| {
                let uuid = apache_avro::Uuid::from_u128(n);
                match n % 5 {
                    0 => uuid.simple().to_string(),
                    1 => uuid.braced().to_string(),
                    2 => uuid.urn().to_string(),
                    3 => uuid.hyphenated().to_string().to_uppercase(),
                    _ => uuid.to_string(),
                }
                .into_bytes()
            }),
            1 => text(),
        ]
        .prop_map(length_prefixed)
        .boxed(),
        Logical::UuidBytes => prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 16),
            1 => prop::collection::vec(any::<u8>(), 0..20),
        ]
        .prop_map(length_prefixed)
        .boxed(),
        Logical::UuidFixed => prop::collection::vec(any::<u8>(), 16).boxed(),
        Logical::Date => prop_oneof![
            4 => (-719_528i32..2_932_897).prop_map(i64::from),
            1 => any::<i32>().prop_map(i64::from),
            1 => prop::sample::select(vec![-719_529i64, 2_932_897, -719_528, 2_932_896]),
        ]
        .prop_map(long)
        .boxed(),
        Logical::TimeMillis => any::<i32>().prop_map(i64::from).prop_map(long).boxed(),
        Logical::TimeMicros | Logical::Timestamp(..) => prop_oneof![
            // Within the years 0 to 9999 (and a little past) in millis, micros and nanos.
            3 => -300_000_000_000_000i64..300_000_000_000_000,
            2 => -300_000_000_000_000_000i64..300_000_000_000_000_000,
            2 => any::<i64>(),
            1 => prop::sample::select(vec![
                253_402_300_800_000i64,
                253_402_300_799_999,
                -62_167_219_200_000,
                -62_167_219_200_001,
                0,
                -1,
            ]),
        ]
        .prop_map(long)
        .boxed(),
        Logical::Duration => prop::collection::vec(any::<u8>(), 12).boxed(),
    }
}

fn raw_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12),
        "[a-z\"\\\\\\u{0}-\\u{1f}]{0,12}".prop_map(String::into_bytes),
    ]
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => "(|.{0,6}|[a-z\"\\\\\\u{0}-\\u{1f}\\u{7f}\\u{2028}☃😀]{0,12})".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

/// Map keys from a small set, so that maps hold repeated keys in any order, or any text.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec!["", "a", "b", "ab", "B", "é", "\"", "a\u{0}"])
            .prop_map(|k| k.as_bytes().to_vec()),
        1 => text(),
    ]
}

fn length_prefixed(bytes: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    write_long(&mut out, bytes.len() as i64);
    out.extend_from_slice(&bytes);
    out
}

/// How items are cut into blocks: one plain block, up to three, or one with a negative count and byte size.
#[derive(Debug, Clone, Copy)]
enum Blocking {
    One,
    Several,
    Negative,
}

fn blocking() -> impl Strategy<Value = Blocking> {
    prop_oneof![
        Just(Blocking::One),
        Just(Blocking::Several),
        Just(Blocking::Negative)
    ]
}

fn blocks(items: &[Vec<u8>], blocking: Blocking) -> Vec<u8> {
    let mut out = Vec::new();
    if !items.is_empty() {
        let size = match blocking {
            Blocking::Several => items.len().div_ceil(3),
            _ => items.len(),
        };
        for chunk in items.chunks(size) {
            let body = chunk.concat();
            if let Blocking::Negative = blocking {
                write_long(&mut out, -(chunk.len() as i64));
                write_long(&mut out, body.len() as i64);
            } else {
                write_long(&mut out, chunk.len() as i64);
            }
            out.extend_from_slice(&body);
        }
    }
    write_long(&mut out, 0);
    out
}

/// A schema, a few records of it, and damage to them.
fn case() -> impl Strategy<Value = (String, Vec<Vec<u8>>, Damage)> {
    shape()
        .prop_filter("records take bytes", |shape| !zero_size(shape))
        .prop_flat_map(|shape| {
            let schema = shape.render(&mut 0);
            (
                Just(schema),
                prop::collection::vec(value(&shape), 1..5),
                damage(),
            )
        })
}

/// A container file of `schema` with `records` in one block, spoiled by `damage`.
fn file(schema: &str, records: &[Vec<u8>], damage: &Damage) -> Vec<u8> {
    damaged_file(schema, records.concat(), records.len(), damage)
}

/// [`oracle::agree`], with this route's excuse for a different allocation limit.
fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    oracle::agree(bytes, over_a_different_allocation_limit)
}

/// True when the oracle decided differently only because apache-avro's process-wide allocation limit is not
/// zavro's (see the same function in `json_text_oracle.rs`: another test decoded before
/// [`limit_decode_allocations`] ran).
fn over_a_different_allocation_limit(new: &str, old: &Result<Ndjson, AvroError>) -> bool {
    let theirs = apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
    if theirs == MAX_DECODE_ALLOCATION {
        return false;
    }
    // Under a limit 32 times zavro's, the oracle refuses other lengths and collections, or reads them and then
    // finds something else wrong, or nothing: only zavro's own refusal can be checked.
    let ours = format!("over the decoding limit of {MAX_DECODE_ALLOCATION} bytes");
    new.contains(&ours)
        && match old {
            Err(AvroError::OverLimit(old)) => old.contains(&format!("limit of {theirs} bytes")),
            _ => true,
        }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_direct_route_writes_what_the_value_route_wrote_and_refuses_what_it_refused(
        (schema, records, damage) in case(),
    ) {
        agree(&file(&schema, &records, &damage))?;
    }
}

#[test]
fn most_generated_schemas_take_the_direct_route_and_most_records_decode() {
    // The property above proves nothing for schemas that do not parse, that the server refuses, or that keep
    // the value route: most must compile to a plan, and most undamaged records must decode.
    let mut runner = TestRunner::deterministic();
    let (mut planned, mut decoded) = (0, 0);
    let cases = 400;
    for _ in 0..cases {
        let (schema, records, _) = case().new_tree(&mut runner).expect("a case").current();
        if Schema::parse_str(&schema)
            .ok()
            .and_then(|s| Plan::compile(&s))
            .is_some()
        {
            planned += 1;
        }
        limit_decode_allocations();
        if Decoder::new()
            .decode_request(&file(&schema, &records, &Damage::None))
            .records
            .is_ok()
        {
            decoded += 1;
        }
    }
    assert!(planned * 10 >= cases * 9, "{planned} of {cases} compiled");
    assert!(decoded * 10 >= cases * 6, "{decoded} of {cases} decoded");
}

/// A container file of `schema` whose one block holds `records` undamaged.
fn one_block(schema: &str, records: &[Vec<u8>]) -> Vec<u8> {
    file(schema, records, &Damage::None)
}

fn long(n: i64) -> Vec<u8> {
    let mut out = Vec::new();
    write_long(&mut out, n);
    out
}

/// The record's line by the direct route, checked against the value route.
fn line(schema: &str, data: Vec<u8>) -> String {
    let bytes = one_block(schema, &[data]);
    agree(&bytes).expect("both routes agree");
    let text = Decoder::new()
        .decode_request(&bytes)
        .records
        .expect("it decodes");
    text.lines().next().expect("one line").to_owned()
}

/// The direct route's refusal of the record, checked against the value route.
fn refusal(schema: &str, data: Vec<u8>) -> AvroError {
    let bytes = one_block(schema, &[data]);
    agree(&bytes).expect("both routes agree");
    Decoder::new()
        .decode_request(&bytes)
        .records
        .expect_err("it is refused")
}

#[test]
fn decimals_put_the_point_where_the_scale_says_of_any_size() {
    let bytes = |scale: usize| {
        format!(r#"{{"type":"bytes","logicalType":"decimal","precision":50,"scale":{scale}}}"#)
    };
    let fixed =
        r#"{"type":"fixed","name":"D","size":3,"logicalType":"decimal","precision":7,"scale":2}"#;
    assert_eq!(
        line(&bytes(2), length_prefixed(vec![0x30, 0x39])),
        r#""123.45""#
    );
    assert_eq!(line(&bytes(3), length_prefixed(vec![0xFB])), r#""-0.005""#);
    assert_eq!(line(&bytes(0), length_prefixed(vec![])), r#""0""#);
    assert_eq!(line(fixed, vec![0xFF, 0xCF, 0xC7]), r#""-123.45""#);
    // Past 16 bytes (an i128), the unscaled value is a big integer: 2^135.
    let mut big = vec![0u8; 18];
    big[1] = 0x80;
    assert_eq!(
        line(&bytes(5), length_prefixed(big)),
        r#""435561429658801233233119497512663310.66368""#
    );
    let big_decimal = r#"{"type":"bytes","logicalType":"big-decimal"}"#;
    let mut inner = length_prefixed(vec![0x04, 0xD2]);
    inner.extend(long(2));
    assert_eq!(line(big_decimal, length_prefixed(inner)), r#""12.34""#);
}

#[test]
fn a_decimal_whose_scale_writes_past_the_request_budget_is_refused_unwritten() {
    // The value route writes its 40 million digits, then finds the request's text over budget; the direct route
    // finds so before it writes them. A precision of 10^12 would make the value route try to allocate a terabyte.
    let scale = 40_000_000;
    let decimal = format!(
        r#"{{"type":"bytes","logicalType":"decimal","precision":{scale},"scale":{scale}}}"#
    );
    let err = refusal(&decimal, length_prefixed(vec![1]));
    assert!(
        err.to_string()
            .contains("the records' JSON text passes 32 MiB"),
        "{err}"
    );
    // Bytes that do not decode, later in the record, are named first, as by the value route.
    let record = format!(
        r#"{{"type":"record","name":"R","fields":[{{"name":"d","type":{decimal}}},{{"name":"b","type":"boolean"}}]}}"#
    );
    let err = refusal(&record, [length_prefixed(vec![1]), vec![7]].concat());
    assert!(
        matches!(err, AvroError::BadRecord { record: 1, .. }),
        "{err}"
    );
    // Under the budget, the zeros are written.
    let scale = 1_000_000;
    let decimal = format!(
        r#"{{"type":"bytes","logicalType":"decimal","precision":{scale},"scale":{scale}}}"#
    );
    let text = line(&decimal, length_prefixed(vec![0xFF]));
    assert_eq!(text.len(), scale + 5);
    assert!(
        text.starts_with(r#""-0.000"#) && text.ends_with(r#"001""#),
        "{}",
        &text[..10]
    );
    // Past twice the budget the value route refuses it unwritten too, as a value with no JSON form; the direct
    // route's refusal stays the budget's.
    let huge = r#"{"type":"bytes","logicalType":"decimal","precision":1000000000000,"scale":1000000000000}"#;
    let bytes = one_block(huge, &[length_prefixed(vec![1])]);
    let err = Decoder::new().decode_request(&bytes).records.unwrap_err();
    assert!(
        err.to_string()
            .contains("the records' JSON text passes 32 MiB"),
        "{err}"
    );
    let err = Decoder::new()
        .decode_request_by_serde(&bytes)
        .records
        .unwrap_err();
    assert!(
        matches!(err, AvroError::NoJsonForm { record: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_string_whose_escaped_text_alone_passes_the_budget_is_refused_unwritten() {
    use super::{
        decode::MAX_REQUEST_DECODED_BYTES,
        natural_text::{Fault, Scratch, record},
    };
    // 6 MiB of control characters: 36 MiB of text (six bytes each, `\u0001`), past the 32 MiB budget, from one
    // string the budget check at each value could not stop. As a string, and as bytes (code points 0–255).
    let controls = vec![1u8; 6 << 20];
    for schema in [r#""string""#, r#""bytes""#] {
        let plan = Plan::compile(&Schema::parse_str(schema).unwrap()).expect("a plan");
        let data = length_prefixed(controls.clone());
        let mut out = Vec::with_capacity(MAX_REQUEST_DECODED_BYTES + 1024);
        let capacity = out.capacity();
        let err = record(&plan, &mut &data[..], &mut out, &mut Scratch::default()).unwrap_err();
        assert!(matches!(err, Fault::TooMuchText), "{schema}: {err:?}");
        assert_eq!(
            out.capacity(),
            capacity,
            "{schema}: the text grew past the budget"
        );
        assert!(out.is_empty(), "{schema}: nothing written");
        // The request: refused as the value route refuses it, once it has written all of it.
        let refused = refusal(schema, data);
        assert!(
            matches!(refused, AvroError::OverLimit(_)),
            "{schema}: {refused:?}"
        );
    }
}

#[test]
fn a_record_whose_text_passes_the_budget_is_refused_before_it_grows_much_past_it() {
    use super::{
        decode::MAX_REQUEST_DECODED_BYTES,
        natural_text::{Fault, Scratch, record},
    };
    // One byte of data per item writes a 64 KiB symbol: 250,000 items (within the allocation limit on a
    // collection's declared size) would be 16 GB of text.
    let symbol = "S".repeat(64 * 1024);
    let schema = format!(
        r#"{{"type":"array","items":{{"type":"enum","name":"E","symbols":["{symbol}"]}}}}"#
    );
    let schema = Schema::parse_str(&schema).unwrap();
    let plan = Plan::compile(&schema).expect("a plan");
    let items = 250_000;
    let mut data = long(items);
    data.extend(std::iter::repeat_n(0u8, items as usize));
    data.push(0);
    let mut out = Vec::new();
    let err = record(&plan, &mut &data[..], &mut out, &mut Scratch::default()).unwrap_err();
    assert!(matches!(err, Fault::TooMuchText), "{err:?}");
    assert!(
        out.len() <= MAX_REQUEST_DECODED_BYTES + symbol.len() + 8,
        "{} bytes of text",
        out.len()
    );
}

#[test]
fn uuids_are_written_hyphenated_in_lowercase_whatever_their_encoding() {
    let expected = r#""67e55044-10b1-426f-9247-bb680e5fe0c8""#;
    let bits = 0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8u128;
    let string = r#"{"type":"string","logicalType":"uuid"}"#;
    for text in [
        "67E55044-10B1-426F-9247-BB680E5FE0C8",
        "67e5504410b1426f9247bb680e5fe0c8",
        "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
    ] {
        assert_eq!(
            line(string, length_prefixed(text.into())),
            expected,
            "{text}"
        );
    }
    let bytes = r#"{"type":"bytes","logicalType":"uuid"}"#;
    assert_eq!(
        line(bytes, length_prefixed(bits.to_be_bytes().to_vec())),
        expected
    );
    let fixed = r#"{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}"#;
    assert_eq!(line(fixed, bits.to_be_bytes().to_vec()), expected);
    assert!(matches!(
        refusal(string, length_prefixed(b"not-a-uuid".to_vec())),
        AvroError::BadRecord { record: 1, .. }
    ));
    assert!(matches!(
        refusal(bytes, length_prefixed(vec![1; 15])),
        AvroError::BadRecord { record: 1, .. }
    ));
}

#[test]
fn dates_times_timestamps_and_durations_read_naturally() {
    let on =
        |base: &str, logical: &str| format!(r#"{{"type":"{base}","logicalType":"{logical}"}}"#);
    assert_eq!(line(&on("int", "date"), long(20_420)), r#""2025-11-28""#);
    assert_eq!(line(&on("int", "date"), long(-719_528)), r#""0000-01-01""#);
    assert_eq!(
        line(&on("int", "time-millis"), long(3_723_004)),
        r#""01:02:03.004000""#
    );
    assert_eq!(
        line(&on("int", "time-millis"), long(-1)),
        r#""23:59:59.999000""#
    );
    assert_eq!(
        line(&on("long", "time-micros"), long(3_723_000_004)),
        r#""01:02:03.000004""#
    );
    let at = 1_764_301_635_123;
    for (logical, count, text) in [
        ("timestamp-millis", at, "2025-11-28T03:47:15.123Z"),
        (
            "timestamp-micros",
            at * 1000 + 4,
            "2025-11-28T03:47:15.123004Z",
        ),
        (
            "timestamp-nanos",
            at * 1_000_000 + 5,
            "2025-11-28T03:47:15.123000005Z",
        ),
        ("local-timestamp-millis", at, "2025-11-28T03:47:15.123"),
        ("local-timestamp-micros", 0, "1970-01-01T00:00:00"),
        ("local-timestamp-nanos", -1, "1969-12-31T23:59:59.999999999"),
    ] {
        assert_eq!(
            line(&on("long", logical), long(count)),
            format!(r#""{text}""#),
            "{logical}"
        );
    }
    let duration = r#"{"type":"fixed","name":"P","size":12,"logicalType":"duration"}"#;
    let parts = [
        1u32.to_le_bytes(),
        2u32.to_le_bytes(),
        u32::MAX.to_le_bytes(),
    ]
    .concat();
    assert_eq!(
        line(duration, parts),
        r#"{"months":1,"days":2,"millis":4294967295}"#
    );
}

#[test]
fn dates_and_timestamps_without_rfc_3339_text_are_refused_after_the_bytes_are_checked() {
    let record = r#"{"type":"record","name":"R","fields":[
        {"name":"d","type":{"type":"int","logicalType":"date"}},
        {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"b","type":"boolean"}]}"#;
    let far_date = long(2_932_897);
    let far_time = long(i64::MAX);
    // The first value without a text is named...
    let err = refusal(
        record,
        [far_date.clone(), far_time.clone(), vec![1]].concat(),
    );
    assert!(
        matches!(err, AvroError::NoJsonForm { record: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("date 2932897 days"), "{err}");
    // ...but bytes that do not decode, later in the record, come first.
    let err = refusal(record, [far_date, far_time, vec![2]].concat());
    assert!(
        matches!(err, AvroError::BadRecord { record: 1, .. }),
        "{err}"
    );
    // In a map, the first by key order, as the value route converts them.
    let map = r#"{"type":"map","values":{"type":"int","logicalType":"date"}}"#;
    let entries = [
        long(2),
        length_prefixed(b"b".to_vec()),
        long(-719_529),
        length_prefixed(b"a".to_vec()),
        long(2_932_897),
        long(0),
    ]
    .concat();
    let err = refusal(map, entries);
    assert!(err.to_string().contains("date 2932897 days"), "{err}");
}

#[test]
fn maps_come_out_in_key_order_with_the_last_value_of_a_repeated_key() {
    let map = r#"{"type":"map","values":"long"}"#;
    let entry = |key: &str, n: i64| [length_prefixed(key.into()), long(n)].concat();
    let entries = [
        long(3),
        entry("b", 1),
        entry("a", 2),
        entry("b", 3),
        long(-2),
        long(4),
        entry("", 4),
        entry("a", 5),
        long(0),
    ]
    .concat();
    assert_eq!(line(map, entries), r#"{"":4,"a":5,"b":3}"#);
    let nested = r#"{"type":"map","values":{"type":"map","values":"long"}}"#;
    let inner = |key: &str| [long(2), entry(key, 1), entry("a", 2), long(0)].concat();
    let entries = [
        long(2),
        length_prefixed(b"y".to_vec()),
        inner("z"),
        length_prefixed(b"x".to_vec()),
        inner("0"),
        long(0),
    ]
    .concat();
    assert_eq!(
        line(nested, entries),
        r#"{"x":{"0":1,"a":2},"y":{"a":2,"z":1}}"#
    );
}

#[test]
fn bytes_and_fixed_are_strings_of_code_points_0_to_255() {
    let record = r#"{"type":"record","name":"R","fields":[{"name":"b","type":"bytes"},
        {"name":"f","type":{"type":"fixed","name":"F","size":4}}]}"#;
    let data = [
        length_prefixed(vec![0, b'"', 0x7F, 0xFF]),
        vec![0x80, b'\\', b'\n', b'a'],
    ]
    .concat();
    assert_eq!(
        line(record, data),
        "{\"b\":\"\\u0000\\\"\u{7f}\u{ff}\",\"f\":\"\u{80}\\\\\\na\"}"
    );
}

#[test]
fn data_cut_short_reads_as_null_where_apache_avro_reads_it_so() {
    // A string or boolean cut off by the end of the data, and a union whose index is cut off, read as null;
    // a long does not.
    let record = |field: &str| {
        format!(
            r#"{{"type":"record","name":"R","fields":[{{"name":"a","type":"long"}},{{"name":"z","type":{field}}}]}}"#
        )
    };
    assert_eq!(
        line(
            &record(r#""string""#),
            [long(1), long(5), b"ab".to_vec()].concat()
        ),
        r#"{"a":1,"z":null}"#
    );
    assert_eq!(
        line(&record(r#""boolean""#), long(1)),
        r#"{"a":1,"z":null}"#
    );
    assert_eq!(
        line(&record(r#"["long","string"]"#), long(1)),
        r#"{"a":1,"z":null}"#
    );
    assert_eq!(
        line(
            &record(r#"["long","string"]"#),
            [long(1), vec![0x80]].concat()
        ),
        r#"{"a":1,"z":null}"#
    );
    assert!(matches!(
        refusal(&record(r#""long""#), long(1)),
        AvroError::BadRecord { record: 1, .. }
    ));
    // Ten bytes that all go on are too long, not cut off.
    assert!(matches!(
        refusal(
            &record(r#"["long","string"]"#),
            [long(1), vec![0x80; 10]].concat()
        ),
        AvroError::BadRecord { record: 1, .. }
    ));
    // A union of no branches has no null to read.
    let err = refusal(&record("[]"), long(1));
    assert!(
        matches!(err, AvroError::NoJsonForm { record: 1, .. }),
        "{err}"
    );
}

#[test]
fn lengths_and_collections_past_the_allocation_limit_are_refused_alike() {
    let over = (MAX_DECODE_ALLOCATION + 1) as i64;
    for schema in [r#""string""#, r#""bytes""#] {
        let err = refusal(schema, long(over));
        assert_eq!(
            err.to_string(),
            format!(
                "over a decoding limit: a value declares {over} bytes, over the decoding limit of \
                 {MAX_DECODE_ALLOCATION} bytes"
            )
        );
    }
    // apache-avro counts an array's items at the size of its value type, a map's entries with their keys.
    let array = r#"{"type":"array","items":"long"}"#;
    let map = r#"{"type":"map","values":"long"}"#;
    let items = MAX_DECODE_ALLOCATION / size_of::<apache_avro::types::Value>() + 1;
    let err = refusal(array, long(items as i64));
    assert!(matches!(err, AvroError::OverLimit(_)), "{err}");
    let entries = MAX_DECODE_ALLOCATION / size_of::<(String, apache_avro::types::Value)>() + 1;
    let err = refusal(map, long(entries as i64));
    assert!(matches!(err, AvroError::OverLimit(_)), "{err}");
    // A count over the limit itself is refused before it is multiplied.
    let err = refusal(array, long(over));
    assert!(
        err.to_string().contains(&format!("declares {over} bytes")),
        "{err}"
    );
}

#[test]
fn a_map_whose_repeated_keys_keep_it_under_the_entry_limit_is_read_alike() {
    // apache-avro counts the distinct keys it holds: blocks adding up past the limit in entries, but not in
    // distinct keys, pass; one more distinct key does not.
    let map = r#"{"type":"map","values":"int"}"#;
    let limit = MAX_DECODE_ALLOCATION / size_of::<(String, apache_avro::types::Value)>();
    let block = |keys: &[&str]| {
        let mut out = long(keys.len() as i64);
        for key in keys {
            out.extend(length_prefixed(key.as_bytes().to_vec()));
            out.extend(long(0));
        }
        out
    };
    let repeated = vec!["k"; limit - 1];
    let fits = [block(&repeated), block(&["k"]), block(&["j"]), long(0)].concat();
    assert_eq!(line(map, fits), r#"{"j":0,"k":0}"#);
    let mut distinct: Vec<String> = (0..limit).map(|i| i.to_string()).collect();
    distinct.sort();
    let distinct: Vec<&str> = distinct.iter().map(String::as_str).collect();
    let over = [block(&distinct), block(&["x"]), long(0)].concat();
    let err = refusal(map, over);
    assert!(matches!(err, AvroError::OverLimit(_)), "{err}");
}

#[test]
fn too_many_values_in_one_request_are_refused_alike() {
    let schema = r#"{"type":"array","items":"boolean"}"#;
    let record = |n: usize| [long(n as i64), vec![1; n], long(0)].concat();
    // Ten records of 100,000 items and their arrays, and one of the rest: exactly the limit.
    let full = MAX_VALUES - 10 * 100_001 - 1;
    let records = |last: usize| {
        let mut records = vec![record(100_000); 10];
        records.push(record(last));
        records
    };
    let bytes = one_block(schema, &records(full + 1));
    agree(&bytes).expect("both routes agree");
    let err = Decoder::new().decode_request(&bytes).records.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("more than {MAX_VALUES} JSON values")),
        "{err}"
    );
    let bytes = one_block(schema, &records(full));
    agree(&bytes).expect("both routes agree");
    assert!(Decoder::new().decode_request(&bytes).records.is_ok());
}

#[test]
fn a_plan_is_compiled_once_per_schema_and_shares_named_types() {
    // 30 levels of "T{n} has two fields of type T{n-1}": the plan holds each type once.
    let mut text =
        r#"{"type":"record","name":"T0","fields":[{"name":"v","type":"long"}]}"#.to_owned();
    for n in 1..30 {
        text = format!(
            r#"{{"type":"record","name":"T{n}","fields":[{{"name":"a","type":{text}}},{{"name":"b","type":"T{m}"}}]}}"#,
            m = n - 1
        );
    }
    let schema = Schema::parse_str(&text).unwrap();
    let plan = Plan::compile(&schema).expect("a plan");
    assert!(format!("{plan:?}").len() < 10_000, "{plan:?}");
}
