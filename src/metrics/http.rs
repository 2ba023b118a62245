//! The HTTP listener of `serve --metrics`: `/metrics` (the registry in the OpenMetrics text format, which
//! Prometheus asks for), `/healthz` (the process answers) and `/readyz` ([`Readiness`]). One thread of its own
//! takes the requests in turn; it reads atomics and nothing else, so however slow or many the scrapes, the server
//! loop never waits for them.
//!
//! Its cost is bounded whoever connects: at most [`MAX_SCRAPES`] connections are open at once (one descriptor
//! each, the newest kept: a peer that opens more closes its own older ones), each has [`REQUEST_DEADLINE`] to send
//! a request of at most [`MAX_REQUEST_BYTES`], and an answer that cannot be written within [`WRITE_DEADLINE`]
//! is dropped. An `accept` that fails (the process out of descriptors: peers of the ZeroMQ port hold them) leaves
//! the connection in the kernel's queue and is tried again a moment later, so the probes come back with the
//! descriptors. A general-purpose HTTP server (tiny_http, used before) starts a thread per connection and
//! never times a read out: idle connections to this port could take every thread and descriptor of `serve`.
//!
//! Only what a scraper and a probe need of HTTP/1.x is read: the request line; headers are skipped, a body is
//! not expected, and every answer closes its connection. Nothing here is authenticated: bind it to loopback or a
//! private interface (README.md, "Metrics and health").

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use prometheus_client::{encoding::text::encode, registry::Registry};

use super::Readiness;

/// Connections open at once; `serve` keeps one more descriptor than this free for them under its open-file limit
/// (the newest is accepted before the oldest is let go).
pub const MAX_SCRAPES: usize = 4;

/// Connections accepted in one turn before the open ones are read again and the stop flag looked at: a flood of
/// connections cannot keep the thread accepting.
const ACCEPTS_PER_TURN: usize = 64;

/// Bytes of a request still unread that are taken, and dropped, before its connection is closed: closing a socket
/// with unread input sends a reset, which may reach the client before the answer does.
const DRAIN_BYTES: usize = 64 * 1024;

/// How long a connection may take to send its request, from when it is accepted.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long writing an answer may take in all before the connection is dropped.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// The longest request (line and headers) read; a longer one is answered 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// The media type of the OpenMetrics text format that prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of the plain answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// How long the thread waits for something to do before it looks at its stop flag again; also its pause after a
/// failed `accept`.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound (in use, not this machine's, not allowed).
    #[error("cannot listen for metrics on {address}: {reason}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why, as the OS said it.
        reason: String,
    },
    /// A thread of its own (the listener's, or the connection counter's) could not be started.
    #[error("cannot start a thread for --metrics: {0}")]
    Thread(#[from] std::io::Error),
    /// The server socket's monitor, which counts its connections, could not be set up.
    #[error("cannot count connections for --metrics: {0}")]
    Monitor(#[from] zmq::Error),
}

/// The running listener; dropping it stops its thread and closes the port.
pub struct Endpoint {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    address: SocketAddr,
}

impl Endpoint {
    /// Binds `address` and starts answering scrapes of `registry` and probes of `readiness`.
    pub fn start(
        address: SocketAddr,
        registry: Registry,
        readiness: Readiness,
    ) -> Result<Endpoint, MetricsError> {
        let bind_error = |e: io::Error| MetricsError::Bind {
            address,
            reason: e.to_string(),
        };
        let listener = TcpListener::bind(address).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        // Port 0 asks the OS for one: report the one it gave.
        let bound = listener.local_addr().unwrap_or(address);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let mut answering = Answering {
                listener,
                open: Vec::new(),
                registry,
                readiness,
            };
            thread::Builder::new()
                .name("metrics".into())
                .spawn(move || answering.until_stopped(&stop))?
        };
        Ok(Endpoint {
            stop,
            thread: Some(thread),
            address: bound,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // A panic in the thread was already printed; there is nothing more to do with it here.
            let _ = thread.join();
        }
    }
}

/// A connection whose request is being read.
struct Open {
    stream: TcpStream,
    request: Vec<u8>,
    deadline: Instant,
}

/// The listener thread's state.
struct Answering {
    listener: TcpListener,
    /// Oldest first.
    open: Vec<Open>,
    registry: Registry,
    readiness: Readiness,
}

impl Answering {
    /// Accepts, reads and answers until `stop`.
    fn until_stopped(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            self.open.retain(|open| open.deadline > now);
            let (listener_ready, readable) = match self.wait() {
                Ok(ready) => ready,
                Err(_) => {
                    thread::sleep(POLL_INTERVAL);
                    continue;
                }
            };
            // Requests first, then new connections: accepting may close the oldest, whose index would move.
            for index in readable.into_iter().rev() {
                self.read(index);
            }
            if listener_ready && !self.accept() {
                thread::sleep(POLL_INTERVAL);
            }
        }
    }

    /// Waits for the listener or an open connection to be readable: whether the listener is, and which
    /// connections are, in increasing order.
    fn wait(&self) -> nix::Result<(bool, Vec<usize>)> {
        let mut fds = Vec::with_capacity(1 + self.open.len());
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        for open in &self.open {
            fds.push(PollFd::new(open.stream.as_fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(POLL_INTERVAL).unwrap_or(PollTimeout::NONE);
        poll(&mut fds, timeout)?;
        let ready = |fd: &PollFd| fd.revents().is_some_and(|events| !events.is_empty());
        let listener_ready = ready(&fds[0]);
        let readable = (1..fds.len())
            .filter(|&i| ready(&fds[i]))
            .map(|i| i - 1)
            .collect();
        Ok((listener_ready, readable))
    }

    /// Takes the connections waiting ([`ACCEPTS_PER_TURN`] at most), the newest kept when there are more than
    /// [`MAX_SCRAPES`]; `false` when an `accept` failed for want of descriptors or memory (the connection stays
    /// queued in the kernel).
    fn accept(&mut self) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.open.len() == MAX_SCRAPES {
                        self.open.remove(0);
                    }
                    self.open.push(Open {
                        stream,
                        request: Vec::new(),
                        deadline: Instant::now() + REQUEST_DEADLINE,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                // The peer gave up before it was taken, or a signal came: the next one may be fine.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads what connection `index` sent; answers and closes it on the read that makes its request whole (or
    /// too long), and closes it unanswered when it ends or fails before that.
    fn read(&mut self, index: usize) {
        let open = &mut self.open[index];
        let mut chunk = [0; 2048];
        let answer_it = match open.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                open.request.extend_from_slice(&chunk[..n]);
                if request_end(&open.request).is_none() && open.request.len() < MAX_REQUEST_BYTES {
                    return;
                }
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return;
            }
            Err(_) => false,
        };
        let open = self.open.remove(index);
        if answer_it {
            let answer = answer(&open.request, &self.registry, &self.readiness);
            // A client that went away meanwhile, or reads too slowly, is no concern of the server's.
            let _ = write_answer(open.stream, &answer);
        }
    }
}

/// Where the request's headers end (after the blank line), if they have.
fn request_end(request: &[u8]) -> Option<usize> {
    let crlf = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = request.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    crlf.into_iter().chain(lf).min()
}

/// What to send back: the status line, headers and body.
fn answer(request: &[u8], registry: &Registry, readiness: &Readiness) -> Vec<u8> {
    let (status, content_type, body, head_only) = match request_end(request) {
        None => (431, TEXT, "request too long\n".to_owned(), false),
        Some(_) => match request_line(request) {
            None => (400, TEXT, "not an HTTP request\n".to_owned(), false),
            Some((method, target)) => {
                let (status, content_type, body) = respond(method, target, registry, readiness);
                (status, content_type, body, method == "HEAD")
            }
        },
    };
    let mut text = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head_only {
        text.extend_from_slice(body.as_bytes());
    }
    text
}

/// The method and target of the request line (`GET /metrics HTTP/1.1`).
fn request_line(request: &[u8]) -> Option<(&str, &str)> {
    let line = request.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut words = line.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    (words.next().is_none() && version.starts_with("HTTP/1.")).then_some((method, target))
}

/// The status, media type and body for `method` on `target`.
fn respond(
    method: &str,
    target: &str,
    registry: &Registry,
    readiness: &Readiness,
) -> (u16, &'static str, String) {
    if !matches!(method, "GET" | "HEAD") {
        return (405, TEXT, "only GET and HEAD\n".into());
    }
    // A query string changes nothing (Prometheus may add one).
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    match path {
        "/metrics" => {
            let mut text = String::new();
            match encode(&mut text, registry) {
                Ok(()) => (200, OPENMETRICS, text),
                Err(_) => (500, TEXT, "cannot encode the metrics\n".into()),
            }
        }
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match readiness.check() {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(reason) => (503, TEXT, format!("{reason}\n")),
        },
        _ => (
            404,
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// The reason phrase of the statuses this listener sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes `answer` within [`WRITE_DEADLINE`] in all (a peer that takes a byte now and then is not waited for),
/// then closes the connection, dropping what the peer sent that was not read.
fn write_answer(mut stream: TcpStream, answer: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + WRITE_DEADLINE;
    let mut left = answer;
    while !left.is_empty() {
        match stream.write(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let wait = deadline.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
                let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
                poll(&mut fds, timeout).map_err(io::Error::from)?;
            }
            Err(e) => return Err(e),
        }
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut drained = 0;
    let mut chunk = [0; 4096];
    while drained < DRAIN_BYTES {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_ends_at_its_blank_line_whichever_line_ending_it_uses() {
        assert_eq!(request_end(b"GET / HTTP/1.0\r\n\r\n"), Some(18));
        assert_eq!(request_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(request_end(b"GET / HTTP/1.0\r\nHost: x\r\n"), None);
    }

    #[test]
    fn the_request_line_gives_method_and_target_of_http_1_only() {
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"),
            Some(("GET", "/metrics?x=1"))
        );
        assert_eq!(request_line(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(request_line(b"GET /metrics HTTP/2.0\r\n\r\n"), None);
        assert_eq!(request_line(b"GET  /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_line(b"\xff /metrics HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn answers_carry_their_length_close_the_connection_and_head_has_no_body() {
        let registry = Registry::default();
        let readiness = Readiness::default();
        let get = String::from_utf8(answer(
            b"GET /healthz HTTP/1.1\r\n\r\n",
            &registry,
            &readiness,
        ))
        .unwrap();
        assert_eq!(
            get,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
             Connection: close\r\n\r\nok\n"
        );
        let head = answer(b"HEAD /healthz HTTP/1.0\r\n\r\n", &registry, &readiness);
        assert!(head.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
        let post =
            String::from_utf8(answer(b"POST / HTTP/1.1\r\n\r\n", &registry, &readiness)).unwrap();
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        let long =
            String::from_utf8(answer(&[b'x'; MAX_REQUEST_BYTES], &registry, &readiness)).unwrap();
        assert!(long.starts_with("HTTP/1.1 431 "), "{long}");
        let garbage = String::from_utf8(answer(b"hello\r\n\r\n", &registry, &readiness)).unwrap();
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    }
}
