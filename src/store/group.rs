//! The seam between the server and a store: the few operations a group of requests needs (begin a group, look up
//! keys and nonces, append the group's rows, commit), as traits a backend implements.
//!
//! Traits rather than an enum of backends: each backend's group is its own type holding its own transaction
//! (a `rusqlite::Transaction` borrows its connection, a PostgreSQL transaction its client), the server is
//! compiled once per backend with no dispatch per call, and adding a backend touches neither the checks nor the
//! commit. A command that picks the backend at run time calls `server::run` once for the type it opened.

use super::{AuditEntry, StoreError, StoredKey};

/// A store the server can commit groups of requests to.
pub trait RequestStore {
    /// One open group: a write transaction that nothing else can change until it commits or is dropped.
    type Group<'s>: RequestGroup
    where
        Self: 's;

    /// Starts a group. What is read through it (keys, nonces) cannot be changed by another writer before the
    /// group commits, so a nonce checked in the group cannot be used by anyone else in between.
    fn begin_group(&mut self) -> Result<Self::Group<'_>, StoreError>;

    /// Records that a server runs with `max_skew_secs` on this store: the store's nonce window becomes the larger
    /// of the one recorded and this, atomically (two servers starting at once cannot lose the larger), and is
    /// never lowered here. Returns the window now recorded.
    fn widen_nonce_window(&mut self, max_skew_secs: i64) -> Result<i64, StoreError>;

    /// Forgets nonces whose timestamp is more than the recorded nonce window plus `margin_secs` before the
    /// store's clock (on PostgreSQL the database's, which every server sharing it reads alike): such requests
    /// fail every server's clock check. The window is read in the same statement, so a server that widened it
    /// since is honoured at once.
    fn prune_nonces(&mut self, margin_secs: i64) -> Result<usize, StoreError>;

    /// Fails when the store the server writes to is no longer the one others read (a SQLite file deleted or
    /// replaced under the running server): the server must stop acknowledging.
    fn still_in_place(&self) -> Result<(), StoreError>;

    /// Checks, cheaply and without writing, that the store answers now (for `/readyz` while the server is
    /// idle): the SQLite file is still in place; the PostgreSQL database can be reached and is not a read-only
    /// standby. A broken connection is replaced first, when its back-off allows.
    fn answers(&mut self) -> Result<(), StoreError>;

    /// The store's size on disk in bytes: the SQLite file and its write-ahead log, or the PostgreSQL database.
    fn size_on_disk(&mut self) -> Result<u64, StoreError>;

    /// How many acknowledged requests this server committed as pending rows (SQLite's `pending`) and has not
    /// settled into the audit tables since; always 0 where the store has no such rows (PostgreSQL).
    fn unsettled(&self) -> usize {
        0
    }

    /// Moves every pending row, whichever server wrote it, into the audit tables in one transaction, and returns
    /// how many there were. Without `wait_for_lock`, a store another process is writing is left for the next
    /// try (`Ok(None)`) rather than waited for.
    fn settle(&mut self, wait_for_lock: bool) -> Result<Option<usize>, StoreError> {
        let _ = wait_for_lock;
        Ok(Some(0))
    }
}

/// The operations of one group; dropping it without [`RequestGroup::commit`] keeps nothing of it.
pub trait RequestGroup {
    /// The key's secret and state, or `None` when no key has this id.
    fn key(&mut self, id: &str) -> Result<Option<StoredKey>, StoreError>;

    /// The accepted request that used this nonce with this key, if it is still inside the replay window.
    fn nonce(&mut self, key_id: &str, nonce: &str) -> Result<Option<SeenNonce>, StoreError>;

    /// The accepted request that carried this request id (PROTOCOL.md, envelope field `id`) with this key, as long
    /// as its audit row is kept.
    fn request_id(&mut self, key_id: &str, id: &str) -> Result<Option<SeenId>, StoreError>;

    /// Appends an accepted request: its audit row, the JSON of its records, its nonce and its request id, if it
    /// has one. A nonce (or request id) already stored makes it a [`Committed::Replay`], with nothing of it kept.
    fn append_accepted(
        &mut self,
        entry: &AuditEntry,
        nonce: &Nonce,
        payload_json: &str,
    ) -> Result<Committed, StoreError>;

    /// Appends an audit row without a payload (a refusal, a recognised retry) and returns its id.
    fn append(&mut self, entry: &AuditEntry) -> Result<i64, StoreError>;

    /// Makes everything in the group durable at once; only then may the requests be acknowledged.
    fn commit(self) -> Result<(), StoreError>;
}

/// The outcome of appending an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored under this audit id.
    Stored(i64),
    /// The nonce was already used by this key; nothing was stored.
    Replay,
}

/// What is remembered of a request's nonce.
#[derive(Debug, Clone, Copy)]
pub struct Nonce<'a> {
    /// The nonce.
    pub nonce: &'a str,
    /// The request's timestamp (Unix seconds), which decides when the nonce may be forgotten.
    pub timestamp: i64,
    /// The request's signature, which recognises a byte-identical retry.
    pub signature: &'a str,
    /// The request's stable id, when its envelope has one: kept as long as its audit row.
    pub request_id: Option<RequestId<'a>>,
}

/// What is remembered of a request's stable id.
#[derive(Debug, Clone, Copy)]
pub struct RequestId<'a> {
    /// The envelope's `id`.
    pub id: &'a str,
    /// The SHA-256 (lowercase hex) of the request's payload frame, so an id reused for other data is refused.
    pub payload_digest: &'a str,
}

/// An accepted request that carried a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenId {
    /// The audit row of the request that carried it.
    pub audit_id: i64,
    /// The SHA-256 (lowercase hex) of that request's payload frame.
    pub payload_digest: String,
    /// How many records that request carried.
    pub records: u64,
}

/// An accepted request that used a nonce, as remembered for the replay window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenNonce {
    /// The audit row of the request that used it.
    pub audit_id: i64,
    /// That request's signature (NULL for requests stored before schema version 3).
    pub signature: Option<String>,
    /// How many records that request carried.
    pub records: u64,
}
