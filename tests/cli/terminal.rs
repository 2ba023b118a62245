//! The secret prompt on a real terminal: a pseudo-terminal becomes the controlling terminal of `zavro`, the test
//! types at it like a person, and checks that nothing typed is echoed back.

use std::{
    fs::File,
    io::{Read, Write},
    os::unix::process::CommandExt,
    process::Stdio,
    sync::{Arc, Mutex},
    thread,
};

use nix::{
    pty::openpty,
    sys::termios::{LocalFlags, tcgetattr},
};

use crate::common::zavro_process;
use crate::common::{TestEnv, parse_json, wait_until};

#[test]
fn keys_add_secret_prompt_reads_from_the_terminal_without_echoing() {
    let env = TestEnv::new();
    let secret = "typed-at-the-terminal-0123456789";
    let pty = openpty(None, None).expect("open a pseudo-terminal");
    let mut cmd = zavro_process();
    cmd.arg("--db")
        .arg(&env.db)
        .args(["keys", "add", "--secret-prompt", "--json"])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe and touch no memory of the parent. A new session, then the
    // pty (our stdin) as its controlling terminal: /dev/tty, where the prompt reads, is then this pty.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn zavro keys add --secret-prompt");
    // Only the child may keep the terminal's other end open, so reading ends when it exits.
    drop(cmd);
    drop(pty.slave);

    // Everything the terminal shows, read as it comes (the read fails once the child has closed the pty).
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut master = File::from(pty.master);
    let reader = {
        let screen = Arc::clone(&screen);
        let mut master = master.try_clone().unwrap();
        thread::spawn(move || {
            let mut buffer = [0u8; 1024];
            while let Ok(n) = master.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    wait_until("the secret prompt", || {
        shown().contains("Secret to import:")
    });
    // The prompt is written just before echo is switched off; type only once it is, as a person would.
    wait_until("echo to be off", || {
        let termios = tcgetattr(&master).expect("read the terminal's settings");
        !termios.local_flags.contains(LocalFlags::ECHO)
    });
    master.write_all(format!("{secret}\r").as_bytes()).unwrap();

    let mut status = None;
    wait_until("keys add to finish", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(
        status.unwrap().success(),
        "{status:?}; terminal: {}",
        shown()
    );
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let key = parse_json(stdout.as_bytes())["key"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(master);
    reader.join().unwrap();
    let screen = shown();
    assert!(
        !screen.contains(secret),
        "the secret was echoed: {screen:?}"
    );
    assert!(!stdout.contains(secret), "{stdout}");

    // The typed secret is the key's: a request signed with it is accepted.
    let server = env.start_server();
    env.send(server.endpoint(), &key, secret, "{\"typed\":true}")
        .code(0);
    assert_eq!(env.output_lines(), ["{\"typed\":true}"]);
}
