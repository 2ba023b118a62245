//! Process and store hygiene (issue 14, items 6–9): no core dumps, secrets out of swap, descriptors, store files
//! that cannot serve, stores that are not there, and a private output file.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::Path,
    process::{Child, Command as StdCommand, Stdio},
    sync::mpsc,
    thread,
};

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

use crate::common::{DEADLINE, Server, TestEnv, stderr_of, wait_until, zavro_process};

/// A background process, killed when dropped.
struct Running(Child);

impl Running {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes `cmd` start with these limits, as a shell's `ulimit` would, so the test sees what zavro changes.
fn with_limits(cmd: &mut StdCommand, limits: Vec<(Resource, u64, u64)>) {
    // SAFETY: between fork and exec the closure only calls setrlimit(2), which is async-signal-safe, and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for (resource, soft, hard) in &limits {
                setrlimit(*resource, *soft, *hard).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// Limits that would let a process dump core (as large as this test process may allow), so the test sees zavro
/// take them away.
fn core_dumps_allowed() -> (Resource, u64, u64) {
    let most = if nix::unistd::geteuid().is_root() {
        RLIM_INFINITY
    } else {
        getrlimit(Resource::RLIMIT_CORE).map_or(0, |(_, hard)| hard)
    };
    (Resource::RLIMIT_CORE, most, most)
}

/// Spawns `zavro serve` from `cmd` (already given --db) and waits for its `listening on` line.
fn start_serve(cmd: StdCommand) -> Running {
    start_serve_with_stderr(cmd).0
}

/// [`start_serve`], also returning the lines `serve` printed before `listening on`.
fn start_serve_with_stderr(mut cmd: StdCommand) -> (Running, Vec<String>) {
    let mut child = cmd
        .args(["serve", "127.0.0.1:*"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zavro serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let running = Running(child);
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) if line.starts_with("listening on ") => return (running, seen),
            Ok(line) => seen.push(line),
            Err(_) => panic!("zavro serve did not start; stderr: {seen:?}"),
        }
    }
}

/// The soft and hard values of one line of `/proc/PID/limits`, e.g. "Max core file size".
fn proc_limit(pid: u32, name: &str) -> (String, String) {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/PID/limits");
    let line = text
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} in /proc/{pid}/limits:\n{text}"));
    let mut values = line[name.len()..].split_whitespace();
    let mut next = || values.next().unwrap_or_default().to_owned();
    (next(), next())
}

fn core_limit_is_zero(pid: u32) -> bool {
    proc_limit(pid, "Max core file size") == ("0".into(), "0".into())
}

/// A field of `/proc/PID/status`, e.g. "VmLck" or "Uid".
fn proc_status(pid: u32, field: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

#[test]
fn serve_runs_with_core_dumps_off_and_open_files_for_its_connections() {
    let env = TestEnv::new();
    env.add_key();
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let low = hard.min(256) - 1;
    let mut cmd = zavro_process();
    cmd.arg("--db").arg(&env.db);
    with_limits(
        &mut cmd,
        vec![core_dumps_allowed(), (Resource::RLIMIT_NOFILE, low, hard)],
    );
    let server = start_serve(cmd);

    assert_eq!(
        proc_limit(server.pid(), "Max core file size"),
        ("0".into(), "0".into()),
        "started with core dumps unlimited; serve must take both limits to 0"
    );
    // Raised to make room for the default cap of connections (1024 when the hard limit allows, more than the
    // soft limit it started with), then lowered to that room beside the server's own files
    // (connections::without_the_option_the_default_cap_applies checks the exact value).
    let (soft_files, hard_files) = proc_limit(server.pid(), "Max open files");
    let soft: u64 = soft_files.parse().expect("a number");
    let cap = hard.saturating_sub(64).clamp(1, 1024);
    assert!(
        soft > cap && soft <= hard,
        "started with soft limit {low}, now {soft}, hard {hard}"
    );
    assert_eq!(hard_files, hard.to_string());
}

#[test]
fn commands_that_hold_a_secret_turn_core_dumps_off_before_reading_it() {
    let env = TestEnv::new();
    for args in [
        vec!["keys", "add", "--secret-stdin"],
        vec![
            "send",
            "tcp://127.0.0.1:9",
            "--plaintext",
            "--key",
            "ZKhygiene",
        ],
    ] {
        let mut cmd = zavro_process();
        cmd.arg("--db").arg(&env.db).args(&args);
        with_limits(&mut cmd, vec![core_dumps_allowed()]);
        // Stdin stays open and empty: the command waits there, with the secret (or the records) still to come.
        let child = Running(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn zavro"),
        );
        wait_until(&format!("zavro {args:?} to have core dumps off"), || {
            core_limit_is_zero(child.pid())
        });
        // Nothing but a secret is locked in memory, and none has been read yet.
        assert_eq!(proc_status(child.pid(), "VmLck"), "0 kB", "zavro {args:?}");
    }
}

#[test]
fn send_keeps_its_secret_out_of_swap() {
    // A port nobody listens on: send waits for a reply that never comes, holding the secret meanwhile.
    let mut child = zavro_process();
    child
        .args([
            "send",
            "tcp://127.0.0.1:9",
            "--plaintext",
            "--batch",
            "1",
            "--timeout",
            "60",
        ])
        .env("ZAVRO_KEY", "ZKhygiene")
        .env("ZAVRO_SECRET", "a-secret-that-stays-in-ram")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = child.spawn().expect("spawn zavro send");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let child = Running(child);
    use std::io::Write;
    stdin
        .write_all(b"{\"n\":1}\n")
        .expect("write the first record");
    // The first batch is complete, so send reads the secret and locks its pages: VmLck is no longer 0 kB.
    wait_until("send to lock the page of its secret", || {
        proc_status(child.pid(), "VmLck") != "0 kB"
    });
    drop(stdin);
}

/// The warning `serve` prints when it may not lock its memory.
const SWAP_WARNING: &str = "zavro: warning: serve's memory is not locked";

/// VmLck of `pid` in kB.
fn locked_kib(pid: u32) -> u64 {
    let value = proc_status(pid, "VmLck");
    value
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("VmLck {value:?}"))
}

#[test]
fn serve_locks_all_its_memory_when_it_may_lock_without_limit() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED serve_locks_all_its_memory_when_it_may_lock_without_limit: needs root (CAP_IPC_LOCK) to \
             lock without limit; the warning path is tested by serve_warns_…"
        );
        return;
    }
    let env = TestEnv::new();
    env.add_key();
    let mut cmd = zavro_process();
    cmd.arg("--db").arg(&env.db);
    // A small limit: CAP_IPC_LOCK alone must be enough.
    with_limits(
        &mut cmd,
        vec![(Resource::RLIMIT_MEMLOCK, 64 << 10, 64 << 10)],
    );
    let (server, before) = start_serve_with_stderr(cmd);
    assert!(
        !before.iter().any(|l| l.starts_with(SWAP_WARNING)),
        "{before:?}"
    );
    // Everything it has mapped, the store's pages and the secrets read from them among it, is locked: far
    // more than the 64 KiB the limit would allow without the capability.
    let locked = locked_kib(server.pid());
    assert!(locked > 1024, "VmLck {locked} kB");
}

#[test]
fn serve_warns_that_its_secrets_may_reach_swap_when_it_may_not_lock_its_memory() {
    let env = TestEnv::new();
    env.add_key();
    let mut cmd = zavro_process();
    cmd.arg("--db").arg(&env.db);
    with_limits(
        &mut cmd,
        vec![(Resource::RLIMIT_MEMLOCK, 64 << 10, 64 << 10)],
    );
    if nix::unistd::geteuid().is_root() {
        // Root keeps CAP_IPC_LOCK across exec unless it leaves the bounding set.
        // SAFETY: between fork and exec the closure only calls prctl(2), which is async-signal-safe, and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_CAPBSET_DROP, 14, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let (server, before) = start_serve_with_stderr(cmd);
    let warnings: Vec<_> = before
        .iter()
        .filter(|l| l.starts_with(SWAP_WARNING))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line: {before:?}");
    let warning = warnings[0];
    assert!(
        warning.contains("64 KiB")
            && warning.contains("may be written to swap")
            && warning.contains("LimitMEMLOCK=infinity"),
        "{warning}"
    );
    assert_eq!(locked_kib(server.pid()), 0, "nothing locked");
}

/// As root, the process runs as `nobody`, so that /proc/PID/status owned by root shows PR_SET_DUMPABLE 0 (a
/// dumpable process's /proc/PID files belong to its own user).
#[test]
fn a_zavro_process_is_not_dumpable() {
    let root = nix::unistd::geteuid().is_root();
    let mut cmd = zavro_process();
    cmd.args([
        "send",
        "tcp://127.0.0.1:9",
        "--plaintext",
        "--key",
        "ZKhygiene",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if root {
        cmd.uid(65534).gid(65534);
    }
    let child = match cmd.spawn() {
        Ok(child) => Running(child),
        Err(e) if root && e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: user nobody cannot run {:?} here: {e}", cmd);
            return;
        }
        Err(e) => panic!("spawn zavro: {e}"),
    };
    let pid = child.pid();
    // Wait until zavro itself runs (its core limit is set), then look at who owns its /proc entry.
    wait_until("zavro to start", || core_limit_is_zero(pid));
    let uid = proc_status(pid, "Uid");
    assert!(!uid.starts_with("0\t"), "runs as uid {uid}");
    // The files in /proc/PID, not the directory itself, which always shows the process's user.
    let owner = std::os::unix::fs::MetadataExt::uid(
        &fs::metadata(format!("/proc/{pid}/status")).expect("stat /proc/PID/status"),
    );
    assert_eq!(
        owner, 0,
        "/proc/{pid}/status of a process running as {uid} is owned by root only when it is not dumpable"
    );
}

#[test]
fn max_connections_that_do_not_fit_the_open_file_limit_are_refused() {
    let env = TestEnv::new();
    env.add_key();
    let mut cmd = zavro_process();
    cmd.arg("--db")
        .arg(&env.db)
        .args(["serve", "127.0.0.1:*", "--max-connections", "500"]);
    with_limits(&mut cmd, vec![(Resource::RLIMIT_NOFILE, 256, 256)]);
    let out = cmd.output().expect("run zavro serve");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "zavro: --max-connections 500 needs 564 open files, but this process may open 256; raise the \
         limit (ulimit -n, LimitNOFILE=) or ask for at most 192\n"
    );
}

#[test]
fn the_output_file_is_created_private_and_an_existing_one_keeps_its_mode() {
    let env = TestEnv::new();
    env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.output_path()), 0o600);
    server.stop();

    fs::set_permissions(env.output_path(), fs::Permissions::from_mode(0o640)).unwrap();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    assert_eq!(mode(&env.output_path()), 0o640);
    server.stop();
}

// The store: only `keys add` creates it, and files beside it that SQLite cannot use stop every command at once.

#[test]
fn commands_other_than_keys_add_refuse_a_store_that_does_not_exist() {
    let env = TestEnv::new();
    let commands: [&[&str]; 6] = [
        &["serve", "127.0.0.1:*"],
        &["keys", "list"],
        &["keys", "revoke", "ZKgone"],
        &["audit", "query"],
        &["audit", "verify"],
        &["audit", "stats"],
    ];
    for args in commands {
        let out = env.zavro().args(args).assert().code(7);
        assert_eq!(
            stderr_of(&out),
            format!(
                "zavro: no store at {}; `zavro keys add` creates one, or give the path of an existing \
                 store (--db or ZAVRO_DB)\n",
                env.db.display()
            ),
            "zavro {args:?}"
        );
        assert!(!env.db.exists(), "zavro {args:?} created the store");
    }
    env.add_key();
    assert!(env.db.exists(), "keys add creates the store");
    env.zavro().args(["keys", "list"]).assert().success();
}

#[test]
fn a_store_in_a_directory_that_does_not_exist_is_not_created_either() {
    let env = TestEnv::new();
    let db = env.path("missing/dir/zavro.db");
    crate::common::bare_zavro()
        .arg("--db")
        .arg(&db)
        .args(["audit", "query"])
        .assert()
        .code(7);
    assert!(!env.path("missing").exists());
}

/// Runs `zavro serve` on `env`'s store expecting it to refuse to start; returns its stderr.
fn serve_refuses(env: &TestEnv) -> String {
    let out = env.zavro().args(["serve", "127.0.0.1:*"]).assert().code(1);
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    stderr
}

fn shm_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-shm");
    name.into()
}

#[test]
fn a_shm_file_that_is_a_directory_is_one_clear_error_at_start_up() {
    let env = TestEnv::new();
    env.add_key();
    let shm = shm_path(&env.db);
    fs::create_dir(&shm).unwrap();
    assert_eq!(
        serve_refuses(&env),
        format!(
            "zavro: store file {} is a directory, not a regular file; SQLite needs it to be a file this \
             process can read and write\n",
            shm.display()
        )
    );
    // The other commands check it the same way.
    env.zavro().args(["keys", "list"]).assert().code(1);
}

#[test]
fn a_shm_link_to_a_device_is_refused() {
    let env = TestEnv::new();
    env.add_key();
    let shm = shm_path(&env.db);
    std::os::unix::fs::symlink("/dev/full", &shm).unwrap();
    let stderr = serve_refuses(&env);
    assert!(
        stderr.contains(&format!(
            "store file {} is a character device",
            shm.display()
        )),
        "{stderr}"
    );
}

/// Removes the immutable attribute again, so the temporary directory can be deleted whatever the test did.
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = StdCommand::new("chattr").arg("-i").arg(self.0).status();
    }
}

/// The case that crashed the server with SIGBUS. Needs `chattr` and CAP_LINUX_IMMUTABLE (root on ext4, xfs…);
/// where the attribute cannot be set the test says so and checks nothing.
#[test]
fn an_immutable_shm_file_is_one_clear_error_at_start_up() {
    let env = TestEnv::new();
    env.add_key();
    let shm = shm_path(&env.db);
    // A fresh WAL index: SQLite would use it as it finds it.
    fs::write(&shm, vec![0u8; 32 * 1024]).unwrap();
    fs::set_permissions(&shm, fs::Permissions::from_mode(0o600)).unwrap();
    let set = StdCommand::new("chattr")
        .arg("+i")
        .arg(&shm)
        .stderr(Stdio::null())
        .status();
    if !set.is_ok_and(|status| status.success()) {
        eprintln!("skipped: cannot make {} immutable here", shm.display());
        return;
    }
    let _guard = Immutable(&shm);
    assert_eq!(
        serve_refuses(&env),
        format!(
            "zavro: store file {} cannot be read and written by this process (Operation not permitted \
             (os error 1)); check its owner, mode and attributes (lsattr)\n",
            shm.display()
        )
    );
}
