//! `zavro send ENDPOINT…`: stream JSON records from stdin, encode and sign them in batches, and keep a window of
//! requests in flight until every record is acknowledged. With `--spool DIR`, every request is made durable in
//! the spool (`crate::spool`) before more input is read, and acknowledged there once the server stored it.
//! With `--follow FILE`, the input is files followed as `tail -F` does (`crate::follow`), and each request is
//! spooled with the position after its lines, so a restart resumes exactly there.

use std::{
    collections::HashMap,
    io::{IsTerminal, Read},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use apache_avro::Codec;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zeroize::Zeroizing;

use crate::{
    avro::{BatchEncoder, UserSchema},
    batch::{self, Batch, Batcher, Limits},
    cli::{CodecArg, InputFormat, SendArgs},
    client::{self, Client, ClientError, Identity},
    config, credentials,
    endpoint::{self, Side},
    error::Error,
    follow::{self, Checkpoint, Event, Follower, Requests, saved},
    input::InputError,
    protocol::Request,
    read_ahead::{Item, ReadAhead},
    spool::{self, Spool, SpoolError},
    timestamp,
};

/// Times one spooled request is signed again in one run after `clock_skew` refusals before `send` gives up: a
/// request signed a moment ago and still refused means this machine's clock is off, not that it waited.
const MAX_SIGNINGS: u32 = 3;

/// How long a wait for input lasts when no record is pending: only to look again, nothing is due.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// How often followed files are looked at when they are quiet: a line written is sent at most this late (plus
/// the linger), and a quiet file costs a stat and an fstat this often.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// How long `send --follow` spools only, once the server could not be reached, before it connects again and
/// sends what waits in the spool.
const FOLLOW_RETRY: Duration = Duration::from_secs(5);

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
    // The spool first: a second `send` on it stops here, before it reads any input.
    // Set when `--requeue-refused` found the spool full: the run then ends with exit 10.
    let mut requeue_stopped = None;
    let spool = match &args.spool {
        Some(dir) => {
            let mut spool =
                Spool::open(dir, args.spool_max_size.unwrap_or(spool::DEFAULT_MAX_SIZE))?;
            if args.requeue_refused {
                let requeued = spool.requeue_refused()?;
                eprintln!(
                    "zavro: put {} kept request{} back in line in spool {}",
                    requeued.back,
                    if requeued.back == 1 { "" } else { "s" },
                    dir.display()
                );
                if let Some(full) = requeued.full {
                    // What waits is delivered all the same; the rest goes back in line in a later run.
                    requeue_stopped = Some(format!(
                        "{full}: {} kept request{} left in {} for another `--requeue-refused` once what waits \
                         is delivered",
                        requeued.still_kept,
                        if requeued.still_kept == 1 { "" } else { "s" },
                        spool::refused::dir(dir).display()
                    ));
                }
            }
            Some(spool)
        }
        None => None,
    };
    let following = !args.follow.is_empty();
    // Any run on a spool keeps the followed files' position through the segments it deletes (a `--flush` of
    // requests a `--follow` spooled, say), so it is read whatever the input.
    let (follow_saved, resume) = match &spool {
        Some(spool) => {
            let (saved, resume) = FollowSaved::read(spool)?;
            (Some(saved), resume)
        }
        None => (None, None),
    };
    // Bad (or empty) input still lets requests waiting in the spool go first: they were taken from earlier
    // input, and delivering them does not depend on this run's.
    let spool_waits = spool.as_ref().is_some_and(|spool| spool.waiting() > 0);
    let mut bad_at_once = None;
    let mut input = match args.format {
        _ if args.flush => Input::Nothing,
        InputFormat::Avro if following => {
            return Err(Error::Usage(
                "--follow reads JSON lines; --format avro applies to stdin".into(),
            ));
        }
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
            match &spool {
                Some(_) if following => {
                    let batcher = Batcher::new(encoder, limits);
                    let input = Following::start(&args.follow, resume.as_ref(), batcher)?;
                    Input::Follow(Box::new(input))
                }
                _ => Input::Json {
                    records: Box::new(
                        ReadAhead::spawn(std::io::stdin(), encoder.record_encoder(), &context)
                            .map_err(|e| Error::Other(e.to_string()))?,
                    ),
                    batcher: Batcher::new(encoder, limits),
                },
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
            match batch::split_container(&file, limits) {
                Ok(batches) => Input::Avro(batches.into_iter()),
                Err(e) if spool_waits => {
                    bad_at_once = Some(Error::from(e));
                    Input::Nothing
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    // The first batch is read and encoded before the secret is asked for, so input that is not JSON sends
    // nothing and asks nothing. Followed files may stay quiet for hours: their first batch is waited for once
    // the sender is up and delivering what waits in the spool.
    let mut next = match &input {
        Input::Follow(_) => None,
        _ => match input.next(None)? {
            Next::Batch(batch, position) => Some((batch, position)),
            Next::End => None,
            Next::Bad(e) if spool_waits => {
                bad_at_once = Some(e);
                None
            }
            Next::Bad(e) => return Err(e),
        },
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
    // Following runs for as long as the files are written: a server found unreachable is tried again later.
    let reconnect = following.then(|| Reconnect {
        context: context.clone(),
        endpoints: endpoints.clone(),
        settings,
        transport: transport.clone(),
    });
    let mut client = Client::connect(&context, &endpoints, settings, transport, identity)?;
    if spool.is_some() {
        client.return_stale_requests();
        client.return_refused_requests();
    }
    let mut sender = Sender {
        key: &key,
        secret,
        client,
        progress: Progress::new(),
        requests: 0,
        last_audit_id: None,
        spooling: spool
            .map(|spool| Spooling::new(spool, follow_saved.unwrap_or_default(), requeue_stopped)),
        reconnect,
        retry_at: None,
        accepted_earlier: 0,
        outage_said_at: None,
    };
    // What waited in the spool goes first, in order, before any new input.
    if let Err(e) = sender.deliver_waiting() {
        // The run stops on the delivery's error; the input's is said too, not lost, and so is what was kept
        // aside before it (no later run would mention it: it is no longer in the spool).
        if let Some(bad) = &bad_at_once {
            eprintln!("zavro: {bad}");
        }
        sender.say_kept();
        return Err(e);
    }
    let mut started = !matches!(input, Input::Follow(_));
    let stopped = loop {
        if let Some(e) = bad_at_once.take() {
            break Stop::BadInput(e);
        }
        if !started {
            started = true;
            next = match input.next(Some(&mut sender))? {
                Next::Batch(batch, position) => Some((batch, position)),
                Next::End => None,
                Next::Bad(e) => break Stop::BadInput(e),
            };
        }
        let Some((batch, position)) = next else {
            break Stop::End;
        };
        if let Err(full) = sender.submit(batch, position) {
            break full.into_stop()?;
        }
        next = match input.next(Some(&mut sender))? {
            Next::Batch(batch, position) => Some((batch, position)),
            Next::End => None,
            Next::Bad(e) => break Stop::BadInput(e),
        };
    };
    // Every request already sent is seen through, even when the input turned bad later on.
    if let Err(e) = sender.finish() {
        if let Stop::BadInput(bad) = &stopped {
            eprintln!("zavro: {bad}");
        }
        sender.say_kept();
        return Err(e);
    }
    sender.progress.finish();
    if let Some(spooling) = sender.spooling.take() {
        return spooling.report(&sender, stopped, args.flush);
    }
    let Stop::BadInput(input_error) = stopped else {
        return sender.report_success();
    };
    let accepted = sender.client.accepted_records();
    if accepted > 0 {
        eprintln!("zavro: the {accepted} records before the bad input were sent and accepted");
    }
    Err(input_error)
}

/// Why the input loop ended.
enum Stop {
    /// The input ended, every record taken.
    End,
    /// The input is bad here: what came before it was taken, nothing after it.
    BadInput(Error),
    /// The spool is full: the input was not read further (the message says how far it was).
    SpoolFull(SpoolError),
}

/// A request that could not be submitted.
enum Refused {
    /// The spool is full; the batch in hand is not spooled.
    Full(SpoolError),
    /// Anything else, which ends the run.
    Failed(Error),
}

impl Refused {
    /// The loop's end for a full spool; other failures end the run.
    fn into_stop(self) -> Result<Stop, Error> {
        match self {
            Refused::Full(e) => Ok(Stop::SpoolFull(e)),
            Refused::Failed(e) => Err(e),
        }
    }
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Failed(e)
    }
}

impl From<ClientError> for Refused {
    fn from(e: ClientError) -> Self {
        Refused::Failed(e.into())
    }
}

impl Sender<'_> {
    /// The last line of a run without a spool that sent everything.
    /// Says what this run kept aside in the spool and how to put it back, for a run that stops on an error.
    fn say_kept(&self) {
        if let Some(kept) = self.spooling.as_ref().and_then(Spooling::kept_summary) {
            eprintln!("zavro: {kept}");
        }
    }

    fn report_success(&self) -> Result<(), Error> {
        let accepted = self.client.accepted_records();
        let resent = match self.client.resends() {
            0 => String::new(),
            n => format!("; {n} resends after timeouts or `internal` refusals"),
        };
        let requests = self.requests;
        eprintln!(
            "accepted {accepted} record{} in {requests} request{} (last audit id {}){resent}",
            if accepted == 1 { "" } else { "s" },
            if requests == 1 { "" } else { "s" },
            self.last_audit_id
                .map_or_else(|| "-".into(), |id| id.to_string()),
        );
        Ok(())
    }
}

/// What the input gives next.
enum Next {
    /// A request's worth of records, and for followed files where reading resumes after them.
    Batch(Batch, Option<Checkpoint>),
    /// The input ended and every record was handed out.
    End,
    /// The input is bad here: what came before it was handed out, nothing after it is.
    Bad(Error),
}

/// Where payloads come from.
enum Input {
    /// No input at all (`--flush`): only what waits in the spool is sent.
    Nothing,
    /// JSON records, read on their own thread and cut into requests as they come.
    Json {
        /// Boxed: the reader's state is large beside the other variant's.
        records: Box<ReadAhead>,
        batcher: Batcher,
    },
    /// An Avro container file, already cut into payloads.
    Avro(std::vec::IntoIter<Batch>),
    /// Followed files (`--follow`).
    Follow(Box<Following>),
}

impl Input {
    /// The next request's worth of records. While it waits for input, the `sender` (once there is one) handles
    /// replies as they come; its failures are returned as errors, bad input as [`Next::Bad`].
    fn next(&mut self, mut sender: Option<&mut Sender>) -> Result<Next, Error> {
        let (records, batcher) = match self {
            Input::Json { records, batcher } => (records, batcher),
            Input::Avro(batches) => {
                return Ok(batches
                    .next()
                    .map_or(Next::End, |batch| Next::Batch(batch, None)));
            }
            Input::Nothing => return Ok(Next::End),
            Input::Follow(following) => return following.next(sender),
        };
        loop {
            match records.try_next() {
                Some(Item::Record { bytes, .. }) => {
                    if let Err(e) = batcher.push_encoded(bytes, Instant::now()) {
                        return Ok(Next::Bad(e.into()));
                    }
                    if let Some(batch) = batcher.take_full() {
                        return Ok(Next::Batch(batch, None));
                    }
                }
                Some(Item::Failed(e)) => return Ok(Next::Bad(e)),
                Some(Item::End) => {
                    return Ok(match batcher.take_rest() {
                        Ok(batch) => batch.map_or(Next::End, |batch| Next::Batch(batch, None)),
                        Err(e) => Next::Bad(e.into()),
                    });
                }
                None => {
                    // Nothing more is at hand: a lingering request goes now, with every record read so far.
                    let now = Instant::now();
                    match batcher.take_due(now) {
                        Ok(Some(batch)) => return Ok(Next::Batch(batch, None)),
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

/// Files followed as `tail -F` does, their lines cut into requests, each with the position after its lines;
/// until SIGTERM or SIGINT, then the lines read so far go as the last requests.
struct Following {
    follower: Follower,
    requests: Requests,
    /// Set by SIGTERM or SIGINT.
    stop: Arc<AtomicBool>,
}

/// Where followed files' reading resumes, as the spool holds it: the newest position spooled with a request
/// and not yet saved beside the spool, and the sequence number of the one saved there (`follow::saved`), which
/// must be replaced before the segment holding a newer one is deleted.
#[derive(Default)]
struct FollowSaved {
    newest: Option<(u64, Checkpoint)>,
    saved_seq: Option<u64>,
}

impl FollowSaved {
    /// What `spool` holds of followed files' positions, and where reading resumes (`None`: nothing was followed
    /// through this spool yet).
    fn read(spool: &Spool) -> Result<(FollowSaved, Option<Checkpoint>), Error> {
        let other = |e: &dyn std::fmt::Display| Error::Other(e.to_string());
        let saved = saved::load(spool.dir()).map_err(|e| other(&e))?;
        let mut spooled = None;
        if spool.waiting() > 0 {
            for entry in spool.pending() {
                let entry = entry?;
                if !entry.position.is_empty() {
                    let checkpoint =
                        Checkpoint::from_bytes(&entry.position).map_err(|e| other(&e))?;
                    spooled = Some((entry.seq, checkpoint));
                }
            }
        }
        let saved_seq = saved.as_ref().map(|s| s.seq);
        let resume = saved::resume_point(saved, spooled.clone());
        let newest = spooled.filter(|(seq, _)| saved_seq.is_none_or(|saved| *seq > saved));
        Ok((FollowSaved { newest, saved_seq }, resume))
    }
}

impl Following {
    /// Follows `paths` from `resume`, where the spool says reading stopped (from the start of each file the
    /// first time).
    fn start(
        paths: &[std::path::PathBuf],
        resume: Option<&Checkpoint>,
        batcher: Batcher,
    ) -> Result<Following, Error> {
        let other = |e: &dyn std::fmt::Display| Error::Other(e.to_string());
        let (follower, start, notices) =
            Follower::new(paths, resume, follow::Settings::default(), Instant::now()).map_err(
                |e| match e {
                    // The command line names the files: a path given twice, a link to another or a name
                    // that is not UTF-8 is a usage error (exit 2), before anything is read.
                    follow::FollowError::Duplicate(_)
                    | follow::FollowError::SameFile(..)
                    | follow::FollowError::NotUtf8(_) => Error::Usage(e.to_string()),
                    follow::FollowError::Io { .. } => other(&e),
                },
            )?;
        for notice in notices {
            eprintln!("zavro: {notice}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .map_err(|e| Error::Other(format!("cannot handle signals: {e}")))?;
        }
        let requests = Requests::new(batcher, follower.paths(), start);
        Ok(Following {
            follower,
            requests,
            stop,
        })
    }

    /// The next request's worth of lines, waiting (and handling replies) while the files are quiet; after
    /// SIGTERM or SIGINT, what was read, then the end.
    fn next(&mut self, mut sender: Option<&mut Sender>) -> Result<Next, Error> {
        let batch = |followed: follow::FollowedBatch| {
            Next::Batch(followed.batch, Some(followed.checkpoint))
        };
        loop {
            if let Some(followed) = self.requests.take_full() {
                return Ok(batch(followed));
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(self.requests.take_rest()?.map_or(Next::End, batch));
            }
            let now = Instant::now();
            let events = self
                .follower
                .poll(now)
                .map_err(|e| Error::Other(e.to_string()))?;
            let quiet = events.is_empty();
            for event in events {
                if let Event::Notice(notice) = &event {
                    eprintln!("zavro: {notice}");
                }
                if let Some(refused) = self.requests.push(event, now)? {
                    eprintln!("zavro: {refused}");
                }
            }
            if !quiet {
                continue;
            }
            if let Some(followed) = self.requests.take_due(now)? {
                return Ok(batch(followed));
            }
            let max = self
                .requests
                .deadline()
                .map_or(FOLLOW_INTERVAL, |deadline| {
                    deadline.saturating_duration_since(now).min(FOLLOW_INTERVAL)
                });
            match sender.as_deref_mut() {
                Some(sender) => sender.wait_without_input(max)?,
                None => std::thread::sleep(max),
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
    /// With `--spool`: the spool and what is in flight from it.
    spooling: Option<Spooling>,
    /// With `--follow`: how to connect again after the server was found unreachable.
    reconnect: Option<Reconnect>,
    /// When to connect again.
    retry_at: Option<Instant>,
    /// Records accepted over connections given up (see `reconnect`).
    accepted_earlier: u64,
    /// Records accepted when an outage was reported, until the server answers again.
    outage_said_at: Option<u64>,
}

/// What [`Client::connect`] needs, kept to connect again.
struct Reconnect {
    context: zmq::Context,
    endpoints: Vec<String>,
    settings: client::Settings,
    transport: client::Transport,
}

/// `send --spool`: the spool, the requests sent from it and not yet acknowledged, and whether the server can
/// be reached.
struct Spooling {
    spool: Spool,
    /// Spooled requests sent and not yet acknowledged, by sequence number: signed again when found stale.
    in_flight: HashMap<u64, Spooled>,
    /// Why delivery stopped in this run (the server could not be reached): requests are only spooled from then on.
    offline: Option<ClientError>,
    /// Requests and records spooled from this run's input.
    spooled_requests: u64,
    spooled_records: u64,
    /// Requests that waited in the spool from an earlier run.
    waited: u64,
    /// Requests the server refused for good in this run, kept aside in the spool's `refused/`.
    refused: u64,
    /// Followed files' newest position spooled, and which one is saved beside the spool.
    follow: FollowSaved,
    /// Why `--requeue-refused` left kept requests aside (the spool was full): the run ends with exit 10.
    requeue_stopped: Option<String>,
}

/// A spooled request on its way.
struct Spooled {
    /// The request as spooled (a signing after `clock_skew` is sent, not kept: it differs only in its envelope's
    /// timestamp, nonce and signature, and the spool's copy is what a refusal keeps aside).
    request: Request,
    records: u64,
    /// Times it was signed in this run.
    signings: u32,
}

impl Spooling {
    fn new(spool: Spool, follow: FollowSaved, requeue_stopped: Option<String>) -> Spooling {
        Spooling {
            waited: spool.waiting(),
            spool,
            in_flight: HashMap::new(),
            offline: None,
            spooled_requests: 0,
            spooled_records: 0,
            refused: 0,
            follow,
            requeue_stopped,
        }
    }

    /// Keeps a request the server refused for good aside in the spool (durably, before it counts as
    /// acknowledged), and says so in one line.
    fn keep_aside(&mut self, refusal: &client::Refusal) -> Result<(), Error> {
        let Some(spooled) = self.in_flight.remove(&refusal.tag) else {
            return Ok(());
        };
        let path = self.spool.keep_refused(
            refusal.tag,
            spooled.records,
            &spooled.request,
            refusal.code,
            &refusal.message,
        )?;
        self.refused += 1;
        eprintln!(
            "zavro: spooled request {} ({} record{}) refused for good: {}: {}; kept in {}, the spool goes on",
            refusal.tag,
            spooled.records,
            if spooled.records == 1 { "" } else { "s" },
            refusal.code,
            refusal.message,
            path.display()
        );
        Ok(())
    }

    /// Makes acknowledgements durable; when a spooled request carries a followed files' position newer than
    /// the one saved beside the spool, first saves that, since committing may delete its segment.
    fn commit_acks(&mut self) -> Result<(), Error> {
        let follow = &mut self.follow;
        if let Some((seq, checkpoint)) = &follow.newest
            && follow.saved_seq.is_none_or(|saved| *seq > saved)
        {
            let saved = saved::Saved {
                seq: *seq,
                checkpoint: checkpoint.clone(),
            };
            saved::store(self.spool.dir(), &saved).map_err(|e| Error::Other(e.to_string()))?;
            follow.saved_seq = Some(*seq);
        }
        Ok(self.spool.commit_acks()?)
    }

    /// The run's last words with a spool, and its outcome: 0 once everything read is spooled (and, when the
    /// server could be reached, delivered); 5 for `--flush` with the server unreachable; 10 for a full spool;
    /// else 12 when requests were refused for good and kept aside (the failures above say more about what is
    /// left to do, so they win; the kept requests were each reported in a line already).
    /// What was kept aside in this run and how to put it back, if anything was.
    fn kept_summary(&self) -> Option<String> {
        let refused = self.refused;
        (refused > 0).then(|| {
            format!(
                "{refused} spooled request{} refused for good by the server {} kept in {}; once the cause is \
                 fixed, put {} back in line with `zavro send --spool {} --requeue-refused --flush`",
                if refused == 1 { "" } else { "s" },
                if refused == 1 { "was" } else { "were" },
                spool::refused::dir(self.spool.dir()).display(),
                if refused == 1 { "it" } else { "them" },
                self.spool.dir().display(),
            )
        })
    }

    fn report(self, sender: &Sender, stopped: Stop, flush: bool) -> Result<(), Error> {
        let dir = self.spool.dir().display();
        let waiting = self.spool.waiting();
        let accepted = sender.accepted_records();
        let read = match self.spooled_requests {
            0 if flush => String::new(),
            n => format!(
                "spooled {} record{} in {n} request{}; ",
                self.spooled_records,
                if self.spooled_records == 1 { "" } else { "s" },
                if n == 1 { "" } else { "s" }
            ),
        };
        let earlier = match self.waited {
            0 => String::new(),
            n => format!(
                " ({n} request{} waited from before)",
                if n == 1 { "" } else { "s" }
            ),
        };
        eprintln!(
            "{read}accepted {accepted} record{} (last audit id {}){earlier}; {waiting} request{} wait{} in spool {dir}",
            if accepted == 1 { "" } else { "s" },
            sender
                .last_audit_id
                .map_or_else(|| "-".into(), |id| id.to_string()),
            if waiting == 1 { "" } else { "s" },
            if waiting == 1 { "s" } else { "" },
        );
        if let Some(why) = &self.offline {
            eprintln!(
                "zavro: the server could not be reached ({why}); the {waiting} waiting request{} will be sent, in \
                 order, by `zavro send --spool {dir} --flush` or by the next `zavro send --spool {dir}`",
                if waiting == 1 { "" } else { "s" },
            );
        }
        let kept = self.kept_summary();
        let stop = match stopped {
            Stop::BadInput(e) => Err(e),
            Stop::SpoolFull(full) => Err(Error::SpoolFull(format!(
                "{full}: stopped reading input after record {} (everything up to it is spooled; nothing after it \
                 was taken); deliver what waits with `zavro send --spool {dir} --flush`, or raise --spool-max-size",
                self.spooled_records
            ))),
            Stop::End => match (self.offline, self.requeue_stopped) {
                // With --flush there was nothing to spool: the run's one job, delivering, failed (exit 5).
                (Some(why), _) if flush => Err(Error::Client(why)),
                (_, Some(full)) => Err(Error::SpoolFull(full)),
                _ => Ok(()),
            },
        };
        match (stop, kept) {
            (Ok(()), Some(kept)) => Err(Error::RefusedKept(kept)),
            (Err(e), Some(kept)) => {
                // The other failure's exit code wins (it says more about what is left to do); this is said too.
                eprintln!("zavro: {kept}");
                Err(e)
            }
            (stop, None) => stop,
        }
    }
}

impl Sender<'_> {
    /// Signs a request for `payload` now, with a fresh nonce and, when given, the request id.
    fn sign(&self, id: Option<&str>, payload: Vec<u8>) -> Result<Request, Error> {
        Ok(Request::sign_with_id(
            self.key,
            self.secret.as_bytes(),
            timestamp::now_seconds(),
            &credentials::new_nonce()?,
            id,
            payload,
        ))
    }

    /// Signs and queues a request, waiting while the window is full. With a spool, the request (with a new
    /// request id) is made durable in it first; a full spool refuses it, and nothing of it is sent.
    fn submit(&mut self, batch: Batch, position: Option<Checkpoint>) -> Result<(), Refused> {
        if self.spooling.is_none() {
            let request = self.sign(None, batch.payload)?;
            self.client.submit(&request, batch.records)?;
            self.requests += 1;
            return Ok(self.collect()?);
        }
        let id = credentials::new_nonce().map_err(Error::from)?;
        let request = self.sign(Some(&id), batch.payload)?;
        let Some(spooling) = self.spooling.as_mut() else {
            return Ok(());
        };
        let position_bytes = match &position {
            Some(checkpoint) => checkpoint
                .to_bytes()
                .map_err(|e| Error::Other(e.to_string()))?,
            None => Vec::new(),
        };
        let appended =
            spooling
                .spool
                .append_with_position(&request, batch.records, &position_bytes);
        let seq = match appended {
            Ok(seq) => seq,
            Err(full @ SpoolError::Full { .. }) => return Err(Refused::Full(full)),
            Err(e) => return Err(Error::from(e).into()),
        };
        if let Some(checkpoint) = position {
            spooling.follow.newest = Some((seq, checkpoint));
        }
        spooling.spooled_requests += 1;
        spooling.spooled_records += batch.records;
        Ok(self.deliver(seq, request, batch.records)?)
    }

    /// Sends every request that waited in the spool from an earlier run, oldest first.
    fn deliver_waiting(&mut self) -> Result<(), Error> {
        let Some(spooling) = &self.spooling else {
            return Ok(());
        };
        for entry in spooling.spool.pending() {
            let entry = entry?;
            if self
                .spooling
                .as_ref()
                .is_some_and(|s| s.spool.is_acked(entry.seq))
            {
                // Acknowledged (or kept aside) in this run, after an entry before it that is not: pending on
                // disk, but done. (After `--follow` connects again.)
                continue;
            }
            if let Some(spooling) = self.spooling.as_mut()
                && spooling.spool.kept_already(&entry)?
            {
                // Kept aside by a run that stopped before the pointer moved over it: not sent again, and said
                // again, since that run may not have got to say it.
                spooling.spool.ack(entry.seq);
                spooling.commit_acks()?;
                spooling.refused += 1;
                eprintln!(
                    "zavro: spooled request {} was refused for good and kept in {} already; not sent again",
                    entry.seq,
                    spool::refused::path(spooling.spool.dir(), entry.seq).display()
                );
                continue;
            }
            self.deliver(entry.seq, entry.request, entry.records)?;
        }
        Ok(())
    }

    /// Sends spooled request `seq` (unless the server was found unreachable in this run: it waits in the spool).
    fn deliver(&mut self, seq: u64, request: Request, records: u64) -> Result<(), Error> {
        let Some(spooling) = self.spooling.as_mut() else {
            return Ok(());
        };
        if spooling.offline.is_some() {
            return Ok(());
        }
        let submitted = self.client.submit_tagged(&request, records, seq);
        spooling.in_flight.insert(
            seq,
            Spooled {
                request,
                records,
                signings: 0,
            },
        );
        self.requests += 1;
        self.reachable(submitted)?;
        self.collect()
    }

    /// Passes a client result on; with a spool, a server that cannot be reached is not a failure: what is in
    /// flight stays in the spool, and from now on requests are only spooled.
    fn reachable(&mut self, result: Result<(), ClientError>) -> Result<(), Error> {
        match (result, self.spooling.is_some()) {
            (Ok(()), _) => Ok(()),
            (Err(e), true) if e.is_unreachable() => {
                // Acknowledgements that came before the silence still count.
                self.collect()?;
                if let Some(spooling) = self.spooling.as_mut() {
                    spooling.offline = Some(e);
                    spooling.in_flight.clear();
                }
                Ok(())
            }
            (Err(e), _) => Err(e.into()),
        }
    }

    /// True once the server was found unreachable in a run with a spool.
    fn offline(&self) -> bool {
        self.spooling.as_ref().is_some_and(|s| s.offline.is_some())
    }

    /// Waits for every request sent to be answered; stale spooled requests are signed again and sent until each
    /// is acknowledged (or the server is found unreachable).
    fn finish(&mut self) -> Result<(), Error> {
        loop {
            if self.offline() {
                return Ok(());
            }
            let flushed = self.client.flush();
            self.reachable(flushed)?;
            self.collect()?;
            let waiting = self
                .spooling
                .as_ref()
                .is_some_and(|s| !s.in_flight.is_empty());
            if !waiting || self.offline() {
                return Ok(());
            }
        }
    }

    /// Handles replies for at most `max`, or until the input `signal` is readable.
    fn wait(&mut self, signal: &zmq::Socket, max: Duration) -> Result<(), Error> {
        if self.offline() {
            // Nothing to deliver: wait for input only.
            let mut items = [signal.as_poll_item(zmq::POLLIN)];
            return match zmq::poll(&mut items, client::poll_millis(max)) {
                Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
                Err(e) => Err(Error::Other(format!("cannot wait for input: {e}"))),
            };
        }
        let waited = self.client.wait_with(signal, max);
        self.reachable(waited)?;
        self.collect()
    }

    /// Handles replies for at most `max`, for an input that is no socket (followed files); only waits when the
    /// server was found unreachable.
    fn wait_without_input(&mut self, max: Duration) -> Result<(), Error> {
        if self.offline() {
            let now = Instant::now();
            match self.retry_at {
                None => {
                    // Said once per outage, not at every failed retry.
                    if self.outage_said_at.is_none()
                        && let Some(why) = self.spooling.as_ref().and_then(|s| s.offline.as_ref())
                    {
                        eprintln!(
                            "zavro: the server could not be reached ({why}); spooling, and trying again every {}s",
                            FOLLOW_RETRY.as_secs()
                        );
                        self.outage_said_at = Some(self.accepted_records());
                    }
                    self.retry_at = Some(now + FOLLOW_RETRY);
                }
                Some(at) if now >= at && self.reconnect.is_some() => {
                    self.retry_at = None;
                    return self.connect_again();
                }
                Some(_) => {}
            }
            std::thread::sleep(max);
            return Ok(());
        }
        let waited = self.client.wait_for(max);
        self.reachable(waited)?;
        self.collect()?;
        if let Some(accepted) = self.outage_said_at
            && self.accepted_records() > accepted
        {
            eprintln!("zavro: the server answers again; sending what waited in the spool");
            self.outage_said_at = None;
        }
        Ok(())
    }

    /// Records accepted in this run.
    fn accepted_records(&self) -> u64 {
        self.accepted_earlier + self.client.accepted_records()
    }

    /// Connects again after the server was found unreachable, and sends what waits in the spool, in order.
    fn connect_again(&mut self) -> Result<(), Error> {
        let Some(reconnect) = &self.reconnect else {
            return Ok(());
        };
        let identity = Identity {
            key: self.key.to_owned(),
            secret: self.secret.clone(),
        };
        let mut client = Client::connect(
            &reconnect.context,
            &reconnect.endpoints,
            reconnect.settings,
            reconnect.transport.clone(),
            identity,
        )?;
        client.return_stale_requests();
        client.return_refused_requests();
        self.accepted_earlier += self.client.accepted_records();
        self.client = client;
        if let Some(spooling) = self.spooling.as_mut() {
            spooling.offline = None;
            spooling.in_flight.clear();
        }
        self.deliver_waiting()
    }

    /// Takes in the replies collected so far: acknowledgements move the spool's pointer (durably), and stale
    /// spooled requests are signed again, same id and payload, and sent.
    fn collect(&mut self) -> Result<(), Error> {
        let accepted: Vec<client::Accepted> = self.client.take_accepted().collect();
        if let Some(last) = accepted.last() {
            self.last_audit_id = Some(last.audit_id);
        }
        self.progress.set(self.accepted_records());
        let Some(spooling) = self.spooling.as_mut() else {
            return Ok(());
        };
        for reply in &accepted {
            spooling.spool.ack(reply.tag);
            spooling.in_flight.remove(&reply.tag);
        }
        let refused: Vec<client::Refusal> = self.client.take_refused().collect();
        for refusal in &refused {
            spooling.keep_aside(refusal)?;
        }
        if !accepted.is_empty() || !refused.is_empty() {
            spooling.commit_acks()?;
        }
        let stale: Vec<u64> = self.client.take_stale().collect();
        for seq in stale {
            self.sign_again(seq)?;
        }
        Ok(())
    }

    /// Signs spooled request `seq` again with a fresh timestamp and nonce, same id and payload, and sends it.
    fn sign_again(&mut self, seq: u64) -> Result<(), Error> {
        let Some(spooled) = self
            .spooling
            .as_mut()
            .and_then(|s| s.in_flight.get_mut(&seq))
        else {
            return Ok(());
        };
        spooled.signings += 1;
        if spooled.signings > MAX_SIGNINGS {
            return Err(Error::Other(format!(
                "the server still refuses a spooled request as clock_skew after it was signed {MAX_SIGNINGS} times \
                 afresh: check this machine's clock against the server's; the request waits in the spool"
            )));
        }
        let (id, payload, records) = (
            spooled.request.envelope.id.clone(),
            spooled.request.payload.clone(),
            spooled.records,
        );
        let request = self.sign(id.as_deref(), payload)?;
        let submitted = self.client.submit_tagged(&request, records, seq);
        self.reachable(submitted)
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
