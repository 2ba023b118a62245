//! The SQLite store shared by every command: API keys, the audit trail, accepted payloads, the Avro schemas
//! requests used, and seen nonces.
//!
//! Opened once per process. WAL mode and a busy timeout let `keys` and `audit` commands run beside `serve`;
//! `synchronous=FULL` makes every commit durable before the server acknowledges it.

mod audit;
mod audit_store;
mod chain;
pub mod copy;
mod group;
mod key_store;
mod keys;
pub mod location;
pub mod pending;
pub mod postgres;
mod prune;
mod requests;
mod schemas;
mod sealing;
mod secrets;
mod server_keys;
mod sqlite_chain;

use std::{
    collections::HashMap,
    fs::{self, OpenOptions},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::LazyLock,
    time::Duration,
};

use rusqlite::{Connection, TransactionBehavior};
use rusqlite_migration::{M, Migrations, SchemaVersion};

pub use audit::{AuditCount, AuditEntry, AuditFilter, AuditRow, Status};
pub use audit_store::AuditStore;
pub use chain::{
    ChainBreak, ChainVerifier, ChainedFields, GENESIS, StoredRow, Verified, check_schema,
    payload_sha256,
};
pub use group::{Committed, Nonce, RequestGroup, RequestId, RequestStore, SeenId, SeenNonce};
pub use key_store::KeyStore;
pub use keys::{KeyRecord, StoredKey};
pub use location::Location;
pub use postgres::{PgStore, PgUrl};
pub use prune::Pruned;
pub use requests::Batch;
pub use schemas::SchemaRow;
pub use sealing::{Resealed, Sealed};
pub use server_keys::{CurveClient, ServerKeys};

/// How long a command waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a reader waits for the write lock to settle pending rows before it reads without them.
const READER_PATIENCE: Duration = Duration::from_secs(2);

/// Whether SQLite gave up waiting for another connection's lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy)
}

/// The schema, one numbered migration per file, in order; shipped migrations are never edited.
static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("migrations/0001_initial.sql")),
        M::up_with_hook(
            include_str!("migrations/0002_audit_chain.sql"),
            |tx: &rusqlite::Transaction| sqlite_chain::backfill(tx).map_err(Into::into),
        ),
        M::up(include_str!("migrations/0003_nonce_signature.sql")),
        M::up(include_str!(
            "migrations/0004_nonce_pruning_without_index.sql"
        )),
        M::up(include_str!("migrations/0005_operators.sql")),
        M::up(include_str!("migrations/0006_schemas.sql")),
        M::up(include_str!("migrations/0007_audit_requests.sql")),
        M::up_with_hook(
            include_str!("migrations/0008_curve.sql"),
            |tx: &rusqlite::Transaction| {
                server_keys::backfill_client_publics(tx)
                    .map_err(|e| rusqlite_migration::HookError::Hook(e.to_string()))
            },
        ),
        M::up(include_str!("migrations/0009_sealed.sql")),
        M::up(include_str!("migrations/0010_audit_server.sql")),
        M::up(include_str!("migrations/0011_nonce_window.sql")),
        M::up(include_str!("migrations/0012_request_ids.sql")),
        M::up(include_str!("migrations/0013_pending.sql")),
    ])
});

/// The schema version this build migrates stores to.
const SCHEMA_VERSION: usize = 13;

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The path exists but is a directory.
    #[error("store {0} is a directory; give the path of a file (--db or ZAVRO_DB)")]
    IsDirectory(PathBuf),
    /// No store at the path, and the command does not create one (only `keys add` does).
    #[error(
        "no store at {0}; `zavro keys add` creates one, or give the path of an existing store (--db or ZAVRO_DB)"
    )]
    Missing(PathBuf),
    /// A file SQLite keeps beside the store (`-wal`, `-shm`) is there but cannot serve: SQLite would fail on it
    /// later, in the middle of work, or (for `-shm`, which it maps into memory) crash the process.
    #[error("store file {path} {problem}")]
    Unusable {
        /// The `-wal` or `-shm` file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        problem: String,
    },
    /// The store opened but a write transaction failed (read-only file system, full disk, locked files).
    #[error("store {path} cannot be written: {source}")]
    NotWritable {
        /// The store file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Other users may read the file, which holds secrets.
    #[error(
        "store {path} is readable or writable by other users (mode {mode:o}); it holds secrets: chmod 600 {path}"
    )]
    TooOpen {
        /// The store file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file-system operation failed.
    #[error("store {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SQLite refused to open or set up the file (it may not be a SQLite database).
    #[error("cannot open store {path}: {source}")]
    Open {
        /// The store file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file was created by a newer zavro.
    #[error(
        "store {path} has schema version {found}, newer than this zavro knows ({known}); upgrade zavro"
    )]
    TooNew {
        /// The store file.
        path: PathBuf,
        /// The store's schema version.
        found: usize,
        /// The newest version this build knows.
        known: usize,
    },
    /// A migration failed.
    #[error("cannot upgrade store {path}: {source}")]
    Migrate {
        /// The store file.
        path: PathBuf,
        /// The migration error.
        source: rusqlite_migration::Error,
    },
    /// SQLite ended a group's transaction on its own (after an I/O or memory error): nothing more may be written
    /// in it, or each write would commit on its own.
    #[error("the store ended the transaction after an error; nothing of it was kept")]
    TransactionLost,
    /// Another server committed a nonce this group read as unused, between that read and the group's writes:
    /// nothing of the group was kept, and checking it again gives each request its right answer.
    #[error(
        "another server stored one of this group's nonces meanwhile; nothing of the group was kept"
    )]
    Raced,
    /// The PostgreSQL connection broke and could not be replaced yet; the next attempt waits for a back-off.
    #[error("cannot reach store {url}: {reason}")]
    PgDown {
        /// The URL, without its password.
        url: String,
        /// Why, on one line, and when the next attempt is.
        reason: String,
    },
    /// The store's path was deleted or now names another file while the store was open.
    #[error(
        "store {0} was deleted or replaced while in use; nothing more is written to the old file (restart with the store in place)"
    )]
    Replaced(PathBuf),
    /// No key has this id.
    #[error("no key {0:?} in the store (see `zavro keys list`)")]
    UnknownKey(String),
    /// A CURVE key could not be made or read (libzmq without CURVE, or a damaged `server_keys` row).
    #[error("store: {0}")]
    Curve(#[from] crate::curve::CurveError),
    /// The store is sealed and this process was given no master key, so it can neither read nor write
    /// secrets.
    #[error(
        "store {path} is sealed under master key {fingerprint}; give its key file with --master-key-file or \
         ZAVRO_MASTER_KEY_FILE (or as the systemd credential zavro-master-key)"
    )]
    Locked {
        /// The store file.
        path: String,
        /// The fingerprint of the key it is sealed under.
        fingerprint: String,
    },
    /// A PostgreSQL store keeps every secret sealed, and this command needs a secret but was given no master key.
    #[error(
        "store {url} keeps its secrets sealed under a master key{}; give its key file with --master-key-file or \
         ZAVRO_MASTER_KEY_FILE (or as the systemd credential zavro-master-key){}",
        fingerprint.as_ref().map(|f| format!(" ({f})")).unwrap_or_default(),
        if fingerprint.is_none() {
            "; a new store's key is 64 hexadecimal digits in a file of mode 0600: (umask 077; openssl rand \
             -hex 32 > master.key)"
        } else {
            ""
        }
    )]
    MasterKeyRequired {
        /// The URL, without its password.
        url: String,
        /// The fingerprint of the key its secrets are sealed under, once it has one.
        fingerprint: Option<String>,
    },
    /// The store is sealed under another master key than the one given.
    #[error(
        "this store is sealed under master key {sealed_under}; the key in {key_file} is {given}"
    )]
    WrongMasterKey {
        /// The fingerprint the store records.
        sealed_under: String,
        /// The fingerprint of the key given.
        given: String,
        /// Where the key given came from.
        key_file: String,
    },
    /// A master key was given for a store that is not sealed: it would protect nothing.
    #[error(
        "store {path} is not sealed, yet a master key was given ({key_file}); `zavro store seal` seals it under \
         that key, or give no master key"
    )]
    NotSealed {
        /// The store file.
        path: String,
        /// Where the key given came from.
        key_file: String,
    },
    /// `store reseal` was given the key the store is already sealed under.
    #[error("the new master key is the one the store is sealed under ({0}); give another")]
    SameMasterKey(String),
    /// A sealed secret did not open because the store was resealed under another master key after this
    /// process was given its key: a server started before a `store reseal`, which needs restarting.
    #[error(
        "the store's secrets are now sealed under master key {sealed_under}, not under this process's \
         {held}: it was resealed after this process started; restart it with the new key file"
    )]
    Resealed {
        /// The fingerprint the store records now.
        sealed_under: String,
        /// The fingerprint of the key this process holds.
        held: String,
    },
    /// `store reseal` on a PostgreSQL store that holds no sealed secret (and so records no master key) yet.
    #[error(
        "store {0} holds no secret yet, so there is nothing to reseal: the first `zavro keys add` seals under \
         the master key it is given"
    )]
    NothingSealed(String),
    /// A sealed secret did not open (altered, moved from another row, sealed under another key), or a secret
    /// could not be sealed.
    #[error("store: {0}")]
    Seal(#[from] crate::sealed::SealError),
    /// A secret is in clear text in a sealed store: written there behind zavro's back, so it is not used.
    #[error(
        "store: {0} is in clear text in a sealed store; it is not used (the store was altered)"
    )]
    ClearTextInSealedStore(String),
    /// A server key pair's stored secret half does not give its stored public key.
    #[error(
        "store: the secret of server key {0} does not belong to that public key (the store was altered)"
    )]
    ServerKeyMismatch(String),
    /// A row holds neither a clear-text nor a sealed secret.
    #[error("store: {0} is missing")]
    NoSecret(String),
    /// The secrets are sealed (the transaction committed), but the file could not be rebuilt: old clear-text
    /// copies may remain in its free pages or WAL. Never reported as a failure to seal.
    #[error(
        "the secrets of store {path} ARE sealed under master key {fingerprint}: keep the key file; the rebuild \
         that removes old clear-text copies from the file failed: {reason}; run `zavro store seal` again with \
         the same key file (once no other process has the store open) to remove them"
    )]
    ScrubIncomplete {
        /// The store file.
        path: String,
        /// The fingerprint of the key the secrets are sealed under.
        fingerprint: String,
        /// Why the rebuild failed.
        reason: String,
    },
    /// A query or write failed.
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// `--db` or `ZAVRO_DB` starts with `postgres://` but is not a URL zavro can use. The reason never quotes the
    /// text, which may hold a password.
    #[error("invalid PostgreSQL URL in --db or ZAVRO_DB: {0}")]
    BadUrl(String),
    /// The PostgreSQL server could not be reached, or refused the connection (authentication, TLS, no database).
    #[error("cannot connect to store {url}: {reason}")]
    PgConnect {
        /// The URL, without its password.
        url: String,
        /// What failed, on one line.
        reason: String,
    },
    /// The database has no zavro schema, and the command does not create one (only `keys add` does).
    #[error(
        "no zavro store in database {0}; `zavro keys add` creates one, or give the URL of an existing store (--db or ZAVRO_DB)"
    )]
    PgMissing(String),
    /// The database's schema was made by a newer zavro.
    #[error(
        "store {url} has schema version {found}, newer than this zavro knows ({known}); upgrade zavro"
    )]
    PgTooNew {
        /// The URL, without its password.
        url: String,
        /// The database's schema version.
        found: usize,
        /// The newest version this build knows.
        known: usize,
    },
    /// A PostgreSQL migration failed; nothing of it was kept.
    #[error("cannot upgrade store {url} to schema version {version}: {reason}")]
    PgMigrate {
        /// The URL, without its password.
        url: String,
        /// The version the failed migration makes.
        version: usize,
        /// PostgreSQL's error, on one line.
        reason: String,
    },
    /// A PostgreSQL statement failed where the store is named in the message.
    #[error("store {url}: {reason}")]
    PgQuery {
        /// The URL, without its password.
        url: String,
        /// PostgreSQL's error, on one line.
        reason: String,
    },
    /// A PostgreSQL query or write failed.
    #[error("store error: {}", postgres::one_line(.0))]
    Postgres(#[from] ::postgres::Error),
}

/// An open store.
pub struct Store {
    conn: Connection,
    /// Ids of the `schemas` rows this process has seen committed, by fingerprint.
    schema_ids: HashMap<String, i64>,
    /// The file this store opened, to notice when its path names another file or none (`None` in memory).
    file: Option<FileIdentity>,
    /// `PRAGMA data_version` when `schema_ids` was last known right: it changes when another connection
    /// commits (a prune may delete schemas), and then the cached ids are forgotten.
    data_version: i64,
    /// The master key of a sealed store, once given ([`Store::use_master_key`]); `None` reads and writes
    /// secrets in clear text, as an unsealed store keeps them.
    master: Option<crate::sealed::MasterKey>,
    /// Pending rows ([`pending`]) this connection committed and has not settled since.
    unsettled: usize,
    /// False after this connection failed to settle pending rows, until it succeeds again: meanwhile its groups
    /// write every row straight into `audit` (which settles first, and so fails the same way), so that a store
    /// that cannot settle shows as failing instead of piling up pending rows.
    pending_allowed: bool,
    /// Why the rows still pending could not be settled for a reader ([`Store::pending_not_shown`]).
    reader_note: Option<String>,
}

/// A file's path and the (device, inode) it named when the store was opened.
#[derive(Debug, Clone)]
struct FileIdentity {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl Store {
    /// Checks the audit hash chain; with `against` (row id, hash), also that a recorded head is still in it.
    pub fn verify_audit(
        &self,
        against: Option<(i64, &str)>,
    ) -> Result<Result<Verified, ChainBreak>, StoreError> {
        // One read transaction, so the rows, the checkpoint and the id counter are read from the same snapshot
        // even while a server appends (otherwise the counter can run ahead of the rows read and look like
        // deleted rows). Deferred: a reader must not take the write lock from the server.
        let snapshot =
            rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)?;
        let verified = sqlite_chain::verify(&snapshot, against);
        snapshot.finish()?;
        verified
    }

    /// The newest audit row's id and hash, or `None` when the trail is empty.
    pub fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    /// Opens (creating if needed, mode 0600) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, true)
    }

    /// Opens and migrates the store at `path`, which must exist: [`StoreError::Missing`] otherwise, so a
    /// mistyped `--db` or a deleted store is an error rather than a new, empty store.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Store, StoreError> {
        if path.is_dir() {
            return Err(StoreError::IsDirectory(path.to_owned()));
        }
        let io_err = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        if create && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err)?;
        }
        // Create the file ourselves so it is never, even briefly, readable by others.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound if !create => StoreError::Missing(path.to_owned()),
                _ => io_err(source),
            })?;
        check_side_files(path)?;
        let mode = fs::metadata(path).map_err(io_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        Self::migrate(conn, path)
    }

    /// Runs a write transaction that changes nothing, so a store that cannot be written (read-only file system,
    /// full disk, a `-wal` or `-shm` SQLite cannot write) is found at start-up, not at the first request.
    pub fn check_writable(&mut self) -> Result<(), StoreError> {
        let not_writable = |source| StoreError::NotWritable {
            path: PathBuf::from(self.conn.path().unwrap_or("the store")),
            source,
        };
        let write = || -> rusqlite::Result<()> {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            // Rewriting the schema version with its own value dirties the header page, so the commit really
            // appends to the WAL and syncs it, as every group the server commits will.
            let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        write().map_err(not_writable)
    }

    /// Keeps SQLite's temporary data (statement journals, sorts, transient tables) in memory rather than in
    /// temporary files, so that this connection never needs another descriptor once open: `serve` caps its
    /// open files at what it holds plus one per connection. What a group writes bounds that memory.
    pub fn keep_temporary_data_in_memory(&self) -> Result<(), StoreError> {
        Ok(self.conn.pragma_update(None, "temp_store", "MEMORY")?)
    }

    /// Makes this connection refuse (or again allow) every change, as a full or failing disk would: for tests of
    /// what the server does when it cannot write.
    #[cfg(test)]
    pub(crate) fn refuse_writes(&self, refuse: bool) {
        self.conn
            .pragma_update(None, "query_only", refuse)
            .expect("query_only is a plain pragma");
    }

    /// Sets how long this connection waits for another's write lock (tests that must not wait 30 s).
    #[cfg(test)]
    pub(crate) fn set_busy_timeout(&self, timeout: Duration) {
        self.conn
            .busy_timeout(timeout)
            .expect("busy_timeout is a plain setting");
    }

    /// Opens a private in-memory store (for tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::migrate(conn, Path::new(":memory:"))
    }

    fn migrate(mut conn: Connection, path: &Path) -> Result<Store, StoreError> {
        let known = SCHEMA_VERSION;
        let version = |conn: &Connection| match MIGRATIONS.current_version(conn) {
            Ok(SchemaVersion::Inside(v) | SchemaVersion::Outside(v)) => Some(usize::from(v)),
            Ok(SchemaVersion::NoneSet) => Some(0),
            Err(_) => None,
        };
        if let Some(found) = version(&conn).filter(|v| *v > known) {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found,
                known,
            });
        }
        // Migrations take the write lock (BEGIN IMMEDIATE) so two processes cannot both write the schema.
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        if let Err(source) = MIGRATIONS.to_latest(&mut conn) {
            // rusqlite_migration reads the version before taking the lock: when another process migrated the
            // fresh store in between, our attempt fails and the store is already current, which is success.
            if version(&conn) != Some(known) {
                return Err(StoreError::Migrate {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        // Every transaction zavro opens writes; taking the write lock up front means a transaction never has to
        // upgrade a read snapshot that another process made stale (which fails at once with SQLITE_BUSY).
        let file = match fs::metadata(path) {
            Ok(meta) if path != Path::new(":memory:") => Some(FileIdentity {
                path: path.to_owned(),
                device: meta.dev(),
                inode: meta.ino(),
            }),
            _ => None,
        };
        let mut store = Store {
            conn,
            schema_ids: HashMap::new(),
            file,
            data_version: 0,
            master: None,
            unsettled: 0,
            pending_allowed: true,
            reader_note: None,
        };
        // Rows a server left pending when it was stopped or killed go where every reader looks before anything
        // else reads the store.
        store.settle_for_readers();
        Ok(store)
    }

    /// Moves every pending row ([`pending`]) into the audit tables in one durable transaction; returns how many.
    pub fn settle(&mut self) -> Result<usize, StoreError> {
        self.settle_within(BUSY_TIMEOUT)
    }

    /// [`Store::settle`], waiting at most `patience` for another process's write lock.
    pub fn settle_within(&mut self, patience: Duration) -> Result<usize, StoreError> {
        // Read without the write lock first: a command opening the store while a server writes should not wait
        // for the lock only to find nothing to do.
        if !pending::any(&self.conn)? {
            self.unsettled = 0;
            self.pending_allowed = true;
            return Ok(0);
        }
        // The connection's own timeout (30 s, or a test's) comes back after this one transaction.
        let usual: i64 = self
            .conn
            .pragma_query_value(None, "busy_timeout", |row| row.get(0))?;
        self.conn.busy_timeout(patience)?;
        let settled = (|| {
            let tx =
                rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let moved = pending::settle(&tx)?;
            tx.commit()?;
            Ok(moved)
        })();
        let usual = u64::try_from(usual).map_or(BUSY_TIMEOUT, Duration::from_millis);
        self.conn.busy_timeout(usual)?;
        match settled {
            Ok(moved) => {
                self.unsettled = 0;
                self.pending_allowed = true;
                Ok(moved)
            }
            Err(e) => {
                if !is_busy(&e) {
                    self.pending_allowed = false;
                }
                Err(StoreError::Sqlite(e))
            }
        }
    }

    /// Settles the pending rows for a reader, waiting a little for the write lock: a reader must still read on a
    /// full disk, or while an `audit prune` holds the lock, only without the rows it could not settle, which
    /// [`Store::pending_not_shown`] then counts.
    fn settle_for_readers(&mut self) {
        // One wait per command: a command that found the lock held at open reads on without waiting again.
        let patience = if self.reader_note.is_some() {
            Duration::ZERO
        } else {
            READER_PATIENCE
        };
        self.reader_note = match self.settle_within(patience) {
            Ok(_) => None,
            Err(e) => {
                let waiting: i64 = self
                    .conn
                    .query_row("SELECT count(*) FROM pending", [], |row| row.get(0))
                    .unwrap_or(0);
                Some(format!(
                    "{waiting} acknowledged request(s) still wait in the pending table and are not shown: \
                     cannot move them into the audit tables ({e})"
                ))
            }
        };
    }

    /// Why what was read may lack the newest acknowledged requests (they are safe in the pending table), if it
    /// may: the last settlement for a reader failed, and rows are still pending.
    pub fn pending_not_shown(&self) -> Option<&str> {
        let note = self.reader_note.as_deref()?;
        pending::any(&self.conn).unwrap_or(true).then_some(note)
    }

    /// The file this store opened (`None` in memory), for another connection to the same store.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|file| file.path.as_path())
    }

    /// The sizes of the store's file and of its write-ahead log (0 for a store in memory); a log that is not
    /// there (checkpointed away) counts 0.
    pub fn file_sizes(&self) -> Result<u64, StoreError> {
        let Some(file) = &self.file else {
            return Ok(0);
        };
        let size = |path: &Path| match fs::metadata(path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(StoreError::Io {
                path: path.to_owned(),
                source,
            }),
        };
        let mut wal = file.path.clone().into_os_string();
        wal.push("-wal");
        Ok(size(&file.path)? + size(Path::new(&wal))?)
    }

    /// Fails when the store's path no longer names the file it opened: deleted, or replaced by another file.
    /// Whatever is written after that goes into a file nobody will read again.
    pub fn still_in_place(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let same = fs::metadata(&file.path)
            .is_ok_and(|meta| meta.dev() == file.device && meta.ino() == file.inode);
        if same {
            Ok(())
        } else {
            Err(StoreError::Replaced(file.path.clone()))
        }
    }
}

/// Ids and labels of the keys not revoked, read from the store at `path` without creating or migrating it; empty
/// when it cannot be read. For shell completion, which must never fail loudly or change anything.
pub fn active_key_ids(path: &Path) -> Vec<(String, Option<String>)> {
    let read = || -> rusqlite::Result<Vec<(String, Option<String>)>> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_millis(500))?;
        let mut stmt =
            conn.prepare("SELECT id, label FROM keys WHERE revoked_us IS NULL ORDER BY id")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    };
    if path.is_file() {
        read().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Checks the `-wal` and `-shm` files beside the store at `path`, when they exist, before SQLite opens them.
///
/// SQLite maps `-shm` into memory: one it cannot write (an immutable file, say) makes it fall back to a
/// read-only mapping, and every write then fails (a server was also seen to die of SIGBUS on one).
/// Checked with access(2), not by opening: closing a descriptor of a file drops every lock this process holds
/// on it, SQLite's included.
fn check_side_files(path: &Path) -> Result<(), StoreError> {
    use nix::unistd::{AccessFlags, access};
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let side = PathBuf::from(name);
        let unusable = |problem: String| StoreError::Unusable {
            path: side.clone(),
            problem,
        };
        let kind = match fs::metadata(&side) {
            Ok(meta) => meta.file_type(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unusable(format!("cannot be examined: {e}"))),
        };
        if !kind.is_file() {
            return Err(unusable(format!(
                "is {}, not a regular file; SQLite needs it to be a file this process can read and write",
                describe_file_type(kind)
            )));
        }
        match access(&side, AccessFlags::R_OK | AccessFlags::W_OK) {
            // SQLite deletes both files when the last connection closes: another process may do so between
            // the look above and this check, which leaves nothing to object to.
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(unusable(format!(
                    "cannot be read and written by this process ({}); check its owner, mode and attributes (lsattr)",
                    std::io::Error::from(e)
                )));
            }
        }
    }
    Ok(())
}

/// "a directory", "a symbolic link", … for a message.
fn describe_file_type(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Switches the connection to WAL mode and returns the mode SQLite reports.
///
/// While another process holds the write lock on a fresh file (switching it to WAL itself, or migrating),
/// this pragma fails with SQLITE_BUSY at once, without calling the busy handler (a read lock cannot wait for an
/// upgrade), so it is retried here with back-off, up to the same [`BUSY_TIMEOUT`].
fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// Per-connection settings: durability, concurrency with other processes, integrity.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode = wal_mode(conn)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, WAL needed"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            MIGRATIONS.pending_migrations(&conn).unwrap(),
            SCHEMA_VERSION as i32
        );
    }

    #[test]
    fn a_fresh_file_is_created_private_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/zavro.db");
        Store::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        Store::open(&path).unwrap();
    }

    #[test]
    fn open_existing_refuses_a_missing_store_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/zavro.db");
        assert!(matches!(
            Store::open_existing(&path),
            Err(StoreError::Missing(p)) if p == path
        ));
        assert!(!dir.path().join("sub").exists());
        Store::open(&path).unwrap();
        Store::open_existing(&path).unwrap();
    }

    #[test]
    fn a_side_file_that_is_not_a_regular_file_is_refused_before_sqlite_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zavro.db");
        Store::open(&path).unwrap();
        let wal = dir.path().join("zavro.db-wal");
        fs::create_dir(&wal).unwrap();
        let err = Store::open_existing(&path)
            .err()
            .expect("-wal is a directory");
        assert!(
            matches!(&err, StoreError::Unusable { path, .. } if *path == wal),
            "{err}"
        );
    }

    #[test]
    fn check_writable_runs_a_real_write_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("zavro.db")).unwrap();
        store.check_writable().unwrap();
        store.refuse_writes(true);
        let err = store.check_writable().expect_err("writes are refused");
        assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
        assert!(
            err.to_string().contains("zavro.db cannot be written"),
            "{err}"
        );
    }

    #[test]
    fn a_world_readable_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zavro.db");
        Store::open(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooOpen { mode: 0o644, .. })
        ));
    }

    #[test]
    fn a_directory_or_a_non_database_file_gives_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::IsDirectory(_))
        ));
        let junk = dir.path().join("junk.db");
        fs::write(&junk, vec![b'x'; 4096]).unwrap();
        fs::set_permissions(&junk, fs::Permissions::from_mode(0o600)).unwrap();
        let err = Store::open(&junk).err().expect("junk is not a database");
        assert!(err.to_string().contains("not a database"), "{err}");
    }

    #[test]
    fn a_store_from_a_newer_zavro_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zavro.db");
        Store::open(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
