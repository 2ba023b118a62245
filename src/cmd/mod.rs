//! The subcommands: thin front-ends that resolve their inputs, call the library, and print results.

mod audit;
mod bench;
mod check_config;
mod completions;
mod keys;
mod send;
mod serve;
mod server_key;
mod store;

pub use serve::log_format as serve_log_format;

use crate::{
    cli::{Cli, Command, KeysCommand, StoreCommand},
    config,
    error::Error,
    store::{Location, PgStore, Store, StoreError, postgres::Serving},
};

/// How long `serve` waits for a PostgreSQL connection when the URL sets no `connect_timeout`.
const SERVE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the parsed command line. Commands that need no store (send, completions) never open it; only `keys add`
/// creates it, so a mistyped `--db` or a deleted store is an error everywhere else, not a new, empty store.
/// Only the commands that read or write secrets read the master key of a sealed store.
pub fn run(cli: Cli) -> Result<(), Error> {
    let master_key_file = cli.master_key_file.as_deref();
    let store_location = || config::store_location(cli.db.as_deref(), cli.db_on_command_line);
    match cli.command {
        Command::Serve(args) => {
            // Before the store, and the secrets in it, are read.
            serve::keep_memory_out_of_swap();
            match store_location()? {
                Location::Postgres(url) => {
                    // A server must not hang on a database that does not answer, at start or when reconnecting.
                    // Its sessions are bounded (lock, statement and idle-in-transaction timeouts) and, unless
                    // allowed otherwise, commit durably whatever the role or database says, reconnections too.
                    let serving = if args.allow_async_commit {
                        Serving::AsyncAllowed
                    } else {
                        Serving::Durable
                    };
                    let url = url
                        .with_default_connect_timeout(SERVE_CONNECT_TIMEOUT)
                        .for_serving(serving);
                    let mut store = PgStore::connect(&url)?;
                    store.use_master_key(config::master_key(master_key_file)?)?;
                    serve::run(&mut store, args)
                }
                Location::Sqlite(path) => {
                    let mut store = Store::open_existing(&path)?;
                    give_master_key(&mut store, master_key_file)?;
                    serve::run(&mut store, args)
                }
            }
        }
        Command::Send(args) => send::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Keys(command) => {
            let add = matches!(command, KeysCommand::Add(_));
            match store_location()? {
                Location::Postgres(url) => {
                    let mut store = if add {
                        PgStore::connect_or_create(&url)?
                    } else {
                        PgStore::connect(&url)?
                    };
                    // Only adding a key seals a secret; without a key, `add_key` says one is needed.
                    if add {
                        store.use_master_key(config::master_key(master_key_file)?)?;
                    }
                    keys::run(&mut store, command)
                }
                Location::Sqlite(path) => {
                    if add {
                        refuse_a_key_for_a_new_store(&path, master_key_file)?;
                    }
                    with_sqlite(&path, add, |store| {
                        if add {
                            give_master_key(store, master_key_file)?;
                        }
                        keys::run(store, command)
                    })
                }
            }
        }
        Command::Audit(command) => match store_location()? {
            Location::Sqlite(path) => with_sqlite(&path, false, |store| audit::run(store, command)),
            Location::Postgres(url) => audit::run(&mut PgStore::connect(&url)?, command),
        },
        Command::ServerKey(args) => match store_location()? {
            Location::Postgres(url) => {
                let mut store = PgStore::connect(&url)?;
                // Secrets on PostgreSQL are always sealed: a key configured is checked and given, and asked
                // for only by what makes a key pair.
                store.use_master_key(config::master_key(master_key_file)?)?;
                server_key::run(&mut store, args)
            }
            Location::Sqlite(path) => with_sqlite(&path, false, |store| {
                // Showing and rotating read no secret, so the key is not required; but a key configured is
                // always given, and so checked: a store whose sealing row someone deleted is refused, never
                // given new clear-text server secrets.
                if let Some(master) = config::master_key(master_key_file)? {
                    store.use_master_key(Some(master))?;
                }
                server_key::run(store, args)
            }),
        },
        Command::Store(command) => match (command, store_location()?) {
            // Copy names its own stores; `--db` plays no part in it.
            (StoreCommand::Copy(args), _) => store::copy(master_key_file, args),
            // Only `store seal` makes a missing store, sealed before anything is in it.
            (StoreCommand::Seal(args), Location::Sqlite(path)) if !path.exists() => {
                store::seal_new(&path, master_key_file, &args)
            }
            (StoreCommand::Status, Location::Postgres(url)) => store::status_postgres(&url),
            (StoreCommand::Seal(_), Location::Postgres(url)) => store::seal_postgres(&url),
            (StoreCommand::Reseal(args), Location::Postgres(url)) => {
                store::reseal_postgres(&url, master_key_file, &args)
            }
            (command, Location::Sqlite(path)) => with_sqlite(&path, false, |store| {
                store::run(store, master_key_file, command)
            }),
        },
        Command::Completions(args) => completions::run(args),
    }
}

/// Runs `command` on the SQLite store at `path` (created with `create`), for a command other than `serve`; then
/// says on stderr if acknowledged requests still pending could not be settled for its reads, which lack them.
fn with_sqlite<T>(
    path: &std::path::Path,
    create: bool,
    command: impl FnOnce(&mut Store) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut store = if create {
        Store::open(path)?
    } else {
        Store::open_existing(path)?
    };
    let result = command(&mut store);
    if let Some(note) = store.pending_not_shown() {
        eprintln!("zavro: warning: {note}");
    }
    result
}

/// `keys add` with a master key configured, where no SQLite store is yet: refused before the file is made (a new
/// store is not sealed, so the key would protect nothing), so no empty store is left behind. The key file is read
/// first, so a broken one is reported as such. `zavro store seal` makes a store sealed from the start.
fn refuse_a_key_for_a_new_store(
    path: &std::path::Path,
    flag: Option<&std::path::Path>,
) -> Result<(), Error> {
    if !path.exists()
        && let Some(master) = config::master_key(flag)?
    {
        return Err(StoreError::NotSealed {
            path: path.display().to_string(),
            key_file: master.describe_source(),
        }
        .into());
    }
    Ok(())
}

/// Gives the store the master key configured (flag, variable or systemd credential), or none: refused unless
/// it is the one a sealed store needs, or none for an unsealed store.
fn give_master_key(store: &mut Store, flag: Option<&std::path::Path>) -> Result<(), Error> {
    Ok(store.use_master_key(config::master_key(flag)?)?)
}

/// Writes to stdout, turning failures into an error that names stdout (a closed pipe is handled by `main`).
fn stdout_error(e: std::io::Error) -> Error {
    Error::io("cannot write to stdout", e)
}
