//! Real Avro peers: container files written by another implementation (fastavro, see
//! tests/fixtures/fastavro/generate.py) in every codec, sent as they are with `send --format avro`.

use std::path::PathBuf;

use crate::common::TestEnv;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fastavro")
        .join(name)
}

#[test]
fn files_written_by_fastavro_in_every_codec_are_accepted_and_logged_as_natural_json() {
    let expected: Vec<String> = std::fs::read_to_string(fixture("readings.expected.ndjson"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for codec in ["null", "deflate", "snappy", "zstandard"] {
        let env = TestEnv::new();
        let (key, secret) = env.add_key();
        let server = env.start_server();
        let file = std::fs::read(fixture(&format!("readings.{codec}.avro"))).unwrap();
        env.zavro()
            .args([
                "send",
                server.endpoint(),
                "--format",
                "avro",
                "--batch",
                "10",
            ])
            .env("ZAVRO_KEY", &key)
            .env("ZAVRO_SECRET", &secret)
            .write_stdin(file)
            .assert()
            .code(0);
        assert_eq!(env.output_lines(), expected, "codec {codec}");
        let sends = env.audit_sends();
        assert!(
            sends.len() >= 3,
            "codec {codec}: 25 records in batches of at most 10: {}",
            sends.len()
        );
        assert!(sends.iter().all(|row| row["status"] == "accepted"));
        drop(server);
    }
}

#[test]
fn json_sent_with_each_codec_round_trips() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    let input = "{\"a\":1,\"b\":[true,null,2.5,\"☃\"]}\n{\"c\":{}}\n";
    for codec in ["null", "deflate", "snappy", "zstandard"] {
        env.send_with(server.endpoint(), &key, &secret, input, &["--codec", codec])
            .code(0);
    }
    let expected: Vec<&str> = input.lines().cycle().take(8).collect();
    assert_eq!(env.output_lines(), expected);
}

#[test]
fn a_file_that_is_not_avro_is_bad_input_and_sends_nothing() {
    let env = TestEnv::new();
    let (key, secret) = env.add_key();
    let server = env.start_server();
    env.send_with(
        server.endpoint(),
        &key,
        &secret,
        "{\"not\":\"avro\"}",
        &["--format", "avro"],
    )
    .code(3);
    assert!(env.audit_sends().is_empty());
}
