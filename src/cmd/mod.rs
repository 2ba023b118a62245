//! The subcommands: thin front-ends that resolve their inputs, call the library, and print results.

mod audit;
mod bench;
mod completions;
mod keys;
mod send;
mod serve;
mod server_key;

use crate::{
    cli::{AuditCommand, Cli, Command, KeysCommand, ServerKeyCommand},
    config,
    error::Error,
    store::{Location, PgStore, PgUrl, Store},
};

/// Runs the parsed command line. Commands that need no store (send, completions) never open it; only `keys add`
/// creates it, so a mistyped `--db` or a deleted store is an error everywhere else, not a new, empty store.
pub fn run(cli: Cli) -> Result<(), Error> {
    let name = command_name(&cli.command);
    let open_store = |create: bool| -> Result<Store, Error> {
        match config::store_location(cli.db.as_deref())? {
            Location::Sqlite(path) if create => Ok(Store::open(&path)?),
            Location::Sqlite(path) => Ok(Store::open_existing(&path)?),
            Location::Postgres(url) => Err(not_on_postgres_yet(&url, create, &name)),
        }
    };
    match cli.command {
        Command::Serve(args) => serve::run(&mut open_store(false)?, args),
        Command::Send(args) => send::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Keys(command) => {
            let create = matches!(command, KeysCommand::Add(_));
            keys::run(&mut open_store(create)?, command)
        }
        Command::Audit(command) => audit::run(&mut open_store(false)?, command),
        Command::ServerKey(args) => server_key::run(&mut open_store(false)?, args),
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
    }
    .to_owned()
}

/// Writes to stdout, turning failures into an error that names stdout (a closed pipe is handled by `main`).
fn stdout_error(e: std::io::Error) -> Error {
    Error::io("cannot write to stdout", e)
}
