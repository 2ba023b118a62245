//! The JSON ↔ Avro mapping: the default schema that carries any JSON value, and encoding and decoding of the
//! object container files that travel as payloads.
//!
//! Records go through apache-avro's schema-aware serde path (about 2.5× faster than its `Value` path) with
//! hand-written `Serialize`/`Deserialize` impls ([`json`]), inside containers framed by [`container`]. The
//! schema's parsed form, its datum reader and writer are built once per process, and the [`Decoder`] remembers
//! which container headers it has already checked, so a request costs no schema parsing.

pub mod container;
mod fingerprint;
pub mod generic;
mod json;
pub mod typed;

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use apache_avro::{
    Codec, Schema, reader::datum::GenericDatumReader, schema::ResolvedSchema,
    writer::datum::GenericDatumWriter,
};
use serde_json::{Number, Value};

pub use fingerprint::{SchemaFingerprint, canonical_form, fingerprint_of_canonical};

use container::{ContainerError, ContainerReader, ContainerWriter};
use json::{OwnedRecord, TextRecord};

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

/// Largest single allocation apache-avro may make while decoding (also the most a compressed block may
/// expand to); its 512 MiB default is far too trusting.
pub const MAX_DECODE_ALLOCATION: usize = 16 * 1024 * 1024;

/// Distinct container headers the [`Decoder`] remembers as already checked.
const MAX_CACHED_SCHEMAS: usize = 64;

static JSON_SCHEMA_PARSED: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(JSON_SCHEMA).expect("the built-in schema is valid"));

static DATUM_WRITER: LazyLock<GenericDatumWriter<'static>> = LazyLock::new(|| {
    GenericDatumWriter::builder(&JSON_SCHEMA_PARSED)
        .validate(false)
        .build()
        .expect("the built-in schema resolves")
});

static DATUM_READER: LazyLock<GenericDatumReader<'static>> = LazyLock::new(|| {
    GenericDatumReader::builder(&JSON_SCHEMA_PARSED)
        .build()
        .expect("the built-in schema resolves")
});

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
    /// A record does not fit the user's schema (`send --schema`).
    #[error("record {record} does not fit the schema: {reason}")]
    DoesNotFit {
        /// 1-based index of the record.
        record: usize,
        /// Where and why: the field path and what was expected.
        reason: String,
    },
    /// The writer schema resolves against none of the server's reader schemas.
    #[error("writer schema does not resolve against the server's schemas: {0}")]
    SchemaMismatch(String),
    /// The bytes are not a readable container file of the expected schema.
    #[error("not a valid Avro container file: {0}")]
    Invalid(String),
}

impl From<ContainerError> for AvroError {
    fn from(e: ContainerError) -> Self {
        AvroError::Invalid(e.to_string())
    }
}

/// Limits apache-avro's decode allocations for the whole process; call once before decoding untrusted input.
pub fn limit_decode_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
}

/// Encodes records as an Avro object container file (null codec) with the default JSON schema.
pub fn encode(records: &[Value]) -> Result<Vec<u8>, AvroError> {
    encode_with_codec(records, Codec::Null)
}

/// Encodes records as one block of a container file with the default JSON schema and the given codec.
pub fn encode_with_codec(records: &[Value], codec: Codec) -> Result<Vec<u8>, AvroError> {
    let mut batch = BatchEncoder::new(codec);
    for (i, record) in records.iter().enumerate() {
        batch.push(record, i + 1)?;
    }
    batch.finish()
}

/// Builds one payload record by record, so a sender can watch its size grow and cut it where it wants.
pub struct BatchEncoder {
    codec: Codec,
    data: Vec<u8>,
    count: u64,
    /// Boxed: a parsed schema is large, and most batches have none.
    typed: Option<Box<UserSchema>>,
}

/// A user's schema for `send --schema`: records are natural JSON converted to it ([`typed`]).
pub struct UserSchema {
    /// The schema's text, as it goes into each container header.
    text: String,
    schema: &'static Schema,
    resolved: ResolvedSchema<'static>,
    writer: GenericDatumWriter<'static>,
}

impl UserSchema {
    /// Parses a schema given by the user. It lives for the rest of the process (a sender has one).
    pub fn parse(text: &str) -> Result<UserSchema, AvroError> {
        let schema: &'static Schema = Box::leak(Box::new(
            Schema::parse_str(text).map_err(|e| AvroError::Invalid(format!("schema: {e}")))?,
        ));
        let resolved = ResolvedSchema::try_from(schema)
            .map_err(|e| AvroError::Invalid(format!("schema: {e}")))?;
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| AvroError::Invalid(format!("schema: {e}")))?;
        Ok(UserSchema {
            text: text.trim().to_owned(),
            schema,
            resolved,
            writer,
        })
    }
}

impl std::fmt::Debug for BatchEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchEncoder")
            .field("codec", &self.codec)
            .field("count", &self.count)
            .field("typed", &self.typed.is_some())
            .finish()
    }
}

impl BatchEncoder {
    /// An empty batch of zavro's JSON schema whose container will use `codec`.
    pub fn new(codec: Codec) -> Self {
        BatchEncoder {
            codec,
            data: Vec::new(),
            count: 0,
            typed: None,
        }
    }

    /// An empty batch of the user's schema: each record must fit it (see [`typed`]).
    pub fn with_schema(codec: Codec, schema: UserSchema) -> Self {
        BatchEncoder {
            typed: Some(Box::new(schema)),
            ..BatchEncoder::new(codec)
        }
    }

    /// Appends one record; `number` (1-based, in the whole input) names it in errors.
    pub fn push(&mut self, record: &Value, number: usize) -> Result<(), AvroError> {
        if let Some(user) = &self.typed {
            let value = typed::to_avro(record, user.schema, user.resolved.get_names(), "$")
                .map_err(|reason| AvroError::DoesNotFit {
                    record: number,
                    reason,
                })?;
            user.writer
                .write_value_ref(&mut self.data, &value)
                .map_err(|e| AvroError::DoesNotFit {
                    record: number,
                    reason: e.to_string(),
                })?;
            self.count += 1;
            return Ok(());
        }
        check_numbers(record).map_err(|n| AvroError::UnrepresentableNumber {
            record: number,
            number: n,
        })?;
        DATUM_WRITER
            .write_ser(&mut self.data, &json::Record(record))
            .map_err(|e| AvroError::Invalid(e.to_string()))?;
        self.count += 1;
        Ok(())
    }

    /// Records in the batch.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded bytes of the records so far (the container adds a few hundred bytes of header).
    pub fn encoded_bytes(&self) -> usize {
        self.data.len()
    }

    /// Removes the newest record, whose encoding starts at byte `from`, and returns its bytes.
    pub fn pop_last(&mut self, from: usize) -> Vec<u8> {
        self.count -= 1;
        self.data.split_off(from)
    }

    /// Appends a record already encoded by [`BatchEncoder::pop_last`].
    pub fn push_encoded(&mut self, bytes: Vec<u8>) {
        self.data.extend_from_slice(&bytes);
        self.count += 1;
    }

    /// The container file of the records so far; the batch is empty afterwards.
    pub fn finish(&mut self) -> Result<Vec<u8>, AvroError> {
        let mut sync = [0u8; 16];
        getrandom::fill(&mut sync)
            .map_err(|e| AvroError::Invalid(format!("no randomness for the sync marker: {e}")))?;
        let schema = self
            .typed
            .as_ref()
            .map_or(JSON_SCHEMA, |user| user.text.as_str());
        let mut file = ContainerWriter::new(schema, self.codec, sync);
        file.write_block(self.count, std::mem::take(&mut self.data))
            .map_err(|e| AvroError::Invalid(e.to_string()))?;
        self.count = 0;
        Ok(file.finish())
    }
}

/// Records as JSON text: one compact JSON value per line, each ending with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ndjson {
    /// The lines.
    pub text: Vec<u8>,
    /// How many records (lines).
    pub records: usize,
}

impl Ndjson {
    /// The records as one JSON array (`[a,b,…]`), the form the store keeps.
    pub fn to_json_array(&self) -> String {
        let mut array = String::with_capacity(self.text.len() + 2);
        array.push('[');
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(line);
        }
        array.push(']');
        array
    }

    /// Each record's JSON text.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        // Written by serde_json from UTF-8 strings, and records never contain a raw newline.
        std::str::from_utf8(&self.text)
            .expect("serde_json writes UTF-8")
            .split_terminator('\n')
    }
}

/// A writer schema the decoder has checked.
#[derive(Debug, Clone)]
enum WriterSchema {
    /// zavro's JSON schema: the fast, bounded serde path.
    Json,
    /// Any other schema without recursion: apache-avro's generic path, then natural JSON.
    Other(Arc<Schema>),
    /// A writer schema resolved against one of the server's reader schemas: records come out in the reader's
    /// shape (Avro's schema resolution rules).
    Resolved {
        /// The schema the data was written with.
        writer: Arc<Schema>,
        /// The server's schema it is read as.
        reader: Arc<Schema>,
    },
}

/// What decoding one request's container file found.
#[derive(Debug)]
pub struct Decoded {
    /// The header's writer schema and its fingerprint, when the header could be read and its schema parsed
    /// (also when the records were then refused, e.g. for a schema mismatch).
    pub schema: Option<Arc<SchemaFingerprint>>,
    /// The records as JSON lines, or why they were refused.
    pub records: Result<Ndjson, AvroError>,
}

/// Decodes container files, remembering the header schemas it has checked so a request parses no schema.
#[derive(Debug, Default)]
pub struct Decoder {
    schemas: HashMap<Vec<u8>, (WriterSchema, Arc<SchemaFingerprint>)>,
    /// When not empty, only writer schemas that resolve against one of these are accepted.
    readers: Vec<Arc<Schema>>,
}

impl Decoder {
    /// A decoder with an empty schema cache.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// A decoder that accepts only data whose writer schema resolves against one of `readers` (Avro's
    /// resolution rules: added fields with defaults, removed fields, promotions, aliases), and gives records in
    /// the shape of the first reader that fits.
    pub fn with_reader_schemas(readers: Vec<Schema>) -> Self {
        Decoder {
            schemas: HashMap::new(),
            readers: readers.into_iter().map(Arc::new).collect(),
        }
    }

    /// Decodes every record of a container file into JSON values.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Vec<Value>, AvroError> {
        let mut records = Vec::new();
        self.each_record(bytes, &mut None, |record| {
            records.push(match record {
                Record::Json(data) => DATUM_READER
                    .read_deser::<OwnedRecord>(data)
                    .map(|OwnedRecord(v)| v)?,
                Record::Other(value) => value,
            });
            Ok(())
        })?;
        Ok(records)
    }

    /// Transcodes every record of a container file straight to JSON text, one line per record (NDJSON): the
    /// server's path. Records of zavro's JSON schema never become JSON values on the way.
    pub fn decode_text(&mut self, bytes: &[u8]) -> Result<Ndjson, AvroError> {
        self.decode_request(bytes).records
    }

    /// [`Decoder::decode_text`], also saying which writer schema the file used: the server's path.
    pub fn decode_request(&mut self, bytes: &[u8]) -> Decoded {
        json::start_text();
        let mut records = 0;
        let mut schema = None;
        let result = self.each_record(bytes, &mut schema, |record| {
            match record {
                Record::Json(data) => {
                    DATUM_READER.read_deser::<TextRecord>(data)?;
                }
                Record::Other(value) => json::push_json(&value),
            }
            json::push_text(b"\n");
            records += 1;
            Ok(())
        });
        let text = json::take_text();
        Decoded {
            schema,
            records: result.map(|()| Ndjson { text, records }),
        }
    }

    /// Checks the header, then hands each object of every block to `each`: as its bytes for the JSON schema,
    /// as natural JSON for any other. A block must be used up exactly by its declared objects.
    /// `seen` is set to the header's schema as soon as it is parsed.
    fn each_record(
        &mut self,
        bytes: &[u8],
        seen: &mut Option<Arc<SchemaFingerprint>>,
        mut each: impl FnMut(Record) -> Result<(), apache_avro::Error>,
    ) -> Result<(), AvroError> {
        let mut file = ContainerReader::new(bytes)?;
        let writer = self.writer_schema(file.header().schema, seen)?;
        let invalid = |e: &dyn std::fmt::Display| AvroError::Invalid(truncate(&e.to_string(), 300));
        let other = match &writer {
            WriterSchema::Json => None,
            WriterSchema::Other(schema) => {
                let resolved =
                    ResolvedSchema::try_from(schema.as_ref()).map_err(|e| invalid(&e))?;
                let reader = GenericDatumReader::builder(schema)
                    .resolved_writer_schemata(resolved.clone())
                    .build()
                    .map_err(|e| invalid(&e))?;
                Some((schema, resolved, reader))
            }
            WriterSchema::Resolved { writer, reader } => {
                let resolved =
                    ResolvedSchema::try_from(reader.as_ref()).map_err(|e| invalid(&e))?;
                let datum_reader = GenericDatumReader::builder(writer)
                    .reader_schema(reader)
                    .build()
                    .map_err(|e| invalid(&e))?;
                Some((reader, resolved, datum_reader))
            }
        };
        json::start_file();
        let mut values = 0usize;
        while let Some(block) = file.next_block()? {
            let mut data = block.data.as_slice();
            for _ in 0..block.count {
                match &other {
                    None => each(Record::Json(&mut data)).map_err(|e| invalid(&e))?,
                    Some((schema, resolved, reader)) => {
                        let value = reader.read_value(&mut data).map_err(|e| invalid(&e))?;
                        let value = generic::to_json(value, schema, resolved.get_names())
                            .map_err(|e| invalid(&e))?;
                        values += json_values(&value);
                        if values > MAX_VALUES {
                            return Err(AvroError::Invalid(format!(
                                "more than {MAX_VALUES} JSON values in one request"
                            )));
                        }
                        each(Record::Other(value)).map_err(|e| invalid(&e))?;
                    }
                }
            }
            if !data.is_empty() {
                return Err(AvroError::Invalid(format!(
                    "a block holds {} bytes beyond its {} objects",
                    data.len(),
                    block.count
                )));
            }
        }
        Ok(())
    }

    /// The checked form of a header's schema, from the cache or parsed and checked now; `seen` is set to its
    /// fingerprint once it parses, even if the checks then refuse it.
    fn writer_schema(
        &mut self,
        raw: &[u8],
        seen: &mut Option<Arc<SchemaFingerprint>>,
    ) -> Result<WriterSchema, AvroError> {
        if let Some((known, fingerprint)) = self.schemas.get(raw) {
            *seen = Some(Arc::clone(fingerprint));
            return Ok(known.clone());
        }
        let text = std::str::from_utf8(raw)
            .map_err(|_| AvroError::Invalid("avro.schema is not UTF-8".into()))?;
        let schema =
            Schema::parse_str(text).map_err(|e| AvroError::Invalid(format!("avro.schema: {e}")))?;
        let fingerprint = Arc::new(SchemaFingerprint::of(&schema, text));
        *seen = Some(Arc::clone(&fingerprint));
        // Structural equality, not parsing canonical form: apache-avro's canonical_form() panics on some schemas
        // that parse (a non-numeric "size" or "scale"), and this schema comes from an untrusted header.
        let checked = if !self.readers.is_empty() {
            self.resolve_against_readers(schema)?
        } else if schema == *JSON_SCHEMA_PARSED {
            WriterSchema::Json
        } else {
            check_foreign(&schema)?;
            WriterSchema::Other(Arc::new(schema))
        };
        if self.schemas.len() >= MAX_CACHED_SCHEMAS {
            self.schemas.clear();
        }
        self.schemas
            .insert(raw.to_vec(), (checked.clone(), fingerprint));
        Ok(checked)
    }

    /// The first reader schema the writer schema resolves against, or `SchemaMismatch` saying why the first
    /// reader does not fit.
    fn resolve_against_readers(&self, writer: Schema) -> Result<WriterSchema, AvroError> {
        let json = writer == *JSON_SCHEMA_PARSED;
        if !json {
            check_foreign(&writer)?;
        }
        let mut first_reason = None;
        for reader in &self.readers {
            if json && **reader == *JSON_SCHEMA_PARSED {
                return Ok(WriterSchema::Json);
            }
            if json {
                // Resolving zavro's recursive JSON schema into another shape would take the generic decoder,
                // which recurses without bound.
                first_reason.get_or_insert_with(|| {
                    "zavro's JSON schema resolves only against itself".to_owned()
                });
                continue;
            }
            match apache_avro::schema_compatibility::SchemaCompatibility::can_read(&writer, reader)
            {
                Ok(_) => {
                    return Ok(WriterSchema::Resolved {
                        writer: Arc::new(writer),
                        reader: Arc::clone(reader),
                    });
                }
                Err(e) => {
                    first_reason.get_or_insert_with(|| error_chain(&e));
                }
            }
        }
        Err(AvroError::SchemaMismatch(first_reason.unwrap_or_default()))
    }
}

/// An error and its sources, joined: apache-avro names the field in an inner error.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Refuses a foreign (non-JSON) writer schema that the generic decoder must not be handed from untrusted input:
/// a recursive one (data could nest past any stack) or one with arrays or maps of zero-size items.
fn check_foreign(schema: &Schema) -> Result<(), AvroError> {
    let resolved = ResolvedSchema::try_from(schema)
        .map_err(|e| AvroError::UnsupportedSchema(e.to_string()))?;
    if generic::is_recursive(schema, resolved.get_names()) {
        return Err(AvroError::UnsupportedSchema(
            "recursive schemas other than zavro's JSON schema are not accepted".into(),
        ));
    }
    if generic::has_zero_size_items(schema, resolved.get_names()) {
        return Err(AvroError::UnsupportedSchema(
            "arrays or maps of zero-size items (null, empty fixed or records of them) are not accepted".into(),
        ));
    }
    Ok(())
}

/// One object of a block, as [`Decoder::each_record`] hands it over.
enum Record<'a, 'b> {
    /// The remaining bytes of a JSON-schema block, starting at the object.
    Json(&'a mut &'b [u8]),
    /// An object of another schema, already converted to natural JSON.
    Other(Value),
}

/// How many JSON values (at any depth) a value holds, counting itself.
fn json_values(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(json_values).sum(),
        Value::Object(map) => map.values().map(json_values).sum(),
        _ => 0,
    }
}

/// Decodes a container file written with the default JSON schema back into its records.
pub fn decode(bytes: &[u8]) -> Result<Vec<Value>, AvroError> {
    Decoder::new().decode(bytes)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Finds the first number Avro cannot carry exactly (see [`representable`]).
fn check_numbers(value: &Value) -> Result<(), String> {
    match value {
        Value::Number(n) if !representable(n) => Err(n.to_string()),
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// True when Avro carries the number without changing its value: an integer literal within the `long` range
/// (sent as a long), or any other literal whose decimal value is exactly what the nearest double prints back
/// as (sent as a double). `1.10` and `1e2` pass (they come back as `1.1` and `100.0`, the same values);
/// `18446744073709551616` and `3.14159265358979323846` do not (the first needs more than 64 bits, the second
/// more than a double's 17 digits).
pub fn representable(n: &Number) -> bool {
    let text = n.as_str();
    if !text.contains(['.', 'e', 'E']) {
        return text.parse::<i64>().is_ok();
    }
    match text.parse::<f64>() {
        // Any decimal of at most 15 significant digits survives a round trip through a double (DBL_DIG), which
        // covers nearly every number people write; only longer ones need the exact comparison.
        // (Subnormal numbers have fewer digits of precision, so they take the exact path.)
        Ok(f) if f.is_normal() && significant_digits(text) <= 15 => true,
        // Compared with what the server will write for that double (serde_json's shortest form), since two
        // shortest forms can differ in the last digit between formatters.
        Ok(f) if f.is_finite() => {
            serde_json::to_string(&f).is_ok_and(|out| decimal_value(text) == decimal_value(&out))
        }
        _ => false,
    }
}

/// Digits of the mantissa from the first non-zero digit on (an upper bound on the significant digits).
fn significant_digits(text: &str) -> usize {
    text.bytes()
        .take_while(|b| !matches!(b, b'e' | b'E'))
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count()
}

/// A JSON number literal's value as (negative, significant digits, exponent of the last digit), with zeros
/// trimmed so equal values compare equal; every zero is `(sign, "", 0)`.
fn decimal_value(text: &str) -> (bool, String, i64) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            &unsigned[..at],
            unsigned[at + 1..].parse::<i64>().unwrap_or(0),
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let mut exponent = exponent - fraction.len() as i64;
    let trimmed = digits.trim_end_matches('0');
    exponent += (digits.len() - trimmed.len()) as i64;
    let significant = trimmed.trim_start_matches('0');
    if significant.is_empty() {
        return (negative, String::new(), 0);
    }
    (negative, significant.to_owned(), exponent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::{Reader, Writer};
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
    fn the_text_path_writes_exactly_what_serde_json_would() {
        let records = vec![
            json!({"indicator": "power", "timestamp": 1700000000, "value": 5.3}),
            json!({"z": 1, "a": [1, 2.5, "x\n\"y\u{1}", null, true, {"nested": {"deep": []}}], "": {}}),
            json!([[], {}, [[1.0e300]], -0.0]),
            json!("unicode ☃"),
            json!(i64::MIN),
        ];
        let text = Decoder::new()
            .decode_text(&encode(&records).unwrap())
            .unwrap();
        let expected: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), expected);
        assert_eq!(text.records, records.len());
        assert_eq!(
            text.to_json_array(),
            serde_json::to_string(&records).unwrap()
        );
    }

    #[test]
    fn the_text_path_has_the_same_limits() {
        let mut deep = json!(1);
        for _ in 0..(MAX_DEPTH + 5) {
            deep = json!([deep]);
        }
        let err = Decoder::new()
            .decode_text(&encode(&[deep]).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("nesting"), "{err}");
        let bytes = encode(&[json!({"a": [1, 2, 3]}), json!("x")]).unwrap();
        for cut in 0..bytes.len() {
            let _ = Decoder::new().decode_text(&bytes[..cut]);
        }
    }

    #[test]
    fn numbers_pass_exactly_when_their_value_survives() {
        let number = |text: &str| serde_json::from_str::<Number>(text).unwrap();
        for ok in [
            "0",
            "-0",
            "9223372036854775807",
            "-9223372036854775808",
            "1.10",
            "1e2",
            "0.1",
            "-0.0",
            "5e-324",
            "1.7976931348623157e308",
            "3.141592653589793",
        ] {
            assert!(representable(&number(ok)), "{ok} should pass");
        }
        for refused in [
            "9223372036854775808",
            "18446744073709551616",
            "123456789012345678901234567890",
            "3.14159265358979323846",
            "0.30000000000000000001",
            "1e400",
        ] {
            assert!(
                !representable(&number(refused)),
                "{refused} should be refused"
            );
        }
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
        assert_eq!(decode(&theirs).unwrap(), records);
    }

    #[test]
    fn a_decoder_checks_a_header_schema_once_and_then_remembers_it() {
        let mut decoder = Decoder::new();
        let first = encode(&[json!(1)]).unwrap();
        decoder.decode(&first).unwrap();
        decoder.decode(&encode(&[json!(2)]).unwrap()).unwrap();
        assert_eq!(decoder.schemas.len(), 1);
    }

    #[test]
    fn trailing_bytes_in_a_block_are_refused() {
        let mut data = Vec::new();
        DATUM_WRITER
            .write_ser(&mut data, &json::Record(&json!(1)))
            .unwrap();
        data.push(0);
        let mut file = ContainerWriter::new(JSON_SCHEMA, Codec::Null, [1; 16]);
        file.write_block(1, data).unwrap();
        assert!(
            decode(&file.finish())
                .unwrap_err()
                .to_string()
                .contains("beyond")
        );
    }

    /// A container file of `schema` holding `values`, written by apache-avro's own writer.
    fn written_by_apache_avro(schema: &str, values: Vec<apache_avro::types::Value>) -> Vec<u8> {
        let schema = Schema::parse_str(schema).unwrap();
        let mut writer = Writer::new(&schema, Vec::new()).unwrap();
        for value in values {
            writer.append_value(value).unwrap();
        }
        writer.into_inner().unwrap()
    }

    #[test]
    fn other_schemas_decode_to_natural_json() {
        use apache_avro::types::Value as Avro;
        let schema = r#"{"type":"record","name":"Reading","fields":[
            {"name":"id","type":"long"},
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["POWER","HEAT"]}},
            {"name":"value","type":["null","double"]},
            {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}},
            {"name":"tags","type":{"type":"map","values":"string"}}]}"#;
        let record = Avro::Record(vec![
            ("id".into(), Avro::Long(7)),
            ("kind".into(), Avro::Enum(1, "HEAT".into())),
            ("value".into(), Avro::Union(1, Box::new(Avro::Double(5.5)))),
            ("at".into(), Avro::TimestampMillis(1_764_301_635_123)),
            (
                "price".into(),
                Avro::Decimal(apache_avro::Decimal::from(12345i64.to_be_bytes().to_vec())),
            ),
            (
                "tags".into(),
                Avro::Map(
                    [
                        ("b".to_owned(), Avro::String("2".into())),
                        ("a".to_owned(), Avro::String("1".into())),
                    ]
                    .into(),
                ),
            ),
        ]);
        let bytes = written_by_apache_avro(schema, vec![record]);
        let text = Decoder::new().decode_text(&bytes).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                r#"{"id":7,"kind":"HEAT","value":5.5,"at":"2025-11-28T03:47:15.123Z","price":"123.45","tags":{"a":"1","b":"2"}}"#
            ]
        );
    }

    #[test]
    fn schemas_that_crash_apache_avros_canonical_form_are_handled_without_a_panic() {
        // Found by the fuzzer (fuzz/README.md): apache-avro 0.22's canonical_form() panics on these, which parse.
        let with_precision = JSON_SCHEMA.replacen(
            r#""name":"Json""#,
            r#""name":"Json","precision":"3avro""#,
            1,
        );
        let with_size = JSON_SCHEMA.replacen(r#""name":"Json""#, r#""name":"Json","size":1.5"#, 1);
        let with_symbols =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long","symbols":null}]}"#;
        for schema in [with_precision.as_str(), with_size.as_str(), with_symbols] {
            let mut file = ContainerWriter::new(schema, Codec::Null, [3; 16]);
            file.write_block(1, vec![2]).unwrap();
            let bytes = file.finish();
            let _ = decode(&bytes);
            let decoded = Decoder::new().decode_request(&bytes);
            if let Ok(parsed) = Schema::parse_str(schema) {
                assert_eq!(
                    decoded.schema.map(|s| s.canonical.clone()),
                    Some(canonical_form(&parsed)),
                    "the fingerprint of a parsed schema is computed without a panic"
                );
            }
        }
    }

    #[test]
    fn a_decoded_request_names_its_writer_schema_even_when_refused() {
        let mut decoder = Decoder::new();
        let json = decoder.decode_request(&encode(&[json!(1)]).unwrap());
        let fingerprint = json.schema.expect("the JSON schema parsed");
        assert_eq!(fingerprint.text, JSON_SCHEMA);
        assert_eq!(
            fingerprint.fingerprint,
            fingerprint_of_canonical(&canonical_form(&JSON_SCHEMA_PARSED))
        );
        assert!(json.records.is_ok());
        let cached = decoder.decode_request(&encode(&[json!(2)]).unwrap());
        assert_eq!(cached.schema.unwrap().fingerprint, fingerprint.fingerprint);

        let recursive =
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#;
        let mut file = ContainerWriter::new(recursive, Codec::Null, [3; 16]);
        file.write_block(1, vec![0]).unwrap();
        let refused = decoder.decode_request(&file.finish());
        assert!(matches!(
            refused.records,
            Err(AvroError::UnsupportedSchema(_))
        ));
        assert_eq!(
            refused.schema.unwrap().canonical,
            r#"{"name":"L","type":"record","fields":[{"name":"next","type":["null","L"]}]}"#
        );

        let garbage = decoder.decode_request(b"not avro");
        assert!(garbage.records.is_err());
        assert!(garbage.schema.is_none(), "no header, no schema");
    }

    #[test]
    fn recursive_and_amplifying_foreign_schemas_are_refused() {
        use apache_avro::types::Value as Avro;
        let list =
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#;
        let bytes = written_by_apache_avro(
            list,
            vec![Avro::Record(vec![(
                "next".into(),
                Avro::Union(0, Box::new(Avro::Null)),
            )])],
        );
        assert!(matches!(
            decode(&bytes),
            Err(AvroError::UnsupportedSchema(_))
        ));
        let nulls = r#"{"type":"array","items":"null"}"#;
        let bytes = written_by_apache_avro(nulls, vec![Avro::Array(vec![Avro::Null; 3])]);
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

#[cfg(test)]
mod round_trip {
    //! Property: any JSON value Avro can carry comes back from send-side encoding and server-side decoding as
    //! the same JSON text, key order and number kinds included.

    use proptest::prelude::*;
    use serde_json::{Map, Number, Value};

    use super::*;

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
            let text = Decoder::new().decode_text(&payload).unwrap();
            let expected: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
            prop_assert_eq!(text.lines().collect::<Vec<_>>(), expected);
            prop_assert_eq!(decode(&payload).unwrap(), records);
        }

        #[test]
        fn integers_beyond_the_long_range_are_refused(n in (i64::MAX as u64 + 1)..=u64::MAX) {
            let err = encode(&[serde_json::json!({"n": n})]).unwrap_err();
            let refused = matches!(err, AvroError::UnrepresentableNumber { .. });
            prop_assert!(refused, "{}", err);
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
            Decoder::new().decode_text(&payload).unwrap().lines().next(),
            Some(text.as_str())
        );
    }
}

#[cfg(test)]
mod evolution {
    //! Reader schemas on the server: Avro's resolution rules, both ways, and refusals that name the field.

    use apache_avro::{Writer, types::Value as Avro};

    use super::*;

    const V1: &str = r#"{"type":"record","name":"Reading","fields":[
        {"name":"id","type":"int"},
        {"name":"value","type":"double"},
        {"name":"note","type":"string"}]}"#;

    const V2: &str = r#"{"type":"record","name":"Reading","fields":[
        {"name":"id","type":"long"},
        {"name":"value","type":"double"},
        {"name":"unit","type":"string","default":"kW"}]}"#;

    fn file(schema: &str, records: Vec<Avro>) -> Vec<u8> {
        let schema = Schema::parse_str(schema).unwrap();
        let mut writer = Writer::new(&schema, Vec::new()).unwrap();
        for record in records {
            writer.append_value(record).unwrap();
        }
        writer.into_inner().unwrap()
    }

    fn reader(schema: &str) -> Decoder {
        Decoder::with_reader_schemas(vec![Schema::parse_str(schema).unwrap()])
    }

    #[test]
    fn old_data_read_with_a_new_schema_gains_defaults_loses_removed_fields_and_is_promoted() {
        let old = file(
            V1,
            vec![Avro::Record(vec![
                ("id".into(), Avro::Int(7)),
                ("value".into(), Avro::Double(5.3)),
                ("note".into(), Avro::String("dropped".into())),
            ])],
        );
        let text = reader(V2).decode_text(&old).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [r#"{"id":7,"value":5.3,"unit":"kW"}"#]
        );
    }

    #[test]
    fn new_data_read_with_an_old_schema_that_needs_a_removed_field_is_a_mismatch_naming_it() {
        let new = file(
            V2,
            vec![Avro::Record(vec![
                ("id".into(), Avro::Long(7)),
                ("value".into(), Avro::Double(5.3)),
                ("unit".into(), Avro::String("MW".into())),
            ])],
        );
        // V1 needs `note`, which V2 data lacks and V1 has no default for; and long does not narrow to int.
        let err = reader(V1).decode_text(&new).unwrap_err();
        assert!(matches!(err, AvroError::SchemaMismatch(_)), "{err}");
        assert!(
            err.to_string().contains("id") || err.to_string().contains("note"),
            "{err}"
        );

        let lenient = r#"{"type":"record","name":"Reading","fields":[
            {"name":"id","type":"long"},{"name":"note","type":"string","default":""}]}"#;
        let text = reader(lenient).decode_text(&new).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), [r#"{"id":7,"note":""}"#]);
    }

    #[test]
    fn a_changed_type_is_refused_with_the_field_named() {
        let changed =
            r#"{"type":"record","name":"Reading","fields":[{"name":"value","type":"string"}]}"#;
        let data = file(
            V1,
            vec![Avro::Record(vec![
                ("id".into(), Avro::Int(1)),
                ("value".into(), Avro::Double(1.0)),
                ("note".into(), Avro::String(String::new())),
            ])],
        );
        let err = reader(changed).decode_text(&data).unwrap_err().to_string();
        assert!(err.contains("value"), "{err}");
    }

    #[test]
    fn with_reader_schemas_the_json_schema_is_accepted_only_when_listed() {
        let json = encode(&[serde_json::json!({"a": 1})]).unwrap();
        assert!(matches!(
            reader(V2).decode_text(&json),
            Err(AvroError::SchemaMismatch(_))
        ));
        let text = reader(JSON_SCHEMA).decode_text(&json).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), [r#"{"a":1}"#]);
    }
}
