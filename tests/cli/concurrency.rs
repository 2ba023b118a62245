//! Several processes on one store at once: commands beside a busy server (on SQLite and on PostgreSQL, where
//! also beside two servers on one database), and a fresh store opened by many.

use std::{
    io::Write,
    path::Path,
    process::{Child, ExitStatus, Stdio},
    sync::{
        Barrier, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::common::{DEADLINE, TestEnv, bare_zavro, parse_ndjson, wait_until};
use crate::common::{Server, on_both_backends, zavro_process};

on_both_backends!(
    keys_and_audit_commands_succeed_while_the_server_is_busy,
    many_concurrent_senders_with_admin_commands_store_everything_once_with_consistent_audit_ids,
);

/// Runs one command and records a failure description instead of panicking in a helper thread.
fn run_recording(env: &TestEnv, args: &[&str], failures: &Mutex<Vec<String>>) -> Vec<u8> {
    let out = env.zavro().args(args).output().expect("run zavro");
    if !out.status.success() {
        failures.lock().unwrap().push(format!(
            "`zavro {}` exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    out.stdout
}

fn keys_and_audit_commands_succeed_while_the_server_is_busy(env: TestEnv) {
    const SENDS: usize = 20;
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint().to_owned();
    let failures = Mutex::new(Vec::new());
    let sending = AtomicBool::new(true);
    let mut admin_rounds = 0;

    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..SENDS {
                let out = env
                    .zavro()
                    .args(["send", &ep, "--plaintext"])
                    .env("ZAVRO_KEY", &key)
                    .env("ZAVRO_SECRET", &secret)
                    .write_stdin(format!("{{\"i\":{i}}}"))
                    .output()
                    .expect("run zavro send");
                if !out.status.success() {
                    failures.lock().unwrap().push(format!(
                        "send {i} exited with {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            sending.store(false, Ordering::SeqCst);
        });
        while sending.load(Ordering::SeqCst) || admin_rounds < 3 {
            let added = run_recording(&env, &["keys", "add", "--json"], &failures);
            if let Some(new_key) = serde_json::from_slice::<serde_json::Value>(&added)
                .ok()
                .and_then(|v| v["key"].as_str().map(str::to_owned))
            {
                run_recording(&env, &["keys", "revoke", &new_key], &failures);
            }
            run_recording(&env, &["keys", "list", "--json"], &failures);
            run_recording(&env, &["audit", "query", "--json"], &failures);
            admin_rounds += 1;
        }
    });

    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    let expected: Vec<String> = (0..SENDS).map(|i| format!("{{\"i\":{i}}}")).collect();
    assert_eq!(env.output_lines(), expected);
    assert_eq!(env.keys().len(), 1 + admin_rounds);
    drop(server);
}

/// A write transaction the test holds open on the store, as another process in the middle of a commit would.
struct HeldWriteLock(rusqlite::Connection);

impl HeldWriteLock {
    /// Takes the store's write lock by changing the label of `bystander` without committing.
    fn take(db: &Path, bystander: &str) -> HeldWriteLock {
        let conn = rusqlite::Connection::open(db).expect("open the store");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        let changed = conn
            .execute("UPDATE keys SET label = 'held' WHERE id = ?1", [bystander])
            .expect("write while holding the lock");
        assert_eq!(changed, 1);
        HeldWriteLock(conn)
    }

    fn commit(self) {
        self.0
            .execute_batch("COMMIT")
            .expect("commit the held transaction");
    }
}

/// True when the process's main thread sleeps in a timer, as SQLite's busy handler does between retries.
fn sleeping_in_busy_wait(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("nanosleep"))
}

/// Waits (bounded) until `child` exited or `waiter` sleeps waiting for the lock. Never fails: if the state cannot
/// be observed, the lock is released after the deadline and the outcome is checked all the same.
fn wait_until_blocked_or_exited(child: &mut Child, waiter: u32) {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if child.try_wait().expect("poll the child").is_some() || sleeping_in_busy_wait(waiter) {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The exit status and stderr of a finished (or finishing) child, waiting at most [`DEADLINE`].
fn finish(mut child: Child, what: &str) -> (ExitStatus, String) {
    wait_until(&format!("{what} to exit"), || {
        child.try_wait().unwrap().is_some()
    });
    let out = child.wait_with_output().expect("collect output");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `zavro --db <store> ARGS…` in the background with `envs` set, feeding it `stdin` when given.
fn spawn_zavro(env: &TestEnv, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Child {
    let mut cmd = zavro_process();
    let mut child = cmd
        .arg("--db")
        .arg(&env.db)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zavro");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child
}

/// While another process holds the write lock, every zavro writer must wait for it (the store has a 30 s busy
/// timeout) and then succeed, rather than fail at once with "database is locked".
#[test]
fn keys_add_waits_for_a_write_lock_held_by_another_process() {
    let env = TestEnv::new();
    let (bystander, _) = env.add_key();
    let lock = HeldWriteLock::take(&env.db, &bystander);
    let mut child = spawn_zavro(&env, &["keys", "add", "--json"], &[], None);
    let pid = child.id();
    wait_until_blocked_or_exited(&mut child, pid);
    lock.commit();
    let (status, stderr) = finish(child, "keys add");
    assert!(status.success(), "keys add: {status}: {stderr}");
}

#[test]
fn keys_revoke_waits_for_a_write_lock_held_by_another_process() {
    let env = TestEnv::new();
    let (bystander, _) = env.add_key();
    let (victim, _) = env.add_key();
    let lock = HeldWriteLock::take(&env.db, &bystander);
    let mut child = spawn_zavro(&env, &["keys", "revoke", &victim], &[], None);
    let pid = child.id();
    wait_until_blocked_or_exited(&mut child, pid);
    lock.commit();
    let (status, stderr) = finish(child, "keys revoke");
    assert!(status.success(), "keys revoke: {status}: {stderr}");
    let keys = env.keys();
    assert!(!keys[1]["revoked"].is_null(), "{:?}", keys[1]);
}

#[test]
fn the_server_waits_for_a_write_lock_held_by_another_process_then_accepts() {
    let env = TestEnv::new();
    let (bystander, _) = env.add_key();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let lock = HeldWriteLock::take(&env.db, &bystander);
    let mut child = spawn_zavro(
        &env,
        &["send", server.endpoint(), "--plaintext", "--timeout", "60"],
        &[("ZAVRO_KEY", &key), ("ZAVRO_SECRET", &secret)],
        Some("{\"waited\":true}"),
    );
    wait_until_blocked_or_exited(&mut child, server.pid().as_raw().unsigned_abs());
    lock.commit();
    let (status, stderr) = finish(child, "zavro send");
    assert!(status.success(), "send: {status}: {stderr}");
    assert_eq!(env.output_lines(), ["{\"waited\":true}"]);
}

#[test]
fn many_processes_opening_a_fresh_store_at_once_all_succeed() {
    const PROCESSES: usize = 12;
    let env = TestEnv::new();
    // The race is narrow: several rounds make a failure likely when opening a fresh store is not safe.
    for round in 0..25 {
        let db = env.path(&format!("fresh-{round}.db"));
        let barrier = Barrier::new(PROCESSES);
        let failures = Mutex::new(Vec::new());
        thread::scope(|s| {
            for i in 0..PROCESSES {
                let (db, barrier, failures) = (&db, &barrier, &failures);
                s.spawn(move || {
                    let args: &[&str] = match i % 3 {
                        0 => &["keys", "list", "--json"],
                        1 => &["keys", "add", "--json"],
                        _ => &["audit", "query", "--json"],
                    };
                    barrier.wait();
                    let out = zavro_on(db).args(args).output().expect("run zavro");
                    // Only `keys add` creates the store: a reader that runs before any of them finds none.
                    let before_creation = args[1] != "add"
                        && out.status.code() == Some(7)
                        && String::from_utf8_lossy(&out.stderr).starts_with("zavro: no store at ");
                    if !out.status.success() && !before_creation {
                        failures.lock().unwrap().push(format!(
                            "`zavro {}` exited with {}: {}",
                            args.join(" "),
                            out.status,
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap();
        assert!(failures.is_empty(), "round {round}: {failures:#?}");
        let keys = zavro_on(&db)
            .args(["keys", "list", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            parse_ndjson(&keys.stdout).len(),
            PROCESSES / 3,
            "round {round}"
        );
        let rows = zavro_on(&db)
            .args(["audit", "query", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            parse_ndjson(&rows.stdout).len(),
            PROCESSES / 3,
            "round {round}"
        );
    }
}

fn zavro_on(db: &Path) -> assert_cmd::Command {
    let mut cmd = bare_zavro();
    cmd.arg("--db").arg(db);
    cmd
}

/// Lazy Pirate retries: the server is stuck behind a lock past the client's timeout, so the client resends the
/// same request; once the lock goes, the first copy is stored and the resend is answered as a duplicate.
#[test]
fn a_send_that_times_out_and_resends_stores_its_records_exactly_once() {
    let env = TestEnv::new();
    let (bystander, _) = env.add_key();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let lock = HeldWriteLock::take(&env.db, &bystander);
    let mut child = spawn_zavro(
        &env,
        &[
            "send",
            server.endpoint(),
            "--plaintext",
            "--timeout",
            "0.3",
            "--retries",
            "20",
        ],
        &[("ZAVRO_KEY", &key), ("ZAVRO_SECRET", &secret)],
        Some("{\"exactly\":\"once\"}"),
    );
    // The client sleeps between attempts only after a timeout: wait for that, so a resend surely follows.
    let observable = std::fs::read_to_string(format!("/proc/{}/wchan", child.id())).is_ok();
    let pid = child.id();
    wait_until_blocked_or_exited(&mut child, pid);
    lock.commit();
    let (status, stderr) = finish(child, "zavro send");

    assert!(status.success(), "send: {status}: {stderr}");
    assert_eq!(env.output_lines(), ["{\"exactly\":\"once\"}"]);
    let sends = env.audit_sends();
    let stored: Vec<_> = sends.iter().filter(|r| r["reason"].is_null()).collect();
    assert_eq!(stored.len(), 1, "{sends:?}");
    assert_eq!(
        stored[0]["payload"],
        serde_json::json!([{"exactly": "once"}])
    );
    if observable {
        assert!(stderr.contains("resends after timeouts"), "{stderr}");
        assert!(
            sends
                .iter()
                .any(|r| r["reason"] == "duplicate" && r["status"] == "accepted"),
            "{sends:?}"
        );
    }
    assert!(sends.iter().all(|r| r["status"] == "accepted"), "{sends:?}");
}

fn many_concurrent_senders_with_admin_commands_store_everything_once_with_consistent_audit_ids(
    env: TestEnv,
) {
    senders_beside_admin_commands(env, 1);
}

/// Two servers on one PostgreSQL database, every sender given both: `audit verify`, run again and again while
/// both append, reads one snapshot each time, and the one chain keeps consecutive ids.
#[test]
fn two_servers_on_one_database_keep_one_chain_that_verifies_while_they_append() {
    let Some(env) = TestEnv::postgres() else {
        return;
    };
    senders_beside_admin_commands(env, 2);
}

/// Senders (each to every one of `servers` servers on `env`'s store) while `keys list`, `audit query` and `audit
/// verify` run in a loop: every command succeeds, every record is stored once, audit ids are 1..N.
fn senders_beside_admin_commands(env: TestEnv, servers: usize) {
    const SENDERS: usize = 6;
    const RECORDS: usize = 60;
    let (key, secret) = env.add_key();
    let servers: Vec<Server> = (0..servers)
        .map(|i| {
            let output = env.path(&format!("out-{i}.ndjson"));
            Server::start_with_output(&env, "127.0.0.1:*", &output, &["--name", &format!("s{i}")])
        })
        .collect();
    let endpoints: Vec<String> = servers.iter().map(|s| s.endpoint().to_owned()).collect();
    let failures = Mutex::new(Vec::new());
    let sending = AtomicBool::new(true);

    thread::scope(|s| {
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (env, endpoints, key, secret, failures) =
                    (&env, &endpoints, &key, &secret, &failures);
                s.spawn(move || {
                    let input: String = (0..RECORDS)
                        .map(|i| format!("{{\"sender\":{sender},\"i\":{i}}}\n"))
                        .collect();
                    let out = env
                        .zavro()
                        .arg("send")
                        .args(endpoints)
                        .args(["--plaintext", "--batch", "3", "--window", "4"])
                        .env("ZAVRO_KEY", key)
                        .env("ZAVRO_SECRET", secret)
                        .write_stdin(input)
                        .output()
                        .expect("run zavro send");
                    if !out.status.success() {
                        failures.lock().unwrap().push(format!(
                            "sender {sender} exited with {}: {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                })
            })
            .collect();
        s.spawn(|| {
            while sending.load(Ordering::SeqCst) {
                run_recording(&env, &["keys", "list"], &failures);
                run_recording(&env, &["audit", "query", "--limit", "5"], &failures);
                run_recording(&env, &["audit", "verify"], &failures);
            }
        });
        for sender in senders {
            sender.join().unwrap();
        }
        sending.store(false, Ordering::SeqCst);
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");

    let rows = env.audit();
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (1..=ids.len() as i64).collect();
    assert_eq!(ids, expected, "audit ids are 1..N with no gap or repeat");
    let mut stored = std::collections::HashMap::new();
    for row in rows.iter().filter(|r| r["action"] == "send") {
        assert_eq!(row["status"], "accepted", "{row}");
        for record in row["payload"].as_array().unwrap() {
            *stored
                .entry((
                    record["sender"].as_u64().unwrap(),
                    record["i"].as_u64().unwrap(),
                ))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(stored.len(), SENDERS * RECORDS);
    assert!(
        stored.values().all(|&n| n == 1),
        "a record was stored twice"
    );
    env.zavro().args(["audit", "verify"]).assert().success();
    drop(servers);
}
