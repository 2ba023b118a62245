//! The subcommands: thin front-ends that resolve their inputs, call the library, and print results.

mod audit;
mod bench;
mod completions;
mod keys;
mod send;
mod serve;
mod server_key;

use crate::{
    cli::{Cli, Command, KeysCommand},
    config,
    error::Error,
    store::Store,
};

/// Runs the parsed command line. Commands that need no store (send, completions) never open it; only `keys add`
/// creates it, so a mistyped `--db` or a deleted store is an error everywhere else, not a new, empty store.
pub fn run(cli: Cli) -> Result<(), Error> {
    let open_store = |create: bool| -> Result<Store, Error> {
        let path = config::store_path(cli.db.as_deref())?;
        let store = if create {
            Store::open(&path)
        } else {
            Store::open_existing(&path)
        };
        Ok(store?)
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

/// Writes to stdout, turning failures into an error that names stdout (a closed pipe is handled by `main`).
fn stdout_error(e: std::io::Error) -> Error {
    Error::io("cannot write to stdout", e)
}
