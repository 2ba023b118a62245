//! The `zavro` executable: parse the command line, run it, and print any error once with its exit code.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use zavro::{cli::Cli, cmd, error::exit};

fn main() -> ExitCode {
    // `ZAVRO_COMPLETE=bash zavro` prints a script that calls back here while the user types, so completions can
    // name things only known at run time (key ids for `keys revoke`); without ZAVRO_COMPLETE this returns at once.
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(zavro::complete::ENV_VAR)
        .complete();
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
