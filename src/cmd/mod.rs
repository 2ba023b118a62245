//! The subcommands: thin front-ends that resolve their inputs, call the library, and print results.

mod audit;
mod bench;
mod completions;
mod keys;
mod send;
mod serve;
mod server_key;
mod store;

use crate::{
    cli::{AuditCommand, Cli, Command, KeysCommand, ServerKeyCommand, StoreCommand},
    config,
    error::Error,
    store::{Location, PgStore, PgUrl, Store, StoreError},
};

/// How long `serve` waits for a PostgreSQL connection when the URL sets no `connect_timeout`.
const SERVE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the parsed command line. Commands that need no store (send, completions) never open it; only `keys add`
/// creates it, so a mistyped `--db` or a deleted store is an error everywhere else, not a new, empty store.
/// Only the commands that read or write secrets read the master key of a sealed store.
pub fn run(cli: Cli) -> Result<(), Error> {
    let name = command_name(&cli.command);
    let master_key_file = cli.master_key_file.as_deref();
    let store_location = || config::store_location(cli.db.as_deref(), cli.db_on_command_line);
    let open_store = |create: bool| -> Result<Store, Error> {
        match store_location()? {
            Location::Sqlite(path) if create => Ok(Store::open(&path)?),
            Location::Sqlite(path) => Ok(Store::open_existing(&path)?),
            Location::Postgres(url) => Err(not_on_postgres_yet(&url, create, &name)),
        }
    };
    match cli.command {
        Command::Serve(args) => match store_location()? {
            Location::Postgres(url) => {
                // A server must not hang on a database that does not answer, at start or when reconnecting.
                let url = url.with_default_connect_timeout(SERVE_CONNECT_TIMEOUT);
                let mut store = PgStore::connect(&url)?;
                store.use_master_key(config::master_key(master_key_file)?)?;
                serve::run(&mut store, args)
            }
            Location::Sqlite(_) => {
                let mut store = open_store(false)?;
                give_master_key(&mut store, master_key_file)?;
                serve::run(&mut store, args)
            }
        },
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
                location @ Location::Sqlite(_) => {
                    if add {
                        refuse_a_key_for_a_new_store(&location, master_key_file)?;
                    }
                    let mut store = open_store(add)?;
                    if add {
                        give_master_key(&mut store, master_key_file)?;
                    }
                    keys::run(&mut store, command)
                }
            }
        }
        Command::Audit(command) => audit::run(&mut open_store(false)?, command),
        Command::ServerKey(args) => match store_location()? {
            Location::Postgres(url) => {
                let mut store = PgStore::connect(&url)?;
                // Secrets on PostgreSQL are always sealed: a key configured is checked and given, and asked
                // for only by what makes a key pair.
                store.use_master_key(config::master_key(master_key_file)?)?;
                server_key::run(&mut store, args)
            }
            Location::Sqlite(_) => {
                let mut store = open_store(false)?;
                // Showing and rotating read no secret, so the key is not required; but a key configured is
                // always given, and so checked: a store whose sealing row someone deleted is refused, never
                // given new clear-text server secrets.
                if let Some(master) = config::master_key(master_key_file)? {
                    store.use_master_key(Some(master))?;
                }
                server_key::run(&mut store, args)
            }
        },
        Command::Store(command) => match (command, store_location()?) {
            // Only `store seal` makes a missing store, sealed before anything is in it.
            (StoreCommand::Seal(args), Location::Sqlite(path)) if !path.exists() => {
                store::seal_new(&path, master_key_file, &args)
            }
            (command, _) => store::run(&mut open_store(false)?, master_key_file, command),
        },
        Command::Completions(args) => completions::run(args),
    }
}

/// Connects to the PostgreSQL store and migrates it (creating it for `keys add`), so a wrong URL, password or
/// database is reported as such; then refuses, since the command does not yet run on PostgreSQL.
fn not_on_postgres_yet(url: &PgUrl, create: bool, command: &str) -> Error {
    let connected = if create {
        PgStore::connect_or_create(url)
    } else {
        PgStore::connect(url)
    };
    match connected {
        Err(e) => e.into(),
        Ok(_) => Error::Usage(format!(
            "`zavro {command}` is not available on PostgreSQL yet (store {url}); use a SQLite store (--db PATH)"
        )),
    }
}

/// The subcommand as typed, for messages: `keys add`, `audit query`, `server-key rotate`.
fn command_name(command: &Command) -> String {
    match command {
        Command::Serve(_) => "serve",
        Command::Send(_) => "send",
        Command::Bench(_) => "bench",
        Command::Completions(_) => "completions",
        Command::Keys(KeysCommand::Add(_)) => "keys add",
        Command::Keys(KeysCommand::List(_)) => "keys list",
        Command::Keys(KeysCommand::Revoke(_)) => "keys revoke",
        Command::Audit(AuditCommand::Query(_)) => "audit query",
        Command::Audit(AuditCommand::Verify(_)) => "audit verify",
        Command::Audit(AuditCommand::Head) => "audit head",
        Command::Audit(AuditCommand::Stats(_)) => "audit stats",
        Command::Audit(AuditCommand::Export(_)) => "audit export",
        Command::Audit(AuditCommand::Prune(_)) => "audit prune",
        Command::Audit(AuditCommand::Schemas(_)) => "audit schemas",
        Command::ServerKey(args) => match &args.command {
            None => "server-key",
            Some(ServerKeyCommand::Rotate(_)) => "server-key rotate",
        },
        Command::Store(StoreCommand::Status) => "store status",
        Command::Store(StoreCommand::Seal(_)) => "store seal",
        Command::Store(StoreCommand::Reseal(_)) => "store reseal",
    }
    .to_owned()
}

/// `keys add` with a master key configured, where no SQLite store is yet: refused before the file is made (a new
/// store is not sealed, so the key would protect nothing), so no empty store is left behind. The key file is read
/// first, so a broken one is reported as such. `zavro store seal` makes a store sealed from the start.
fn refuse_a_key_for_a_new_store(
    location: &Location,
    flag: Option<&std::path::Path>,
) -> Result<(), Error> {
    if let Location::Sqlite(path) = location
        && !path.exists()
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
