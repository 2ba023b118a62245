//! ZeroMQ in and out: take a group of requests off the ROUTER socket as [`Arrival`]s with their routes, and send
//! each reply back along its route. Nothing here looks inside a request.

use super::request::{Arrival, MAX_FRAMES};

/// Most requests taken together in one group.
const GROUP_MAX_REQUESTS: usize = 256;

/// A group stops growing once its requests hold this many bytes, which bounds the server's memory.
const GROUP_MAX_BYTES: u64 = 4 << 20;

/// One request off the socket: where to send its reply, and what arrived.
pub struct Incoming {
    /// Routing frames to echo: the peer identity, and the empty delimiter when the peer sent one.
    pub route: Vec<Vec<u8>>,
    /// The request itself.
    pub arrival: Arrival,
}

/// Waits up to the socket's receive timeout for a request, then takes every further one already waiting, within
/// the group limits. `None` when none came in time or a signal interrupted the wait, so the caller can look at
/// its shutdown flag.
pub fn receive_group(socket: &zmq::Socket) -> Result<Option<Vec<Incoming>>, zmq::Error> {
    let first = match receive(socket, 0) {
        Ok(incoming) => incoming,
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = first.arrival.size;
    let mut group = vec![first];
    while group.len() < GROUP_MAX_REQUESTS && bytes < GROUP_MAX_BYTES {
        match receive(socket, zmq::DONTWAIT) {
            Ok(incoming) => {
                bytes += incoming.arrival.size;
                group.push(incoming);
            }
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(group))
}

unsafe extern "C" {
    /// Connections libzmq cut off for a message past `ZMQ_MAXMSGSIZE` since the process started: a counter
    /// that zavro's libzmq patch 0004 adds (vendor/README.md).
    fn zavro_zmq_oversized_message_cutoffs() -> u64;
}

/// How many connections libzmq has cut off for a message past `--max-message-size`, since the process started.
pub fn oversized_message_cutoffs() -> u64 {
    // SAFETY: the function takes nothing and reads an atomic counter; it is defined in the libzmq that zmq-sys
    // links statically (vendor/zeromq-src, patch 0004).
    unsafe { zavro_zmq_oversized_message_cutoffs() }
}

/// Sends one reply frame back along `route`.
pub fn send_reply(socket: &zmq::Socket, route: &[Vec<u8>], reply: &[u8]) -> Result<(), zmq::Error> {
    // Frame by frame rather than send_multipart, so an interrupted frame is sent again alone.
    for frame in route {
        restarting(|| socket.send(frame.as_slice(), zmq::SNDMORE))?;
    }
    restarting(|| socket.send(reply, 0))
}

/// Runs a ZeroMQ call again when a signal interrupted it: SIGTERM may land inside any call, and must stop the
/// server only once the group in hand is answered (only the wait for a new request gives up, see [`receive`]).
/// A call that fails with EINTR has not sent or taken a frame, so repeating it is safe.
pub(super) fn restarting<T>(
    mut call: impl FnMut() -> Result<T, zmq::Error>,
) -> Result<T, zmq::Error> {
    loop {
        match call() {
            Err(zmq::Error::EINTR) => continue,
            result => return result,
        }
    }
}

/// Receives one request. The first frame's call is not restarted: EINTR there means nothing was taken, and the
/// caller must get the chance to stop. The frames after it are part of the same message and always follow.
fn receive(socket: &zmq::Socket, flags: i32) -> Result<Incoming, zmq::Error> {
    let identity = socket.recv_msg(flags)?;
    let mut arrival = Arrival::default();
    while restarting(|| socket.get_rcvmore())? {
        let mut frame = restarting(|| socket.recv_msg(0))?;
        // The ROUTER socket makes up the identity frame; only frames from the wire carry the peer's metadata,
        // the same on every frame of the connection, so the first one's is read.
        if arrival.frame_count == 0 {
            arrival.peer = frame.gets("Peer-Address").map(str::to_owned);
            arrival.authenticated_key = frame
                .gets("User-Id")
                .filter(|id| !id.is_empty())
                .map(str::to_owned);
        }
        arrival.size += frame.len() as u64;
        arrival.frame_count += 1;
        // One more than a request may have is kept, so the delimiter below can still be told apart.
        if arrival.frames.len() <= MAX_FRAMES {
            arrival.frames.push(frame.to_vec());
        }
    }
    let mut route = vec![identity.to_vec()];
    // A REQ peer (or a DEALER imitating one) puts an empty delimiter before the request; echo it back.
    if arrival.frames.first().is_some_and(Vec::is_empty) {
        route.push(arrival.frames.remove(0));
        arrival.frame_count -= 1;
    }
    arrival.frames.truncate(MAX_FRAMES);
    Ok(Incoming { route, arrival })
}
