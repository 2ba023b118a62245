//! The subcommands: thin front-ends that resolve their inputs, call the library, and print results.

mod audit;
mod bench;
mod completions;
mod keys;
mod send;
mod serve;

use crate::{
    cli::{Cli, Command},
    config,
    error::Error,
    store::Store,
};

/// Runs the parsed command line. Commands that need no store (send, completions) never open it.
pub fn run(cli: Cli) -> Result<(), Error> {
    let open_store = || -> Result<Store, Error> {
        let path = config::store_path(cli.db.as_deref())?;
        Ok(Store::open(&path)?)
    };
    match cli.command {
        Command::Serve(args) => serve::run(&mut open_store()?, args),
        Command::Send(args) => send::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Keys(command) => keys::run(&mut open_store()?, command),
        Command::Audit(command) => audit::run(&mut open_store()?, command),
        Command::Completions(args) => completions::run(args),
    }
}

/// Writes to stdout, turning failures into an error that names stdout (a closed pipe is handled by `main`).
fn stdout_error(e: std::io::Error) -> Error {
    Error::io("cannot write to stdout", e)
}
