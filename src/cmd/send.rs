//! `zavro send ENDPOINT…`: stream JSON records from stdin, encode and sign them in batches, and keep a window of
//! requests in flight until every record is acknowledged.

use std::{
    io::{IsTerminal, Read},
    time::{Duration, Instant},
};

use apache_avro::Codec;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zeroize::Zeroizing;

use crate::{
    avro::{BatchEncoder, UserSchema},
    batch::{self, Batch, Batcher, Limits},
    cli::{CodecArg, InputFormat, SendArgs},
    client::{self, Client, Identity},
    config, credentials,
    endpoint::{self, Side},
    error::Error,
    input::InputError,
    protocol::Request,
    read_ahead::{Item, ReadAhead},
    timestamp,
};

/// How long a wait for input lasts when no record is pending: only to look again, nothing is due.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Sends everything on stdin; succeeds only when the servers accepted every record.
pub fn run(args: SendArgs) -> Result<(), Error> {
    let profile = config::profile(args.profile.as_deref())?;
    let endpoints = config::endpoints(&args.endpoints, profile.as_ref())?
        .iter()
        .map(|e| endpoint::resolve(e, Side::Connect))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::Usage)?;
    let key = config::key_id(args.key.as_deref(), profile.as_ref())?;
    let transport = config::transport(
        args.transport.server_key.as_deref(),
        args.transport.plaintext,
        profile.as_ref(),
    )?;
    let resolve_secret = || config::secret(args.secret_file.as_deref(), profile.as_ref(), &key);
    // Records typed on the terminal and a secret typed there cannot be read at once: the input thread would
    // take the secret's line. So a terminal gets the question first, before any input is read.
    let asked_first = if std::io::stdin().is_terminal() {
        Some(resolve_secret()?)
    } else {
        None
    };

    let limits = Limits {
        records: u64::from(args.batch),
        bytes: args.batch_bytes as usize,
        linger: args.linger,
    };
    let context = zmq::Context::new();
    let mut input = match args.format {
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
            Input::Json {
                records: Box::new(
                    ReadAhead::spawn(std::io::stdin(), encoder.record_encoder(), &context)
                        .map_err(|e| Error::Other(e.to_string()))?,
                ),
                batcher: Batcher::new(encoder, limits),
            }
        }
        InputFormat::Avro => {
            if args.codec != CodecArg::Null || args.schema.is_some() {
                return Err(Error::Usage(
                    "--codec and --schema apply to JSON input; an Avro file is sent with its own"
                        .into(),
                ));
            }
            let mut file = Vec::new();
            std::io::stdin()
                .read_to_end(&mut file)
                .map_err(InputError::Read)?;
            Input::Avro(batch::split_container(&file, limits)?.into_iter())
        }
    };
    // The first batch is read and encoded before the secret is asked for, so input that is not JSON sends
    // nothing and asks nothing.
    let mut next = match input.next(None)? {
        Next::Batch(batch) => Some(batch),
        Next::End => None,
        Next::Bad(e) => return Err(e),
    };

    let secret = match asked_first {
        Some(secret) => secret,
        None => resolve_secret()?,
    };
    let settings = client::Settings {
        timeout: Duration::from_secs_f64(args.timeout),
        retries: args.retries,
        window: args.window as usize,
    };
    let identity = Identity {
        key: key.clone(),
        secret: secret.clone(),
    };
    let mut sender = Sender {
        key: &key,
        secret,
        client: Client::connect(&context, &endpoints, settings, transport, identity)?,
        progress: Progress::new(),
        requests: 0,
        last_audit_id: None,
    };
    let input_error = loop {
        let Some(batch) = next else {
            break None;
        };
        sender.submit(batch)?;
        next = match input.next(Some(&mut sender))? {
            Next::Batch(batch) => Some(batch),
            Next::End => None,
            Next::Bad(e) => break Some(e),
        };
    };
    // Every request already sent is seen through, even when the input turned bad later on.
    sender.client.flush()?;
    sender.collect();
    sender.progress.finish();
    let accepted = sender.client.accepted_records();
    if let Some(e) = input_error {
        if accepted > 0 {
            eprintln!("zavro: the {accepted} records before the bad input were sent and accepted");
        }
        return Err(e);
    }
    let resent = match sender.client.resends() {
        0 => String::new(),
        n => format!("; {n} resends after timeouts or `internal` refusals"),
    };
    let requests = sender.requests;
    eprintln!(
        "accepted {accepted} record{} in {requests} request{} (last audit id {}){resent}",
        if accepted == 1 { "" } else { "s" },
        if requests == 1 { "" } else { "s" },
        sender
            .last_audit_id
            .map_or_else(|| "-".into(), |id| id.to_string()),
    );
    Ok(())
}

/// What the input gives next.
enum Next {
    /// A request's worth of records.
    Batch(Batch),
    /// The input ended and every record was handed out.
    End,
    /// The input is bad here: what came before it was handed out, nothing after it is.
    Bad(Error),
}

/// Where payloads come from.
enum Input {
    /// JSON records, read on their own thread and cut into requests as they come.
    Json {
        /// Boxed: the reader's state is large beside the other variant's.
        records: Box<ReadAhead>,
        batcher: Batcher,
    },
    /// An Avro container file, already cut into payloads.
    Avro(std::vec::IntoIter<Batch>),
}

impl Input {
    /// The next request's worth of records. While it waits for input, the `sender` (once there is one) handles
    /// replies as they come; its failures are returned as errors, bad input as [`Next::Bad`].
    fn next(&mut self, mut sender: Option<&mut Sender>) -> Result<Next, Error> {
        let (records, batcher) = match self {
            Input::Json { records, batcher } => (records, batcher),
            Input::Avro(batches) => return Ok(batches.next().map_or(Next::End, Next::Batch)),
        };
        loop {
            match records.try_next() {
                Some(Item::Record { bytes, .. }) => {
                    if let Err(e) = batcher.push_encoded(bytes, Instant::now()) {
                        return Ok(Next::Bad(e.into()));
                    }
                    if let Some(batch) = batcher.take_full() {
                        return Ok(Next::Batch(batch));
                    }
                }
                Some(Item::Failed(e)) => return Ok(Next::Bad(e)),
                Some(Item::End) => {
                    return Ok(match batcher.take_rest() {
                        Ok(batch) => batch.map_or(Next::End, Next::Batch),
                        Err(e) => Next::Bad(e.into()),
                    });
                }
                None => {
                    // Nothing more is at hand: a lingering request goes now, with every record read so far.
                    let now = Instant::now();
                    match batcher.take_due(now) {
                        Ok(Some(batch)) => return Ok(Next::Batch(batch)),
                        Ok(None) => {}
                        Err(e) => return Ok(Next::Bad(e.into())),
                    }
                    let max = batcher.deadline().map_or(IDLE_WAIT, |deadline| {
                        deadline.saturating_duration_since(now)
                    });
                    match sender.as_deref_mut() {
                        Some(sender) => records.wait_with(|signal| sender.wait(signal, max))?,
                        None => records
                            .wait(max)
                            .map_err(|e| Error::Other(format!("cannot wait for input: {e}")))?,
                    }
                }
            }
        }
    }
}

/// Signs and sends requests, and keeps what the user is told about them.
struct Sender<'a> {
    key: &'a str,
    secret: Zeroizing<String>,
    client: Client,
    progress: Progress,
    requests: u64,
    last_audit_id: Option<i64>,
}

impl Sender<'_> {
    /// Signs and queues a request, waiting while the window is full.
    fn submit(&mut self, batch: Batch) -> Result<(), Error> {
        let request = Request::sign(
            self.key,
            self.secret.as_bytes(),
            timestamp::now_seconds(),
            &credentials::new_nonce()?,
            batch.payload,
        );
        self.client.submit(&request, batch.records)?;
        self.requests += 1;
        self.collect();
        Ok(())
    }

    /// Handles replies for at most `max`, or until the input `signal` is readable.
    fn wait(&mut self, signal: &zmq::Socket, max: Duration) -> Result<(), Error> {
        self.client.wait_with(signal, max)?;
        self.collect();
        Ok(())
    }

    /// Takes in the replies collected so far.
    fn collect(&mut self) {
        if let Some(last) = self.client.take_accepted().last() {
            self.last_audit_id = Some(last.audit_id);
        }
        self.progress.set(self.client.accepted_records());
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
