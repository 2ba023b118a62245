//! The JSON ↔ Avro mapping: the default schema that carries any JSON value, and encoding and decoding of the
//! object container files that travel as payloads.
//!
//! Both directions go straight between text and bytes, with no value tree on the way: `zavro send` writes records
//! of zavro's JSON schema from JSON text with [`transcode`] and of a user's schema with [`typed_transcode`] (a plan
//! compiled once per schema); the server reads the JSON schema's records with `json_text.rs` and any other writer
//! schema's with `natural_text.rs` (likewise a plan per schema), inside containers framed by [`container`]. The
//! older value routes stay where the direct ones leave a record (a refusal worded as before, a repeated key,
//! reader-schema resolution): `typed.rs` and `generic.rs`. The [`Decoder`] remembers which container headers it
//! has already checked, so a request costs no schema parsing.
//!
//! Layout: `encode.rs` turns JSON into payloads, `decode.rs` turns payloads into JSON lines, `numbers.rs` holds
//! the rule for which JSON numbers Avro carries exactly; the `*_oracle.rs` test modules hold each direct route
//! against the route it replaced.

pub mod container;
mod decode;
mod encode;
mod fingerprint;

pub mod generic;
#[cfg(test)]
mod json;
mod json_text;
#[cfg(test)]
mod json_text_oracle;
mod natural_text;
#[cfg(test)]
mod natural_text_oracle;
mod numbers;
#[cfg(test)]
mod oracle;

#[cfg(test)]
mod round_trip;

pub mod transcode;
pub mod typed;
pub mod typed_transcode;
mod value_reader;

use std::sync::LazyLock;

use apache_avro::{Schema, error::Details};

pub use decode::{
    Decoded, Decoder, MAX_DECODE_ALLOCATION, MAX_DEPTH, MAX_VALUES, Ndjson,
    limit_decode_allocations,
};
pub use encode::{
    BatchEncoder, MAX_PAYLOAD_BYTES, RecordEncoder, UserSchema, encode, encode_with_codec,
};
pub use fingerprint::{SchemaFingerprint, canonical_form, fingerprint_of_canonical};
pub use numbers::representable;

use container::ContainerError;

/// The default schema: a record whose one field is a union of every JSON shape, recursive through arrays and maps.
pub const JSON_SCHEMA: &str = r#"{"type":"record","name":"Json","namespace":"zavro","fields":[{"name":"value","type":["null","boolean","long","double","string",{"type":"array","items":"Json"},{"type":"map","values":"Json"}]}]}"#;

static JSON_SCHEMA_PARSED: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(JSON_SCHEMA).expect("the built-in schema is valid"));

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
    /// The bytes are not a readable container file: its framing, header or compression is broken.
    #[error("not a valid Avro container file: {0}")]
    Invalid(String),
    /// The container file is readable, but a record's bytes do not decode with the writer schema (they end
    /// early, name a union branch that does not exist, hold a string that is not UTF-8, …).
    #[error("record {record} does not decode with the writer schema: {reason}")]
    BadRecord {
        /// 1-based index of the record in the container file.
        record: u64,
        /// What the decoder found.
        reason: String,
    },
    /// A record decodes, but holds a value that has no JSON form the server writes (a date or timestamp
    /// outside the years -9999 to 9999).
    #[error("record {record} has no JSON form: {reason}")]
    NoJsonForm {
        /// 1-based index of the record in the container file.
        record: u64,
        /// Which value and why.
        reason: String,
    },
    /// Decoding would pass one of the limits that keep an untrusted payload bounded; the message names it.
    #[error("over a decoding limit: {0}")]
    OverLimit(String),
    /// A schema given to `send --schema` is not a valid Avro schema.
    #[error("not a valid Avro schema: {0}")]
    BadSchema(String),
    /// Writing the container file failed (compression, or no randomness for its sync marker).
    #[error("cannot write the Avro container file: {0}")]
    Write(String),
}

impl From<ContainerError> for AvroError {
    fn from(e: ContainerError) -> Self {
        match e {
            ContainerError::TooLarge(limit) => AvroError::OverLimit(limit),
            other => AvroError::Invalid(other.to_string()),
        }
    }
}

/// apache-avro's allocation-limit error in plain words, or `None` for any other error. Its own message ends by
/// naming the library function that raises the limit, which means nothing to a client and is not theirs to
/// call.
fn allocation_limit_message(error: &apache_avro::Error) -> Option<String> {
    match error.details() {
        Details::MemoryAllocation {
            desired: Some(bytes),
            maximum,
        } => Some(format!(
            "a value declares {bytes} bytes, over the decoding limit of {maximum} bytes"
        )),
        Details::MemoryAllocation {
            desired: None,
            maximum,
        } => Some(format!(
            "the data expands past the decoding limit of {maximum} bytes"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_limit_errors_do_not_name_library_internals() {
        for desired in [Some(20), None] {
            let error = apache_avro::Error::from(Details::MemoryAllocation {
                desired,
                maximum: 16,
            });
            assert!(error.to_string().contains("apache_avro"), "{error}");
            let message = allocation_limit_message(&error).expect("an allocation-limit error");
            assert!(!message.contains("apache_avro"), "{message}");
            assert!(message.contains("limit of 16 bytes"), "{message}");
        }
        let other = apache_avro::Error::from(Details::BoolValue(7));
        assert_eq!(allocation_limit_message(&other), None);
    }
}
