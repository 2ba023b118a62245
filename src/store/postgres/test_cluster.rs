//! A throwaway PostgreSQL cluster for tests, started on first use: Unix socket only (no TCP), fsync on, trust
//! authentication except for members of [`PASSWORD_GROUP`], who must give their password.
//!
//! Shared by the library's unit tests (`crate::store::postgres::test_cluster`) and the CLI tests, which include
//! this same file with `#[path = "../../src/store/postgres/test_cluster.rs"] mod test_cluster;`; so it uses only
//! std, tempfile and nix, and talks to the cluster through PostgreSQL's own programs (`initdb`, `pg_ctl`, `psql`,
//! `createdb`).
//!
//! One cluster per test process ([`shared`]), each test in its own database ([`Cluster::fresh_database`]), so tests
//! run in parallel. A test that stops and restarts PostgreSQL takes a cluster of its own ([`start_private`]).
//! Statics are never dropped, so each cluster has a watchdog (a small `sh` loop) that, once the test process is
//! gone, stops the server (`pg_ctl stop -m immediate`) and removes its directory; a private cluster is also
//! stopped and removed when dropped.
//!
//! Without PostgreSQL, [`shared`] and [`start_private`] print `SKIPPED (PostgreSQL not installed): <test>` on
//! stderr and return `None`, so the test returns; with `ZAVRO_REQUIRE_POSTGRES=1` (CI) they panic instead.
//! initdb refuses to run as root: as root, the cluster's directory belongs to the `postgres` user and `initdb` and
//! `pg_ctl` run through `runuser -u postgres --`.

#![allow(dead_code)]

use std::{
    env, fs,
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

/// Set to `1` to make a missing PostgreSQL a test failure instead of a skip.
pub const REQUIRE_ENV: &str = "ZAVRO_REQUIRE_POSTGRES";

/// Roles in this group must log in with a password (scram-sha-256), even over the Unix socket; others are trusted.
pub const PASSWORD_GROUP: &str = "zavro_password_required";

/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "postgres";

/// The port in the socket's name (`.s.PGSQL.5432`); nothing listens on TCP, except on a TLS cluster
/// ([`start_private_tls`]), which takes a free port for both.
const PORT: u16 = 5432;

/// A running PostgreSQL cluster in a temporary directory.
pub struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    as_postgres: bool,
    private: bool,
    port: u16,
    watchdog: Option<Child>,
}

/// The process-wide cluster, started by the first test that asks; `None` (after saying so) without PostgreSQL.
pub fn shared() -> Option<&'static Cluster> {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    let bin = binaries_or_skip()?;
    Some(SHARED.get_or_init(|| Cluster::start(bin, false, None)))
}

/// A cluster for this test alone, which it may stop and start; stopped and removed when dropped. `None` (after
/// saying so) without PostgreSQL.
pub fn start_private() -> Option<Cluster> {
    let bin = binaries_or_skip()?;
    Some(Cluster::start(bin, true, None))
}

/// A private cluster that also listens on 127.0.0.1, on a free port, with TLS only (plain TCP is refused), and
/// presents the certificate `cert` (PEM, with its key `key`). Over TCP, members of [`PASSWORD_GROUP`] must give
/// their password (scram-sha-256), others are trusted. `None` (after saying so) without PostgreSQL.
pub fn start_private_tls(cert: &Path, key: &Path) -> Option<Cluster> {
    let bin = binaries_or_skip()?;
    Some(Cluster::start(bin, true, Some((cert, key))))
}

/// The directory of PostgreSQL's programs: Debian's `/usr/lib/postgresql/<newest>/bin`, else `pg_config --bindir`.
pub fn find_bindir() -> Option<PathBuf> {
    let mut newest: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(version) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("initdb").is_file() && newest.as_ref().is_none_or(|(v, _)| version > *v) {
            newest = Some((version, bin));
        }
    }
    if let Some((_, bin)) = newest {
        return Some(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && bin.join("initdb").is_file()).then_some(bin)
}

/// The binaries, or `None` after printing the skip line (or panicking when PostgreSQL is required).
fn binaries_or_skip() -> Option<PathBuf> {
    if let Some(bin) = find_bindir() {
        return Some(bin);
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a PostgreSQL test")
        .to_owned();
    if env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1") {
        panic!(
            "{test}: PostgreSQL is required ({REQUIRE_ENV}=1) but not installed: no \
             /usr/lib/postgresql/<version>/bin/initdb and no pg_config (Debian: apt-get install postgresql)"
        );
    }
    // Straight to the process's stderr, past the test harness's capture, so the skip is seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (PostgreSQL not installed): {test}"
    );
    None
}

impl Cluster {
    /// initdb, configuration, watchdog, start. Panics with PostgreSQL's own message when any step fails.
    fn start(bin: PathBuf, private: bool, tls: Option<(&Path, &Path)>) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("zavro-pg-")
            .tempdir()
            .expect("create a directory for the PostgreSQL cluster")
            .keep();
        let as_postgres = nix::unistd::geteuid().is_root();
        let port = match tls {
            // Free now; the server takes it a moment later (another process taking it first fails the start).
            Some(_) => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("find a free port")
                .port(),
            None => PORT,
        };
        let mut cluster = Cluster {
            bin,
            root,
            as_postgres,
            private,
            port,
            watchdog: None,
        };
        if as_postgres {
            let user = nix::unistd::User::from_name(SUPERUSER)
                .ok()
                .flatten()
                .expect("running as root, PostgreSQL's tests need the `postgres` user (Debian's package makes it)");
            nix::unistd::chown(&cluster.root, Some(user.uid), Some(user.gid))
                .expect("give the cluster directory to the postgres user");
        }
        cluster.watchdog = Some(cluster.spawn_watchdog());
        let data = cluster.data_dir();
        let mut initdb = cluster.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "--auth=trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
            ])
            // Only initdb's own files skip fsync; the server runs with fsync on.
            .arg("--no-sync");
        run(initdb, "initdb");
        let listen = if tls.is_some() { "127.0.0.1" } else { "" };
        let settings = format!(
            "\n# zavro tests: Unix socket (and TCP with TLS only, if asked), durable commits.\n\
             listen_addresses = '{listen}'\n\
             unix_socket_directories = '{}'\n\
             port = {port}\n\
             fsync = on\n\
             synchronous_commit = on\n\
             max_connections = 300\n\
             shared_buffers = 16MB\n",
            cluster.root.display()
        );
        append(&data.join("postgresql.conf"), &settings);
        let mut hba_first = format!("local all +{PASSWORD_GROUP} scram-sha-256\n");
        if let Some((cert, key)) = tls {
            cluster.install_certificate(cert, key);
            append(
                &data.join("postgresql.conf"),
                &format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                    cluster.root.join("server.crt").display(),
                    cluster.root.join("server.key").display()
                ),
            );
            hba_first.push_str(&format!(
                "hostssl all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 0.0.0.0/0 reject\n"
            ));
        }
        let hba = data.join("pg_hba.conf");
        let trusted = fs::read_to_string(&hba).expect("read pg_hba.conf");
        fs::write(&hba, format!("{hba_first}{trusted}")).expect("write pg_hba.conf");
        cluster.start_server();
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE {PASSWORD_GROUP} NOLOGIN;"),
        );
        cluster
    }

    /// The directory of the server's Unix socket (and of the cluster).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The URL of database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        self.url_as(SUPERUSER, db)
    }

    /// The URL of database `db` as `user`, without a password.
    pub fn url_as(&self, user: &str, db: &str) -> String {
        let port = match self.port {
            PORT => String::new(),
            port => format!("&port={port}"),
        };
        format!(
            "postgresql://{user}@/{db}?host={}{port}",
            percent_encode(&self.root.display().to_string())
        )
    }

    /// The URL of database `db` as `user` over TCP to `host` (which must resolve to 127.0.0.1), for a TLS cluster.
    pub fn tcp_url_as(&self, user: &str, host: &str, db: &str) -> String {
        format!("postgresql://{user}@{host}:{}/{db}", self.port)
    }

    /// Presents `cert` (with its `key`) from now on: stops the server, puts them in place, starts it again. Only on
    /// a TLS cluster.
    pub fn replace_certificate(&self, cert: &Path, key: &Path) {
        assert!(self.private && self.port != PORT, "only a TLS cluster");
        self.stop();
        self.install_certificate(cert, key);
        self.start_server();
    }

    /// Copies the certificate and its key into the cluster's directory, where the server (as the postgres user
    /// when we are root) may read them; the key private to it, as PostgreSQL demands.
    fn install_certificate(&self, cert: &Path, key: &Path) {
        use std::os::unix::fs::PermissionsExt;
        for (from, name, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
            let to = self.root.join(name);
            fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).expect("set a mode");
            if self.as_postgres {
                let user = nix::unistd::User::from_name(SUPERUSER)
                    .ok()
                    .flatten()
                    .expect("the postgres user");
                nix::unistd::chown(&to, Some(user.uid), Some(user.gid))
                    .expect("give the file to the postgres user");
            }
        }
    }

    /// A new, empty database owned by the superuser; returns its URL.
    pub fn fresh_database(&self) -> String {
        self.fresh_database_owned_by(SUPERUSER)
    }

    /// A new, empty database owned by `owner` (who can then create tables in it); returns its URL as `owner`.
    pub fn fresh_database_owned_by(&self, owner: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("zavro_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER \"{owner}\";"),
        );
        self.url_as(owner, &name)
    }

    /// Creates a login role that must give `password` (a member of [`PASSWORD_GROUP`]). The password goes to psql
    /// on stdin, never on a command line.
    pub fn create_password_role(&self, role: &str, password: &str) {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE \"{role}\" LOGIN PASSWORD '{}' IN ROLE {PASSWORD_GROUP};",
                password.replace('\'', "''")
            ),
        );
    }

    /// Runs `sql` (given on stdin) in database `db` as the superuser and returns psql's output (unaligned, tuples
    /// only). Panics with psql's message when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.root)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-f",
                "-",
            ])
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = psql.spawn().expect("run psql");
        child
            .stdin
            .take()
            .expect("psql's stdin is piped")
            .write_all(sql.as_bytes())
            .expect("write SQL to psql");
        let output = child.wait_with_output().expect("wait for psql");
        assert!(
            output.status.success(),
            "psql failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the server (`pg_ctl stop -m fast`), as an operator would; only on a private cluster.
    pub fn stop(&self) {
        assert!(self.private, "only a private cluster may be stopped");
        let mut stop = self.server_command("pg_ctl");
        stop.arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w"]);
        run(stop, "pg_ctl stop");
    }

    /// Starts the server again after [`Cluster::stop`]; only on a private cluster.
    pub fn start_again(&self) {
        assert!(self.private, "only a private cluster may be restarted");
        self.start_server();
    }

    /// `pg_ctl start`, waiting until the server accepts connections. Its output goes to files, not pipes: the
    /// server outlives `pg_ctl` and must not hold a pipe of ours open.
    fn start_server(&self) {
        let out = self.root.join("pg_ctl.out");
        let file = fs::File::create(&out).expect("create pg_ctl.out");
        let mut start = self.server_command("pg_ctl");
        start
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "120"])
            .stdout(file.try_clone().expect("duplicate a file descriptor"))
            .stderr(file)
            // Its own process group: a Ctrl-C meant for the tests does not stop it under them.
            .process_group(0);
        let status = start.status().expect("run pg_ctl start");
        if !status.success() {
            panic!(
                "pg_ctl start failed ({status}): {}\nserver log:\n{}",
                fs::read_to_string(&out).unwrap_or_default(),
                fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
            );
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// A server program (`initdb`, `pg_ctl`), run as the `postgres` user when we are root.
    fn server_command(&self, program: &str) -> Command {
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", SUPERUSER, "--"])
                .arg(self.bin.join(program));
            command
        } else {
            Command::new(self.bin.join(program))
        };
        command.current_dir(&self.root).stdin(Stdio::null());
        command
    }

    /// A `sh` loop that, once this process is gone (or the cluster's directory is), stops the server at once and
    /// removes the directory. Detached from our stdio and process group, so it outlives us and holds no pipe.
    fn spawn_watchdog(&self) -> Child {
        let stop = self.server_command("pg_ctl");
        let mut script = Command::new("sh");
        script
            .arg("-c")
            .arg(
                r#"pid=$1; root=$2; shift 2
                while kill -0 "$pid" 2>/dev/null && [ -d "$root" ]; do sleep 1; done
                if [ -d "$root" ]; then "$@" >/dev/null 2>&1; rm -rf "$root"; fi"#,
            )
            .arg("zavro-pg-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.root)
            .arg(stop.get_program())
            .args(stop.get_args())
            .args(["stop", "-D"])
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w"])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        script.spawn().expect("start the cluster's watchdog")
    }
}

impl Drop for Cluster {
    /// Stops the server at once and removes its files; the watchdog then sees the directory gone and ends.
    fn drop(&mut self) {
        let mut stop = self.server_command("pg_ctl");
        stop.arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let _ = fs::remove_dir_all(&self.root);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.wait();
        }
    }
}

/// The database a URL of [`Cluster::url_as`] names.
pub fn database_name(url: &str) -> &str {
    let after_host = url.split_once("@/").map_or(url, |(_, rest)| rest);
    after_host.split('?').next().unwrap_or(after_host)
}

/// True when `openssl` runs; otherwise prints `SKIPPED (openssl not installed): <test>` past the harness's capture.
pub fn openssl_or_skip() -> bool {
    let runs = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !runs {
        let test = std::thread::current()
            .name()
            .unwrap_or("a TLS test")
            .to_owned();
        let _ = writeln!(std::io::stderr(), "SKIPPED (openssl not installed): {test}");
    }
    runs
}

/// Makes, with `openssl` in `dir`, a CA (`<ca>.crt`, `<ca>.key`) when it is not there yet, and a server
/// certificate it signs for the DNS name `host` (`<name>.crt`, `<name>.key`); returns the certificate and key.
/// P-256 keys and SHA-256 signatures, so SCRAM channel binding works over connections that present them.
pub fn make_certificate(dir: &Path, ca: &str, host: &str, name: &str) -> (PathBuf, PathBuf) {
    let file = |suffix: &str| dir.join(suffix);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    if !file(&format!("{ca}.crt")).exists() {
        let mut req = Command::new("openssl");
        req.current_dir(dir)
            .args(["req", "-x509"])
            .args(ec)
            .args([
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ])
            .args(["-subj", &format!("/CN={ca}"), "-days", "2"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign"]);
        run(req, "openssl req (CA)");
    }
    fs::write(
        file(&format!("{name}.ext")),
        format!(
            "subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("write the extensions file");
    let mut csr = Command::new("openssl");
    csr.current_dir(dir)
        .args(["req", "-new"])
        .args(ec)
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ])
        .args(["-subj", &format!("/CN={host}")]);
    run(csr, "openssl req (server)");
    let mut sign = Command::new("openssl");
    sign.current_dir(dir)
        .args(["x509", "-req", "-in", &format!("{name}.csr")])
        .args(["-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key")])
        .args(["-CAcreateserial", "-days", "2"])
        .args([
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    run(sign, "openssl x509 (sign)");
    (file(&format!("{name}.crt")), file(&format!("{name}.key")))
}

/// Runs a command to completion; panics with its output when it fails.
fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn append(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Percent-encodes all but unreserved characters and `/`, for a path in a URL's query.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
