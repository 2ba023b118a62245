//! JSON straight to the Avro binary of zavro's JSON schema, without a `serde_json::Value` tree: serde_json's
//! parser drives a visitor that appends each value's bytes to a reused buffer as it is read.
//!
//! Two drivers feed one writer ([`JsonWriter`]): the visitor, for JSON text (`zavro send`), and a walk over a
//! `Value`, for records that already are trees (a lone top-level array, `zavro bench`, tests). The bytes are the
//! ones apache-avro's serializer wrote from a `Value` before (the property tests below hold the old route as
//! their oracle): a record is the union index of its value, then the value; an array or map is its count, its
//! items and a zero, or a lone zero when empty; numbers follow [`super::numbers`] (an integer literal within
//! the `long` range is a long, any other literal a double if the double holds its value exactly, else refused).
//!
//! A `Value` keeps one entry per object key, at the first key's place with the last key's value. When the text
//! repeats a key, the visitor says so and the record is encoded again from its `Value` (rare, and never
//! different in its bytes from a tree built first).

use std::{cell::RefCell, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{container::write_long, numbers::exact_double};

/// The key serde_json (`arbitrary_precision`) hands a number's text under, as a one-entry map.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Keys of one object compared for repeats one by one; an object with more goes through a `Value` instead.
const KEYS_COMPARED: usize = 64;

/// Union indexes of `zavro.Json`'s one field, zig-zag encoded (one byte each).
mod branch {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 2;
    pub const LONG: u8 = 4;
    pub const DOUBLE: u8 = 6;
    pub const STRING: u8 = 8;
    pub const ARRAY: u8 = 10;
    pub const MAP: u8 = 12;
}

/// Appends one `zavro.Json` record, encoded from a `Value`, to `out`. Fails with the first number (in the
/// tree's order) that Avro cannot carry exactly, leaving `out` as it was.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    let start = out.len();
    let mut failed = None;
    walk(out, value, &mut failed);
    match failed {
        None => Ok(()),
        Some(number) => {
            out.truncate(start);
            Err(number)
        }
    }
}

fn walk(out: &mut Vec<u8>, value: &Value, failed: &mut Option<String>) {
    match value {
        Value::Null => out.push(branch::NULL),
        Value::Bool(b) => out.extend_from_slice(&[branch::BOOLEAN, u8::from(*b)]),
        Value::Number(n) => number(out, n.as_str(), failed),
        Value::String(s) => string(out, branch::STRING, s),
        Value::Array(items) => {
            let count_at = open_block(out, branch::ARRAY);
            for item in items {
                walk(out, item, failed);
            }
            close_block(out, count_at, items.len());
        }
        Value::Object(map) => {
            let count_at = open_block(out, branch::MAP);
            for (key, item) in map {
                write_str(out, key);
                walk(out, item, failed);
            }
            close_block(out, count_at, map.len());
        }
    }
}

/// A number from its JSON text, as serde_json keeps it.
fn number(out: &mut Vec<u8>, text: &str, failed: &mut Option<String>) {
    if !text.contains(['.', 'e', 'E']) {
        match text.parse::<i64>() {
            Ok(i) => long(out, i),
            Err(_) => fail(failed, text),
        }
    } else if let Some(f) = exact_double(text) {
        out.push(branch::DOUBLE);
        out.extend_from_slice(&f.to_le_bytes());
    } else {
        fail(failed, text);
    }
}

fn long(out: &mut Vec<u8>, i: i64) {
    out.push(branch::LONG);
    write_long(out, i);
}

fn fail(failed: &mut Option<String>, text: &str) {
    failed.get_or_insert_with(|| text.to_owned());
}

fn string(out: &mut Vec<u8>, branch: u8, s: &str) {
    out.push(branch);
    write_str(out, s);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    write_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Starts an array or map: its branch, and one byte held for its count, which is not known yet.
fn open_block(out: &mut Vec<u8>, branch: u8) -> usize {
    out.extend_from_slice(&[branch, 0]);
    out.len() - 1
}

/// Ends an array or map of `count` items whose count byte is at `count_at`: an empty one is the lone zero
/// already there; otherwise the count goes in its place (moving the items when it takes more than one byte,
/// from 64 items on) and a zero ends the block.
pub(super) fn close_block(out: &mut Vec<u8>, count_at: usize, count: usize) {
    if count == 0 {
        return;
    }
    let mut varint = Vec::new();
    let (first, rest) = if count < 64 {
        ((count as u8) << 1, &[][..])
    } else {
        write_long(&mut varint, count as i64);
        (varint[0], &varint[1..])
    };
    out[count_at] = first;
    if !rest.is_empty() {
        out.splice(count_at + 1..count_at + 1, rest.iter().copied());
    }
    out.push(0);
}

/// The writer behind the text visitor: the buffer the records go into, and what a record found on the way.
#[derive(Debug, Default)]
pub struct JsonWriter {
    /// Encoded records, one after the other.
    pub out: Vec<u8>,
    /// Where the keys of the objects being read are in `out` (their bytes, after the length), innermost last.
    keys: Vec<(usize, usize)>,
    /// For each object being read, innermost last, where its keys start in `keys`.
    objects: Vec<usize>,
    /// The first number Avro cannot carry exactly, as the error names it.
    failed: Option<String>,
    /// The record repeats a key in an object.
    repeated_key: bool,
}

/// What became of one record read from JSON text.
#[derive(Debug, PartialEq, Eq)]
pub enum Transcoded {
    /// Its bytes are at the end of the writer's buffer.
    Written,
    /// It holds a number Avro cannot carry exactly (this one); nothing was written.
    Unrepresentable(String),
    /// It repeats an object key: nothing was written, encode its `Value` instead.
    RepeatedKey,
}

thread_local! {
    /// The writer of the thread that reads JSON text; serde_json's stream of values takes no seed.
    static WRITER: RefCell<JsonWriter> = RefCell::new(JsonWriter::default());
}

/// Runs `f` on this thread's writer, the one [`Transcoded`] values are read into.
pub fn with_writer<T>(f: impl FnOnce(&mut JsonWriter) -> T) -> T {
    WRITER.with_borrow_mut(f)
}

impl<'de> serde::Deserialize<'de> for Transcoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        WRITER.with_borrow_mut(|writer| {
            let start = writer.out.len();
            writer.failed = None;
            writer.repeated_key = false;
            writer.keys.clear();
            writer.objects.clear();
            let result = Node(writer).deserialize(deserializer);
            let outcome = match (writer.failed.take(), writer.repeated_key) {
                (_, true) => Transcoded::RepeatedKey,
                (Some(number), false) => Transcoded::Unrepresentable(number),
                (None, false) => Transcoded::Written,
            };
            if result.is_err() || outcome != Transcoded::Written {
                writer.out.truncate(start);
            }
            result.map(|()| outcome)
        })
    }
}

/// One JSON value, appended as a `zavro.Json` record.
struct Node<'w>(&'w mut JsonWriter);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.out.push(branch::NULL);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0
            .out
            .extend_from_slice(&[branch::BOOLEAN, u8::from(v)]);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        long(&mut self.0.out, v);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(i) => long(&mut self.0.out, i),
            Err(_) => fail(&mut self.0.failed, &v.to_string()),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        string(&mut self.0.out, branch::STRING, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let writer = self.0;
        let count_at = open_block(&mut writer.out, branch::ARRAY);
        let mut count = 0;
        while seq.next_element_seed(Node(&mut *writer))?.is_some() {
            count += 1;
        }
        close_block(&mut writer.out, count_at, count);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let writer = self.0;
        match map.next_key_seed(Key {
            writer: &mut *writer,
            first: true,
        })? {
            None => {
                writer.out.extend_from_slice(&[branch::MAP, 0]);
                Ok(())
            }
            // A number, as serde_json hands them over with `arbitrary_precision` (or an object whose first key is
            // that token, which serde_json's own `Value` reads as a number too).
            Some(KeyKind::Number) => map.next_value_seed(NumberText(writer)),
            Some(KeyKind::Next) => unreachable!("the first key opens the object"),
            Some(KeyKind::First { count_at }) => {
                let mut count = 0;
                loop {
                    map.next_value_seed(Node(&mut *writer))?;
                    count += 1;
                    let key = Key {
                        writer: &mut *writer,
                        first: false,
                    };
                    if map.next_key_seed(key)?.is_none() {
                        break;
                    }
                }
                if let Some(keys_from) = writer.objects.pop() {
                    writer.keys.truncate(keys_from);
                }
                close_block(&mut writer.out, count_at, count);
                Ok(())
            }
        }
    }
}

/// An object key: the first one opens the map (unless it is serde_json's number token).
struct Key<'w> {
    writer: &'w mut JsonWriter,
    first: bool,
}

/// What a key turned out to be.
enum KeyKind {
    /// The first key of an object whose count byte is at `count_at`.
    First { count_at: usize },
    /// A later key of the same object.
    Next,
    /// serde_json's number token: the value is a number's text.
    Number,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = KeyKind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<KeyKind, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = KeyKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyKind, E> {
        let writer = self.writer;
        let kind = if self.first {
            if key == NUMBER_TOKEN {
                return Ok(KeyKind::Number);
            }
            writer.objects.push(writer.keys.len());
            KeyKind::First {
                count_at: open_block(&mut writer.out, branch::MAP),
            }
        } else {
            KeyKind::Next
        };
        let keys_from = writer.objects.last().copied().unwrap_or(0);
        let open = &writer.keys[keys_from..];
        if open.len() >= KEYS_COMPARED
            || open
                .iter()
                .any(|&(from, to)| &writer.out[from..to] == key.as_bytes())
        {
            writer.repeated_key = true;
        }
        write_long(&mut writer.out, key.len() as i64);
        let from = writer.out.len();
        writer.out.extend_from_slice(key.as_bytes());
        writer.keys.push((from, writer.out.len()));
        Ok(kind)
    }
}

/// The text of a number, which serde_json hands over as the value under [`NUMBER_TOKEN`].
struct NumberText<'w>(&'w mut JsonWriter);

impl<'de> DeserializeSeed<'de> for NumberText<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NumberText<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("string containing a number")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        let writer = self.0;
        if canonical_number(text) {
            number(&mut writer.out, text, &mut writer.failed);
        } else {
            // Only an object that spells the token itself gets here: read its text as serde_json's `Value` does.
            let parsed: serde_json::Number = text.parse().map_err(E::custom)?;
            number(&mut writer.out, parsed.as_str(), &mut writer.failed);
        }
        Ok(())
    }
}

/// True when `text` is a number as serde_json writes the text it keeps (`-?(0|[1-9][0-9]*)(\.[0-9]+)?
/// (e[+-][0-9]+)?`), which parsing it again would not change.
pub(super) fn canonical_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    let whole_from = i;
    let whole = digits(&mut i);
    if whole == 0 || (whole > 1 && bytes[whole_from] == b'0') {
        return false;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if bytes.get(i) == Some(&b'e') {
        i += 1;
        if !matches!(bytes.get(i), Some(b'+' | b'-')) {
            return false;
        }
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::avro::{AvroError, encode::DATUM_WRITER, json, numbers::check_numbers};

    /// The route before this module: a tree, its numbers checked, then apache-avro's serializer.
    fn oracle(value: &Value) -> Result<Vec<u8>, String> {
        check_numbers(value)?;
        let mut out = Vec::new();
        DATUM_WRITER
            .write_ser(&mut out, &json::Record(value))
            .map_err(|e| format!("apache-avro: {e}"))?;
        Ok(out)
    }

    /// One record transcoded from `text` as the sender does it: through the visitor, and through the tree when
    /// the visitor finds a repeated key.
    fn transcoded(text: &str) -> Result<Result<Vec<u8>, String>, String> {
        with_writer(|writer| writer.out.clear());
        let outcome: Transcoded = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(match outcome {
            Transcoded::Written => Ok(with_writer(|writer| std::mem::take(&mut writer.out))),
            Transcoded::Unrepresentable(number) => Err(number),
            Transcoded::RepeatedKey => {
                assert!(
                    with_writer(|writer| writer.out.is_empty()),
                    "nothing is left"
                );
                let value: Value = serde_json::from_str(text).expect("the visitor read it");
                let mut out = Vec::new();
                write_value(&mut out, &value).map(|()| out)
            }
        })
    }

    /// The old route from text: parsed into a tree, then [`oracle`].
    fn old(text: &str) -> Result<Result<Vec<u8>, String>, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(oracle(&value))
    }

    /// JSON written by hand, so it can repeat keys, spell numbers every way, and spread white space.
    #[derive(Debug, Clone)]
    enum Json {
        Null,
        Bool(bool),
        Number(String),
        Text(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    impl Json {
        fn write(&self, out: &mut String, space: &mut impl Iterator<Item = &'static str>) {
            out.push_str(space.next().unwrap_or(""));
            match self {
                Json::Null => out.push_str("null"),
                Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Json::Number(n) => out.push_str(n),
                Json::Text(s) => out.push_str(&serde_json::to_string(s).unwrap()),
                Json::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        item.write(out, space);
                    }
                    out.push_str(space.next().unwrap_or(""));
                    out.push(']');
                }
                Json::Object(entries) => {
                    out.push('{');
                    for (i, (key, item)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&serde_json::to_string(key).unwrap());
                        out.push(':');
                        item.write(out, space);
                    }
                    out.push('}');
                }
            }
        }

        fn text(&self, spaces: &[&'static str]) -> String {
            let mut out = String::new();
            self.write(&mut out, &mut spaces.iter().copied().cycle());
            out
        }
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:E}")),
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?",
            Just("-0".to_owned()),
            Just("-0.0".to_owned()),
            Just("1e400".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("9223372036854775808".to_owned()),
            Just("-9223372036854775809".to_owned()),
            Just("5e-324".to_owned()),
            Just("3.14159265358979323846".to_owned()),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-c]",
            1 => "\\PC{0,8}",
            1 => Just(NUMBER_TOKEN.to_owned()),
        ]
    }

    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            number().prop_map(Json::Number),
            "\\PC{0,12}".prop_map(Json::Text),
            prop_oneof!["-?[0-9]{1,5}(\\.[0-9]{1,3})?", "x|1e5|--1|01"].prop_map(Json::Text),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
                prop::collection::vec((key(), inner), 0..8).prop_map(Json::Object),
            ]
        })
    }

    fn spaces() -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(
            prop_oneof![Just(""), Just(" "), Just("\n"), Just("\t\r\n ")],
            1..5,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn transcoding_writes_the_bytes_of_the_old_route_and_refuses_what_it_refused(
            json in json(),
            spaces in spaces(),
        ) {
            let text = json.text(&spaces);
            prop_assert_eq!(transcoded(&text), old(&text), "{}", text);
        }

        #[test]
        fn broken_text_fails_with_the_old_message(json in json(), spaces in spaces(), cut in any::<prop::sample::Index>(), junk in "[\\]}{,:\"x0-]") {
            let text = json.text(&spaces);
            let at = cut.index(text.len() + 1);
            let Some(head) = text.get(..at) else { return Ok(()); };
            let broken = format!("{head}{junk}{}", &text[at..]);
            prop_assert_eq!(transcoded(&broken), old(&broken), "{}", broken);
            prop_assert_eq!(transcoded(head), old(head), "{}", head);
        }

        #[test]
        fn a_tree_is_written_as_the_old_route_wrote_it(json in json(), spaces in spaces()) {
            let Ok(value) = serde_json::from_str::<Value>(&json.text(&spaces)) else { return Ok(()); };
            let mut out = Vec::new();
            prop_assert_eq!(write_value(&mut out, &value).map(|()| out), oracle(&value));
        }
    }

    #[test]
    fn counts_of_64_items_and_more_move_the_items() {
        for n in [0, 1, 63, 64, 65, 8191, 8192, 20_000] {
            let text = serde_json::to_string(&vec![1; n]).unwrap();
            assert_eq!(transcoded(&text), old(&text), "{n} items");
            let object: serde_json::Map<String, Value> =
                (0..n).map(|i| (i.to_string(), Value::from(i))).collect();
            let text = serde_json::to_string(&object).unwrap();
            assert_eq!(transcoded(&text), old(&text), "{n} keys");
        }
    }

    #[test]
    fn a_repeated_key_keeps_the_first_place_and_the_last_value() {
        let text = r#"{"a": 1e400, "b": 2, "a": 3}"#;
        assert_eq!(
            serde_json::from_str::<Transcoded>(text).unwrap(),
            Transcoded::RepeatedKey
        );
        assert_eq!(transcoded(text), old(text));
        assert!(
            transcoded(text).unwrap().is_ok(),
            "the refused number was replaced"
        );
    }

    #[test]
    fn numbers_become_longs_doubles_or_refusals_as_before() {
        for (text, expected) in [
            ("-0", Ok(vec![branch::LONG, 0])),
            (
                "1.0",
                Ok([&[branch::DOUBLE][..], &1f64.to_le_bytes()].concat()),
            ),
            ("9223372036854775808", Err("9223372036854775808".to_owned())),
            ("1E400", Err("1e+400".to_owned())),
        ] {
            assert_eq!(transcoded(text).unwrap(), expected, "{text}");
            assert_eq!(old(text).unwrap(), transcoded(text).unwrap(), "{text}");
        }
        let err =
            crate::avro::encode(&[serde_json::json!({"n": 18446744073709551615u64})]).unwrap_err();
        assert!(
            matches!(err, AvroError::UnrepresentableNumber { record: 1, .. }),
            "{err}"
        );
    }
}
