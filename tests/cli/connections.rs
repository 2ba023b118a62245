//! The cap on connections (issue 14, item 7): past `--max-connections`, idle connections wait in the kernel's
//! queue while the server keeps serving the ones it has, without spinning on accept, and a client gets in once
//! connections close; without the option, the default cap applies.

use std::{
    fs,
    net::TcpStream,
    os::{fd::OwnedFd, unix::net::UnixStream},
    thread,
    time::Duration,
};

use nix::{
    sys::resource::{Resource, getrlimit},
    unistd::Pid,
};
use serde_json::json;

use crate::common::{RawClient, Server, TestEnv, assert_accepted, compact, signed_now, wait_until};
use zavro::protocol::ReplyFrame;

/// The cap the attacked servers run with.
const CAP: usize = 20;

/// Idle connections opened against them: well past the cap, well within libzmq's listen backlog (100), so
/// that every connect completes in the kernel whether or not the server accepts it.
const IDLE: usize = 50;

/// CPU time (user and system, every thread) the server may spend while it holds its cap of idle connections
/// and more wait to be accepted, over [`WINDOW`]. A listener spinning on accept burns one core, about a second
/// per second (less on a busy machine, which can only hide the fault, not fake it); the patched listener tries
/// again ten times a second and otherwise sleeps, a few milliseconds in all. The margin is wide so that no
/// ordinary load makes a sound server fail.
const CPU_CEILING_SECS: f64 = 0.3;

/// How long the CPU time is measured.
const WINDOW: Duration = Duration::from_secs(1);

/// The descriptors open in process `pid`, from `/proc/PID/fd`.
pub fn descriptors(pid: Pid) -> Vec<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The soft limit on open files of process `pid`, from `/proc/PID/limits`.
pub fn soft_open_files(pid: Pid) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).expect("read /proc/PID/limits");
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in /proc/{pid}/limits:\n{text}"));
    let soft = line.split_whitespace().next().unwrap_or_default();
    soft.parse()
        .unwrap_or_else(|_| panic!("soft open-file limit {soft:?}"))
}

/// The CPU time process `pid` has used so far (utime + stime of `/proc/PID/stat`), in seconds.
fn cpu_seconds(pid: Pid) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields 14 and 15 (utime, stime) count from the state, the first field after the command's ")".
    let after_name = &stat[stat.rfind(')').expect("a (comm) field") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| fields[i].parse::<u64>().expect("a tick count"))
        .sum();
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}

/// Connections the server holds beyond what it held idle: each is one descriptor.
fn connections_held(pid: Pid, idle: usize) -> usize {
    descriptors(pid).len().saturating_sub(idle)
}

/// A connection that sends nothing, of the kind the endpoint takes; only its descriptor is kept, open.
fn connect_idle(endpoint: &str) -> OwnedFd {
    if let Some(address) = endpoint.strip_prefix("tcp://") {
        TcpStream::connect(address)
            .expect("connect over TCP")
            .into()
    } else if let Some(path) = endpoint.strip_prefix("ipc://") {
        UnixStream::connect(path).expect("connect over ipc").into()
    } else {
        panic!("unexpected endpoint {endpoint}")
    }
}

/// A signed request for one record on `client`, and its reply, which must accept it.
fn request_accepted(client: &RawClient, key: &str, secret: &str, record: &serde_json::Value) {
    client.send(&signed_now(key, secret, std::slice::from_ref(record)).to_frames());
    let frames = client.recv();
    let reply = ReplyFrame::from_frame(frames.last().expect("a reply frame")).expect("a reply");
    assert_accepted(&reply.reply, 1);
}

/// The attack on a server listening on `endpoint` with `--max-connections` [`CAP`]: a valid client connects,
/// then [`IDLE`] connections that never send a byte.
fn idle_connections_past_the_cap(endpoint: &str) {
    let env = TestEnv::new();
    env.create_store();
    let (key, secret) = env.add_key();
    let server = Server::start(&env, endpoint, &["--max-connections", &CAP.to_string()]);
    let pid = server.pid();
    let idle_descriptors = descriptors(pid).len();
    // Descriptors inherited above the limit (a test harness's jobserver pipe, say) take none of the room.
    let soft = soft_open_files(pid);
    let below = descriptors(pid).iter().filter(|&&fd| fd < soft).count();
    assert_eq!(
        soft,
        u64::try_from(below + CAP).unwrap(),
        "the soft open-file limit leaves room for exactly {CAP} connections beside the {below} \
         descriptors the server holds below it: {:?}",
        descriptors(pid)
    );

    let client = RawClient::dealer(server.endpoint());
    request_accepted(&client, &key, &secret, &json!("before"));
    let mut idle: Vec<OwnedFd> = (0..IDLE).map(|_| connect_idle(server.endpoint())).collect();
    wait_until("the server to hold its cap of connections", || {
        connections_held(pid, idle_descriptors) == CAP
    });

    // (a) At the cap, with connections waiting to be accepted, the server sleeps.
    let before = cpu_seconds(pid);
    thread::sleep(WINDOW);
    let spent = cpu_seconds(pid) - before;
    assert!(
        spent < CPU_CEILING_SECS,
        "the server used {spent:.2} s of CPU in {WINDOW:?} at its cap of connections (at most \
         {CPU_CEILING_SECS} s allowed): it spins on accept"
    );
    assert_eq!(
        connections_held(pid, idle_descriptors),
        CAP,
        "no connection past the cap is taken"
    );

    // (b) The client connected before is still served.
    request_accepted(&client, &key, &secret, &json!("at the cap"));

    // (c) Once connections close, a new client gets in (`zavro send` waits with its own timeout and retries).
    drop(client);
    idle.clear();
    env.send(server.endpoint(), &key, &secret, "\"after\"\n")
        .success();
    wait_until("the server to let go of the closed connections", || {
        connections_held(pid, idle_descriptors) == 0
    });

    let (status, stderr) = server.stop_with_stderr();
    assert!(status.success(), "stderr: {stderr:?}");
    let output = fs::read_to_string(env.output_path()).expect("read the output");
    let records: Vec<&str> = output.lines().collect();
    assert_eq!(
        records,
        [
            compact(&json!("before")),
            compact(&json!("at the cap")),
            compact(&json!("after"))
        ]
    );
}

#[test]
fn idle_tcp_connections_past_the_cap_wait_without_spinning_and_cost_no_client_its_answer() {
    idle_connections_past_the_cap("127.0.0.1:*");
}

#[test]
fn idle_ipc_connections_past_the_cap_wait_without_spinning_or_crashing_the_server() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = format!("ipc://{}", dir.path().join("zavro.sock").display());
    idle_connections_past_the_cap(&socket);
}

#[test]
fn without_the_option_the_default_cap_applies() {
    let env = TestEnv::new();
    env.create_store();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    let pid = server.pid();
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read the open-file limit");
    // The default (1024), or fewer when the hard limit leaves less room beside the 64 kept for the server.
    let cap = hard.saturating_sub(64).clamp(1, 1024);
    let soft = soft_open_files(pid);
    let below = descriptors(pid).iter().filter(|&&fd| fd < soft).count();
    assert_eq!(
        soft,
        cap + u64::try_from(below).unwrap(),
        "the soft open-file limit is the {below} descriptors the server holds plus the default cap {cap}"
    );
    assert!(server.stop().success());
}
