//! The systemd unit (contrib/zavro.service) and what it relies on: `systemd-analyze verify` accepts it, a real
//! server tells a real notification socket READY=1 only once it accepts connections and STOPPING=1 on SIGTERM,
//! and the unit's system-call filter, address families and MemoryDenyWriteExecute leave a real server under
//! load every call it makes (checked on an strace of it, as no systemd runs the tests).

use std::{
    collections::{BTreeSet, HashMap},
    net::TcpStream,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command as StdCommand, Stdio},
    time::Instant,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::json;

use crate::common::{
    DEADLINE, RawClient, TestEnv, assert_accepted, on_both_backends, signed_now, stdout_of,
    wait_until, zavro_bin, zavro_process,
};

/// The unit file as shipped.
fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/zavro.service")
}

/// The unit's text with ExecStart's binary replaced by the one under test, written into `dir`.
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(unit_path()).expect("read contrib/zavro.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/zavro "), "{unit}");
    let copy = dir.join("zavro.service");
    let bin = zavro_bin().to_str().expect("a UTF-8 binary path");
    std::fs::write(&copy, unit.replace("/usr/local/bin/zavro", bin)).expect("write the unit");
    copy
}

/// True when `program --version` runs; otherwise says loudly that `test` is skipped.
fn available(program: &str, test: &str) -> bool {
    let runs = StdCommand::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !runs {
        eprintln!("SKIPPED ({program} not installed): {test}");
    }
    runs
}

/// The values of every `NAME=` line of the unit, in order.
fn directive(unit: &str, name: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_has_the_hardening_it_promises() {
    let unit = std::fs::read_to_string(unit_path()).expect("read contrib/zavro.service");
    for expected in [
        "Type=notify",
        "User=zavro",
        "StateDirectory=zavro",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "LimitNOFILE=65536",
        "LimitMEMLOCK=infinity",
        "LoadCredential=zavro-master-key:/etc/zavro/master.key",
    ] {
        assert!(
            unit.lines().any(|line| line == expected),
            "contrib/zavro.service lacks {expected}"
        );
    }
    // The credential's name is the one zavro looks for in $CREDENTIALS_DIRECTORY.
    assert!(
        directive(&unit, "ExecStart")[0].contains(" serve "),
        "{unit}"
    );

    let test = "the_unit_passes_systemd_analyze_verify_and_has_the_hardening_it_promises";
    if !available("systemd-analyze", test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = unit_for_test(dir.path());
    // --man=no: the man page it names (man/zavro-serve.1) is installed with the binary, not on the test machine.
    let verified = StdCommand::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success(),
        "systemd-analyze verify: {stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns: {stderr}"
    );
}

/// A `zavro serve` started with NOTIFY_SOCKET (and any `extra` environment), killed if a test leaves it running.
struct Notifying {
    child: Child,
}

impl Notifying {
    fn start(env: &TestEnv, socket: &Path, args: &[&str]) -> Notifying {
        Notifying::start_with(zavro_process(), env, socket, args)
    }

    fn start_with(mut cmd: StdCommand, env: &TestEnv, socket: &Path, args: &[&str]) -> Notifying {
        if let Some(key) = &env.master_key {
            cmd.env("ZAVRO_MASTER_KEY_FILE", key);
        }
        cmd.env("NOTIFY_SOCKET", socket)
            .arg("--db")
            .arg(&env.db)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Notifying {
            child: cmd.spawn().expect("spawn zavro serve"),
        }
    }

    /// Waits (bounded) for the exit.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not exit in time");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Notifying {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A notification socket in `dir`, as systemd binds one for a `Type=notify` service.
fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    (socket, path)
}

/// The next notification, as text; panics when none comes within [`DEADLINE`].
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buffer = [0; 4096];
    let n = socket
        .recv(&mut buffer)
        .expect("a notification within the deadline");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

/// The endpoint a READY=1 notification's STATUS= names.
fn ready_endpoint(notification: &str) -> String {
    assert!(
        notification.lines().any(|line| line == "READY=1"),
        "{notification:?}"
    );
    notification
        .lines()
        .find_map(|line| line.strip_prefix("STATUS=listening on "))
        .unwrap_or_else(|| panic!("no STATUS=listening on …: {notification:?}"))
        .to_owned()
}

#[test]
fn serve_notifies_ready_once_it_accepts_connections_and_stopping_on_sigterm() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let (socket, path) = notify_socket(env.dir.path());
    let mut server = Notifying::start(&env, &path, &["127.0.0.1:*", "--plaintext"]);

    // The first word from the server is READY=1, and at that moment its port takes connections and requests.
    let ready = next_notification(&socket);
    let endpoint = ready_endpoint(&ready);
    let address = endpoint.strip_prefix("tcp://").expect("a tcp endpoint");
    TcpStream::connect(address).expect("the port accepts connections once READY=1 is sent");
    let reply =
        RawClient::req(&endpoint).request(&signed_now(&key, &secret, &[json!(1)]).to_frames());
    assert_accepted(&reply, 1);

    let pid = Pid::from_raw(i32::try_from(server.child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let stopping = next_notification(&socket);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping:?}"
    );
    assert!(server.wait().success());
}

/// Every system call in each group `systemd-analyze syscall-filter` lists, its nested groups expanded.
fn syscall_groups() -> HashMap<String, BTreeSet<String>> {
    let listed = StdCommand::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .expect("run systemd-analyze syscall-filter");
    assert!(listed.status.success());
    let text = String::from_utf8(listed.stdout).unwrap();
    let mut direct: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            current = Some(entry.to_owned());
            direct.entry(entry.to_owned()).or_default();
        } else if let Some(group) = &current {
            direct.get_mut(group).unwrap().push(entry.to_owned());
        }
    }
    fn expand(name: &str, direct: &HashMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
        match direct.get(name) {
            Some(members) => {
                for member in members {
                    expand(member, direct, out);
                }
            }
            None if name.starts_with('@') => panic!("unknown group {name}"),
            None => {
                out.insert(name.to_owned());
            }
        }
    }
    direct
        .keys()
        .map(|group| {
            let mut calls = BTreeSet::new();
            expand(group, &direct, &mut calls);
            (group.clone(), calls)
        })
        .collect()
}

/// The system calls the unit's SystemCallFilter= lines allow: the union of the allow lists less the union of
/// the `~` deny lists (the two kinds systemd combines this way when the first line is an allow list).
fn allowed_by_unit(unit: &str) -> BTreeSet<String> {
    let groups = syscall_groups();
    let names = |list: &str| -> BTreeSet<String> {
        list.split_whitespace()
            .flat_map(|name| match groups.get(name) {
                Some(calls) => calls.iter().cloned().collect::<Vec<_>>(),
                None => vec![name.to_owned()],
            })
            .collect()
    };
    let lines = directive(unit, "SystemCallFilter");
    assert!(!lines[0].starts_with('~'), "the first filter must allow");
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for line in &lines {
        match line.strip_prefix('~') {
            Some(deny) => denied.extend(names(deny)),
            None => allowed.extend(names(line)),
        }
    }
    allowed.difference(&denied).cloned().collect()
}

/// A sealed store (the master key read and locked in RAM), CURVE (libsodium), SQLite or PostgreSQL, real load.
fn the_unit_s_syscall_filter_and_memory_deny_write_execute_leave_serve_all_it_uses(env: TestEnv) {
    let test = "the_unit_s_syscall_filter_and_memory_deny_write_execute_leave_serve_all_it_uses";
    if !available("systemd-analyze", test) || !available("strace", test) {
        return;
    }
    let env = if env.master_key.is_some() {
        env // PostgreSQL: always sealed
    } else {
        let master_key = env.path("master.key");
        env.zavro()
            .arg("--master-key-file")
            .arg(&master_key)
            .args(["store", "seal", "--create-key"])
            .assert()
            .success();
        TestEnv {
            master_key: Some(master_key),
            ..env
        }
    };
    let (key, secret) = env.add_key();
    let server_key = stdout_of(&env.zavro().arg("server-key").assert().success())
        .trim()
        .to_owned();
    let (socket, path) = notify_socket(env.dir.path());
    let trace = env.path("strace.log");
    let plain = zavro_process();
    let mut traced = StdCommand::new("strace");
    traced
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(plain.get_program());
    for (name, value) in plain.get_envs() {
        match value {
            Some(value) => traced.env(name, value),
            None => traced.env_remove(name),
        };
    }
    let output = env.output_path();
    let mut server = Notifying::start_with(
        traced,
        &env,
        &path,
        &["127.0.0.1:*", "--output", output.to_str().unwrap()],
    );
    let endpoint = ready_endpoint(&next_notification(&socket));
    let records: String = (0..5000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    env.zavro()
        .args([
            "send",
            &endpoint,
            "--server-key",
            &server_key,
            "--batch",
            "100",
        ])
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .write_stdin(records)
        .assert()
        .success();
    // A refusal too, and a client the handshake turns away.
    env.send_curve(
        &endpoint,
        &server_key,
        &key,
        "not-the-secret-0123456789abcdef",
        "1",
    )
    .failure();
    // SIGTERM to serve itself (strace's first traced process), as systemd sends it.
    let text = std::fs::read_to_string(&trace).unwrap();
    let pid: i32 = text
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("strace lines start with the pid");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let stopping = next_notification(&socket);
    assert!(stopping.contains("STOPPING=1"), "{stopping:?}");
    assert!(server.wait().success());
    wait_until("5000 records written", || env.output_lines().len() == 5000);

    let text = std::fs::read_to_string(&trace).unwrap();
    let mut used = BTreeSet::new();
    let mut write_and_execute = Vec::new();
    let mut families = BTreeSet::new();
    for line in text.lines() {
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue; // `<... resumed>`, `+++ exited`, `--- SIGTERM`
        }
        used.insert(name.to_owned());
        // What MemoryDenyWriteExecute= refuses: a mapping both writable and executable, or making memory
        // executable after the fact.
        let exec = args.contains("PROT_EXEC");
        if (name == "mmap" && exec && args.contains("PROT_WRITE"))
            || (matches!(name, "mprotect" | "pkey_mprotect") && exec)
            || (name == "shmat" && args.contains("SHM_EXEC"))
        {
            write_and_execute.push(line.to_owned());
        }
        if name == "socket" {
            families.insert(args.split(',').next().unwrap_or("").to_owned());
        }
    }
    // The calls strace saw include the execve that started serve and its loader's: both run under the filter.
    assert!(
        used.contains("execve") && used.contains("mlock"),
        "{used:?}"
    );
    let allowed = allowed_by_unit(&std::fs::read_to_string(unit_path()).unwrap());
    let refused: Vec<&String> = used
        .iter()
        .filter(|call| !allowed.contains(*call))
        .collect();
    assert!(
        refused.is_empty(),
        "serve made system calls the unit's filter refuses: {refused:?} (all it made: {used:?})"
    );
    assert!(
        write_and_execute.is_empty(),
        "MemoryDenyWriteExecute would refuse: {write_and_execute:?}"
    );
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let permitted = directive(&unit, "RestrictAddressFamilies").join(" ");
    for family in &families {
        assert!(
            permitted.split_whitespace().any(|f| f == family),
            "serve opened an {family} socket, which RestrictAddressFamilies= refuses"
        );
    }
}

on_both_backends!(the_unit_s_syscall_filter_and_memory_deny_write_execute_leave_serve_all_it_uses);
