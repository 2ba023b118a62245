//! Connecting and migrating against a real PostgreSQL cluster (`test_cluster`); each test in its own database.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Barrier},
    thread,
};

use super::{PgStore, PgUrl, SslMode, migrate::SCHEMA_VERSION, test_cluster};
use crate::{
    sealed::MasterKey,
    store::{ChainBreak, ChainVerifier, ChainedFields, StoreError, StoredRow, Verified},
};

pub(super) fn url(text: &str) -> PgUrl {
    PgUrl::parse(text).expect("the test cluster's URLs parse")
}

/// Every table of the schema, sorted.
const TABLES: [&str; 12] = [
    "audit",
    "audit_chain",
    "audit_checkpoints",
    "keys",
    "nonce_window",
    "nonces",
    "payloads",
    "request_ids",
    "schemas",
    "sealing",
    "server_keys",
    "zavro_schema",
];

/// A fresh database of the shared cluster with the zavro schema, its store given `master` (`None`: no key);
/// `None` when PostgreSQL is missing (the skip was printed).
pub(super) fn fresh_store(master: Option<MasterKey>) -> Option<PgStore> {
    let cluster = test_cluster::shared()?;
    let mut store = PgStore::connect_or_create(&url(&cluster.fresh_database())).unwrap();
    store.use_master_key(master).unwrap();
    Some(store)
}

/// A master key made of one byte repeated.
pub(super) fn master(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

/// Walks the store's whole audit chain as `audit verify` does, from the rows as stored.
pub(crate) fn verify_chain(store: &mut PgStore) -> Result<Verified, ChainBreak> {
    let rows = store
        .client()
        .query(
            "SELECT a.id, a.time_us, a.action, a.status, a.reason, a.detail, a.key_id, a.peer, a.records,
                    a.size, a.payload_sha256, s.fingerprint, a.requests, a.transport, a.server, a.prev_hash,
                    a.hash, p.json
             FROM audit a LEFT JOIN schemas s ON s.id = a.schema_id
                          LEFT JOIN payloads p ON p.audit_id = a.id
             ORDER BY a.id",
            &[],
        )
        .unwrap();
    let issued: i64 = store
        .client()
        .query_one("SELECT last_id FROM audit_chain", &[])
        .unwrap()
        .get(0);
    let mut verifier = ChainVerifier::new(None, None);
    for row in &rows {
        verifier.row(&StoredRow {
            fields: ChainedFields {
                id: row.get(0),
                time_us: row.get(1),
                action: row.get(2),
                status: row.get(3),
                reason: row.get(4),
                detail: row.get(5),
                key_id: row.get(6),
                peer: row.get(7),
                records: row.get(8),
                size: row.get(9),
                payload_sha256: row.get(10),
                schema: row.get(11),
                requests: row.get(12),
                transport: row.get(13),
                server: row.get(14),
            },
            prev_hash: row.get(15),
            hash: row.get(16),
            payload: row.get(17),
        })?;
    }
    verifier.finish(issued)
}

fn tables(store: &mut PgStore) -> Vec<String> {
    store
        .client()
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn connect_or_create_migrates_a_fresh_database_to_the_full_schema() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let url = url(&cluster.fresh_database());
    let mut store = PgStore::connect_or_create(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(tables(&mut store), TABLES);
    let head = store
        .client()
        .query_one("SELECT last_id, last_hash FROM audit_chain", &[])
        .unwrap();
    assert_eq!(head.get::<_, i64>(0), 0);
    assert_eq!(head.get::<_, String>(1), "0".repeat(64));
    // The columns of SQLite's version 8 and `server`, which only a shared store has.
    let columns: Vec<String> = store
        .client()
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_name = 'audit' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        columns,
        [
            "id",
            "time_us",
            "action",
            "status",
            "reason",
            "detail",
            "key_id",
            "peer",
            "records",
            "size",
            "payload_sha256",
            "prev_hash",
            "hash",
            "schema_id",
            "requests",
            "transport",
            "server"
        ]
    );
    // The singleton really is one row.
    let second = store
        .client()
        .execute(
            "INSERT INTO audit_chain (last_id, last_hash) VALUES (1, 'x')",
            &[],
        )
        .expect_err("audit_chain holds one row");
    assert!(second.as_db_error().is_some(), "{second}");
    // A second nonce for the same key is refused by the primary key.
    store
        .client()
        .batch_execute(
            "INSERT INTO nonces (key_id, nonce, timestamp, audit_id) VALUES ('k', 'n', 1, 1)",
        )
        .unwrap();
    assert!(
        store
            .client()
            .batch_execute(
                "INSERT INTO nonces (key_id, nonce, timestamp, audit_id) VALUES ('k', 'n', 2, 2)"
            )
            .is_err()
    );
}

#[test]
fn connect_refuses_a_database_without_a_zavro_schema_and_creates_nothing() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let url = url(&cluster.fresh_database());
    let err = PgStore::connect(&url).err().expect("no schema yet");
    assert!(
        matches!(&err, StoreError::PgMissing(shown) if *shown == url.to_string()),
        "{err}"
    );
    assert!(
        err.to_string().contains("`zavro keys add` creates one"),
        "{err}"
    );
    let mut store = PgStore::connect_or_create(&url).unwrap();
    // Nothing was left behind by the refused connection: the schema was made by connect_or_create alone.
    assert_eq!(tables(&mut store), TABLES);
    PgStore::connect(&url).unwrap();
}

#[test]
fn migrating_again_is_a_no_op_that_keeps_the_data() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let url = url(&cluster.fresh_database());
    let mut store = PgStore::connect_or_create(&url).unwrap();
    store
        .client()
        .batch_execute(
            "INSERT INTO keys (id, secret_sealed, created_us) VALUES ('ZKTEST', 's', 1);
             UPDATE audit_chain SET last_id = 7, last_hash = 'h';",
        )
        .unwrap();
    drop(store);
    for _ in 0..2 {
        let mut store = PgStore::connect_or_create(&url).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let kept = store
            .client()
            .query_one(
                "SELECT (SELECT count(*) FROM keys), (SELECT last_id FROM audit_chain)",
                &[],
            )
            .unwrap();
        assert_eq!((kept.get::<_, i64>(0), kept.get::<_, i64>(1)), (1, 7));
    }
    PgStore::connect(&url).unwrap();
}

#[test]
fn concurrent_migrations_of_one_fresh_database_all_succeed() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let url = url(&cluster.fresh_database());
    const SERVERS: usize = 4;
    let barrier = Arc::new(Barrier::new(SERVERS));
    let results: Vec<Result<usize, String>> = (0..SERVERS)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                PgStore::connect_or_create(&url)
                    .and_then(|mut store| store.schema_version())
                    .map_err(|e| e.to_string())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    for result in results {
        assert_eq!(result, Ok(SCHEMA_VERSION));
    }
    let mut store = PgStore::connect(&url).unwrap();
    assert_eq!(tables(&mut store), TABLES);
    let rows: i64 = store
        .client()
        .query_one("SELECT count(*) FROM zavro_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[test]
fn a_database_from_a_newer_zavro_is_refused() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let url = url(&cluster.fresh_database());
    let mut store = PgStore::connect_or_create(&url).unwrap();
    let newer = SCHEMA_VERSION as i64 + 1;
    store
        .client()
        .execute("UPDATE zavro_schema SET version = $1", &[&newer])
        .unwrap();
    for create in [false, true] {
        let err = PgStore::connect_with_passfile(&url, None, create)
            .err()
            .expect("newer schema");
        assert!(
            matches!(err, StoreError::PgTooNew { found, known, .. }
                if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
            "{err}"
        );
        let expected = format!("newer than this zavro knows ({SCHEMA_VERSION}); upgrade zavro");
        assert!(err.to_string().contains(&expected), "{err}");
    }
    // And it was left as it was.
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION + 1);
}

#[test]
fn nothing_listening_is_one_line_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = url(&format!(
        "postgres://nobody:hunter2@/zavro?host={}",
        dir.path().display()
    ));
    let err = PgStore::connect(&url).err().expect("no server there");
    let message = err.to_string();
    assert!(matches!(err, StoreError::PgConnect { .. }), "{message}");
    assert!(
        message.starts_with(&format!("cannot connect to store {url}: ")),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

/// A role that must give its password, a database it owns, and a private directory for password files.
struct PasswordRole {
    url: String,
    role: String,
    dir: tempfile::TempDir,
}

fn password_role(cluster: &test_cluster::Cluster, name: &str, password: &str) -> PasswordRole {
    let role = format!("zavro_pw_{name}");
    cluster.create_password_role(&role, password);
    PasswordRole {
        url: cluster.fresh_database_owned_by(&role),
        role,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl PasswordRole {
    fn passfile(&self, text: &str, mode: u32) -> PathBuf {
        let path = self.dir.path().join("pgpass");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn connect(&self, passfile: Option<&Path>) -> Result<PgStore, StoreError> {
        PgStore::connect_with_passfile(&url(&self.url), passfile, true)
    }
}

#[test]
fn the_password_comes_from_the_password_file_as_libpq_reads_it() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let password = "c0rrect:horse\\staple";
    let role = password_role(cluster, "file", password);
    let socket = cluster.socket_dir().display().to_string();
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    // The cluster really checks passwords for this role: without one, the connection is refused, with a hint.
    let err = role.connect(None).err().expect("a password is required");
    let message = err.to_string();
    assert!(matches!(err, StoreError::PgConnect { .. }), "{message}");
    assert!(message.contains("password"), "{message}");
    assert!(message.contains("~/.pgpass"), "{message}");
    // The socket directory is matched as the host, the first matching line wins.
    let db = url(&role.url).dbname().to_owned();
    for text in [
        format!(
            "{socket}:5432:{db}:{}:{escaped}\n*:*:*:*:wrong\n",
            role.role
        ),
        format!(
            "# comment\nelsewhere:*:*:*:wrong\n*:*:{db}:{}:{escaped}\n",
            role.role
        ),
    ] {
        let path = role.passfile(&text, 0o600);
        let mut store = role.connect(Some(&path)).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }
    // A file others could read is ignored, as libpq ignores it: no password, so no connection.
    let path = role.passfile(&format!("*:*:*:*:{escaped}\n"), 0o644);
    let err = role
        .connect(Some(&path))
        .err()
        .expect("the file is ignored");
    assert!(err.to_string().contains("password"), "{err}");
}

#[test]
fn errors_never_show_the_password() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let role = password_role(cluster, "secret", "the-right-one");
    // A wrong password from the file.
    let path = role.passfile("*:*:*:*:wrong-from-file-9431\n", 0o600);
    let message = role.connect(Some(&path)).err().expect("wrong").to_string();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("wrong-from-file-9431"), "{message}");
    // A wrong password in the URL, as user:password@ and as a parameter.
    let base = url(&role.url);
    for with_password in [
        role.url.replacen(
            &format!("{}@", role.role),
            &format!("{}:wrong-in-url-5521@", role.role),
            1,
        ),
        format!("{}&password=wrong-in-url-5521", role.url),
    ] {
        let parsed = url(&with_password);
        assert_eq!(parsed.password(), Some("wrong-in-url-5521"));
        assert_eq!(parsed.to_string(), base.to_string());
        let err = PgStore::connect_with_passfile(&parsed, None, true)
            .err()
            .expect("wrong");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(shown.contains("password authentication failed"), "{shown}");
            assert!(!shown.contains("wrong-in-url-5521"), "{shown}");
        }
    }
    // The right password in the URL works (a password in the URL wins over the file).
    let right = format!("{}&password=the-right-one", role.url);
    PgStore::connect_with_passfile(&url(&right), Some(&path), true).unwrap();
}

#[test]
fn sslmode_is_ignored_over_a_unix_socket_as_libpq_does() {
    let Some(cluster) = test_cluster::shared() else {
        return;
    };
    let base = cluster.fresh_database();
    for mode in ["require", "verify-full"] {
        let url = url(&format!("{base}&sslmode={mode}"));
        PgStore::connect_or_create(&url).unwrap();
    }
}

#[test]
fn tls_configurations_build_for_every_mode_and_a_bad_root_file_is_one_line() {
    use super::{SslMode, tls::client_config};
    let dir = tempfile::tempdir().unwrap();
    for mode in [
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ] {
        // verify-ca trusts no public CA: it checks no name, so any certificate one issued would pass.
        let without_root = client_config(mode, None);
        let system = client_config(mode, Some(Path::new("system")));
        if mode == SslMode::VerifyCa {
            let err = without_root.expect_err("verify-ca without sslrootcert");
            assert!(err.contains("verify-ca needs sslrootcert=FILE"), "{err}");
            assert!(system.is_err(), "verify-ca with sslrootcert=system");
        } else {
            without_root.unwrap();
        }
        match mode {
            SslMode::VerifyFull => drop(system.unwrap()),
            SslMode::VerifyCa => {}
            _ => {
                let err = system.expect_err("sslrootcert=system with a weak mode");
                assert!(err.contains("needs sslmode=verify-full"), "{err}");
            }
        }
        let missing = dir.path().join("missing.pem");
        let err = client_config(mode, Some(&missing)).expect_err("missing");
        assert!(err.contains("cannot read sslrootcert"), "{err}");
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(mode, Some(&empty)).expect_err("empty");
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}

#[test]
fn a_private_cluster_can_be_stopped_and_started_under_a_store() {
    let Some(cluster) = test_cluster::start_private() else {
        return;
    };
    let url = url(&cluster.fresh_database());
    let mut store = PgStore::connect_or_create(&url).unwrap();
    cluster.stop();
    store
        .schema_version()
        .expect_err("the server is stopped under the connection");
    let err = PgStore::connect(&url).err().expect("nothing listens");
    assert!(matches!(err, StoreError::PgConnect { .. }), "{err}");
    cluster.start_again();
    let mut store = PgStore::connect(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let dir = cluster.socket_dir().to_owned();
    drop(cluster);
    assert!(!dir.exists(), "a dropped private cluster removes its files");
}

/// A connection to `url` (no password file), dropped at once; the error as one line.
fn try_connect(url: &str) -> Result<(), String> {
    let url = PgUrl::parse_with_env(url, |_| None).map_err(|e| e.to_string())?;
    PgStore::connect_with_passfile(&url, None, true)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn tls_against_a_real_server_verify_full_checks_the_name_and_verify_ca_the_chain() {
    if !test_cluster::openssl_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_cluster::make_certificate(dir.path(), "test-ca", "localhost", "local");
    let (other_cert, other_key) =
        test_cluster::make_certificate(dir.path(), "test-ca", "other.example", "other");
    // Another CA, which signed nothing the server presents.
    test_cluster::make_certificate(dir.path(), "stranger-ca", "localhost", "stranger");
    let Some(cluster) = test_cluster::start_private_tls(&cert, &key) else {
        return;
    };
    let db = test_cluster::database_name(&cluster.fresh_database()).to_owned();
    let ca = dir.path().join("test-ca.crt").display().to_string();
    let stranger = dir.path().join("stranger-ca.crt").display().to_string();
    let url = |host: &str, params: &str| {
        format!(
            "{}?{params}",
            cluster.tcp_url_as(test_cluster::SUPERUSER, host, &db)
        )
    };

    try_connect(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap();
    try_connect(&url("localhost", "sslmode=require")).unwrap();
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca (no name check) accepts.
    let err = try_connect(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap_err();
    assert!(err.contains("certificate not valid for name"), "{err}");
    try_connect(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .unwrap();
    // A root that did not sign it: both refuse.
    for mode in ["verify-full", "verify-ca"] {
        let err = try_connect(&url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={stranger}"),
        ))
        .unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{mode}: {err}");
    }
    // verify-ca without a root of its own is refused before connecting, as libpq refuses it.
    let err = try_connect(&url("localhost", "sslmode=verify-ca")).unwrap_err();
    assert!(err.contains("verify-ca needs sslrootcert=FILE"), "{err}");
    // The control: this server takes TLS only, so the connections above really were TLS.
    let err = try_connect(&url("localhost", "sslmode=disable")).unwrap_err();
    assert!(err.contains("no encryption"), "{err}");

    // A certificate that names another host.
    cluster.replace_certificate(&other_cert, &other_key);
    let err = try_connect(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap_err();
    assert!(err.contains("certificate not valid for name"), "{err}");
    try_connect(&url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .unwrap();
}

#[test]
fn channel_binding_require_works_with_scram_over_tls_and_refuses_trust() {
    if !test_cluster::openssl_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_cluster::make_certificate(dir.path(), "test-ca", "localhost", "local");
    let Some(cluster) = test_cluster::start_private_tls(&cert, &key) else {
        return;
    };
    let ca = dir.path().join("test-ca.crt").display().to_string();
    let role = "zavro_pw_binding";
    cluster.create_password_role(role, "bound-pw-1");
    let db = test_cluster::database_name(&cluster.fresh_database_owned_by(role)).to_owned();
    let tls = format!("sslmode=verify-full&sslrootcert={ca}");
    let scram = format!(
        "{}?{tls}&password=bound-pw-1",
        cluster.tcp_url_as(role, "localhost", &db)
    );
    try_connect(&format!("{scram}&channel_binding=require")).unwrap();
    try_connect(&scram).unwrap();
    // A trusted role authenticates without SCRAM, so there is nothing to bind: require refuses it, which is why
    // require is not the default.
    let trusted = format!(
        "{}?{tls}",
        cluster.tcp_url_as(test_cluster::SUPERUSER, "localhost", &db)
    );
    try_connect(&trusted).unwrap();
    let err = try_connect(&format!("{trusted}&channel_binding=require")).unwrap_err();
    assert!(err.contains("server did not use channel binding"), "{err}");
}

#[test]
fn a_tcp_connection_that_does_not_verify_the_server_is_warned_about() {
    use super::connect::unverified_warning;
    for (mode, has_root, expect) in [
        (
            SslMode::Disable,
            false,
            "sslmode=disable: the connection to db.example is not encrypted",
        ),
        (SslMode::Prefer, false, "falls back to plain text"),
        (
            SslMode::Require,
            false,
            "the server's certificate is not checked",
        ),
        (
            SslMode::Require,
            true,
            "the name in the server's certificate is not checked",
        ),
    ] {
        let warning = unverified_warning(mode, has_root, "db.example").expect("a warning");
        assert!(warning.contains(expect), "{mode:?}: {warning}");
        assert!(warning.contains("use sslmode=verify-full"), "{warning}");
        assert!(!warning.contains('\n'), "{warning}");
    }
    assert_eq!(unverified_warning(SslMode::VerifyFull, false, "h"), None);
    assert_eq!(unverified_warning(SslMode::VerifyCa, true, "h"), None);
}

/// Polls `condition` until it holds, panicking with `what` after 20 s: for what another connection does.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
}
