//! A TCP proxy between a client and a server that records every byte either way, and may rewrite what the
//! server sends: what an on-path attacker sees and can do, over real sockets.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// Rewrites a chunk of bytes the server sent, before the client gets them.
pub type Rewrite = Arc<dyn Fn(&mut [u8]) + Send + Sync>;

/// A proxy on 127.0.0.1 (port chosen by the OS) that forwards to one upstream address; stops when dropped.
pub struct Proxy {
    /// `tcp://127.0.0.1:PORT`, where clients connect.
    pub endpoint: String,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forwards to `upstream` (`tcp://HOST:PORT`) and records both directions.
    pub fn start(upstream: &str) -> Proxy {
        Proxy::rewriting(upstream, Arc::new(|_: &mut [u8]| {}))
    }

    /// Like [`Proxy::start`], but once the client has sent `marker` (in one chunk or across two), nothing more
    /// the server sends reaches the client: a reply lost on the way, after the request got through.
    pub fn muting_replies_after(upstream: &str, marker: &[u8]) -> Proxy {
        Proxy::with(upstream, Arc::new(|_: &mut [u8]| {}), Some(marker.to_vec()))
    }

    /// Like [`Proxy::start`], passing every chunk from the server through `rewrite` first.
    pub fn rewriting(upstream: &str, rewrite: Rewrite) -> Proxy {
        Proxy::with(upstream, rewrite, None)
    }

    fn with(upstream: &str, rewrite: Rewrite, mute_after: Option<Vec<u8>>) -> Proxy {
        let upstream = upstream
            .strip_prefix("tcp://")
            .expect("a tcp:// endpoint")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || {
                let mut pumps = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let Ok(server) = TcpStream::connect(&upstream) else {
                                continue;
                            };
                            let identity: Rewrite = Arc::new(|_: &mut [u8]| {});
                            let muted = Arc::new(AtomicBool::new(false));
                            let upward = Direction {
                                rewrite: identity,
                                mute_after: mute_after.clone().map(|m| (m, Arc::clone(&muted))),
                                muted: None,
                            };
                            let downward = Direction {
                                rewrite: Arc::clone(&rewrite),
                                mute_after: None,
                                muted: Some(muted),
                            };
                            pumps.push(pump(&client, &server, &seen, &stop, upward));
                            pumps.push(pump(&server, &client, &seen, &stop, downward));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                for pump in pumps {
                    let _ = pump.join();
                }
            })
        };
        Proxy {
            endpoint,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Every byte that passed so far, both directions interleaved as they came.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }

    /// True when `needle` passed through the proxy in either direction.
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.seen()
            .windows(needle.len())
            .any(|window| window == needle)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// What a pump does to the bytes going one way.
struct Direction {
    /// Rewrites each chunk before it is passed on.
    rewrite: Rewrite,
    /// Once these bytes have passed, sets the flag (before passing them on).
    mute_after: Option<(Vec<u8>, Arc<AtomicBool>)>,
    /// While this flag is set, chunks are read and dropped.
    muted: Option<Arc<AtomicBool>>,
}

/// Copies `from` → `to` on a thread, recording and rewriting each chunk, until either side closes or the proxy
/// stops.
fn pump(
    from: &TcpStream,
    to: &TcpStream,
    seen: &Arc<Mutex<Vec<u8>>>,
    stop: &Arc<AtomicBool>,
    direction: Direction,
) -> JoinHandle<()> {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    let (seen, stop) = (Arc::clone(seen), Arc::clone(stop));
    // A read timeout lets the pump notice the proxy stopping while neither side sends.
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        // The end of what passed before, so a marker split across two chunks is still seen.
        let mut tail: Vec<u8> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let mut chunk = buffer[..n].to_vec();
                    seen.lock().unwrap().extend_from_slice(&chunk);
                    if let Some((marker, flag)) = &direction.mute_after {
                        tail.extend_from_slice(&chunk);
                        if tail.windows(marker.len()).any(|w| w == marker.as_slice()) {
                            flag.store(true, Ordering::SeqCst);
                        }
                        let keep = tail.len().saturating_sub(marker.len());
                        tail.drain(..keep);
                    }
                    if direction
                        .muted
                        .as_ref()
                        .is_some_and(|muted| muted.load(Ordering::SeqCst))
                    {
                        continue;
                    }
                    (direction.rewrite)(&mut chunk);
                    if to.write_all(&chunk).is_err() {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    })
}
