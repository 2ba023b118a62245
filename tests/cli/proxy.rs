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

    /// Like [`Proxy::start`], passing every chunk from the server through `rewrite` first.
    pub fn rewriting(upstream: &str, rewrite: Rewrite) -> Proxy {
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
                            pumps.push(pump(&client, &server, &seen, &stop, identity));
                            pumps.push(pump(&server, &client, &seen, &stop, Arc::clone(&rewrite)));
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

/// Copies `from` → `to` on a thread, recording and rewriting each chunk, until either side closes or the proxy
/// stops.
fn pump(
    from: &TcpStream,
    to: &TcpStream,
    seen: &Arc<Mutex<Vec<u8>>>,
    stop: &Arc<AtomicBool>,
    rewrite: Rewrite,
) -> JoinHandle<()> {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    let (seen, stop) = (Arc::clone(seen), Arc::clone(stop));
    // A read timeout lets the pump notice the proxy stopping while neither side sends.
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let mut chunk = buffer[..n].to_vec();
                    seen.lock().unwrap().extend_from_slice(&chunk);
                    rewrite(&mut chunk);
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
