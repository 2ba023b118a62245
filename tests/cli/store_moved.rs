//! The store file deleted or replaced under a running server: the server notices before it writes another group
//! into a file nobody will read, refuses that group as retryable, and stops with a clear line.

use serde_json::json;

use crate::common::{TestEnv, reject_code, request_once, signed_now};

fn moved_store_stops_the_server(replace: impl FnOnce(&std::path::Path)) {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let first = signed_now(&key, &secret, &[json!(1)]);
    request_once(server.endpoint(), &first.to_frames());

    replace(&env.db);
    let second = signed_now(&key, &secret, &[json!(2)]);
    let reply = request_once(server.endpoint(), &second.to_frames());
    assert_eq!(
        reject_code(&reply),
        "internal",
        "retryable: nothing was kept"
    );

    let (status, lines) = server.stop_with_stderr();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    let last = lines.last().unwrap();
    assert!(
        last.contains("was deleted or replaced while in use"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("stopping: store ")),
        "{lines:?}"
    );
}

#[test]
fn a_store_deleted_under_the_server_stops_it_without_acknowledging_into_the_deleted_file() {
    moved_store_stops_the_server(|db| {
        std::fs::remove_file(db).unwrap();
    });
}

#[test]
fn a_store_replaced_by_another_file_stops_the_server() {
    moved_store_stops_the_server(|db| {
        let copy = db.with_extension("copy");
        std::fs::copy(db, &copy).unwrap();
        std::fs::rename(&copy, db).unwrap();
    });
}
