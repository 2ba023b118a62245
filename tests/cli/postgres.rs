//! `--db postgres://…`: every command connects to the database and migrates it (so a wrong URL, password or
//! database is one clear error), then, until it runs on PostgreSQL, says so with exit 2.

use std::{fs, os::unix::fs::PermissionsExt};

use predicates::prelude::*;

use crate::{common::bare_zavro, test_cluster};

#[test]
fn keys_add_creates_the_schema_and_commands_say_they_are_not_available_yet() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let url = cluster.fresh_database();
    let db = test_cluster::database_name(&url);
    // A database without a zavro schema is no store: exit 7, as for a missing SQLite file.
    bare_zavro()
        .args(["--db", &url, "keys", "list"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains(format!(
            "no zavro store in database postgres://postgres@/{db}?host="
        )));
    assert_eq!(
        cluster
            .psql(db, "SELECT to_regclass('zavro_schema') IS NULL;")
            .trim(),
        "t"
    );
    bare_zavro()
        .args(["--db", &url, "keys", "add"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`zavro keys add` is not available on PostgreSQL yet (store postgres://postgres@/",
        ));
    assert_eq!(
        cluster.psql(db, "SELECT version FROM zavro_schema;").trim(),
        "1"
    );
    for command in [&["keys", "list"][..], &["server-key"]] {
        bare_zavro()
            .env("ZAVRO_DB", &url)
            .args(command)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "`zavro {}` is not available on PostgreSQL yet",
                command.join(" ")
            )));
    }
}

#[test]
fn a_database_that_cannot_be_reached_is_one_line_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@/zavro?host={}", dir.path().display());
    bare_zavro()
        .args(["--db", &url, "keys", "add"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "zavro: cannot connect to store {url}: error connecting to server:"
        )))
        .stderr(predicate::function(|text: &str| text.lines().count() == 1));
}

#[test]
fn a_bad_url_is_a_usage_error_that_does_not_echo_it() {
    bare_zavro()
        .env("ZAVRO_DB", "postgres://u:hunter2@db:99999/zavro")
        .args(["keys", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid PostgreSQL URL in --db or ZAVRO_DB: the port must be a number",
        ))
        .stderr(predicate::str::contains("hunter2").not());
}

#[test]
fn a_password_in_db_on_the_command_line_is_refused_but_zavro_db_may_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://postgres:hunter2@/zavro?host={}",
        dir.path().display()
    );
    bare_zavro()
        .args(["--db", &url, "keys", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the URL holds a password, which other users can read on the command line",
        ))
        .stderr(predicate::str::contains("hunter2").not());
    // From the environment it is used (and nothing listens there, so the connection fails).
    bare_zavro()
        .env("ZAVRO_DB", &url)
        .args(["keys", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot connect to store postgres://postgres@/zavro",
        ))
        .stderr(predicate::str::contains("hunter2").not());
}

#[test]
fn the_password_file_named_by_pgpassfile_is_used() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let role = "zavro_pw_cli";
    cluster.create_password_role(role, "cli-pass-77");
    let url = cluster.fresh_database_owned_by(role);
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    fs::write(&passfile, format!("*:*:*:{role}:cli-pass-77\n")).unwrap();
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
    // Without the file: the server wants a password, and the message says where it goes.
    bare_zavro()
        .args(["--db", &url, "keys", "add"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "put it in the password file (~/.pgpass",
        ));
    // With it: connected and migrated, then refused as not available yet.
    bare_zavro()
        .env("PGPASSFILE", &passfile)
        .args(["--db", &url, "keys", "add"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is not available on PostgreSQL yet",
        ))
        .stderr(predicate::str::contains("cli-pass-77").not());
    // A file others may read is ignored with libpq's warning.
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o640)).unwrap();
    bare_zavro()
        .env("PGPASSFILE", &passfile)
        .args(["--db", &url, "keys", "add"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("zavro: warning: password file"))
        .stderr(predicate::str::contains("has group or world access"));
}
