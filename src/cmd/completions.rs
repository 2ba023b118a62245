//! `zavro completions SHELL`: print a completion script generated from the clap definitions.

use crate::{cli::CompletionsArgs, error::Error};

/// Prints the completion script for the chosen shell.
pub fn run(args: CompletionsArgs) -> Result<(), Error> {
    let script = crate::docs::completion_script(args.shell);
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, &script).map_err(super::stdout_error)?;
    Ok(())
}
