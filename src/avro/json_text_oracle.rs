//! The server's hand-written decoder of zavro's JSON schema ([`super::json_text`]) against the decoder it
//! replaced (apache-avro's schema-aware deserializer with a serde visitor): on arbitrary records, well formed or
//! not, both write the same text or reach the same refusal.

use apache_avro::Codec;
use proptest::prelude::*;

use super::{
    AvroError, Decoder, JSON_SCHEMA, MAX_DECODE_ALLOCATION, MAX_DEPTH, Ndjson,
    container::{ContainerWriter, write_long},
    decode::MAX_REQUEST_DECODED_BYTES,
    json_text::{Budget, Fault, TEXT_PER_BYTE, escape_into, escaped_len, record},
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
    fn a_record_and_its_newline_take_at_most_text_per_byte_bytes_of_text_per_byte_of_data(
        records in prop::collection::vec(raw(), 1..6),
    ) {
        for raw in records {
            within_text_per_byte(&raw)?;
        }
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
            escape_into(&mut ours, text.as_bytes());
            assert_eq!(escaped_len(text.as_bytes()), ours.len(), "byte {byte:#04x}");
            assert_eq!(
                String::from_utf8(ours).expect("UTF-8"),
                serde_json::to_string(&text).expect("a string serializes"),
                "byte {byte:#04x} at {at}"
            );
        }
    }
    let wide = "☃😀\u{7f}\u{2028}é\"\\\n";
    assert_eq!(
        escaped_len(wide.as_bytes()),
        serde_json::to_string(wide)
            .expect("a string serializes")
            .len()
    );
}

/// Checks that `raw`, if it transcodes, writes at most [`TEXT_PER_BYTE`] bytes of text per byte of its data,
/// counting the newline after it: the bound by which a record far from the budget is read unchecked.
fn within_text_per_byte(raw: &Raw) -> Result<(), TestCaseError> {
    let data = data_of(raw);
    let mut out = Vec::new();
    if record(&mut &data[..], &mut out, &mut Budget::new()).is_ok() {
        let with_newline = out.len() + 1;
        prop_assert!(
            with_newline <= TEXT_PER_BYTE * data.len(),
            "{} bytes of text for {} of data: {}",
            out.len(),
            data.len(),
            String::from_utf8_lossy(&out)
        );
    }
    Ok(())
}

#[test]
fn the_densest_records_stay_within_text_per_byte() {
    let many = |raw: Raw| vec![raw; 1000];
    let mut nested = Raw::Array(Vec::new(), false);
    for _ in 0..100 {
        nested = Raw::Array(vec![nested, Raw::Null], false);
    }
    for raw in [
        Raw::Null,
        Raw::Str(Vec::new()),
        Raw::Str(vec![1]),
        Raw::Double(f64::NAN.to_bits()),
        Raw::Double((-2.225_073_858_507_201_4e-308f64).to_bits()),
        Raw::Long(i64::MIN),
        Raw::Array(many(Raw::Null), false),
        Raw::Array(many(Raw::Bool(0)), false),
        Raw::Array(many(Raw::Long(-64)), false),
        Raw::Array(many(Raw::Str(vec![1])), false),
        Raw::Array(many(Raw::Array(Vec::new(), false)), false),
        Raw::Array(many(Raw::Double(f64::MIN_POSITIVE.to_bits())), false),
        Raw::Map(vec![(Vec::new(), Raw::Null); 1000], false),
        Raw::Map(vec![(vec![1], Raw::Str(vec![0])); 1000], true),
        nested,
    ] {
        within_text_per_byte(&raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    }
}

/// The refusal of a request whose records' text passes the budget, as it has always been worded.
const OVER_THE_TEXT_BUDGET: &str = "over a decoding limit: the records' JSON text passes 32 MiB in one \
                                    request (the server's limit per request)";

/// The Avro bytes of one record.
fn data_of(record: &Raw) -> Vec<u8> {
    let mut data = Vec::new();
    record.write(&mut data);
    data
}

/// One record: an array of 100 strings of 64 KiB of U+0001, each 384 KiB of text (`\u0001` per byte): 6.4 MiB
/// of data for 37.5 MiB of text, then `after` as its last item.
fn control_strings(after: Option<Raw>) -> Raw {
    let string = vec![1u8; 64 << 10];
    assert_eq!(escaped_len(&string), 6 * string.len() + 2);
    assert!(100 * escaped_len(&string) > MAX_REQUEST_DECODED_BYTES + (4 << 20));
    let mut items = vec![Raw::Str(string); 100];
    items.extend(after);
    Raw::Array(items, false)
}

#[test]
fn a_record_whose_text_passes_the_budget_is_refused_as_before_without_its_text_growing_past_it() {
    let record_over = control_strings(None);
    // The transcoder's own text: refused, and its buffer, room for the budget and 1 KiB, never grew.
    let mut out = Vec::with_capacity(MAX_REQUEST_DECODED_BYTES + 1024);
    let capacity = out.capacity();
    let result = record(
        &mut &data_of(&record_over)[..],
        &mut out,
        &mut Budget::new(),
    );
    assert_eq!(result, Err(Fault::TooMuchText));
    assert_eq!(out.capacity(), capacity, "the text passed {capacity} bytes");
    assert!(
        out.len() <= MAX_REQUEST_DECODED_BYTES,
        "{} bytes",
        out.len()
    );

    // The request: refused with the same words as by the old route, which checked the text after the record.
    let bytes = file(&[record_over], &Damage::None);
    let refused = Decoder::new().decode_request(&bytes).records.unwrap_err();
    assert!(matches!(refused, AvroError::OverLimit(_)), "{refused:?}");
    assert_eq!(refused.to_string(), OVER_THE_TEXT_BUDGET);
    agree(&bytes).expect("both decoders refuse it the same way");
}

#[test]
fn a_fault_further_on_in_a_record_over_the_text_budget_is_still_the_one_named() {
    for after in [Raw::Branch(7), Raw::Bool(2)] {
        let bytes = file(&[control_strings(Some(after))], &Damage::None);
        let refused = Decoder::new().decode_request(&bytes).records.unwrap_err();
        assert!(
            matches!(refused, AvroError::BadRecord { record: 1, .. }),
            "{refused}"
        );
        agree(&bytes).expect("both decoders refuse it the same way");
    }
    // Cut short inside the last string.
    let bytes = file(&[control_strings(None)], &Damage::Truncate(999));
    let refused = Decoder::new().decode_request(&bytes).records.unwrap_err();
    assert!(
        matches!(refused, AvroError::BadRecord { record: 1, .. }),
        "{refused}"
    );
    agree(&bytes).expect("both decoders refuse it the same way");
}

#[test]
fn the_text_budget_is_decided_by_the_escaped_text_to_the_byte() {
    // The request's text so far ends ten bytes short of the budget.
    let before = vec![b'a'; MAX_REQUEST_DECODED_BYTES - 10];
    let transcode = |record_raw: Raw| {
        let mut out = before.clone();
        let result = record(&mut &data_of(&record_raw)[..], &mut out, &mut Budget::new());
        (result, out)
    };
    // `"\u0001ab"` is ten bytes: written, to the budget exactly.
    let (result, out) = transcode(Raw::Str(b"\x01ab".to_vec()));
    assert_eq!(result, Ok(()));
    assert_eq!(out.len(), MAX_REQUEST_DECODED_BYTES);
    assert!(out.ends_with(br#""\u0001ab""#));
    // One byte more: left out, and the record refused.
    let (result, out) = transcode(Raw::Str(b"\x01abc".to_vec()));
    assert_eq!(result, Err(Fault::TooMuchText));
    assert_eq!(out.len(), before.len());
    // Numbers pass it by their own text, which is cut at the next value.
    let numbers = Raw::Array(vec![Raw::Long(123_456_789_012); 1000], false);
    let (result, out) = transcode(numbers);
    assert_eq!(result, Err(Fault::TooMuchText));
    assert!(
        out.len() <= MAX_REQUEST_DECODED_BYTES + 16,
        "{} bytes",
        out.len() - MAX_REQUEST_DECODED_BYTES
    );
    // A record that ends past the budget after its last value is left to the check after each record.
    let (result, out) = transcode(Raw::Array(vec![Raw::Long(123_456_789)], false));
    assert_eq!(result, Ok(()));
    assert_eq!(out.len(), MAX_REQUEST_DECODED_BYTES + 1);
}
