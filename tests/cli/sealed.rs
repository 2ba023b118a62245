//! Sealed stores (issue 16): secrets encrypted at rest under a master key kept outside the store. A real
//! `zavro serve` over CURVE with the key, refusals without it or with a wrong one, rotation, and a sealed secret
//! moved onto another key's row.

use std::{os::unix::fs::PermissionsExt, path::Path};

use serde_json::json;

use crate::common::{Server, TestEnv, compact, stderr_of, stdout_of};

/// The exit code of a missing, wrong or unusable master key (README.md, "Exit codes").
const MASTER_KEY_EXIT: i32 = 9;

/// A store with one key and the server's key pair, sealed under a new master key file made by `store seal
/// --create-key`; returns the key, its secret and the key file.
fn sealed_store(env: &TestEnv) -> (String, String, std::path::PathBuf) {
    let (key, secret) = env.add_key();
    env.zavro().arg("server-key").assert().success();
    let master = env.path("master.key");
    let sealed = env
        .zavro()
        .arg("--master-key-file")
        .arg(&master)
        .args(["store", "seal", "--create-key"])
        .assert()
        .success();
    assert!(
        stdout_of(&sealed).starts_with("sealed 1 API secret and 1 server key under master key "),
        "{}",
        stdout_of(&sealed)
    );
    let mode = std::fs::metadata(&master).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    (key, secret, master)
}

/// A key file holding another random key, as an operator's mistake would.
fn another_key_file(env: &TestEnv, name: &str) -> std::path::PathBuf {
    let path = env.path(name);
    zavro::sealed::MasterKey::generate_to(&path).unwrap();
    path
}

/// The bytes of the store and its WAL.
fn store_bytes(db: &Path) -> Vec<u8> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_owned(), wal.into()]
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .flatten()
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn master_key_args(master: &Path) -> Vec<&str> {
    vec!["--master-key-file", master.to_str().unwrap()]
}

#[test]
fn a_sealed_store_serves_a_valid_send_end_to_end_with_its_master_key() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    assert!(
        contains(&store_bytes(&env.db), &secret),
        "the control: an unsealed store holds the secret in clear text"
    );
    let master = env.path("master.key");
    env.zavro()
        .arg("--master-key-file")
        .arg(&master)
        .args(["store", "seal", "--create-key"])
        .assert()
        .success();
    assert!(
        !contains(&store_bytes(&env.db), &secret),
        "no clear-text secret is left in the store file or its WAL"
    );
    let status = env.zavro().args(["store", "status"]).assert().success();
    assert!(stdout_of(&status).starts_with("sealed under master key "));

    let server = Server::start_curve(&env, "127.0.0.1:*", &master_key_args(&master));
    let record = json!({"sensor": "t-1", "celsius": 21.5});
    env.send_curve(
        server.endpoint(),
        server.server_key().unwrap(),
        &key,
        &secret,
        compact(&record),
    )
    .success();
    // A key added to the sealed store, with the key as the systemd credential, works at once.
    let credentials = env.path("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::copy(&master, credentials.join("zavro-master-key")).unwrap();
    let added = env
        .zavro()
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .args(["keys", "add", "--json"])
        .assert()
        .success();
    let added = crate::common::parse_json(&added.get_output().stdout);
    let (key2, secret2) = (
        added["key"].as_str().unwrap(),
        added["secret"].as_str().unwrap(),
    );
    env.send_curve(
        server.endpoint(),
        server.server_key().unwrap(),
        key2,
        secret2,
        "[2]",
    )
    .success();
    assert!(server.stop().success());
    assert_eq!(env.output_lines(), [compact(&record), "2".to_owned()]);
    let bytes = store_bytes(&env.db);
    assert!(!contains(&bytes, &secret) && !contains(&bytes, secret2));
    let actions: Vec<_> = env
        .audit()
        .into_iter()
        .map(|row| row["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.contains(&"store_seal".to_owned()), "{actions:?}");
    let master_text = std::fs::read_to_string(&master).unwrap();
    let audit_text = stdout_of(
        &env.zavro()
            .args(["audit", "query", "--json"])
            .assert()
            .success(),
    );
    assert!(
        !audit_text.contains(master_text.trim()),
        "the key is never audited"
    );
}

#[test]
fn serve_and_keys_add_refuse_a_sealed_store_without_its_key_and_the_rest_work_without_it() {
    let env = TestEnv::new();
    let (key, _secret, master) = sealed_store(&env);
    let fingerprint = stdout_of(&env.zavro().args(["store", "status"]).assert().success())
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();

    for extra in [&[][..], &["--plaintext"][..]] {
        let refused = env
            .zavro()
            .args(["serve", "127.0.0.1:*"])
            .args(extra)
            .assert()
            .code(MASTER_KEY_EXIT);
        let stderr = stderr_of(&refused);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("is sealed under master key {fingerprint}"))
                && stderr.contains("--master-key-file"),
            "{stderr}"
        );
    }
    let wrong = another_key_file(&env, "wrong.key");
    let refused = env
        .zavro()
        .arg("--master-key-file")
        .arg(&wrong)
        .args(["serve", "127.0.0.1:*"])
        .assert()
        .code(MASTER_KEY_EXIT);
    let wrong_fingerprint = zavro::sealed::MasterKey::load(&wrong)
        .unwrap()
        .fingerprint();
    assert_eq!(
        stderr_of(&refused),
        format!(
            "zavro: this store is sealed under master key {fingerprint}; the key in {} is {wrong_fingerprint}\n",
            wrong.display()
        )
    );
    let refused = env
        .zavro()
        .env("ZAVRO_MASTER_KEY_FILE", &wrong)
        .args(["keys", "add"])
        .assert()
        .code(MASTER_KEY_EXIT);
    assert!(
        stderr_of(&refused).contains("the key in"),
        "{}",
        stderr_of(&refused)
    );
    env.zavro()
        .args(["keys", "add"])
        .assert()
        .code(MASTER_KEY_EXIT);
    // The flag (or ZAVRO_MASTER_KEY_FILE) wins over the systemd credential.
    let credentials = env.path("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::copy(&wrong, credentials.join("zavro-master-key")).unwrap();
    let refused = env
        .zavro()
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .args(["keys", "add"])
        .assert()
        .code(MASTER_KEY_EXIT);
    assert!(
        stderr_of(&refused).contains("zavro-master-key is"),
        "{}",
        stderr_of(&refused)
    );
    env.zavro()
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .arg("--master-key-file")
        .arg(&master)
        .args(["keys", "add", "--label", "flag-wins"])
        .assert()
        .success();
    assert_eq!(env.keys().len(), 2);
    // A key file others may read is refused too, naming the fix.
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = env
        .zavro()
        .arg("--master-key-file")
        .arg(&master)
        .args(["serve", "127.0.0.1:*"])
        .assert()
        .code(MASTER_KEY_EXIT);
    assert!(
        stderr_of(&refused).contains("chmod 600"),
        "{}",
        stderr_of(&refused)
    );
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        env.keys().len(),
        2,
        "nothing was added without the right key"
    );

    // Nothing below reads a secret, so none needs the key.
    env.zavro().args(["keys", "list"]).assert().success();
    env.zavro().args(["audit", "verify"]).assert().success();
    env.zavro().args(["audit", "query"]).assert().success();
    let public = stdout_of(&env.zavro().args(["server-key"]).assert().success());
    assert_eq!(public.trim().len(), 40);
    env.zavro()
        .args(["keys", "revoke", &key])
        .assert()
        .success();

    // A key given for a store that is not sealed is refused rather than silently protecting nothing.
    let plain = TestEnv::new();
    plain.add_key();
    let refused = plain
        .zavro()
        .arg("--master-key-file")
        .arg(&master)
        .args(["keys", "add"])
        .assert()
        .code(MASTER_KEY_EXIT);
    assert!(
        stderr_of(&refused).contains("is not sealed"),
        "{}",
        stderr_of(&refused)
    );
}

#[test]
fn after_a_reseal_the_new_key_serves_and_the_old_key_is_refused() {
    let env = TestEnv::new();
    let (key, secret, old) = sealed_store(&env);
    let new = env.path("master-2.key");
    let resealed = env
        .zavro()
        .arg("--master-key-file")
        .arg(&old)
        .args(["store", "reseal", "--create-key", "--new-master-key-file"])
        .arg(&new)
        .assert()
        .success();
    assert!(
        stdout_of(&resealed).starts_with("resealed 1 API secret and 1 server key: master key "),
        "{}",
        stdout_of(&resealed)
    );
    assert!(!contains(&store_bytes(&env.db), &secret));

    env.zavro()
        .arg("--master-key-file")
        .arg(&old)
        .args(["serve", "127.0.0.1:*"])
        .assert()
        .code(MASTER_KEY_EXIT);
    let server = Server::start_curve(&env, "127.0.0.1:*", &master_key_args(&new));
    env.send_curve(
        server.endpoint(),
        server.server_key().unwrap(),
        &key,
        &secret,
        "[1]",
    )
    .success();
    assert!(server.stop().success());
    let audit = env.audit();
    let reseal = audit
        .iter()
        .find(|row| row["action"] == "store_reseal")
        .expect("a store_reseal audit row");
    assert_eq!(reseal["status"], "accepted");
    env.zavro().args(["audit", "verify"]).assert().success();
}

#[test]
fn a_sealed_secret_copied_onto_another_keys_row_is_never_accepted_for_that_key() {
    let env = TestEnv::new();
    let (key_a, secret_a, master) = sealed_store(&env);
    let add = env
        .zavro()
        .arg("--master-key-file")
        .arg(&master)
        .args(["keys", "add", "--json"])
        .assert()
        .success();
    let added = crate::common::parse_json(&add.get_output().stdout);
    let key_b = added["key"].as_str().unwrap().to_owned();
    let secret_b = added["secret"].as_str().unwrap().to_owned();
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        let moved = conn
            .execute(
                "UPDATE keys SET secret_sealed = (SELECT secret_sealed FROM keys WHERE id = ?1) WHERE id = ?2",
                [&key_a, &key_b],
            )
            .unwrap();
        assert_eq!(moved, 1);
    }

    let server = Server::start_curve(&env, "127.0.0.1:*", &master_key_args(&master));
    let server_key = server.server_key().unwrap().to_owned();
    // B's own secret: its row now holds A's sealed secret, which does not open as B's.
    let refused = env
        .send_curve(server.endpoint(), &server_key, &key_b, &secret_b, "[1]")
        .code(4);
    assert!(
        stderr_of(&refused).contains("internal"),
        "{}",
        stderr_of(&refused)
    );
    // A is untouched.
    env.send_curve(server.endpoint(), &server_key, &key_a, &secret_a, "[3]")
        .success();
    let (status, lines) = server.stop_with_stderr();
    assert!(status.success(), "{lines:?}");
    assert_eq!(env.output_lines(), ["3"]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("does not open under the master key")),
        "{lines:?}"
    );
    // A's secret under B's id, what the swap would let through if rows were not bound. Over CURVE the derived
    // client key already differs from B's; without CURVE the request reaches the store's check, and is refused.
    let plaintext = Server::start(&env, "127.0.0.1:*", &master_key_args(&master));
    let refused = env
        .send(plaintext.endpoint(), &key_b, &secret_a, "[4]")
        .code(4);
    assert!(
        stderr_of(&refused).contains("internal"),
        "{}",
        stderr_of(&refused)
    );
    assert!(plaintext.stop().success());
    assert_eq!(env.output_lines(), ["3"]);
    let refusals: Vec<_> = env
        .audit_sends()
        .into_iter()
        .filter(|row| row["key"] == key_b.as_str())
        .map(|row| (row["status"].clone(), row["reason"].clone()))
        .collect();
    assert!(refusals.len() >= 2, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|(status, reason)| status == "rejected" && reason == "internal"),
        "{refusals:?}"
    );
}

#[test]
fn server_key_with_the_master_key_refuses_a_store_whose_sealing_row_was_deleted() {
    let env = TestEnv::new();
    let (_key, _secret, master) = sealed_store(&env);
    // Someone with write access removes the record that the store is sealed.
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    assert_eq!(conn.execute("DELETE FROM sealing", []).unwrap(), 1);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    let pairs = count("SELECT count(*) FROM server_keys");
    for command in [
        &["server-key", "rotate"][..],
        &["server-key", "rotate", "--stage"],
    ] {
        let refused = env
            .zavro()
            .arg("--master-key-file")
            .arg(&master)
            .args(command)
            .assert()
            .code(MASTER_KEY_EXIT);
        assert!(
            stderr_of(&refused).contains("is not sealed"),
            "{}",
            stderr_of(&refused)
        );
    }
    assert_eq!(
        count("SELECT count(*) FROM server_keys"),
        pairs,
        "no key pair was made"
    );
    assert_eq!(
        count("SELECT count(*) FROM server_keys WHERE secret_key IS NOT NULL"),
        0,
        "no server secret was written in clear text"
    );
    // The same key, given as the systemd credential, is refused the same way.
    let credentials = env.path("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::copy(&master, credentials.join("zavro-master-key")).unwrap();
    env.zavro()
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .args(["server-key", "rotate"])
        .assert()
        .code(MASTER_KEY_EXIT);
    assert_eq!(count("SELECT count(*) FROM server_keys"), pairs);
}

#[test]
fn a_rebuild_that_fails_after_sealing_says_the_secrets_are_sealed() {
    use std::os::unix::process::CommandExt;

    use nix::sys::{
        resource::{Resource, setrlimit},
        signal::{SigHandler, Signal, signal},
    };

    let env = TestEnv::new();
    let (_key, secret) = env.add_key();
    // A store far larger than the sealing transaction writes: rebuilding it needs room that the sealing does not.
    rusqlite::Connection::open(&env.db)
        .unwrap()
        .execute_batch("CREATE TABLE bulk (b BLOB); INSERT INTO bulk VALUES (randomblob(4194304));")
        .unwrap();
    let master = env.path("master.key");
    let mut seal = crate::common::zavro_process();
    seal.arg("--db")
        .arg(&env.db)
        .arg("--master-key-file")
        .arg(&master)
        .args(["store", "seal", "--create-key"]);
    // No file may grow past 1 MiB, as on a disk that fills up: the sealing (a few pages) commits, the rebuild
    // (a copy of the whole store) fails.
    // SAFETY: between fork and exec the closure only calls sigaction(2) and setrlimit(2), which are
    // async-signal-safe, and allocates nothing.
    unsafe {
        seal.pre_exec(|| {
            signal(Signal::SIGXFSZ, SigHandler::SigIgn).map_err(std::io::Error::from)?;
            setrlimit(Resource::RLIMIT_FSIZE, 1 << 20, 1 << 20).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let output = seal.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let fingerprint = zavro::sealed::MasterKey::load(&master)
        .unwrap()
        .fingerprint();
    assert!(
        stderr.starts_with(&format!(
            "zavro: the secrets of store {} ARE sealed under master key {fingerprint}: keep the key file; the \
             rebuild that removes old clear-text copies from the file failed: ",
            env.db.display()
        )) && stderr.contains("run `zavro store seal` again"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let status = env.zavro().args(["store", "status"]).assert().success();
    assert_eq!(
        stdout_of(&status),
        format!("sealed under master key {fingerprint}\n")
    );
    // Run again without the limit, as the message says: the rebuild completes.
    let again = env
        .zavro()
        .arg("--master-key-file")
        .arg(&master)
        .args(["store", "seal"])
        .assert()
        .success();
    assert!(
        stdout_of(&again).starts_with(&format!("already sealed under master key {fingerprint}")),
        "{}",
        stdout_of(&again)
    );
    assert!(!contains(&store_bytes(&env.db), &secret));
}

#[test]
fn a_new_master_key_file_is_synced_with_its_directory_entry() {
    let strace_runs = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|output| output.status.success());
    if !strace_runs {
        eprintln!(
            "SKIPPED (strace not installed): a_new_master_key_file_is_synced_with_its_directory_entry"
        );
        return;
    }
    let env = TestEnv::new();
    env.add_key();
    // The key in a directory of its own, which SQLite never syncs for the store.
    let keys = env.path("keys");
    std::fs::create_dir(&keys).unwrap();
    let log = env.path("strace.log");
    let seal = crate::common::zavro_process();
    let mut traced = std::process::Command::new("strace");
    traced
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&log)
        .arg(seal.get_program())
        .arg("--db")
        .arg(&env.db)
        .arg("--master-key-file")
        .arg(keys.join("master.key"))
        .args(["store", "seal", "--create-key"]);
    for (name, value) in seal.get_envs() {
        match value {
            Some(value) => traced.env(name, value),
            None => traced.env_remove(name),
        };
    }
    let output = traced.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let key_file = format!("<{}>)", keys.join("master.key").display());
    let directory = format!("<{}>)", keys.display());
    let synced = |target: &str| {
        calls
            .lines()
            .any(|line| line.contains("fsync(") && line.contains(target))
    };
    assert!(
        synced(&key_file),
        "the control: the key file is synced\n{calls}"
    );
    assert!(synced(&directory), "its directory is not synced\n{calls}");
}

#[test]
fn store_seal_creates_a_missing_store_sealed_from_the_start() {
    let env = TestEnv::new();
    let master = env.path("master.key");
    // Refusals leave no store behind: no key configured, a key file already there.
    env.zavro().args(["store", "seal"]).assert().code(2);
    assert!(!env.db.exists());
    let taken = another_key_file(&env, "taken.key");
    env.zavro()
        .arg("--master-key-file")
        .arg(&taken)
        .args(["store", "seal", "--create-key"])
        .assert()
        .code(MASTER_KEY_EXIT);
    assert!(!env.db.exists());
    env.zavro().args(["store", "status"]).assert().code(7);

    let created = env
        .zavro()
        .arg("--master-key-file")
        .arg(&master)
        .args(["store", "seal", "--create-key"])
        .assert()
        .success();
    let fingerprint = zavro::sealed::MasterKey::load(&master)
        .unwrap()
        .fingerprint();
    assert_eq!(
        stdout_of(&created),
        format!(
            "created store {} sealed under master key {fingerprint} ({}): its secrets are never kept in \
             clear text\n",
            env.db.display(),
            master.display()
        )
    );
    let mode = std::fs::metadata(&env.db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let status = env.zavro().args(["store", "status"]).assert().success();
    assert_eq!(
        stdout_of(&status),
        format!("sealed under master key {fingerprint}\n")
    );
    // The first key and the server's key pair are written sealed: no clear-text secret ever.
    let added = env
        .zavro()
        .env("ZAVRO_MASTER_KEY_FILE", &master)
        .args(["keys", "add", "--json"])
        .assert()
        .success();
    let secret = crate::common::parse_json(&added.get_output().stdout)["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    env.zavro()
        .env("ZAVRO_MASTER_KEY_FILE", &master)
        .arg("server-key")
        .assert()
        .success();
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let clear: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM keys WHERE secret IS NOT NULL)
                  + (SELECT count(*) FROM server_keys WHERE secret_key IS NOT NULL)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(clear, 0, "no secret in clear text");
    let sealed: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM keys WHERE secret_sealed IS NOT NULL)
                  + (SELECT count(*) FROM server_keys WHERE secret_sealed IS NOT NULL)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(sealed, 2, "the API secret and the server secret, sealed");
    assert!(!contains(&store_bytes(&env.db), &secret));
    let actions: Vec<_> = env
        .audit()
        .into_iter()
        .map(|row| row["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["store_seal", "key_add", "server_key_create"]);
}

#[test]
fn keys_add_with_a_master_key_leaves_no_store_behind_where_there_was_none() {
    let env = TestEnv::new();
    let master = another_key_file(&env, "master.key");
    let refused = env
        .zavro()
        .env("ZAVRO_MASTER_KEY_FILE", &master)
        .args(["keys", "add"])
        .assert()
        .code(MASTER_KEY_EXIT);
    assert_eq!(
        stderr_of(&refused),
        format!(
            "zavro: store {} is not sealed, yet a master key was given ({}); `zavro store seal` seals it under \
             that key, or give no master key\n",
            env.db.display(),
            master.display()
        )
    );
    for file in ["zavro.db", "zavro.db-wal", "zavro.db-shm"] {
        assert!(!env.path(file).exists(), "{file} was left behind");
    }
    // As the message says: seal (which makes the store), then add.
    env.zavro()
        .env("ZAVRO_MASTER_KEY_FILE", &master)
        .args(["store", "seal"])
        .assert()
        .success();
    env.zavro()
        .env("ZAVRO_MASTER_KEY_FILE", &master)
        .args(["keys", "add"])
        .assert()
        .success();
}
