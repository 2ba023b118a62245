//! JSON to Avro: records into the container files `zavro send` puts in requests.

use std::sync::Arc;

use apache_avro::{Codec, Schema, schema::ResolvedSchema, writer::datum::GenericDatumWriter};
use serde_json::Value;

use super::{
    AvroError, JSON_SCHEMA, container::ContainerWriter, transcode, typed, typed_transcode::Plan,
};

/// Largest payload `zavro send` puts in one request; bigger batches are split.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// apache-avro's writer of the JSON schema, which encoded records before they were transcoded: the tests'
/// oracle.
#[cfg(test)]
pub(super) static DATUM_WRITER: std::sync::LazyLock<GenericDatumWriter<'static>> =
    std::sync::LazyLock::new(|| {
        GenericDatumWriter::builder(&super::JSON_SCHEMA_PARSED)
            .validate(false)
            .build()
            .expect("the built-in schema resolves")
    });

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
    records: RecordEncoder,
    /// The sync marker of every file this encoder writes, drawn once: Avro asks that it be unlikely to occur in
    /// the data, not that each file have its own, and drawing it per request cost a system call each.
    sync: Option<[u8; 16]>,
}

/// Encodes single records in a batch's schema, on whichever thread reads them; cheap to clone.
#[derive(Clone, Default)]
pub struct RecordEncoder {
    /// The user's schema (`send --schema`), or `None` for zavro's JSON schema.
    typed: Option<Arc<UserSchema>>,
}

impl std::fmt::Debug for RecordEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordEncoder")
            .field("typed", &self.typed.is_some())
            .finish()
    }
}

impl RecordEncoder {
    /// True for zavro's JSON schema, whose records can be transcoded from JSON text ([`transcode`]).
    pub fn is_json(&self) -> bool {
        self.typed.is_none()
    }

    /// The compiled user schema that [`super::typed_transcode`] writes records of straight from JSON text, or
    /// `None` for zavro's JSON schema.
    pub fn plan(&self) -> Option<Arc<Plan>> {
        self.typed.as_ref().map(|user| Arc::clone(&user.plan))
    }

    /// Appends one record, given as a tree, to `out`; `number` (1-based, in the whole input) names it in
    /// errors. A record that does not encode leaves `out` as it was.
    pub fn write_value(
        &self,
        out: &mut Vec<u8>,
        record: &Value,
        number: usize,
    ) -> Result<(), AvroError> {
        let Some(user) = &self.typed else {
            return transcode::write_value(out, record).map_err(|number_text| {
                AvroError::UnrepresentableNumber {
                    record: number,
                    number: number_text,
                }
            });
        };
        let value = typed::to_avro(record, user.schema, user.resolved.get_names(), "$").map_err(
            |reason| AvroError::DoesNotFit {
                record: number,
                reason,
            },
        )?;
        let start = out.len();
        user.writer.write_value_ref(out, &value).map_err(|e| {
            out.truncate(start);
            AvroError::DoesNotFit {
                record: number,
                reason: e.to_string(),
            }
        })?;
        Ok(())
    }
}

/// A user's schema for `send --schema`: records are natural JSON converted to it ([`typed`]).
pub struct UserSchema {
    /// The schema's text, as it goes into each container header.
    text: String,
    schema: &'static Schema,
    resolved: ResolvedSchema<'static>,
    writer: GenericDatumWriter<'static>,
    /// The schema compiled for writing records straight from JSON text.
    plan: Arc<Plan>,
}

impl UserSchema {
    /// Parses a schema given by the user. It lives for the rest of the process (a sender has one).
    pub fn parse(text: &str) -> Result<UserSchema, AvroError> {
        let schema: &'static Schema = Box::leak(Box::new(
            Schema::parse_str(text).map_err(|e| AvroError::BadSchema(e.to_string()))?,
        ));
        let resolved =
            ResolvedSchema::try_from(schema).map_err(|e| AvroError::BadSchema(e.to_string()))?;
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| AvroError::BadSchema(e.to_string()))?;
        let plan = Arc::new(Plan::compile(schema, resolved.get_names()));
        Ok(UserSchema {
            text: text.trim().to_owned(),
            schema,
            resolved,
            writer,
            plan,
        })
    }
}

impl std::fmt::Debug for BatchEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchEncoder")
            .field("codec", &self.codec)
            .field("count", &self.count)
            .field("records", &self.records)
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
            records: RecordEncoder::default(),
            sync: None,
        }
    }

    /// An empty batch of the user's schema: each record must fit it (see [`typed`]).
    pub fn with_schema(codec: Codec, schema: UserSchema) -> Self {
        BatchEncoder {
            records: RecordEncoder {
                typed: Some(Arc::new(schema)),
            },
            ..BatchEncoder::new(codec)
        }
    }

    /// The encoder of single records of this batch's schema, for a thread that reads and encodes them ahead.
    pub fn record_encoder(&self) -> RecordEncoder {
        self.records.clone()
    }

    /// Appends one record; `number` (1-based, in the whole input) names it in errors.
    pub fn push(&mut self, record: &Value, number: usize) -> Result<(), AvroError> {
        self.records.write_value(&mut self.data, record, number)?;
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

    /// Appends a record already encoded in this batch's schema (by [`RecordEncoder`], or
    /// [`BatchEncoder::pop_last`]).
    pub fn push_encoded(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.count += 1;
    }

    /// The container file of the records so far; the batch is empty afterwards.
    pub fn finish(&mut self) -> Result<Vec<u8>, AvroError> {
        let sync = match self.sync {
            Some(sync) => sync,
            None => {
                let mut sync = [0u8; 16];
                getrandom::fill(&mut sync).map_err(|e| {
                    AvroError::Write(format!("no randomness for the sync marker: {e}"))
                })?;
                *self.sync.insert(sync)
            }
        };
        let schema = self
            .records
            .typed
            .as_ref()
            .map_or(JSON_SCHEMA, |user| user.text.as_str());
        let mut file = ContainerWriter::new(schema, self.codec, sync);
        // The next batch is about as large as this one: its buffer starts at this one's size.
        let capacity = self.data.capacity();
        let data = std::mem::replace(&mut self.data, Vec::with_capacity(capacity));
        file.reserve(data.len() + 2 * 10 + 16);
        file.write_block(self.count, data)
            .map_err(|e| AvroError::Write(format!("compressing the block: {e}")))?;
        self.count = 0;
        Ok(file.finish())
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::Reader;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_encoder_draws_its_sync_marker_once_for_all_its_files() {
        let mut encoder = BatchEncoder::new(Codec::Null);
        encoder.push(&serde_json::json!(1), 1).unwrap();
        let first = encoder.finish().unwrap();
        encoder.push(&serde_json::json!(2), 2).unwrap();
        let second = encoder.finish().unwrap();
        // A file ends with its sync marker.
        assert_eq!(first[first.len() - 16..], second[second.len() - 16..]);
        assert_ne!(first[first.len() - 16..], [0; 16]);
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

    proptest! {
        #[test]
        fn integers_beyond_the_long_range_are_refused(n in (i64::MAX as u64 + 1)..=u64::MAX) {
            let err = encode(&[serde_json::json!({"n": n})]).unwrap_err();
            let refused = matches!(err, AvroError::UnrepresentableNumber { .. });
            prop_assert!(refused, "{}", err);
        }
    }
}
