//! The follower over real files in a temporary directory. Time is passed in, so nothing here waits.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use sha2::Digest;

use super::*;

/// Long enough that no test reaches it unless it passes a later `now`.
const WAIT: Duration = Duration::from_secs(3600);

fn settings() -> Settings {
    Settings {
        rotate_wait: WAIT,
        ..Settings::default()
    }
}

fn append(path: &Path, text: &str) -> File {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

/// The texts of the lines among `events`.
fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Line(line) => Some(String::from_utf8(line.text.clone()).unwrap()),
            _ => None,
        })
        .collect()
}

fn notices_in(events: &[Event]) -> Vec<Notice> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Notice(notice) => Some(notice.clone()),
            _ => None,
        })
        .collect()
}

fn id(path: &Path) -> FileId {
    FileId::of(&fs::metadata(path).unwrap())
}

/// The start of the file at `path` before `offset` as the follower hashes it.
fn head_of(path: &Path, offset: usize) -> Head {
    let bytes = fs::read(path).unwrap();
    let start = &bytes[..bytes.len().min(offset).min(64)];
    let digest = sha2::Sha256::digest(start);
    Head {
        len: start.len() as u16,
        sum: u64::from_be_bytes(digest[..8].try_into().unwrap()),
    }
}

/// Each cursor of `path` as file and offset.
fn spots(checkpoint: &Checkpoint, path: &Path) -> Vec<(FileId, u64)> {
    checkpoint
        .cursors(path)
        .iter()
        .map(|c| (c.file, c.offset))
        .collect()
}

/// A follower of `paths` and the checkpoint it starts from.
fn follow(paths: &[PathBuf], resume: Option<&Checkpoint>) -> (Follower, Checkpoint, Vec<Notice>) {
    Follower::new(paths, resume, settings(), Instant::now()).unwrap()
}

#[test]
fn lines_come_as_written_and_a_partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\nb");
    let (mut follower, _, notices) = follow(std::slice::from_ref(&log), None);
    assert!(notices.is_empty(), "{notices:?}");
    let now = Instant::now();
    let events = follower.poll(now).unwrap();
    assert_eq!(
        events,
        [Event::Line(Line {
            text: b"a".to_vec(),
            position: Position {
                path: 0,
                file: id(&log),
                offset: 2,
                head: head_of(&log, 2),
            },
        })]
    );
    assert!(
        follower.poll(now).unwrap().is_empty(),
        "b has no newline yet"
    );
    append(&log, "c\n\nd\n");
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["bc", "", "d"]);
    let Some(Event::Line(last)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(last.position.offset, 8);
    assert!(follower.poll(now).unwrap().is_empty());
}

#[test]
fn a_missing_file_is_waited_for_and_a_removed_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let (mut follower, _, notices) = follow(std::slice::from_ref(&log), None);
    assert!(
        matches!(notices[..], [Notice::Missing { .. }]),
        "{notices:?}"
    );
    let now = Instant::now();
    assert!(follower.poll(now).unwrap().is_empty());
    append(&log, "1\n");
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["1"]);
    assert!(matches!(notices_in(&events)[..], [Notice::Appeared { .. }]));

    // Removed with a line written and not read yet: that line still comes, and the new file from its start.
    let mut writer = append(&log, "2\n");
    fs::remove_file(&log).unwrap();
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["2"]);
    assert!(matches!(notices_in(&events)[..], [Notice::Removed { .. }]));
    writer.write_all(b"3\n").unwrap();
    append(&log, "new\n");
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["3", "new"]);
    assert!(matches!(notices_in(&events)[..], [Notice::Appeared { .. }]));
}

#[test]
fn a_rotation_reads_the_old_file_to_its_end_then_the_new_one_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let mut writer = append(&log, "1\n2\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    let now = Instant::now();
    assert_eq!(texts(&follower.poll(now).unwrap()), ["1", "2"]);

    // The writer goes on writing to the renamed file before and after the rotation is seen.
    fs::rename(&log, &rotated).unwrap();
    writer.write_all(b"3\n4").unwrap();
    append(&log, "new 1\n");
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["3", "new 1"]);
    assert!(matches!(notices_in(&events)[..], [Notice::Rotated { .. }]));
    events.iter().for_each(|e| checkpoint.apply(e));
    writer.write_all(b"\n5\n").unwrap();
    append(&log, "new 2\n");
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["4", "5", "new 2"]);
    events.iter().for_each(|e| checkpoint.apply(e));
    assert_eq!(
        spots(&checkpoint, &log),
        [(id(&rotated), 10), (id(&log), 12)]
    );

    // Once the old file has not grown for the rotation wait, it is given up: its cursor goes.
    let later = now + WAIT;
    let events = follower.poll(later).unwrap();
    assert_eq!(
        events,
        [Event::Closed {
            path: 0,
            file: id(&rotated)
        }]
    );
    events.iter().for_each(|e| checkpoint.apply(e));
    assert_eq!(spots(&checkpoint, &log), [(id(&log), 12)]);
    writer.write_all(b"too late\n").unwrap();
    assert!(follower.poll(later).unwrap().is_empty());
}

#[test]
fn a_truncated_file_is_read_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "one\ntwo\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    let now = Instant::now();
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["one", "two"]);
    events.iter().for_each(|e| checkpoint.apply(e));

    // Truncated, with a partial line read before: that text is gone, and the new lines come from byte 0.
    append(&log, "thr");
    assert!(follower.poll(now).unwrap().is_empty());
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, "x\n");
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["x"]);
    assert!(
        matches!(notices_in(&events)[..], [Notice::Truncated { at: 11, .. }]),
        "{events:?}"
    );
    events.iter().for_each(|e| checkpoint.apply(e));
    assert_eq!(spots(&checkpoint, &log), [(id(&log), 2)]);
}

#[test]
fn a_line_longer_than_the_limit_is_dropped_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let long = "x".repeat(100_000);
    append(&log, &format!("a\n{long}"));
    let settings = Settings {
        max_line: 1000,
        ..settings()
    };
    let (mut follower, mut checkpoint, _) =
        Follower::new(std::slice::from_ref(&log), None, settings, Instant::now()).unwrap();
    let now = Instant::now();
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["a"]);
    assert!(matches!(
        notices_in(&events)[..],
        [Notice::TooLong {
            offset: 2,
            max: 1000,
            ..
        }]
    ));
    events.iter().for_each(|e| checkpoint.apply(e));
    append(&log, &format!("{long}\nb\n"));
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["b"]);
    events.iter().for_each(|e| checkpoint.apply(e));
    assert_eq!(checkpoint.cursors(&log)[0].offset, 200_005);
}

#[test]
fn a_restart_resumes_after_the_last_line_saved() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let other = dir.path().join("other.log");
    append(&log, "a\nb\nc\nparti");
    append(&other, "o1\n");
    let paths = [log.clone(), other.clone()];
    let (mut follower, mut checkpoint, _) = follow(&paths, None);
    let events = follower.poll(Instant::now()).unwrap();
    assert_eq!(texts(&events), ["a", "b", "c", "o1"]);
    // Only the lines up to b were saved (with their request) before the process died.
    events
        .iter()
        .take_while(|e| !matches!(e, Event::Line(line) if line.text == b"c"))
        .for_each(|e| checkpoint.apply(e));
    let saved = checkpoint.to_bytes().unwrap();
    drop(follower);

    append(&log, "al\n");
    let saved = Checkpoint::from_bytes(&saved).unwrap();
    let (mut follower, start, notices) = follow(&paths, Some(&saved));
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(start, saved);
    assert_eq!(
        texts(&follower.poll(Instant::now()).unwrap()),
        ["c", "partial", "o1"]
    );
}

#[test]
fn a_restart_after_a_rotation_finishes_the_rotated_file_then_reads_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let mut writer = append(&log, "a\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    follower
        .poll(Instant::now())
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    drop(follower);

    // While nothing followed: more lines, a rotation, lines in both files.
    writer.write_all(b"b\n").unwrap();
    fs::rename(&log, &rotated).unwrap();
    writer.write_all(b"c\n").unwrap();
    append(&log, "new\n");
    let (mut follower, start, notices) = follow(std::slice::from_ref(&log), Some(&checkpoint));
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(start, checkpoint);
    assert_eq!(
        texts(&follower.poll(Instant::now()).unwrap()),
        ["b", "c", "new"]
    );
}

#[test]
fn a_restart_resumes_both_files_of_a_rotation_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let mut writer = append(&log, "a\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    let now = Instant::now();
    follower
        .poll(now)
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    fs::rename(&log, &rotated).unwrap();
    append(&log, "new 1\n");
    follower
        .poll(now)
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    assert_eq!(checkpoint.cursors(&log).len(), 2, "{checkpoint:?}");
    drop(follower);

    writer.write_all(b"b\n").unwrap();
    append(&log, "new 2\n");
    let (mut follower, _, notices) = follow(std::slice::from_ref(&log), Some(&checkpoint));
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(
        texts(&follower.poll(Instant::now()).unwrap()),
        ["b", "new 2"]
    );
}

#[test]
fn a_restart_says_what_is_gone_and_reads_the_file_there_now_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    follower
        .poll(Instant::now())
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    drop(follower);
    let old = id(&log);

    // Rotated and the rotated file deleted while nothing followed: its unread lines cannot be had.
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, "new\n");
    fs::remove_file(dir.path().join("app.log.1")).unwrap();
    let (mut follower, start, notices) = follow(std::slice::from_ref(&log), Some(&checkpoint));
    assert_eq!(
        notices,
        [Notice::Gone {
            path: log.clone(),
            file: old,
            offset: 2
        }]
    );
    assert!(start.cursors(&log).is_empty());
    assert_eq!(texts(&follower.poll(Instant::now()).unwrap()), ["new"]);
}

#[test]
fn a_restart_after_a_truncation_reads_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "first\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    follower
        .poll(Instant::now())
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    drop(follower);

    fs::write(&log, "x\n").unwrap();
    let (mut follower, start, notices) = follow(std::slice::from_ref(&log), Some(&checkpoint));
    assert!(
        matches!(notices[..], [Notice::Truncated { at: 6, .. }]),
        "{notices:?}"
    );
    assert_eq!(start.cursors(&log)[0].offset, 0);
    assert_eq!(texts(&follower.poll(Instant::now()).unwrap()), ["x"]);
}

#[test]
fn a_path_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let twice = [log.clone(), dir.path().join(".").join("app.log")];
    let err = Follower::new(&twice, None, settings(), Instant::now()).unwrap_err();
    assert!(matches!(err, FollowError::Duplicate(_)), "{err}");
}

#[test]
fn a_link_to_a_followed_file_is_refused_as_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\n");
    let symlink = dir.path().join("current.log");
    std::os::unix::fs::symlink(&log, &symlink).unwrap();
    let hard_link = dir.path().join("hard.log");
    std::fs::hard_link(&log, &hard_link).unwrap();
    for other in [&symlink, &hard_link] {
        let err = Follower::new(
            &[log.clone(), other.clone()],
            None,
            settings(),
            Instant::now(),
        )
        .unwrap_err();
        assert!(matches!(err, FollowError::SameFile(..)), "{err}");
        assert!(err.to_string().contains("are the same file"), "{err}");
    }
    // The same path twice is still said to be given twice, whether the file exists or not.
    let twice = [log.clone(), dir.path().join(".").join("app.log")];
    let err = Follower::new(&twice, None, settings(), Instant::now()).unwrap_err();
    assert!(matches!(err, FollowError::Duplicate(_)), "{err}");
}

#[test]
fn a_restart_without_a_path_keeps_its_position_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let other = dir.path().join("other.log");
    append(&log, "a\n");
    append(&other, "o\n");
    let both = [log.clone(), other.clone()];
    let (mut follower, mut checkpoint, _) = follow(&both, None);
    follower
        .poll(Instant::now())
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    drop(follower);

    let (_, start, notices) = follow(std::slice::from_ref(&log), Some(&checkpoint));
    assert_eq!(
        notices,
        [Notice::NotFollowed {
            path: other.clone()
        }]
    );
    assert_eq!(start.cursors(&other), checkpoint.cursors(&other));
    let (mut follower, _, notices) = follow(&both, Some(&start));
    assert!(notices.is_empty(), "{notices:?}");
    append(&other, "o2\n");
    assert_eq!(texts(&follower.poll(Instant::now()).unwrap()), ["o2"]);
}

#[test]
fn a_saved_file_that_cannot_be_opened_stops_the_start() {
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipped: root reads files whatever their mode");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "a\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    follower
        .poll(Instant::now())
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    fs::set_permissions(&log, fs::Permissions::from_mode(0o000)).unwrap();
    let err = Follower::new(
        std::slice::from_ref(&log),
        Some(&checkpoint),
        settings(),
        Instant::now(),
    )
    .unwrap_err();
    assert!(matches!(err, FollowError::Io { .. }), "{err}");
}

#[test]
fn a_fifo_at_the_path_is_reported_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (mut follower, _, _) = follow(std::slice::from_ref(&log), None);
    let events = follower.poll(Instant::now()).unwrap();
    assert!(
        matches!(&notices_in(&events)[..], [Notice::Unreadable { error, .. }] if error.contains("regular")),
        "{events:?}"
    );
    assert!(
        follower.poll(Instant::now()).unwrap().is_empty(),
        "said once"
    );
}

#[test]
fn a_file_truncated_and_written_past_the_read_position_is_read_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "2026-12-01T10:00:00 one\n");
    let (mut follower, _, _) = follow(std::slice::from_ref(&log), None);
    let now = Instant::now();
    assert_eq!(
        texts(&follower.poll(now).unwrap()),
        ["2026-12-01T10:00:00 one"]
    );

    // Between two looks: truncated, and longer again than what was read.
    fs::write(&log, "2026-12-01T11:00:00 two\n2026-12-01T11:00:01 three\n").unwrap();
    let events = follower.poll(now).unwrap();
    assert!(
        matches!(notices_in(&events)[..], [Notice::Truncated { at: 24, .. }]),
        "{events:?}"
    );
    assert_eq!(
        texts(&events),
        ["2026-12-01T11:00:00 two", "2026-12-01T11:00:01 three"]
    );
}

#[test]
fn a_restart_at_a_file_whose_start_changed_reads_it_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "old 1\n");
    let (mut follower, mut checkpoint, _) = follow(std::slice::from_ref(&log), None);
    follower
        .poll(Instant::now())
        .unwrap()
        .iter()
        .for_each(|e| checkpoint.apply(e));
    drop(follower);

    // Same inode, longer than the saved offset, other text: truncated and rewritten while nothing followed.
    fs::write(&log, "new 1\nnew 2\n").unwrap();
    let (mut follower, start, notices) = follow(std::slice::from_ref(&log), Some(&checkpoint));
    assert!(
        matches!(notices[..], [Notice::Truncated { at: 6, .. }]),
        "{notices:?}"
    );
    assert_eq!(spots(&start, &log), [(id(&log), 0)]);
    assert_eq!(
        texts(&follower.poll(Instant::now()).unwrap()),
        ["new 1", "new 2"]
    );
}

#[test]
fn a_file_truncated_and_written_to_the_same_size_is_read_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut writer = append(&log, "{\"n\":61}\n");
    let (mut follower, _, _) = follow(std::slice::from_ref(&log), None);
    let now = Instant::now();
    assert_eq!(texts(&follower.poll(now).unwrap()), ["{\"n\":61}"]);
    writer.set_len(0).unwrap();
    writer.write_all(b"{\"n\":71}\n").unwrap();
    let events = follower.poll(now).unwrap();
    assert_eq!(texts(&events), ["{\"n\":71}"], "{events:?}");
    assert!(matches!(
        notices_in(&events)[..],
        [Notice::Truncated { at: 9, .. }]
    ));
}
