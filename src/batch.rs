//! Cutting records into requests: at most so many records and bytes each, and no record held back longer than
//! the linger time while its request waits to fill.
//!
//! The [`Batcher`] is a plain state machine: the caller gives it records and the time, and takes the requests it
//! cut. It never reads, sleeps or sends, so `send` (records from stdin) and `bench` (generated records) drive the
//! same rules, and its tests need neither sockets nor clocks.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    avro::{
        AvroError, BatchEncoder,
        container::{ContainerError, ContainerReader, ContainerWriter},
    },
    input::InputError,
};

/// The longest linger accepted: beyond it a record would outwait any reasonable request timeout.
pub const MAX_LINGER: Duration = Duration::from_secs(3600);

/// When a request is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most records per request.
    pub records: u64,
    /// Most bytes of encoded records per request; a single larger record still goes, alone.
    pub bytes: usize,
    /// Longest time the oldest record of a request waits for more records before the request goes as it is.
    pub linger: Duration,
}

impl Limits {
    /// True when adding `added_records` records of `added_bytes` bytes to a request that holds `records` records
    /// of `bytes` bytes would break a bound. An empty request takes anything, so one oversized record goes alone.
    fn would_overflow(
        &self,
        records: u64,
        bytes: usize,
        added_records: u64,
        added_bytes: usize,
    ) -> bool {
        records > 0
            && (records.saturating_add(added_records) > self.records
                || bytes.saturating_add(added_bytes) > self.bytes)
    }

    /// True when a request of `records` records and `bytes` bytes can take no further record.
    fn is_full(&self, records: u64, bytes: usize) -> bool {
        records >= self.records || bytes >= self.bytes
    }
}

/// One request's worth of records: an Avro object container file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The container file, the request's payload.
    pub payload: Vec<u8>,
    /// Records it holds.
    pub records: u64,
}

/// Cuts a stream of JSON records into requests, in order, none lost.
///
/// After each [`Batcher::push`], take what [`Batcher::take_full`] gives. When no further record is at hand, ask
/// [`Batcher::take_due`], which cuts the open request once its oldest record has waited the linger time; wait
/// for input at most until [`Batcher::deadline`]. At the end of input, [`Batcher::take_rest`] gives the rest.
/// Waiting counts from when a record reaches the batcher: time a record spends queued behind a full window of
/// requests is waiting for the server, not for its request to fill.
#[derive(Debug)]
pub struct Batcher {
    limits: Limits,
    /// The request being filled.
    open: BatchEncoder,
    /// When the oldest record of `open` arrived; `None` while it is empty.
    opened_at: Option<Instant>,
    /// Requests cut and not yet taken, oldest first: at most a full one and the oversized record after it.
    cut: VecDeque<Batch>,
    /// The record [`Batcher::push`] encodes, kept for the next.
    scratch: Vec<u8>,
}

impl Batcher {
    /// A batcher that encodes with `encoder` (codec and schema chosen) and cuts at `limits`.
    pub fn new(encoder: BatchEncoder, limits: Limits) -> Self {
        Batcher {
            limits,
            open: encoder,
            opened_at: None,
            cut: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// Encodes a record that arrived at `now`; `number` (1-based, in the whole input) names it in errors. A
    /// record that does not encode is not added, and the caller stops: nothing after bad input is sent.
    pub fn push(&mut self, record: &Value, number: usize, now: Instant) -> Result<(), AvroError> {
        let mut encoded = std::mem::take(&mut self.scratch);
        encoded.clear();
        let pushed = self
            .open
            .record_encoder()
            .write_value(&mut encoded, record, number)
            .and_then(|()| self.push_encoded(&encoded, now));
        self.scratch = encoded;
        pushed
    }

    /// Adds a record already encoded in the batcher's schema (by [`crate::avro::RecordEncoder`]) that arrived
    /// at `now`.
    pub fn push_encoded(&mut self, record: &[u8], now: Instant) -> Result<(), AvroError> {
        if self
            .limits
            .would_overflow(self.open.len(), self.open.encoded_bytes(), 1, record.len())
        {
            // The record starts the next request; the ones before it go without it.
            self.cut_open()?;
        }
        self.open.push_encoded(record);
        self.opened_at.get_or_insert(now);
        if self
            .limits
            .is_full(self.open.len(), self.open.encoded_bytes())
        {
            self.cut_open()?;
        }
        Ok(())
    }

    /// The oldest request that reached a bound, if any.
    pub fn take_full(&mut self) -> Option<Batch> {
        self.cut.pop_front()
    }

    /// The oldest request cut, or else the open one once its oldest record has waited the linger time at `now`.
    /// Ask when no further record is at hand: records already read join the request before it goes.
    pub fn take_due(&mut self, now: Instant) -> Result<Option<Batch>, AvroError> {
        let due = self
            .opened_at
            .is_some_and(|opened| now.saturating_duration_since(opened) >= self.limits.linger);
        if self.cut.is_empty() && due {
            self.cut_open()?;
        }
        Ok(self.cut.pop_front())
    }

    /// When the open request's oldest record will have waited the linger time; `None` when no record waits.
    pub fn deadline(&self) -> Option<Instant> {
        let opened = self.opened_at?;
        // A linger too long to add to the clock never comes due; the end of input still sends the records.
        opened.checked_add(self.limits.linger)
    }

    /// At the end of input: the requests cut and then the open one, oldest first; `None` when all were taken.
    pub fn take_rest(&mut self) -> Result<Option<Batch>, AvroError> {
        if self.cut.is_empty() {
            self.cut_open()?;
        }
        Ok(self.cut.pop_front())
    }

    /// Closes the open request, if it holds any record, and queues it to be taken.
    fn cut_open(&mut self) -> Result<(), AvroError> {
        if self.open.is_empty() {
            return Ok(());
        }
        let records = self.open.len();
        let payload = self.open.finish()?;
        self.cut.push_back(Batch { payload, records });
        self.opened_at = None;
        Ok(())
    }
}

/// Cuts an Avro object container file, between its blocks, into requests within `limits` (its linger does not
/// apply: the file is whole), each a container file with the original schema, codec and blocks unchanged.
pub fn split_container(file: &[u8], limits: Limits) -> Result<Vec<Batch>, InputError> {
    let bad = |e: ContainerError| InputError::NotAvro(e.to_string());
    let mut reader = ContainerReader::new(file).map_err(bad)?;
    let (schema, codec) = (reader.header().schema, reader.header().codec);
    let new_writer = || {
        let mut sync = [0u8; 16];
        // A fresh marker per payload; a failed RNG only makes it less unique, which Avro tolerates.
        let _ = getrandom::fill(&mut sync);
        ContainerWriter::with_raw_schema(schema, codec, sync)
    };
    let mut batches = Vec::new();
    let mut writer = new_writer();
    let mut records = 0;
    while let Some(block) = reader.next_raw_block().map_err(bad)? {
        if limits.would_overflow(records, writer.len(), block.count, block.data.len()) {
            let full = std::mem::replace(&mut writer, new_writer());
            batches.push(Batch {
                payload: full.finish(),
                records: std::mem::take(&mut records),
            });
        }
        writer.write_raw_block(block);
        records = records.saturating_add(block.count);
    }
    // Blocks of no records after the last cut would make a request of nothing; they are left out.
    if records > 0 {
        batches.push(Batch {
            payload: writer.finish(),
            records,
        });
    }
    if batches.is_empty() {
        return Err(InputError::NotAvro("the file holds no records".into()));
    }
    Ok(batches)
}

/// Reads a linger time: a whole number of milliseconds (`250ms`), seconds (`1s`, `1.5s`), or `0`.
pub fn parse_linger(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = if text == "0" {
        Some(Duration::ZERO)
    } else if let Some(millis) = text.strip_suffix("ms") {
        millis.trim().parse::<u64>().ok().map(Duration::from_millis)
    } else if let Some(secs) = text.strip_suffix('s') {
        secs.trim()
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    } else {
        None
    };
    match parsed {
        Some(linger) if linger <= MAX_LINGER => Ok(linger),
        _ => Err(format!(
            "{text:?} is not a duration such as 200ms, 1s or 0, of at most {}s",
            MAX_LINGER.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::Codec;
    use serde_json::json;

    use super::*;
    use crate::avro::{Decoder, JSON_SCHEMA};

    /// Long enough that no test reaches it.
    const NEVER: Duration = MAX_LINGER;

    fn batcher(records: u64, bytes: usize, linger: Duration) -> Batcher {
        let limits = Limits {
            records,
            bytes,
            linger,
        };
        Batcher::new(BatchEncoder::new(Codec::Null), limits)
    }

    /// A record whose encoding is a little over `size` bytes.
    fn sized(n: u64, size: usize) -> Value {
        json!({"n": n, "pad": "x".repeat(size)})
    }

    /// The records of a payload as JSON lines, through the server's decoder.
    fn lines(batch: &Batch) -> Vec<String> {
        let text = Decoder::new()
            .decode_request(&batch.payload)
            .records
            .expect("a batch is a valid container file");
        assert_eq!(text.records as u64, batch.records, "the count matches");
        text.lines().map(str::to_owned).collect()
    }

    /// The `n` values of each batch.
    fn numbers(batches: &[Batch]) -> Vec<Vec<u64>> {
        batches
            .iter()
            .map(|batch| {
                lines(batch)
                    .iter()
                    .map(|line| {
                        let value: Value = serde_json::from_str(line).expect("JSON lines");
                        value["n"].as_u64().expect("every record has n")
                    })
                    .collect()
            })
            .collect()
    }

    /// Pushes each record at `now` and takes full requests after each push, as a sender does.
    fn push_all(batcher: &mut Batcher, records: &[Value], now: Instant) -> Vec<Batch> {
        let mut full = Vec::new();
        for (i, record) in records.iter().enumerate() {
            batcher.push(record, i + 1, now).expect("records encode");
            full.extend(std::iter::from_fn(|| batcher.take_full()));
        }
        full
    }

    fn rest(batcher: &mut Batcher) -> Vec<Batch> {
        std::iter::from_fn(|| batcher.take_rest().expect("the rest encodes")).collect()
    }

    #[test]
    fn a_request_is_cut_as_soon_as_it_holds_the_most_records() {
        let mut batcher = batcher(3, 1 << 20, NEVER);
        let now = Instant::now();
        let records: Vec<Value> = (1..=7).map(|n| json!({"n": n})).collect();

        let full = push_all(&mut batcher, &records[..3], now);
        assert_eq!(numbers(&full), [[1, 2, 3]], "cut at the third record");
        let full = push_all(&mut batcher, &records[3..], now);
        assert_eq!(numbers(&full), [[4, 5, 6]]);
        assert_eq!(numbers(&rest(&mut batcher)), [[7]]);
        assert!(batcher.take_rest().unwrap().is_none(), "nothing is left");
    }

    #[test]
    fn a_request_is_cut_before_the_record_that_would_pass_the_byte_bound() {
        // Two records of about 110 bytes fit in 250; a third would not.
        let mut batcher = batcher(1000, 250, NEVER);
        let records: Vec<Value> = (1..=5).map(|n| sized(n, 100)).collect();
        let full = push_all(&mut batcher, &records, Instant::now());
        assert_eq!(numbers(&full), [[1, 2], [3, 4]]);
        assert_eq!(numbers(&rest(&mut batcher)), [[5]]);
    }

    #[test]
    fn a_record_over_the_byte_bound_goes_alone_and_at_once() {
        let mut batcher = batcher(1000, 100, NEVER);
        let now = Instant::now();
        let big = sized(2, 500);

        let full = push_all(&mut batcher, &[json!({"n": 1}), big.clone()], now);
        assert_eq!(
            numbers(&full),
            [vec![1], vec![2]],
            "the small record goes without it, then the big one alone, without waiting for more input"
        );
        assert!(batcher.deadline().is_none(), "no record waits: {batcher:?}");

        let full = push_all(&mut batcher, &[big], now);
        assert_eq!(numbers(&full), [[2]], "also as the first record");
        batcher.push(&json!({"n": 3}), 4, now).unwrap();
        assert!(batcher.take_full().is_none());
        assert_eq!(numbers(&rest(&mut batcher)), [[3]]);
    }

    #[test]
    fn the_open_request_goes_when_its_oldest_record_has_waited_the_linger_time() {
        let linger = Duration::from_millis(200);
        let mut batcher = batcher(1000, 1 << 20, linger);
        let start = Instant::now();
        assert!(batcher.deadline().is_none(), "nothing waits yet");
        assert!(batcher.take_due(start + linger).unwrap().is_none());

        batcher.push(&json!({"n": 1}), 1, start).unwrap();
        batcher
            .push(&json!({"n": 2}), 2, start + Duration::from_millis(150))
            .unwrap();
        assert!(batcher.take_full().is_none(), "far from full");
        assert_eq!(
            batcher.deadline(),
            Some(start + linger),
            "counted from the oldest record"
        );
        assert!(
            batcher
                .take_due(start + linger - Duration::from_millis(1))
                .unwrap()
                .is_none(),
            "not due a millisecond early"
        );
        let due = batcher.take_due(start + linger).unwrap().expect("due");
        assert_eq!(numbers(&[due]), [[1, 2]]);
        assert!(batcher.deadline().is_none());

        let later = start + Duration::from_secs(5);
        batcher.push(&json!({"n": 3}), 3, later).unwrap();
        assert_eq!(
            batcher.deadline(),
            Some(later + linger),
            "the next request's clock starts with its own first record"
        );
    }

    #[test]
    fn a_zero_linger_sends_the_records_at_hand_at_once() {
        let mut batcher = batcher(1000, 1 << 20, Duration::ZERO);
        let now = Instant::now();
        let full = push_all(&mut batcher, &[json!({"n": 1}), json!({"n": 2})], now);
        assert!(full.is_empty(), "pushing never cuts for time");
        let due = batcher.take_due(now).unwrap().expect("due at once");
        assert_eq!(numbers(&[due]), [[1, 2]]);
    }

    #[test]
    fn a_record_that_starts_the_next_request_waits_from_its_own_arrival() {
        let linger = Duration::from_millis(200);
        let mut batcher = batcher(1000, 250, linger);
        let start = Instant::now();
        let arrival = start + Duration::from_millis(190);
        batcher.push(&sized(1, 100), 1, start).unwrap();
        batcher.push(&sized(2, 100), 2, start).unwrap();
        batcher.push(&sized(3, 100), 3, arrival).unwrap();
        assert_eq!(numbers(&[batcher.take_full().expect("cut")]), [[1, 2]]);
        assert_eq!(batcher.deadline(), Some(arrival + linger));
        assert!(batcher.take_due(start + linger).unwrap().is_none());
    }

    #[test]
    fn a_request_cut_for_size_goes_before_the_one_due_for_time() {
        let linger = Duration::from_millis(200);
        let mut batcher = batcher(2, 1 << 20, linger);
        let start = Instant::now();
        for n in 1..=3 {
            batcher.push(&json!({"n": n}), n as usize, start).unwrap();
        }
        let late = start + Duration::from_secs(1);
        let first = batcher.take_due(late).unwrap().expect("the full one");
        let second = batcher.take_due(late).unwrap().expect("the due one");
        assert_eq!(numbers(&[first, second]), [vec![1, 2], vec![3]]);
    }

    #[test]
    fn a_record_that_does_not_encode_is_refused_and_the_records_before_it_are_kept() {
        let mut batcher = batcher(1000, 1 << 20, NEVER);
        let now = Instant::now();
        batcher.push(&json!({"n": 1}), 1, now).unwrap();
        let err = batcher
            .push(&json!({"n": 18446744073709551615u64}), 2, now)
            .unwrap_err();
        assert!(
            matches!(err, AvroError::UnrepresentableNumber { record: 2, .. }),
            "{err}"
        );
        assert_eq!(numbers(&rest(&mut batcher)), [[1]]);
    }

    /// A container file of zavro's JSON schema with one block per entry of `blocks`, each of that many records.
    fn container(blocks: &[u64]) -> Vec<u8> {
        let mut file = ContainerWriter::new(JSON_SCHEMA, Codec::Null, [7; 16]);
        let mut n = 0;
        for &count in blocks {
            let mut encoder = BatchEncoder::new(Codec::Null);
            for _ in 0..count {
                n += 1;
                encoder.push(&json!({"n": n}), n as usize).unwrap();
            }
            let single = encoder.finish().unwrap();
            let mut reader = ContainerReader::new(&single).unwrap();
            file.write_raw_block(reader.next_raw_block().unwrap().expect("one block"));
        }
        file.finish()
    }

    #[test]
    fn a_container_file_is_cut_between_blocks_within_the_bounds() {
        let limits = Limits {
            records: 3,
            bytes: 1 << 20,
            linger: NEVER,
        };
        let batches = split_container(&container(&[2, 1, 2, 5, 1]), limits).unwrap();
        assert_eq!(
            numbers(&batches),
            [vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9, 10], vec![11]],
            "a block over the bound goes alone"
        );

        let limits = Limits { bytes: 1, ..limits };
        let batches = split_container(&container(&[1, 1]), limits).unwrap();
        assert_eq!(numbers(&batches), [[1], [2]], "cut for bytes too");
    }

    #[test]
    fn a_container_file_without_records_is_bad_input() {
        let limits = Limits {
            records: 3,
            bytes: 1 << 20,
            linger: NEVER,
        };
        for file in [container(&[]), container(&[0, 0])] {
            let err = split_container(&file, limits).unwrap_err();
            assert!(err.to_string().contains("no records"), "{err}");
        }
        let err = split_container(b"not avro", limits).unwrap_err();
        assert!(matches!(err, InputError::NotAvro(_)), "{err}");
    }

    #[test]
    fn linger_times_read_as_milliseconds_seconds_or_zero() {
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("1s", Duration::from_secs(1)),
            ("1.5s", Duration::from_millis(1500)),
            (" 20 ms ", Duration::from_millis(20)),
            ("3600s", MAX_LINGER),
        ] {
            assert_eq!(parse_linger(text), Ok(expected), "{text:?}");
        }
        for text in ["", "5", "1m", "-1s", "1.5ms", "infs", "NaNs", "3601s", "ms"] {
            let err = parse_linger(text).unwrap_err();
            assert!(err.contains("200ms, 1s or 0"), "{text:?}: {err}");
        }
    }
}
