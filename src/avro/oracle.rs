//! What the oracle property tests ([`super::json_text_oracle`], [`super::natural_text_oracle`]) share: the damage
//! they do to a block of records (nothing, a cut, an overwritten byte, or a wrong object count), and the check
//! that the direct route and the route it replaced agree on the result.

use apache_avro::Codec;
use proptest::prelude::*;

use super::{
    AvroError, Decoded, Decoder, Ndjson, container::ContainerWriter, limit_decode_allocations,
};

/// How the test spoils an encoded block, if at all.
#[derive(Debug, Clone)]
pub(super) enum Damage {
    None,
    /// Cut the block's bytes at this fraction (per mille) of their length.
    Truncate(u16),
    /// Overwrite the byte at this fraction (per mille) with this value.
    Byte(u16, u8),
    /// Declare this many more (or fewer) objects than the block holds.
    Count(i8),
}

/// Mostly no damage, else one of each kind.
pub(super) fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::None),
        1 => (0u16..1000).prop_map(Damage::Truncate),
        2 => (0u16..1000, any::<u8>()).prop_map(|(at, byte)| Damage::Byte(at, byte)),
        1 => (-2i8..3).prop_map(Damage::Count),
    ]
}

/// A container file of `schema` whose one block holds `data`, the encoding of `count` records, spoiled by
/// `damage`.
pub(super) fn damaged_file(
    schema: &str,
    mut data: Vec<u8>,
    count: usize,
    damage: &Damage,
) -> Vec<u8> {
    let mut count = count as u64;
    let at = |per_mille: u16, len: usize| len * usize::from(per_mille) / 1000;
    match *damage {
        Damage::None => {}
        Damage::Truncate(per_mille) => data.truncate(at(per_mille, data.len())),
        Damage::Byte(per_mille, byte) => {
            let i = at(per_mille, data.len());
            if let Some(b) = data.get_mut(i) {
                *b = byte;
            }
        }
        Damage::Count(delta) => count = count.saturating_add_signed(i64::from(delta)).max(1),
    }
    let mut file = ContainerWriter::new(schema, Codec::Null, [7; 16]);
    file.write_block(count, data)
        .expect("an uncompressed block");
    file.finish()
}

/// Whether a refusal of the direct route (its `OverLimit` message) and the old route's result differ only because
/// apache-avro's process-wide allocation limit is not zavro's; each oracle knows how far that goes for its route.
pub(super) type LimitExcuse = fn(&str, &Result<Ndjson, AvroError>) -> bool;

/// Both routes' verdicts on `bytes`, which must agree: the same text, or the same refusal. apache-avro words
/// a malformed record its own way, so for those only the record named must agree.
pub(super) fn agree(bytes: &[u8], excused: LimitExcuse) -> Result<(), TestCaseError> {
    limit_decode_allocations();
    let new: Decoded = Decoder::new().decode_request(bytes);
    let old: Decoded = Decoder::new().decode_request_by_serde(bytes);
    prop_assert_eq!(format!("{:?}", new.schema), format!("{:?}", old.schema));
    match (new.records, old.records) {
        (Ok(new), Ok(old)) => {
            // The texts first, as text, for a readable difference; then every byte and the record count.
            prop_assert_eq!(
                String::from_utf8_lossy(&new.text),
                String::from_utf8_lossy(&old.text)
            );
            prop_assert_eq!(new, old);
        }
        (
            Err(AvroError::BadRecord { record: new, .. }),
            Err(AvroError::BadRecord { record: old, .. }),
        ) => prop_assert_eq!(new, old),
        (Err(AvroError::OverLimit(new)), old) if excused(&new, &old) => {}
        (new, old) => prop_assert_eq!(
            new.map(|n| String::from_utf8_lossy(&n.text).into_owned())
                .map_err(|e| e.to_string()),
            old.map(|n| String::from_utf8_lossy(&n.text).into_owned())
                .map_err(|e| e.to_string())
        ),
    }
    Ok(())
}
