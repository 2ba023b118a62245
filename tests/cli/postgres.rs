//! `--db postgres://…`: every command connects to the database and migrates it (so a wrong URL, password or
//! database is one clear error); `keys`, `server-key` and `store` run on it with secrets always sealed.

use std::{fs, os::unix::fs::PermissionsExt};

use predicates::prelude::*;

use crate::{
    common::{TestEnv, bare_zavro, stderr_of, stdout_of},
    test_cluster,
};

#[test]
fn keys_add_creates_the_schema_and_the_store_commands_run_on_it() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let url = env.db.to_str().unwrap().to_owned();
    let db = env.database().to_owned();
    // A database without a zavro schema is no store: exit 7, as for a missing SQLite file.
    env.zavro()
        .args(["keys", "list"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains(format!(
            "no zavro store in database postgres://postgres@/{db}?host="
        )));
    assert_eq!(
        env.psql("SELECT to_regclass('zavro_schema') IS NULL;")
            .trim(),
        "t"
    );
    env.add_key();
    assert_eq!(env.psql("SELECT version FROM zavro_schema;").trim(), "2");
    assert_eq!(env.keys().len(), 1);
    // The store commands run on it too: status names the key, seal says there is nothing to seal.
    bare_zavro()
        .env("ZAVRO_DB", &url)
        .args(["store", "status"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("sealed under master key "));
    bare_zavro()
        .env("ZAVRO_DB", &url)
        .args(["store", "seal"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is on PostgreSQL, where every secret is always sealed",
        ));
}

#[test]
fn secrets_on_postgres_need_the_master_key_and_only_what_makes_or_reads_one_asks_for_it() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    let without_key = || {
        let mut cmd = bare_zavro();
        cmd.arg("--db").arg(&env.db);
        cmd
    };
    // A fresh database: nothing sealed yet, so the message says how to make a key. One line, exit 9.
    let out = without_key().args(["keys", "add"]).assert().code(9);
    let message = stderr_of(&out);
    assert!(
        message.contains("keeps its secrets sealed under a master key")
            && message.contains("--master-key-file")
            && message.contains("openssl rand -hex 32"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        stdout_of(&out).is_empty(),
        "no key was shown: {}",
        stdout_of(&out)
    );

    let (key, secret) = env.add_key();
    let server_key = stdout_of(&env.zavro().arg("server-key").assert().success());
    let fingerprint = zavro::sealed::MasterKey::load(env.master_key.as_ref().unwrap())
        .unwrap()
        .fingerprint();
    // The secrets are in the database sealed only.
    let stored = env.psql("SELECT encode(secret_sealed, 'hex') FROM keys;");
    assert!(!stored.contains(&secret) && !stored.contains(&hex::encode(&secret)));
    assert_eq!(
        env.psql("SELECT fingerprint FROM sealing;").trim(),
        fingerprint
    );

    // Listing, revoking and showing the server key read no secret.
    let listed = stdout_of(&without_key().args(["keys", "list"]).assert().success());
    assert!(listed.contains(&key), "{listed}");
    assert_eq!(
        stdout_of(&without_key().arg("server-key").assert().success()),
        server_key
    );
    // Adding a key or making a key pair does, and says which key.
    for args in [
        &["keys", "add"][..],
        &["server-key", "rotate"],
        &["server-key", "rotate", "--stage"],
    ] {
        let out = without_key().args(args).assert().code(9);
        assert!(
            stderr_of(&out).contains(&fingerprint),
            "{}",
            stderr_of(&out)
        );
    }
    // Another key is refused as such, whatever the command that was given it.
    let other = env.path("other.key");
    zavro::sealed::MasterKey::generate_to(&other).unwrap();
    for args in [
        &["keys", "add"][..],
        &["server-key"],
        &["server-key", "rotate"],
    ] {
        let out = without_key()
            .env("ZAVRO_MASTER_KEY_FILE", &other)
            .args(args)
            .assert()
            .code(9);
        assert!(
            stderr_of(&out).contains(&format!(
                "this store is sealed under master key {fingerprint}"
            )),
            "{}",
            stderr_of(&out)
        );
    }
    without_key()
        .args(["keys", "revoke", &key])
        .assert()
        .success();
    assert_eq!(env.keys().len(), 1, "nothing else was added");
    assert_eq!(
        stdout_of(&env.zavro().arg("server-key").assert().success()),
        server_key,
        "nothing was rotated"
    );
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
    // The same URL in ZAVRO_DB does not make the command line's copy any less visible, wherever --db is given.
    for args in [
        &["--db", url.as_str(), "keys", "list"][..],
        &["keys", "list", "--db", url.as_str()],
    ] {
        bare_zavro()
            .env("ZAVRO_DB", &url)
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "the URL holds a password, which other users can read on the command line",
            ))
            .stderr(predicate::str::contains("hunter2").not());
    }
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
    // With it: connected, migrated, and the key added.
    let master_key = dir.path().join("master.key");
    zavro::sealed::MasterKey::generate_to(&master_key).unwrap();
    bare_zavro()
        .env("PGPASSFILE", &passfile)
        .env("ZAVRO_MASTER_KEY_FILE", &master_key)
        .args(["--db", &url, "keys", "add"])
        .assert()
        .code(0)
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

#[test]
fn tests_never_read_the_runners_own_password_file() {
    // A ~/.pgpass that zavro would warn about if it read it.
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    fs::write(&pgpass, "*:*:*:*:runner-pw\n").unwrap();
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("postgres://postgres@/zavro?host={}", home.path().display());
    bare_zavro()
        .env("HOME", home.path())
        .args(["--db", &url, "keys", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot connect to store"))
        .stderr(predicate::str::contains("password file").not());
    // The control: named by PGPASSFILE, the same file is read (and ignored with libpq's warning).
    bare_zavro()
        .env("PGPASSFILE", &pgpass)
        .args(["--db", &url, "keys", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has group or world access"));
}

#[test]
fn a_tcp_connection_that_does_not_verify_the_server_is_warned_about_once_and_pgsslmode_is_read() {
    // A port where nothing listens: the warning comes before the connection fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/zavro");
    let stderr_of = |assert: assert_cmd::assert::Assert| {
        String::from_utf8_lossy(&assert.code(1).get_output().stderr).into_owned()
    };
    let stderr = stderr_of(
        bare_zavro()
            .args(["--db", &format!("{url}?sslmode=require"), "keys", "list"])
            .assert(),
    );
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|line| line.starts_with("zavro: warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with(
            "zavro: warning: sslmode=require: the connection to 127.0.0.1 is encrypted, but the server's \
             certificate is not checked"
        ),
        "{stderr}"
    );
    // PGSSLMODE is read when the URL sets no sslmode, as libpq reads it.
    let stderr = stderr_of(
        bare_zavro()
            .env("PGSSLMODE", "disable")
            .args(["--db", &url, "keys", "list"])
            .assert(),
    );
    assert!(stderr.contains("warning: sslmode=disable"), "{stderr}");
    let stderr = stderr_of(
        bare_zavro()
            .env("PGSSLMODE", "verify-ca")
            .args(["--db", &url, "keys", "list"])
            .assert(),
    );
    assert!(
        stderr.contains("verify-ca needs sslrootcert=FILE"),
        "{stderr}"
    );
    // Verified modes, and a Unix socket, are not warned about.
    let dir = tempfile::tempdir().unwrap();
    for db in [
        format!("{url}?sslmode=verify-full"),
        format!(
            "postgres://postgres@/zavro?host={}&sslmode=disable",
            dir.path().display()
        ),
    ] {
        let stderr = stderr_of(bare_zavro().args(["--db", &db, "keys", "list"]).assert());
        assert!(!stderr.contains("warning"), "{db}: {stderr}");
    }
}
