//! `zavro.Json` records in Avro binary straight to JSON text: the server's decoder for its own schema, by hand.
//! It reads the bytes once and writes the text once, with no value tree, no serde visitor and no per-value
//! allocation, and reaches the same text and the same refusals as apache-avro's schema-aware deserializer did
//! (kept in the tests as the oracle): the same JSON spelling (serde_json's formatter), the same limits on depth and
//! values, the same allocation limit on declared lengths, checked in the same order.

use serde_json::ser::{CompactFormatter, Formatter};

use super::{
    MAX_DECODE_ALLOCATION, MAX_DEPTH, MAX_VALUES, decode::MAX_REQUEST_DECODED_BYTES,
    numbers::non_finite_name,
};

/// Why a record could not be transcoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fault {
    /// A limit of the server was reached (its message names the limit).
    Limit(String),
    /// The bytes are not a `zavro.Json` record.
    Bad(String),
    /// The request's text passed [`MAX_REQUEST_DECODED_BYTES`] while this record was written, and the record
    /// has no other fault: refused as the check after each record refuses a request over its budget.
    TooMuchText,
}

/// The union branches of `zavro.Json`'s `value`, in the schema's order.
const NULL: i64 = 0;
const BOOLEAN: i64 = 1;
const LONG: i64 = 2;
const DOUBLE: i64 = 3;
const STRING: i64 = 4;
const ARRAY: i64 = 5;
const MAP: i64 = 6;

/// What one container file's records have used of the per-request limits so far.
#[derive(Debug, Default)]
pub(super) struct Budget {
    /// JSON values (at any depth) decoded so far.
    values: usize,
}

impl Budget {
    /// A budget for a new container file.
    pub(super) fn new() -> Self {
        Budget::default()
    }

    /// Counts one more value against [`MAX_VALUES`].
    fn count_value(&mut self) -> Result<(), Fault> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(Fault::Limit(format!(
                "more than {MAX_VALUES} JSON values in one request"
            )));
        }
        Ok(())
    }
}

/// Transcodes one `zavro.Json` record from the front of `data` (which then starts after it) and appends its
/// compact JSON text to `out`, the text of the request so far.
///
/// `out` never grows past [`MAX_REQUEST_DECODED_BYTES`] by more than a few hundred bytes (a number's text and
/// the brackets that close around it): a string that would take it past is not written, and text past it is
/// cut at the next value. The request is then refused ([`Fault::TooMuchText`]) once the record is read to its
/// end, so that a fault of its bytes further on is still the one named, as when the budget was checked only
/// after each record (and a record of 32 MiB of control characters could grow the text to 192 MiB first).
/// A record that cannot reach the budget, by [`TEXT_PER_BYTE`], is read without these checks.
pub(super) fn record(
    data: &mut &[u8],
    out: &mut Vec<u8>,
    budget: &mut Budget,
) -> Result<(), Fault> {
    // Most requests are far from the budget: when even the rest of the block cannot reach it, the record is
    // read with no checks at all (they cost 85 instructions in a record of 150 bytes, 2 %).
    if out
        .len()
        .saturating_add(data.len().saturating_mul(TEXT_PER_BYTE))
        <= MAX_REQUEST_DECODED_BYTES
    {
        return Reader::<false>::new(data, out, budget).value(0);
    }
    let mut reader = Reader::<true>::new(data, out, budget);
    reader.value(0)?;
    if reader.over_budget {
        return Err(Fault::TooMuchText);
    }
    Ok(())
}

/// The most bytes of text a record and the newline after it write per byte of the record's data: a string
/// writes at most six per byte (`\u00xx`), and its quotes and separator are paid for by its branch and length;
/// every other value writes at most six per byte of it, its separator included (`null` and a comma for its one
/// byte, `[]` for two, a double's 25 for nine, …); the record's outermost value has no separator, which pays for
/// the newline.
pub(super) const TEXT_PER_BYTE: usize = 6;

/// The bytes being read, the text being written, and the request's budget. `CHECKED` when the text might pass
/// [`MAX_REQUEST_DECODED_BYTES`] in this record, which is then checked as it is written.
struct Reader<'a, 'b, const CHECKED: bool> {
    data: &'a mut &'b [u8],
    out: &'a mut Vec<u8>,
    budget: &'a mut Budget,
    /// The text passed [`MAX_REQUEST_DECODED_BYTES`] in this record; what it held past that was left out.
    over_budget: bool,
}

/// The data ended inside a value.
fn truncated() -> Fault {
    Fault::Bad("the data ends inside a value".into())
}

impl<'a, 'b, const CHECKED: bool> Reader<'a, 'b, CHECKED> {
    /// A reader of the record at the front of `data`.
    fn new(data: &'a mut &'b [u8], out: &'a mut Vec<u8>, budget: &'a mut Budget) -> Self {
        Reader {
            data,
            out,
            budget,
            over_budget: false,
        }
    }

    /// One value of the union, at nesting `depth` (arrays and maps around it).
    fn value(&mut self, depth: usize) -> Result<(), Fault> {
        self.budget.count_value()?;
        if CHECKED && self.out.len() > MAX_REQUEST_DECODED_BYTES {
            self.cut_past_budget();
        }
        let branch = self.long()?;
        if !(NULL..=MAP).contains(&branch) {
            return Err(Fault::Bad(format!(
                "union index {branch} is not one of zavro.Json's 7 branches"
            )));
        }
        match branch {
            NULL => self.out.extend_from_slice(b"null"),
            BOOLEAN => match self.take(1)?[0] {
                0 => self.out.extend_from_slice(b"false"),
                1 => self.out.extend_from_slice(b"true"),
                other => return Err(Fault::Bad(format!("{other} is not a valid boolean"))),
            },
            LONG => {
                let n = self.long()?;
                write(CompactFormatter.write_i64(self.out, n));
            }
            DOUBLE => {
                let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| truncated())?;
                let f = f64::from_le_bytes(bytes);
                // NaN and the infinities have no JSON number; Avro's JSON encoding writes them as strings.
                match non_finite_name(f) {
                    Some(name) => self.string_text(name),
                    None => write(CompactFormatter.write_f64(self.out, f)),
                }
            }
            STRING => {
                let text = self.string()?;
                self.string_text(text);
            }
            ARRAY => {
                let mut remaining = self.block_header()?;
                self.enter(depth)?;
                self.out.push(b'[');
                let mut first = true;
                while remaining > 0 {
                    if !first {
                        self.out.push(b',');
                    }
                    self.value(depth + 1)?;
                    first = false;
                    remaining -= 1;
                    if remaining == 0 {
                        remaining = self.block_header()?;
                    }
                }
                self.out.push(b']');
            }
            _ => {
                let mut remaining = self.block_header()?;
                self.enter(depth)?;
                self.out.push(b'{');
                let mut first = true;
                while remaining > 0 {
                    if !first {
                        self.out.push(b',');
                    }
                    let key = self.string()?;
                    self.string_text(key);
                    self.out.push(b':');
                    self.value(depth + 1)?;
                    first = false;
                    remaining -= 1;
                    if remaining == 0 {
                        remaining = self.block_header()?;
                    }
                }
                self.out.push(b'}');
            }
        }
        Ok(())
    }

    /// Refuses an array or map at nesting `depth` (0 for the outermost) past [`MAX_DEPTH`].
    fn enter(&self, depth: usize) -> Result<(), Fault> {
        if depth + 1 > MAX_DEPTH {
            return Err(Fault::Limit(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    /// A block's item count (0 at the end of an array or map), skipping the byte size a negative count carries.
    fn block_header(&mut self) -> Result<u64, Fault> {
        let count = self.long()?;
        if count < 0 {
            self.long()?;
        }
        Ok(count.unsigned_abs())
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self) -> Result<&'b str, Fault> {
        let len = self.long()?;
        let len = usize::try_from(len)
            .map_err(|_| Fault::Bad(format!("a string declares a negative length, {len}")))?;
        if len > MAX_DECODE_ALLOCATION {
            return Err(Fault::Limit(format!(
                "a value declares {len} bytes, over the decoding limit of {MAX_DECODE_ALLOCATION} bytes"
            )));
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|e| Fault::Bad(format!("a string is not UTF-8: {e}")))
    }

    /// Appends `text` as a JSON string, escaped as serde_json escapes it, unless that takes the request's text
    /// past [`MAX_REQUEST_DECODED_BYTES`]: then it is left out and the record marked over the budget.
    #[inline]
    fn string_text(&mut self, text: &str) {
        // Escaping writes at most six bytes per byte (`\u00xx`) and two quotes; only a string that might pass
        // the budget is measured exactly. (Its length is bounded by MAX_DECODE_ALLOCATION: no overflow.)
        if CHECKED
            && self.out.len() + 6 * text.len() + 2 > MAX_REQUEST_DECODED_BYTES
            && self.string_passes_budget(text)
        {
            return;
        }
        escape_into(self.out, text.as_bytes());
    }

    /// Whether `text`, escaped, takes the request's text past [`MAX_REQUEST_DECODED_BYTES`] (or the record is
    /// already past it); if so the record is marked over the budget.
    #[cold]
    #[inline(never)]
    fn string_passes_budget(&mut self, text: &str) -> bool {
        if self.over_budget
            || self.out.len() + escaped_len(text.as_bytes()) > MAX_REQUEST_DECODED_BYTES
        {
            self.over_budget = true;
        }
        self.over_budget
    }

    /// Marks the record over the budget and cuts the text back to it: the request is refused, so its text is no
    /// longer needed, and the record is read on for a fault of its bytes, which would be named first.
    #[cold]
    #[inline(never)]
    fn cut_past_budget(&mut self) {
        self.over_budget = true;
        self.out.truncate(MAX_REQUEST_DECODED_BYTES);
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'b [u8], Fault> {
        let data: &'b [u8] = self.data;
        if data.len() < n {
            return Err(truncated());
        }
        let (taken, rest) = data.split_at(n);
        *self.data = rest;
        Ok(taken)
    }

    /// A zigzag varint of at most 10 bytes, as apache-avro reads it.
    fn long(&mut self) -> Result<i64, Fault> {
        // Most varints (union branches, lengths, counts) are one byte.
        if let Some((&byte, rest)) = self.data.split_first()
            && byte < 0x80
        {
            *self.data = rest;
            let z = u64::from(byte);
            return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
        }
        let mut z = 0u64;
        for (j, &byte) in self.data.iter().enumerate() {
            if j > 9 {
                return Err(Fault::Bad("a variable-length integer is too long".into()));
            }
            z |= u64::from(byte & 0x7F) << (j * 7);
            if byte >> 7 == 0 {
                *self.data = &self.data[j + 1..];
                return Ok(if z & 1 == 0 {
                    (z >> 1) as i64
                } else {
                    !(z >> 1) as i64
                });
            }
        }
        if self.data.len() >= 10 {
            return Err(Fault::Bad("a variable-length integer is too long".into()));
        }
        Err(truncated())
    }
}

/// Appends `text` as a JSON string, byte for byte as serde_json writes it (so the stored JSON and its audit hash
/// do not depend on which writer made it): `"` and `\\` escaped with a backslash, the control characters below
/// 0x20 as `\b`, `\t`, `\n`, `\f`, `\r` or `\u00xx` (lowercase hex), everything else as it is. Runs of bytes
/// that need no escape are found eight at a time and copied whole.
pub(super) fn escape_into(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        if let Some(chunk) = text.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let byte = text[i];
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&text[start..i]);
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0A => out.extend_from_slice(b"\\n"),
            0x0C => out.extend_from_slice(b"\\f"),
            0x0D => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xF)],
            ]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
}

/// How many bytes [`escape_into`] writes for `text`, quotes included.
pub(super) fn escaped_len(text: &[u8]) -> usize {
    2 + text
        .iter()
        .map(|&byte| match byte {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 2,
            0x00..0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// True when one of the eight bytes of `word` is below 0x20, a `"` or a `\\` (SWAR: a byte's high bit is set in
/// `x - 0x01…` and clear in `x` only when it is zero, or below the subtracted value).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

/// Writing to a `Vec` cannot fail.
fn write(result: std::io::Result<()>) {
    debug_assert!(result.is_ok(), "writing to a Vec<u8> does not fail");
}
