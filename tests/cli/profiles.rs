//! The credentials file: `keys add --save-profile`, `send --profile` / `ZAVRO_PROFILE`, and the precedence of
//! flag, environment, profile and prompt for key, secret and endpoint.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Server, TestEnv, parse_json, stderr_of, stdout_of};

/// `keys add --save-profile NAME --endpoint EP --json`; returns the key id. The profile also pins the store's
/// server key.
fn add_profile(env: &TestEnv, name: &str, endpoint: &str) -> String {
    let out = env
        .zavro()
        .args([
            "keys",
            "add",
            "--json",
            "--save-profile",
            name,
            "--endpoint",
            endpoint,
        ])
        .assert()
        .code(0);
    let value = parse_json(&out.get_output().stdout);
    assert_eq!(
        value.as_object().unwrap().len(),
        3,
        "key, profile and server key only, no secret: {value}"
    );
    assert_eq!(value["profile"], name);
    assert_eq!(
        value["server_key"].as_str().map(str::len),
        Some(40),
        "{value}"
    );
    value["key"].as_str().unwrap().to_owned()
}

#[test]
fn keys_add_save_profile_writes_a_private_file_and_send_uses_it_without_an_endpoint() {
    let env = TestEnv::new();
    env.create_store();
    // CURVE, the default: the profile's server_key is what gets the records through.
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let key = add_profile(&env, "prod", server.endpoint());
    let mode = std::fs::metadata(env.credentials_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(env.credentials_path()).unwrap();
    assert!(text.contains("[prod]") && text.contains(&key), "{text}");

    env.zavro()
        .args(["send", "--profile", "prod"])
        .write_stdin("{\"via\":\"flag\"}")
        .assert()
        .code(0);
    env.zavro()
        .args(["send"])
        .env("ZAVRO_PROFILE", "prod")
        .write_stdin("{\"via\":\"env\"}")
        .assert()
        .code(0);
    assert_eq!(
        env.output_lines(),
        ["{\"via\":\"flag\"}", "{\"via\":\"env\"}"]
    );
    let sends = env.audit_sends();
    assert!(sends.iter().all(|row| row["key"] == key.as_str()));
}

#[test]
fn keys_add_refuses_to_replace_a_profile_without_force() {
    let env = TestEnv::new();
    let first = add_profile(&env, "prod", "127.0.0.1:1");
    let out = env
        .zavro()
        .args(["keys", "add", "--save-profile", "prod"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("--force"), "{}", stderr_of(&out));
    let keys = stdout_of(
        &env.zavro()
            .args(["keys", "list", "--json"])
            .assert()
            .code(0),
    );
    assert_eq!(
        keys.lines().count(),
        1,
        "no key was created for the refused profile"
    );
    let text = std::fs::read_to_string(env.credentials_path()).unwrap();
    assert!(text.contains(&first));

    let out = env
        .zavro()
        .args(["keys", "add", "--save-profile", "prod", "--force", "--json"])
        .assert()
        .code(0);
    let second = parse_json(&out.get_output().stdout)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(env.credentials_path()).unwrap();
    assert!(text.contains(&second) && !text.contains(&first), "{text}");
}

#[test]
fn flag_beats_environment_beats_profile_for_key_secret_and_endpoint() {
    let env = TestEnv::new();
    env.create_store();
    let server = env.start_server();
    let other_server = env.start_server();
    let profile_key = add_profile(&env, "default", server.endpoint());
    let (env_key, env_secret) = env.add_key();
    let (flag_key, flag_secret) = env.add_key();
    std::fs::write(env.path("flag-secret"), format!("{flag_secret}\n")).unwrap();

    // The sends use --plaintext against the harness's plaintext servers: this test is about key, secret and
    // endpoint; the server key's own precedence is covered in tests/cli/transport_client.rs.
    // Profile only: the `default` profile is used when none is named.
    env.zavro()
        .args(["send", "--plaintext"])
        .write_stdin("1")
        .assert()
        .code(0);
    // Environment over profile: ZAVRO_KEY and ZAVRO_SECRET; the endpoint still comes from the profile.
    env.zavro()
        .args(["send", "--plaintext"])
        .env("ZAVRO_KEY", &env_key)
        .env("ZAVRO_SECRET", &env_secret)
        .write_stdin("2")
        .assert()
        .code(0);
    // Flags over environment: --key and --secret-file, and an ENDPOINT argument over the profile's.
    env.zavro()
        .args([
            "send",
            other_server.endpoint(),
            "--plaintext",
            "--key",
            &flag_key,
            "--secret-file",
        ])
        .arg(env.path("flag-secret"))
        .env("ZAVRO_KEY", &env_key)
        .env("ZAVRO_SECRET", "wrong-secret-wrong-secret")
        .write_stdin("3")
        .assert()
        .code(0);
    let keys: Vec<String> = env
        .audit_sends()
        .iter()
        .map(|row| row["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, [profile_key, env_key.clone(), flag_key]);

    // A key from the environment never borrows the profile's secret: with no secret of its own and no
    // terminal, there is nothing to sign with.
    let out = crate::send_errors::send_without_terminal(&env)
        .args(["send", "--plaintext"])
        .env("ZAVRO_KEY", &env_key)
        .write_stdin("4")
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("no secret"), "{}", stderr_of(&out));
}

#[test]
fn a_missing_profile_or_endpoint_and_an_open_credentials_file_are_usage_errors() {
    let env = TestEnv::new();
    let out = env
        .zavro()
        .args(["send", "--profile", "nope", "--plaintext"])
        .write_stdin("1")
        .assert()
        .code(2);
    assert!(
        stderr_of(&out).contains("no profile \"nope\""),
        "{}",
        stderr_of(&out)
    );
    let out = env
        .zavro()
        .args(["send", "--plaintext"])
        .write_stdin("1")
        .assert()
        .code(2);
    assert!(
        stderr_of(&out).contains("no endpoint"),
        "{}",
        stderr_of(&out)
    );

    add_profile(&env, "prod", "127.0.0.1:1");
    std::fs::set_permissions(
        env.credentials_path(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = env
        .zavro()
        .args(["send", "--profile", "prod", "--plaintext"])
        .write_stdin("1")
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("chmod 600"), "{}", stderr_of(&out));
}

#[test]
fn bench_takes_key_secret_endpoint_and_server_key_from_the_profile() {
    let env = TestEnv::new();
    env.create_store();
    let server = Server::start_curve(&env, "127.0.0.1:*", &[]);
    let key = add_profile(&env, "load", server.endpoint());
    let out = env
        .zavro()
        .args([
            "bench",
            "--profile",
            "load",
            "--count",
            "5",
            "--batch",
            "5",
            "--json",
        ])
        .assert()
        .code(0);
    assert_eq!(parse_json(&out.get_output().stdout)["records"], 5);
    assert_eq!(env.output_lines().len(), 5);
    assert!(
        env.audit_sends()
            .iter()
            .all(|row| row["key"] == key.as_str())
    );
}

#[test]
fn keys_add_save_profile_without_a_name_saves_default_with_the_stores_server_key() {
    let env = TestEnv::new();
    let out = env
        .zavro()
        .args(["keys", "add", "--save-profile", "--json"])
        .assert()
        .code(0);
    let added = parse_json(&out.get_output().stdout);
    assert_eq!(added["profile"], "default", "{added}");
    // The key pair `serve` on this store presents: made by `keys add`, kept by the store.
    let server_key = zavro::store::Store::open(&env.db)
        .unwrap()
        .server_keys(zavro::timestamp::now_micros())
        .unwrap()
        .current;
    assert_eq!(added["server_key"], server_key.as_str());
    let text = std::fs::read_to_string(env.credentials_path()).unwrap();
    assert!(
        text.starts_with("[default]\n") && text.contains(&format!("\nserver_key = {server_key}\n")),
        "{text}"
    );

    let out = env
        .zavro()
        .args(["keys", "add", "--save-profile", "ci"])
        .assert()
        .code(0);
    assert!(
        stdout_of(&out).contains(&format!("server key: {server_key}")),
        "{}",
        stdout_of(&out)
    );
}
