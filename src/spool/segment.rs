//! The on-disk format of spool segments: a magic header, then records, each framed by its length and a CRC-32 so
//! a record torn by a crash (or a damaged file) is recognised, never read as data.
//!
//! ```text
//! segment file  = "ZVSPOOL1" record*
//! record        = body_len: u32 LE | crc32(body): u32 LE | body
//! body          = seq: u64 LE | records: u64 LE | envelope_len: u16 LE | position_len: u32 LE | envelope
//!                 | position | payload (the rest)
//! ```
//!
//! `envelope` is the request's envelope frame as sent (PROTOCOL.md: JSON with key, timestamp, nonce, id and
//! signature), `payload` its payload frame: the signed request itself, so a resend is byte-identical until the
//! server finds its timestamp stale. `position` is empty, except for `send --follow`: where reading the followed
//! files resumes after this request's lines (`crate::follow::Checkpoint` as JSON), in the same record so that
//! a crash cannot keep one without the other.
//!
//! Segments are named by the sequence number of their first record, `{seq:020}.seg`, so a directory listing
//! sorted by name is the spool's order.

use crate::protocol::{PROTOCOL_VERSION, Request};

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"ZVSPOOL1";

/// The file name suffix of segments.
pub const SUFFIX: &str = ".seg";

/// Bytes of a record's framing (length and checksum) before its body.
const FRAME: usize = 8;

/// Bytes of a body before its envelope: sequence number, record count, envelope length, position length.
const BODY_HEAD: usize = 22;

/// Largest body a spool record may have, written or read: far above a request's 1 MiB payload (one record larger
/// than a request is sent alone, and may be larger), far below what a damaged length could make a reader
/// allocate. [`encode`] refuses a larger entry, so every record written can be read back.
pub const MAX_BODY: usize = 64 << 20;

/// One spooled request: the signed request as first sent, with its request id (PROTOCOL.md, "Request ids") in
/// its envelope. When the server finds its timestamp stale, the sender signs it again (same id and payload) in
/// memory; the spool keeps the first signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the spool: consecutive from 0 over the spool's life.
    pub seq: u64,
    /// How many records its payload holds.
    pub records: u64,
    /// The request.
    pub request: Request,
    /// Opaque to the spool: for `send --follow`, where reading resumes after this request's lines; else empty.
    pub position: Vec<u8>,
}

/// The name of the segment whose first record has sequence number `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// The first sequence number of the segment named `name`, when it is a segment's name.
pub fn first_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// An entry too large for one spool record: its body's size, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge(pub usize);

/// The bytes of `entry` as one framed record; refused when its body would pass [`MAX_BODY`] (or its envelope
/// 64 KiB), which no reader would take back.
pub fn encode(entry: &Entry) -> Result<Vec<u8>, TooLarge> {
    let [_, envelope, payload] = entry.request.to_frames();
    let body_len = BODY_HEAD + envelope.len() + entry.position.len() + payload.len();
    let (Ok(envelope_len), Ok(position_len), Ok(framed_len), true) = (
        u16::try_from(envelope.len()),
        u32::try_from(entry.position.len()),
        u32::try_from(body_len),
        body_len <= MAX_BODY,
    ) else {
        return Err(TooLarge(body_len));
    };
    let mut out = Vec::with_capacity(FRAME + body_len);
    out.extend_from_slice(&framed_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entry.seq.to_le_bytes());
    out.extend_from_slice(&entry.records.to_le_bytes());
    out.extend_from_slice(&envelope_len.to_le_bytes());
    out.extend_from_slice(&position_len.to_le_bytes());
    out.extend_from_slice(&envelope);
    out.extend_from_slice(&entry.position);
    out.extend_from_slice(&payload);
    let crc = crc32fast::hash(&out[FRAME..]);
    out[4..FRAME].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// What reading a segment's bytes found.
#[derive(Debug, PartialEq, Eq)]
pub struct Scanned {
    /// The records that are whole and intact, in order.
    pub entries: Vec<Entry>,
    /// The length of the prefix they (and the header) make up: where the next record goes.
    pub good_len: usize,
    /// True when bytes follow that prefix which are not a whole, intact record: a torn tail, or damage.
    pub damaged: bool,
    /// True when those bytes can only be what a crash in the middle of an append leaves: a record that ends at
    /// or past the end of the file (cut short, or whole but failing its checksum), or zeros to the end (the
    /// file grew but its data never reached the disk). A bad record with more bytes after it is damage, not a
    /// torn tail: cutting there would drop intact records that were reported spooled.
    pub torn_tail: bool,
}

/// Reads the records of a segment file's bytes, stopping at the first that is incomplete or fails its checksum.
/// A file shorter than the header (a crash while it was created) holds nothing and is `damaged` unless empty.
pub fn scan(bytes: &[u8]) -> Scanned {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // Only a header cut short is a crash's doing; any other first bytes are not a segment.
        let torn = MAGIC.starts_with(bytes) || bytes.iter().all(|&b| b == 0);
        return Scanned {
            entries: Vec::new(),
            good_len: 0,
            damaged: !bytes.is_empty(),
            torn_tail: !bytes.is_empty() && torn,
        };
    }
    let mut entries = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Some((entry, used)) => {
                entries.push(entry);
                at += used;
            }
            None => {
                return Scanned {
                    entries,
                    good_len: at,
                    damaged: true,
                    torn_tail: is_torn_tail(&bytes[at..]),
                };
            }
        }
    }
    Scanned {
        entries,
        good_len: at,
        damaged: false,
        torn_tail: false,
    }
}

/// Whether `rest`, which does not start with an intact record, is what an append cut short by a crash leaves:
/// a record that does not end before the end of the file, or nothing but zeros.
fn is_torn_tail(rest: &[u8]) -> bool {
    let Some(length) = rest.get(..4) else {
        return true;
    };
    let body_len = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
    let ends_at_or_past_the_end =
        (BODY_HEAD..=MAX_BODY).contains(&body_len) && FRAME.saturating_add(body_len) >= rest.len();
    ends_at_or_past_the_end || rest.iter().all(|&b| b == 0)
}

/// The record at the start of `bytes` and its framed length, or `None` when it is incomplete or damaged.
fn decode(bytes: &[u8]) -> Option<(Entry, usize)> {
    let body_len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..FRAME)?.try_into().ok()?);
    if !(BODY_HEAD..=MAX_BODY).contains(&body_len) {
        return None;
    }
    let body = bytes.get(FRAME..FRAME + body_len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let records = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let envelope_len = usize::from(u16::from_le_bytes(body[16..18].try_into().ok()?));
    let position_len = u32::from_le_bytes(body[18..BODY_HEAD].try_into().ok()?) as usize;
    let envelope = body.get(BODY_HEAD..BODY_HEAD + envelope_len)?;
    let position_at = BODY_HEAD + envelope_len;
    let position = body.get(position_at..position_at.checked_add(position_len)?)?;
    let payload = &body[position_at + position_len..];
    let frames = [
        PROTOCOL_VERSION.as_bytes().to_vec(),
        envelope.to_vec(),
        payload.to_vec(),
    ];
    let request = Request::from_frames(&frames).ok()?;
    Some((
        Entry {
            seq,
            records,
            request,
            position: position.to_vec(),
        },
        FRAME + body_len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, payload: &[u8]) -> Entry {
        Entry {
            seq,
            records: seq + 1,
            request: Request::sign_with_id(
                "ZK1",
                b"secret",
                1_700_000_000,
                "nonce-0123456789abcdef",
                Some(&format!("id-{seq:016}")),
                payload.to_vec(),
            ),
            position: if seq % 2 == 1 {
                format!("{{\"after\": {seq}}}").into_bytes()
            } else {
                Vec::new()
            },
        }
    }

    fn file(entries: &[Entry]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for e in entries {
            bytes.extend(encode(e).unwrap());
        }
        bytes
    }

    #[test]
    fn records_read_back_as_written() {
        let entries = [entry(0, b"one"), entry(1, b""), entry(2, &[7; 1000])];
        let bytes = file(&entries);
        assert_eq!(
            scan(&bytes),
            Scanned {
                entries: entries.to_vec(),
                good_len: bytes.len(),
                damaged: false,
                torn_tail: false,
            }
        );
    }

    #[test]
    fn a_tail_cut_anywhere_is_found_and_everything_before_it_kept() {
        let entries = [entry(0, b"first"), entry(1, b"second")];
        let bytes = file(&entries);
        let first_end = MAGIC.len() + encode(&entries[0]).unwrap().len();
        for cut in first_end + 1..bytes.len() {
            let scanned = scan(&bytes[..cut]);
            assert_eq!(scanned.entries, entries[..1], "cut at {cut}");
            assert_eq!(scanned.good_len, first_end);
            assert!(scanned.damaged && scanned.torn_tail, "cut at {cut}");
        }
        assert!(!scan(&bytes[..first_end]).damaged);
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut bytes = file(&[entry(0, b"payload")]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let scanned = scan(&bytes);
        assert!(scanned.entries.is_empty() && scanned.damaged);
        assert_eq!(scanned.good_len, MAGIC.len());
        // The last record of the file, whole but failing its checksum: what a crash can leave of an append.
        assert!(scanned.torn_tail);
    }

    #[test]
    fn a_bad_record_with_intact_records_after_it_is_damage_not_a_torn_tail() {
        let entries = [entry(0, b"first"), entry(1, b"second"), entry(2, b"third")];
        let mut bytes = file(&entries);
        let first_end = MAGIC.len() + encode(&entries[0]).unwrap().len();
        bytes[first_end + FRAME + 1] ^= 1;
        let scanned = scan(&bytes);
        assert_eq!(scanned.entries, entries[..1]);
        assert!(scanned.damaged && !scanned.torn_tail);
        // A length past what any record may have, with bytes after it, is damage too.
        let mut bytes = file(&entries);
        bytes[first_end..first_end + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!scan(&bytes).torn_tail);
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let mut bytes = file(&[entry(0, b"first")]);
        let end = bytes.len();
        bytes.resize(end + 4096, 0);
        let scanned = scan(&bytes);
        assert_eq!((scanned.entries.len(), scanned.good_len), (1, end));
        assert!(scanned.damaged && scanned.torn_tail);
    }

    #[test]
    fn an_entry_larger_than_a_record_may_be_is_refused_not_written() {
        let big = entry(0, &vec![0; MAX_BODY]);
        let Err(TooLarge(bytes)) = encode(&big) else {
            panic!("an entry past MAX_BODY was encoded");
        };
        assert!(bytes > MAX_BODY);
        let fits = entry(0, &vec![0; MAX_BODY - 1024]);
        assert_eq!(scan(&file(std::slice::from_ref(&fits))).entries, [fits]);
    }

    #[test]
    fn a_file_torn_in_its_header_holds_nothing() {
        assert!(scan(&MAGIC[..3]).damaged && scan(&MAGIC[..3]).torn_tail);
        assert!(!scan(b"NOTASEGMENT").torn_tail);
        assert!(!scan(b"").damaged);
        assert_eq!(scan(b"").good_len, 0);
    }

    #[test]
    fn segment_names_sort_in_spool_order() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(first_seq(&file_name(42)), Some(42));
        assert_eq!(first_seq("acked"), None);
        assert_eq!(first_seq("0042.seg"), None);
        assert!(file_name(9) < file_name(10));
    }
}
