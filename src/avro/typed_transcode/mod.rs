//! JSON text straight to the Avro binary of a user's schema (`send --schema`), without a `serde_json::Value`
//! tree: serde_json's parser drives a visitor that walks the schema, precompiled into a [`Plan`], and appends
//! each value's bytes to a reused buffer as it is read.
//!
//! The route before this one ([`super::typed`] into apache-avro's writer) stays the reference: it encodes
//! records that are trees already (elements of a lone top-level array), and every record this route does not
//! write. Whenever the visitor meets anything it does not write itself (a value that does not fit, a repeated
//! object key, a schema type without a direct form), it says so ([`Direct::Refused`]) and the caller encodes
//! the record again from its `Value` the old way, which accepts it or refuses it with its own message. So this
//! route only has to be right where it writes: the bytes it writes are the old route's bytes, and it writes
//! only records the old route accepts (the property tests below hold the old route as their oracle).
//!
//! What the bytes follow, as the old route does: record fields in schema order whatever the key order, a
//! missing field's default, union branches tried in order with the first that takes the value winning, an
//! object for a union of several records or maps read whole and tried branch by branch. One difference: the
//! old route keeps a map's entries in a `HashMap`, whose order differs from run to run; here they keep the
//! order of the text.

use std::{cell::RefCell, fmt, sync::Arc};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{
    container::write_long,
    numbers::exact_double,
    transcode::{self, canonical_number, close_block},
    typed::{self, Given, Unit},
};

mod plan;
#[cfg(test)]
mod tests;

pub use plan::Plan;
use plan::{Field, Node, NodeId, UuidForm};

/// The key serde_json (`arbitrary_precision`) hands a number's text under, as a one-entry map.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Keys of one map compared for repeats one by one; a map with more is left to the old route.
const KEYS_COMPARED: usize = 64;

/// Buffers the visitor reuses from record to record.
#[derive(Debug, Default)]
struct Scratch {
    /// Fields of the records being read, innermost last: which field, where its bytes are in `out`.
    spans: Vec<(usize, usize, usize)>,
    /// Where the keys of the maps being read are in `out` (their bytes, after the length), innermost last.
    keys: Vec<(usize, usize)>,
    /// A copy of a record's fields while they are put in schema order.
    reorder: Vec<u8>,
    /// The first key of the object being read, kept until it is known whether the object is a number.
    first_key: String,
}

/// The thread's compiled schema and buffers.
#[derive(Debug, Default)]
struct ThreadState {
    plan: Option<Arc<Plan>>,
    scratch: Scratch,
}

thread_local! {
    /// serde_json's stream of values takes no seed: the thread's plan is set once ([`use_plan`]).
    static DIRECT: RefCell<ThreadState> = RefCell::new(ThreadState::default());
}

/// Makes `plan` the schema this thread's [`Direct`] records are read in.
pub fn use_plan(plan: Arc<Plan>) {
    DIRECT.with_borrow_mut(|direct| direct.plan = Some(plan));
}

/// What became of one record read from JSON text in the thread's schema ([`use_plan`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Direct {
    /// Its bytes are at the end of [`transcode::with_writer`]'s buffer.
    Written,
    /// Nothing was written: encode its `Value` the old way, which writes it or says why it does not fit.
    Refused,
}

impl<'de> serde::Deserialize<'de> for Direct {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DIRECT.with_borrow_mut(|direct| {
            let ThreadState { plan, scratch } = direct;
            transcode::with_writer(|writer| {
                let out = std::mem::take(&mut writer.out);
                let start = out.len();
                let Some(plan) = plan.as_deref() else {
                    writer.out = out;
                    return Skip.deserialize(deserializer).map(|()| Direct::Refused);
                };
                scratch.spans.clear();
                scratch.keys.clear();
                let mut ctx = Ctx {
                    plan,
                    out,
                    st: scratch,
                    failed: false,
                };
                let root = plan.root;
                let result = Seed {
                    ctx: &mut ctx,
                    node: root,
                }
                .deserialize(deserializer);
                let failed = ctx.failed;
                writer.out = ctx.out;
                match result {
                    Ok(()) if !failed => Ok(Direct::Written),
                    other => {
                        writer.out.truncate(start);
                        other.map(|()| Direct::Refused)
                    }
                }
            })
        })
    }
}

/// The visitor's state for one record.
struct Ctx<'a> {
    plan: &'a Plan,
    out: Vec<u8>,
    st: &'a mut Scratch,
    /// Something was met that this route does not write: the rest of the record is only parsed.
    failed: bool,
}

/// A JSON scalar as read.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A number's text.
    Number(&'a str),
    /// An integer literal serde_json read as a `u64` or an `i64` (any but `-0`), exactly; its text is the
    /// value's digits.
    Integer(i128),
    Text(&'a str),
}

impl Ctx<'_> {
    /// Writes `value` at `node` (trying a union's branches in order); false, with nothing written, if it does
    /// not fit.
    fn scalar(&mut self, node: NodeId, value: Scalar) -> bool {
        let plan = self.plan;
        match &plan.nodes[node] {
            Node::Union(variants) => {
                for (i, &variant) in variants.iter().enumerate() {
                    let mark = self.out.len();
                    write_long(&mut self.out, i as i64);
                    if self.plain(variant, value) {
                        return true;
                    }
                    self.out.truncate(mark);
                }
                false
            }
            _ => self.plain(node, value),
        }
    }

    /// [`Ctx::scalar`] for a node that is not a union, as [`crate::avro::typed::to_avro`] converts and apache-avro writes.
    fn plain(&mut self, node: NodeId, value: Scalar) -> bool {
        let out = &mut self.out;
        let given = match value {
            Scalar::Number(n) => Given::Integer(n.parse().ok()),
            Scalar::Integer(i) => Given::Integer(i64::try_from(i).ok()),
            Scalar::Text(s) => Given::Text(s),
            Scalar::Null | Scalar::Bool(_) => Given::Other,
        };
        let long = |out: &mut Vec<u8>, i: Option<i64>| i.map(|i| write_long(out, i)).is_some();
        match (&self.plan.nodes[node], value) {
            (Node::Null, Scalar::Null) => true,
            (Node::Boolean, Scalar::Bool(b)) => {
                out.push(u8::from(b));
                true
            }
            (Node::Int, Scalar::Number(_) | Scalar::Integer(_)) => long(
                out,
                match given {
                    Given::Integer(i) => i.and_then(|i| i32::try_from(i).ok()).map(i64::from),
                    _ => None,
                },
            ),
            (Node::Long, Scalar::Number(_) | Scalar::Integer(_)) => long(
                out,
                match given {
                    Given::Integer(i) => i,
                    _ => None,
                },
            ),
            // An integer literal's double is its nearest (`as` rounds to nearest, as parsing its text does); as a
            // double it is sent only within the long range (the number rule).
            (Node::Float, Scalar::Integer(i)) => {
                out.extend_from_slice(&((i as f64) as f32).to_le_bytes());
                true
            }
            (Node::Double, Scalar::Integer(i)) => match i64::try_from(i) {
                Ok(_) => {
                    out.extend_from_slice(&(i as f64).to_le_bytes());
                    true
                }
                Err(_) => false,
            },
            (Node::Float, Scalar::Number(n)) => match finite(n) {
                Some(f) => {
                    out.extend_from_slice(&(f as f32).to_le_bytes());
                    true
                }
                None => false,
            },
            (Node::Double, Scalar::Number(n)) => match double(n) {
                Some(f) => {
                    out.extend_from_slice(&f.to_le_bytes());
                    true
                }
                None => false,
            },
            (Node::String, Scalar::Text(s)) => {
                write_bytes(out, s.as_bytes());
                true
            }
            (Node::Bytes, Scalar::Text(s)) => match latin1_len(s) {
                Some(len) => {
                    write_long(out, len as i64);
                    out.extend(s.chars().map(|c| c as u8));
                    true
                }
                None => false,
            },
            (&Node::Fixed(size), Scalar::Text(s)) => match latin1_len(s) {
                Some(len) if len == size => {
                    out.extend(s.chars().map(|c| c as u8));
                    true
                }
                _ => false,
            },
            (Node::Enum(symbols), Scalar::Text(s)) => long(
                out,
                symbols.iter().position(|sym| sym == s).map(|i| i as i64),
            ),
            (Node::Uuid(form), Scalar::Text(s)) => {
                let Ok(uuid) = s.parse::<apache_avro::Uuid>() else {
                    return false;
                };
                match form {
                    UuidForm::String => write_bytes(out, uuid.to_string().as_bytes()),
                    UuidForm::Bytes => write_bytes(out, uuid.as_bytes()),
                    UuidForm::Fixed(16) => out.extend_from_slice(uuid.as_bytes()),
                    UuidForm::Fixed(_) => return false,
                }
                true
            }
            (Node::Date, _) => long(out, typed::days_count(given).map(i64::from)),
            (Node::TimeMillis, _) => long(
                out,
                typed::time_of_day_count(given, Unit::Millis)
                    .and_then(|t| i32::try_from(t).ok())
                    .map(i64::from),
            ),
            (Node::TimeMicros, _) => long(out, typed::time_of_day_count(given, Unit::Micros)),
            (&Node::Timestamp(unit, zone), _) => long(out, typed::instant_count(given, unit, zone)),
            (&Node::Decimal { scale, fixed }, Scalar::Text(s)) => {
                let Some(unscaled) = typed::unscaled(s, scale) else {
                    return false;
                };
                let bytes = unscaled.to_signed_bytes_be();
                match fixed {
                    None => write_bytes(out, &bytes),
                    Some(size) if bytes.len() <= size => {
                        let sign = if unscaled.sign() == num_bigint::Sign::Minus {
                            0xFF
                        } else {
                            0
                        };
                        out.extend(std::iter::repeat_n(sign, size - bytes.len()));
                        out.extend_from_slice(&bytes);
                    }
                    Some(_) => return false,
                }
                true
            }
            _ => false,
        }
    }

    /// The index and node of the one branch of `node` an array can take, or `None`.
    fn array_branch(&self, node: NodeId) -> Option<(Option<usize>, NodeId)> {
        match &self.plan.nodes[node] {
            Node::Array(_) => Some((None, node)),
            Node::Union(variants) => {
                let mut arrays = variants
                    .iter()
                    .enumerate()
                    .filter(|&(_, &v)| matches!(self.plan.nodes[v], Node::Array(_)));
                // Avro allows one array branch in a union; were there more, the old route decides.
                match (arrays.next(), arrays.next()) {
                    (Some((i, &v)), None) => Some((Some(i), v)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The branches of `node` an object can take, with their union index.
    fn object_branches(&self, node: NodeId) -> Vec<(Option<usize>, NodeId)> {
        let is_object = |v: NodeId| matches!(self.plan.nodes[v], Node::Record(_) | Node::Map(_));
        match &self.plan.nodes[node] {
            Node::Union(variants) => variants
                .iter()
                .enumerate()
                .filter(|&(_, &v)| is_object(v))
                .map(|(i, &v)| (Some(i), v))
                .collect(),
            _ if is_object(node) => vec![(None, node)],
            _ => Vec::new(),
        }
    }

    /// Writes a tree at `node` by way of its text, so its numbers reach the visitor as text, as they do from the
    /// input (a `Value` hands some over as doubles or 128-bit integers); false, with nothing written, if this
    /// route does not write it.
    fn write_tree(&mut self, node: NodeId, value: &Value) -> bool {
        let mark = self.out.len();
        let (spans, keys) = (self.st.spans.len(), self.st.keys.len());
        let written = serde_json::to_string(value).is_ok_and(|text| {
            let mut deserializer = serde_json::Deserializer::from_str(&text);
            Seed {
                ctx: &mut *self,
                node,
            }
            .deserialize(&mut deserializer)
            .is_ok()
        });
        if written && !self.failed {
            return true;
        }
        // A parse that stopped early left its records' and maps' places behind.
        self.st.spans.truncate(spans);
        self.st.keys.truncate(keys);
        self.out.truncate(mark);
        self.failed = false;
        false
    }

    fn fail(&mut self) {
        self.failed = true;
    }
}

/// A number's text as a finite double (serde_json's `as_f64`).
fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// The double a number's text is sent as when it fits a `double` ([`super::numbers::representable`]): parsed
/// once, where checking and then parsing read a fraction twice.
fn double(text: &str) -> Option<f64> {
    if text.contains(['.', 'e', 'E']) {
        exact_double(text)
    } else {
        // `-0` is a long, but its double is -0.0, as parsing the text gives.
        text.parse::<i64>().ok().and(finite(text))
    }
}

/// The number of characters of `s` when every one is a code point 0-255 (bytes spelled as Avro's JSON encoding
/// spells them).
fn latin1_len(s: &str) -> Option<usize> {
    let mut len = 0;
    for c in s.chars() {
        if u32::from(c) > 255 {
            return None;
        }
        len += 1;
    }
    Some(len)
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// A value to write at a node.
struct Seed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    node: NodeId,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.ctx.failed {
            return Skip.deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Scalar::Null);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::Integer(i128::from(v)));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::Integer(i128::from(v)));
        Ok(())
    }

    /// serde_json hands numbers over as text ([`NUMBER_TOKEN`]); a bare double has no text to judge by.
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.ctx.fail();
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Text(v));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let Some((index, array)) = ctx.array_branch(self.node) else {
            ctx.fail();
            while seq.next_element_seed(Skip)?.is_some() {}
            return Ok(());
        };
        let Node::Array(items) = ctx.plan.nodes[array] else {
            unreachable!("array_branch gives an array")
        };
        if let Some(index) = index {
            write_long(&mut ctx.out, index as i64);
        }
        ctx.out.push(0);
        let count_at = ctx.out.len() - 1;
        let mut count = 0;
        while seq
            .next_element_seed(Seed {
                ctx: &mut *ctx,
                node: items,
            })?
            .is_some()
        {
            count += 1;
        }
        close_block(&mut ctx.out, count_at, count);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut key = std::mem::take(&mut ctx.st.first_key);
        key.clear();
        let has_key = map.next_key_seed(KeyInto(&mut key))?.is_some();
        if has_key && key == NUMBER_TOKEN {
            ctx.st.first_key = key;
            return map.next_value_seed(NumberText {
                ctx,
                node: self.node,
            });
        }
        let first = has_key.then_some(key.as_str());
        let branches = ctx.object_branches(self.node);
        let result = match branches.as_slice() {
            [] => {
                ctx.fail();
                skip_entries(&mut map, has_key)
            }
            &[(index, node)] => {
                if let Some(index) = index {
                    write_long(&mut ctx.out, index as i64);
                }
                match ctx.plan.nodes[node] {
                    Node::Record(_) => record(ctx, node, first, &mut map),
                    Node::Map(values) => map_entries(ctx, values, first, &mut map),
                    _ => unreachable!("object_branches gives records and maps"),
                }
            }
            several => several_branches(ctx, several, first, &mut map),
        };
        ctx.st.first_key = key;
        result
    }
}

impl Seed<'_, '_> {
    fn scalar(self, value: Scalar) {
        if !self.ctx.scalar(self.node, value) {
            self.ctx.fail();
        }
    }
}

/// The rest of an object whose first key was read, parsed and dropped.
fn skip_entries<'de, A: MapAccess<'de>>(map: &mut A, has_key: bool) -> Result<(), A::Error> {
    if has_key {
        map.next_value_seed(Skip)?;
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
    }
    Ok(())
}

/// A record's fields, in whatever order the text has them, put in schema order with defaults for the missing.
fn record<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx,
    node: NodeId,
    first: Option<&str>,
    map: &mut A,
) -> Result<(), A::Error> {
    let plan = ctx.plan;
    let Node::Record(fields) = &plan.nodes[node] else {
        unreachable!("a record node")
    };
    let start = ctx.out.len();
    let spans_from = ctx.st.spans.len();
    let mut next = first.map(|key| field_index(fields, key, 0));
    while let Some(field) = next {
        let node = match field {
            Some(i) if !ctx.st.spans[spans_from..].iter().any(|s| s.0 == i) => fields[i].node,
            // An unknown field, or a repeated one (the old route keeps its last value).
            _ => {
                ctx.fail();
                0
            }
        };
        let from = ctx.out.len();
        map.next_value_seed(Seed {
            ctx: &mut *ctx,
            node,
        })?;
        let hint = match field {
            Some(i) if !ctx.failed => {
                ctx.st.spans.push((i, from, ctx.out.len()));
                i + 1
            }
            _ => 0,
        };
        next = map.next_key_seed(FieldKey { fields, hint })?;
    }
    if !ctx.failed {
        put_in_order(ctx, fields, start, spans_from);
    }
    ctx.st.spans.truncate(spans_from);
    Ok(())
}

/// The index of the field named `key`, looked for from `hint` on (where the next field usually is).
fn field_index(fields: &[Field], key: &str, hint: usize) -> Option<usize> {
    let hint = hint.min(fields.len());
    (hint..fields.len())
        .chain(0..hint)
        .find(|&i| fields[i].name == key)
}

/// Rewrites the fields written from `start` (their places in `spans[spans_from..]`) in schema order, with the
/// defaults of those missing; fails when one is missing without a default.
fn put_in_order(ctx: &mut Ctx, fields: &[Field], start: usize, spans_from: usize) {
    let spans = &ctx.st.spans[spans_from..];
    if spans.iter().enumerate().all(|(i, s)| s.0 == i) {
        // In schema order, the missing ones (if any) last: their defaults follow.
        for field in &fields[spans.len()..] {
            match &field.default {
                Some(default) => ctx.out.extend_from_slice(default),
                None => {
                    ctx.failed = true;
                    return;
                }
            }
        }
        return;
    }
    let reorder = &mut ctx.st.reorder;
    reorder.clear();
    reorder.extend_from_slice(&ctx.out[start..]);
    ctx.out.truncate(start);
    for (i, field) in fields.iter().enumerate() {
        match (spans.iter().find(|s| s.0 == i), &field.default) {
            (Some(&(_, from, to)), _) => {
                ctx.out
                    .extend_from_slice(&reorder[from - start..to - start]);
            }
            (None, Some(default)) => ctx.out.extend_from_slice(default),
            (None, None) => {
                ctx.failed = true;
                return;
            }
        }
    }
}

/// A map's entries, in the order of the text.
fn map_entries<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx,
    values: NodeId,
    first: Option<&str>,
    map: &mut A,
) -> Result<(), A::Error> {
    ctx.out.push(0);
    let count_at = ctx.out.len() - 1;
    let keys_from = ctx.st.keys.len();
    let mut count = 0;
    let mut more = match first {
        Some(key) => {
            map_key(ctx, keys_from, key);
            true
        }
        None => false,
    };
    while more {
        map.next_value_seed(Seed {
            ctx: &mut *ctx,
            node: values,
        })?;
        count += 1;
        more = map
            .next_key_seed(MapKey {
                ctx: &mut *ctx,
                keys_from,
            })?
            .is_some();
    }
    ctx.st.keys.truncate(keys_from);
    if !ctx.failed {
        close_block(&mut ctx.out, count_at, count);
    }
    Ok(())
}

/// Writes a map's key, failing on one the map already has (the old route keeps one entry for it).
fn map_key(ctx: &mut Ctx, keys_from: usize, key: &str) {
    let open = &ctx.st.keys[keys_from..];
    if open.len() >= KEYS_COMPARED
        || open
            .iter()
            .any(|&(from, to)| &ctx.out[from..to] == key.as_bytes())
    {
        ctx.fail();
    }
    write_long(&mut ctx.out, key.len() as i64);
    let from = ctx.out.len();
    ctx.out.extend_from_slice(key.as_bytes());
    ctx.st.keys.push((from, ctx.out.len()));
}

/// An object where a union has several record or map branches: read whole, as the old route reads it, then
/// tried branch by branch in order.
fn several_branches<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx,
    branches: &[(Option<usize>, NodeId)],
    first: Option<&str>,
    map: &mut A,
) -> Result<(), A::Error> {
    let mut object = serde_json::Map::new();
    if let Some(key) = first {
        object.insert(key.to_owned(), map.next_value::<Value>()?);
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            object.insert(key, value);
        }
    }
    let object = Value::Object(object);
    for &(index, node) in branches {
        let mark = ctx.out.len();
        if let Some(index) = index {
            write_long(&mut ctx.out, index as i64);
        }
        if ctx.write_tree(node, &object) {
            return Ok(());
        }
        ctx.out.truncate(mark);
    }
    ctx.fail();
    Ok(())
}

/// Reads an object key into a string (the first key, which may be serde_json's number token).
struct KeyInto<'k>(&'k mut String);

impl<'de> DeserializeSeed<'de> for KeyInto<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyInto<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.0.push_str(key);
        Ok(())
    }
}

/// A later key of a record: which field it names (`None` for none).
struct FieldKey<'f> {
    fields: &'f [Field],
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(field_index(self.fields, key, self.hint))
    }
}

/// A later key of a map, written as it is read.
struct MapKey<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    keys_from: usize,
}

impl<'de> DeserializeSeed<'de> for MapKey<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MapKey<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        map_key(self.ctx, self.keys_from, key);
        Ok(())
    }
}

/// The text of a number, which serde_json hands over as the value under [`NUMBER_TOKEN`].
struct NumberText<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    node: NodeId,
}

impl<'de> DeserializeSeed<'de> for NumberText<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NumberText<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("string containing a number")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        let written = if canonical_number(text) {
            self.ctx.scalar(self.node, Scalar::Number(text))
        } else {
            // Only an object that spells the token itself gets here: read its text as serde_json's `Value` does.
            let parsed: serde_json::Number = text.parse().map_err(E::custom)?;
            self.ctx.scalar(self.node, Scalar::Number(parsed.as_str()))
        };
        if !written {
            self.ctx.fail();
        }
        Ok(())
    }
}

/// Parses a value and drops it, refusing exactly what reading it as a `Value` refuses.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut key = String::new();
        if map.next_key_seed(KeyInto(&mut key))?.is_none() {
            return Ok(());
        }
        if key == NUMBER_TOKEN {
            let text: String = map.next_value()?;
            if !canonical_number(&text) {
                text.parse::<serde_json::Number>()
                    .map_err(de::Error::custom)?;
            }
            return Ok(());
        }
        skip_entries(&mut map, true)
    }
}
