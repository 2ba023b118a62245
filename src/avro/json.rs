//! The serde mapping of `zavro.Json` records, driving apache-avro's schema-aware (de)serializer directly: JSON
//! values serialize into records, and records deserialize straight into JSON text (no `Value` tree). Object
//! keys keep their order, integers stay integers, and decoding is bounded in depth and in the number of values.
//! Test-only: the server decodes with [`super::json_text`] and the sender encodes with [`super::transcode`]; this
//! route is their oracle.

use std::{cell::Cell, fmt};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, MapAccess, SeqAccess, Visitor},
};
#[cfg(test)]
use serde::{
    Serializer,
    ser::{SerializeMap, SerializeSeq, SerializeStruct},
};
#[cfg(test)]
use serde_json::Number;
use serde_json::Value;

use super::{MAX_DEPTH, MAX_VALUES, numbers::non_finite_name};

/// Resets the per-file limits; call before decoding each container file.
pub(super) fn start_file() {
    DEPTH.with(|d| d.set(0));
    VALUES.with(|n| n.set(0));
    LIMIT_REACHED.with_borrow_mut(|limit| *limit = None);
}

/// The limit the last failed record reached, if a limit (not the data) is why it failed. apache-avro wraps a
/// visitor's error in its own, so the reason travels beside the error rather than inside it.
pub(super) fn take_limit_reached() -> Option<String> {
    LIMIT_REACHED.with_borrow_mut(Option::take)
}

/// Fails decoding because `limit` was reached, remembering it for [`take_limit_reached`].
fn limit_reached<E: de::Error>(limit: String) -> E {
    let error = E::custom(&limit);
    LIMIT_REACHED.with_borrow_mut(|reached| *reached = Some(limit));
    error
}

/// One value of the `zavro.Json` record, borrowed for serialization: the route before [`super::transcode`], kept
/// as the tests' oracle.
#[cfg(test)]
pub(super) struct Record<'a>(pub(super) &'a Value);

/// The union inside a `zavro.Json` record.
#[cfg(test)]
struct Node<'a>(&'a Value);

#[cfg(test)]
impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("Json", 1)?;
        record.serialize_field("value", &Node(self.0))?;
        record.end()
    }
}

#[cfg(test)]
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

#[cfg(test)]
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
    /// The limit that stopped decoding, when one did.
    static LIMIT_REACHED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Counts one more decoded value against [`MAX_VALUES`].
fn count_value<E: de::Error>() -> Result<(), E> {
    let count = VALUES.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    if count > MAX_VALUES {
        return Err(limit_reached(format!(
            "more than {MAX_VALUES} JSON values in one request"
        )));
    }
    Ok(())
}

/// Holds the depth counter up for the lifetime of one nested value.
struct DepthGuard;

impl DepthGuard {
    fn enter<E: de::Error>() -> Result<Self, E> {
        DEPTH.with(|d| {
            let depth = d.get() + 1;
            if depth > MAX_DEPTH {
                return Err(limit_reached(format!(
                    "nesting deeper than {MAX_DEPTH} levels"
                )));
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

thread_local! {
    /// Where [`TextRecord`] writes: apache-avro's datum reader takes no seed, so the JSON text goes here.
    static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Empties the text buffer before a file is transcoded.
pub(super) fn start_text() {
    TEXT.with_borrow_mut(Vec::clear);
}

/// Appends to the text buffer.
pub(super) fn push_text(bytes: &[u8]) {
    TEXT.with_borrow_mut(|text| text.extend_from_slice(bytes));
}

/// Takes the text written so far.
pub(super) fn take_text() -> Vec<u8> {
    TEXT.with_borrow_mut(std::mem::take)
}

fn write_json<T: Serialize + ?Sized, E: de::Error>(value: &T) -> Result<(), E> {
    TEXT.with_borrow_mut(|text| serde_json::to_writer(text, value))
        .map_err(E::custom)
}

/// A `zavro.Json` record decoded straight into JSON text (no `Value` tree), written to the text buffer.
pub(super) struct TextRecord;

/// The union inside a `zavro.Json` record, transcoded to JSON text.
struct TextNode;

impl<'de> Deserialize<'de> for TextRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("Json", &["value"], TextRecordVisitor)
    }
}

struct TextRecordVisitor;

impl<'de> Visitor<'de> for TextRecordVisitor {
    type Value = TextRecord;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a zavro.Json record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextRecord, A::Error> {
        let mut seen = false;
        while let Some(ValueField) = map.next_key()? {
            if seen {
                return Err(de::Error::duplicate_field("value"));
            }
            map.next_value::<TextNode>()?;
            seen = true;
        }
        if seen {
            Ok(TextRecord)
        } else {
            Err(de::Error::missing_field("value"))
        }
    }
}

impl<'de> Deserialize<'de> for TextNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        count_value()?;
        deserializer.deserialize_any(TextNodeVisitor)
    }
}

struct TextNodeVisitor;

impl<'de> Visitor<'de> for TextNodeVisitor {
    type Value = TextNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<TextNode, E> {
        push_text(b"null");
        Ok(TextNode)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<TextNode, E> {
        push_text(if v { b"true" } else { b"false" });
        Ok(TextNode)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<TextNode, E> {
        write_json(&v)?;
        Ok(TextNode)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<TextNode, E> {
        // NaN and the infinities have no JSON number; another Avro writer may still put them in a double.
        match non_finite_name(v) {
            Some(name) => write_json(name)?,
            None => write_json(&v)?,
        }
        Ok(TextNode)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TextNode, E> {
        write_json(v)?;
        Ok(TextNode)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextNode, A::Error> {
        let _depth = DepthGuard::enter()?;
        push_text(b"[");
        let mut first = true;
        loop {
            // The separator goes in before we know whether an element follows; it is taken back if not.
            let mark = TEXT.with_borrow(Vec::len);
            if !first {
                push_text(b",");
            }
            if seq.next_element::<TextRecord>()?.is_none() {
                TEXT.with_borrow_mut(|text| text.truncate(mark));
                break;
            }
            first = false;
        }
        push_text(b"]");
        Ok(TextNode)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextNode, A::Error> {
        let _depth = DepthGuard::enter()?;
        push_text(b"{");
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if !first {
                push_text(b",");
            }
            write_json(&key)?;
            push_text(b":");
            map.next_value::<TextRecord>()?;
            first = false;
        }
        push_text(b"}");
        Ok(TextNode)
    }
}
