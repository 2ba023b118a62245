//! Counting the server socket's open connections through a libzmq socket monitor: `ACCEPTED` opens one;
//! `DISCONNECTED` closes it, which libzmq reports for every accepted connection whose engine ends (the peer
//! closed, a handshake failed or was refused, a message was too large, or libzmq patch 0006 cut it off for not
//! reading its replies), so the two balance.
//!
//! libzmq's I/O thread sends each event to the monitor with a blocking send (see [`crate::handshake`]), so a
//! thread of its own reads the monitor all the time, and the monitor is stopped on the socket
//! ([`ConnectionWatch::stop`]) before that thread ends.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

use prometheus_client::metrics::gauge::Gauge;

use super::MetricsError;

/// The monitor's endpoint: one server socket per process.
const ENDPOINT: &str = "inproc://zavro-server-connections";

/// How long the thread waits for an event before it looks at its stop flag again.
const POLL_INTERVAL_MS: i64 = 200;

/// The running monitor of one socket and the thread that reads it.
pub struct ConnectionWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConnectionWatch {
    /// Starts counting `socket`'s connections into `open`; call it before the socket binds, so that none is
    /// missed.
    pub fn start(
        context: &zmq::Context,
        socket: &zmq::Socket,
        open: Gauge,
    ) -> Result<ConnectionWatch, MetricsError> {
        let events = zmq::SocketEvent::ACCEPTED as i32 | zmq::SocketEvent::DISCONNECTED as i32;
        socket.monitor(ENDPOINT, events)?;
        let monitor = context.socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.connect(ENDPOINT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("connections".into())
            .spawn(move || count_until_stopped(&monitor, &open, &flag))?;
        Ok(ConnectionWatch {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops `socket`'s monitor, then the thread that reads it: in that order, so libzmq never sends an event
    /// that nobody will read. `socket` must be the one the watch was started on.
    pub fn stop(mut self, socket: &mut zmq::Socket) {
        crate::handshake::stop_monitor(socket);
        self.end_thread();
    }

    fn end_thread(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // A panic in the thread was already printed; there is nothing more to do with it here.
            let _ = thread.join();
        }
    }
}

impl Drop for ConnectionWatch {
    /// Without [`ConnectionWatch::stop`] (an early return before serving): declared before its socket, the watch
    /// ends after the socket is closed, and an event libzmq might still send meanwhile is given up when the
    /// context ends, which `serve` does next.
    fn drop(&mut self) {
        self.end_thread();
    }
}

/// Reads events until `stop`, keeping `open` at the connections accepted and not yet disconnected.
fn count_until_stopped(monitor: &zmq::Socket, open: &Gauge, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match monitor.poll(zmq::POLLIN, POLL_INTERVAL_MS) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            // The context is ending: nothing more will come.
            Err(_) => return,
        }
        while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
            let event = frames
                .first()
                .and_then(|frame| frame.get(0..2))
                .map(|bytes| u16::from_ne_bytes([bytes[0], bytes[1]]));
            match event {
                Some(event) if event == zmq::SocketEvent::ACCEPTED.to_raw() => {
                    open.inc();
                }
                Some(event) if event == zmq::SocketEvent::DISCONNECTED.to_raw() => {
                    open.dec();
                }
                _ => {}
            }
        }
    }
}
