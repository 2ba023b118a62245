//! `zavro audit query`: print audit rows as a table or as one JSON object per line.

use std::io::Write;

use serde_json::{Value, json};

use crate::{
    cli::{AuditCommand, AuditQueryArgs, StatusArg},
    error::Error,
    store::{AuditFilter, AuditRow, Status, Store},
    table::write_table,
    timestamp::{format_rfc3339, parse_rfc3339},
};

/// Runs one `audit` subcommand.
pub fn run(store: &Store, command: AuditCommand) -> Result<(), Error> {
    match command {
        AuditCommand::Query(args) => query(store, args),
        AuditCommand::Verify(args) => verify(store, args.against.as_deref()),
        AuditCommand::Head => {
            let head = store.audit_head()?;
            let mut out = std::io::stdout().lock();
            match head {
                Some((row, hash)) => writeln!(out, "{row}:{hash}").map_err(super::stdout_error),
                None => Err(Error::Other("the audit trail is empty".into())),
            }
        }
    }
}

fn verify(store: &Store, against: Option<&str>) -> Result<(), Error> {
    let against = against
        .map(|text| {
            text.trim()
                .split_once(':')
                .and_then(|(row, hash)| Some((row.parse::<i64>().ok()?, hash)))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--against {text:?} is not ROW:HASH (see `zavro audit head`)"
                    ))
                })
        })
        .transpose()?;
    let verified = store.verify_audit(against)??;
    let head = verified
        .head
        .map(|(row, hash)| format!("{row}:{hash}"))
        .unwrap_or_else(|| "none (empty trail)".into());
    writeln!(
        std::io::stdout().lock(),
        "verified {} rows; head {head}",
        verified.rows
    )
    .map_err(super::stdout_error)
}

fn query(store: &Store, args: AuditQueryArgs) -> Result<(), Error> {
    let time = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(parse_rfc3339)
            .transpose()
            .map_err(|e| Error::Usage(format!("{flag}: {e}")))
    };
    let filter = AuditFilter {
        key: args.key,
        status: args.status.map(|s| match s {
            StatusArg::Accepted => Status::Accepted,
            StatusArg::Rejected => Status::Rejected,
        }),
        since_us: time("--since", &args.since)?,
        until_us: time("--until", &args.until)?,
        limit: args.limit,
        with_payload: args.payload,
    };
    let rows = store.query_audit(&filter)?;
    let mut out = std::io::stdout().lock();
    let written = if args.json || args.payload {
        rows.iter()
            .try_for_each(|row| writeln!(out, "{}", to_json(row)))
    } else {
        let table: Vec<Vec<String>> = rows.iter().map(to_cells).collect();
        write_table(
            &mut out,
            &[
                "ID", "TIME", "ACTION", "STATUS", "KEY", "PEER", "RECORDS", "REASON",
            ],
            &table,
        )
    };
    written.map_err(super::stdout_error)
}

/// The JSON form of a row (README.md, `zavro audit query`).
fn to_json(row: &AuditRow) -> Value {
    let mut value = json!({
        "id": row.id,
        "time": format_rfc3339(row.time_us),
        "action": row.action,
        "status": row.status,
        "reason": row.reason,
        "message": row.detail,
        "key": row.key_id,
        "peer": row.peer,
        "records": row.records,
        "size": row.size,
    });
    if let Some(payload) = &row.payload {
        // Stored by the server from serde_json output, so it parses; keep the text if it somehow does not.
        value["payload"] =
            serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.clone()));
    }
    value
}

fn to_cells(row: &AuditRow) -> Vec<String> {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let reason = match (&row.reason, &row.detail) {
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        (Some(code), None) => code.clone(),
        _ => "-".into(),
    };
    vec![
        row.id.to_string(),
        format_rfc3339(row.time_us),
        row.action.clone(),
        row.status.clone(),
        or_dash(&row.key_id),
        or_dash(&row.peer),
        row.records.to_string(),
        reason,
    ]
}
