//! Records of any writer schema but zavro's own, in Avro binary straight to natural JSON text (the mapping
//! [`super::generic`] describes): the server's decoder for user schemas. Each schema is compiled once into a
//! [`Plan`], a flat list of what to read and what to write; a record then costs one walk over its bytes with no
//! value tree and no allocation per value. It writes the same text and reaches the same refusals as the route
//! it replaces (apache-avro's generic reader, [`super::generic::to_json`] and serde_json, kept in the tests as
//! the oracle), including apache-avro's quirks on short data (a string or boolean cut off by the end of the
//! data reads as null, and so does a union whose index is cut off), its allocation limits on declared lengths
//! and collection sizes, and the order in which it finds faults: a fault of the bytes anywhere in a record
//! before a value with no JSON form, that before the request's value count.

use std::{collections::HashMap, io::Write as _};

use apache_avro::{
    Schema, Uuid,
    schema::{
        DecimalSchema, InnerDecimalSchema, NamesRef, NamespaceRef, ResolvedSchema, UuidSchema,
    },
    types::Value as AvroValue,
};
use serde_json::ser::{CompactFormatter, Formatter};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    MAX_DECODE_ALLOCATION, MAX_VALUES,
    decode::MAX_REQUEST_DECODED_BYTES,
    generic,
    json_text::{escape_into, escaped_len},
    numbers::non_finite_name,
};

/// Deepest nesting of records, arrays, maps and unions a plan is compiled for; a (non-recursive) schema nested
/// deeper through named types keeps the generic route, as before.
const MAX_PLAN_DEPTH: usize = 512;

/// What apache-avro counts per array item against its allocation limit.
const ARRAY_ITEM_BYTES: usize = size_of::<AvroValue>();

/// What apache-avro counts per map entry against its allocation limit.
const MAP_ENTRY_BYTES: usize = size_of::<(String, AvroValue)>();

/// Why a record could not be transcoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fault {
    /// A limit of the server was reached (its message names the limit).
    Limit(String),
    /// The bytes do not decode with the writer schema.
    Bad(String),
    /// The record decodes, but holds a value with no JSON form (a date outside the years 0 to 9999, …).
    NoJsonForm(String),
    /// The record's text alone would pass [`MAX_REQUEST_DECODED_BYTES`] (a `decimal` whose schema puts its point
    /// millions of digits to the left): refused as the request's budget refuses it, without writing it.
    TooMuchText,
}

/// A writer schema compiled for transcoding: its nodes, the record's at `root`.
#[derive(Debug)]
pub(super) struct Plan {
    nodes: Vec<Node>,
    root: usize,
}

/// One type of the schema, with everything its text needs worked out in advance; named types referred to
/// by name are the same node.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    /// Each symbol's JSON text.
    Enum(Box<[Box<[u8]>]>),
    /// Each field's JSON text up to its value (`{"name":` for the first, `,"name":` for the others), and its node.
    Record(Box<[(Box<[u8]>, usize)]>),
    Array(usize),
    Map(usize),
    Union {
        variants: Box<[usize]>,
        /// What the generic route says of a union with no variants whose index the data cuts off.
        no_variant: Box<str>,
    },
    /// `decimal`: of a fixed of this size, or of bytes (`None`).
    Decimal {
        fixed: Option<usize>,
        scale: usize,
    },
    BigDecimal,
    UuidString,
    UuidBytes,
    UuidFixed(usize),
    Date,
    TimeMillis,
    TimeMicros,
    /// A timestamp counted in units of `nanos` nanoseconds, written with a `Z` when `utc`.
    Timestamp {
        nanos: i128,
        utc: bool,
    },
    /// `duration` on a fixed of this size (apache-avro reads only 12).
    Duration(usize),
}

impl Plan {
    /// Compiles `schema`, or `None` when it is one the generic route must keep: a name that does not resolve
    /// the same way for reading and for writing JSON, duplicate field names, or nesting past
    /// [`MAX_PLAN_DEPTH`].
    pub(super) fn compile(schema: &Schema) -> Option<Plan> {
        let resolved = ResolvedSchema::try_from(schema).ok()?;
        let mut compiler = Compiler {
            names: resolved.get_names(),
            nodes: Vec::new(),
            done: HashMap::new(),
        };
        let root = compiler.node(schema, None, 0)?;
        Some(Plan {
            nodes: compiler.nodes,
            root,
        })
    }
}

/// Builds a plan's nodes, each named type once per enclosing namespace.
struct Compiler<'s> {
    names: &'s NamesRef<'s>,
    nodes: Vec<Node>,
    done: HashMap<(usize, Option<String>), usize>,
}

impl<'s> Compiler<'s> {
    /// The node of `schema` met inside `namespace` (as apache-avro's reader passes it down), at `depth`.
    fn node(&mut self, schema: &'s Schema, namespace: NamespaceRef, depth: usize) -> Option<usize> {
        if depth > MAX_PLAN_DEPTH {
            return None;
        }
        let key = (
            std::ptr::from_ref(schema) as usize,
            namespace.map(str::to_owned),
        );
        if let Some(&id) = self.done.get(&key) {
            return Some(id);
        }
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Enum(e) => Node::Enum(
                e.symbols
                    .iter()
                    .map(|symbol| {
                        let mut text = Vec::new();
                        escape_into(&mut text, symbol.as_bytes());
                        text.into_boxed_slice()
                    })
                    .collect(),
            ),
            Schema::Record(record) => {
                let full = record.name.fully_qualified_name(namespace);
                let mut fields = Vec::with_capacity(record.fields.len());
                for (i, field) in record.fields.iter().enumerate() {
                    if record.fields[..i].iter().any(|f| f.name == field.name) {
                        // serde_json's map would keep one of them; not worth copying.
                        return None;
                    }
                    let mut text = vec![if i == 0 { b'{' } else { b',' }];
                    escape_into(&mut text, field.name.as_bytes());
                    text.push(b':');
                    let id = self.node(&field.schema, full.namespace(), depth + 1)?;
                    fields.push((text.into_boxed_slice(), id));
                }
                Node::Record(fields.into_boxed_slice())
            }
            Schema::Array(array) => Node::Array(self.node(&array.items, namespace, depth + 1)?),
            Schema::Map(map) => Node::Map(self.node(&map.types, namespace, depth + 1)?),
            Schema::Union(union) => {
                let variants = union
                    .variants()
                    .iter()
                    .map(|variant| self.node(variant, namespace, depth + 1))
                    .collect::<Option<_>>()?;
                Node::Union {
                    variants,
                    no_variant: union
                        .get_variant(0)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                        .into(),
                }
            }
            Schema::Decimal(DecimalSchema { scale, inner, .. }) => Node::Decimal {
                fixed: match inner {
                    InnerDecimalSchema::Fixed(fixed) => Some(fixed.size),
                    InnerDecimalSchema::Bytes => None,
                },
                scale: *scale,
            },
            Schema::BigDecimal => Node::BigDecimal,
            Schema::Uuid(UuidSchema::String) => Node::UuidString,
            Schema::Uuid(UuidSchema::Bytes) => Node::UuidBytes,
            Schema::Uuid(UuidSchema::Fixed(fixed)) => Node::UuidFixed(fixed.size),
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::TimeMillis,
            Schema::TimeMicros => Node::TimeMicros,
            Schema::TimestampMillis => timestamp(1_000_000, true),
            Schema::TimestampMicros => timestamp(1000, true),
            Schema::TimestampNanos => timestamp(1, true),
            Schema::LocalTimestampMillis => timestamp(1_000_000, false),
            Schema::LocalTimestampMicros => timestamp(1000, false),
            Schema::LocalTimestampNanos => timestamp(1, false),
            Schema::Duration(fixed) => Node::Duration(fixed.size),
            Schema::Ref { name } => {
                // apache-avro's reader looks the name up inside the enclosing namespace, the JSON conversion
                // as it is written; compiled only when both find the same type.
                let full = name.fully_qualified_name(namespace);
                let target = *self.names.get(full.as_ref())?;
                let named = *self.names.get(name)?;
                if !std::ptr::eq(target, named) {
                    return None;
                }
                let id = self.node(target, full.namespace(), depth)?;
                self.done.insert(key, id);
                return Some(id);
            }
        };
        let id = self.nodes.len();
        self.nodes.push(node);
        self.done.insert(key, id);
        Some(id)
    }
}

fn timestamp(nanos: i128, utc: bool) -> Node {
    Node::Timestamp { nanos, utc }
}

/// Working space reused by the records of one request, and its count of JSON values.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The entries of the maps being read, innermost last.
    entries: Vec<Entry>,
    /// A copy of a map's text while its entries are put in key order.
    copy: Vec<u8>,
    /// Bytes or a fixed as UTF-8 (code points 0–255), before they are escaped.
    utf8: Vec<u8>,
    /// JSON values written so far in the request.
    values: usize,
}

/// One entry of a map being read.
#[derive(Debug)]
struct Entry {
    /// Where its key's bytes are in the record's data.
    key: (usize, usize),
    /// Where its text (`"key":value`) is in the output.
    text: (usize, usize),
    /// Its place in the map, so that of equal keys the last one wins (as apache-avro's `HashMap` has it).
    seq: usize,
    /// JSON values in its value.
    values: usize,
    /// The first value without a JSON form in it, if any.
    no_json: Option<String>,
}

/// Transcodes one record of `plan` from the front of `data` (which then starts after it) and appends its
/// compact JSON text to `out`, counting its values against [`MAX_VALUES`] in `scratch`.
pub(super) fn record(
    plan: &Plan,
    data: &mut &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Result<(), Fault> {
    scratch.entries.clear();
    let mut reader = Reader {
        nodes: &plan.nodes,
        data,
        pos: 0,
        out,
        scratch,
        values: 0,
        no_json: None,
        too_much_text: false,
    };
    let result = reader.value(plan.root);
    let (pos, values, no_json, too_much_text) = (
        reader.pos,
        reader.values,
        reader.no_json,
        reader.too_much_text,
    );
    *data = &data[pos.min(data.len())..];
    result?;
    if let Some(reason) = no_json {
        return Err(Fault::NoJsonForm(reason));
    }
    scratch.values += values;
    if scratch.values > MAX_VALUES {
        return Err(Fault::Limit(format!(
            "more than {MAX_VALUES} JSON values in one request"
        )));
    }
    // Past the text budget, as the generic route found once it had written the text; a record of no bytes is
    // refused for that first, by the caller.
    if too_much_text && pos > 0 {
        return Err(Fault::TooMuchText);
    }
    Ok(())
}

/// Why a varint could not be read.
enum Varint {
    /// The data ended inside it.
    Eof,
    /// More than 10 bytes.
    TooLong,
}

impl From<Varint> for Fault {
    fn from(e: Varint) -> Self {
        Fault::Bad(match e {
            Varint::Eof => "the data ends inside a value".into(),
            Varint::TooLong => "a variable-length integer is too long".into(),
        })
    }
}

fn truncated() -> Fault {
    Fault::Bad("the data ends inside a value".into())
}

/// apache-avro's refusal of a length or collection size over its allocation limit.
fn over_allocation(bytes: usize) -> Fault {
    Fault::Limit(format!(
        "a value declares {bytes} bytes, over the decoding limit of {MAX_DECODE_ALLOCATION} bytes"
    ))
}

fn overflow() -> Fault {
    Fault::Bad("a collection's size overflows".into())
}

/// The record's bytes, the text being written, and what the record has found so far.
struct Reader<'a, 'b> {
    nodes: &'a [Node],
    /// The data from the start of the record.
    data: &'b [u8],
    pos: usize,
    out: &'a mut Vec<u8>,
    scratch: &'a mut Scratch,
    /// JSON values in the record so far.
    values: usize,
    /// The first value without a JSON form, in the order the generic route converts values (maps by key).
    no_json: Option<String>,
    /// A value's text was left out for being longer than the request's budget on its own.
    too_much_text: bool,
}

impl<'b> Reader<'_, 'b> {
    /// Writes `text` as a JSON string, unless its escaped form alone would take the text past the request's
    /// budget: then nothing is written and the record is refused for too much text, as the value route refused it
    /// once it had written all of it (a string of control characters writes six bytes of text per byte).
    fn string_into(&mut self, text: &[u8]) {
        // The exact length costs a pass over the string: only worth it when the worst case would not fit.
        let worst = text.len().saturating_mul(6).saturating_add(2);
        if self.out.len().saturating_add(worst) > MAX_REQUEST_DECODED_BYTES
            && self.out.len().saturating_add(escaped_len(text)) > MAX_REQUEST_DECODED_BYTES
        {
            self.too_much_text = true;
            return;
        }
        escape_into(self.out, text);
    }

    /// [`Reader::string_into`] for bytes and fixed: a string of the code points 0–255 (Avro's JSON encoding of
    /// them), escaped as serde_json escapes it.
    fn latin1_string_into(&mut self, bytes: &[u8]) {
        if bytes.is_ascii() {
            self.string_into(bytes);
            return;
        }
        let mut utf8 = std::mem::take(&mut self.scratch.utf8);
        latin1_to_utf8(bytes, &mut utf8);
        self.string_into(&utf8);
        self.scratch.utf8 = utf8;
    }

    /// One value of node `id`.
    fn value(&mut self, id: usize) -> Result<(), Fault> {
        // Past the request's text budget the record is refused at once: an array of a one-byte enum index, say,
        // writes its symbol (as long as the schema allows) per byte, and the text would otherwise grow without
        // bound before the record's end. (The value route built all of it first.)
        if self.out.len() > MAX_REQUEST_DECODED_BYTES {
            return Err(Fault::TooMuchText);
        }
        let nodes = self.nodes;
        let node = &nodes[id];
        if !matches!(node, Node::Union { .. }) {
            self.values += 1;
        }
        match node {
            Node::Null => self.out.extend_from_slice(b"null"),
            Node::Boolean => match self.data.get(self.pos) {
                // apache-avro reads a boolean cut off by the end of the data as null.
                None => self.out.extend_from_slice(b"null"),
                Some(&byte) => {
                    self.pos += 1;
                    match byte {
                        0 => self.out.extend_from_slice(b"false"),
                        1 => self.out.extend_from_slice(b"true"),
                        other => {
                            return Err(Fault::Bad(format!("{other} is not a valid boolean")));
                        }
                    }
                }
            },
            Node::Int => {
                let n = self.int()?;
                write(CompactFormatter.write_i32(self.out, n));
            }
            Node::Long => {
                let n = self.long()?;
                write(CompactFormatter.write_i64(self.out, n));
            }
            Node::Float => {
                let bytes = self.array::<4>()?;
                float_text(self.out, f32::from_le_bytes(bytes));
            }
            Node::Double => {
                let f = f64::from_le_bytes(self.array::<8>()?);
                match non_finite_name(f) {
                    Some(name) => escape_into(self.out, name.as_bytes()),
                    None => write(CompactFormatter.write_f64(self.out, f)),
                }
            }
            Node::Bytes => {
                let bytes = self.bytes()?;
                self.latin1_string_into(bytes);
            }
            Node::String => {
                let len = self.len()?;
                match self.take(len) {
                    // apache-avro reads a string cut off by the end of the data as null.
                    None => self.out.extend_from_slice(b"null"),
                    Some(bytes) => {
                        let text = utf8(bytes)?;
                        self.string_into(text.as_bytes());
                    }
                }
            }
            Node::Fixed(size) => {
                let bytes = self.take(*size).ok_or_else(truncated)?;
                self.latin1_string_into(bytes);
            }
            Node::Enum(symbols) => {
                let index = self.int()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .ok_or_else(|| {
                        Fault::Bad(format!(
                            "enum index {index} is not one of its {} symbols",
                            symbols.len()
                        ))
                    })?;
                self.out.extend_from_slice(symbol);
            }
            Node::Record(fields) => {
                if fields.is_empty() {
                    self.out.extend_from_slice(b"{}");
                }
                for (text, field) in fields {
                    self.out.extend_from_slice(text);
                    self.value(*field)?;
                }
                if !fields.is_empty() {
                    self.out.push(b'}');
                }
            }
            Node::Array(item) => self.array_items(*item)?,
            Node::Map(item) => self.map_entries(*item)?,
            Node::Union {
                variants,
                no_variant,
            } => match self.varint() {
                // apache-avro reads a union whose index is cut off by the end of the data as its first branch
                // holding null.
                Err(Varint::Eof) => {
                    self.values += 1;
                    self.out.extend_from_slice(b"null");
                    if variants.is_empty() {
                        self.no_json(|| no_variant.to_string());
                    }
                }
                Err(e) => return Err(e.into()),
                Ok(index) => {
                    let variant = usize::try_from(index)
                        .ok()
                        .and_then(|i| variants.get(i))
                        .ok_or_else(|| {
                            Fault::Bad(format!(
                                "union index {index} is not one of its {} branches",
                                variants.len()
                            ))
                        })?;
                    self.value(*variant)?;
                }
            },
            Node::Decimal { fixed, scale } => {
                let bytes = match fixed {
                    Some(size) => self.take(*size).ok_or_else(truncated)?,
                    None => self.bytes()?,
                };
                if !decimal_text(self.out, bytes, *scale) {
                    self.too_much_text = true;
                }
            }
            Node::BigDecimal => {
                let bytes = self.bytes()?;
                let text = big_decimal(bytes)?;
                escape_into(self.out, text.as_bytes());
            }
            Node::UuidString => {
                let len = self.len()?;
                let bytes = self.take(len).ok_or_else(truncated)?;
                let uuid = Uuid::parse_str(utf8(bytes)?)
                    .map_err(|e| Fault::Bad(format!("not a UUID: {e}")))?;
                uuid_text(self.out, &uuid);
            }
            Node::UuidBytes => {
                let bytes = self.bytes()?;
                let uuid =
                    Uuid::from_slice(bytes).map_err(|e| Fault::Bad(format!("not a UUID: {e}")))?;
                uuid_text(self.out, &uuid);
            }
            Node::UuidFixed(size) => {
                let bytes = self.take(*size).ok_or_else(truncated)?;
                let uuid =
                    Uuid::from_slice(bytes).map_err(|e| Fault::Bad(format!("not a UUID: {e}")))?;
                uuid_text(self.out, &uuid);
            }
            Node::Date => {
                let days = self.int()?;
                if !date_text(self.out, days) {
                    self.no_json(|| generic::date(days).err().unwrap_or_default());
                }
            }
            Node::TimeMillis => {
                let millis = self.int()?;
                time_text(self.out, i64::from(millis) * 1000);
            }
            Node::TimeMicros => {
                let micros = self.long()?;
                time_text(self.out, micros);
            }
            Node::Timestamp { nanos, utc } => {
                let count = i128::from(self.long()?) * nanos;
                if !timestamp_text(self.out, count, *utc) {
                    self.no_json(|| generic::timestamp(count, *utc).err().unwrap_or_default());
                }
            }
            Node::Duration(size) => {
                if *size != 12 {
                    return Err(Fault::Bad(format!(
                        "a duration is 12 bytes, not {size} as its fixed says"
                    )));
                }
                let bytes = self.array::<12>()?;
                self.values += 3;
                let part = |i: usize| {
                    u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
                };
                self.out.extend_from_slice(b"{\"months\":");
                write(CompactFormatter.write_u32(self.out, part(0)));
                self.out.extend_from_slice(b",\"days\":");
                write(CompactFormatter.write_u32(self.out, part(4)));
                self.out.extend_from_slice(b",\"millis\":");
                write(CompactFormatter.write_u32(self.out, part(8)));
                self.out.push(b'}');
            }
        }
        Ok(())
    }

    /// Notes a value without a JSON form, unless an earlier one was noted.
    fn no_json(&mut self, reason: impl FnOnce() -> String) {
        if self.no_json.is_none() {
            self.no_json = Some(reason());
        }
    }

    /// An array's blocks, each item of node `item`.
    fn array_items(&mut self, item: usize) -> Result<(), Fault> {
        self.out.push(b'[');
        let mut total = 0usize;
        let mut first = true;
        loop {
            let len = self.block_len()?;
            if len == 0 {
                break;
            }
            total = total.checked_add(len).ok_or_else(overflow)?;
            collection_limit(total, ARRAY_ITEM_BYTES)?;
            for _ in 0..len {
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.value(item)?;
            }
        }
        self.out.push(b']');
        Ok(())
    }

    /// A map's blocks, each value of node `item`, written as an object with its keys in order and each key
    /// once (its last value), as the generic route sorts apache-avro's `HashMap`. Entries come out in the order
    /// they are read when their keys already ascend; otherwise the map's text is put in order at its end.
    fn map_entries(&mut self, item: usize) -> Result<(), Fault> {
        self.out.push(b'{');
        let region = self.out.len();
        let base = self.scratch.entries.len();
        let outer_no_json = self.no_json.take();
        let mut in_order = true;
        let mut seq = 0usize;
        loop {
            let len = self.block_len()?;
            if len == 0 {
                break;
            }
            let mut held = self.scratch.entries.len() - base;
            let bound = held
                .checked_add(len)
                .and_then(|total| total.checked_mul(MAP_ENTRY_BYTES));
            if held > 0 && bound.is_none_or(|bytes| bytes > MAX_DECODE_ALLOCATION) {
                // apache-avro counts the keys it holds, each once: only worth working out near the limit.
                self.keep_last_of_each_key(base);
                in_order = false;
                held = self.scratch.entries.len() - base;
            }
            let total = held.checked_add(len).ok_or_else(overflow)?;
            collection_limit(total, MAP_ENTRY_BYTES)?;
            for _ in 0..len {
                let key_len = self.len()?;
                let key_start = self.pos;
                let key = self
                    .take(key_len)
                    .ok_or_else(|| Fault::Bad("the data ends inside a map key".into()))?;
                let key = utf8(key)?;
                if in_order
                    && let Some(last) = self.scratch.entries[base..].last()
                    && self.data[last.key.0..last.key.1] >= *key.as_bytes()
                {
                    in_order = false;
                }
                if seq > 0 {
                    self.out.push(b',');
                }
                let start = self.out.len();
                escape_into(self.out, key.as_bytes());
                self.out.push(b':');
                let values = self.values;
                self.value(item)?;
                self.scratch.entries.push(Entry {
                    key: (key_start, key_start + key_len),
                    text: (start, self.out.len()),
                    seq,
                    values: self.values - values,
                    no_json: self.no_json.take(),
                });
                seq += 1;
            }
        }
        if !in_order {
            self.keep_last_of_each_key(base);
            let copy = &mut self.scratch.copy;
            copy.clear();
            copy.extend_from_slice(&self.out[region..]);
            self.out.truncate(region);
            for (i, entry) in self.scratch.entries[base..].iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.out
                    .extend_from_slice(&copy[entry.text.0 - region..entry.text.1 - region]);
            }
        }
        self.out.push(b'}');
        let inner_no_json = self.scratch.entries[base..]
            .iter_mut()
            .find_map(|entry| entry.no_json.take());
        self.scratch.entries.truncate(base);
        self.no_json = outer_no_json.or(inner_no_json);
        Ok(())
    }

    /// Puts the entries of the map from `base` in key order, keeping of each key only its last entry; the
    /// values of the entries dropped no longer count.
    fn keep_last_of_each_key(&mut self, base: usize) {
        let data = self.data;
        let entries = &mut self.scratch.entries;
        let key = |entry: &Entry| &data[entry.key.0..entry.key.1];
        entries[base..].sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.seq.cmp(&b.seq)));
        let mut kept = base;
        for i in base..entries.len() {
            let last_of_its_key = entries
                .get(i + 1)
                .is_none_or(|next| key(next) != key(&entries[i]));
            if last_of_its_key {
                entries.swap(kept, i);
                kept += 1;
            } else {
                self.values -= entries[i].values;
            }
        }
        entries.truncate(kept);
    }

    /// An array or map block's item count (0 at the end), as apache-avro checks it.
    fn block_len(&mut self) -> Result<usize, Fault> {
        let count = self.long()?;
        if count == 0 {
            return Ok(0);
        }
        let count = if count < 0 {
            self.long()?;
            count.checked_neg().ok_or_else(overflow)?
        } else {
            count
        };
        let count = usize::try_from(count).map_err(|_| overflow())?;
        if count > MAX_DECODE_ALLOCATION {
            return Err(over_allocation(count));
        }
        Ok(count)
    }

    /// A declared length of bytes or a string.
    fn len(&mut self) -> Result<usize, Fault> {
        let len = self.long()?;
        let len = usize::try_from(len)
            .map_err(|_| Fault::Bad(format!("a value declares a negative length, {len}")))?;
        if len > MAX_DECODE_ALLOCATION {
            return Err(over_allocation(len));
        }
        Ok(len)
    }

    /// Length-prefixed bytes.
    fn bytes(&mut self) -> Result<&'b [u8], Fault> {
        let len = self.len()?;
        self.take(len).ok_or_else(truncated)
    }

    /// The next `n` bytes, or `None` when the data ends first (and is then used up, as by `read_exact`).
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let data: &'b [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        if rest.len() < n {
            self.pos = data.len();
            return None;
        }
        self.pos += n;
        Some(&rest[..n])
    }

    /// The next `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        self.take(N)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(truncated)
    }

    /// An `int`: a long that must fit 32 bits.
    fn int(&mut self) -> Result<i32, Fault> {
        let n = self.long()?;
        i32::try_from(n).map_err(|_| Fault::Bad(format!("{n} does not fit an int")))
    }

    fn long(&mut self) -> Result<i64, Fault> {
        self.varint().map_err(Fault::from)
    }

    fn varint(&mut self) -> Result<i64, Varint> {
        varint(self.data, &mut self.pos)
    }
}

/// A zigzag varint of at most 10 bytes from `data` at `pos`, as apache-avro reads it (byte by byte: the end of
/// the data inside it is [`Varint::Eof`], ten bytes that all go on [`Varint::TooLong`]).
fn varint(data: &[u8], pos: &mut usize) -> Result<i64, Varint> {
    let mut z = 0u64;
    for j in 0..10 {
        let Some(&byte) = data.get(*pos) else {
            return Err(Varint::Eof);
        };
        *pos += 1;
        z |= u64::from(byte & 0x7F) << (j * 7);
        if byte < 0x80 {
            return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    Err(Varint::TooLong)
}

fn utf8(bytes: &[u8]) -> Result<&str, Fault> {
    std::str::from_utf8(bytes).map_err(|e| Fault::Bad(format!("a string is not UTF-8: {e}")))
}

/// apache-avro's check of an array or map of `total` items against its allocation limit.
fn collection_limit(total: usize, each: usize) -> Result<(), Fault> {
    let bytes = total.checked_mul(each).ok_or_else(overflow)?;
    if bytes > MAX_DECODE_ALLOCATION {
        return Err(over_allocation(bytes));
    }
    Ok(())
}

/// The code points 0–255 that `bytes` stand for, as UTF-8 in `utf8` (cleared first).
fn latin1_to_utf8(bytes: &[u8], utf8: &mut Vec<u8>) {
    utf8.clear();
    for &byte in bytes {
        if byte < 0x80 {
            utf8.push(byte);
        } else {
            utf8.extend_from_slice(&[0xC0 | (byte >> 6), 0x80 | (byte & 0x3F)]);
        }
    }
}

/// A `float` as its shortest decimal read back as a double (as [`super::numbers`] has it), or its name.
fn float_text(out: &mut Vec<u8>, f: f32) {
    if let Some(name) = non_finite_name(f64::from(f)) {
        escape_into(out, name.as_bytes());
        return;
    }
    // Rust's shortest round-trip digits of an f32 take at most 48 characters (1e-45 spelled out).
    let mut buffer = [0u8; 64];
    let mut cursor = &mut buffer[..];
    let shortest = write!(cursor, "{f}")
        .ok()
        .map(|()| 64 - cursor.len())
        .and_then(|len| std::str::from_utf8(&buffer[..len]).ok())
        .and_then(|text| text.parse::<f64>().ok())
        .unwrap_or(f64::from(f));
    write(CompactFormatter.write_f64(out, shortest));
}

/// A `decimal`'s unscaled big-endian two's-complement bytes, as a string with the point `scale` digits from the
/// right; false, and nothing written, when that string alone would pass [`MAX_REQUEST_DECODED_BYTES`].
fn decimal_text(out: &mut Vec<u8>, bytes: &[u8], scale: usize) -> bool {
    let mut buffer = [0u8; 48];
    let big;
    let digits: &[u8] = if bytes.len() <= 16 {
        let mut n: i128 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        };
        for &byte in bytes {
            n = (n << 8) | i128::from(byte);
        }
        let mut cursor = &mut buffer[..];
        write!(cursor, "{n}").unwrap_or_default();
        let len = 48 - cursor.len();
        &buffer[..len]
    } else {
        big = num_bigint::BigInt::from_signed_bytes_be(bytes).to_string();
        big.as_bytes()
    };
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    // `0.000…` takes `scale` digits after the point, and one before it.
    let width = if scale == 0 {
        digits.len()
    } else {
        digits.len().max(scale.saturating_add(1))
    };
    let len = width
        .saturating_add(usize::from(negative) + usize::from(scale > 0))
        .saturating_add(2);
    if len > MAX_REQUEST_DECODED_BYTES {
        return false;
    }
    out.reserve(len);
    out.push(b'"');
    if negative {
        out.push(b'-');
    }
    let zeros = width - digits.len();
    let point = width - scale;
    let (whole, fraction) = if zeros >= point {
        (0, zeros - point)
    } else {
        (point - zeros, 0)
    };
    // The digits before the point (zeros first when short), the point, then zeros and the digits after it.
    out.resize(out.len() + zeros.min(point), b'0');
    out.extend_from_slice(&digits[..whole]);
    if scale > 0 {
        out.push(b'.');
        out.resize(out.len() + fraction, b'0');
        out.extend_from_slice(&digits[whole..]);
    }
    out.push(b'"');
    true
}

/// A `big-decimal`'s bytes (its own length-prefixed unscaled value, then its scale) as apache-avro reads and
/// bigdecimal prints them.
fn big_decimal(bytes: &[u8]) -> Result<String, Fault> {
    let bad = |what: &str| Fault::Bad(format!("a big-decimal's {what} does not decode"));
    let mut pos = 0;
    let len = varint(bytes, &mut pos).map_err(|_| bad("length"))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_DECODE_ALLOCATION)
        .ok_or_else(|| bad("length"))?;
    let unscaled = bytes
        .get(pos..)
        .and_then(|rest| rest.get(..len))
        .ok_or_else(|| bad("value"))?;
    pos += len;
    let scale = varint(bytes, &mut pos).map_err(|_| bad("scale"))?;
    let unscaled = num_bigint::BigInt::from_signed_bytes_be(unscaled);
    #[allow(deprecated)]
    let decimal = apache_avro::BigDecimal::new(unscaled, scale);
    Ok(decimal.to_string())
}

fn uuid_text(out: &mut Vec<u8>, uuid: &Uuid) {
    let mut buffer = [0u8; 36];
    let text = uuid.hyphenated().encode_lower(&mut buffer);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Appends `n` in decimal, at least `width` digits (zero-padded); `n` is not negative.
fn digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buffer = [0u8; 20];
    let mut at = buffer.len();
    let mut n = n;
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 && buffer.len() - at >= width {
            break;
        }
    }
    out.extend_from_slice(&buffer[at..]);
}

/// A `date` as `"YYYY-MM-DD"`, or false when it is outside the years 0 to 9999 (see [`generic::date`]).
fn date_text(out: &mut Vec<u8>, days: i32) -> bool {
    let Some(day) = OffsetDateTime::UNIX_EPOCH
        .checked_add(time::Duration::days(i64::from(days)))
        .filter(|day| (0..=9999).contains(&day.year()))
    else {
        return false;
    };
    out.push(b'"');
    digits(out, day.year().unsigned_abs().into(), 4);
    out.push(b'-');
    digits(out, u8::from(day.month()).into(), 2);
    out.push(b'-');
    digits(out, day.day().into(), 2);
    out.push(b'"');
    true
}

/// A time of day as `"HH:MM:SS.ffffff"`, wrapped into one day.
fn time_text(out: &mut Vec<u8>, micros: i64) {
    let micros = micros.rem_euclid(86_400_000_000).unsigned_abs();
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    out.push(b'"');
    digits(out, secs / 3600, 2);
    out.push(b':');
    digits(out, secs / 60 % 60, 2);
    out.push(b':');
    digits(out, secs % 60, 2);
    out.push(b'.');
    digits(out, frac, 6);
    out.push(b'"');
}

/// A timestamp as an RFC 3339 string (see [`generic::timestamp`]), or false when it has none.
fn timestamp_text(out: &mut Vec<u8>, nanos: i128, utc: bool) -> bool {
    let start = out.len();
    out.push(b'"');
    let written = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format_into(out, &Rfc3339).ok());
    if written.is_none() {
        out.truncate(start);
        return false;
    }
    if !utc && out.last() == Some(&b'Z') {
        out.pop();
    }
    out.push(b'"');
    true
}

/// Writing to a `Vec` cannot fail.
fn write(result: std::io::Result<()>) {
    debug_assert!(result.is_ok(), "writing to a Vec<u8> does not fail");
}
