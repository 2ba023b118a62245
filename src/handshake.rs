//! Watching a client socket's ZMTP handshake through a libzmq socket monitor, so that a wrong server key, a
//! plaintext/CURVE mismatch or a key refused by the server's ZAP handler is told apart from a silent server.
//!
//! What a connecting socket's monitor reports, found by experiment with this libzmq (4.3.4):
//! - right server key: `CONNECTED`, then `HANDSHAKE_SUCCEEDED`;
//! - wrong server key: `CONNECTED`, `HANDSHAKE_FAILED_NO_DETAIL` (errno EPIPE: the server cannot open the
//!   client's HELLO and drops the connection without a word), `DISCONNECTED`, and the same again at every
//!   reconnection;
//! - CURVE client and plaintext server, or the reverse: `HANDSHAKE_FAILED_PROTOCOL` with
//!   `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH`, then `DISCONNECTED`; or, when the server's close wins the
//!   race with its greeting (seen against `zavro serve`), `HANDSHAKE_FAILED_NO_DETAIL` as for a wrong key;
//! - a key the server's ZAP handler refuses: `HANDSHAKE_FAILED_AUTH` with the ZAP status code (400), then
//!   `DISCONNECTED`.
//!
//! libzmq's I/O thread sends each event to the monitor with a blocking send, so a monitor nobody reads stalls
//! every socket of the context once its queue is full or its reader is gone. A watch is therefore always
//! stopped on its socket ([`HandshakeWatch::stop`]) before either is dropped.

use std::{
    ffi::{c_char, c_int, c_void},
    sync::atomic::{AtomicU64, Ordering},
};

/// `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH` (zmq.h): the peers use different security mechanisms.
pub const MECHANISM_MISMATCH: u32 = 0x1100_0002;

/// The ZAP status code of a refused client (ZeroMQ RFC 27).
pub const ZAP_REFUSED: u32 = 400;

unsafe extern "C" {
    /// libzmq's `zmq_socket_monitor(3)`; with a null endpoint it stops the socket's monitor, which the `zmq`
    /// crate's `Socket::monitor` cannot ask for.
    fn zmq_socket_monitor(socket: *mut c_void, endpoint: *const c_char, events: c_int) -> c_int;
}

/// Gives every monitor of the process its own inproc endpoint (they share the context of `bench`'s threads).
static NEXT_MONITOR: AtomicU64 = AtomicU64::new(0);

/// Stops `socket`'s monitor (a no-op when it has none): libzmq sends it no event after this returns.
pub fn stop_monitor(socket: &mut zmq::Socket) {
    // SAFETY: the pointer is a live socket borrowed mutably for the call; a null endpoint is documented to
    // stop its monitor, and the call fails only on a closed socket or a terminated context, which leave no
    // monitor to stop.
    unsafe { zmq_socket_monitor(socket.as_mut_ptr(), std::ptr::null(), 0) };
}

/// How a handshake ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The server closed the connection before the handshake completed, without saying why: what a CURVE
    /// server does with a client that pinned another key.
    Closed,
    /// The server's ZAP handler refused the client's key, with this status code (400: refused; 300 and 500:
    /// the server could not decide).
    Refused(u32),
    /// A ZMTP protocol error, such as [`MECHANISM_MISMATCH`] (the `ZMQ_PROTOCOL_ERROR_*` code).
    Protocol(u32),
}

/// What the monitor has said so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeState {
    /// Nothing conclusive yet.
    Pending,
    /// A handshake completed: the peer is who the client expected.
    Succeeded,
    /// A handshake failed.
    Failed(HandshakeFailure),
}

/// The receiving end of one socket's monitor, kept until the socket's handshake succeeds; end it with
/// [`HandshakeWatch::stop`].
pub struct HandshakeWatch {
    monitor: zmq::Socket,
}

impl HandshakeWatch {
    /// Starts monitoring `socket`'s handshakes; call it before `socket` connects, so no event is missed.
    pub fn start(
        context: &zmq::Context,
        socket: &zmq::Socket,
    ) -> Result<HandshakeWatch, zmq::Error> {
        let endpoint = format!(
            "inproc://zavro-handshake-{}",
            NEXT_MONITOR.fetch_add(1, Ordering::Relaxed)
        );
        let events = [
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED,
            zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL,
            zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL,
            zmq::SocketEvent::HANDSHAKE_FAILED_AUTH,
        ]
        .into_iter()
        .fold(0, |mask, event| mask | event as i32);
        socket.monitor(&endpoint, events)?;
        let monitor = context.socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.connect(&endpoint)?;
        Ok(HandshakeWatch { monitor })
    }

    /// Stops `socket`'s monitor, then closes the receiving end: in that order, so libzmq never sends an event
    /// that nobody will read. `socket` must be the one the watch was started on.
    pub fn stop(self, socket: &mut zmq::Socket) {
        stop_monitor(socket);
        drop(self.monitor);
    }

    /// The monitor socket, to wait on beside the client's sockets.
    pub fn socket(&self) -> &zmq::Socket {
        &self.monitor
    }

    /// Reads every event waiting, without blocking: the first failure or success among them, else `Pending`.
    pub fn read(&self) -> Result<HandshakeState, zmq::Error> {
        loop {
            let frames = match self.monitor.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => return Ok(HandshakeState::Pending),
                Err(e) => return Err(e),
            };
            let state = frames
                .first()
                .and_then(|frame| parse_event(frame))
                .map_or(HandshakeState::Pending, |(event, value)| {
                    state_of(event, value)
                });
            if state != HandshakeState::Pending {
                return Ok(state);
            }
        }
    }
}

/// The event number and value of a monitor message's first frame (16-bit event, 32-bit value, native order).
fn parse_event(frame: &[u8]) -> Option<(u16, u32)> {
    let event = u16::from_ne_bytes(frame.get(0..2)?.try_into().ok()?);
    let value = u32::from_ne_bytes(frame.get(2..6)?.try_into().ok()?);
    Some((event, value))
}

/// What a monitor event says about the handshake.
fn state_of(event: u16, value: u32) -> HandshakeState {
    let is = |known: zmq::SocketEvent| u32::from(event) == known as u32;
    if is(zmq::SocketEvent::HANDSHAKE_SUCCEEDED) {
        HandshakeState::Succeeded
    } else if is(zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL) {
        HandshakeState::Failed(HandshakeFailure::Closed)
    } else if is(zmq::SocketEvent::HANDSHAKE_FAILED_AUTH) {
        HandshakeState::Failed(HandshakeFailure::Refused(value))
    } else if is(zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL) {
        HandshakeState::Failed(HandshakeFailure::Protocol(value))
    } else {
        HandshakeState::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_events_map_to_handshake_states() {
        let frame = |event: zmq::SocketEvent, value: u32| {
            let mut frame = (event as u16).to_ne_bytes().to_vec();
            frame.extend(value.to_ne_bytes());
            parse_event(&frame).map(|(event, value)| state_of(event, value))
        };
        assert_eq!(
            frame(zmq::SocketEvent::HANDSHAKE_SUCCEEDED, 0),
            Some(HandshakeState::Succeeded)
        );
        assert_eq!(
            frame(zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL, 32),
            Some(HandshakeState::Failed(HandshakeFailure::Closed))
        );
        assert_eq!(
            frame(zmq::SocketEvent::HANDSHAKE_FAILED_AUTH, ZAP_REFUSED),
            Some(HandshakeState::Failed(HandshakeFailure::Refused(400)))
        );
        assert_eq!(
            frame(
                zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL,
                MECHANISM_MISMATCH
            ),
            Some(HandshakeState::Failed(HandshakeFailure::Protocol(
                MECHANISM_MISMATCH
            )))
        );
        assert_eq!(
            frame(zmq::SocketEvent::CONNECTED, 7),
            Some(HandshakeState::Pending)
        );
        assert_eq!(parse_event(b"\x01"), None, "a short frame is no event");
    }
}
