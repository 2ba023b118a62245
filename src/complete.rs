//! Completion at run time: the values only the store knows (key ids), read while the user types.

use std::ffi::OsStr;

use clap_complete::CompletionCandidate;

/// The environment variable that switches `zavro` into completion mode (`ZAVRO_COMPLETE=bash zavro` prints the
/// script). Not clap's default `COMPLETE`, a name that may be set for other reasons and would then make every
/// `zavro` command print a completion script instead of running.
pub const ENV_VAR: &str = "ZAVRO_COMPLETE";

/// Dynamic completion of a key id: the unrevoked keys of the SQLite store named by ZAVRO_DB, else the default
/// store (none for a PostgreSQL store).
///
/// A completer sees only the word being completed, not the command line's `--db`, so it reads the environment
/// the way clap would; any failure simply offers nothing.
pub fn key_id(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let db = std::env::var_os(crate::config::DB_ENV);
    // A PostgreSQL store is not read while typing: connecting may wait on the network or a password.
    let Ok(crate::store::Location::Sqlite(path)) =
        crate::config::store_location(db.as_deref(), false)
    else {
        return Vec::new();
    };
    crate::store::active_key_ids(&path)
        .into_iter()
        .filter(|(id, _)| id.starts_with(current))
        .map(|(id, label)| CompletionCandidate::new(id).help(label.map(Into::into)))
        .collect()
}
