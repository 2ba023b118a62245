//! `zavro store status|seal|reseal`: seal the store's secrets under a master key kept outside it, and move them
//! to a new key.

use std::{io::Write, path::Path};

use crate::{
    cli::{StoreCommand, StoreResealArgs, StoreSealArgs},
    config::{self, MASTER_KEY_FILE_ENV},
    error::Error,
    sealed::MasterKey,
    store::Store,
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
    let path = &args.new_master_key_file;
    let new = if args.create_key {
        MasterKey::generate_to(path)?
    } else {
        MasterKey::load(path)?
    };
    let resealed = store.reseal_secrets(new, timestamp::now_micros())?;
    eprintln!(
        "servers still on the old key refuse requests until restarted with {}; backups made before stay \
         sealed under the old key",
        path.display()
    );
    Ok(format!(
        "resealed {} and {}: master key {} -> {} ({})",
        count(resealed.api_keys, "API secret"),
        count(resealed.server_keys, "server key"),
        resealed.old_fingerprint,
        resealed.new_fingerprint,
        path.display()
    ))
}

/// "1 API secret", "2 API secrets".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
