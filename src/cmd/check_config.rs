//! `zavro serve … --check-config [--json]`: the settings `serve` would run with, checked as `serve` checks them
//! at start-up, printed, and no socket bound. For deployment scripts: exit 0 when `serve` would start with
//! these, else the one-line error and exit code `serve` would stop with. Nothing is written to the store.

use std::{io::Write, path::Path};

use serde::Serialize;

use super::serve::{self, Served};
use crate::{cli::ServeArgs, error::Error, server::Log};

/// The settings, as printed.
#[derive(Debug, Serialize)]
struct Settings {
    /// The ZeroMQ endpoint to bind (a `*` port is picked by the OS when binding).
    endpoint: String,
    /// `sqlite` or `postgresql`.
    backend: &'static str,
    /// The store's file, or its URL without a password.
    store: String,
    /// The fingerprint of the master key the store is sealed under.
    sealed_under: Option<String>,
    /// `curve` or `plaintext`.
    transport: &'static str,
    /// The CURVE public key serve presents; `None` over plaintext, or when the store has none yet.
    server_key: Option<String>,
    /// The name written into the audit rows.
    name: String,
    /// `--max-skew`.
    max_skew_secs: u32,
    /// `--max-message-size`.
    max_message_size: u32,
    /// The connections held at most, as serve would compute them.
    max_connections: u32,
    /// The soft open-file limit serve would run with (raised to the hard limit).
    open_file_limit: u64,
    /// The reader schemas, one file each; empty when any schema is accepted.
    schemas: Vec<String>,
    /// The file accepted records are appended to; `None` for stdout.
    output: Option<String>,
    /// `text` or `json`.
    log_format: &'static str,
    /// `--allow-async-commit`.
    allow_async_commit: bool,
    /// `--metrics`: where metrics, /healthz and /readyz would be served (not bound here); `None` when off.
    metrics: Option<String>,
}

/// Checks and prints the settings of `args` with `store`; binds nothing, writes nothing to the store.
pub fn run<S: Served>(store: &mut S, args: &ServeArgs, log: &mut Log) -> Result<(), Error> {
    let endpoint = serve::bind_endpoint(args)?;
    let name = serve::server_name(args)?;
    let schemas = serve::schema_files(&args.schemas)?;
    serve::load_schemas(&args.schemas)?;
    store.ready_to_serve(args, log)?;
    serve::require_curve(args)?;
    let max_connections = serve::connection_limit(args, log)?;
    if let Some(path) = &args.output {
        check_output(path)?;
    }
    let server_key = if args.plaintext {
        None
    } else {
        store.existing_server_key()?.map(|pair| pair.public_z85())
    };
    let (location, backend) = store.location();
    let settings = Settings {
        endpoint,
        backend,
        store: location,
        sealed_under: store.sealed_under()?,
        transport: if args.plaintext { "plaintext" } else { "curve" },
        server_key,
        name,
        max_skew_secs: args.max_skew,
        max_message_size: args.max_message_size,
        max_connections,
        open_file_limit: crate::hardening::open_file_limit(),
        schemas: schemas.iter().map(|p| p.display().to_string()).collect(),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        log_format: match serve::log_format(args) {
            crate::server::LogFormat::Text => "text",
            crate::server::LogFormat::Json => "json",
        },
        allow_async_commit: args.allow_async_commit,
        metrics: args.metrics.map(|address| address.to_string()),
    };
    let text = if args.json {
        serde_json::to_string(&settings).map_err(|e| Error::Other(e.to_string()))? + "\n"
    } else {
        as_text(&settings)
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(super::stdout_error)
}

/// The output file can be appended to (an existing file is opened, not changed), or made in its directory.
fn check_output(path: &Path) -> Result<(), Error> {
    let cannot = |e| Error::io(format!("cannot open output {}", path.display()), e);
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(cannot)
    } else {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if dir.is_dir() {
            Ok(())
        } else {
            Err(cannot(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )))
        }
    }
}

/// One `setting  value` line each, for people.
fn as_text(s: &Settings) -> String {
    let lines: [(&str, String); 15] = [
        ("endpoint", s.endpoint.clone()),
        ("store", format!("{} ({})", s.store, s.backend)),
        (
            "sealed",
            s.sealed_under
                .as_ref()
                .map_or("no".into(), |fp| format!("under master key {fp}")),
        ),
        ("transport", s.transport.into()),
        (
            "server key",
            match (&s.server_key, s.transport) {
                (Some(key), _) => key.clone(),
                (None, "plaintext") => "none (plaintext)".into(),
                (None, _) => "none yet: serve makes one at its first start".into(),
            },
        ),
        ("name", s.name.clone()),
        ("max skew", format!("{} s", s.max_skew_secs)),
        ("max message size", format!("{} bytes", s.max_message_size)),
        (
            "max connections",
            format!(
                "{} (open-file limit {})",
                s.max_connections, s.open_file_limit
            ),
        ),
        (
            "schemas",
            if s.schemas.is_empty() {
                "any".into()
            } else {
                s.schemas.join(", ")
            },
        ),
        (
            "output",
            s.output.clone().unwrap_or_else(|| "stdout".into()),
        ),
        ("log format", s.log_format.into()),
        (
            "async commit",
            if s.allow_async_commit {
                "allowed (--allow-async-commit)".into()
            } else {
                "refused".into()
            },
        ),
        (
            "metrics",
            s.metrics
                .as_ref()
                .map_or("off".into(), |address| format!("http://{address}/metrics")),
        ),
        ("status", "ok: serve would start with these settings".into()),
    ];
    lines
        .iter()
        .map(|(name, value)| format!("{name:<17} {value}\n"))
        .collect()
}
