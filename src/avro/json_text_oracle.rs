//! The server's hand-written decoder of zavro's JSON schema ([`super::json_text`]) against the decoder it
//! replaced (apache-avro's schema-aware deserializer with a serde visitor): on arbitrary records, well formed or
//! not, both write the same text or reach the same refusal.

use apache_avro::Codec;
use proptest::prelude::*;

use super::{
    AvroError, Decoder, JSON_SCHEMA, MAX_DECODE_ALLOCATION, MAX_DEPTH, Ndjson,
    container::{ContainerWriter, write_long},
    oracle::{self, Damage, damage, damaged_file},
};

/// A `zavro.Json` value as raw Avro parts, so that the tests can write what zavro never writes: any double's
/// bits (NaN, the infinities, subnormals), strings that are not UTF-8, blocks with negative counts, bad union
/// indexes and booleans.
#[derive(Debug, Clone)]
enum Raw {
    Null,
    Bool(u8),
    Long(i64),
    Double(u64),
    Str(Vec<u8>),
    /// Items, and whether they go in one block with a negative count (and byte size) or two blocks.
    Array(Vec<Raw>, bool),
    Map(Vec<(Vec<u8>, Raw)>, bool),
    /// A union index that is not one of the seven branches.
    Branch(i64),
}

impl Raw {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Raw::Null => write_long(out, 0),
            Raw::Bool(b) => {
                write_long(out, 1);
                out.push(*b);
            }
            Raw::Long(n) => {
                write_long(out, 2);
                write_long(out, *n);
            }
            Raw::Double(bits) => {
                write_long(out, 3);
                out.extend_from_slice(&bits.to_le_bytes());
            }
            Raw::Str(bytes) => {
                write_long(out, 4);
                write_bytes(out, bytes);
            }
            Raw::Array(items, negative) => {
                write_long(out, 5);
                write_blocks(out, items, *negative, |out, item| item.write(out));
            }
            Raw::Map(entries, negative) => {
                write_long(out, 6);
                write_blocks(out, entries, *negative, |out, (key, value)| {
                    write_bytes(out, key);
                    value.write(out);
                });
            }
            Raw::Branch(index) => write_long(out, *index),
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// Writes `items` as an array or map's blocks: one negative-count block with its byte size, or up to two plain
/// blocks; then the end marker.
fn write_blocks<T>(
    out: &mut Vec<u8>,
    items: &[T],
    negative: bool,
    each: impl Fn(&mut Vec<u8>, &T),
) {
    if negative && !items.is_empty() {
        let mut block = Vec::new();
        for item in items {
            each(&mut block, item);
        }
        write_long(out, -(items.len() as i64));
        write_long(out, block.len() as i64);
        out.extend_from_slice(&block);
    } else {
        for chunk in items.chunks(items.len().div_ceil(2).max(1)) {
            write_long(out, chunk.len() as i64);
            for item in chunk {
                each(out, item);
            }
        }
    }
    write_long(out, 0);
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "(|.{0,6}|[\"\\\\\\u{0}-\\u{1f}\\u{7f}\\u{2028}☃😀]{0,4})".prop_map(String::into_bytes),
        // Long enough for the escaper's eight-byte runs, with what needs escaping anywhere in them.
        2 => "[a-z\"\\\\\\u{0}-\\u{1f}\\u{7f}☃]{8,40}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

fn leaf() -> impl Strategy<Value = Raw> {
    prop_oneof![
        Just(Raw::Null),
        prop_oneof![8 => 0u8..2, 1 => any::<u8>()].prop_map(Raw::Bool),
        any::<i64>().prop_map(Raw::Long),
        any::<u64>().prop_map(Raw::Double),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(5.3),
            Just(1e300),
            Just(5e-324),
            any::<f32>().prop_map(f64::from),
        ]
        .prop_map(|f| Raw::Double(f.to_bits())),
        bytes().prop_map(Raw::Str),
        prop_oneof![
            Just(-1i64),
            Just(7),
            Just(i64::from(i32::MAX) + 1),
            any::<i64>()
        ]
        .prop_map(Raw::Branch),
    ]
}

fn raw() -> impl Strategy<Value = Raw> {
    leaf().prop_recursive(6, 48, 5, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..5), any::<bool>())
                .prop_map(|(items, negative)| Raw::Array(items, negative)),
            (prop::collection::vec((bytes(), inner), 0..5), any::<bool>())
                .prop_map(|(entries, negative)| Raw::Map(entries, negative)),
        ]
    })
}

/// A container file of zavro's JSON schema with `records` in one block, spoiled by `damage`.
fn file(records: &[Raw], damage: &Damage) -> Vec<u8> {
    let mut data = Vec::new();
    for record in records {
        record.write(&mut data);
    }
    damaged_file(JSON_SCHEMA, data, records.len(), damage)
}

/// [`oracle::agree`], with this route's excuse for a different allocation limit.
fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    oracle::agree(bytes, over_a_different_allocation_limit)
}

/// True when the oracle decided differently only because apache-avro's process-wide allocation limit is not
/// zavro's: the first decode in a process fixes it, so when another test decoded before
/// [`limit_decode_allocations`] ran, it stays at apache-avro's default (512 MiB), while the new decoder always
/// applies [`MAX_DECODE_ALLOCATION`] (as `serve`, which sets the limit before any decoding, always did). A length
/// between the two is then refused by the new decoder and read (and found missing) by the oracle.
fn over_a_different_allocation_limit(new: &str, old: &Result<Ndjson, AvroError>) -> bool {
    let theirs = apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
    if theirs == MAX_DECODE_ALLOCATION {
        return false;
    }
    let ours = format!("over the decoding limit of {MAX_DECODE_ALLOCATION} bytes");
    match old {
        Err(AvroError::BadRecord { .. }) => new.contains(&ours),
        Err(AvroError::OverLimit(old)) => {
            *old == new.replace(&ours, &format!("over the decoding limit of {theirs} bytes"))
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_new_decoder_writes_what_the_old_one_wrote_and_refuses_what_it_refused(
        records in prop::collection::vec(raw(), 1..6),
        damage in damage(),
    ) {
        agree(&file(&records, &damage))?;
    }

    #[test]
    fn nesting_around_the_depth_limit_is_decided_alike(
        depth in (MAX_DEPTH - 2)..(MAX_DEPTH + 3),
        maps in any::<bool>(),
        damage in damage(),
    ) {
        let mut value = Raw::Long(1);
        for _ in 0..depth {
            value = if maps {
                Raw::Map(vec![(b"k".to_vec(), value)], false)
            } else {
                Raw::Array(vec![value], false)
            };
        }
        agree(&file(&[value], &damage))?;
    }
}

#[test]
fn a_string_over_the_allocation_limit_is_refused_alike() {
    let mut data = Vec::new();
    write_long(&mut data, 4);
    write_long(&mut data, 1 << 30);
    let mut file = ContainerWriter::new(JSON_SCHEMA, Codec::Null, [7; 16]);
    file.write_block(1, data).expect("an uncompressed block");
    let bytes = file.finish();
    agree(&bytes).expect("both decoders refuse it the same way");
    let refused = Decoder::new().decode_request(&bytes).records.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "over a decoding limit: a value declares 1073741824 bytes, over the decoding limit of \
             {MAX_DECODE_ALLOCATION} bytes"
        )
    );
}

#[test]
fn too_many_values_are_refused_alike() {
    let records = vec![Raw::Null; super::MAX_VALUES + 1];
    let bytes = file(&records, &Damage::None);
    agree(&bytes).expect("both decoders refuse it the same way");
    agree(&file(&records[1..], &Damage::None)).expect("both decoders accept it alike");
}

#[test]
fn every_byte_at_every_place_of_a_string_is_escaped_as_serde_json_escapes_it() {
    for byte in 0u8..0x80 {
        for at in 0..20 {
            let mut text = vec![b'a'; 20];
            text[at] = byte;
            let text = String::from_utf8(text).expect("ASCII");
            let mut ours = Vec::new();
            super::json_text::escape_into(&mut ours, text.as_bytes());
            assert_eq!(
                String::from_utf8(ours).expect("UTF-8"),
                serde_json::to_string(&text).expect("a string serializes"),
                "byte {byte:#04x} at {at}"
            );
        }
    }
}
