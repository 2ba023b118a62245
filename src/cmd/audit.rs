//! `zavro audit query|verify|head|stats|export|prune|schemas`: read, summarise, check and trim the audit trail.

use std::{
    collections::BTreeMap,
    io::{BufWriter, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::{
    avro::SchemaFingerprint,
    cli::{
        AuditCommand, AuditExportArgs, AuditPruneArgs, AuditQueryArgs, AuditSchemasArgs,
        AuditStatsArgs, FormatArg, PeriodArgs, StatusArg,
    },
    error::Error,
    store::{AuditCount, AuditFilter, AuditRow, AuditStore, SchemaRow, Status},
    table::{write_table, write_table_rows},
    timestamp::{self, format_rfc3339},
};

/// How often `audit query --follow` looks for new rows.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Most rows `--follow` reads per look, so a burst never has to fit in memory at once.
const FOLLOW_PAGE: u64 = 1000;

/// Rows `--follow` shows from before it started when no --limit is given, like `tail -f`.
const FOLLOW_BACKLOG: u64 = 10;

/// Columns of the table form, in order.
const COLUMNS: [&str; 10] = [
    "ID", "TIME", "ACTION", "STATUS", "KEY", "PEER", "SERVER", "RECORDS", "SCHEMA", "REASON",
];

/// Columns of the CSV form, in order: the fields of the JSON form without the payload.
const CSV_COLUMNS: [&str; 14] = [
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
];

/// Characters of a fingerprint shown in tables: enough to tell schemas apart and to paste into `--schema`.
const SHORT_FINGERPRINT: usize = 12;

/// Runs one `audit` subcommand.
pub fn run(store: &mut dyn AuditStore, command: AuditCommand) -> Result<(), Error> {
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
        AuditCommand::Stats(args) => stats(store, args),
        AuditCommand::Export(args) => export(store, args),
        AuditCommand::Prune(args) => prune(store, args),
        AuditCommand::Schemas(args) => schemas(store, args),
    }
}

fn verify(store: &mut dyn AuditStore, against: Option<&str>) -> Result<(), Error> {
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

/// `--since` / `--until` as µs since the epoch; relative times count back from now.
fn period(args: &PeriodArgs, now_us: i64) -> Result<(Option<i64>, Option<i64>), Error> {
    let time = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| timestamp::parse_past(t, now_us))
            .transpose()
            .map_err(|e| Error::Usage(format!("{flag}: {e}")))
    };
    Ok((time("--since", &args.since)?, time("--until", &args.until)?))
}

fn query(store: &mut dyn AuditStore, args: AuditQueryArgs) -> Result<(), Error> {
    let (since_us, until_us) = period(&args.period, timestamp::now_micros())?;
    let format = if args.json || args.payload {
        FormatArg::Json
    } else {
        args.format
    };
    let mut filter = AuditFilter {
        key: args.key,
        status: args.status.map(|s| match s {
            StatusArg::Accepted => Status::Accepted,
            StatusArg::Rejected => Status::Rejected,
        }),
        peer: args.peer,
        reason: args.reason,
        schema: args
            .schema
            .as_deref()
            .map(|schema| resolve_schema(store, schema))
            .transpose()?,
        since_us,
        until_us,
        after_id: None,
        limit: args.limit.or(args.follow.then_some(FOLLOW_BACKLOG)),
        with_payload: args.payload,
    };
    let mut printer = Printer::new(format, BufWriter::new(std::io::stdout().lock()));
    if !args.follow {
        // Streamed row by row, so even an unfiltered query of millions of rows runs in bounded memory (the
        // table form alone gathers its rows to align the columns).
        store.try_for_each_audit(&filter, |row| printer.row(&row))?;
        return printer.finish();
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Error::io("cannot install signal handler", e))?;
    }
    let mut last_id = None;
    loop {
        let mut seen = 0u64;
        store.try_for_each_audit(&filter, |row| {
            last_id = Some(row.id);
            seen += 1;
            printer.row(&row)
        })?;
        printer.finish()?;
        if last_id.is_none() {
            // Nothing matched yet: follow from the newest row now, whatever it is.
            last_id = Some(store.audit_head()?.map_or(0, |(id, _)| id));
        }
        filter.after_id = last_id;
        filter.limit = Some(FOLLOW_PAGE);
        // A full page means more rows are waiting: read on at once instead of sleeping.
        if seen < FOLLOW_PAGE {
            std::thread::sleep(FOLLOW_INTERVAL);
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
}

/// The full fingerprint `--schema` names: of the schema in a file (seen or not), or of the one stored schema a
/// hex prefix fits.
fn resolve_schema(store: &mut dyn AuditStore, given: &str) -> Result<String, Error> {
    match schema_in_file(given)? {
        Some(fingerprint) => Ok(fingerprint),
        None => Ok(stored_schema_by_prefix(store, given)?.fingerprint),
    }
}

/// The fingerprint of the schema in file `given`, or `None` when no such file exists.
fn schema_in_file(given: &str) -> Result<Option<String>, Error> {
    let path = std::path::Path::new(given);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read schema {given}"), e))?;
    let schema = apache_avro::Schema::parse_str(&text)
        .map_err(|e| Error::Usage(format!("--schema {given}: not an Avro schema: {e}")))?;
    Ok(Some(SchemaFingerprint::of(&schema, &text).fingerprint))
}

/// The one stored schema whose fingerprint starts with the hex digits `given`.
fn stored_schema_by_prefix(store: &mut dyn AuditStore, given: &str) -> Result<SchemaRow, Error> {
    if given.len() < 4 || given.len() > 64 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Usage(format!(
            "--schema {given:?} is neither a file nor a fingerprint (at least 4 hex digits; see `zavro audit schemas`)"
        )));
    }
    let mut found = store.schemas_matching(given)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Other(format!(
            "no schema with fingerprint {given} has been seen (see `zavro audit schemas`)"
        ))),
        n => Err(Error::Usage(format!(
            "fingerprint {given} is ambiguous: {n} schemas start with it; give more digits"
        ))),
    }
}

/// `audit schemas`: the table of schemas seen, or one schema's text.
fn schemas(store: &mut dyn AuditStore, args: AuditSchemasArgs) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    if let Some(given) = &args.fingerprint {
        let fingerprint = schema_in_file(given)?;
        let schema = stored_schema_by_prefix(store, fingerprint.as_deref().unwrap_or(given))?;
        let written = if args.json {
            writeln!(out, "{}", schema_json(&schema))
        } else {
            writeln!(out, "{}", schema.text.trim_end())
        };
        return written.map_err(super::stdout_error);
    }
    let schemas = store.list_schemas()?;
    let written = if args.json {
        schemas
            .iter()
            .try_for_each(|schema| writeln!(out, "{}", schema_json(schema)))
    } else {
        let rows: Vec<Vec<String>> = schemas
            .iter()
            .map(|schema| {
                vec![
                    short_fingerprint(&schema.fingerprint).to_owned(),
                    schema_name(&schema.canonical),
                    format_rfc3339(schema.first_seen_us),
                    schema
                        .last_used_us
                        .map_or_else(|| "-".into(), format_rfc3339),
                    schema.requests.to_string(),
                ]
            })
            .collect();
        write_table(
            &mut out,
            &["FINGERPRINT", "NAME", "FIRST SEEN", "LAST USED", "REQUESTS"],
            &rows,
        )
    };
    written.map_err(super::stdout_error)
}

/// The first [`SHORT_FINGERPRINT`] characters of a fingerprint, or all of it when shorter: a store edited
/// behind zavro's back may hold any text there, which must not make a listing panic.
fn short_fingerprint(fingerprint: &str) -> &str {
    fingerprint
        .char_indices()
        .nth(SHORT_FINGERPRINT)
        .map_or(fingerprint, |(end, _)| &fingerprint[..end])
}

fn schema_json(schema: &SchemaRow) -> Value {
    json!({
        "fingerprint": schema.fingerprint,
        "name": schema_name(&schema.canonical),
        "first_seen": format_rfc3339(schema.first_seen_us),
        "last_used": schema.last_used_us.map(format_rfc3339),
        "requests": schema.requests,
        "canonical": schema.canonical,
        "schema": schema.text,
    })
}

/// What a schema is called: a named type's full name, else its type (`union` for a union).
fn schema_name(canonical: &str) -> String {
    match serde_json::from_str::<Value>(canonical) {
        Ok(Value::Object(map)) => map
            .get("name")
            .or_else(|| map.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned(),
        Ok(Value::String(primitive)) => primitive,
        Ok(Value::Array(_)) => "union".into(),
        _ => "-".into(),
    }
}

/// Writes rows in one format; the table form aligns each batch (one batch unless following).
struct Printer<W: Write> {
    form: Form<W>,
    header_written: bool,
}

/// Where a [`Printer`]'s rows go, and what the table form holds until its batch ends.
enum Form<W: Write> {
    Json(W),
    /// Boxed: the writer carries its state and buffer inline, far larger than the other forms.
    Csv(Box<csv::Writer<W>>),
    Table(W, Vec<Vec<String>>),
}

impl<W: Write> Printer<W> {
    fn new(format: FormatArg, out: W) -> Self {
        let form = match format {
            FormatArg::Json => Form::Json(out),
            FormatArg::Csv => Form::Csv(Box::new(csv::Writer::from_writer(out))),
            FormatArg::Table => Form::Table(out, Vec::new()),
        };
        Printer {
            form,
            header_written: false,
        }
    }

    fn row(&mut self, row: &AuditRow) -> Result<(), Error> {
        match &mut self.form {
            Form::Json(out) => writeln!(out, "{}", to_json(row)).map_err(super::stdout_error),
            Form::Csv(out) => {
                write_csv_header(out, &mut self.header_written)?;
                out.write_record(to_csv(row)).map_err(csv_error)
            }
            Form::Table(_, rows) => {
                rows.push(to_cells(row));
                Ok(())
            }
        }
    }

    /// Ends a batch: writes what it holds (the CSV header at least, so a consumer always sees the columns) and
    /// flushes, so `--follow` shows each batch at once.
    fn finish(&mut self) -> Result<(), Error> {
        match &mut self.form {
            Form::Json(out) => out.flush().map_err(super::stdout_error),
            Form::Csv(out) => {
                write_csv_header(out, &mut self.header_written)?;
                out.flush().map_err(super::stdout_error)
            }
            Form::Table(out, rows) => {
                let rows = std::mem::take(rows);
                let written = if self.header_written {
                    write_table_rows(out, &COLUMNS, &rows)
                } else {
                    self.header_written = true;
                    write_table(out, &COLUMNS, &rows)
                };
                written
                    .and_then(|()| out.flush())
                    .map_err(super::stdout_error)
            }
        }
    }
}

/// The CSV header row, unless `written` says it is out already.
fn write_csv_header<W: Write>(out: &mut csv::Writer<W>, written: &mut bool) -> Result<(), Error> {
    if *written {
        return Ok(());
    }
    *written = true;
    out.write_record(CSV_COLUMNS).map_err(csv_error)
}

/// A failure to write CSV: an I/O error stays one, so a closed pipe still ends `audit query | head` quietly.
fn csv_error(error: csv::Error) -> Error {
    let message = error.to_string();
    match error.into_kind() {
        csv::ErrorKind::Io(io) => super::stdout_error(io),
        _ => Error::Other(format!("cannot write CSV: {message}")),
    }
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
        "schema": row.schema,
        "requests": row.requests,
        "transport": row.transport,
        "server": row.server,
        "request_id": row.request_id,
    });
    if let Some(payload) = &row.payload {
        // Stored by the server from serde_json output, so it parses; keep the text if it somehow does not.
        value["payload"] =
            serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.clone()));
    }
    value
}

/// The CSV fields of a row, in the order of [`CSV_COLUMNS`]; the csv crate quotes them (RFC 4180).
///
/// Text that can come from outside zavro (a key id, a peer, a reason's message) is neutralised as a spreadsheet
/// formula; zavro's own numbers and times are written as they are.
fn to_csv(row: &AuditRow) -> [String; 14] {
    let text = |v: &str| neutralise_formula(v).into_owned();
    let optional = |v: &Option<String>| v.as_deref().map_or_else(String::new, text);
    [
        row.id.to_string(),
        format_rfc3339(row.time_us),
        text(&row.action),
        text(&row.status),
        optional(&row.reason),
        optional(&row.detail),
        optional(&row.key_id),
        optional(&row.peer),
        row.records.to_string(),
        row.size.to_string(),
        optional(&row.schema),
        row.requests.to_string(),
        optional(&row.transport),
        optional(&row.server),
    ]
}

/// `text` as a spreadsheet shows it as text: OWASP's rule against CSV injection puts a `'` before a field that
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return, which would otherwise be read as a formula.
fn neutralise_formula(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
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
        or_dash(&row.server),
        row.records.to_string(),
        row.schema
            .as_deref()
            .map_or_else(|| "-".into(), |fp| short_fingerprint(fp).to_owned()),
        reason,
    ]
}

/// Per-key or per-server totals for `audit stats`.
#[derive(Default)]
struct Totals {
    accepted: u64,
    records: u64,
    duplicates: u64,
    rejected: u64,
}

impl Totals {
    /// Adds one group of counted requests.
    fn add(&mut self, count: &AuditCount) {
        match (count.status.as_str(), count.reason.as_deref()) {
            ("accepted", None) => {
                self.accepted += count.requests;
                self.records += count.records;
            }
            ("accepted", Some(_)) => self.duplicates += count.requests,
            _ => self.rejected += count.requests,
        }
    }

    /// The JSON object of these totals, named `field: name` (null for `-`).
    fn to_json(&self, field: &str, name: &str) -> Value {
        json!({
            field: (name != "-").then_some(name),
            "accepted": self.accepted,
            "records": self.records,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        })
    }

    /// The table cells of these totals, after `name`.
    fn to_cells(&self, name: &str) -> Vec<String> {
        vec![
            name.to_owned(),
            self.accepted.to_string(),
            self.records.to_string(),
            self.duplicates.to_string(),
            self.rejected.to_string(),
        ]
    }
}

fn stats(store: &mut dyn AuditStore, args: AuditStatsArgs) -> Result<(), Error> {
    let now_us = timestamp::now_micros();
    let (since_us, until_us) = period(&args.period, now_us)?;
    let counts = store.count_audit(since_us, until_us)?;
    let mut keys: BTreeMap<String, Totals> = BTreeMap::new();
    let mut servers: BTreeMap<String, Totals> = BTreeMap::new();
    let mut reasons: BTreeMap<(String, String), u64> = BTreeMap::new();
    let or_dash = |name: &Option<String>| name.clone().unwrap_or_else(|| "-".into());
    for count in &counts {
        keys.entry(or_dash(&count.key_id)).or_default().add(count);
        servers
            .entry(or_dash(&count.server))
            .or_default()
            .add(count);
        let reason = count.reason.clone().unwrap_or_else(|| "stored".into());
        *reasons.entry((count.status.clone(), reason)).or_default() += count.requests;
    }
    let time = |t: Option<i64>| t.map(format_rfc3339);
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let value = json!({
            "since": time(since_us),
            "until": time(until_us.or(Some(now_us))),
            "keys": keys.iter().map(|(key, t)| t.to_json("key", key)).collect::<Vec<_>>(),
            "servers": servers.iter().map(|(server, t)| t.to_json("server", server)).collect::<Vec<_>>(),
            "reasons": reasons.iter().map(|((status, reason), n)| json!({
                "status": status, "reason": reason, "requests": n,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{value}")
    } else {
        let key_rows: Vec<Vec<String>> = keys.iter().map(|(key, t)| t.to_cells(key)).collect();
        let server_rows: Vec<Vec<String>> = servers
            .iter()
            .map(|(server, t)| t.to_cells(server))
            .collect();
        let reason_rows: Vec<Vec<String>> = reasons
            .iter()
            .map(|((status, reason), n)| vec![status.clone(), reason.clone(), n.to_string()])
            .collect();
        let totals = |first: &'static str| [first, "ACCEPTED", "RECORDS", "DUPLICATES", "REJECTED"];
        writeln!(
            out,
            "requests from {} to {}",
            time(since_us).unwrap_or_else(|| "the start".into()),
            format_rfc3339(until_us.unwrap_or(now_us))
        )
        .and_then(|()| writeln!(out))
        .and_then(|()| write_table(&mut out, &totals("KEY"), &key_rows))
        .and_then(|()| writeln!(out))
        .and_then(|()| write_table(&mut out, &totals("SERVER"), &server_rows))
        .and_then(|()| writeln!(out))
        .and_then(|()| write_table(&mut out, &["STATUS", "REASON", "REQUESTS"], &reason_rows))
    };
    written.map_err(super::stdout_error)
}

fn export(store: &mut dyn AuditStore, args: AuditExportArgs) -> Result<(), Error> {
    let (since_us, until_us) = period(&args.period, timestamp::now_micros())?;
    let filter = AuditFilter {
        since_us,
        until_us,
        with_payload: true,
        ..AuditFilter::default()
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    store.try_for_each_audit(&filter, |row| {
        writeln!(out, "{}", to_json(&row)).map_err(super::stdout_error)
    })?;
    out.flush().map_err(super::stdout_error)
}

fn prune(store: &mut dyn AuditStore, args: AuditPruneArgs) -> Result<(), Error> {
    let now_us = timestamp::now_micros();
    let before_us = timestamp::parse_past(&args.before, now_us)
        .map_err(|e| Error::Usage(format!("--before: {e}")))?;
    // Rows inside the replay window keep their nonces, which are what refuses a replayed request. A request
    // whose timestamp was up to --max-skew ahead of the server's clock when its row was written stays acceptable
    // until --max-skew after that timestamp: twice --max-skew after its row.
    let window_secs = 2 * i64::from(args.max_skew);
    let newest_allowed = now_us - window_secs * 1_000_000;
    if before_us > newest_allowed {
        return Err(Error::Usage(format!(
            "--before {} is inside the replay window: rows newer than {window_secs} s ({}), twice --max-skew, \
             are never pruned, since a request stamped up to --max-skew ahead stays acceptable that long",
            format_rfc3339(before_us),
            format_rfc3339(newest_allowed)
        )));
    }
    let pruned = store.prune_audit(before_us, now_us, args.dry_run)?;
    let mut out = std::io::stdout().lock();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let written = match pruned.range {
        None => writeln!(
            out,
            "nothing to prune: no audit row is older than {}",
            format_rfc3339(before_us)
        ),
        Some(((first_id, first_us), (last_id, last_us))) => writeln!(
            out,
            "{verb} {} audit rows (#{first_id} to #{last_id}, {} to {}), {} payloads, {} nonces{}{}",
            pruned.rows,
            format_rfc3339(first_us),
            format_rfc3339(last_us),
            pruned.payloads,
            pruned.nonces,
            if args.dry_run {
                String::new()
            } else {
                format!(" and {} schemas no row uses any more", pruned.schemas)
            },
            if args.dry_run {
                String::new()
            } else {
                format!(
                    "; checkpoint {last_id}:{}",
                    pruned.last_hash.unwrap_or_default()
                )
            }
        ),
    };
    written.map_err(super::stdout_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_with(detail: &str, key: &str, peer: &str) -> AuditRow {
        AuditRow {
            id: 7,
            time_us: 1_800_000_000_000_000,
            action: "send".into(),
            status: "rejected".into(),
            reason: Some("bad_signature".into()),
            detail: Some(detail.into()),
            key_id: Some(key.into()),
            peer: Some(peer.into()),
            records: -3,
            size: 120,
            payload: None,
            schema: None,
            requests: 1,
            transport: None,
            server: None,
            request_id: None,
        }
    }

    /// The CSV form of `rows`, read back with a CSV reader: the header, then each record's fields.
    fn csv_round_trip(rows: &[AuditRow]) -> (Vec<String>, Vec<Vec<String>>) {
        let mut bytes = Vec::new();
        let mut printer = Printer::new(FormatArg::Csv, &mut bytes);
        for row in rows {
            printer.row(row).unwrap();
        }
        printer.finish().unwrap();
        drop(printer);
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let header = reader.headers().unwrap().iter().map(String::from).collect();
        let records = reader
            .records()
            .map(|record| record.unwrap().iter().map(String::from).collect())
            .collect();
        (header, records)
    }

    #[test]
    fn csv_fields_with_commas_quotes_and_line_breaks_read_back_unchanged() {
        let detail = "bad \"signature\", from a client\nthat\r\nretried";
        let (header, records) = csv_round_trip(&[
            row_with(detail, "ZK0123", "127.0.0.1"),
            row_with("plain", "ZK4567", "10.0.0.1:5000"),
        ]);
        assert_eq!(header, CSV_COLUMNS);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0][5], detail);
        assert_eq!(records[0][6], "ZK0123");
        assert_eq!(records[1][5], "plain");
        assert_eq!(records[1][7], "10.0.0.1:5000");
        assert_eq!(records[0][10], "", "no schema is an empty field");
    }

    #[test]
    fn csv_text_that_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote() {
        for start in ["=", "+", "-", "@", "\t", "\r"] {
            let formula = format!("{start}HYPERLINK(\"http://evil.example\",\"a, b\")");
            let (_, records) = csv_round_trip(&[row_with(&formula, &formula, &formula)]);
            let expected = format!("'{formula}");
            assert_eq!(records[0][5], expected, "message");
            assert_eq!(records[0][6], expected, "key");
            assert_eq!(records[0][7], expected, "peer");
        }
        let (_, records) = csv_round_trip(&[row_with("a=b, -1", "ZK-1", "127.0.0.1")]);
        assert_eq!(
            records[0][5], "a=b, -1",
            "only a field's first character counts"
        );
        assert_eq!(records[0][6], "ZK-1");
        assert_eq!(
            records[0][8], "-3",
            "zavro's own numbers are written as they are"
        );
        assert_eq!(records[0][0], "7");
    }

    #[test]
    fn a_short_fingerprint_is_a_prefix_even_of_odd_text() {
        let full = "7b8e6d49a0c1f2e3d4c5b6a79887766554433221100ffeeddccbbaa9988776655";
        assert_eq!(short_fingerprint(full), &full[..SHORT_FINGERPRINT]);
        assert_eq!(short_fingerprint("abc"), "abc");
        assert_eq!(short_fingerprint(""), "");
        assert_eq!(short_fingerprint("aééééééééééééé"), "aééééééééééé");
    }

    #[test]
    fn an_empty_csv_still_has_its_header() {
        let (header, records) = csv_round_trip(&[]);
        assert_eq!(header, CSV_COLUMNS);
        assert!(records.is_empty());
    }
}
