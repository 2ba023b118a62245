//! The one error type the command front-ends return, and the exit code each kind of failure maps to.

use std::process::ExitCode;

use crate::{
    avro::AvroError,
    client::ClientError,
    credentials::RandomError,
    input::InputError,
    profiles::ProfileError,
    sealed::MasterKeyError,
    spool::SpoolError,
    store::{ChainBreak, StoreError, copy::CopyError},
};

/// Everything a `zavro` command can fail with; `main` prints it once as `zavro: <message>`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or configuration is wrong (missing key, bad endpoint, unreadable secret file).
    #[error("{0}")]
    Usage(String),
    /// Standard input could not be turned into records.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The records could not be encoded as Avro.
    #[error(transparent)]
    Avro(#[from] AvroError),
    /// Talking to the server failed, or it refused what was sent.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store (SQLite or PostgreSQL) could not be opened, migrated, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The credentials file could not be read or written, or lacks the profile asked for.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The OS random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The master key file could not be read or written.
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    /// `store copy` refused: the target is not empty, the source's chain is broken, or the source is sealed
    /// under another master key. (Its store errors are [`Error::Store`].)
    #[error(transparent)]
    Copy(CopyError),
    /// The spool could not be opened, read or written.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// `send --spool` stopped reading input because the spool reached `--spool-max-size`; the message says
    /// what was spooled and what was not read.
    #[error("{0}")]
    SpoolFull(String),
    /// `send --spool` delivered what it could, but the server refused some spooled requests for good; they were
    /// kept aside in the spool's `refused/` directory.
    #[error("{0}")]
    RefusedKept(String),
    /// `audit verify` found the hash chain broken.
    #[error("audit trail verification failed: {0}")]
    Tampered(#[from] ChainBreak),
    /// `serve` could not listen where it was told to: its endpoint or its `--metrics` address.
    #[error("{0}")]
    Listen(String),
    /// Any other failure, already phrased for the user.
    #[error("{0}")]
    Other(String),
    /// An I/O error with what was being done when it happened.
    #[error("{context}: {source}")]
    Io {
        /// What zavro was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Documented exit codes (README.md, "Exit codes").
pub mod exit {
    /// Everything worked.
    pub const SUCCESS: u8 = 0;
    /// A failure not covered below (store, I/O, server start-up).
    pub const FAILURE: u8 = 1;
    /// The command line was wrong (clap uses the same code).
    pub const USAGE: u8 = 2;
    /// Standard input was not valid JSON, or held a value Avro cannot carry exactly.
    pub const BAD_INPUT: u8 = 3;
    /// The server answered and rejected a request.
    pub const REJECTED: u8 = 4;
    /// The server could not be reached or did not answer in time.
    pub const UNREACHABLE: u8 = 5;
    /// `audit verify` found the audit hash chain broken.
    pub const TAMPERED: u8 = 6;
    /// The store does not exist, and the command does not create one (every command but `keys add`).
    pub const NO_STORE: u8 = 7;
    /// The server could not be authenticated: a wrong server key or transport, a key refused at the handshake,
    /// or a reply the server did not sign.
    pub const UNAUTHENTICATED: u8 = 8;
    /// The store is sealed and the master key is missing or wrong, the key file cannot be used, or a master key
    /// was given for a store that is not sealed.
    pub const MASTER_KEY: u8 = 9;
    /// `send --spool`: the spool reached `--spool-max-size`, so `send` stopped reading its input.
    pub const SPOOL_FULL: u8 = 10;
    /// `serve` could not listen on its endpoint or its `--metrics` address (in use, not this machine's, not
    /// allowed).
    pub const CANNOT_LISTEN: u8 = 11;
    /// `send --spool`: requests the server refused for good were kept aside in the spool's `refused/`, and
    /// everything else was delivered (or waits, the server being unreachable).
    pub const REFUSED_KEPT: u8 = 12;
}

impl From<CopyError> for Error {
    /// A store error stays one, so it keeps its exit code (a missing source is 7 as everywhere).
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Store(e) => Error::Store(e),
            other => Error::Copy(other),
        }
    }
}

impl Error {
    /// Wraps an I/O error with what was being attempted.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_code_number())
    }

    /// The process exit code for this error, as a number (for a log line that records it).
    pub fn exit_code_number(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Listen(_) => exit::CANNOT_LISTEN,
            Error::Profile(ProfileError::Io { .. }) => exit::FAILURE,
            Error::Profile(_) => exit::USAGE,
            Error::Input(_) | Error::Avro(_) => exit::BAD_INPUT,
            Error::Client(e) if e.is_rejection() => exit::REJECTED,
            Error::Client(e) if e.is_unreachable() => exit::UNREACHABLE,
            Error::Client(e) if e.is_unauthenticated() => exit::UNAUTHENTICATED,
            // Not evidence of tampering: the head is simply gone, so nothing can be said about it.
            Error::Tampered(ChainBreak::HeadPruned { .. }) => exit::FAILURE,
            Error::Tampered(_) => exit::TAMPERED,
            Error::Copy(CopyError::SourceTampered { .. }) => exit::TAMPERED,
            Error::Copy(CopyError::SourceSealedUnderAnotherKey { .. }) => exit::MASTER_KEY,
            Error::Copy(CopyError::NotEmpty { .. } | CopyError::Store(_)) => exit::FAILURE,
            Error::Store(StoreError::Missing(_) | StoreError::PgMissing(_)) => exit::NO_STORE,
            Error::Store(StoreError::BadUrl(_)) => exit::USAGE,
            Error::MasterKey(_)
            | Error::Store(
                StoreError::Locked { .. }
                | StoreError::MasterKeyRequired { .. }
                | StoreError::WrongMasterKey { .. }
                | StoreError::NotSealed { .. }
                | StoreError::SameMasterKey(_),
            ) => exit::MASTER_KEY,
            Error::SpoolFull(_) => exit::SPOOL_FULL,
            Error::RefusedKept(_) => exit::REFUSED_KEPT,
            // A record too large for the spool is the input's doing, as a record too large for a request is.
            Error::Spool(SpoolError::TooLarge { .. }) => exit::BAD_INPUT,
            Error::Client(_)
            | Error::Spool(_)
            | Error::Store(_)
            | Error::Random(_)
            | Error::Other(_)
            | Error::Io { .. } => exit::FAILURE,
        }
    }

    /// True when the error is a write to a closed pipe (`zavro audit query | head`), which is not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
