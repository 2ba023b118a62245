//! ZeroMQ's wire protocol (ZMTP 3.0, NULL mechanism) spoken by hand over TCP, as an attacker need not use
//! libzmq: a libzmq socket puts a message on the wire only once its last frame is sent, so it cannot send one
//! that never ends. Shared by the attack tests (`endless_messages`) and `benches/attacks.rs`.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    time::Duration,
};

/// Sends the greeting and READY as a DEALER and reads the server's, so that frames sent next are data (data sent
/// before the server's READY would be a protocol error, not a test of a limit). Reads and writes on `stream`
/// time out after `timeout` from then on.
pub fn handshake(stream: &mut TcpStream, timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut greeting = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0];
    greeting.extend_from_slice(b"NULL");
    greeting.resize(64, 0);
    stream.write_all(&greeting)?;
    let mut ready = b"\x05READY\x0bSocket-Type".to_vec();
    ready.extend_from_slice(&6u32.to_be_bytes());
    ready.extend_from_slice(b"DEALER");
    let mut command = vec![0x04, ready.len() as u8];
    command.extend_from_slice(&ready);
    stream.write_all(&command)?;
    let mut greeting = [0u8; 64];
    stream.read_exact(&mut greeting)?;
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let mut body = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut body)?;
    if head[0] == 0x04 && body.starts_with(b"\x05READY") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the server's READY command was not one: {head:?} {body:?}"
        )))
    }
}

/// One ZMTP 3.0 data frame.
pub fn frame(data: &[u8], more: bool) -> Vec<u8> {
    let more = u8::from(more);
    let mut out = match u8::try_from(data.len()) {
        Ok(short) => vec![more, short],
        Err(_) => {
            let mut head = vec![more | 0x02];
            head.extend_from_slice(&(data.len() as u64).to_be_bytes());
            head
        }
    };
    out.extend_from_slice(data);
    out
}
