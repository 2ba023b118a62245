//! `zavro send ENDPOINT…`: stream JSON records from stdin, encode and sign them in batches, and keep a window of
//! requests in flight until every record is acknowledged.

use std::{
    io::{BufReader, IsTerminal, Read},
    time::Duration,
};

use apache_avro::Codec;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{
    avro::{
        BatchEncoder, UserSchema,
        container::{ContainerError, ContainerReader, ContainerWriter},
    },
    cli::{CodecArg, InputFormat, SendArgs},
    client::{self, Client},
    config, credentials,
    endpoint::{self, Side},
    error::Error,
    input::{InputError, Records},
    protocol::Request,
    timestamp,
};

/// Sends everything on stdin; succeeds only when the servers accepted every record.
pub fn run(args: SendArgs) -> Result<(), Error> {
    let profile = config::profile(args.profile.as_deref())?;
    let endpoints = config::endpoints(&args.endpoints, profile.as_ref())?
        .iter()
        .map(|e| endpoint::resolve(e, Side::Connect))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::Usage)?;
    let key = config::key_id(args.key.as_deref(), profile.as_ref())?;

    let mut batches = match args.format {
        InputFormat::Json => {
            let encoder = match &args.schema {
                None => BatchEncoder::new(codec(args.codec)),
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        Error::Usage(format!("cannot read schema {}: {e}", path.display()))
                    })?;
                    let schema = UserSchema::parse(&text)
                        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
                    BatchEncoder::with_schema(codec(args.codec), schema)
                }
            };
            Source::Json {
                records: Records::new(BufReader::with_capacity(1 << 16, std::io::stdin().lock())),
                batcher: Batcher::new(u64::from(args.batch), args.batch_bytes as usize, encoder),
            }
        }
        InputFormat::Avro => {
            if args.codec != CodecArg::Null || args.schema.is_some() {
                return Err(Error::Usage(
                    "--codec and --schema apply to JSON input; an Avro file is sent with its own"
                        .into(),
                ));
            }
            Source::Avro(
                avro_batches(u64::from(args.batch), args.batch_bytes as usize)?.into_iter(),
            )
        }
    };
    // The first batch is read and encoded before the secret is asked for, so input that is not JSON sends
    // nothing and asks nothing.
    let mut next = batches.next()?;

    let secret = config::secret(args.secret_file.as_deref(), profile.as_ref(), &key)?;
    let context = zmq::Context::new();
    let settings = client::Settings {
        timeout: Duration::from_secs_f64(args.timeout),
        retries: args.retries,
        window: args.window as usize,
    };
    let mut client = Client::connect(&context, &endpoints, settings)?;
    let progress = Progress::new();
    let mut requests = 0u64;
    let mut last_audit_id = None;
    let input_error = loop {
        let Some((payload, count)) = next else {
            break None;
        };
        let request = Request::sign(
            &key,
            secret.as_bytes(),
            timestamp::now_seconds(),
            &credentials::new_nonce()?,
            payload,
        );
        client.submit(&request, count)?;
        requests += 1;
        last_audit_id = client
            .take_accepted()
            .last()
            .map(|a| a.audit_id)
            .or(last_audit_id);
        progress.set(client.accepted_records());
        next = match batches.next() {
            Ok(batch) => batch,
            Err(e) => break Some(e),
        };
    };
    // Every request already sent is seen through, even when the input turned bad later on.
    client.flush()?;
    last_audit_id = client
        .take_accepted()
        .last()
        .map(|a| a.audit_id)
        .or(last_audit_id);
    progress.finish();
    let accepted = client.accepted_records();
    if let Some(e) = input_error {
        if accepted > 0 {
            eprintln!("zavro: the {accepted} records before the bad input were sent and accepted");
        }
        return Err(e);
    }
    let resent = match client.resends() {
        0 => String::new(),
        n => format!("; {n} resends after timeouts"),
    };
    eprintln!(
        "accepted {accepted} record{} in {requests} request{} (last audit id {}){resent}",
        if accepted == 1 { "" } else { "s" },
        if requests == 1 { "" } else { "s" },
        last_audit_id.map_or_else(|| "-".into(), |id| id.to_string()),
    );
    Ok(())
}

/// Where payloads come from.
enum Source<R: Read> {
    /// JSON records, encoded as they are read.
    Json {
        records: Records<R>,
        batcher: Batcher,
    },
    /// An Avro container file, already cut into payloads.
    Avro(std::vec::IntoIter<(Vec<u8>, u64)>),
}

impl<R: Read> Source<R> {
    /// The next payload and its record count, or `None` when the input is used up.
    fn next(&mut self) -> Result<Option<(Vec<u8>, u64)>, Error> {
        match self {
            Source::Json { records, batcher } => batcher.next(records),
            Source::Avro(batches) => Ok(batches.next()),
        }
    }
}

fn codec(arg: CodecArg) -> Codec {
    match arg {
        CodecArg::Null => Codec::Null,
        CodecArg::Deflate => Codec::Deflate(Default::default()),
        CodecArg::Snappy => Codec::Snappy,
        CodecArg::Zstandard => Codec::Zstandard(Default::default()),
    }
}

/// Reads an Avro container file from stdin and cuts it, between blocks, into payloads of at most
/// `max_records` records and about `max_bytes` bytes, each with the file's own schema and codec.
fn avro_batches(max_records: u64, max_bytes: usize) -> Result<Vec<(Vec<u8>, u64)>, Error> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(InputError::Read)?;
    let bad = |e: ContainerError| Error::Input(InputError::NotAvro(e.to_string()));
    let mut file = ContainerReader::new(&bytes).map_err(bad)?;
    let (schema, codec) = (file.header().schema, file.header().codec);
    let mut batches = Vec::new();
    let mut current: Option<(ContainerWriter, u64)> = None;
    while let Some(block) = file.next_raw_block().map_err(bad)? {
        if let Some((writer, count)) = &current
            && *count > 0
            && (*count + block.count > max_records || writer.len() + block.data.len() > max_bytes)
        {
            let (writer, count) = current.take().expect("checked above");
            batches.push((writer.finish(), count));
        }
        let (writer, count) = current.get_or_insert_with(|| {
            let mut sync = [0u8; 16];
            // A fresh marker per payload; a failed RNG only makes it less unique, which Avro tolerates.
            let _ = getrandom::fill(&mut sync);
            (ContainerWriter::with_raw_schema(schema, codec, sync), 0)
        });
        writer.write_raw_block(block);
        *count += block.count;
    }
    batches.extend(current.map(|(writer, count)| (writer.finish(), count)));
    if batches.iter().all(|(_, count)| *count == 0) {
        return Err(InputError::NotAvro("the file holds no records".into()).into());
    }
    Ok(batches)
}

/// Cuts the record stream into payloads of at most `max_records` records and about `max_bytes` bytes.
struct Batcher {
    encoder: BatchEncoder,
    /// A record that did not fit the previous batch, already encoded.
    carry: Option<Vec<u8>>,
    max_records: u64,
    max_bytes: usize,
}

impl Batcher {
    fn new(max_records: u64, max_bytes: usize, encoder: BatchEncoder) -> Self {
        Batcher {
            encoder,
            carry: None,
            max_records,
            max_bytes,
        }
    }

    /// The next payload and its record count, or `None` when the input is used up.
    fn next<R: Read>(&mut self, records: &mut Records<R>) -> Result<Option<(Vec<u8>, u64)>, Error> {
        if let Some(carried) = self.carry.take() {
            self.encoder.push_encoded(carried);
        }
        while self.encoder.len() < self.max_records {
            let Some(record) = records.next() else {
                break;
            };
            let before = self.encoder.encoded_bytes();
            self.encoder.push(&record?, records.records_read())?;
            if self.encoder.encoded_bytes() > self.max_bytes && self.encoder.len() > 1 {
                self.carry = Some(self.encoder.pop_last(before));
                break;
            }
        }
        if self.encoder.is_empty() {
            return Ok(None);
        }
        let count = self.encoder.len();
        Ok(Some((self.encoder.finish()?, count)))
    }
}

/// Records/s on stderr while a long stream is sent, when stderr is a terminal.
struct Progress(ProgressBar);

impl Progress {
    fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {human_pos} records accepted, {per_sec}, {elapsed}",
                )
                .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress(bar)
    }

    fn set(&self, accepted: u64) {
        self.0.set_position(accepted);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
