//! Whether the server can take requests now, as `/readyz` answers it: the server loop sets the facts (socket
//! bound, store answering, shutting down) as it learns them; the HTTP thread only reads them. Atomics, so neither
//! ever waits for the other. The reasons are fixed sentences: the endpoint is unauthenticated, so it names no
//! store URL, path or error text (the server's log has those).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// The readiness facts, shared between the server loop and the HTTP thread.
#[derive(Debug, Clone)]
pub struct Readiness {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    bound: AtomicBool,
    store_available: AtomicBool,
    stopping: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl Readiness {
    /// Not ready until [`Readiness::bound`]: `serve` checked the store at start-up, so it is taken as available.
    pub fn new() -> Readiness {
        Readiness {
            state: Arc::new(State {
                bound: AtomicBool::new(false),
                store_available: AtomicBool::new(true),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// The server socket is bound: clients can connect.
    pub fn bound(&self) {
        self.state.bound.store(true, Ordering::Relaxed);
    }

    /// Whether the store took the last group, or answered the last probe.
    pub fn store_available(&self, available: bool) {
        self.state
            .store_available
            .store(available, Ordering::Relaxed);
    }

    /// The server is shutting down: it finishes the group in hand and takes no more.
    pub fn stopping(&self) {
        self.state.stopping.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, else why not, as one line.
    pub fn check(&self) -> Result<(), &'static str> {
        let state = &self.state;
        if state.stopping.load(Ordering::Relaxed) {
            Err("not ready: shutting down")
        } else if !state.bound.load(Ordering::Relaxed) {
            Err("not ready: the server socket is not bound yet")
        } else if !state.store_available.load(Ordering::Relaxed) {
            Err(
                "not ready: the store cannot be reached or written; requests are answered `internal` until it \
                 can (the server's log says why)",
            )
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_bound_while_the_store_answers_and_until_stopping() {
        let readiness = Readiness::new();
        assert!(readiness.check().unwrap_err().contains("not bound"));
        readiness.bound();
        assert_eq!(readiness.check(), Ok(()));
        readiness.store_available(false);
        assert!(readiness.check().unwrap_err().contains("store"));
        readiness.store_available(true);
        assert_eq!(readiness.check(), Ok(()));
        readiness.stopping();
        assert!(readiness.check().unwrap_err().contains("shutting down"));
    }
}
