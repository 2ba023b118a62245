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

/// Replies queued for one peer (`ZMQ_SNDHWM`). With [`cut_off_peers_that_do_not_read`], the reply that finds a
/// peer's queue full disconnects that peer; a reply is at most [`crate::protocol::MAX_REPLY_LEN`] bytes, so the
/// queue holds at most about 1.3 MiB (SECURITY.md).
pub const REPLY_QUEUE_PER_PEER: i32 = 1000;

/// `ZMQ_ROUTER_DISCONNECT_ON_HWM`, the socket option zavro's libzmq patch 0006 adds (vendor/README.md); the
/// number is far from libzmq's own options.
const ZMQ_ROUTER_DISCONNECT_ON_HWM: std::ffi::c_int = 23126;

unsafe extern "C" {
    /// Connections libzmq cut off for a message past `ZMQ_MAXMSGSIZE` since the process started: a counter
    /// that zavro's libzmq patch 0004 adds (vendor/README.md).
    fn zavro_zmq_oversized_message_cutoffs() -> u64;

    /// Peers ROUTER sockets disconnected because their send queue was full
    /// (`ZMQ_ROUTER_DISCONNECT_ON_HWM`) since the process started: a counter that patch 0006 adds.
    fn zavro_zmq_full_queue_cutoffs() -> u64;

    fn zmq_setsockopt(
        socket: *mut std::ffi::c_void,
        option: std::ffi::c_int,
        value: *const std::ffi::c_void,
        length: usize,
    ) -> std::ffi::c_int;
}

/// Bounds what a peer that does not read its replies costs: at most [`REPLY_QUEUE_PER_PEER`] replies are queued
/// for it, and the reply that finds its queue full makes libzmq (patch 0006) close its connection and drop what
/// was queued, instead of dropping replies one by one while the peer stays connected and keeps being served.
/// Set before the socket binds: the limit is taken by each connection as it is made.
pub fn cut_off_peers_that_do_not_read(socket: &mut zmq::Socket) -> Result<(), zmq::Error> {
    socket.set_sndhwm(REPLY_QUEUE_PER_PEER)?;
    set_int_option(socket, ZMQ_ROUTER_DISCONNECT_ON_HWM, 1)
}

/// Sets an int socket option the `zmq` crate has no setter for (libzmq's own, or one zavro's patches add).
pub(super) fn set_int_option(
    socket: &mut zmq::Socket,
    option: std::ffi::c_int,
    value: std::ffi::c_int,
) -> Result<(), zmq::Error> {
    // SAFETY: the socket pointer is live for the call; the value is a C int passed by pointer with its size, as
    // zmq_setsockopt(3) requires for an int option.
    let rc = unsafe {
        zmq_setsockopt(
            socket.as_mut_ptr(),
            option,
            (&value as *const std::ffi::c_int).cast(),
            std::mem::size_of::<std::ffi::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(zmq::Error::from_raw(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    }
}

/// How many peers libzmq has disconnected for leaving their replies unread, since the process started.
pub fn full_queue_cutoffs() -> u64 {
    // SAFETY: the function takes nothing and reads an atomic counter; it is defined in the libzmq that zmq-sys
    // links statically (vendor/zeromq-src, patch 0006).
    unsafe { zavro_zmq_full_queue_cutoffs() }
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
            arrival.frames.push(frame.into());
        }
    }
    let mut route = vec![identity.to_vec()];
    // A REQ peer (or a DEALER imitating one) puts an empty delimiter before the request; echo it back.
    if arrival.frames.first().is_some_and(|frame| frame.is_empty()) {
        route.push(arrival.frames.remove(0).to_vec());
        arrival.frame_count -= 1;
    }
    arrival.frames.truncate(MAX_FRAMES);
    Ok(Incoming { route, arrival })
}

#[cfg(test)]
mod tests {
    use super::{super::testing::cut_off_counts_alone, *};

    /// Most replies sent to a peer that does not read before the test gives up on seeing it cut off: far more
    /// than the queue, the socket buffers of both ends and libzmq's batches hold.
    const FLOOD_LIMIT: usize = 2_000_000;

    const EVENTS: [zmq::SocketEvent; 2] =
        [zmq::SocketEvent::DISCONNECTED, zmq::SocketEvent::ACCEPTED];

    /// A DEALER that does not read, with the smallest buffers its side allows, watched by a monitor. Its libzmq
    /// stops reading from the connection once its queue holds a message, and so notices the connection closed
    /// only after it has read everything before the close: [`disconnection`] drains it once a cut-off is
    /// decided.
    struct NonReader {
        socket: zmq::Socket,
        monitor: zmq::Socket,
    }

    impl NonReader {
        fn new(context: &zmq::Context, name: &str) -> NonReader {
            let socket = context.socket(zmq::DEALER).unwrap();
            socket.set_rcvhwm(1).unwrap();
            socket.set_rcvbuf(4096).unwrap();
            socket.set_linger(0).unwrap();
            let address = format!("inproc://monitor-{name}");
            let events = EVENTS.iter().fold(0, |all, e| all | i32::from(e.to_raw()));
            socket.monitor(&address, events).unwrap();
            let monitor = context.socket(zmq::PAIR).unwrap();
            monitor.connect(&address).unwrap();
            NonReader { socket, monitor }
        }

        /// Takes one message, if one is there.
        fn read_one(&self) {
            match self.socket.recv_bytes(zmq::DONTWAIT) {
                Ok(_) | Err(zmq::Error::EAGAIN) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }

        /// The next monitor event, waiting at most `timeout_ms` (-1: as long as it takes).
        fn event(&self, timeout_ms: i64) -> Option<zmq::SocketEvent> {
            if self.monitor.poll(zmq::POLLIN, timeout_ms).unwrap() == 0 {
                return None;
            }
            let frames = self.monitor.recv_multipart(0).unwrap();
            let number = u16::from_ne_bytes([frames[0][0], frames[0][1]]);
            Some(zmq::SocketEvent::from_raw(number))
        }
    }

    fn router(context: &zmq::Context, cut_off: bool) -> zmq::Socket {
        let mut router = context.socket(zmq::ROUTER).unwrap();
        if cut_off {
            cut_off_peers_that_do_not_read(&mut router).unwrap();
        } else {
            router.set_sndhwm(REPLY_QUEUE_PER_PEER).unwrap();
        }
        router.set_linger(0).unwrap();
        router.set_rcvtimeo(30_000).unwrap();
        router
    }

    /// Sends replies to `peer` until the router cuts it off, then lets `peer` read what is left until it sees
    /// its connection closed; returns how many replies were sent and the other events `peer` saw meanwhile, or
    /// `None` when [`FLOOD_LIMIT`] were sent without a cut-off.
    ///
    /// The two phases are why this does not depend on the machine's speed: the cut-off is decided in the
    /// router's own `send` (the counter moves there), and the peer's libzmq reports the connection closed only
    /// after it has read everything the kernel still held for it, however long the I/O threads take.
    fn flood_until_disconnected(
        router: &zmq::Socket,
        id: &[u8],
        peer: &NonReader,
    ) -> Option<(usize, Vec<zmq::SocketEvent>)> {
        let reply = [b'r'; 100];
        let before = full_queue_cutoffs();
        let mut sent = 0;
        while full_queue_cutoffs() == before {
            if sent == FLOOD_LIMIT {
                return None;
            }
            router.send(id, zmq::SNDMORE).unwrap();
            router.send(&reply[..], 0).unwrap();
            sent += 1;
        }
        Some((sent, disconnection(router, peer)))
    }

    /// Lets `peer` read whatever is left for it until it sees its connection closed, calling `router` meanwhile
    /// so its libzmq runs the commands a cut-off sent it; returns the other events `peer` saw first.
    fn disconnection(router: &zmq::Socket, peer: &NonReader) -> Vec<zmq::SocketEvent> {
        let mut others = Vec::new();
        let mut quiet_polls = 0;
        loop {
            router.get_events().unwrap();
            let mut items = [
                peer.socket.as_poll_item(zmq::POLLIN),
                peer.monitor.as_poll_item(zmq::POLLIN),
            ];
            if zmq::poll(&mut items, 100).unwrap() == 0 {
                quiet_polls += 1;
                assert!(
                    quiet_polls < 1200,
                    "cut off, but the peer saw nothing for two minutes"
                );
                continue;
            }
            quiet_polls = 0;
            if items[0].is_readable() {
                while peer.socket.recv_bytes(zmq::DONTWAIT).is_ok() {}
            }
            if items[1].is_readable() {
                match peer.event(0) {
                    Some(zmq::SocketEvent::DISCONNECTED) => return others,
                    Some(other) => others.push(other),
                    None => {}
                }
            }
        }
    }

    #[test]
    fn a_router_cuts_off_a_peer_that_lets_its_queue_fill_and_only_then() {
        let _turn = cut_off_counts_alone();
        let context = zmq::Context::new();

        // The control: without the option, the peer stays connected however many replies are dropped, and
        // once it reads again it gets the next one.
        let stock = router(&context, false);
        stock.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = stock.get_last_endpoint().unwrap().unwrap();
        let kept = NonReader::new(&context, "kept");
        kept.socket.connect(&endpoint).unwrap();
        kept.socket.send("hello", 0).unwrap();
        let id = stock.recv_multipart(0).unwrap().remove(0);
        let before = full_queue_cutoffs();
        let reply = [b'r'; 100];
        for _ in 0..200_000 {
            stock.send(&id, zmq::SNDMORE).unwrap();
            stock.send(&reply[..], 0).unwrap();
        }
        while kept.socket.poll(zmq::POLLIN, 1000).unwrap() > 0 {
            kept.socket.recv_bytes(0).unwrap();
        }
        stock.send(&id, zmq::SNDMORE).unwrap();
        stock.send("marker", 0).unwrap();
        kept.socket.set_rcvtimeo(30_000).unwrap();
        assert_eq!(kept.socket.recv_bytes(0).unwrap(), b"marker");
        assert_eq!(full_queue_cutoffs(), before, "nobody was cut off");

        // With it, the same peer is disconnected, and counted once.
        let cutting = router(&context, true);
        cutting.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = cutting.get_last_endpoint().unwrap().unwrap();
        let peer = NonReader::new(&context, "cut");
        peer.socket.connect(&endpoint).unwrap();
        peer.socket.send("hello", 0).unwrap();
        let id = cutting.recv_multipart(0).unwrap().remove(0);
        let (_, others) = flood_until_disconnected(&cutting, &id, &peer)
            .unwrap_or_else(|| panic!("not cut off after {FLOOD_LIMIT} replies"));
        assert_eq!(others, [], "the peer connected nowhere else");
        assert_eq!(full_queue_cutoffs(), before + 1);
        // Replies sent to it afterwards are dropped as for any peer gone, and count nothing more.
        for _ in 0..10_000 {
            cutting.send(&id, zmq::SNDMORE).unwrap();
            cutting.send(&reply[..], 0).unwrap();
        }
        assert_eq!(full_queue_cutoffs(), before + 1);
    }

    #[test]
    fn a_peer_whose_message_is_being_read_is_cut_off_once_it_is_read_whole() {
        let _turn = cut_off_counts_alone();
        let context = zmq::Context::new();
        let router = router(&context, true);
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let peer = NonReader::new(&context, "mid-message");
        peer.socket.connect(&endpoint).unwrap();
        peer.socket.send("hello", 0).unwrap();
        let id = router.recv_multipart(0).unwrap().remove(0);
        peer.socket
            .send_multipart(["first part", "second part", "last part"], 0)
            .unwrap();
        // Only the routing id of the next message: the router is now in the middle of reading it.
        assert_eq!(router.recv_bytes(0).unwrap(), id);
        let before = full_queue_cutoffs();
        let reply = [b'r'; 100];
        // Fill its queue while the message is half read: the cut-off waits (terminating the pipe now would
        // leave the message's remaining parts unreadable, which libzmq asserts against).
        let mut sent = 0;
        while full_queue_cutoffs() == before {
            assert!(sent < FLOOD_LIMIT, "its queue never filled");
            router.send(&id, zmq::SNDMORE).unwrap();
            router.send(&reply[..], 0).unwrap();
            sent += 1;
        }
        peer.read_one();
        assert_eq!(
            peer.event(0),
            None,
            "not cut off before the message is read"
        );
        let rest: Vec<Vec<u8>> = (0..3).map(|_| router.recv_bytes(0).unwrap()).collect();
        assert_eq!(rest, [&b"first part"[..], b"second part", b"last part"]);
        assert!(!router.get_rcvmore().unwrap());
        // The cut-off happens now; the router's next call lets libzmq carry it out.
        assert_eq!(disconnection(&router, &peer), []);
        assert_eq!(full_queue_cutoffs(), before + 1, "counted once");
    }

    #[test]
    fn a_router_that_connected_to_the_peer_it_cuts_off_connects_again() {
        let _turn = cut_off_counts_alone();
        let context = zmq::Context::new();
        let peer = NonReader::new(&context, "bound");
        peer.socket.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = peer.socket.get_last_endpoint().unwrap().unwrap();
        let router = router(&context, true);
        router.set_reconnect_ivl(100).unwrap();
        router.connect(&endpoint).unwrap();
        assert_eq!(peer.event(120_000), Some(zmq::SocketEvent::ACCEPTED));
        peer.socket.send("hello", 0).unwrap();
        let id = router.recv_multipart(0).unwrap().remove(0);
        let (_, mut seen) = flood_until_disconnected(&router, &id, &peer).expect("cut off");
        // The router connects again at once: the peer may accept the new connection before it notices that
        // the old one is closed (it does when it reads), so the event may have come during the flood.
        while !seen.contains(&zmq::SocketEvent::ACCEPTED) {
            seen.push(
                peer.event(120_000)
                    .expect("connected again within two minutes"),
            );
        }
    }
}
