//! Frames to a [`Request`]: the frame rules, and where the transport's types stop. Everything after this step
//! sees an [`Arrival`], never a socket or a ZeroMQ message.

use std::ops::Deref;

use crate::protocol::{RejectCode, Rejection, Request};

/// Body frames kept from one request; a request has three, so more is malformed (the rest are counted, not kept).
pub const MAX_FRAMES: usize = 8;

/// One body frame: the message libzmq received, read where it is. Copying each frame out of its message cost a
/// copy of every payload (under callgrind 137 instructions per record of 150 bytes), and a fresh allocation for it.
#[derive(Debug)]
pub struct Frame(zmq::Message);

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Clone for Frame {
    fn clone(&self) -> Frame {
        Frame(zmq::Message::from(&self[..]))
    }
}

impl From<zmq::Message> for Frame {
    fn from(message: zmq::Message) -> Frame {
        Frame(message)
    }
}

impl From<Vec<u8>> for Frame {
    /// Takes the bytes over without copying them.
    fn from(bytes: Vec<u8>) -> Frame {
        Frame(zmq::Message::from(bytes))
    }
}

/// One request as it arrived: its body frames (the route removed), who sent it, and how big it was.
#[derive(Debug, Clone, Default)]
pub struct Arrival {
    /// The first [`MAX_FRAMES`] body frames.
    pub frames: Vec<Frame>,
    /// How many body frames the message had; more than `frames.len()` when some were not kept.
    pub frame_count: usize,
    /// Total bytes of all the body frames, kept or not.
    pub size: u64,
    /// The peer's IP address, when the transport knows it.
    pub peer: Option<String>,
    /// The API key the connection authenticated as at the CURVE handshake (the ZAP handler's user id); `None`
    /// over plaintext.
    pub authenticated_key: Option<String>,
}

impl Arrival {
    /// An arrival of these body frames from this peer, all kept.
    pub fn new<F: Into<Frame>>(frames: Vec<F>, peer: Option<String>) -> Arrival {
        let frames: Vec<Frame> = frames.into_iter().map(Into::into).collect();
        Arrival {
            frame_count: frames.len(),
            size: frames.iter().map(|f| f.len() as u64).sum(),
            frames,
            peer,
            authenticated_key: None,
        }
    }
}

/// The request the frames hold, its payload borrowed from its frame, or why there is none.
pub fn parse(arrival: &Arrival) -> Result<Request<&[u8]>, Rejection> {
    if arrival.frame_count > MAX_FRAMES {
        return Err(Rejection::new(
            RejectCode::Malformed,
            format!("more than {MAX_FRAMES} frames"),
        ));
    }
    Request::view_frames(&arrival.frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_frames_are_malformed_even_when_the_first_three_are_a_request() {
        let request = Request::sign("ZK1", b"secret", 1, "nonce-0123456789abcdef", vec![]);
        let mut arrival = Arrival::new(request.to_frames().to_vec(), None);
        let parsed = parse(&arrival).unwrap();
        assert_eq!(parsed.envelope, request.envelope);
        assert_eq!(parsed.payload, request.payload.as_slice());
        arrival.frame_count = MAX_FRAMES + 1;
        let rejection = parse(&arrival).unwrap_err();
        assert_eq!(rejection.code, RejectCode::Malformed);
        assert_eq!(rejection.message, "more than 8 frames");
    }
}
