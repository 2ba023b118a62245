//! The ZAP handler (ZeroMQ RFC 27) of a CURVE server: admits a connection only when its client public key is an
//! active API key's, and makes that key the connection's user id, which every request on it must then name.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
};

use super::{Event, Fields, Log, tally::OTHER_PEERS, transport::restarting};
use crate::{
    store::{CurveClient, PgStore, Store, StoreError},
    timestamp,
};

/// What the handler needs of a store: the API key a client public key belongs to. Read through a connection of
/// the handler's own, on its thread.
pub trait ClientKeys: Send + 'static {
    /// The API key whose client public key is `public`, active or not at `now_us`.
    fn curve_client(
        &mut self,
        public: &[u8; 32],
        now_us: i64,
    ) -> Result<Option<CurveClient>, StoreError>;
}

impl ClientKeys for Store {
    fn curve_client(
        &mut self,
        public: &[u8; 32],
        now_us: i64,
    ) -> Result<Option<CurveClient>, StoreError> {
        Store::curve_client(self, public, now_us)
    }
}

/// A connection that broke (the database restarted) is replaced at the next handshake, with back-off.
impl ClientKeys for PgStore {
    fn curve_client(
        &mut self,
        public: &[u8; 32],
        now_us: i64,
    ) -> Result<Option<CurveClient>, StoreError> {
        self.ensure_connected()?;
        PgStore::curve_client(self, public, now_us)
    }
}

/// Where libzmq sends the ZAP requests of every socket of a context (RFC 27).
pub const ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The ZAP domain `serve` sets on its socket; requests for any other domain are refused.
pub const DOMAIN: &str = "zavro";

/// libzmq's `ZMQ_ZAP_ENFORCE_DOMAIN` (zmq.h); the `zmq` crate has no setter for it.
const ZMQ_ZAP_ENFORCE_DOMAIN: std::ffi::c_int = 93;

/// Makes `socket` refuse every CURVE handshake when no handler answers at the ZAP endpoint. libzmq's default
/// admits every client then ("Stonehouse" without authentication), so a handler thread that had stopped would
/// leave the server open to anyone, and to a client-chosen `User-Id`.
pub fn fail_closed(socket: &mut zmq::Socket) -> Result<(), zmq::Error> {
    super::transport::set_int_option(socket, ZMQ_ZAP_ENFORCE_DOMAIN, 1)
}

/// How long the handler waits for a request before it looks at its stop flag again.
const POLL_INTERVAL_MS: i64 = 200;

/// Refused handshakes waiting for the server loop, which takes them every turn; past this many, they are only
/// counted, under [`OTHER_PEERS`], so a flood of handshakes costs bounded memory.
const QUEUE: usize = 10_000;

/// The ZAP status text of a refusal: the same whatever the reason, so a client learns nothing of the keys.
const REFUSED_TEXT: &str = "client key not admitted";

/// Why the handler could not start.
#[derive(Debug, thiserror::Error)]
pub enum ZapError {
    /// Its socket could not be made or bound.
    #[error("cannot set up the handshake check: {0}")]
    Socket(#[from] zmq::Error),
    /// Its thread could not be started.
    #[error("cannot start the handshake check: {0}")]
    Thread(#[from] std::io::Error),
}

/// Refused handshakes from one peer, for the server loop to count into its tally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedHandshake {
    /// The peer's IP address, `-` when the transport gave none, or [`OTHER_PEERS`].
    pub peer: String,
    /// The API key whose client key it was, when it was one (revoked or expired).
    pub key: Option<String>,
    /// How many.
    pub count: u64,
    /// When (µs since the epoch).
    pub at_us: i64,
}

/// The running handler: its thread, and the refused handshakes it hands over. Dropping it stops the thread
/// (within [`POLL_INTERVAL_MS`]) and waits for it.
pub struct Handler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    refused: mpsc::Receiver<RefusedHandshake>,
    overflow: Arc<AtomicU64>,
}

impl Handler {
    /// Binds the handler to [`ENDPOINT`] on `context` and starts its thread, which looks keys up in `store` (its
    /// own connection; it only reads) and logs to `log`. Must run before any CURVE socket of `context` binds:
    /// until a handler is bound, libzmq admits every client.
    pub fn start(
        context: &zmq::Context,
        store: impl ClientKeys,
        log: Log,
    ) -> Result<Handler, ZapError> {
        let socket = context.socket(zmq::REP)?;
        socket.set_linger(0)?;
        socket.bind(ENDPOINT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let overflow = Arc::new(AtomicU64::new(0));
        let (sender, refused) = mpsc::sync_channel(QUEUE);
        let checker = Checker {
            socket,
            store,
            log,
            refused: sender,
            overflow: Arc::clone(&overflow),
            store_failing: false,
        };
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("zap".into())
            .spawn(move || checker.run(&flag))?;
        Ok(Handler {
            stop,
            thread: Some(thread),
            refused,
            overflow,
        })
    }

    /// The handshakes refused since the last call: each peer's as they came, then those past [`QUEUE`] as one.
    pub fn refused(&self) -> Vec<RefusedHandshake> {
        let mut refused: Vec<_> = self.refused.try_iter().take(QUEUE).collect();
        let overflow = self.overflow.swap(0, Ordering::Relaxed);
        if overflow > 0 {
            refused.push(RefusedHandshake {
                peer: OTHER_PEERS.to_owned(),
                key: None,
                count: overflow,
                at_us: timestamp::now_micros(),
            });
        }
        refused
    }

    /// False once the thread has ended: it ends only when stopped, or on a socket error it logged. The server
    /// must not go on without it: libzmq would then admit every client.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // A panic in the thread was already printed; there is nothing more to do with it here.
            let _ = thread.join();
        }
    }
}

/// The handler's thread.
struct Checker<K> {
    socket: zmq::Socket,
    store: K,
    log: Log,
    refused: mpsc::SyncSender<RefusedHandshake>,
    overflow: Arc<AtomicU64>,
    /// True while the store cannot be read, so its failure is logged once, not once per handshake.
    store_failing: bool,
}

impl<K: ClientKeys> Checker<K> {
    /// Answers requests until `stop`, or until its socket fails.
    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = self.answer_next() {
                let message = format!("handshake check stopped: socket error: {e}");
                self.log.event(
                    Event::HandshakeCheckStopped,
                    Fields::message(&message),
                    format_args!("{message}"),
                );
                return;
            }
        }
    }

    /// Waits up to [`POLL_INTERVAL_MS`] for a request and answers it.
    fn answer_next(&mut self) -> Result<(), zmq::Error> {
        match self.socket.poll(zmq::POLLIN, POLL_INTERVAL_MS) {
            Ok(0) | Err(zmq::Error::EINTR) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        let mut request = match self.socket.recv_bytes(zmq::DONTWAIT) {
            Ok(frame) => vec![frame],
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(()),
            Err(e) => return Err(e),
        };
        while restarting(|| self.socket.get_rcvmore())? {
            request.push(restarting(|| self.socket.recv_bytes(0))?);
        }
        let now_us = timestamp::now_micros();
        let store = &mut self.store;
        let verdict = check(&request, |public| store.curve_client(public, now_us));
        match (&verdict, self.store_failing) {
            (Verdict::Unsure(e), false) => {
                self.store_failing = true;
                let message = format!(
                    "cannot check client keys, handshakes are refused as temporary failures until the store \
                     answers again: {e}"
                );
                self.log.event(
                    Event::StoreError,
                    Fields::message(&message),
                    format_args!("{message}"),
                );
            }
            (Verdict::Admit(_) | Verdict::Refuse { .. }, true) => {
                self.store_failing = false;
                let message = "client keys are checked again";
                self.log.event(
                    Event::StoreRecovered,
                    Fields::message(message),
                    format_args!("{message}"),
                );
            }
            _ => {}
        }
        // Counted before the client hears of it, so whoever saw the handshake fail finds it counted.
        if let Verdict::Refuse { key } = &verdict {
            let refused = RefusedHandshake {
                peer: peer_of(&request),
                key: key.clone(),
                count: 1,
                at_us: now_us,
            };
            if self.refused.try_send(refused).is_err() {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
        let reply = reply(request.get(1).map_or(&[][..], Vec::as_slice), &verdict);
        let last = reply.len() - 1;
        for (index, frame) in reply.iter().enumerate() {
            let flags = if index < last { zmq::SNDMORE } else { 0 };
            restarting(|| self.socket.send(frame.as_slice(), flags))?;
        }
        Ok(())
    }
}

/// What the handler decides about one handshake.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Admit it as this key.
    Admit(String),
    /// Refuse it; `key` names the API key whose client key it is, if any (revoked or expired).
    Refuse {
        /// See above.
        key: Option<String>,
    },
    /// The store could not say: refused as a failure to check (ZAP 500), not counted, which the client takes as
    /// "try again". Not ZAP's 300 ("temporary"): with 300 libzmq closes the connection without a word, which a
    /// client cannot tell from a server presenting another key than it pinned; 500 reaches it as such.
    Unsure(String),
}

/// The verdict on a ZAP request (RFC 27: version, request id, domain, address, identity, mechanism,
/// credentials), given `lookup` of a client public key.
fn check(
    request: &[Vec<u8>],
    lookup: impl FnOnce(&[u8; 32]) -> Result<Option<CurveClient>, StoreError>,
) -> Verdict {
    let refused = Verdict::Refuse { key: None };
    let [
        version,
        _id,
        domain,
        _address,
        _identity,
        mechanism,
        credentials @ ..,
    ] = request
    else {
        return refused;
    };
    if version.as_slice() != b"1.0"
        || domain.as_slice() != DOMAIN.as_bytes()
        || mechanism.as_slice() != b"CURVE"
    {
        return refused;
    }
    let [public] = credentials else {
        return refused;
    };
    let Ok(public) = <[u8; 32]>::try_from(public.as_slice()) else {
        return refused;
    };
    match lookup(&public) {
        Ok(Some(CurveClient { id, active: true })) => Verdict::Admit(id),
        Ok(Some(CurveClient { id, active: false })) => Verdict::Refuse { key: Some(id) },
        Ok(None) => refused,
        Err(e) => Verdict::Unsure(e.to_string()),
    }
}

/// The ZAP reply (RFC 27: version, request id, status code, status text, user id, metadata).
fn reply(request_id: &[u8], verdict: &Verdict) -> [Vec<u8>; 6] {
    let (status, text, user_id) = match verdict {
        Verdict::Admit(id) => ("200", "OK", id.as_str()),
        Verdict::Refuse { .. } => ("400", REFUSED_TEXT, ""),
        Verdict::Unsure(_) => ("500", "the server cannot check client keys now", ""),
    };
    [
        b"1.0".to_vec(),
        request_id.to_vec(),
        status.as_bytes().to_vec(),
        text.as_bytes().to_vec(),
        user_id.as_bytes().to_vec(),
        Vec::new(),
    ]
}

/// The peer's address as the request gives it (an IP address over TCP), `-` when it gives none.
fn peer_of(request: &[Vec<u8>]) -> String {
    match request.get(3) {
        Some(address) if !address.is_empty() => String::from_utf8_lossy(address).into_owned(),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{
        curve::KeyPair,
        server::testing::{KEY, SECRET, captured_log, store_with_key},
    };

    /// Whether a CURVE ROUTER with the zavro domain but no handler bound lets a client's message through.
    fn admitted_without_a_handler(enforce: bool) -> bool {
        let context = zmq::Context::new();
        let server = KeyPair::generate().unwrap();
        let mut router = context.socket(zmq::ROUTER).unwrap();
        router.set_curve_server(true).unwrap();
        router.set_curve_secretkey(server.secret()).unwrap();
        router.set_zap_domain(DOMAIN).unwrap();
        if enforce {
            fail_closed(&mut router).unwrap();
        }
        router.set_rcvtimeo(1000).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let client = KeyPair::for_client(KEY, SECRET.as_bytes()).unwrap();
        let dealer = context.socket(zmq::DEALER).unwrap();
        dealer.set_curve_serverkey(&server.public).unwrap();
        dealer.set_curve_publickey(&client.public).unwrap();
        dealer.set_curve_secretkey(client.secret()).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.connect(&endpoint).unwrap();
        dealer.send("hello", 0).unwrap();
        router.recv_multipart(0).is_ok()
    }

    #[test]
    fn without_a_handler_curve_handshakes_fail_closed() {
        assert!(
            admitted_without_a_handler(false),
            "the control: libzmq's default admits anyone when no handler answers"
        );
        assert!(!admitted_without_a_handler(true));
    }

    /// A CURVE ROUTER checked by a running handler, on a context of its own, with [`KEY`] in the store.
    struct Curve {
        context: zmq::Context,
        router: zmq::Socket,
        endpoint: String,
        server_public: [u8; 32],
        handler: Handler,
        _dir: tempfile::TempDir,
    }

    impl Curve {
        fn start(prepare: impl FnOnce(&mut Store)) -> Curve {
            let dir = tempfile::tempdir().unwrap();
            let (mut store, _) = store_with_key(dir.path());
            prepare(&mut store);
            let server = store.server_key_pair(1).unwrap();
            let checker = Store::open_existing(store.path().unwrap()).unwrap();
            let context = zmq::Context::new();
            let (log, _) = captured_log();
            let handler = Handler::start(&context, checker, log).unwrap();
            let router = context.socket(zmq::ROUTER).unwrap();
            router.set_curve_server(true).unwrap();
            router.set_curve_secretkey(server.secret()).unwrap();
            router.set_zap_domain(DOMAIN).unwrap();
            router.set_linger(0).unwrap();
            router.set_rcvtimeo(20_000).unwrap();
            router.bind("tcp://127.0.0.1:*").unwrap();
            let endpoint = router.get_last_endpoint().unwrap().unwrap();
            Curve {
                context,
                router,
                endpoint,
                server_public: server.public,
                handler,
                _dir: dir,
            }
        }

        /// A DEALER connected with `client`'s key pair, that has sent one message.
        fn dealer_sending(&self, client: &KeyPair) -> zmq::Socket {
            let dealer = self.context.socket(zmq::DEALER).unwrap();
            dealer.set_curve_serverkey(&self.server_public).unwrap();
            dealer.set_curve_publickey(&client.public).unwrap();
            dealer.set_curve_secretkey(client.secret()).unwrap();
            dealer.set_linger(0).unwrap();
            dealer.connect(&self.endpoint).unwrap();
            dealer.send("hello", 0).unwrap();
            dealer
        }

        /// Waits (up to 20 s) for the handler to report refused handshakes.
        fn refused(&self) -> Vec<RefusedHandshake> {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let refused = self.handler.refused();
                if !refused.is_empty() {
                    return refused;
                }
                assert!(Instant::now() < deadline, "no refused handshake reported");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    #[test]
    fn a_client_with_an_active_keys_client_key_is_admitted_as_that_key() {
        let curve = Curve::start(|_| {});
        let client = KeyPair::for_client(KEY, SECRET.as_bytes()).unwrap();
        let _dealer = curve.dealer_sending(&client);
        let _identity = curve.router.recv_msg(0).unwrap();
        let mut body = curve.router.recv_msg(0).unwrap();
        assert_eq!(&*body, b"hello");
        assert_eq!(body.gets("User-Id"), Some(KEY));
        assert!(curve.handler.refused().is_empty());
        assert!(curve.handler.is_running());
    }

    #[test]
    fn revoked_and_unknown_client_keys_are_refused_and_counted_never_delivered() {
        let curve = Curve::start(|store| {
            store.add_key("ZKREVOKED", SECRET, None, 1).unwrap();
            store.revoke_key("ZKREVOKED", 2).unwrap();
        });
        let revoked = KeyPair::for_client("ZKREVOKED", SECRET.as_bytes()).unwrap();
        let dealer = curve.dealer_sending(&revoked);
        let refused = curve.refused();
        assert_eq!(refused[0].peer, "127.0.0.1");
        assert_eq!(refused[0].key.as_deref(), Some("ZKREVOKED"));
        drop(dealer);

        let _stranger = curve.dealer_sending(&KeyPair::generate().unwrap());
        let refused = curve.refused();
        assert_eq!(
            (refused[0].peer.as_str(), &refused[0].key),
            ("127.0.0.1", &None)
        );
        curve.router.set_rcvtimeo(0).unwrap();
        assert_eq!(
            curve.router.recv_msg(0).err(),
            Some(zmq::Error::EAGAIN),
            "nothing of a refused client reaches the server"
        );
    }

    #[test]
    fn requests_the_handler_does_not_understand_are_refused() {
        let found = |_: &[u8; 32]| {
            Ok(Some(CurveClient {
                id: KEY.into(),
                active: true,
            }))
        };
        let request = |domain: &str, mechanism: &str, credentials: &[&[u8]]| {
            let mut frames: Vec<Vec<u8>> = [b"1.0".as_slice(), b"7", domain.as_bytes()]
                .into_iter()
                .chain([b"10.0.0.1".as_slice(), b"", mechanism.as_bytes()])
                .map(<[u8]>::to_vec)
                .collect();
            frames.extend(credentials.iter().map(|c| c.to_vec()));
            frames
        };
        let key = [7u8; 32];
        assert_eq!(
            check(&request(DOMAIN, "CURVE", &[&key]), found),
            Verdict::Admit(KEY.into())
        );
        for (what, frames) in [
            ("another domain", request("other", "CURVE", &[&key])),
            (
                "no mechanism but CURVE",
                request(DOMAIN, "PLAIN", &[b"user", b"pass"]),
            ),
            (
                "a key of the wrong size",
                request(DOMAIN, "CURVE", &[&key[..31]]),
            ),
            ("no credentials", request(DOMAIN, "CURVE", &[])),
            ("too few frames", vec![b"1.0".to_vec()]),
        ] {
            assert_eq!(
                check(&frames, found),
                Verdict::Refuse { key: None },
                "{what}"
            );
        }
        assert_eq!(peer_of(&request(DOMAIN, "CURVE", &[&key])), "10.0.0.1");
        let unsure = check(&request(DOMAIN, "CURVE", &[&key]), |_| {
            Err(StoreError::UnknownKey("x".into()))
        });
        assert!(matches!(unsure, Verdict::Unsure(_)));
        let frames = reply(b"7", &unsure);
        assert_eq!((&frames[1][..], &frames[2][..]), (&b"7"[..], &b"500"[..]));
        let frames = reply(b"7", &Verdict::Admit(KEY.into()));
        assert_eq!(frames[4], KEY.as_bytes(), "the user id is the key id");
    }

    #[test]
    fn dropping_the_handler_stops_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_key(dir.path());
        let context = zmq::Context::new();
        let (log, _) = captured_log();
        let handler = Handler::start(&context, store, log).unwrap();
        assert!(handler.is_running());
        drop(handler);
        // The socket is closed once the thread ends: the endpoint is free to bind again.
        let again = context.socket(zmq::REP).unwrap();
        again.bind(ENDPOINT).unwrap();
    }
}
