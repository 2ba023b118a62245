//! The client: connect a REQ socket, send signed requests one at a time, and wait (bounded) for each reply.

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
    /// No reply came in time.
    #[error("no reply from {endpoint} within {timeout:?}: is `zavro serve` running there?{}", progress(*accepted_records))]
    Timeout {
        /// The endpoint we sent to.
        endpoint: String,
        /// How long we waited.
        timeout: Duration,
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

/// A connection to one server.
pub struct Client {
    socket: zmq::Socket,
    endpoint: String,
    timeout: Duration,
    accepted_records: u64,
}

impl Client {
    /// Connects to `endpoint` (a ZeroMQ endpoint). Connecting is lazy: an absent server shows up as a timeout.
    pub fn connect(
        context: &zmq::Context,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let socket_err = |source| ClientError::Socket {
            endpoint: endpoint.to_owned(),
            source,
        };
        let socket = context.socket(zmq::REQ).map_err(socket_err)?;
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // Never wait at exit for a request no server took.
        socket.set_linger(0).map_err(socket_err)?;
        socket.set_sndtimeo(millis).map_err(socket_err)?;
        socket.connect(endpoint).map_err(socket_err)?;
        Ok(Client {
            socket,
            endpoint: endpoint.to_owned(),
            timeout,
            accepted_records: 0,
        })
    }

    /// Sends one request and waits for its reply; an accepted reply must count every record sent.
    pub fn send(&mut self, request: &Request, records: u64) -> Result<i64, ClientError> {
        let socket_err = |source| ClientError::Socket {
            endpoint: self.endpoint.clone(),
            source,
        };
        let timeout = || ClientError::Timeout {
            endpoint: self.endpoint.clone(),
            timeout: self.timeout,
            accepted_records: self.accepted_records,
        };
        match self.socket.send_multipart(request.to_frames(), 0) {
            Err(zmq::Error::EAGAIN) => return Err(timeout()),
            other => other.map_err(socket_err)?,
        }
        let millis = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        if self.socket.poll(zmq::POLLIN, millis).map_err(socket_err)? == 0 {
            return Err(timeout());
        }
        let frames = self.socket.recv_multipart(0).map_err(socket_err)?;
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
            } if counted == records => {
                self.accepted_records += records;
                Ok(audit_id)
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
}
