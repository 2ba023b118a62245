//! The records output on a disk that fills: the server stops with a message that says where the records are
//! and how to recover them, and the file never ends in half a line. Needs a small file system of its own, a
//! tmpfs mounted by the test (root, as in CI); elsewhere the test says loudly that it was skipped.

use std::{path::Path, process::Command, time::Duration};

use serde_json::json;
use zavro::protocol::Reply;

use crate::common::{RawClient, Server, TestEnv, signed_now};

/// A 64 KiB tmpfs at `dir`, unmounted when dropped.
struct SmallDisk<'a>(&'a Path);

impl<'a> SmallDisk<'a> {
    fn mount(dir: &'a Path) -> Option<SmallDisk<'a>> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .status()
            .ok()?;
        status.success().then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_output_disk_stops_the_server_with_whole_lines_and_the_way_to_recover() {
    let env = TestEnv::new();
    let mount_point = env.path("small");
    let Some(_disk) = SmallDisk::mount(&mount_point) else {
        eprintln!("SKIPPED a_full_output_disk…: cannot mount a tmpfs here (needs root)");
        return;
    };
    let (key, secret) = env.add_key();
    let output = mount_point.join("out.ndjson");
    let mut server = Server::start_with_output(&env, "tcp://127.0.0.1:*", &output, &[]);
    // Records of 1,000 bytes: the 64 KiB disk fills after about 60 of them, in the middle of a line.
    let filler = "x".repeat(990);
    let client = RawClient::req(server.endpoint());
    let mut accepted = 0;
    for i in 0..200 {
        let request = signed_now(&key, &secret, &[json!({"i": i, "filler": filler})]);
        client.send(&request.to_frames());
        // The request that fills the disk is still answered; the server then stops, and the next one is not.
        match client.try_recv(Duration::from_secs(10)) {
            Some(reply) => {
                let reply = Reply::from_frame(&reply[0]).unwrap();
                assert!(
                    matches!(reply, Reply::Accepted { .. }),
                    "request {i}: {reply:?}"
                );
                accepted += 1;
            }
            None => {
                assert!(
                    server.has_exited(),
                    "no reply to request {i}, yet serve runs"
                );
                break;
            }
        }
    }
    let (status, lines) = server.stop_with_stderr();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    let last = lines.last().unwrap();
    assert!(last.contains("zavro audit export --since"), "{last}");
    assert!(last.contains("ends with the last whole line"), "{last}");

    let text = std::fs::read_to_string(&output).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a partial line was left"
    );
    let written = text.lines().count();
    assert!(
        written < accepted,
        "the disk filled: {written} of {accepted} written"
    );
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is whole JSON");
    }
    // Every acknowledged record is in the store.
    assert_eq!(env.audited_requests(), accepted as u64);
}
