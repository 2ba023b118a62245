//! `zavro serve ENDPOINT`: bind a ROUTER socket (CURVE, checked by the ZAP handler, unless `--plaintext`),
//! report the bound endpoint and server key, run the server loop until a signal.

use std::{
    io,
    sync::{Arc, atomic::AtomicBool},
};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::{
    avro,
    cli::{LogFormatArg, ServeArgs},
    curve,
    endpoint::{self, Side},
    error::Error,
    hardening,
    metrics::{ConnectionWatch, Endpoint, Metrics, MetricsError},
    server::{
        self, Companions, Event, Fields, Log, LogFormat, RecordsOut, Settings, Transport, name, zap,
    },
    service,
    store::{PgStore, RequestStore, Store, StoreError},
    timestamp,
};

/// How long, at shutdown, replies still queued may take to leave before they are dropped.
const SHUTDOWN_LINGER_MS: i32 = 2000;

/// Descriptors kept free, past the connections' own, for scrapes of `--metrics` in progress (each holds one), and
/// one for the newest connection, accepted before the oldest is let go.
const METRICS_DESCRIPTORS: u32 = crate::metrics::MAX_SCRAPES as u32 + 1;

/// What `serve` needs of a store besides the server's seam ([`RequestStore`]), per backend.
pub trait Served: RequestStore {
    /// The handshake check's own connection to the same store.
    type Checker: zap::ClientKeys;

    /// Checks at start-up, as one error, that the store can take the server's groups durably, and sets up the
    /// connection for serving.
    fn ready_to_serve(&mut self, args: &ServeArgs, log: &mut Log) -> Result<(), Error>;

    /// The key pair `serve` presents over CURVE (made on first use).
    fn server_key_pair(&mut self, now_us: i64) -> Result<curve::KeyPair, StoreError>;

    /// A second connection to the store, for the handshake check's thread.
    fn checker(&self) -> Result<Self::Checker, Error>;

    /// Descriptors to keep free, past the connections' own, for the store to open later (a reconnection).
    fn descriptors_to_reserve(&self) -> u32;

    /// The key pair `serve` would present, if the store has one yet: nothing is written (`--check-config`).
    fn existing_server_key(&mut self) -> Result<Option<curve::KeyPair>, StoreError>;

    /// Where the store is (a PostgreSQL URL never shows a password) and the name of its backend.
    fn location(&self) -> (String, &'static str);

    /// The fingerprint of the master key the store is sealed under; `None` when it is not sealed.
    fn sealed_under(&mut self) -> Result<Option<String>, StoreError>;
}

impl Served for Store {
    type Checker = Store;

    fn ready_to_serve(&mut self, _: &ServeArgs, _: &mut Log) -> Result<(), Error> {
        // Problems with the store's files surface now, as one error, rather than at the first request.
        self.check_writable()?;
        Ok(self.keep_temporary_data_in_memory()?)
    }

    fn server_key_pair(&mut self, now_us: i64) -> Result<curve::KeyPair, StoreError> {
        Store::server_key_pair(self, now_us)
    }

    fn checker(&self) -> Result<Store, Error> {
        let path = self
            .path()
            .ok_or_else(|| Error::Other("serve needs a store in a file".into()))?;
        let checker = Store::open_existing(path)?;
        // Like the server's own connection: no temporary files, so it needs no descriptor past the open-file cap.
        checker.keep_temporary_data_in_memory()?;
        Ok(checker)
    }

    fn descriptors_to_reserve(&self) -> u32 {
        0
    }

    fn existing_server_key(&mut self) -> Result<Option<curve::KeyPair>, StoreError> {
        self.existing_server_key_pair()
    }

    fn location(&self) -> (String, &'static str) {
        let path = self
            .path()
            .map_or_else(|| ":memory:".into(), |p| p.display().to_string());
        (path, "sqlite")
    }

    fn sealed_under(&mut self) -> Result<Option<String>, StoreError> {
        Store::sealed_under(self)
    }
}

impl Served for PgStore {
    type Checker = PgStore;

    /// The master key is needed to read the keys' secrets; a database that acknowledges commits before they are
    /// durable, or a read-only standby, is refused (the first unless `--allow-async-commit`). The settings read
    /// are this session's: `synchronous_commit` is forced on by the connection's options ([`PgUrl::for_serving`],
    /// every reconnection too) unless the URL's own options turn it off.
    ///
    /// [`PgUrl::for_serving`]: crate::store::PgUrl::for_serving
    fn ready_to_serve(&mut self, args: &ServeArgs, log: &mut Log) -> Result<(), Error> {
        self.require_master_key()?;
        let url = self.url().to_string();
        let settings = self.client().query_one(
            "SELECT current_setting('synchronous_commit'), current_setting('fsync'), pg_is_in_recovery()",
            &[],
        );
        let settings = settings.map_err(StoreError::from)?;
        let (synchronous_commit, fsync, standby): (String, String, bool) = (
            settings.try_get(0).map_err(StoreError::from)?,
            settings.try_get(1).map_err(StoreError::from)?,
            settings.try_get(2).map_err(StoreError::from)?,
        );
        if standby {
            return Err(Error::Other(format!(
                "store {url} is a read-only standby (in recovery); give serve the primary's URL"
            )));
        }
        let asynchronous = [
            ("synchronous_commit", &synchronous_commit),
            ("fsync", &fsync),
        ]
        .into_iter()
        .find(|(_, value)| value.as_str() == "off");
        match asynchronous {
            Some((setting, _)) if !args.allow_async_commit => Err(Error::Other(format!(
                "store {url} has {setting} off, so PostgreSQL acknowledges a commit before it is durable and a \
                 crash could lose requests already answered `accepted`; turn it on (fsync in postgresql.conf; \
                 serve's sessions force synchronous_commit on unless the URL's options turn it off), or accept \
                 that risk with --allow-async-commit"
            ))),
            Some((setting, _)) => {
                let message = format!(
                    "store {url} has {setting} off (--allow-async-commit): a crash of the database can lose \
                     requests already answered `accepted`"
                );
                log.event(
                    Event::Warning,
                    Fields::message(&message),
                    format_args!("zavro: warning: {message}"),
                );
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn server_key_pair(&mut self, now_us: i64) -> Result<curve::KeyPair, StoreError> {
        PgStore::server_key_pair(self, now_us)
    }

    fn checker(&self) -> Result<PgStore, Error> {
        Ok(PgStore::connect(self.url())?)
    }

    /// The server's connection and the handshake check's, each replaced by a new one if it breaks.
    fn descriptors_to_reserve(&self) -> u32 {
        2
    }

    fn existing_server_key(&mut self) -> Result<Option<curve::KeyPair>, StoreError> {
        self.existing_server_key_pair()
    }

    fn location(&self) -> (String, &'static str) {
        (self.url().to_string(), "postgresql")
    }

    fn sealed_under(&mut self) -> Result<Option<String>, StoreError> {
        PgStore::sealed_under(self)
    }
}

/// The log format `serve` writes in, from its `--log-format`.
pub fn log_format(args: &ServeArgs) -> LogFormat {
    match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    }
}

/// Locks all of the process's memory when it may lock without limit, so the secrets `serve` reads never reach
/// swap; otherwise says once, on stderr, that they may and how to allow locking. The server runs either way.
pub fn keep_memory_out_of_swap() {
    match hardening::lock_all_memory() {
        Ok(()) => {}
        Err(e) => eprintln!(
            "zavro: warning: serve's memory is not locked ({e}), so the secrets it holds (API key secrets, its \
             CURVE secret key, a sealed store's master key) may be written to swap; allow unlimited locking \
             (systemd LimitMEMLOCK=infinity, ulimit -l unlimited) or use encrypted swap or none"
        ),
    }
}

/// Serves until SIGINT or SIGTERM, then returns after finishing the request in hand.
pub fn run<S: Served>(store: &mut S, args: ServeArgs) -> Result<(), Error> {
    let format = log_format(&args);
    let mut log = Log::stderr(format);
    if args.check_config {
        return super::check_config::run(store, &args, &mut log);
    }
    avro::limit_decode_allocations();
    let endpoint = bind_endpoint(&args)?;
    let name = server_name(&args)?;
    // Before anything is bound: a bad schema is a usage error, not a server that stops once it is `ready`.
    let reader_schemas = load_schemas(&args.schemas)?;
    store.ready_to_serve(&args, &mut log)?;
    // Before anything is served: from now on every server sharing the store keeps nonces for this one's skew.
    store.widen_nonce_window(i64::from(args.max_skew))?;
    require_curve(&args)?;
    let max_connections = connection_limit(&args, &mut log)?;

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&shutdown))
            .map_err(|e| Error::io("cannot install signal handler", e))?;
    }

    // Before the socket: a metrics address that is taken stops the server before it takes any request.
    let metrics = args.metrics.map(start_metrics).transpose()?;

    let mut output = match &args.output {
        // Private like the store it copies from; an existing file keeps the mode its owner gave it.
        Some(path) => RecordsOut::append_to(path)
            .map_err(|e| Error::io(format!("cannot open output {}", path.display()), e))?,
        None => RecordsOut::stream(io::stdout()),
    };

    let context = zmq::Context::new();
    // Declared before the socket, so that an early return closes the socket first (see its Drop).
    let mut connection_watch = None;
    // The handshake check is bound before the socket, so that no connection is ever admitted without it; it is
    // declared before the socket, so it stops only once the socket is closed.
    let (server_key, handshakes) = if args.plaintext {
        (None, None)
    } else {
        let (key, checker) = start_curve(store, &context, format)?;
        (Some(key), Some(checker))
    };
    let mut socket = context
        .socket(zmq::ROUTER)
        .map_err(|e| Error::Other(format!("cannot create socket: {e}")))?;
    if endpoint.starts_with("tcp://[") {
        socket
            .set_ipv6(true)
            .map_err(|e| Error::Other(format!("cannot enable IPv6: {e}")))?;
    }
    socket
        .set_maxmsgsize(i64::from(args.max_message_size))
        .map_err(|e| Error::Other(format!("cannot set the message size limit: {e}")))?;
    // Replies queued for a peer that does not read are bounded, and a peer whose queue fills is cut off rather
    // than served for nothing (libzmq patch 0006); at shutdown, queued replies are given a bounded time to
    // leave. So such a peer can neither grow the server's memory nor hold up its exit.
    server::cut_off_peers_that_do_not_read(&mut socket)
        .and_then(|()| socket.set_linger(SHUTDOWN_LINGER_MS))
        .map_err(|e| Error::Other(format!("cannot set the reply queue limits: {e}")))?;
    if let Some(key) = &server_key {
        socket
            .set_curve_server(true)
            .and_then(|()| socket.set_curve_secretkey(key.secret()))
            .and_then(|()| socket.set_zap_domain(zap::DOMAIN))
            .and_then(|()| zap::fail_closed(&mut socket))
            .map_err(|e| Error::Other(format!("cannot set up CURVE: {e}")))?;
    }
    // The socket has its copy: the secret half is wiped here rather than kept for the whole run.
    let server_public = server_key.map(|key| key.public_z85());
    // Before the bind, so that every connection's opening is counted as well as its end.
    if let Some((metrics, _)) = &metrics {
        let watch = ConnectionWatch::start(&context, &socket, metrics.open_connections())
            .map_err(|e| Error::Other(e.to_string()))?;
        connection_watch = Some(watch);
    }
    // Before the bind too: libzmq cuts off a peer that sends too much as soon as the socket takes its
    // connection, which can be long before the loop's first turn on a loaded machine, and the loop counts the
    // cut-offs past these counts (a count read later left those out of the audit trail).
    let cutoffs_before_bind = server::CutoffCounts::now();
    socket
        .bind(&endpoint)
        .map_err(|e| Error::Listen(format!("cannot listen on {endpoint}: {e}")))?;
    let bound = socket
        .get_last_endpoint()
        .ok()
        .and_then(Result::ok)
        .unwrap_or(endpoint);
    // Everything the server needs is open now; what is left under the open-file limit is for connections.
    let scrapes = if metrics.is_some() {
        METRICS_DESCRIPTORS
    } else {
        0
    };
    hardening::cap_open_files(
        max_connections
            .saturating_add(store.descriptors_to_reserve())
            .saturating_add(scrapes),
    )
    .map_err(|e| match e {
        hardening::HardeningError::TooManyConnections { .. } => Error::Usage(e.to_string()),
        _ => Error::Other(e.to_string()),
    })?;
    // One line, the endpoint first: scripts and tests take the word after `listening on`.
    let listening = Fields {
        endpoint: Some(&bound),
        transport: Some(if server_public.is_some() {
            Transport::Curve.as_str()
        } else {
            Transport::Plaintext.as_str()
        }),
        server_key: server_public.as_deref(),
        name: Some(&name),
        ..Fields::default()
    };
    match &server_public {
        Some(public) => log.event(
            Event::Listening,
            listening,
            format_args!("listening on {bound} (CURVE, server key {public})"),
        ),
        None => log.event(
            Event::Listening,
            listening,
            format_args!(
                "listening on {bound} (plaintext: unencrypted, anyone on the path can read and forge traffic)"
            ),
        ),
    }

    if let Some((metrics, endpoint)) = &metrics {
        metrics.readiness().bound();
        let url = format!("http://{}/metrics", endpoint.address());
        log.event(
            Event::Metrics,
            Fields {
                endpoint: Some(&url),
                ..Fields::default()
            },
            format_args!("metrics on {url} (and /healthz, /readyz; unauthenticated)"),
        );
    }

    // Only now, with the socket bound (the kernel queues connections from here on), is the unit `active`.
    let status = format!("listening on {bound}");
    if let Err(e) = service::ready(&status) {
        let message = format!("cannot tell systemd the server is ready (NOTIFY_SOCKET): {e}");
        log.event(
            Event::Warning,
            Fields::message(&message),
            format_args!("zavro: warning: {message}"),
        );
    }

    let settings = Settings {
        max_skew_secs: i64::from(args.max_skew),
        reader_schemas,
        transport: match handshakes {
            Some(_) => Transport::Curve,
            None => Transport::Plaintext,
        },
        name,
        cutoffs_before_bind,
    };
    let served = server::run(
        &socket,
        store,
        &mut output,
        log,
        &settings,
        &shutdown,
        Companions {
            handshakes: handshakes.as_ref(),
            metrics: metrics.as_ref().map(|(metrics, _)| metrics),
        },
    );
    if let Some(watch) = connection_watch.take() {
        watch.stop(&mut socket);
    }
    // Whether a signal or an error ended it, the server takes no more requests; only the replies still queued
    // may take up to SHUTDOWN_LINGER_MS to leave. Telling systemd is best effort: it sees the exit anyway.
    let _ = service::stopping();
    let stats = served.map_err(|e| Error::Other(e.to_string()))?;
    Log::stderr(format).event(
        Event::Stopping,
        Fields {
            accepted: Some(stats.accepted),
            rejected: Some(stats.rejected),
            ..Fields::default()
        },
        format_args!(
            "shutting down: {} accepted, {} rejected",
            stats.accepted, stats.rejected
        ),
    );
    Ok(())
}

/// The metrics, and their HTTP listener started on `address` (`--metrics`).
fn start_metrics(address: std::net::SocketAddr) -> Result<(Metrics, Endpoint), Error> {
    let (metrics, registry) = Metrics::new();
    let endpoint =
        Endpoint::start(address, registry, metrics.readiness().clone()).map_err(|e| match e {
            MetricsError::Bind { .. } => Error::Listen(format!("--metrics: {e}")),
            MetricsError::Thread(_) | MetricsError::Monitor(_) => Error::Other(e.to_string()),
        })?;
    Ok((metrics, endpoint))
}

/// The endpoint `serve` binds, as a ZeroMQ endpoint.
pub(super) fn bind_endpoint(args: &ServeArgs) -> Result<String, Error> {
    endpoint::resolve(&args.endpoint, Side::Bind).map_err(Error::Usage)
}

/// The name written into this server's audit rows (`--name`, else the host name).
pub(super) fn server_name(args: &ServeArgs) -> Result<String, Error> {
    name::resolve(args.name.as_deref()).map_err(|e| match e {
        name::NameError::NoHostName(_) => Error::Other(e.to_string()),
        _ => Error::Usage(format!("--name: {e}")),
    })
}

/// Refuses CURVE (the default) when this zavro's libzmq cannot do it.
pub(super) fn require_curve(args: &ServeArgs) -> Result<(), Error> {
    if !args.plaintext && !curve::available() {
        return Err(Error::Other(
            "this zavro's libzmq was built without CURVE, so it cannot encrypt (vendor/README.md says how it \
             is built); rebuild it, or run `serve --plaintext` on a network you trust"
                .into(),
        ));
    }
    Ok(())
}

/// The most connections the server holds: every connection holds a descriptor, so the soft open-file limit is
/// raised to the hard one first (the server goes on with the limit it has when it may not, logging why), and
/// `--max-connections` must fit under it.
pub(super) fn connection_limit(args: &ServeArgs, log: &mut Log) -> Result<u32, Error> {
    if let Err(e) = hardening::raise_open_file_limit() {
        let message = e.to_string();
        log.event(
            Event::Warning,
            Fields::message(&message),
            format_args!("{message}"),
        );
    }
    hardening::connection_limit(args.max_connections, hardening::open_file_limit())
        .map_err(|e| Error::Usage(e.to_string()))
}

/// The store's server key pair (made on first use; the secret half is wiped when dropped), and the ZAP handler
/// bound on `context`, reading keys through a connection of its own to the same store.
fn start_curve<S: Served>(
    store: &mut S,
    context: &zmq::Context,
    format: LogFormat,
) -> Result<(curve::KeyPair, zap::Handler), Error> {
    let key = store.server_key_pair(timestamp::now_micros())?;
    let checker = zap::Handler::start(context, store.checker()?, Log::stderr(format))
        .map_err(|e| Error::Other(e.to_string()))?;
    Ok((key, checker))
}

/// Parses the reader schemas given with `--schema`: files, or every `*.avsc` file of a directory (sorted).
pub(super) fn load_schemas(
    paths: &[std::path::PathBuf],
) -> Result<Vec<apache_avro::Schema>, Error> {
    schema_files(paths)?
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::Usage(format!("cannot read schema {}: {e}", file.display())))?;
            apache_avro::Schema::parse_str(&text).map_err(|e| {
                Error::Usage(format!(
                    "schema {} is not a valid Avro schema: {e}",
                    file.display()
                ))
            })
        })
        .collect()
}

/// The schema files `--schema` names: files as given, and every `*.avsc` file of a directory (sorted).
pub(super) fn schema_files(paths: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| {
                    Error::Usage(format!(
                        "cannot read schema directory {}: {e}",
                        path.display()
                    ))
                })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "avsc"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "no .avsc files in {}",
                    path.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}
