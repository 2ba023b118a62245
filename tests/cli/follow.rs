//! `send --follow FILE --spool DIR` against a real server: lines appended while it runs, a rotation by rename
//! (with lines written to the renamed file), a truncation, and `send` killed with SIGKILL and started again;
//! every line is stored exactly once, which the server's output file and the audit trail both show.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::common::{DEADLINE, Server, TestEnv, wait_until, zavro_process};

/// A running `zavro send --follow`, killed when dropped if the test did not stop it.
struct Following {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Following {
    /// Starts `zavro send ENDPOINT --plaintext --follow LOG --spool SPOOL` with the key and secret in the
    /// environment; its stderr goes to `stderr` (appended, so restarts keep what earlier runs said).
    fn start(
        endpoint: &str,
        key: &str,
        secret: &str,
        log: &Path,
        spool: &Path,
        stderr: &Path,
    ) -> Following {
        Following::start_with(endpoint, key, secret, log, spool, stderr, &[])
    }

    /// [`Following::start`] with extra arguments.
    fn start_with(
        endpoint: &str,
        key: &str,
        secret: &str,
        log: &Path,
        spool: &Path,
        stderr: &Path,
        extra: &[&str],
    ) -> Following {
        let err = OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr)
            .unwrap();
        let child = zavro_process()
            .args([
                "send",
                endpoint,
                "--plaintext",
                "--linger",
                "20ms",
                "--follow",
            ])
            .arg(log)
            .arg("--spool")
            .arg(spool)
            .args(extra)
            .env("ZAVRO_KEY", key)
            .env("ZAVRO_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn zavro send --follow");
        Following {
            child: Some(child),
            stderr: stderr.to_path_buf(),
        }
    }

    fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("running");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
    }

    /// Sends `signal` and waits (bounded) for the exit.
    fn signal(mut self, signal: Signal) -> ExitStatus {
        kill(self.pid(), signal).expect("signal send");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait for send") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "send --follow did not exit within {DEADLINE:?} of {signal}; stderr: {}",
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Appends records `numbers` as JSON lines through `file`.
fn write_records(file: &mut File, numbers: std::ops::RangeInclusive<u64>) {
    let text: String = numbers.map(|n| format!("{{\"n\":{n}}}\n")).collect();
    file.write_all(text.as_bytes()).unwrap();
}

fn appender(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// The `n` of every record the server wrote, in the order written.
fn stored(env: &TestEnv) -> Vec<u64> {
    env.output_lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("the output is JSON lines");
            value["n"].as_u64().expect("every record has n")
        })
        .collect()
}

/// Waits until the server has stored `count` records (or more: then the check after it fails).
fn wait_for_records(env: &TestEnv, count: usize, stderr: &Path) {
    wait_until(&format!("{count} records stored"), || {
        let stored = env.output_lines().len();
        assert!(
            stored <= count,
            "{stored} records stored, more than the {count} written; send said: {}",
            fs::read_to_string(stderr).unwrap_or_default()
        );
        stored == count
    });
}

/// Asserts that records 1..=`last` were each stored exactly once, in the output file and in the audit trail.
fn assert_each_once(env: &TestEnv, last: u64) {
    let mut numbers = stored(env);
    numbers.sort_unstable();
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(numbers, expected, "every line stored exactly once");
    let audited: u64 = env
        .audit_sends()
        .iter()
        .filter(|row| row["status"] == "accepted")
        .map(|row| {
            row["records"]
                .as_u64()
                .expect("a send row counts its records")
        })
        .sum();
    assert_eq!(audited, last, "the audit trail counts each record once");
}

#[test]
fn follow_stores_every_line_once_across_rotation_truncation_and_sigkill() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let log = env.path("app.log");
    let rotated = env.path("app.log.1");
    let spool = env.path("spool");
    let stderr = env.path("send.err");
    let start = || Following::start(server.endpoint(), &key, &secret, &log, &spool, &stderr);

    // Lines written before send starts, then while it runs.
    let mut writer = appender(&log);
    write_records(&mut writer, 1..=20);
    let send = start();
    // A line that is not JSON is skipped with a warning; the lines around it go.
    writer.write_all(b"not json\n").unwrap();
    write_records(&mut writer, 21..=50);
    wait_for_records(&env, 50, &stderr);
    let said = fs::read_to_string(&stderr).unwrap();
    assert!(
        said.contains("app.log: the line ending at byte")
            && said.contains("is not a record (not JSON"),
        "{said}"
    );

    // Rotation by rename: the writer goes on in the renamed file before it reopens the path.
    fs::rename(&log, &rotated).unwrap();
    write_records(&mut writer, 51..=60);
    let mut writer = appender(&log);
    write_records(&mut writer, 61..=70);
    wait_for_records(&env, 70, &stderr);

    // Truncation (copytruncate's way) once everything before it was stored, then new lines from byte 0.
    writer.set_len(0).unwrap();
    write_records(&mut writer, 71..=80);
    wait_for_records(&env, 80, &stderr);

    // SIGKILL right after lines are written, lines written while send is down, a restart: five times.
    let mut send = send;
    let mut last = 80;
    for _ in 0..5 {
        write_records(&mut writer, last + 1..=last + 20);
        let status = send.signal(Signal::SIGKILL);
        assert!(!status.success(), "killed: {status:?}");
        write_records(&mut writer, last + 21..=last + 40);
        last += 40;
        send = start();
    }
    wait_for_records(&env, last as usize, &stderr);

    // SIGTERM ends it cleanly.
    let status = send.signal(Signal::SIGTERM);
    assert!(
        status.success(),
        "send --follow exits 0 on SIGTERM: {status:?}; stderr: {}",
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    assert_each_once(&env, last);
    server.stop();
}

/// Records in the spool's requests not acknowledged yet, read from its segment files (format in
/// src/spool/segment.rs) and its `acked` pointer.
fn waiting_records(spool: &Path) -> u64 {
    let acked: u64 = fs::read_to_string(spool.join("acked"))
        .map(|text| text.trim().parse().expect("acked holds a number"))
        .unwrap_or(0);
    let Ok(dir) = fs::read_dir(spool) else {
        return 0;
    };
    dir.map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .flat_map(|path| zavro::spool::segment::scan(&fs::read(path).unwrap()).entries)
        .filter(|entry| entry.seq >= acked)
        .map(|entry| entry.records)
        .sum()
}

/// A follow whose server is not running yet: the endpoint of a port found free (by a server started and stopped
/// there), the followed log, the spool, and the file `send`'s stderr goes to, all in the test's directory.
struct Offline {
    endpoint: String,
    /// The endpoint without `tcp://`, for starting the server there later.
    bind: String,
    log: PathBuf,
    spool: PathBuf,
    stderr: PathBuf,
}

impl Offline {
    fn new(env: &TestEnv) -> Offline {
        let endpoint = env.start_server().endpoint().to_owned();
        Offline {
            bind: endpoint.trim_start_matches("tcp://").to_owned(),
            endpoint,
            log: env.path("app.log"),
            spool: env.path("spool"),
            stderr: env.path("send.err"),
        }
    }

    /// `send --follow LOG --spool SPOOL` as `key`, one quick try per request, so a server that is down leaves
    /// the requests waiting at once.
    fn start(&self, key: &str, secret: &str) -> Following {
        let quick = ["--timeout", "0.5", "--retries", "0"];
        Following::start_with(
            &self.endpoint,
            key,
            secret,
            &self.log,
            &self.spool,
            &self.stderr,
            &quick,
        )
    }
}

#[test]
fn follow_with_the_server_down_spools_resumes_from_the_spool_after_sigkill_and_delivers_once_it_is_back()
 {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let offline = Offline::new(&env);
    let Offline {
        bind,
        log,
        spool,
        stderr,
        ..
    } = &offline;
    let start = || offline.start(&key, &secret);

    // Everything is spooled, nothing acknowledged; then send is killed: only the spooled requests' positions
    // say where it stopped.
    let mut writer = appender(log);
    write_records(&mut writer, 1..=30);
    let send = start();
    wait_until("30 records spooled", || waiting_records(spool) == 30);
    assert!(!send.signal(Signal::SIGKILL).success());
    write_records(&mut writer, 31..=40);

    // The server is back: the restarted send delivers what waited, then reads on from where the spool says.
    let server = Server::start(&env, bind, &[]);
    let send = start();
    wait_for_records(&env, 40, stderr);

    // The server goes away while send runs, and comes back: send spools meanwhile and connects again.
    server.stop();
    write_records(&mut writer, 41..=50);
    wait_until("10 more records spooled", || waiting_records(spool) == 10);
    wait_until("send to find the server gone", || {
        fs::read_to_string(stderr).is_ok_and(|said| said.contains("could not be reached"))
    });
    let server = Server::start(&env, bind, &[]);
    wait_for_records(&env, 50, stderr);

    let status = send.signal(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert_each_once(&env, 50);
    let said = fs::read_to_string(stderr).unwrap();
    assert!(said.contains("the server answers again"), "{said}");
    server.stop();
}

#[test]
fn follow_needs_a_spool_json_and_distinct_files() {
    let env = TestEnv::new();
    let log = env.path("app.log");
    let spool = env.path("spool");
    // `send --follow LOG ARGS…` to a port nobody listens on: a usage error (exit 2) before anything is read;
    // what it said.
    let refused = |args: &[&std::ffi::OsStr]| {
        let out = env
            .zavro()
            .args(["send", "127.0.0.1:1", "--plaintext", "--follow"])
            .arg(&log)
            .args(args)
            .env("ZAVRO_KEY", "ZK0123456789ABCDEF")
            .env("ZAVRO_SECRET", "s")
            .assert()
            .code(2);
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    };
    let with_spool = ["--spool".as_ref(), spool.as_os_str()];

    let said = refused(&[]);
    assert!(said.contains("--spool"), "{said}");
    let said = refused(&[&with_spool[..], &["--format".as_ref(), "avro".as_ref()]].concat());
    assert!(said.contains("--follow reads JSON lines"), "{said}");
    // A link to a followed file would send its lines twice.
    std::fs::write(&log, "{\"n\":1}\n").unwrap();
    let link = env.path("current.log");
    std::os::unix::fs::symlink(&log, &link).unwrap();
    let said = refused(&[&with_spool[..], &["--follow".as_ref(), link.as_os_str()]].concat());
    assert!(said.contains("are the same file"), "{said}");
}

#[test]
fn a_flush_of_what_follow_spooled_keeps_the_position_for_the_next_follow() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let offline = Offline::new(&env);
    let Offline {
        endpoint,
        bind,
        log,
        spool,
        stderr,
    } = &offline;
    let start = || offline.start(&key, &secret);

    // Followed while the server is down, stopped with everything spooled.
    let mut writer = appender(log);
    write_records(&mut writer, 1..=20);
    let send = start();
    wait_until("20 records spooled", || waiting_records(spool) == 20);
    assert!(send.signal(Signal::SIGTERM).success());

    // `send --flush` delivers them and deletes their segments: the position they carried must survive that.
    let server = Server::start(&env, bind, &[]);
    env.zavro()
        .args(["send", endpoint, "--plaintext", "--flush", "--spool"])
        .arg(spool)
        .env("ZAVRO_KEY", &key)
        .env("ZAVRO_SECRET", &secret)
        .assert()
        .success();
    assert_eq!(stored(&env).len(), 20);

    write_records(&mut writer, 21..=30);
    let send = start();
    wait_for_records(&env, 30, stderr);
    assert!(send.signal(Signal::SIGTERM).success());
    assert_each_once(&env, 30);
    server.stop();
}
