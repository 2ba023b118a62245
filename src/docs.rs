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

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;

    /// Compares generated files with the committed ones; `UPDATE_GENERATED=1 cargo test` rewrites them.
    fn check_or_update(dir: &str, files: Vec<(String, Vec<u8>)>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let update = std::env::var_os("UPDATE_GENERATED").is_some();
        if update {
            fs::create_dir_all(&dir).unwrap();
        }
        let mut stale = Vec::new();
        for (name, content) in &files {
            let path = dir.join(name);
            if update {
                fs::write(&path, content).unwrap();
            } else if fs::read(&path).ok().as_ref() != Some(content) {
                stale.push(path.display().to_string());
            }
        }
        let expected: Vec<&String> = files.iter().map(|(name, _)| name).collect();
        for entry in fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !expected.contains(&&name) {
                stale.push(format!(
                    "{} (no longer generated)",
                    dir.join(name).display()
                ));
            }
        }
        assert!(
            stale.is_empty(),
            "generated files differ from the binary's output: {stale:?}; run `UPDATE_GENERATED=1 cargo test` and commit"
        );
    }

    #[test]
    fn committed_completion_scripts_are_current() {
        let files = SHELLS
            .iter()
            .map(|shell| (completion_file_name(*shell), completion_script(*shell)))
            .collect();
        check_or_update("completions", files);
    }

    #[test]
    fn committed_man_pages_are_current() {
        check_or_update("man", man_pages());
    }

    #[test]
    fn every_subcommand_has_a_man_page() {
        let names: Vec<String> = man_pages().into_iter().map(|(name, _)| name).collect();
        for page in [
            "zavro.1",
            "zavro-serve.1",
            "zavro-send.1",
            "zavro-keys-add.1",
            "zavro-audit-query.1",
            "zavro-audit-stats.1",
            "zavro-audit-export.1",
            "zavro-audit-prune.1",
            "zavro-audit-schemas.1",
            "zavro-server-key.1",
            "zavro-server-key-rotate.1",
        ] {
            assert!(
                names.iter().any(|n| n == page),
                "{page} missing from {names:?}"
            );
        }
    }
}
