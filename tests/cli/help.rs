//! Built-in documentation: `--help` of every command, `--version`, and shell completions.

use crate::common::{bare_zavro, stdout_of};

const COMMANDS: [&[&str]; 19] = [
    &[],
    &["serve"],
    &["send"],
    &["keys"],
    &["keys", "add"],
    &["keys", "list"],
    &["keys", "revoke"],
    &["audit"],
    &["audit", "query"],
    &["audit", "verify"],
    &["audit", "head"],
    &["audit", "stats"],
    &["audit", "export"],
    &["audit", "prune"],
    &["audit", "schemas"],
    &["bench"],
    &["server-key"],
    &["server-key", "rotate"],
    &["completions"],
];

fn help_of(command: &[&str]) -> String {
    let out = bare_zavro().args(command).arg("--help").assert().code(0);
    let text = stdout_of(&out);
    assert!(
        text.contains("Usage: zavro"),
        "`zavro {} --help`: {text}",
        command.join(" ")
    );
    text
}

#[test]
fn help_of_every_command_exits_0_with_a_usage_line() {
    for command in COMMANDS {
        help_of(command);
    }
}

#[test]
fn help_of_every_command_shows_an_example() {
    let missing: Vec<String> = COMMANDS
        .iter()
        .filter(|command| !help_of(command).contains("Example"))
        .map(|command| format!("zavro {} --help", command.join(" ")))
        .collect();
    assert!(missing.is_empty(), "no example in: {missing:?}");
}

#[test]
fn root_help_documents_the_exit_codes() {
    let text = help_of(&[]);
    for code in [
        "2 usage error",
        "3 bad input",
        "4 rejected by the server",
        "5 server unreachable",
        "8 server not authenticated",
    ] {
        assert!(text.contains(code), "{code:?} missing from: {text}");
    }
}

#[test]
fn help_of_audit_lists_and_shows_an_example_of_every_audit_subcommand() {
    let subcommands = [
        "query", "verify", "head", "stats", "export", "prune", "schemas",
    ];
    let help_subcommand = stdout_of(&bare_zavro().args(["help", "audit"]).assert().code(0));
    for help in [help_of(&["audit"]), help_subcommand] {
        let (commands, examples) = help.split_once("Examples:").expect("an Examples section");
        for sub in subcommands {
            assert!(
                commands
                    .lines()
                    .any(|line| line.starts_with(&format!("  {sub} "))),
                "{sub} not listed: {help}"
            );
            assert!(
                examples.contains(&format!("zavro audit {sub}")),
                "no example of {sub}: {help}"
            );
        }
    }
}

#[test]
fn version_names_the_program() {
    let out = bare_zavro().arg("--version").assert().code(0);
    assert!(stdout_of(&out).starts_with("zavro "), "{}", stdout_of(&out));
}

#[test]
fn completions_for_every_shell_mention_zavro_and_its_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = bare_zavro().args(["completions", shell]).assert().code(0);
        let script = stdout_of(&out);
        assert!(script.contains("zavro"), "{shell}: {script}");
        assert!(
            script.contains("audit") && script.contains("revoke"),
            "{shell}"
        );
    }
    bare_zavro().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    bare_zavro().arg("frobnicate").assert().code(2);
    bare_zavro().assert().code(2);
}

#[test]
fn dynamic_completion_offers_the_keys_that_can_still_be_revoked() {
    let env = crate::common::TestEnv::new();
    let (kept, _) = env.add_key();
    let (revoked, _) = env.add_key();
    env.zavro()
        .args(["keys", "revoke", &revoked])
        .assert()
        .code(0);
    let out = bare_zavro()
        .env("ZAVRO_COMPLETE", "fish")
        .env("ZAVRO_DB", &env.db)
        .args(["--", "zavro", "keys", "revoke", "ZK"])
        .assert()
        .code(0);
    let offered: Vec<String> = stdout_of(&out)
        .lines()
        .map(|line| line.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(offered, [kept]);
    let script = bare_zavro().env("ZAVRO_COMPLETE", "bash").assert().code(0);
    assert!(
        stdout_of(&script).contains("ZAVRO_COMPLETE="),
        "{}",
        stdout_of(&script)
    );
}

#[test]
fn a_complete_variable_set_for_something_else_does_not_turn_zavro_into_a_completer() {
    let env = crate::common::TestEnv::new();
    env.create_store();
    let out = env
        .zavro()
        .env("COMPLETE", "bash")
        .args(["keys", "list", "--json"])
        .assert()
        .code(0);
    assert_eq!(stdout_of(&out), "", "no keys, and no completion script");
}
