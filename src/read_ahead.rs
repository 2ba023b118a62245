//! Records read, parsed and encoded as Avro on a thread of their own, ahead of the sender and in bounded memory,
//! so the sender can wait for input and for replies at once (a ZeroMQ socket becomes readable when records
//! arrive), and so reading and encoding use one core while signing and sending use the other.
//!
//! A blocking read of stdin cannot share a wait with sockets, and a sender that sat in it would neither cut a
//! lingering request nor collect acknowledgements. The thread does the blocking; the sender polls. Records are
//! handed over in order, in groups: one buffer of encoded records with where each ends, recycled once taken.

use std::{
    cell::RefCell,
    collections::VecDeque,
    io::Read,
    rc::Rc,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::{
    avro::{
        AvroError, RecordEncoder,
        transcode::{self, Transcoded},
        typed_transcode::{self, Direct},
    },
    client::poll_millis,
    error::Error,
    input::{Record, Records},
};

/// Most bytes of JSON text queued and not yet taken; a single larger record is still read, alone. What is read
/// ahead in all is at most about twice this plus one hand-over: the sender takes the whole queue at once, and
/// the thread may fill it again while the sender works through what it took. An encoded record takes about
/// its text's size, and this is kept small: enough for the thread to stay ahead while the sender signs and
/// sends, not a store of the input.
pub const CAPACITY: usize = 256 << 10;

/// Records the thread gathers before it hands them over, unless its next read may block first: handing over
/// one at a time made the two threads wake each other every few records (eight times the context switches of
/// a sender without the thread, and 30 % fewer records per second).
const HAND_OVER_RECORDS: usize = 256;

/// Bytes of JSON text the thread gathers before it hands them over (see [`HAND_OVER_RECORDS`]).
const HAND_OVER_BYTES: usize = CAPACITY / 4;

/// What the reading thread handed over, in input order.
#[derive(Debug)]
enum Handed {
    /// Records, encoded.
    Records(Encoded),
    /// The input is bad here (not JSON, or a record that does not encode); nothing follows.
    Failed(Error),
    /// The input ended; nothing follows.
    End,
}

/// Encoded records, one after the other, numbered from `first`.
#[derive(Debug, Default)]
struct Encoded {
    data: Vec<u8>,
    /// Where each record ends in `data`.
    ends: Vec<usize>,
    /// The 1-based number in the whole input of the first record.
    first: usize,
}

/// What the sender is given next, in input order.
#[derive(Debug)]
pub enum Item<'a> {
    /// A record, encoded in the schema of the encoder the thread was given.
    Record {
        /// Its Avro binary.
        bytes: &'a [u8],
        /// Its 1-based number in the whole input, which names it in errors.
        number: usize,
    },
    /// The input is bad here (not JSON, or a record that does not encode); nothing follows.
    Failed(Error),
    /// The input ended; nothing follows.
    End,
}

/// Why the reading thread could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ReadAheadError {
    /// The in-process socket that signals new records could not be set up.
    #[error("cannot set up the input signal: {0}")]
    Socket(#[from] zmq::Error),
    /// The OS refused a thread.
    #[error("cannot start the input thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Items read and not yet taken, with their weight in bytes of JSON text.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(Handed, usize)>,
    /// Buffers the sender is done with, for the thread to fill again.
    spare: Vec<Encoded>,
    bytes: usize,
    /// The sender is (about to be) blocked in a poll and must be signalled when an item arrives.
    waiting: bool,
    /// The thread is blocked for room and must be notified once the sender has taken what is queued.
    full: bool,
    /// The sender is gone: the thread stops at its next item.
    abandoned: bool,
}

/// What the thread and the sender share.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Notified when the sender has taken what is queued, or leaves.
    room: Condvar,
}

impl Shared {
    /// Poisoning would mean a panic elsewhere; the queue itself is always consistent, so it is used anyway.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues items once there is room for them; `None` when the sender is gone, else whether it must be
    /// signalled.
    fn put(&self, items: &mut Vec<(Handed, usize)>) -> Option<bool> {
        let weight: usize = items.iter().map(|(_, w)| w).sum();
        let mut queue = self.lock();
        while !queue.abandoned && queue.bytes > 0 && queue.bytes.saturating_add(weight) > CAPACITY {
            queue.full = true;
            queue = self
                .room
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if queue.abandoned {
            return None;
        }
        queue.bytes = queue.bytes.saturating_add(weight);
        queue.items.extend(items.drain(..));
        Some(std::mem::take(&mut queue.waiting))
    }
}

/// The records of a JSON text, read on their own thread.
///
/// Dropping it lets the thread stop at its next record; a thread blocked reading input that never comes is left
/// behind (the process is about to exit).
pub struct ReadAhead {
    shared: Arc<Shared>,
    /// Items taken from the shared queue in one go and not handed out yet.
    taken: VecDeque<Handed>,
    /// The group of records being handed out, and how many of them were.
    current: Option<(Encoded, usize)>,
    /// Readable when the thread queued an item while the sender waited.
    signal: zmq::Socket,
    /// A `Failed` or `End` was taken: nothing more comes.
    finished: bool,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ReadAhead {
    /// Starts reading the records of `reader`'s JSON text on a new thread, encoding them with `encoder`;
    /// `context` is the one whose sockets the sender polls.
    pub fn spawn<R: Read + Send + 'static>(
        reader: R,
        encoder: RecordEncoder,
        context: &zmq::Context,
    ) -> Result<ReadAhead, ReadAheadError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let address = format!(
            "inproc://zavro-read-ahead-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let signal = context.socket(zmq::PAIR)?;
        signal.set_linger(0)?;
        signal.bind(&address)?;
        let notifier = context.socket(zmq::PAIR)?;
        notifier.set_linger(0)?;
        notifier.connect(&address)?;
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("zavro-input".into())
            .spawn(move || read_records(reader, &encoder, &thread_shared, &notifier))?;
        Ok(ReadAhead {
            shared,
            taken: VecDeque::new(),
            current: None,
            signal,
            finished: false,
        })
    }

    /// The next item if one was read, without waiting; after `Failed` or `End`, always `End`.
    pub fn try_next(&mut self) -> Option<Item<'_>> {
        if self.finished {
            return Some(Item::End);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|(group, given)| *given == group.ends.len())
            && let Some((mut group, _)) = self.current.take()
        {
            group.data.clear();
            group.ends.clear();
            self.shared.lock().spare.push(group);
        }
        if self.current.is_none() {
            if self.taken.is_empty() {
                // Everything queued at once, one lock for many records; the thread gets its room back now.
                let resume = {
                    let mut queue = self.shared.lock();
                    self.taken
                        .extend(queue.items.drain(..).map(|(item, _)| item));
                    queue.bytes = 0;
                    std::mem::take(&mut queue.full)
                };
                if resume {
                    self.shared.room.notify_one();
                }
            }
            match self.taken.pop_front()? {
                Handed::Records(group) => self.current = Some((group, 0)),
                Handed::Failed(e) => {
                    self.finished = true;
                    return Some(Item::Failed(e));
                }
                Handed::End => {
                    self.finished = true;
                    return Some(Item::End);
                }
            }
        }
        let (group, given) = self.current.as_mut()?;
        let start = match *given {
            0 => 0,
            n => group.ends[n - 1],
        };
        let end = *group.ends.get(*given)?;
        let number = group.first + *given;
        *given += 1;
        Some(Item::Record {
            bytes: &group.data[start..end],
            number,
        })
    }

    /// Runs `wait`, which should block until its socket argument is readable (or whatever else it waits for),
    /// unless an item is already here. The socket becomes readable when an item arrives during the wait.
    pub fn wait_with<E>(&self, wait: impl FnOnce(&zmq::Socket) -> Result<(), E>) -> Result<(), E> {
        {
            let mut queue = self.shared.lock();
            let current = self
                .current
                .as_ref()
                .is_some_and(|(group, given)| *given < group.ends.len());
            if self.finished || current || !self.taken.is_empty() || !queue.items.is_empty() {
                return Ok(());
            }
            queue.waiting = true;
        }
        let result = wait(&self.signal);
        self.shared.lock().waiting = false;
        // Signals that came after the wait ended would only cause one spurious wake-up; clear them now.
        while self.signal.recv_bytes(zmq::DONTWAIT).is_ok() {}
        result
    }

    /// Waits at most `max` for an item.
    pub fn wait(&self, max: Duration) -> Result<(), zmq::Error> {
        self.wait_with(|signal| match signal.poll(zmq::POLLIN, poll_millis(max)) {
            Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
            Err(e) => Err(e),
        })
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.lock().abandoned = true;
        self.shared.room.notify_all();
    }
}

/// The thread: parses and encodes records and queues them, each group weighed by its JSON text, until the input
/// ends or fails or the sender leaves. Records are handed over in groups: when enough are gathered, and whenever
/// the next read of the input may block, so a slow stream still hands each record over as soon as it is parsed.
fn read_records<R: Read>(
    reader: R,
    encoder: &RecordEncoder,
    shared: &Shared,
    notifier: &zmq::Socket,
) {
    let gathered = Rc::new(RefCell::new(Gathered::default()));
    let watched = HandOverBeforeReading {
        inner: reader,
        gathered: Rc::clone(&gathered),
        shared,
        notifier,
    };
    let mut records = Records::new(watched);
    if let Some(plan) = encoder.plan() {
        typed_transcode::use_plan(plan);
    }
    let mut consumed = 0;
    loop {
        let outcome = match encoder.is_json() {
            true => transcode_next(&mut records, encoder),
            false => encode_next(&mut records, encoder),
        };
        let read = records.bytes_read();
        let weight = read.saturating_sub(consumed);
        consumed = read;
        let (full, last) = {
            let mut gathered = gathered.borrow_mut();
            gathered.bytes += weight;
            let last = match outcome {
                Some(Ok(())) => {
                    let number = records.records_read();
                    let end = transcode::with_writer(|writer| writer.out.len());
                    if gathered.records.ends.is_empty() {
                        gathered.records.first = number;
                    }
                    gathered.records.ends.push(end);
                    false
                }
                Some(Err(e)) => {
                    gathered.end = Some(Handed::Failed(e));
                    true
                }
                None => {
                    gathered.end = Some(Handed::End);
                    true
                }
            };
            let full = gathered.records.ends.len() >= HAND_OVER_RECORDS
                || gathered.bytes >= HAND_OVER_BYTES;
            (full, last)
        };
        if (full || last) && !hand_over(&gathered, shared, notifier) {
            return;
        }
        if last {
            return;
        }
    }
}

/// Reads the next record and transcodes it into the thread's writer (zavro's JSON schema).
fn transcode_next<R: Read>(
    records: &mut Records<R>,
    encoder: &RecordEncoder,
) -> Option<Result<(), Error>> {
    let number = records.records_read() + 1;
    let record = match records.next_record::<Transcoded>()? {
        Ok(record) => record,
        Err(e) => return Some(Err(e.into())),
    };
    let value = match record {
        Record::Parsed(Transcoded::Written) => return Some(Ok(())),
        Record::Parsed(Transcoded::Unrepresentable(text)) => {
            return Some(Err(AvroError::UnrepresentableNumber {
                record: number,
                number: text,
            }
            .into()));
        }
        // A repeated key: the tree keeps one entry per key, which is what is sent.
        Record::Parsed(Transcoded::RepeatedKey) => {
            match serde_json::from_slice::<Value>(records.last_text()) {
                Ok(value) => value,
                Err(e) => return Some(Err(Error::Other(format!("record {number}: {e}")))),
            }
        }
        Record::Tree(value) => value,
    };
    Some(transcode::with_writer(|writer| {
        encoder
            .write_value(&mut writer.out, &value, number)
            .map_err(Error::from)
    }))
}

/// Reads the next record and writes it into the thread's writer in the user's schema: straight from the text
/// ([`typed_transcode`]), or through its tree where that route leaves the record to the old one.
fn encode_next<R: Read>(
    records: &mut Records<R>,
    encoder: &RecordEncoder,
) -> Option<Result<(), Error>> {
    let number = records.records_read() + 1;
    let value = match records.next_record::<Direct>()? {
        Ok(Record::Parsed(Direct::Written)) => return Some(Ok(())),
        // It does not fit, or takes what the direct route leaves to the tree: the tree says which, and why.
        Ok(Record::Parsed(Direct::Refused)) => {
            match serde_json::from_slice::<Value>(records.last_text()) {
                Ok(value) => value,
                Err(e) => return Some(Err(Error::Other(format!("record {number}: {e}")))),
            }
        }
        Ok(Record::Tree(value)) => value,
        Err(e) => return Some(Err(e.into())),
    };
    Some(transcode::with_writer(|writer| {
        encoder
            .write_value(&mut writer.out, &value, number)
            .map_err(Error::from)
    }))
}

/// Records encoded and not yet handed over (their bytes are in the thread's writer), and what ends the input.
#[derive(Default)]
struct Gathered {
    records: Encoded,
    bytes: usize,
    end: Option<Handed>,
}

/// Queues what was gathered and signals the sender if it waits; false when the sender is gone.
fn hand_over(gathered: &RefCell<Gathered>, shared: &Shared, notifier: &zmq::Socket) -> bool {
    let mut gathered = gathered.borrow_mut();
    let mut items = Vec::with_capacity(2);
    if !gathered.records.ends.is_empty() {
        let spare = shared.lock().spare.pop().unwrap_or_default();
        let mut group = std::mem::replace(&mut gathered.records, spare);
        transcode::with_writer(|writer| std::mem::swap(&mut writer.out, &mut group.data));
        items.push((Handed::Records(group), gathered.bytes));
    }
    if let Some(end) = gathered.end.take() {
        items.push((end, 0));
    }
    if items.is_empty() {
        return true;
    }
    gathered.bytes = 0;
    match shared.put(&mut items) {
        None => false,
        // A failed signal means one is already pending (the socket's queue is full) or the sender is gone;
        // either way there is nothing to do.
        Some(true) => {
            let _ = notifier.send(&[][..], zmq::DONTWAIT);
            true
        }
        Some(false) => true,
    }
}

/// The input, as the parser reads it: before each read, which may block, what was gathered is handed over, so
/// no record waits in the thread for input that may not come.
struct HandOverBeforeReading<'a, R> {
    inner: R,
    gathered: Rc<RefCell<Gathered>>,
    shared: &'a Shared,
    notifier: &'a zmq::Socket,
}

impl<R: Read> Read for HandOverBeforeReading<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A sender that left makes the next hand-over fail; the thread then stops at its next record.
        hand_over(&self.gathered, self.shared, self.notifier);
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        time::{Duration, Instant},
    };

    use serde_json::json;

    use super::*;
    use crate::input::InputError;

    /// Bounds every wait, so a broken implementation fails instead of hanging.
    const DEADLINE: Duration = Duration::from_secs(20);

    fn spawn(reader: impl Read + Send + 'static) -> (ReadAhead, zmq::Context) {
        spawn_with(reader, RecordEncoder::default())
    }

    fn spawn_with(
        reader: impl Read + Send + 'static,
        encoder: RecordEncoder,
    ) -> (ReadAhead, zmq::Context) {
        let context = zmq::Context::new();
        let read_ahead = ReadAhead::spawn(reader, encoder, &context).unwrap();
        (read_ahead, context)
    }

    /// An item, owned.
    #[derive(Debug)]
    enum Got {
        Record(Vec<u8>, usize),
        Failed(Error),
        End,
    }

    fn owned(item: Item<'_>) -> Got {
        match item {
            Item::Record { bytes, number } => Got::Record(bytes.to_vec(), number),
            Item::Failed(e) => Got::Failed(e),
            Item::End => Got::End,
        }
    }

    /// A record of zavro's JSON schema, encoded.
    fn encoded(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        RecordEncoder::default()
            .write_value(&mut out, value, 1)
            .unwrap();
        out
    }

    /// The next item, waiting for it.
    fn next(read_ahead: &mut ReadAhead) -> Got {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(got) = read_ahead.try_next().map(owned) {
                return got;
            }
            assert!(Instant::now() < deadline, "no item within {DEADLINE:?}");
            read_ahead.wait(DEADLINE).unwrap();
        }
    }

    #[test]
    fn records_come_in_order_with_their_numbers_then_the_error_that_stopped_them() {
        let (mut read_ahead, _context) = spawn(&b"{\"a\":1}\n[2]\n3\nnot json\n4\n"[..]);
        for (expected, number) in [(json!({"a": 1}), 1), (json!([2]), 2), (json!(3), 3)] {
            match next(&mut read_ahead) {
                Got::Record(bytes, n) => assert_eq!((bytes, n), (encoded(&expected), number)),
                other => panic!("expected record {number}, got {other:?}"),
            }
        }
        match next(&mut read_ahead) {
            Got::Failed(Error::Input(InputError::NotJson { record: 4, .. })) => {}
            other => panic!("expected the error at record 4, got {other:?}"),
        }
        assert!(
            matches!(next(&mut read_ahead), Got::End),
            "nothing after the error"
        );
    }

    #[test]
    fn many_records_come_in_order_across_groups_and_blocks() {
        let text: String = (0..5000)
            .map(|n| format!("{{\"n\": {n}, \"pad\": \"{}\"}}\n", "x".repeat(n % 97)))
            .collect();
        let (mut read_ahead, _context) = spawn(std::io::Cursor::new(text.into_bytes()));
        for n in 0..5000usize {
            match next(&mut read_ahead) {
                Got::Record(bytes, number) => {
                    let expected = json!({"n": n, "pad": "x".repeat(n % 97)});
                    assert_eq!((bytes, number), (encoded(&expected), n + 1));
                }
                other => panic!("expected record {}, got {other:?}", n + 1),
            }
        }
        assert!(matches!(next(&mut read_ahead), Got::End));
    }

    #[test]
    fn a_record_that_does_not_encode_stops_the_input_after_the_records_before_it() {
        let (mut read_ahead, _context) = spawn(&b"1\n{\"big\": 18446744073709551616}\n3\n"[..]);
        assert!(matches!(next(&mut read_ahead), Got::Record(_, 1)));
        match next(&mut read_ahead) {
            Got::Failed(Error::Avro(AvroError::UnrepresentableNumber { record: 2, number })) => {
                assert_eq!(number, "18446744073709551616")
            }
            other => panic!("expected the refusal of record 2, got {other:?}"),
        }
        assert!(matches!(next(&mut read_ahead), Got::End));
    }

    #[test]
    fn records_of_a_user_schema_are_encoded_in_it() {
        let schema = crate::avro::UserSchema::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#,
        )
        .unwrap();
        let batch = crate::avro::BatchEncoder::with_schema(apache_avro::Codec::Null, schema);
        let (mut read_ahead, _context) =
            spawn_with(&b"{\"n\": 1}\n{\"n\": \"x\"}\n"[..], batch.record_encoder());
        match next(&mut read_ahead) {
            Got::Record(bytes, 1) => assert_eq!(bytes, [2]),
            other => panic!("expected record 1, got {other:?}"),
        }
        match next(&mut read_ahead) {
            Got::Failed(Error::Avro(AvroError::DoesNotFit { record: 2, reason })) => {
                assert!(reason.contains("$.n: expected long"), "{reason}")
            }
            other => panic!("expected record 2 not to fit, got {other:?}"),
        }
    }

    #[test]
    fn records_of_a_user_schema_the_direct_route_leaves_are_encoded_from_their_tree() {
        let schema = crate::avro::UserSchema::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#,
        )
        .unwrap();
        let batch = crate::avro::BatchEncoder::with_schema(apache_avro::Codec::Null, schema);
        // A repeated key (the last value counts, as in the tree), then a lone array's elements, read whole.
        for (text, expected) in [
            (&b"{\"n\": 1}\n{\"n\": \"x\", \"n\": 2}\n"[..], [[2u8], [4]]),
            (&b"[{\"n\": 3}, {\"n\": -3}]"[..], [[6], [5]]),
        ] {
            let (mut read_ahead, _context) = spawn_with(text, batch.record_encoder());
            for (number, bytes) in expected.iter().enumerate() {
                match next(&mut read_ahead) {
                    Got::Record(got, n) => assert_eq!((&got[..], n), (&bytes[..], number + 1)),
                    other => panic!("expected record {}, got {other:?}", number + 1),
                }
            }
            assert!(matches!(next(&mut read_ahead), Got::End));
        }
    }

    #[test]
    fn an_empty_input_fails_like_records_does() {
        let (mut read_ahead, _context) = spawn(&b"  \n"[..]);
        assert!(matches!(
            next(&mut read_ahead),
            Got::Failed(Error::Input(InputError::Empty))
        ));
    }

    #[test]
    fn a_wait_ends_when_a_record_arrives_on_an_open_input() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let (mut read_ahead, _context) = spawn(reader);
        read_ahead.wait(Duration::from_millis(10)).unwrap();
        assert!(read_ahead.try_next().is_none(), "nothing was written yet");

        writer.write_all(b"{\"late\":true}\n").unwrap();
        // The writer stays open: the record must come on its own, not with the end of input.
        let started = Instant::now();
        read_ahead.wait(DEADLINE).unwrap();
        assert!(
            started.elapsed() < DEADLINE,
            "the wait ended on the signal, not on its timeout"
        );
        match next(&mut read_ahead) {
            Got::Record(bytes, number) => {
                assert_eq!((bytes, number), (encoded(&json!({"late": true})), 1))
            }
            other => panic!("expected the record, got {other:?}"),
        }
        drop(writer);
        assert!(matches!(next(&mut read_ahead), Got::End));
    }

    /// An endless input of small records, counting the bytes handed out.
    struct Endless {
        served: Arc<AtomicU64>,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            const LINE: &[u8] = b"{\"some\":\"record\"}\n";
            let lines = buf.len() / LINE.len();
            for chunk in buf.chunks_exact_mut(LINE.len()).take(lines) {
                chunk.copy_from_slice(LINE);
            }
            let n = lines * LINE.len();
            self.served.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    #[test]
    fn reading_ahead_stops_at_the_capacity_until_the_sender_takes_what_is_queued() {
        let served = Arc::new(AtomicU64::new(0));
        let (mut read_ahead, _context) = spawn(Endless {
            served: Arc::clone(&served),
        });
        let deadline = Instant::now() + DEADLINE;
        while !read_ahead.shared.lock().full {
            assert!(Instant::now() < deadline, "the queue never filled");
            thread::sleep(Duration::from_millis(5));
        }
        // Time for a thread that ignored the bound to run past it.
        thread::sleep(Duration::from_millis(50));
        let queued = read_ahead.shared.lock().bytes;
        let read = served.load(Ordering::Relaxed) as usize;
        assert!(queued <= CAPACITY, "{queued} bytes queued");
        assert!(
            read <= CAPACITY + HAND_OVER_BYTES + (1 << 16),
            "{read} bytes read: no more than the queue, one gathered hand-over and one read buffer"
        );

        // Taking what is queued lets the thread read on.
        assert!(matches!(read_ahead.try_next(), Some(Item::Record { .. })));
        let deadline = Instant::now() + DEADLINE;
        while served.load(Ordering::Relaxed) as usize == read {
            assert!(Instant::now() < deadline, "draining made no room");
            thread::sleep(Duration::from_millis(5));
        }
    }
}
