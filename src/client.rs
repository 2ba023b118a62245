//! The client: keeps a window of signed requests in flight over DEALER sockets to one or more servers, matches
//! replies to requests, and resends a request whose reply does not come in time.
//!
//! A server answers the requests of one connection in the order it received them (PROTOCOL.md), so replies are
//! matched first-in, first-out per connection. When the oldest request of a connection times out, the socket is
//! closed (dropping any late replies), the endpoint rests for a back-off, and every request that was in flight
//! on it is sent again, unchanged, on the next connection that is up: the "Lazy Pirate" pattern. The server
//! recognises a byte-identical retry of a request it already committed and answers with the original audit id,
//! so a resend never stores anything twice.
//!
//! Each connection is CURVE-encrypted with the server's key pinned (or plaintext when asked), and its handshake
//! is watched until it succeeds, so a wrong server key, a transport mismatch or a key the server refuses at the
//! handshake fails at once with its reason ([`crate::handshake`]). Every `accepted` reply must be signed by the
//! server under the key's secret: a forged acknowledgement is never counted as stored.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use zeroize::Zeroizing;

use crate::{
    curve::{self, KeyPair},
    handshake::{
        HandshakeFailure, HandshakeState, HandshakeWatch, MECHANISM_MISMATCH, ZAP_REFUSED,
    },
    hardening,
    protocol::{RejectCode, Reply, ReplyFrame, Request},
};

/// How long an endpoint rests after a timeout before it is tried again; doubled per consecutive failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest rest.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Handshakes in a row that a server may close without a word before that counts as a handshake failure: one
/// can be a server that stopped at that moment, three (about 0.3 s of libzmq's reconnections) cannot.
const CLOSED_HANDSHAKES: u32 = 3;

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered and refused a request.
    #[error(
        "rejected by the server: {code}: {message}{}{}",
        skew_hint(*server_time),
        progress(*accepted_records)
    )]
    Rejected {
        /// The stable reason.
        code: RejectCode,
        /// The server's explanation.
        message: String,
        /// The server's clock, with `clock_skew`.
        server_time: Option<i64>,
        /// Records the server accepted before this refusal.
        accepted_records: u64,
    },
    /// No reply came in time, after every retry.
    #[error("no reply from {endpoints} within {timeout:?} in {attempts} attempts: is `zavro serve` running there?{}", progress(*accepted_records))]
    Timeout {
        /// The endpoints we sent to.
        endpoints: String,
        /// How long each attempt waited.
        timeout: Duration,
        /// How many times the request was sent.
        attempts: u32,
        /// Records the server accepted before this.
        accepted_records: u64,
    },
    /// The server could not check the client's key at the handshake (its store was unavailable), every time it
    /// was tried.
    #[error(
        "the server at {endpoint} could not check key {key} at the handshake (ZAP status {status}: its store is \
         unavailable) in {attempts} attempts; see the server's log{}",
        progress(*accepted_records)
    )]
    Unavailable {
        /// The endpoint.
        endpoint: String,
        /// The API key the client presented.
        key: String,
        /// The ZAP status the server answered (300 or 500).
        status: u32,
        /// How many times the request was sent.
        attempts: u32,
        /// Records accepted before this.
        accepted_records: u64,
    },
    /// The reply was not a valid protocol reply.
    #[error("unexpected reply from {endpoint}: {reason}")]
    BadReply {
        /// The endpoint that sent it.
        endpoint: String,
        /// What was wrong with it.
        reason: String,
    },
    /// ZeroMQ refused the endpoint or the socket failed.
    #[error("cannot talk to {endpoint}: {source}")]
    Socket {
        /// The endpoint.
        endpoint: String,
        /// ZeroMQ's error.
        source: zmq::Error,
    },
    /// The handshake with the server failed: it could not be authenticated, or it refused this client.
    #[error("the server at {endpoint}: {}", handshake_reason(*failure, *curve, key))]
    Handshake {
        /// The endpoint.
        endpoint: String,
        /// How it failed.
        failure: HandshakeFailure,
        /// True when the client spoke CURVE, false with `--plaintext`.
        curve: bool,
        /// The API key the client presented.
        key: String,
    },
    /// An acknowledgement the server did not sign under the key's secret.
    #[error(
        "reply from {endpoint} ({what}) is not signed by the server under key {key}: possible forgery; the \
         records may not be stored{}",
        progress(*accepted_records)
    )]
    Unsigned {
        /// The endpoint it came from.
        endpoint: String,
        /// What was wrong with its signature.
        what: &'static str,
        /// The API key whose secret should have signed it.
        key: String,
        /// Records accepted, with valid signatures, before this.
        accepted_records: u64,
    },
    /// The client's CURVE key pair could not be made (libzmq without CURVE).
    #[error(transparent)]
    Curve(#[from] curve::CurveError),
}

/// Why a handshake failed, in words, given whether the client spoke CURVE and the key it presented.
fn handshake_reason(failure: HandshakeFailure, curve: bool, key: &str) -> String {
    match (failure, curve) {
        (HandshakeFailure::Closed, true) => {
            "did not complete the CURVE handshake: wrong server key, or a plaintext server?".into()
        }
        // A CURVE server that reads a plaintext greeting may drop the connection before the client sees why.
        (HandshakeFailure::Closed, false) => {
            "closed the connection during the handshake: does it require CURVE? Then give its key with \
             --server-key (`zavro server-key` prints it on the server) instead of --plaintext"
                .into()
        }
        (HandshakeFailure::Protocol(MECHANISM_MISMATCH), true) => {
            "did not complete the CURVE handshake: it is a plaintext server (`serve --plaintext`)"
                .into()
        }
        (HandshakeFailure::Protocol(MECHANISM_MISMATCH), false) => {
            "refused the plaintext connection: it requires CURVE; give its key with --server-key \
             (`zavro server-key` prints it on the server) instead of --plaintext"
                .into()
        }
        (HandshakeFailure::Protocol(code), _) => {
            format!("the handshake failed with ZMTP protocol error {code:#x}")
        }
        (HandshakeFailure::Refused(ZAP_REFUSED), _) => {
            format!("refused key {key} at the handshake (unknown, revoked or expired key)")
        }
        (HandshakeFailure::Refused(status), _) => format!(
            "could not check key {key} at the handshake (ZAP status {status}); see the server's log"
        ),
    }
}

fn skew_hint(server_time: Option<i64>) -> String {
    server_time
        .map(|t| {
            format!(
                " (server time {t}, this machine {})",
                crate::timestamp::now_seconds()
            )
        })
        .unwrap_or_default()
}

fn progress(accepted: u64) -> String {
    if accepted > 0 {
        format!("; {accepted} records were accepted before this")
    } else {
        String::new()
    }
}

impl ClientError {
    /// True when the server answered with a refusal.
    pub fn is_rejection(&self) -> bool {
        matches!(self, ClientError::Rejected { .. })
    }

    /// True when the server could not be reached or did not answer.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. } | ClientError::Unavailable { .. }
        )
    }

    /// True when the server could not be authenticated: a failed handshake, or a reply it did not sign.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            ClientError::Handshake { .. } | ClientError::Unsigned { .. }
        )
    }
}

/// How the client's connections are secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// No encryption, for a `zavro serve --plaintext` server.
    Plaintext,
    /// CurveZMQ, with the server's public key pinned.
    Curve {
        /// The server public keys the client accepts, tried in this order: one, or two while the servers' key
        /// is rotated (SECURITY.md, "Rotating the server key"). Never empty.
        server_keys: Vec<[u8; 32]>,
    },
}

/// Who the client is: the API key its requests are signed with. The secret derives the client's CURVE key pair
/// and checks the signatures of replies.
pub struct Identity {
    /// The API key id.
    pub key: String,
    /// Its secret, wiped from memory when dropped.
    pub secret: Zeroizing<String>,
}

/// The CURVE keys set on every socket: the server's public key (one of those pinned) and this client's key pair.
struct CurveKeys {
    server_keys: Vec<[u8; 32]>,
    client: KeyPair,
}

/// `max` as a ZeroMQ poll timeout in milliseconds, rounded up so a wait never ends just before its deadline.
pub fn poll_millis(max: Duration) -> i64 {
    i64::try_from(max.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}

/// How the client sends.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a request may wait for its reply before it is sent again.
    pub timeout: Duration,
    /// How many times a request is sent again before giving up.
    pub retries: u32,
    /// Requests in flight per connection.
    pub window: usize,
}

/// An accepted request, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The audit row that records the request.
    pub audit_id: i64,
    /// Records it carried.
    pub records: u64,
    /// True when the server had already committed this request (a retry after a lost reply).
    pub duplicate: bool,
    /// From the first send to the reply.
    pub latency: Duration,
    /// The caller's tag of the request ([`Client::submit_tagged`]; 0 for [`Client::submit`]).
    pub tag: u64,
}

/// A request the server refused for good for its own content, as the client saw it
/// ([`Client::return_refused_requests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The caller's tag of the request ([`Client::submit_tagged`]).
    pub tag: u64,
    /// The server's reply code.
    pub code: RejectCode,
    /// The server's explanation.
    pub message: String,
}

/// A request waiting for its reply.
struct InFlight {
    tag: u64,
    nonce: String,
    frames: [Vec<u8>; 4],
    records: u64,
    attempts: u32,
    first_sent: Instant,
    sent: Instant,
}

/// One endpoint's socket and the requests in flight on it, oldest first.
struct Connection {
    endpoint: String,
    socket: Option<zmq::Socket>,
    /// The socket's handshake monitor, until a handshake succeeds.
    watch: Option<HandshakeWatch>,
    /// Handshakes the server closed without a word since the last that succeeded, over every socket.
    closed_handshakes: u32,
    /// Which of the pinned server keys this connection's socket uses.
    server_key: usize,
    /// Pinned server keys given up on, in a row, for this connection: each failed the handshake.
    server_keys_failed: usize,
    in_flight: VecDeque<InFlight>,
    failures: u32,
    rest_until: Option<Instant>,
}

impl Connection {
    /// Ends the handshake watch, stopping the socket's monitor first (see [`crate::handshake`]).
    fn stop_watching(&mut self) {
        if let (Some(watch), Some(socket)) = (self.watch.take(), self.socket.as_mut()) {
            watch.stop(socket);
        }
    }

    /// Closes the socket, and its watch before it.
    fn close(&mut self) {
        self.stop_watching();
        self.socket = None;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// Sends requests to one or more servers with a window of requests in flight on each.
pub struct Client {
    context: zmq::Context,
    settings: Settings,
    identity: Identity,
    /// `None` over plaintext.
    curve: Option<CurveKeys>,
    connections: Vec<Connection>,
    next: usize,
    /// Requests whose connection failed, to be sent again before any new one.
    resend: VecDeque<InFlight>,
    accepted: VecDeque<Accepted>,
    accepted_records: u64,
    resends: u64,
    /// True when a signed `clock_skew` refusal goes back to the caller ([`Client::take_stale`]) instead of
    /// failing the run.
    stale_to_caller: bool,
    /// Tags of requests refused as stale, for the caller to sign again.
    stale: VecDeque<u64>,
    /// True when a signed refusal for good of one request's content goes back to the caller
    /// ([`Client::take_refused`]) instead of failing the run.
    refused_to_caller: bool,
    /// Requests refused for good for their own content, for the caller to keep aside.
    refused: VecDeque<Refusal>,
}

impl Client {
    /// Prepares connections to `endpoints` (ZeroMQ endpoints) over `transport`, for requests signed by
    /// `identity`'s key. Connecting is lazy: an absent server shows up as a timeout.
    pub fn connect(
        context: &zmq::Context,
        endpoints: &[String],
        settings: Settings,
        transport: Transport,
        identity: Identity,
    ) -> Result<Client, ClientError> {
        hardening::keep_out_of_swap(&identity.secret);
        let curve = match transport {
            Transport::Plaintext => None,
            Transport::Curve { server_keys } => {
                if !curve::available() {
                    return Err(curve::CurveError::Unavailable(
                        "this build's libzmq has no CURVE (see vendor/README.md)".into(),
                    )
                    .into());
                }
                Some(CurveKeys {
                    server_keys,
                    client: KeyPair::for_client(&identity.key, identity.secret.as_bytes())?,
                })
            }
        };
        let mut client = Client {
            context: context.clone(),
            settings: Settings {
                window: settings.window.max(1),
                ..settings
            },
            identity,
            curve,
            connections: endpoints
                .iter()
                .map(|endpoint| Connection {
                    endpoint: endpoint.clone(),
                    socket: None,
                    watch: None,
                    closed_handshakes: 0,
                    server_key: 0,
                    server_keys_failed: 0,
                    in_flight: VecDeque::new(),
                    failures: 0,
                    rest_until: None,
                })
                .collect(),
            next: 0,
            resend: VecDeque::new(),
            accepted: VecDeque::new(),
            accepted_records: 0,
            resends: 0,
            stale_to_caller: false,
            stale: VecDeque::new(),
            refused_to_caller: false,
            refused: VecDeque::new(),
        };
        for index in 0..client.connections.len() {
            client.open(index)?;
        }
        Ok(client)
    }

    /// Queues a request, first waiting while every connection's window is full. Replies that arrive meanwhile
    /// are collected; see [`Client::take_accepted`].
    pub fn submit(&mut self, request: &Request, records: u64) -> Result<(), ClientError> {
        self.submit_tagged(request, records, 0)
    }

    /// [`Client::submit`], with a tag of the caller's that the request's [`Accepted`] (or its stale refusal,
    /// [`Client::take_stale`]) carries back.
    pub fn submit_tagged(
        &mut self,
        request: &Request,
        records: u64,
        tag: u64,
    ) -> Result<(), ClientError> {
        let [version, envelope, payload] = request.to_frames();
        let now = Instant::now();
        self.resend.push_back(InFlight {
            tag,
            nonce: request.envelope.nonce.clone(),
            // The empty delimiter makes the DEALER's request look like a REQ's, which the server expects.
            frames: [Vec::new(), version, envelope, payload],
            records,
            attempts: 0,
            first_sent: now,
            sent: now,
        });
        while !self.resend.is_empty() {
            self.dispatch()?;
            if !self.resend.is_empty() {
                self.wait(None, None)?;
            }
        }
        // Collect replies that are already here, so their latency is not stretched by the caller's next batch.
        self.wait(Some(Duration::ZERO), None)
    }

    /// Waits until every submitted request is answered.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        while !self.resend.is_empty() || self.connections.iter().any(|c| !c.in_flight.is_empty()) {
            self.dispatch()?;
            self.wait(None, None)?;
        }
        Ok(())
    }

    /// Sends requests waiting for a connection, then waits at most `max` for replies, or until `input` (the
    /// caller's own input signal) becomes readable, handling replies and timeouts as [`Client::submit`] does. A
    /// sender whose input is slow calls it so acknowledgements and resends do not wait for the next record.
    pub fn wait_with(&mut self, input: &zmq::Socket, max: Duration) -> Result<(), ClientError> {
        self.dispatch()?;
        self.wait(Some(max), Some(input))
    }

    /// Sends requests waiting for a connection, then waits at most `max` for replies, handling them and timeouts
    /// as [`Client::submit`] does: for a sender whose input is not a socket (followed files, polled).
    pub fn wait_for(&mut self, max: Duration) -> Result<(), ClientError> {
        self.dispatch()?;
        self.wait(Some(max), None)
    }

    /// The accepted replies collected since the last call, in arrival order.
    pub fn take_accepted(&mut self) -> impl Iterator<Item = Accepted> + '_ {
        self.accepted.drain(..)
    }

    /// From now on, a `clock_skew` refusal the server signed is handed back ([`Client::take_stale`]) rather than
    /// failing the run: a caller whose requests carry a request id (PROTOCOL.md, "Request ids") signs them again
    /// with a fresh timestamp and nonce, which cannot store anything twice.
    pub fn return_stale_requests(&mut self) {
        self.stale_to_caller = true;
    }

    /// The tags of requests refused as stale since the last call, in arrival order; they are no longer in flight.
    pub fn take_stale(&mut self) -> impl Iterator<Item = u64> + '_ {
        self.stale.drain(..)
    }

    /// From now on, a refusal for good of one request's content ([`RejectCode::concerns_the_request_alone`])
    /// that the server signed is handed back ([`Client::take_refused`]) rather than failing the run, so a caller
    /// that keeps such requests aside can go on with the others. Every other refusal still fails the run.
    pub fn return_refused_requests(&mut self) {
        self.refused_to_caller = true;
    }

    /// The requests refused for good since the last call, in arrival order; they are no longer in flight.
    pub fn take_refused(&mut self) -> impl Iterator<Item = Refusal> + '_ {
        self.refused.drain(..)
    }

    /// Records accepted so far.
    pub fn accepted_records(&self) -> u64 {
        self.accepted_records
    }

    /// How many times a request was sent again after a timeout.
    pub fn resends(&self) -> u64 {
        self.resends
    }

    fn socket_error(endpoint: &str, source: zmq::Error) -> ClientError {
        ClientError::Socket {
            endpoint: endpoint.to_owned(),
            source,
        }
    }

    /// Opens a fresh socket for connection `index`, replacing any old one, with its CURVE keys (unless
    /// plaintext) and a watch on its handshake.
    fn open(&mut self, index: usize) -> Result<(), ClientError> {
        let connection = &mut self.connections[index];
        connection.close();
        let err = |e| Self::socket_error(&connection.endpoint, e);
        let socket = self.context.socket(zmq::DEALER).map_err(err)?;
        // Never wait at exit for requests no server took.
        socket.set_linger(0).map_err(err)?;
        if connection.endpoint.starts_with("tcp://[") {
            socket.set_ipv6(true).map_err(err)?;
        }
        if let Some(keys) = &self.curve {
            let server_key = keys
                .server_keys
                .get(connection.server_key)
                .or(keys.server_keys.first())
                .ok_or_else(|| err(zmq::Error::EINVAL))?;
            socket.set_curve_serverkey(server_key).map_err(err)?;
            socket
                .set_curve_publickey(&keys.client.public)
                .map_err(err)?;
            socket
                .set_curve_secretkey(keys.client.secret())
                .map_err(err)?;
        }
        let watch = HandshakeWatch::start(&self.context, &socket).map_err(err)?;
        // Held by the connection before connecting, so a failure leaves both to `close`.
        connection.socket = Some(socket);
        connection.watch = Some(watch);
        if let Some(socket) = &connection.socket {
            socket.connect(&connection.endpoint).map_err(err)?;
        }
        Ok(())
    }

    /// Reads the handshake monitors: a success ends its watch; a server that closes the handshake moves the
    /// connection to the next pinned server key, if any is left to try; any other failure ends the run.
    fn check_handshakes(&mut self) -> Result<(), ClientError> {
        let pinned = self.curve.as_ref().map_or(0, |keys| keys.server_keys.len());
        for index in 0..self.connections.len() {
            let connection = &mut self.connections[index];
            let Some(watch) = &connection.watch else {
                continue;
            };
            let failure = match watch
                .read()
                .map_err(|e| Self::socket_error(&connection.endpoint, e))?
            {
                HandshakeState::Pending => continue,
                HandshakeState::Succeeded => {
                    // Watching costs a poll per wait; a later reconnection with a failing handshake shows up as a
                    // timeout, and the fresh socket after it is watched again.
                    connection.stop_watching();
                    connection.closed_handshakes = 0;
                    connection.server_keys_failed = 0;
                    continue;
                }
                HandshakeState::Failed(HandshakeFailure::Closed)
                    if connection.closed_handshakes + 1 < CLOSED_HANDSHAKES =>
                {
                    connection.closed_handshakes += 1;
                    continue;
                }
                HandshakeState::Failed(HandshakeFailure::Closed)
                    if connection.server_keys_failed + 1 < pinned =>
                {
                    // The server may be presenting the other pinned key (a rotation under way).
                    connection.server_keys_failed += 1;
                    connection.server_key = (connection.server_key + 1) % pinned;
                    connection.closed_handshakes = 0;
                    self.reopen_unheard(index)?;
                    continue;
                }
                HandshakeState::Failed(HandshakeFailure::Refused(status))
                    if status != ZAP_REFUSED =>
                {
                    // The server could not check the key now (its store is down, say): not a refusal. libzmq
                    // gives up on the connection, so it rests and is opened again, and what was in flight on it
                    // (which no server saw) is sent again, each send counting against --retries.
                    self.retry_after_temporary_refusal(index, status)?;
                    continue;
                }
                HandshakeState::Failed(failure) => failure,
            };
            return Err(ClientError::Handshake {
                endpoint: connection.endpoint.clone(),
                failure,
                curve: self.curve.is_some(),
                key: self.identity.key.clone(),
            });
        }
        Ok(())
    }

    /// Opens connection `index` afresh after a handshake that never completed, and queues its requests to be
    /// sent again first, in order. No server saw them, so the attempt does not count against `--retries`.
    fn reopen_unheard(&mut self, index: usize) -> Result<(), ClientError> {
        let requests: Vec<InFlight> = self.connections[index].in_flight.drain(..).collect();
        for mut request in requests.into_iter().rev() {
            request.attempts = request.attempts.saturating_sub(1);
            self.resend.push_front(request);
        }
        self.open(index)
    }

    /// Sends queued requests on connections that are up and have room in their window.
    fn dispatch(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        let count = self.connections.len();
        for _ in 0..count {
            if self.resend.is_empty() {
                break;
            }
            let index = self.next;
            self.next = (self.next + 1) % count;
            if self.connections[index]
                .rest_until
                .is_some_and(|until| until > now)
            {
                continue;
            }
            if self.connections[index].socket.is_none() {
                self.open(index)?;
                self.connections[index].rest_until = None;
            }
            let window = self.settings.window;
            let connection = &mut self.connections[index];
            while connection.in_flight.len() < window {
                let Some(mut request) = self.resend.pop_front() else {
                    break;
                };
                let socket = connection.socket.as_ref().expect("opened above");
                match socket.send_multipart(&request.frames, zmq::DONTWAIT) {
                    Ok(()) => {
                        let now = Instant::now();
                        if request.attempts == 0 {
                            // Latency runs from the first send, not from when the request was queued.
                            request.first_sent = now;
                        }
                        request.attempts += 1;
                        request.sent = now;
                        connection.in_flight.push_back(request);
                    }
                    Err(zmq::Error::EAGAIN) => {
                        // No peer yet, or its queue is full: try again after the next wait.
                        self.resend.push_front(request);
                        break;
                    }
                    Err(e) => return Err(Self::socket_error(&connection.endpoint, e)),
                }
            }
        }
        Ok(())
    }

    /// Waits for replies (until the nearest deadline, or at most `max`), or for `input` to become readable;
    /// handles what arrived, and fails over timed-out connections.
    fn wait(
        &mut self,
        max: Option<Duration>,
        input: Option<&zmq::Socket>,
    ) -> Result<(), ClientError> {
        let now = Instant::now();
        let timeout = self.settings.timeout;
        // Requests that found no connection with room are offered again this often; with none, only replies,
        // timeouts and the input can end the wait.
        let idle = match max {
            Some(max) if self.resend.is_empty() => max,
            _ => Duration::from_millis(50),
        };
        let until_deadline = self
            .connections
            .iter()
            .filter_map(|c| c.in_flight.front().map(|r| r.sent + timeout))
            .chain(self.connections.iter().filter_map(|c| c.rest_until))
            .min()
            .map_or(idle, |deadline| deadline.saturating_duration_since(now));
        let wait_ms = match max {
            Some(max) => poll_millis(until_deadline.min(max)),
            None => poll_millis(until_deadline).clamp(1, 1000),
        };
        let open: Vec<usize> = (0..self.connections.len())
            .filter(|&i| self.connections[i].socket.is_some())
            .collect();
        let watching = self.connections.iter().any(|c| c.watch.is_some());
        if let ([index], None, false) = (open.as_slice(), input, watching) {
            // One connection and nothing else to watch, the usual case: wait in a receive with a timeout
            // rather than in zmq_poll, which asks the socket for its events before and after the wait (about
            // half the system calls per reply in lockstep).
            self.receive_within(*index, wait_ms)?;
            return self.fail_over_timed_out();
        }
        let ready: Vec<bool> = {
            let mut items: Vec<zmq::PollItem> = self
                .connections
                .iter()
                .filter_map(|c| c.socket.as_ref())
                .map(|s| s.as_poll_item(zmq::POLLIN))
                .collect();
            // After the connections, so their readiness keeps their order; the monitors are read in any case.
            items.extend(
                self.connections
                    .iter()
                    .filter_map(|c| c.watch.as_ref())
                    .map(|w| w.socket().as_poll_item(zmq::POLLIN)),
            );
            // Last; the caller looks at its input itself.
            items.extend(input.map(|s| s.as_poll_item(zmq::POLLIN)));
            if items.is_empty() {
                std::thread::sleep(Duration::from_millis(wait_ms.unsigned_abs()));
                Vec::new()
            } else {
                match zmq::poll(&mut items, wait_ms) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => return Err(Self::socket_error("the sockets", e)),
                }
                items.iter().map(|item| item.is_readable()).collect()
            }
        };
        // Handshakes first: a failed one explains a silence better than the timeout handled below.
        self.check_handshakes()?;
        for (index, readable) in open.into_iter().zip(ready) {
            if readable {
                self.receive(index)?;
            }
        }
        self.fail_over_timed_out()
    }

    /// Waits up to `wait_ms` for a reply on connection `index`, then takes every reply waiting there.
    fn receive_within(&mut self, index: usize, wait_ms: i64) -> Result<(), ClientError> {
        let connection = &self.connections[index];
        let Some(socket) = connection.socket.as_ref() else {
            return Ok(());
        };
        let err = |e| Self::socket_error(&connection.endpoint, e);
        socket
            .set_rcvtimeo(i32::try_from(wait_ms).unwrap_or(i32::MAX))
            .map_err(err)?;
        match socket.recv_multipart(0) {
            Ok(frames) => {
                self.handle_reply(index, frames)?;
                self.receive(index)
            }
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Takes every reply waiting on connection `index`.
    fn receive(&mut self, index: usize) -> Result<(), ClientError> {
        loop {
            let connection = &mut self.connections[index];
            let socket = connection
                .socket
                .as_ref()
                .expect("only open sockets are polled");
            let frames = match socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(Self::socket_error(&connection.endpoint, e)),
            };
            self.handle_reply(index, frames)?;
        }
    }

    /// Credits the request a reply frame answers, or fails on a refusal or a reply that is not the protocol's.
    fn handle_reply(&mut self, index: usize, frames: Vec<Vec<u8>>) -> Result<(), ClientError> {
        let connection = &mut self.connections[index];
        let bad = |reason: String| ClientError::BadReply {
            endpoint: connection.endpoint.clone(),
            reason,
        };
        let [delimiter, frame] = frames.as_slice() else {
            return Err(bad(format!("{} frames instead of 2", frames.len())));
        };
        if !delimiter.is_empty() {
            return Err(bad("the first frame is not the empty delimiter".into()));
        }
        let frame = ReplyFrame::from_frame(frame).map_err(|e| bad(e.to_string()))?;
        // Replies are matched by the nonce they carry: a request lost with a server that died can never
        // be credited with the reply to a later one.
        let position = match &frame.nonce {
            Some(nonce) => connection.in_flight.iter().position(|r| r.nonce == *nonce),
            None => (!connection.in_flight.is_empty()).then_some(0),
        };
        let Some(position) = position else {
            // A late answer to a request already resent and answered elsewhere: nothing to do.
            return Ok(());
        };
        // An acknowledgement counts only when the server signed it under the key's secret. An unsigned
        // rejection claims nothing was stored, so it is taken as it is: the server signs only replies to requests
        // that proved to be signed with the key's secret (PROTOCOL.md, "Signed replies"), so a refusal before
        // that (a wrong secret, a revoked key) cannot be signed. A signed reply, though, can only have been signed
        // under this client's own secret: a wrong signature on it means someone altered or made it up.
        let verified = frame.signed_by(self.identity.secret.as_bytes());
        let forged = match (&frame.reply, &frame.signature) {
            (Reply::Accepted { .. }, None) => Some("accepted, without a signature"),
            (Reply::Accepted { .. }, Some(_)) if !verified => {
                Some("accepted, with a wrong signature")
            }
            (Reply::Rejected { .. }, Some(_)) if !verified => {
                Some("rejected, with a wrong signature")
            }
            _ => None,
        };
        if let Some(what) = forged {
            return Err(ClientError::Unsigned {
                endpoint: connection.endpoint.clone(),
                what,
                key: self.identity.key.clone(),
                accepted_records: self.accepted_records,
            });
        }
        let request = connection
            .in_flight
            .remove(position)
            .expect("the position was just found");
        if let Reply::Rejected {
            code: RejectCode::Internal,
            ..
        } = &frame.reply
            && request.attempts <= self.settings.retries
        {
            // The server could not store it (its database is down or restarting, say) and kept nothing: send it
            // again, unchanged, once the connection has rested, as after a timeout.
            rest(connection, Instant::now());
            self.resends += 1;
            self.resend.push_front(request);
            return Ok(());
        }
        connection.failures = 0;
        if let Reply::Rejected {
            code: RejectCode::ClockSkew,
            ..
        } = &frame.reply
            && self.stale_to_caller
            && verified
        {
            self.stale.push_back(request.tag);
            return Ok(());
        }
        if let Reply::Rejected { code, message, .. } = &frame.reply
            && code.concerns_the_request_alone()
            && self.refused_to_caller
            && verified
        {
            // Only a signed refusal: an unsigned one could have been made up on the path to move a request out
            // of line, and the server signs every refusal of this kind.
            self.refused.push_back(Refusal {
                tag: request.tag,
                code: *code,
                message: message.clone(),
            });
            return Ok(());
        }
        match frame.reply {
            Reply::Accepted {
                audit_id,
                records,
                duplicate,
            } if records == request.records => {
                self.accepted_records += records;
                self.accepted.push_back(Accepted {
                    audit_id,
                    records,
                    duplicate,
                    latency: request.first_sent.elapsed(),
                    tag: request.tag,
                });
            }
            Reply::Accepted { records, .. } => {
                return Err(bad(format!(
                    "server counted {records} records, {} were sent",
                    request.records
                )));
            }
            Reply::Rejected {
                code,
                message,
                server_time,
            } => {
                return Err(ClientError::Rejected {
                    code,
                    message,
                    server_time,
                    accepted_records: self.accepted_records,
                });
            }
        }
        Ok(())
    }

    /// Closes connection `index`, whose handshake the server could not complete for now (ZAP `status` 300 or
    /// 500), lets it rest, and queues what was in flight on it to be sent again; fails once a request has used
    /// all its attempts.
    fn retry_after_temporary_refusal(
        &mut self,
        index: usize,
        status: u32,
    ) -> Result<(), ClientError> {
        let now = Instant::now();
        let connection = &mut self.connections[index];
        connection.close();
        rest(connection, now);
        let requests: Vec<InFlight> = connection.in_flight.drain(..).collect();
        for request in requests.into_iter().rev() {
            if request.attempts > self.settings.retries {
                return Err(ClientError::Unavailable {
                    endpoint: self.connections[index].endpoint.clone(),
                    key: self.identity.key.clone(),
                    status,
                    attempts: request.attempts,
                    accepted_records: self.accepted_records,
                });
            }
            self.resends += 1;
            self.resend.push_front(request);
        }
        Ok(())
    }

    /// Closes every connection whose oldest request has waited too long and queues its requests to be sent
    /// again, unchanged; gives up on a request that used all its attempts.
    fn fail_over_timed_out(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        for index in 0..self.connections.len() {
            let connection = &mut self.connections[index];
            let timed_out = connection
                .in_flight
                .front()
                .is_some_and(|r| now.duration_since(r.sent) >= self.settings.timeout);
            if !timed_out {
                continue;
            }
            // Dropping the socket drops any late replies with it, so FIFO matching stays right.
            connection.close();
            rest(connection, now);
            let requests: Vec<InFlight> = connection.in_flight.drain(..).collect();
            for request in requests.into_iter().rev() {
                if request.attempts > self.settings.retries {
                    return Err(ClientError::Timeout {
                        endpoints: self
                            .connections
                            .iter()
                            .map(|c| c.endpoint.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        timeout: self.settings.timeout,
                        attempts: request.attempts,
                        accepted_records: self.accepted_records,
                    });
                }
                self.resends += 1;
                self.resend.push_front(request);
            }
        }
        Ok(())
    }
}

/// Lets a connection that failed rest before it is used again: [`FIRST_BACKOFF`], doubled per failure in a row,
/// at most [`MAX_BACKOFF`]. A connection already resting is left as it is, so many failures noticed at once
/// count as one.
fn rest(connection: &mut Connection, now: Instant) {
    if connection.rest_until.is_some_and(|until| until > now) {
        return;
    }
    let backoff = FIRST_BACKOFF
        .saturating_mul(1 << connection.failures.min(8))
        .min(MAX_BACKOFF);
    connection.failures += 1;
    connection.rest_until = Some(now + backoff);
}
