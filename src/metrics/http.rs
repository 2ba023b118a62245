//! The HTTP listener of `serve --metrics`: `/metrics` (the registry in the OpenMetrics text format, which
//! Prometheus asks for), `/healthz` (the process answers) and `/readyz` ([`Readiness`]). One thread of its own
//! takes the requests in turn (tiny_http reads each connection on its own small pool); it reads atomics and
//! nothing else, so however slow or many the scrapes, the server loop never waits for them.
//!
//! tiny_http's accept loop ends, closing the port, at its first failed `accept` or a panic of its own (both
//! happen when peers of the ZeroMQ port hold every descriptor the process may open: EMFILE, or a `try_clone`
//! of the accepted socket that it unwraps). While idle, the thread checks that the port is still taken and,
//! when it is free, listens on it again, so a moment without descriptors does not take the probes away for the
//! rest of the server's life.
//!
//! Nothing here is authenticated: bind it to loopback or a private interface (README.md, "Metrics and health").

use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use prometheus_client::{encoding::text::encode, registry::Registry};
use tiny_http::{Header, Method, Request, Response, Server};

use super::Readiness;

/// The media type of the OpenMetrics text format that prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of the plain answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// How long the thread waits for a request before it looks at its stop flag again.
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
        let server = Server::http(address).map_err(|e| MetricsError::Bind {
            address,
            reason: e.to_string(),
        })?;
        // Port 0 asks the OS for one: report the one it gave, and listen on it again if need be.
        let bound = server.server_addr().to_ip().unwrap_or(address);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("metrics".into())
                .spawn(move || answer_until_stopped(server, bound, &stop, &registry, &readiness))?
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

/// Answers requests on `server` until `stop`; when `server` no longer listens on `address`, listens again.
fn answer_until_stopped(
    server: Server,
    address: SocketAddr,
    stop: &AtomicBool,
    registry: &Registry,
    readiness: &Readiness,
) {
    let mut server = server;
    while !stop.load(Ordering::SeqCst) {
        if let Ok(Some(request)) = server.recv_timeout(POLL_INTERVAL) {
            answer(request, registry, readiness);
            continue;
        }
        // Idle, or told of a failed accept: a port free to bind means tiny_http's accept loop has ended (a
        // listening socket keeps it taken). Then serve on a listener of our own there; the old server, dropped,
        // only pokes the port to wake a loop that is no longer there.
        if let Ok(listener) = TcpListener::bind(address)
            && let Ok(listening) = Server::from_listener(listener, None)
        {
            server = listening;
        }
    }
}

/// Answers one request; a client that went away meanwhile is no concern of the server's.
fn answer(request: Request, registry: &Registry, readiness: &Readiness) {
    let (status, content_type, body) =
        respond(request.method(), request.url(), registry, readiness);
    let header = Header::from_bytes("Content-Type", content_type).expect("a fixed, valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    let _ = request.respond(response);
}

/// The status, media type and body for `method` on `url`.
fn respond(
    method: &Method,
    url: &str,
    registry: &Registry,
    readiness: &Readiness,
) -> (u16, &'static str, String) {
    if !matches!(method, Method::Get | Method::Head) {
        return (405, TEXT, "only GET and HEAD\n".into());
    }
    // A query string changes nothing (Prometheus may add one).
    let path = url.split_once('?').map_or(url, |(path, _)| path);
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
