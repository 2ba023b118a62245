//! The `zavro` executable: parse the command line, run it, and print any error once with its exit code.

use std::process::ExitCode;

use clap::Parser;
use zavro::{cli::Cli, cmd, error::exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        // `zavro audit query | head`: the reader went away, which is not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            eprintln!("zavro: {e}");
            e.exit_code()
        }
    }
}
