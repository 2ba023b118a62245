//! Avro to JSON text: the server's decoder, from a request's container file to NDJSON lines, with the limits
//! that keep untrusted payloads bounded.

use std::{collections::HashMap, sync::Arc};

#[cfg(test)]
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::{Schema, schema::ResolvedSchema};
use serde_json::Value;

use super::{
    AvroError, JSON_SCHEMA_PARSED, SchemaFingerprint, allocation_limit_message,
    container::ContainerReader,
    generic,
    json_text::{self, Fault},
    natural_text::{self, Plan},
    value_reader::ValueReader,
};

/// Deepest JSON nesting accepted on either side; serde_json's parser stops at 128 too.
pub const MAX_DEPTH: usize = 128;

/// Most JSON values (scalars, arrays and objects, at any depth) decoded from one request, so that a small
/// message of tiny values cannot expand into a huge tree in memory. Every value takes at least one byte of
/// Avro, so any payload up to [`super::MAX_PAYLOAD_BYTES`] stays under it.
pub const MAX_VALUES: usize = 1 << 20;

/// Largest single allocation apache-avro may make while decoding (also the most a compressed block may
/// expand to); its 512 MiB default is far too trusting.
pub const MAX_DECODE_ALLOCATION: usize = 16 * 1024 * 1024;

/// Longest writer schema (its JSON text in the container header) the server parses: real schemas are a few KB,
/// and parsing and storing one costs far more than its size (a 4 MB schema cost 565 MB of RSS and 348 MB of
/// store).
pub const MAX_SCHEMA_BYTES: usize = 128 * 1024;

/// Most bytes one request may decode to, counted twice: its blocks once decompressed, and the JSON text of its
/// records. A request over it is refused, so a few KB of deflate or a block of zero-size records cannot make the
/// server spend gigabytes. The text is checked as it is written, so it passes the budget by at most a few hundred
/// bytes for zavro's JSON schema and by one value's text for another schema read by its plan; on the value route
/// (a reader schema, a schema without a plan), after each record.
pub const MAX_REQUEST_DECODED_BYTES: usize = 32 * 1024 * 1024;

/// Distinct container headers the [`Decoder`] remembers as already checked.
const MAX_CACHED_SCHEMAS: usize = 64;

/// apache-avro's schema-aware reader of zavro's JSON schema: the decoder before [`json_text`], kept as the tests'
/// oracle.
#[cfg(test)]
static DATUM_READER: std::sync::LazyLock<GenericDatumReader<'static>> =
    std::sync::LazyLock::new(|| {
        GenericDatumReader::builder(&JSON_SCHEMA_PARSED)
            .build()
            .expect("the built-in schema resolves")
    });

/// Limits apache-avro's decode allocations for the whole process; call once before decoding untrusted input.
pub fn limit_decode_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
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
    /// Any other schema without recursion: natural JSON, straight from the bytes by its compiled plan, or
    /// (for the rare schema that has none) through apache-avro's generic reader.
    Other {
        /// The schema compiled for [`natural_text`].
        plan: Option<Arc<Plan>>,
        /// apache-avro's reader of the schema's records, for a schema without a plan (and the tests' oracle).
        values: Arc<ValueReader>,
    },
    /// A writer schema resolved against one of the server's reader schemas: records come out in the reader's
    /// shape (Avro's schema resolution rules), read by apache-avro's reader from the one to the other.
    Resolved(Arc<ValueReader>),
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

    /// Transcodes every record of a container file straight to JSON text, one line per record (NDJSON), and
    /// says which writer schema the file used. Records of zavro's JSON schema, and of any other writer schema
    /// read as it is, never become values on the way. This is the one decoding path: the server, the tests and
    /// the fuzz targets all run it.
    pub fn decode_request(&mut self, bytes: &[u8]) -> Decoded {
        let mut budget = json_text::Budget::new();
        let mut scratch = natural_text::Scratch::default();
        self.transcode(bytes, Route::Direct, |record, text| match record {
            Record::Json(data) => {
                json_text::record(data, text, &mut budget).map_err(RecordError::Text)
            }
            Record::Natural(plan, data) => {
                natural_text::record(plan, data, text, &mut scratch).map_err(RecordError::Natural)
            }
            Record::Other(value) => serde_json::to_writer(text, &value)
                .map_err(|e| RecordError::Text(Fault::Bad(e.to_string()))),
        })
    }

    /// [`Decoder::decode_request`] as it was before [`json_text`] and [`natural_text`]: records of the JSON schema
    /// through apache-avro's schema-aware deserializer and a serde visitor, records of any other schema through
    /// apache-avro's generic reader, [`generic::to_json`] and serde_json; the oracle of the tests.
    #[cfg(test)]
    pub(super) fn decode_request_by_serde(&mut self, bytes: &[u8]) -> Decoded {
        use super::json;
        json::start_file();
        self.transcode(bytes, Route::Values, |record, text| {
            match record {
                Record::Natural(..) => unreachable!("the oracle reads other schemas as values"),
                Record::Json(data) => {
                    json::start_text();
                    let result = DATUM_READER.read_deser::<json::TextRecord>(data);
                    text.extend_from_slice(&json::take_text());
                    result.map_err(RecordError::Avro)?;
                }
                Record::Other(value) => text
                    .extend_from_slice(&serde_json::to_vec(&value).expect("JSON values serialize")),
            }
            Ok(())
        })
    }

    /// Transcodes every record with `each`, one line per record, into one buffer.
    fn transcode(
        &mut self,
        bytes: &[u8],
        route: Route,
        mut each: impl FnMut(Record, &mut Vec<u8>) -> Result<(), RecordError>,
    ) -> Decoded {
        // JSON text is about a third longer than the Avro it comes from; reserving that much up front spares the
        // buffer most of its regrowth, within the request's budget.
        let mut text =
            Vec::with_capacity((bytes.len() + bytes.len() / 2).min(MAX_REQUEST_DECODED_BYTES));
        let mut records = 0;
        let mut schema = None;
        let result = self.each_record(bytes, &mut schema, &mut text, route, |record, text| {
            each(record, text)?;
            text.push(b'\n');
            records += 1;
            Ok(())
        });
        Decoded {
            schema,
            records: result.map(|()| Ndjson { text, records }),
        }
    }

    /// Checks the header, then hands each object of every block to `each`: as its bytes for the JSON schema
    /// and (by `route`) for another schema with a plan, else as natural JSON. A block must be used up exactly by
    /// its declared objects. `seen` is set to the header's schema as soon as it is parsed.
    fn each_record(
        &mut self,
        bytes: &[u8],
        seen: &mut Option<Arc<SchemaFingerprint>>,
        text: &mut Vec<u8>,
        route: Route,
        mut each: impl FnMut(Record, &mut Vec<u8>) -> Result<(), RecordError>,
    ) -> Result<(), AvroError> {
        let mut file = ContainerReader::new(bytes)?;
        let (plan, other) = match self.writer_schema(file.header().schema, seen)? {
            WriterSchema::Json => (None, None),
            WriterSchema::Other {
                plan: Some(plan), ..
            } if route == Route::Direct => (Some(plan), None),
            WriterSchema::Other { values, .. } | WriterSchema::Resolved(values) => {
                (None, Some(values))
            }
        };
        let mut values = 0usize;
        let mut record = 0u64;
        let mut decompressed = 0usize;
        while let Some(block) = file.next_block()? {
            decompressed += block.data.len();
            if decompressed > MAX_REQUEST_DECODED_BYTES {
                return Err(over_request_budget("the decompressed data"));
            }
            let mut data = block.data.as_slice();
            for _ in 0..block.count {
                record += 1;
                let before = data.len();
                match (&other, &plan) {
                    (None, Some(plan)) => {
                        each(Record::Natural(plan, &mut data), text).map_err(|e| e.at(record))?;
                    }
                    (None, None) => {
                        each(Record::Json(&mut data), text).map_err(|e| e.at(record))?
                    }
                    (Some(reader), _) => {
                        let value = reader
                            .read(&mut data)
                            .map_err(|e| record_error(record, &e))?;
                        let value = generic::to_json(value, reader.shape(), reader.names())
                            .map_err(|reason| AvroError::NoJsonForm {
                                record,
                                reason: truncate(&reason, 300),
                            })?;
                        values += json_values(&value);
                        if values > MAX_VALUES {
                            return Err(AvroError::OverLimit(format!(
                                "more than {MAX_VALUES} JSON values in one request"
                            )));
                        }
                        each(Record::Other(value), text).map_err(|e| e.at(record))?;
                    }
                }
                // Every record must take at least one byte: one that takes none (a schema of "null", an empty
                // record) would let a few bytes declare millions of records.
                if data.len() == before {
                    return Err(AvroError::OverLimit(format!(
                        "record {record} has zero encoded size; such records are refused"
                    )));
                }
                if text.len() > MAX_REQUEST_DECODED_BYTES {
                    return Err(over_request_budget(RECORDS_TEXT));
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
        if raw.len() > MAX_SCHEMA_BYTES {
            return Err(AvroError::UnsupportedSchema(format!(
                "a writer schema of {} bytes; at most {} KiB",
                raw.len(),
                MAX_SCHEMA_BYTES >> 10
            )));
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
            let plan = Plan::compile(&schema).map(Arc::new);
            WriterSchema::Other {
                plan,
                values: Arc::new(ValueReader::of(Arc::new(schema)).map_err(unsupported)?),
            }
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
                    let values = ValueReader::resolving(Arc::new(writer), Arc::clone(reader))
                        .map_err(unsupported)?;
                    return Ok(WriterSchema::Resolved(Arc::new(values)));
                }
                Err(e) => {
                    first_reason.get_or_insert_with(|| error_chain(&e));
                }
            }
        }
        Err(AvroError::SchemaMismatch(first_reason.unwrap_or_default()))
    }
}

/// The refusal of a schema that passed its checks but for which apache-avro cannot set up a reader: a limit of
/// the schema support, not a fault of the data.
fn unsupported(error: apache_avro::Error) -> AvroError {
    AvroError::UnsupportedSchema(truncate(&error.to_string(), 300))
}

/// What the request budget's refusal calls the records' text.
const RECORDS_TEXT: &str = "the records' JSON text";

/// The refusal of a request whose `what` passes [`MAX_REQUEST_DECODED_BYTES`].
fn over_request_budget(what: &str) -> AvroError {
    AvroError::OverLimit(format!(
        "{what} passes {} MiB in one request (the server's limit per request)",
        MAX_REQUEST_DECODED_BYTES >> 20
    ))
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
    let largest = largest_fixed(schema);
    if largest > MAX_DECODE_ALLOCATION {
        // apache-avro allocates a fixed's declared size before it reads it, without its allocation limit: a
        // size of 2^62 aborts the process.
        return Err(AvroError::UnsupportedSchema(format!(
            "a fixed of {largest} bytes; at most {MAX_DECODE_ALLOCATION}"
        )));
    }
    Ok(())
}

/// The largest size of a `fixed` (also under `decimal`, `uuid` or `duration`) the schema defines. Named types
/// are defined once in the schema's text, so references are not followed.
fn largest_fixed(schema: &Schema) -> usize {
    use apache_avro::schema::{DecimalSchema, InnerDecimalSchema, UuidSchema};
    match schema {
        Schema::Fixed(fixed)
        | Schema::Duration(fixed)
        | Schema::Uuid(UuidSchema::Fixed(fixed))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(fixed),
            ..
        }) => fixed.size,
        Schema::Array(array) => largest_fixed(&array.items),
        Schema::Map(map) => largest_fixed(&map.types),
        Schema::Union(union) => union
            .variants()
            .iter()
            .map(largest_fixed)
            .max()
            .unwrap_or(0),
        Schema::Record(record) => record
            .fields
            .iter()
            .map(|field| largest_fixed(&field.schema))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// Why record number `record` could not be decoded: a limit that decoding reached (zavro's own, met in the
/// JSON transcoder, or apache-avro's allocation limit), else the bytes not fitting the writer schema.
fn record_error(record: u64, error: &apache_avro::Error) -> AvroError {
    // Only the tests' oracle decodes the JSON schema with a serde visitor that can reach a limit.
    #[cfg(test)]
    if let Some(limit) = super::json::take_limit_reached() {
        return AvroError::OverLimit(limit);
    }
    if let Some(limit) = allocation_limit_message(error) {
        return AvroError::OverLimit(limit);
    }
    AvroError::BadRecord {
        record,
        reason: truncate(&error.to_string(), 300),
    }
}

/// Why one record could not be written as JSON text.
enum RecordError {
    /// apache-avro's reader failed (the tests' oracle).
    #[cfg(test)]
    Avro(apache_avro::Error),
    /// The JSON transcoder failed.
    Text(Fault),
    /// The natural JSON transcoder failed.
    Natural(natural_text::Fault),
}

impl RecordError {
    /// The refusal of record number `record`.
    fn at(self, record: u64) -> AvroError {
        match self {
            #[cfg(test)]
            RecordError::Avro(e) => record_error(record, &e),
            RecordError::Text(Fault::Limit(limit)) => AvroError::OverLimit(limit),
            RecordError::Text(Fault::TooMuchText) => over_request_budget(RECORDS_TEXT),
            RecordError::Text(Fault::Bad(reason))
            | RecordError::Natural(natural_text::Fault::Bad(reason)) => AvroError::BadRecord {
                record,
                reason: truncate(&reason, 300),
            },
            RecordError::Natural(natural_text::Fault::Limit(limit)) => AvroError::OverLimit(limit),
            RecordError::Natural(natural_text::Fault::TooMuchText) => {
                over_request_budget(RECORDS_TEXT)
            }
            RecordError::Natural(natural_text::Fault::NoJsonForm(reason)) => {
                AvroError::NoJsonForm {
                    record,
                    reason: truncate(&reason, 300),
                }
            }
        }
    }
}

/// How records of a schema other than zavro's JSON schema are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Straight to text by the schema's plan, when it has one.
    Direct,
    /// As apache-avro values, then natural JSON (the tests' oracle).
    #[cfg(test)]
    Values,
}

/// One object of a block, as [`Decoder::each_record`] hands it over.
enum Record<'a, 'b> {
    /// The remaining bytes of a JSON-schema block, starting at the object.
    Json(&'a mut &'b [u8]),
    /// The remaining bytes of a block of another schema, starting at the object, and the schema's plan.
    Natural(&'a Plan, &'a mut &'b [u8]),
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

/// Decodes a container file the server's way and parses its lines back, as a consumer of the server's output
/// reads the records.
#[cfg(test)]
pub(super) fn decode_values(bytes: &[u8]) -> Result<Vec<Value>, AvroError> {
    let ndjson = Decoder::new().decode_request(bytes).records?;
    let values: Vec<Value> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line the decoder writes is JSON"))
        .collect();
    assert_eq!(values.len(), ndjson.records, "one line per record");
    Ok(values)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::{Codec, Writer};
    use serde_json::json;

    use super::*;
    use crate::avro::{
        JSON_SCHEMA, canonical_form, container::ContainerWriter, encode, encode::DATUM_WRITER,
        fingerprint_of_canonical,
    };

    /// A deflated container file of `"string"` records, one per block, each `len` copies of `byte`.
    fn strings(byte: u8, len: usize, blocks: usize) -> Vec<u8> {
        let mut file =
            ContainerWriter::new(r#""string""#, Codec::Deflate(Default::default()), [9; 16]);
        for _ in 0..blocks {
            let mut data = Vec::with_capacity(len + 10);
            crate::avro::container::write_long(&mut data, len as i64);
            data.resize(data.len() + len, byte);
            file.write_block(1, data).unwrap();
        }
        file.finish()
    }

    fn over_limit(bytes: &[u8]) -> String {
        match Decoder::new().decode_request(bytes).records {
            Err(e @ AvroError::OverLimit(_)) => e.to_string(),
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn a_few_kilobytes_of_deflate_cannot_decode_to_more_than_the_request_budget() {
        // 10 MiB of NUL bytes deflate to about 10 KB, and would be 60 MiB of JSON (`\u0000` each).
        let bomb = strings(0, 10 << 20, 1);
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let message = over_limit(&bomb);
        assert!(message.contains("JSON text passes 32 MiB"), "{message}");
        // Blocks that each fit, adding up to more than the budget.
        let message = over_limit(&strings(b'a', 12 << 20, 3));
        assert!(
            message.contains("decompressed data passes 32 MiB"),
            "{message}"
        );
        // Under the budget, the same kind of data is fine.
        assert!(
            Decoder::new()
                .decode_request(&strings(b'a', 1 << 20, 3))
                .records
                .is_ok()
        );
    }

    #[test]
    fn a_writer_schema_past_its_size_limit_is_refused_unparsed_and_not_named() {
        let doc = "x".repeat(MAX_SCHEMA_BYTES);
        let schema = format!(r#"{{"type":"record","name":"R","doc":"{doc}","fields":[]}}"#);
        let mut file = ContainerWriter::new(&schema, Codec::Null, [9; 16]);
        file.write_block(1, vec![0]).unwrap();
        let decoded = Decoder::new().decode_request(&file.finish());
        let error = decoded.records.unwrap_err();
        assert!(matches!(error, AvroError::UnsupportedSchema(_)), "{error}");
        assert!(error.to_string().contains("at most 128 KiB"), "{error}");
        assert!(
            decoded.schema.is_none(),
            "an oversized schema is never stored"
        );
    }

    #[test]
    fn records_of_zero_encoded_size_are_refused_not_multiplied() {
        for schema in [r#""null""#, r#"{"type":"record","name":"E","fields":[]}"#] {
            let mut file = ContainerWriter::new(schema, Codec::Null, [9; 16]);
            file.write_block(1_000_000, Vec::new()).unwrap();
            let message = over_limit(&file.finish());
            assert!(message.contains("zero encoded size"), "{message}");
            let mut one = ContainerWriter::new(schema, Codec::Null, [9; 16]);
            one.write_block(1, vec![0]).unwrap();
            let refused = Decoder::new().decode_request(&one.finish()).records;
            assert!(
                refused.is_err(),
                "one zero-size record and a stray byte: {refused:?}"
            );
        }
    }

    #[test]
    fn decoded_lines_are_exactly_what_serde_json_writes() {
        let records = vec![
            json!({"indicator": "power", "timestamp": 1700000000, "value": 5.3}),
            json!({"z": 1, "a": [1, 2.5, "x\n\"y\u{1}", null, true, {"nested": {"deep": []}}], "": {}}),
            json!([[], {}, [[1.0e300]], -0.0]),
            json!("unicode ☃"),
            json!(i64::MIN),
        ];
        let text = Decoder::new()
            .decode_request(&encode(&records).unwrap())
            .records
            .unwrap();
        let expected: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), expected);
        assert_eq!(text.records, records.len());
    }

    #[test]
    fn a_decoder_checks_a_header_schema_once_and_then_remembers_it() {
        let mut decoder = Decoder::new();
        let first = encode(&[json!(1)]).unwrap();
        decoder.decode_request(&first).records.unwrap();
        decoder
            .decode_request(&encode(&[json!(2)]).unwrap())
            .records
            .unwrap();
        assert_eq!(decoder.schemas.len(), 1);
    }

    #[test]
    fn a_user_schema_is_compiled_once_and_its_plan_serves_every_later_request() {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#;
        let mut decoder = Decoder::new();
        for n in [1u8, 2] {
            let text = decoder
                .decode_request(&one_block(schema, vec![n * 2]))
                .records
                .unwrap();
            assert_eq!(
                text.lines().collect::<Vec<_>>(),
                [format!(r#"{{"n":{n}}}"#)]
            );
        }
        assert_eq!(decoder.schemas.len(), 1);
        let (checked, _) = decoder.schemas.values().next().unwrap();
        assert!(
            matches!(checked, WriterSchema::Other { plan: Some(_), .. }),
            "{checked:?}"
        );
    }

    #[test]
    fn trailing_bytes_in_a_block_are_refused() {
        let mut data = Vec::new();
        DATUM_WRITER
            .write_ser(&mut data, &crate::avro::json::Record(&json!(1)))
            .unwrap();
        data.push(0);
        let mut file = ContainerWriter::new(JSON_SCHEMA, Codec::Null, [1; 16]);
        file.write_block(1, data).unwrap();
        assert!(
            decode_values(&file.finish())
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
        let text = Decoder::new().decode_request(&bytes).records.unwrap();
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
    fn a_fixed_larger_than_the_allocation_limit_is_refused_before_anything_allocates_it() {
        // apache-avro's reader would allocate 2^62 bytes for it and abort the process.
        for fixed in [
            r#"{"type":"fixed","name":"F","size":4611686018427387904}"#,
            r#"{"type":"fixed","name":"F","size":16777217,"logicalType":"decimal","precision":9,"scale":0}"#,
        ] {
            let schema = format!(
                r#"{{"type":"record","name":"R","fields":[{{"name":"a","type":["null",{{"type":"array","items":{fixed}}}]}}]}}"#
            );
            let bytes = one_block(&schema, vec![1, 2, 3]);
            for decoded in [
                Decoder::new().decode_request(&bytes),
                Decoder::new().decode_request_by_serde(&bytes),
            ] {
                let err = decoded.records.unwrap_err();
                assert!(matches!(err, AvroError::UnsupportedSchema(_)), "{err}");
                assert!(err.to_string().contains("a fixed of"), "{err}");
            }
        }
        let fits = r#"{"type":"fixed","name":"F","size":16777216}"#;
        let err = Decoder::new()
            .decode_request(&one_block(fits, vec![1]))
            .records
            .unwrap_err();
        assert!(
            matches!(err, AvroError::BadRecord { record: 1, .. }),
            "{err}"
        );
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
            decode_values(&bytes),
            Err(AvroError::UnsupportedSchema(_))
        ));
        let nulls = r#"{"type":"array","items":"null"}"#;
        let bytes = written_by_apache_avro(nulls, vec![Avro::Array(vec![Avro::Null; 3])]);
        assert!(matches!(
            decode_values(&bytes),
            Err(AvroError::UnsupportedSchema(_))
        ));
    }

    /// A container file of `schema` whose one block holds `data`.
    fn one_block(schema: &str, data: Vec<u8>) -> Vec<u8> {
        let mut file = ContainerWriter::new(schema, Codec::Null, [5; 16]);
        file.write_block(1, data).unwrap();
        file.finish()
    }

    #[test]
    fn a_value_over_the_allocation_limit_is_refused_in_plain_words() {
        // A string that declares 1 GiB: over zavro's limit and over apache-avro's default one, whichever this
        // test process has set. apache-avro's own message tells the reader to call one of its functions.
        let gib = [0x80, 0x80, 0x80, 0x80, 0x08];
        let json_string = [&[8u8][..], &gib].concat();
        let record_string = gib.to_vec();
        let string_record =
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#;
        for bytes in [
            one_block(JSON_SCHEMA, json_string),
            one_block(string_record, record_string),
        ] {
            let err = Decoder::new().decode_request(&bytes).records.unwrap_err();
            assert!(matches!(err, AvroError::OverLimit(_)), "{err}");
            let message = err.to_string();
            assert!(
                message.contains("1073741824 bytes") && message.contains("limit"),
                "{message}"
            );
            assert!(!message.contains("apache_avro"), "{message}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let bytes = encode(&[json!({"a": [1, 2, 3]}), json!("x")]).unwrap();
        assert!(decode_values(b"").is_err());
        assert!(decode_values(b"not avro").is_err());
        for cut in 0..bytes.len() {
            let _ = decode_values(&bytes[..cut]);
        }
    }

    #[test]
    fn too_many_values_in_one_file_are_refused() {
        let records = vec![json!(null); MAX_VALUES + 1];
        let err = decode_values(&encode(&records).unwrap()).unwrap_err();
        assert!(matches!(err, AvroError::OverLimit(_)), "{err}");
        assert!(err.to_string().contains("more than"), "{err}");
        assert_eq!(
            decode_values(&encode(&records[1..]).unwrap())
                .unwrap()
                .len(),
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
        let err = decode_values(&bytes).unwrap_err();
        assert!(matches!(err, AvroError::OverLimit(_)), "{err}");
        assert!(err.to_string().contains("nesting"), "{err}");
    }

    #[test]
    fn nan_and_infinities_from_other_writers_are_logged_as_avros_json_encoding_writes_them() {
        use apache_avro::types::Value as Avro;
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"d","type":"double"},{"name":"f","type":"float"},{"name":"o","type":["null","double"]}]}"#;
        let record = |d: f64, f: f32, o: f64| {
            Avro::Record(vec![
                ("d".into(), Avro::Double(d)),
                ("f".into(), Avro::Float(f)),
                ("o".into(), Avro::Union(1, Box::new(Avro::Double(o)))),
            ])
        };
        let bytes = written_by_apache_avro(
            schema,
            vec![
                record(f64::NAN, f32::INFINITY, f64::NEG_INFINITY),
                record(f64::INFINITY, f32::NAN, 1.5),
            ],
        );
        let text = Decoder::new().decode_request(&bytes).records.unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                r#"{"d":"NaN","f":"Infinity","o":"-Infinity"}"#,
                r#"{"d":"Infinity","f":"NaN","o":1.5}"#
            ]
        );

        // zavro's own JSON schema, written by another implementation with non-finite doubles in it.
        let json_record = |value: Avro| Avro::Record(vec![("value".into(), value)]);
        let double = |f: f64| json_record(Avro::Union(3, Box::new(Avro::Double(f))));
        let array = json_record(Avro::Union(
            5,
            Box::new(Avro::Array(vec![double(f64::NEG_INFINITY), double(0.25)])),
        ));
        let bytes = written_by_apache_avro(
            JSON_SCHEMA,
            vec![double(f64::NAN), double(f64::INFINITY), array],
        );
        let text = Decoder::new().decode_request(&bytes).records.unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [r#""NaN""#, r#""Infinity""#, r#"["-Infinity",0.25]"#]
        );
    }

    #[test]
    fn floats_from_other_writers_are_logged_as_their_shortest_decimal() {
        use apache_avro::types::Value as Avro;
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"f","type":"float"},
            {"name":"a","type":{"type":"array","items":"float"}}]}"#;
        let bytes = written_by_apache_avro(
            schema,
            vec![Avro::Record(vec![
                ("f".into(), Avro::Float(0.1)),
                (
                    "a".into(),
                    Avro::Array(vec![
                        Avro::Float(1.0 / 3.0),
                        Avro::Float(3.0e38),
                        Avro::Float(-2.0),
                    ]),
                ),
            ])],
        );
        let text = Decoder::new().decode_request(&bytes).records.unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [r#"{"f":0.1,"a":[0.33333334,3e+38,-2.0]}"#]
        );
    }

    #[test]
    fn each_refusal_names_its_real_cause() {
        // Framing: not a container file.
        let err = Decoder::new()
            .decode_request(b"Obj\x02")
            .records
            .unwrap_err();
        assert!(matches!(err, AvroError::Invalid(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("not a valid Avro container file"),
            "{err}"
        );

        // A well-framed file whose second record is cut short.
        let err = Decoder::new()
            .decode_request(&one_block_of(r#""long""#, 2, vec![2]))
            .records
            .unwrap_err();
        assert!(
            matches!(err, AvroError::BadRecord { record: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("record 2 does not decode with the writer schema"),
            "{err}"
        );

        // zavro's JSON schema with a union branch that does not exist (16 → branch 8).
        let err = Decoder::new()
            .decode_request(&one_block(JSON_SCHEMA, vec![0x10]))
            .records
            .unwrap_err();
        assert!(
            matches!(err, AvroError::BadRecord { record: 1, .. }),
            "{err}"
        );

        // A valid timestamp the server cannot write as RFC 3339.
        let mut far = Vec::new();
        crate::avro::container::write_long(&mut far, i64::MAX);
        let err = Decoder::new()
            .decode_request(&one_block(
                r#"{"type":"long","logicalType":"timestamp-millis"}"#,
                far,
            ))
            .records
            .unwrap_err();
        assert!(
            matches!(err, AvroError::NoJsonForm { record: 1, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("outside the years 0 to 9999"),
            "{err}"
        );

        for err in [
            AvroError::BadRecord {
                record: 1,
                reason: String::new(),
            },
            AvroError::NoJsonForm {
                record: 1,
                reason: String::new(),
            },
            AvroError::OverLimit(String::new()),
        ] {
            assert!(!err.to_string().contains("container"), "{err}");
        }
    }

    #[test]
    fn the_json_schema_is_recognised_by_full_name_fields_and_types_not_by_text_or_fingerprint() {
        // One record, the JSON value 1: branch 2 (long), then 1 (zig-zag 2).
        let decodes_as_json = |schema: &str| match Decoder::new()
            .decode_request(&one_block(schema, vec![4, 2]))
            .records
        {
            Ok(text) => {
                assert_eq!(text.lines().collect::<Vec<_>>(), ["1"], "{schema}");
                true
            }
            Err(AvroError::UnsupportedSchema(_)) => false,
            Err(other) => panic!("{schema}: {other}"),
        };
        let branches = r#"["null","boolean","long","double","string",{"type":"array","items":"zavro.Json"},{"type":"map","values":"zavro.Json"}]"#;
        let with = |record: &str, branches: &str| record.replace("BRANCHES", branches);
        for recognised in [
            JSON_SCHEMA.to_owned(),
            // The full name in "name" instead of a "namespace"; key order, white space.
            with(
                r#"{"fields":[{"type":BRANCHES,"name":"value"}],"name":"zavro.Json","type":"record"}"#,
                branches,
            ),
            // Attributes the comparison leaves out: doc, aliases, a field default, unknown attributes, an
            // unknown logical type.
            with(
                r#"{"type":"record","name":"Json","namespace":"zavro","doc":"d","aliases":["J"],"x-owner":"me",
                    "fields":[{"name":"value","doc":"v","default":null,"type":BRANCHES}]}"#,
                &branches.replace(r#""long""#, r#"{"type":"long","logicalType":"made-up"}"#),
            ),
        ] {
            assert!(decodes_as_json(&recognised), "{recognised}");
        }
        for (what, refused) in [
            (
                "no namespace: the name is Json, not zavro.Json",
                with(
                    r#"{"type":"record","name":"Json","fields":[{"name":"value","type":BRANCHES}]}"#,
                    &branches.replace("zavro.Json", "Json"),
                ),
            ),
            (
                "another namespace",
                JSON_SCHEMA.replace(r#""namespace":"zavro""#, r#""namespace":"other""#),
            ),
            (
                "branches in another order",
                JSON_SCHEMA.replace(r#""boolean","long""#, r#""long","boolean""#),
            ),
            (
                "a known logical type on a branch (same fingerprint, different schema)",
                JSON_SCHEMA.replace(
                    r#""long""#,
                    r#"{"type":"long","logicalType":"timestamp-millis"}"#,
                ),
            ),
            (
                "another field name",
                JSON_SCHEMA.replace(r#""value""#, r#""v""#),
            ),
        ] {
            assert!(!decodes_as_json(&refused), "{what}: {refused}");
        }
        let logical = JSON_SCHEMA.replace(
            r#""long""#,
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
        );
        assert_eq!(
            canonical_form(&Schema::parse_str(&logical).unwrap()),
            canonical_form(&JSON_SCHEMA_PARSED),
            "the fingerprint alone would not tell them apart"
        );
    }

    /// A container file of `schema` whose one block declares `count` objects in `data`.
    fn one_block_of(schema: &str, count: u64, data: Vec<u8>) -> Vec<u8> {
        let mut file = ContainerWriter::new(schema, Codec::Null, [6; 16]);
        file.write_block(count, data).unwrap();
        file.finish()
    }
}

#[cfg(test)]
mod evolution {
    //! Reader schemas on the server: Avro's resolution rules, both ways, and refusals that name the field.

    use apache_avro::{Writer, types::Value as Avro};

    use super::*;
    use crate::avro::{JSON_SCHEMA, encode};

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
        let text = reader(V2).decode_request(&old).records.unwrap();
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
        let err = reader(V1).decode_request(&new).records.unwrap_err();
        assert!(matches!(err, AvroError::SchemaMismatch(_)), "{err}");
        assert!(
            err.to_string().contains("id") || err.to_string().contains("note"),
            "{err}"
        );

        let lenient = r#"{"type":"record","name":"Reading","fields":[
            {"name":"id","type":"long"},{"name":"note","type":"string","default":""}]}"#;
        let text = reader(lenient).decode_request(&new).records.unwrap();
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
        let err = reader(changed)
            .decode_request(&data)
            .records
            .unwrap_err()
            .to_string();
        assert!(err.contains("value"), "{err}");
    }

    /// The value reader the decoder keeps for the writer schema `schema`.
    fn cached_reader(decoder: &Decoder, schema: &str) -> Arc<ValueReader> {
        let schema = Schema::parse_str(schema).unwrap();
        decoder
            .schemas
            .values()
            .find_map(|(checked, _)| match checked {
                WriterSchema::Resolved(values) | WriterSchema::Other { values, .. }
                    if *values.writer() == schema =>
                {
                    Some(Arc::clone(values))
                }
                _ => None,
            })
            .expect("the schema is cached")
    }

    #[test]
    fn each_writer_schema_gets_its_own_reader_once_and_requests_reuse_it() {
        // V1's records, and those of a writer schema without `note`, both read as V2 by one decoder.
        const V1_NO_NOTE: &str = r#"{"type":"record","name":"Reading","fields":[
            {"name":"id","type":"int"},{"name":"value","type":"double"}]}"#;
        let v1 = file(
            V1,
            vec![Avro::Record(vec![
                ("id".into(), Avro::Int(7)),
                ("value".into(), Avro::Double(5.3)),
                ("note".into(), Avro::String("dropped".into())),
            ])],
        );
        let no_note = file(
            V1_NO_NOTE,
            vec![Avro::Record(vec![
                ("id".into(), Avro::Int(8)),
                ("value".into(), Avro::Double(0.5)),
            ])],
        );
        let mut decoder = reader(V2);
        let first = decoder.decode_request(&v1).records.unwrap();
        let v1_reader = cached_reader(&decoder, V1);
        let other = decoder.decode_request(&no_note).records.unwrap();
        let second = decoder.decode_request(&v1).records.unwrap();
        assert_eq!(
            first.lines().collect::<Vec<_>>(),
            [r#"{"id":7,"value":5.3,"unit":"kW"}"#]
        );
        assert_eq!(second, first);
        assert_eq!(
            other.lines().collect::<Vec<_>>(),
            [r#"{"id":8,"value":0.5,"unit":"kW"}"#]
        );
        // The second request of V1 used the reader built for the first; the other schema has its own.
        assert!(Arc::ptr_eq(&cached_reader(&decoder, V1), &v1_reader));
        let no_note_reader = cached_reader(&decoder, V1_NO_NOTE);
        assert!(!Arc::ptr_eq(&no_note_reader, &v1_reader));
        assert_eq!(decoder.schemas.len(), 2);
        // Both read as V2.
        for values in [&v1_reader, &no_note_reader] {
            assert_eq!(*values.shape(), Schema::parse_str(V2).unwrap());
        }
        // A fresh decoder writes the same text.
        assert_eq!(reader(V2).decode_request(&v1).records.unwrap(), first);
    }

    #[test]
    fn the_value_route_without_a_reader_schema_reuses_its_reader_too() {
        // The oracle's route reads records of a schema with a plan as values, through the cached reader.
        let mut decoder = Decoder::new();
        let data = file(
            V1,
            vec![Avro::Record(vec![
                ("id".into(), Avro::Int(1)),
                ("value".into(), Avro::Double(2.5)),
                ("note".into(), Avro::String("n".into())),
            ])],
        );
        let direct = decoder.decode_request(&data).records.unwrap();
        let values = cached_reader(&decoder, V1);
        for _ in 0..2 {
            let by_values = decoder.decode_request_by_serde(&data).records.unwrap();
            assert_eq!(by_values, direct);
            assert!(Arc::ptr_eq(&cached_reader(&decoder, V1), &values));
        }
        assert_eq!(*values.shape(), Schema::parse_str(V1).unwrap());
    }

    #[test]
    fn with_reader_schemas_the_json_schema_is_accepted_only_when_listed() {
        let json = encode(&[serde_json::json!({"a": 1})]).unwrap();
        assert!(matches!(
            reader(V2).decode_request(&json).records,
            Err(AvroError::SchemaMismatch(_))
        ));
        let text = reader(JSON_SCHEMA).decode_request(&json).records.unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), [r#"{"a":1}"#]);
    }
}
