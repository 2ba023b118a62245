//! The `zavro` executable: parse the command line, run it, and print any error once with its exit code.

use std::process::ExitCode;

use clap::CommandFactory;
use zavro::{
    cli::{Cli, Command},
    cmd,
    error::exit,
    hardening,
    server::{Event, Fields, Log, LogFormat},
};

/// mimalloc rather than glibc's allocator: `send` parses records on one thread and encodes and frees them on
/// another, and glibc serialised those frees on the reading thread's arena lock (eight times the context
/// switches, 30 % fewer records per second); mimalloc frees across threads without a shared lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything is read: the store's pages hold every key's secret (even the completion callback below
    // reads them), and `send`, `bench` and `keys add` hold one, so no zavro process may leave a core file.
    if let Err(e) = hardening::forbid_core_dumps() {
        eprintln!("zavro: {e}");
        return ExitCode::from(exit::FAILURE);
    }
    // `ZAVRO_COMPLETE=bash zavro` prints a script that calls back here while the user types, so completions can
    // name things only known at run time (key ids for `keys revoke`); without ZAVRO_COMPLETE this returns at once.
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(zavro::complete::ENV_VAR)
        .complete();
    let cli = Cli::parse_args();
    // `serve --log-format json` keeps its log all JSON, its last words included.
    let log_format = match &cli.command {
        Command::Serve(args) => cmd::serve_log_format(args),
        _ => LogFormat::Text,
    };
    match cmd::run(cli) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        // `zavro audit query | head`: the reader went away, which is not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::from(exit::SUCCESS),
        Err(e) if log_format == LogFormat::Json => {
            let message = e.to_string();
            let code = e.exit_code_number();
            let fields = Fields {
                exit_code: Some(code),
                ..Fields::message(&message)
            };
            Log::stderr(log_format).json_only(Event::Fatal, fields);
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("zavro: {e}");
            e.exit_code()
        }
    }
}
