//! `zavro store status|seal|reseal|copy`: seal the store's secrets under a master key kept outside it, move them
//! to a new key, and copy a store into PostgreSQL.

use std::{io::Write, path::Path};

use crate::{
    cli::{StoreCommand, StoreCopyArgs, StoreResealArgs, StoreSealArgs},
    config::{self, MASTER_KEY_FILE_ENV},
    error::Error,
    sealed::MasterKey,
    store::{
        Location, PgStore, Store, StoreError,
        copy::{CopyOptions, copy_into_postgres},
    },
    timestamp,
};

/// Runs one `store` subcommand; `master_key_file` is `--master-key-file` / `ZAVRO_MASTER_KEY_FILE`.
pub fn run(
    store: &mut Store,
    master_key_file: Option<&Path>,
    command: StoreCommand,
) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let written = match command {
        StoreCommand::Status => match store.sealed_under()? {
            Some(fingerprint) => writeln!(out, "sealed under master key {fingerprint}"),
            None => writeln!(out, "not sealed: secrets are kept in clear text"),
        },
        StoreCommand::Seal(args) => {
            let message = seal(store, master_key_file, &args)?;
            writeln!(out, "{message}")
        }
        StoreCommand::Reseal(args) => {
            let message = reseal(store, master_key_file, &args)?;
            writeln!(out, "{message}")
        }
        StoreCommand::Copy(args) => return copy(master_key_file, args),
    };
    written.map_err(super::stdout_error)
}

/// `store seal` where no store is yet: makes the store and seals it before anything is written to it, so no
/// secret is ever kept in clear text there. A failure (no key file, a key file that is already there) leaves no
/// store behind.
pub fn seal_new(
    path: &Path,
    master_key_file: Option<&Path>,
    args: &StoreSealArgs,
) -> Result<(), Error> {
    let mut store = Store::open(path)?;
    let sealed = master_for_seal(&store, master_key_file, args).and_then(|master| {
        let fingerprint = master.fingerprint();
        let file = master.describe_source();
        store.seal_secrets(master, timestamp::now_micros())?;
        Ok((fingerprint, file))
    });
    let (fingerprint, file) = match sealed {
        Ok(sealed) => sealed,
        Err(e) => {
            drop(store);
            remove_new_store(path);
            return Err(e);
        }
    };
    needs_the_key_from_now_on(&file);
    writeln!(
        std::io::stdout().lock(),
        "created store {} sealed under master key {fingerprint} ({file}): its secrets are never kept in clear \
         text",
        path.display()
    )
    .map_err(super::stdout_error)
}

/// Removes the files of a store this command created and could not seal.
fn remove_new_store(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(side);
    }
}

fn seal(
    store: &mut Store,
    master_key_file: Option<&Path>,
    args: &StoreSealArgs,
) -> Result<String, Error> {
    let master = master_for_seal(store, master_key_file, args)?;
    let fingerprint = master.fingerprint();
    let file = master.describe_source();
    let sealed = store.seal_secrets(master, timestamp::now_micros())?;
    if sealed.already {
        return Ok(format!(
            "already sealed under master key {fingerprint}; the store file was rebuilt again, so no old copy of a \
             secret is left in it"
        ));
    }
    needs_the_key_from_now_on(&file);
    Ok(format!(
        "sealed {} and {} under master key {fingerprint} ({file})",
        count(sealed.api_keys, "API secret"),
        count(sealed.server_keys, "server key")
    ))
}

/// Tells the operator, on stderr, that servers and `keys add` need the key `file` from now on.
fn needs_the_key_from_now_on(file: &str) {
    eprintln!(
        "every `zavro serve` and `zavro keys add` on this store now needs {file}: restart servers with \
         --master-key-file, {MASTER_KEY_FILE_ENV} or the systemd credential {}; keep a copy of the key apart \
         from the store's backups",
        config::MASTER_KEY_CREDENTIAL
    );
}

/// The key `store seal` seals under: a new one written to the --master-key-file path (`--create-key`), or the
/// one configured.
fn master_for_seal(
    store: &Store,
    master_key_file: Option<&Path>,
    args: &StoreSealArgs,
) -> Result<MasterKey, Error> {
    Ok(if args.create_key {
        let path = master_key_file.ok_or_else(|| {
            Error::Usage(format!(
                "--create-key writes the new key to the --master-key-file path (or {MASTER_KEY_FILE_ENV}); give one"
            ))
        })?;
        // Checked before a key file is made that could never be used.
        if let Some(fingerprint) = store.sealed_under()? {
            return Err(Error::Usage(format!(
                "the store is already sealed under master key {fingerprint}; `zavro store reseal \
                 --new-master-key-file PATH --create-key` moves it to a new key"
            )));
        }
        MasterKey::generate_to(path)?
    } else {
        config::master_key(master_key_file)?.ok_or_else(|| {
            Error::Usage(format!(
                "no master key: give its file with --master-key-file PATH (or {MASTER_KEY_FILE_ENV}), and \
                 --create-key to make a new one there"
            ))
        })?
    })
}

fn reseal(
    store: &mut Store,
    master_key_file: Option<&Path>,
    args: &StoreResealArgs,
) -> Result<String, Error> {
    // The current key is checked before a new key file is made.
    store.use_master_key(config::master_key(master_key_file)?)?;
    if store.sealed_under()?.is_none() {
        return Err(Error::Usage(
            "the store is not sealed: `zavro store seal` seals it first".into(),
        ));
    }
    let new = new_master_key(args)?;
    let resealed = store.reseal_secrets(new, timestamp::now_micros())?;
    Ok(resealed_message(&resealed, &args.new_master_key_file))
}

/// The key `store reseal` moves the secrets to: made and written first with `--create-key`, else read.
fn new_master_key(args: &StoreResealArgs) -> Result<MasterKey, Error> {
    let path = &args.new_master_key_file;
    Ok(if args.create_key {
        MasterKey::generate_to(path)?
    } else {
        MasterKey::load(path)?
    })
}

/// Tells the operator on stderr what a reseal means for running servers and backups, and returns the line
/// `store reseal` prints.
fn resealed_message(resealed: &crate::store::Resealed, path: &Path) -> String {
    eprintln!(
        "servers still on the old key refuse requests until restarted with {}; backups made before stay \
         sealed under the old key",
        path.display()
    );
    format!(
        "resealed {} and {}: master key {} -> {} ({})",
        count(resealed.api_keys, "API secret"),
        count(resealed.server_keys, "server key"),
        resealed.old_fingerprint,
        resealed.new_fingerprint,
        path.display()
    )
}

/// `store status` on PostgreSQL, whose secrets are always sealed: under which key, once one is stored.
pub fn status_postgres(url: &crate::store::PgUrl) -> Result<(), Error> {
    let mut store = crate::store::PgStore::connect(url)?;
    let line = match store.sealed_under()? {
        Some(fingerprint) => format!("sealed under master key {fingerprint}"),
        None => "sealed from its first secret on, under the master key that `keys add` is given; no secret \
                 is stored yet"
            .to_owned(),
    };
    writeln!(std::io::stdout().lock(), "{line}").map_err(super::stdout_error)
}

/// `store seal` on PostgreSQL: there is nothing to seal, and the command says what to run instead.
pub fn seal_postgres(url: &crate::store::PgUrl) -> Result<(), Error> {
    Err(Error::Usage(format!(
        "store {url} is on PostgreSQL, where every secret is always sealed, so there is nothing to seal; \
         `zavro store reseal --new-master-key-file PATH` moves the secrets to another master key"
    )))
}

/// `store reseal` on PostgreSQL: the same checks, output and audit row as on SQLite. The current key is
/// checked, and the store must hold a secret, before a new key file is made.
pub fn reseal_postgres(
    url: &crate::store::PgUrl,
    master_key_file: Option<&Path>,
    args: &StoreResealArgs,
) -> Result<(), Error> {
    use crate::store::{PgStore, StoreError};

    let mut store = PgStore::connect(url)?;
    let Some(old) = config::master_key(master_key_file)? else {
        return Err(StoreError::MasterKeyRequired {
            url: url.to_string(),
            fingerprint: store.sealed_under()?,
        }
        .into());
    };
    store.use_master_key(Some(old))?;
    if store.sealed_under()?.is_none() {
        return Err(Error::Usage(
            StoreError::NothingSealed(url.to_string()).to_string(),
        ));
    }
    let new = new_master_key(args)?;
    let resealed = store.reseal_secrets(new, timestamp::now_micros())?;
    let message = resealed_message(&resealed, &args.new_master_key_file);
    writeln!(std::io::stdout().lock(), "{message}").map_err(super::stdout_error)
}

/// `store copy FROM TO`: FROM a SQLite store, TO a PostgreSQL database sealed under the master key.
pub fn copy(master_key_file: Option<&Path>, args: StoreCopyArgs) -> Result<(), Error> {
    let location = |what: &str, text: &std::ffi::OsStr| -> Result<Location, Error> {
        let location = Location::from_os(text)?;
        if let Location::Postgres(url) = &location
            && url.password().is_some()
        {
            return Err(Error::Usage(format!(
                "{what} {url}: the URL holds a password, which other users can read on the command line; put it \
                 in ~/.pgpass (or the file PGPASSFILE names, mode 0600)"
            )));
        }
        Ok(location)
    };
    let from = match location("FROM", &args.from)? {
        Location::Sqlite(path) => path,
        Location::Postgres(url) => {
            return Err(Error::Usage(format!(
                "FROM {url} is a PostgreSQL database; `zavro store copy` copies a SQLite store (between databases, \
                 use pg_dump)"
            )));
        }
    };
    let to = match location("TO", &args.to)? {
        Location::Postgres(url) => url,
        Location::Sqlite(path) => {
            return Err(Error::Usage(format!(
                "TO {} is not a postgres:// URL; `zavro store copy` copies into PostgreSQL (a SQLite store is one \
                 file: copy it with `sqlite3 FROM \".backup TO\"` while no server writes to it)",
                path.display()
            )));
        }
    };
    // Checked before anything is opened: a PostgreSQL store keeps every secret sealed.
    let master =
        config::master_key(master_key_file)?.ok_or_else(|| StoreError::MasterKeyRequired {
            url: to.to_string(),
            fingerprint: None,
        })?;
    let mut source = Store::open_existing(&from)?;
    let mut target = PgStore::connect_or_create(&to)?;
    let now_us = timestamp::now_micros();
    let options = CopyOptions {
        source_name: from.display().to_string(),
        nonces_since: timestamp::now_seconds() - i64::from(args.max_skew),
        now_us,
    };
    let copied = copy_into_postgres(&mut source, &mut target, &master, &options)?;
    if let Some(note) = source.pending_not_shown() {
        eprintln!("zavro: warning: not copied: {note}");
    } else if copied.left_pending > 0 {
        eprintln!(
            "zavro: warning: not copied: {} request(s) a server acknowledged while the copy began (stop the \
             servers on the source before copying it)",
            copied.left_pending
        );
    }
    let head = copied.source_head.as_ref().map_or_else(
        || "the trail is empty".to_owned(),
        |(row, hash)| format!("the copy holds the source's head {row}:{hash}"),
    );
    writeln!(
        std::io::stdout().lock(),
        "copied {} to {to}: {}, sealed under master key {}; {head}, and row #{} records the copy",
        from.display(),
        copied.summary(),
        master.fingerprint(),
        copied.copy_row,
    )
    .map_err(super::stdout_error)
}

/// "1 API secret", "2 API secrets".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
