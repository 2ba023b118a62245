//! The client: send signed requests one at a time over a REQ socket, wait (bounded) for each reply, and
//! resend the same request on a fresh socket when a reply does not come.

use std::time::Duration;

use crate::protocol::{RejectCode, Reply, Request};

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered and refused a request.
    #[error("rejected by the server: {code}: {message}{}{}", skew_hint(*server_time), progress(*accepted_records))]
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
    #[error("no reply from {endpoint} within {timeout:?} in {attempts} attempts: is `zavro serve` running there?{}", progress(*accepted_records))]
    Timeout {
        /// The endpoint we sent to.
        endpoint: String,
        /// How long each attempt waited.
        timeout: Duration,
        /// How many times the request was sent.
        attempts: u32,
        /// Records the server accepted before this.
        accepted_records: u64,
    },
    /// The reply was not a valid protocol reply.
    #[error("unexpected reply from {endpoint}: {reason}")]
    BadReply {
        /// The endpoint we sent to.
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
        matches!(self, ClientError::Timeout { .. })
    }
}

/// How long to wait before the first resend; doubled for each further attempt, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// A connection to one server, with Lazy Pirate retries: on a timeout the same signed request is sent again on
/// a fresh socket (a REQ socket that lost its reply cannot send again), and the server answers a byte-identical
/// retry of a committed request with the original audit id, so nothing is stored twice.
pub struct Client {
    context: zmq::Context,
    socket: Option<zmq::Socket>,
    endpoint: String,
    timeout: Duration,
    retries: u32,
    accepted_records: u64,
    resends: u64,
}

/// What the server said about an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The audit row that records the request.
    pub audit_id: i64,
    /// True when the server had already committed this request (a retry after a lost reply).
    pub duplicate: bool,
}

impl Client {
    /// Prepares a client for `endpoint` (a ZeroMQ endpoint). Connecting is lazy: an absent server shows up as a
    /// timeout, after `retries` resends.
    pub fn connect(
        context: &zmq::Context,
        endpoint: &str,
        timeout: Duration,
        retries: u32,
    ) -> Result<Client, ClientError> {
        let mut client = Client {
            context: context.clone(),
            socket: None,
            endpoint: endpoint.to_owned(),
            timeout,
            retries,
            accepted_records: 0,
            resends: 0,
        };
        client.reconnect()?;
        Ok(client)
    }

    fn socket_error(&self, source: zmq::Error) -> ClientError {
        ClientError::Socket {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    /// Replaces the socket with a fresh one (the old one is closed without lingering).
    fn reconnect(&mut self) -> Result<(), ClientError> {
        self.socket = None;
        let socket = self
            .context
            .socket(zmq::REQ)
            .map_err(|e| self.socket_error(e))?;
        let millis = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
        // Never wait at exit for a request no server took.
        socket.set_linger(0).map_err(|e| self.socket_error(e))?;
        socket
            .set_sndtimeo(millis)
            .map_err(|e| self.socket_error(e))?;
        socket
            .connect(&self.endpoint)
            .map_err(|e| self.socket_error(e))?;
        self.socket = Some(socket);
        Ok(())
    }

    /// Sends one request, resending it on timeouts, until a reply comes; an accepted reply must count every
    /// record sent.
    pub fn send(&mut self, request: &Request, records: u64) -> Result<Accepted, ClientError> {
        let frames = request.to_frames();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (attempt - 1).min(8))
                    .min(MAX_BACKOFF);
                std::thread::sleep(backoff);
                self.reconnect()?;
                self.resends += 1;
            }
            if let Some(reply) = self.attempt(&frames)? {
                return self.accept(reply, records);
            }
        }
        Err(ClientError::Timeout {
            endpoint: self.endpoint.clone(),
            timeout: self.timeout,
            attempts: self.retries + 1,
            accepted_records: self.accepted_records,
        })
    }

    /// One send and bounded wait; `None` when no reply came in time.
    fn attempt(&self, frames: &[Vec<u8>; 3]) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        let socket = self
            .socket
            .as_ref()
            .expect("connect() always leaves a socket");
        match socket.send_multipart(frames, 0) {
            Err(zmq::Error::EAGAIN) => return Ok(None),
            other => other.map_err(|e| self.socket_error(e))?,
        }
        let millis = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        match socket.poll(zmq::POLLIN, millis) {
            Ok(0) => Ok(None),
            Ok(_) => socket
                .recv_multipart(0)
                .map(Some)
                .map_err(|e| self.socket_error(e)),
            Err(e) => Err(self.socket_error(e)),
        }
    }

    fn accept(&mut self, frames: Vec<Vec<u8>>, records: u64) -> Result<Accepted, ClientError> {
        let bad = |reason: String| ClientError::BadReply {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let [frame] = frames.as_slice() else {
            return Err(bad(format!("{} frames instead of 1", frames.len())));
        };
        match Reply::from_frame(frame).map_err(|e| bad(e.to_string()))? {
            Reply::Accepted {
                audit_id,
                records: counted,
                duplicate,
            } if counted == records => {
                self.accepted_records += records;
                Ok(Accepted {
                    audit_id,
                    duplicate,
                })
            }
            Reply::Accepted {
                records: counted, ..
            } => Err(bad(format!(
                "server counted {counted} records, {records} were sent"
            ))),
            Reply::Rejected {
                code,
                message,
                server_time,
            } => Err(ClientError::Rejected {
                code,
                message,
                server_time,
                accepted_records: self.accepted_records,
            }),
        }
    }

    /// Records accepted so far on this connection.
    pub fn accepted_records(&self) -> u64 {
        self.accepted_records
    }

    /// How many times a request was sent again after a timeout.
    pub fn resends(&self) -> u64 {
        self.resends
    }
}
