//! Generated documentation: shell completion scripts and man pages, both built from the clap definitions.
//!
//! `completions/` and `man/` in the repository hold their output; a test fails when they differ.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The shells `completions/` holds scripts for.
pub const SHELLS: [Shell; 5] = [
    Shell::Bash,
    Shell::Zsh,
    Shell::Fish,
    Shell::Elvish,
    Shell::PowerShell,
];

/// The completion script for `shell`.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "zavro", &mut out);
    out
}

/// The file name a completion script is committed under, following each shell's convention.
pub fn completion_file_name(shell: Shell) -> String {
    match shell {
        Shell::Bash => "zavro.bash".into(),
        Shell::Zsh => "_zavro".into(),
        Shell::Fish => "zavro.fish".into(),
        Shell::Elvish => "zavro.elv".into(),
        Shell::PowerShell => "_zavro.ps1".into(),
        other => format!("zavro.{other}"),
    }
}

/// Every man page: (file name, roff text), one for `zavro` and one for each subcommand.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    collect_pages(&root, "", &mut pages);
    pages
}

fn collect_pages(command: &clap::Command, prefix: &str, pages: &mut Vec<(String, Vec<u8>)>) {
    let name = if prefix.is_empty() {
        command.get_name().to_owned()
    } else {
        format!("{prefix}-{}", command.get_name())
    };
    let page = clap_mangen::Man::new(command.clone().display_name(name.clone()));
    let mut roff = Vec::new();
    page.render(&mut roff)
        .expect("rendering into memory cannot fail");
    pages.push((page.get_filename(), roff));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_pages(sub, &name, pages);
    }
}
