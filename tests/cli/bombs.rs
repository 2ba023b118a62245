//! A valid key holder's decompression bomb and zero-size records, over real sockets: refused with a message
//! naming the limit, without the server's memory following the bomb, and without changing the answer to any
//! other request that arrived with it.

use apache_avro::Codec;
use serde_json::{Value, json};
use zavro::{
    avro::container::{ContainerWriter, write_long},
    protocol::{RejectCode, Reply, ReplyFrame, Request},
};

use crate::common::{RawClient, TestEnv, signed_now};

/// A deflated file of `blocks` `"string"` records, each `len` NUL bytes: about 1 KB per MiB on the wire.
fn deflate_bomb(len: usize, blocks: usize) -> Vec<u8> {
    let mut file = ContainerWriter::new(r#""string""#, Codec::Deflate(Default::default()), [7; 16]);
    for _ in 0..blocks {
        let mut data = Vec::new();
        write_long(&mut data, len as i64);
        data.resize(data.len() + len, 0);
        file.write_block(1, data).unwrap();
    }
    file.finish()
}

#[test]
fn bombs_are_refused_naming_the_limit_and_cost_neither_memory_nor_their_neighbours_answers() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let sign = |payload: Vec<u8>| {
        Request::sign(
            &key,
            secret.as_bytes(),
            zavro::timestamp::now_seconds(),
            &zavro::credentials::new_nonce().unwrap(),
            payload,
        )
    };
    let mut zero_size = ContainerWriter::new(r#""null""#, Codec::Null, [7; 16]);
    zero_size.write_block(1_000_000, Vec::new()).unwrap();
    let bombs = [
        // 6 MiB of NULs in one string: 6 KB on the wire, 36 MiB of JSON text (`\u0000` each).
        (sign(deflate_bomb(6 << 20, 1)), "passes 32 MiB"),
        (sign(zero_size.finish()), "zero encoded size"),
    ];
    // Each bomb pipelined between two valid requests on one connection, so they share its group.
    let client = RawClient::dealer(server.endpoint());
    for (bomb, _) in &bombs {
        assert!(
            bomb.payload.len() < 200 << 10,
            "{} bytes",
            bomb.payload.len()
        );
        client.send(&signed_now(&key, &secret, &[json!("before")]).to_frames());
        client.send(&bomb.to_frames());
        client.send(&signed_now(&key, &secret, &[json!("after")]).to_frames());
    }
    for (_, limit) in &bombs {
        let replies: Vec<ReplyFrame> = (0..3)
            .map(|_| ReplyFrame::from_frame(client.recv().last().unwrap()).unwrap())
            .collect();
        assert!(matches!(
            replies[0].reply,
            Reply::Accepted { records: 1, .. }
        ));
        match &replies[1].reply {
            Reply::Rejected { code, message, .. } => {
                assert_eq!(*code, RejectCode::BadPayload);
                assert!(message.contains(limit), "{message}");
            }
            other => panic!("a bomb is refused: {other:?}"),
        }
        assert!(matches!(
            replies[2].reply,
            Reply::Accepted { records: 1, .. }
        ));
    }
    let peak = server.peak_rss_kib();
    eprintln!("serve peak RSS under the bombs: {peak} KiB");
    assert!(peak < 256 * 1024, "serve peaked at {peak} KiB");
    assert!(server.stop().success());
    let out: Vec<Value> = env
        .output_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        out,
        [
            json!("before"),
            json!("after"),
            json!("before"),
            json!("after")
        ]
    );
}

#[test]
fn a_writer_schema_past_its_limit_is_refused_unparsed_and_never_stored() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    // 256 KiB of documentation in an otherwise valid schema: twice the 128 KiB a header schema may hold.
    let schema = format!(
        r#"{{"type":"record","name":"R","doc":"{}","fields":[{{"name":"n","type":"long"}}]}}"#,
        "x".repeat(256 << 10)
    );
    let mut file = ContainerWriter::new(&schema, Codec::Null, [7; 16]);
    file.write_block(1, vec![2]).unwrap();
    let request = Request::sign(
        &key,
        secret.as_bytes(),
        zavro::timestamp::now_seconds(),
        &zavro::credentials::new_nonce().unwrap(),
        file.finish(),
    );
    let client = RawClient::dealer(server.endpoint());
    client.send(&request.to_frames());
    let reply = ReplyFrame::from_frame(client.recv().last().unwrap()).unwrap();
    match reply.reply {
        Reply::Rejected { code, message, .. } => {
            assert_eq!(code, RejectCode::UnsupportedSchema);
            assert!(message.contains("at most 128 KiB"), "{message}");
        }
        other => panic!("refused: {other:?}"),
    }
    assert!(server.stop().success());
    let schemas = env
        .zavro()
        .args(["audit", "schemas", "--json"])
        .output()
        .unwrap();
    assert!(schemas.status.success());
    assert!(
        String::from_utf8_lossy(&schemas.stdout).trim().is_empty(),
        "no schema row: {}",
        String::from_utf8_lossy(&schemas.stdout)
    );
}
