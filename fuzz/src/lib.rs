//! Helpers shared by the fuzz targets and the seed generator.

/// A fixed secret: the seeds in `seeds/request/` are signed with it, so their signatures verify.
pub const SECRET: &[u8] = b"zavro-fuzz-secret";

/// The key id the seeds are signed under.
pub const KEY: &str = "ZKFUZZ";

/// Splits a fuzz input into frames.
///
/// Layout: the first byte modulo 6 is the frame count `n` (0 to 5). Every frame but the last is a
/// little-endian `u16` length followed by that many bytes (cut short if the input ends first); the last
/// frame is all the bytes left. A missing length byte counts as 0.
pub fn split_frames(data: &[u8]) -> Vec<Vec<u8>> {
    let Some((&first, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let count = usize::from(first % 6);
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        if i + 1 == count {
            frames.push(rest.to_vec());
            break;
        }
        let len = match rest {
            [lo, hi, tail @ ..] => {
                rest = tail;
                usize::from(u16::from_le_bytes([*lo, *hi]))
            }
            [_] | [] => {
                rest = &[];
                0
            }
        };
        let (frame, tail) = rest.split_at(len.min(rest.len()));
        frames.push(frame.to_vec());
        rest = tail;
    }
    frames
}

/// The inverse of [`split_frames`]: builds a fuzz input that splits back into `frames`.
///
/// Panics if there are more than 5 frames or a frame other than the last is longer than `u16::MAX`.
pub fn join_frames(frames: &[Vec<u8>]) -> Vec<u8> {
    assert!(frames.len() <= 5, "at most 5 frames");
    let mut out = vec![frames.len() as u8];
    for (i, frame) in frames.iter().enumerate() {
        if i + 1 < frames.len() {
            let len = u16::try_from(frame.len()).expect("frame fits a u16 length");
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(frame);
    }
    out
}
