//! Avro object container files, framed by hand: header (magic, metadata, sync marker) and data blocks.
//!
//! apache-avro's `Reader` parses the writer schema out of every header; zavro frames containers itself so the
//! server can recognise a header it has seen before without parsing its schema again, and so every length an
//! untrusted file declares is checked against the bytes that are really there before anything is allocated.

use std::{borrow::Cow, ops::Deref};

use apache_avro::Codec;

/// The four bytes every container file starts with.
pub const MAGIC: &[u8; 4] = b"Obj\x01";

/// Why bytes are not a usable container file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    /// The bytes end before a declared length, marker or block.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A value breaks the format (bad magic, bad varint, negative length, wrong sync marker, …).
    #[error("{0}")]
    Invalid(String),
    /// The header names a codec this build does not read.
    #[error("codec {0:?} is not supported")]
    UnsupportedCodec(String),
    /// Decompressing a block failed: the compressed bytes are broken.
    #[error("cannot decompress block: {0}")]
    Decompress(String),
    /// A block would decompress to more than the allocation limit; the message names the limit.
    #[error("{0}")]
    TooLarge(String),
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// The raw `avro.schema` metadata value (JSON text).
    pub schema: &'a [u8],
    /// The block codec (`avro.codec`, `null` when absent).
    pub codec: Codec,
    /// The 16-byte sync marker that ends the header and every block.
    pub sync: [u8; 16],
}

/// Reads a container file block by block.
pub struct ContainerReader<'a> {
    header: Header<'a>,
    rest: &'a [u8],
}

/// One data block: how many objects it holds and their bytes (decompressed).
#[derive(Debug)]
pub struct Block<'a> {
    /// Number of objects in the block, as declared.
    pub count: u64,
    /// The serialized objects.
    pub data: BlockData<'a>,
}

/// A block's serialized objects: read where they are in the file when it is not compressed (copying them cost
/// the server a copy of every payload, 137 instructions per record of 150 bytes under callgrind), decompressed
/// into a buffer of their own when it is.
#[derive(Debug, PartialEq, Eq)]
pub struct BlockData<'a>(Cow<'a, [u8]>);

impl BlockData<'_> {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Deref for BlockData<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<'a> ContainerReader<'a> {
    /// Parses the header.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ContainerError> {
        let mut rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
            ContainerError::Invalid("does not start with the Avro magic Obj\\x01".into())
        })?;
        let mut schema = None;
        let mut codec_name: Option<&[u8]> = None;
        loop {
            let count = read_long(&mut rest)?;
            if count == 0 {
                break;
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes, which we do not need.
                read_long(&mut rest)?;
            }
            for _ in 0..count.unsigned_abs() {
                let key = read_bytes(&mut rest)?;
                let value = read_bytes(&mut rest)?;
                match key {
                    b"avro.schema" => schema = Some(value),
                    b"avro.codec" => codec_name = Some(value),
                    _ => {}
                }
            }
        }
        let sync = read_sync(&mut rest)?;
        let schema =
            schema.ok_or_else(|| ContainerError::Invalid("header has no avro.schema".into()))?;
        let codec = match codec_name {
            None => Codec::Null,
            Some(name) => {
                let name = String::from_utf8_lossy(name);
                name.parse::<Codec>()
                    .map_err(|_| ContainerError::UnsupportedCodec(name.into_owned()))?
            }
        };
        Ok(ContainerReader {
            header: Header {
                schema,
                codec,
                sync,
            },
            rest,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header<'a> {
        &self.header
    }

    /// The next block, decompressed, or `None` at the end of the file.
    pub fn next_block(&mut self) -> Result<Option<Block<'a>>, ContainerError> {
        let Some(raw) = self.next_raw_block()? else {
            return Ok(None);
        };
        if self.header.codec == Codec::Null {
            return Ok(Some(Block {
                count: raw.count,
                data: BlockData(Cow::Borrowed(raw.data)),
            }));
        }
        let mut data = raw.data.to_vec();
        self.header.codec.decompress(&mut data).map_err(
            |e| match super::allocation_limit_message(&e) {
                Some(limit) => ContainerError::TooLarge(format!("a compressed block: {limit}")),
                None => ContainerError::Decompress(e.to_string()),
            },
        )?;
        Ok(Some(Block {
            count: raw.count,
            data: BlockData(Cow::Owned(data)),
        }))
    }

    /// The next block as it is in the file (still compressed), or `None` at the end of the file.
    pub fn next_raw_block(&mut self) -> Result<Option<RawBlock<'a>>, ContainerError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let count = read_long(&mut self.rest)?;
        let size = read_long(&mut self.rest)?;
        let (Ok(count), Ok(size)) = (u64::try_from(count), usize::try_from(size)) else {
            return Err(ContainerError::Invalid(format!(
                "block declares {count} objects in {size} bytes"
            )));
        };
        let data = take(&mut self.rest, size, "block shorter than its declared size")?;
        if read_sync(&mut self.rest)? != self.header.sync {
            return Err(ContainerError::Invalid(
                "block does not end with the file's sync marker".into(),
            ));
        }
        Ok(Some(RawBlock { count, data }))
    }
}

/// One data block as stored: its object count and its bytes, compressed with the file's codec.
#[derive(Debug, Clone, Copy)]
pub struct RawBlock<'a> {
    /// Number of objects in the block, as declared.
    pub count: u64,
    /// The block's bytes as they are in the file.
    pub data: &'a [u8],
}

/// Builds a container file in memory.
pub struct ContainerWriter {
    out: Vec<u8>,
    sync: [u8; 16],
    codec: Codec,
}

impl ContainerWriter {
    /// Starts a file with this schema (JSON text), codec and sync marker.
    pub fn new(schema_json: &str, codec: Codec, sync: [u8; 16]) -> Self {
        Self::with_raw_schema(schema_json.as_bytes(), codec, sync)
    }

    /// Starts a file whose `avro.schema` is these exact bytes (another file's header, copied unchanged).
    pub fn with_raw_schema(schema_json: &[u8], codec: Codec, sync: [u8; 16]) -> Self {
        let mut out = Vec::with_capacity(schema_json.len() + 64);
        out.extend_from_slice(MAGIC);
        let codec_name: &'static str = codec.into();
        write_long(&mut out, 2);
        write_bytes(&mut out, b"avro.schema");
        write_bytes(&mut out, schema_json);
        write_bytes(&mut out, b"avro.codec");
        write_bytes(&mut out, codec_name.as_bytes());
        write_long(&mut out, 0);
        out.extend_from_slice(&sync);
        ContainerWriter { out, sync, codec }
    }

    /// Appends one block of `count` serialized objects, compressing it with the file's codec.
    pub fn write_block(&mut self, count: u64, mut data: Vec<u8>) -> Result<(), apache_avro::Error> {
        self.codec.compress(&mut data)?;
        write_long(&mut self.out, i64::try_from(count).unwrap_or(i64::MAX));
        write_long(&mut self.out, i64::try_from(data.len()).unwrap_or(i64::MAX));
        self.out.extend_from_slice(&data);
        self.out.extend_from_slice(&self.sync);
        Ok(())
    }

    /// Appends a block exactly as another file of the same schema and codec stored it.
    pub fn write_raw_block(&mut self, block: RawBlock) {
        write_long(
            &mut self.out,
            i64::try_from(block.count).unwrap_or(i64::MAX),
        );
        write_long(
            &mut self.out,
            i64::try_from(block.data.len()).unwrap_or(i64::MAX),
        );
        self.out.extend_from_slice(block.data);
        self.out.extend_from_slice(&self.sync);
    }

    /// Makes room for `additional` more bytes at once (a block about to be written), so it is copied once.
    pub fn reserve(&mut self, additional: usize) {
        self.out.reserve_exact(additional);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True when nothing has been written (never: the header is written at once).
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The finished file.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Appends an Avro `long`: zig-zag, then base-128 varint, low bits first.
pub fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, i64::try_from(bytes.len()).unwrap_or(i64::MAX));
    out.extend_from_slice(bytes);
}

/// Reads an Avro `long`, refusing varints longer than 10 bytes.
pub fn read_long(input: &mut &[u8]) -> Result<i64, ContainerError> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = input
            .split_first()
            .ok_or(ContainerError::Truncated("varint"))?;
        *input = rest;
        z |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(ContainerError::Invalid(
        "varint longer than 10 bytes".into(),
    ))
}

fn read_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], ContainerError> {
    let len = read_long(input)?;
    let len = usize::try_from(len)
        .map_err(|_| ContainerError::Invalid(format!("negative length {len}")))?;
    take(input, len, "metadata shorter than its declared length")
}

fn read_sync(input: &mut &[u8]) -> Result<[u8; 16], ContainerError> {
    let marker = take(input, 16, "sync marker")?;
    Ok(marker.try_into().expect("took exactly 16 bytes"))
}

/// Splits off `len` bytes, checking first that they are there (a declared length is never trusted).
fn take<'a>(
    input: &mut &'a [u8],
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], ContainerError> {
    if len > input.len() {
        return Err(ContainerError::Truncated(what));
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_round_trip_at_the_edges() {
        for n in [0, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 1 << 35] {
            let mut out = Vec::new();
            write_long(&mut out, n);
            assert_eq!(read_long(&mut out.as_slice()).unwrap(), n);
        }
        let mut out = Vec::new();
        write_long(&mut out, -2);
        assert_eq!(out, [3], "zig-zag per the Avro spec");
    }

    #[test]
    fn a_written_file_reads_back_block_by_block() {
        let mut writer = ContainerWriter::new(r#""long""#, Codec::Null, [7; 16]);
        writer.write_block(2, vec![2, 4]).unwrap();
        writer.write_block(1, vec![6]).unwrap();
        let bytes = writer.finish();
        let mut reader = ContainerReader::new(&bytes).unwrap();
        assert_eq!(reader.header().schema, br#""long""#);
        assert_eq!(reader.header().sync, [7; 16]);
        let first = reader.next_block().unwrap().unwrap();
        assert_eq!((first.count, first.data.as_slice()), (2, [2, 4].as_slice()));
        assert_eq!(reader.next_block().unwrap().unwrap().count, 1);
        assert!(reader.next_block().unwrap().is_none());
    }

    #[test]
    fn a_compressed_block_reads_back_decompressed_and_a_plain_one_in_place() {
        let objects = vec![2u8; 300];
        let mut writer =
            ContainerWriter::new(r#""long""#, Codec::Deflate(Default::default()), [7; 16]);
        writer.write_block(300, objects.clone()).unwrap();
        let bytes = writer.finish();
        let block = ContainerReader::new(&bytes)
            .unwrap()
            .next_block()
            .unwrap()
            .unwrap();
        assert_eq!(block.data.as_slice(), objects.as_slice());

        let mut writer = ContainerWriter::new(r#""long""#, Codec::Null, [7; 16]);
        writer.write_block(300, objects.clone()).unwrap();
        let bytes = writer.finish();
        let block = ContainerReader::new(&bytes)
            .unwrap()
            .next_block()
            .unwrap()
            .unwrap();
        let within_file = bytes.as_ptr_range();
        assert!(
            within_file.contains(&block.data.as_ptr()),
            "read where it is"
        );
        assert_eq!(block.data.as_slice(), objects.as_slice());
    }

    #[test]
    fn lying_lengths_and_markers_are_errors() {
        let mut writer = ContainerWriter::new(r#""long""#, Codec::Null, [7; 16]);
        writer.write_block(1, vec![2]).unwrap();
        let bytes = writer.finish();
        // Every truncation is an error, never a panic or an allocation of the declared size.
        for cut in 0..bytes.len() {
            let ok = ContainerReader::new(&bytes[..cut]).and_then(|mut r| {
                while r.next_block()?.is_some() {}
                Ok(())
            });
            assert!(ok.is_err() || cut == bytes.len() - 19, "cut at {cut}");
        }
        // A block that claims to be far larger than the file.
        let header_len = bytes.len() - 19;
        let mut lying = bytes[..header_len].to_vec();
        write_long(&mut lying, 1);
        write_long(&mut lying, i64::MAX);
        assert!(ContainerReader::new(&lying).unwrap().next_block().is_err());
        // A wrong sync marker after a block.
        let mut wrong = bytes.clone();
        let last = wrong.len() - 1;
        wrong[last] ^= 1;
        assert!(ContainerReader::new(&wrong).unwrap().next_block().is_err());
    }

    #[test]
    fn unknown_codecs_are_named() {
        let mut bytes = MAGIC.to_vec();
        write_long(&mut bytes, 2);
        write_bytes(&mut bytes, b"avro.schema");
        write_bytes(&mut bytes, b"\"long\"");
        write_bytes(&mut bytes, b"avro.codec");
        write_bytes(&mut bytes, b"lzma-9000");
        write_long(&mut bytes, 0);
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(
            ContainerReader::new(&bytes).err(),
            Some(ContainerError::UnsupportedCodec("lzma-9000".into()))
        );
    }
}
