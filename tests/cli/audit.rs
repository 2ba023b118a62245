//! `zavro audit query|verify|head|stats|export`: filters, the table and JSON forms, a reader that goes away early,
//! and the hash chain catching what was edited behind zavro's back. Each test runs on SQLite and on PostgreSQL
//! (`on_both_backends!`).

use std::process::{Command as StdCommand, Stdio};

use serde_json::{Value, json};

use crate::common::{
    Server, TestEnv, ZAVRO_VARS, on_both_backends, parse_json, parse_ndjson, request_once,
    signed_now, stderr_of, stdout_of, zavro_bin, zavro_process,
};

on_both_backends!(
    audit_query_json_rows_have_the_documented_fields,
    audit_query_filters_by_status_key_and_limit,
    audit_query_since_is_inclusive_and_until_is_exclusive,
    audit_query_table_has_a_header_and_shows_reject_reasons,
    audit_query_and_keys_list_into_a_closed_pipe_exit_0_silently,
    audit_query_piped_into_head_exits_0_and_prints_nothing_on_stderr,
    a_fingerprint_edited_short_or_odd_in_the_store_is_shown_not_a_panic,
    audit_verify_accepts_an_untouched_trail_and_its_recorded_head,
    audit_verify_names_an_edited_row_and_exits_6,
    audit_verify_finds_an_edited_payload,
    audit_verify_finds_a_deleted_row,
    audit_verify_finds_a_truncated_tail,
    serve_name_is_in_every_row_the_server_writes_and_query_stats_and_export_show_it,
    serve_names_itself_after_the_host_by_default,
    a_server_name_that_is_empty_unprintable_or_too_long_is_a_one_line_usage_error,
);

/// `env`'s store with two keys and a mix of accepted and rejected sends; returns (env, key a, key b).
fn busy_store(env: TestEnv) -> (TestEnv, String, String) {
    let (a, secret_a) = env.add_key();
    let (b, secret_b) = env.add_key();
    let server = env.start_server();
    let ep = server.endpoint().to_owned();
    env.send(&ep, &a, &secret_a, "{\"n\":1}").code(0);
    env.send(&ep, &a, "wrong-secret-wrong-secret", "{\"n\":2}")
        .code(4);
    env.send(&ep, &b, &secret_b, "{\"n\":3}\n{\"n\":4}").code(0);
    env.send(&ep, &b, &secret_a, "{\"n\":5}").code(4);
    env.send(&ep, &a, &secret_a, "{\"n\":6}").code(0);
    (env, a, b)
}

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

fn audit_query_json_rows_have_the_documented_fields(env: TestEnv) {
    let (env, a, _) = busy_store(env);
    let out = env
        .zavro()
        .args(["audit", "query", "--json"])
        .assert()
        .code(0);
    let rows = parse_ndjson(&out.get_output().stdout);
    assert_eq!(rows.len(), 7);
    let fields: Vec<&str> = rows[2]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "id",
            "time",
            "action",
            "status",
            "reason",
            "message",
            "key",
            "peer",
            "records",
            "size",
            "schema",
            "requests",
            "transport",
            "server",
            "request_id"
        ],
        "no payload without --payload"
    );
    let accepted = &rows[2];
    assert_eq!(
        (
            &accepted["action"],
            &accepted["status"],
            &accepted["key"],
            &accepted["records"]
        ),
        (&json!("send"), &json!("accepted"), &json!(a), &json!(1))
    );
    assert!(accepted["size"].as_u64().unwrap() > 0);
    assert!(zavro::timestamp::parse_rfc3339(accepted["time"].as_str().unwrap()).is_ok());
    let rejected = &rows[3];
    assert_eq!(rejected["reason"], "bad_signature");
    assert!(rejected["message"].as_str().unwrap().contains("signature"));
    assert_eq!(rejected["records"], 0);
}

fn audit_query_filters_by_status_key_and_limit(env: TestEnv) {
    let (env, a, b) = busy_store(env);
    let all = env.audit();
    let all_ids = ids(&all);

    let rejected = env.audit_with(&["--status", "rejected"]);
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["bad_signature", "bad_signature"]);

    let accepted = env.audit_with(&["--status", "accepted"]);
    assert!(accepted.iter().all(|r| r["status"] == "accepted"));
    assert_eq!(accepted.len(), 5, "2 key_add and 3 sends");

    let of_b = env.audit_with(&["--key", &b]);
    assert!(of_b.iter().all(|r| r["key"] == b.as_str()));
    assert_eq!(of_b.len(), 3);
    assert_eq!(of_b[1]["payload"], json!([{"n": 3}, {"n": 4}]));

    let a_rejected = env.audit_with(&["--key", &a, "--status", "rejected"]);
    assert_eq!(a_rejected.len(), 1);

    let last_two = env.audit_with(&["--limit", "2"]);
    assert_eq!(
        ids(&last_two),
        all_ids[all_ids.len() - 2..],
        "the newest two, oldest first"
    );
    let none = env.audit_with(&["--limit", "0"]);
    assert!(none.is_empty());
}

fn audit_query_since_is_inclusive_and_until_is_exclusive(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    let all = env.audit();
    let time =
        |row: &Value| zavro::timestamp::parse_rfc3339(row["time"].as_str().unwrap()).unwrap();
    let pivot_text = all[3]["time"].as_str().unwrap().to_owned();
    let pivot = time(&all[3]);

    let since = env.audit_with(&["--since", &pivot_text]);
    let expected: Vec<Value> = all.iter().filter(|r| time(r) >= pivot).cloned().collect();
    assert_eq!(ids(&since), ids(&expected));
    assert!(ids(&since).contains(&all[3]["id"].as_i64().unwrap()));

    let until = env.audit_with(&["--until", &pivot_text]);
    let expected: Vec<Value> = all.iter().filter(|r| time(r) < pivot).cloned().collect();
    assert_eq!(ids(&until), ids(&expected));

    let window = env.audit_with(&["--since", &pivot_text, "--until", &pivot_text]);
    assert!(window.is_empty());

    let out = env
        .zavro()
        .args(["audit", "query", "--since", "yesterday"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("RFC 3339"), "{}", stderr_of(&out));
}

fn audit_query_table_has_a_header_and_shows_reject_reasons(env: TestEnv) {
    let (env, a, _) = busy_store(env);
    let out = env.zavro().args(["audit", "query"]).assert().code(0);
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "TIME", "ACTION", "STATUS", "KEY", "PEER", "SERVER", "RECORDS", "SCHEMA",
            "REASON"
        ]
    );
    assert!(
        lines[4].contains("rejected")
            && lines[4].contains(&a)
            && lines[4].contains("bad_signature: "),
        "{}",
        lines[4]
    );
}

/// Spawns `zavro --db DB ARGS…` with stdout a pipe whose reading end is already closed.
fn run_into_closed_pipe(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("create a pipe");
    drop(reader);
    let mut cmd = zavro_process();
    let child = cmd
        .arg("--db")
        .arg(&env.db)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zavro");
    child.wait_with_output().expect("wait for zavro")
}

fn audit_query_and_keys_list_into_a_closed_pipe_exit_0_silently(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    for args in [
        &["audit", "query"][..],
        &["audit", "query", "--json", "--payload"],
        &["keys", "list"],
        &["keys", "list", "--json"],
        &["completions", "bash"],
    ] {
        let out = run_into_closed_pipe(&env, args);
        assert!(
            out.status.success(),
            "`zavro {}` exited with {}; stderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "`zavro {}` printed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn audit_query_piped_into_head_exits_0_and_prints_nothing_on_stderr(env: TestEnv) {
    let (key, secret) = env.add_key();
    let server = env.start_server();
    // 150 audit rows whose payloads make far more output than a pipe buffer holds.
    let filler = "x".repeat(2000);
    let ndjson: String = (0..150)
        .map(|i| format!("{{\"i\":{i},\"filler\":\"{filler}\"}}\n"))
        .collect();
    env.send_with(server.endpoint(), &key, &secret, &ndjson, &["--batch", "1"])
        .code(0);
    // Plus some rejected rows sent over raw ZeroMQ, which is quick.
    for _ in 0..5 {
        let frames = signed_now(&key, "wrong-secret-wrong-secret", &[json!(1)]).to_frames();
        request_once(server.endpoint(), &frames);
    }
    assert!(server.stop().success());
    assert_eq!(env.audited_requests(), 155);

    let stderr_file = env.path("stderr.txt");
    let mut bash = StdCommand::new("bash");
    for var in ZAVRO_VARS {
        bash.env_remove(var);
    }
    let out = bash
        .args([
            "-c",
            r#"set -o pipefail; "$1" --db "$2" audit query --payload 2>"$3" | head -n 1 >/dev/null"#,
            "bash",
        ])
        .arg(zavro_bin())
        .arg(&env.db)
        .arg(&stderr_file)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    assert!(
        out.status.success(),
        "pipeline exited with {}; zavro stderr: {stderr}",
        out.status
    );
    assert_eq!(stderr, "");
}

/// Runs one SQL statement (an UPDATE or DELETE of one row) directly on the store, SQLite file or PostgreSQL
/// database, as someone editing it behind zavro's back would.
pub fn tamper(env: &TestEnv, sql: &str) {
    let changed = if env.is_postgres() {
        env.psql(&format!("{sql} RETURNING 1;")).lines().count()
    } else {
        let conn = rusqlite::Connection::open(&env.db).expect("open the store");
        conn.execute(sql, []).expect("tamper with the store")
    };
    assert_eq!(changed, 1, "{sql}");
}

fn a_fingerprint_edited_short_or_odd_in_the_store_is_shown_not_a_panic(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    // The 3-character one is what used to panic; the other would split a character at the 12th byte.
    for edited in ["abc", "aéééééééééééééé"] {
        tamper(
            &env,
            &format!("UPDATE schemas SET fingerprint = '{edited}'"),
        );
        let listed = stdout_of(&env.zavro().args(["audit", "schemas"]).assert().code(0));
        let shown = edited.chars().take(12).collect::<String>();
        assert!(
            listed
                .lines()
                .nth(1)
                .unwrap()
                .starts_with(&format!("{shown} ")),
            "{listed}"
        );
        let table = stdout_of(&env.zavro().args(["audit", "query"]).assert().code(0));
        assert!(table.contains(&format!(" {shown} ")), "{table}");
    }
}

fn verify(env: &TestEnv, args: &[&str]) -> assert_cmd::assert::Assert {
    env.zavro().args(["audit", "verify"]).args(args).assert()
}

fn audit_verify_accepts_an_untouched_trail_and_its_recorded_head(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    let head = env.zavro().args(["audit", "head"]).assert().code(0);
    let head = stdout_of(&head).trim().to_owned();
    let (row, hash) = head.split_once(':').expect("ROW:HASH");
    assert_eq!(row, "7");
    assert_eq!(hash.len(), 64, "{head}");

    let out = verify(&env, &[]).code(0);
    assert_eq!(
        stdout_of(&out).trim(),
        format!("verified 7 rows; head {head}")
    );
    verify(&env, &["--against", &head]).code(0);
    verify(&env, &["--against", "not-a-head"]).code(2);
    verify(&env, &["--against", &format!("3:{}", "0".repeat(64))]).code(6);
}

fn audit_verify_names_an_edited_row_and_exits_6(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    tamper(
        &env,
        "UPDATE audit SET reason = NULL, status = 'accepted' WHERE id = 4",
    );
    let out = verify(&env, &[]).code(6);
    assert!(
        stderr_of(&out).contains("row #4 was altered"),
        "{}",
        stderr_of(&out)
    );
}

fn audit_verify_finds_an_edited_payload(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    tamper(
        &env,
        "UPDATE payloads SET json = '[{\"n\":100}]' WHERE audit_id = 3",
    );
    let out = verify(&env, &[]).code(6);
    assert!(stderr_of(&out).contains("row #3"), "{}", stderr_of(&out));
}

fn audit_verify_finds_a_deleted_row(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    tamper(&env, "DELETE FROM audit WHERE id = 4");
    let out = verify(&env, &[]).code(6);
    assert!(
        stderr_of(&out).contains("row #5 does not follow"),
        "{}",
        stderr_of(&out)
    );
}

fn audit_verify_finds_a_truncated_tail(env: TestEnv) {
    let (env, _, _) = busy_store(env);
    let head = env.zavro().args(["audit", "head"]).assert().code(0);
    let head = stdout_of(&head).trim().to_owned();
    tamper(&env, "DELETE FROM payloads WHERE audit_id = 7");
    tamper(&env, "DELETE FROM audit WHERE id = 7");
    let out = verify(&env, &[]).code(6);
    assert!(
        stderr_of(&out).contains("rows after #6 were deleted"),
        "{}",
        stderr_of(&out)
    );
    verify(&env, &["--against", &head]).code(6);
}

/// The cells of each data row of `audit query`'s table, split at whitespace (no cell of these rows has any
/// before the REASON column).
fn table_rows(env: &TestEnv) -> (Vec<String>, Vec<Vec<String>>) {
    let text = stdout_of(&env.zavro().args(["audit", "query"]).assert().code(0));
    let mut lines = text
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect());
    let header = lines.next().expect("a header line");
    (header, lines.collect())
}

fn serve_name_is_in_every_row_the_server_writes_and_query_stats_and_export_show_it(env: TestEnv) {
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &["--name", "alpha"]);
    let ep = server.endpoint().to_owned();
    env.send(&ep, &key, &secret, "{\"n\":1}").code(0);
    env.send(&ep, &key, "wrong-secret-wrong-secret", "{\"n\":2}")
        .code(4);
    server.stop();

    let rows = env.audit();
    let servers: Vec<&Value> = rows.iter().map(|r| &r["server"]).collect();
    assert_eq!(
        servers,
        [&Value::Null, &json!("alpha"), &json!("alpha")],
        "keys add is a local action; both requests were answered by alpha"
    );
    let (header, cells) = table_rows(&env);
    let column = header
        .iter()
        .position(|h| h == "SERVER")
        .expect("a SERVER column");
    let shown: Vec<&str> = cells.iter().map(|row| row[column].as_str()).collect();
    assert_eq!(shown, ["-", "alpha", "alpha"]);

    let exported = parse_ndjson(
        &env.zavro()
            .args(["audit", "export"])
            .assert()
            .code(0)
            .get_output()
            .stdout,
    );
    assert_eq!(exported[1]["server"], "alpha");
    let stats = parse_json(
        &env.zavro()
            .args(["audit", "stats", "--json"])
            .assert()
            .code(0)
            .get_output()
            .stdout,
    );
    assert_eq!(
        stats["servers"],
        json!([{"server": "alpha", "accepted": 1, "records": 1, "duplicates": 0, "rejected": 1}])
    );
    env.zavro().args(["audit", "verify"]).assert().code(0);
}

fn serve_names_itself_after_the_host_by_default(env: TestEnv) {
    let (key, secret) = env.add_key();
    let server = Server::start(&env, "127.0.0.1:*", &[]);
    env.send(server.endpoint(), &key, &secret, "{\"n\":1}")
        .code(0);
    server.stop();
    let host = nix::unistd::gethostname()
        .expect("the host name")
        .into_string()
        .expect("a UTF-8 host name");
    assert_eq!(env.audit_sends()[0]["server"], host.as_str());
}

fn a_server_name_that_is_empty_unprintable_or_too_long_is_a_one_line_usage_error(env: TestEnv) {
    env.create_store();
    let long = "x".repeat(65);
    for (name, says) in [
        ("", "cannot be empty"),
        ("al\npha", "not printable"),
        ("\u{1b}[2Jalpha", "not printable"),
        ("al\u{202e}pha", "not printable"),
        (long.as_str(), "65 characters"),
    ] {
        let out = env
            .zavro()
            .args(["serve", "127.0.0.1:*", "--plaintext", "--name", name])
            .assert()
            .code(2);
        let stderr = stderr_of(&out);
        assert_eq!(stderr.lines().count(), 1, "{name:?}: {stderr:?}");
        assert!(
            stderr.starts_with("zavro: --name: ") && stderr.contains(says),
            "{name:?}: {stderr:?}"
        );
        assert!(
            !stderr.contains('\u{1b}') && !stderr.contains('\u{202e}'),
            "{stderr:?}"
        );
    }
    let sixty_four = "é".repeat(64);
    let server = Server::start(&env, "127.0.0.1:*", &["--name", &sixty_four]);
    server.stop();
}
