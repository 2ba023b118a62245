//! The command line, as clap types only: no I/O here. `main` parses it and `cmd::run` acts on it.

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::{ArgValueCompleter, Shell};

/// The largest `--max-skew` a server may run with (a day); pruning falls back to it should a store's recorded
/// nonce window be missing.
pub const MAX_SKEW_LIMIT_SECS: i64 = 86_400;

const ROOT_EXAMPLES: &str = "\
Examples:
  zavro keys add --save-profile              a key; it, its secret, the server key into a profile
  zavro serve 127.0.0.1:12345                verify, audit and log what arrives
  zavro send 127.0.0.1:12345 < example.json  encrypted, to the server the profile pins
  zavro audit query --status rejected        who was refused, and why

Exit codes: 0 success, 1 failure, 2 usage error, 3 bad input, 4 rejected by the server,
5 server unreachable or silent, 6 audit chain broken, 7 no store, 8 server not authenticated
(wrong server key, plaintext/CURVE mismatch, key refused at the handshake, reply not signed),
9 master key missing, wrong or unusable (sealed store), 10 send --spool: spool full, 11 serve cannot
listen (endpoint or --metrics), 12 send --spool: requests refused for good were kept aside.";

const SERVE_EXAMPLES: &str = "\
Examples:
  zavro serve 127.0.0.1:12345                      tcp://127.0.0.1:12345, records to stdout
  zavro serve '127.0.0.1:*' --output out.ndjson    the OS picks the port; see the log line
  zavro serve ipc:///run/zavro/zavro.sock          a Unix socket, for clients on this machine
  zavro serve 127.0.0.1:12345 --plaintext          unencrypted, for benchmarks and old clients
  ZAVRO_DB='postgres://zavro@db.example/zavro?sslmode=verify-full' \
    zavro --master-key-file /etc/zavro/master.key serve 0.0.0.0:12345 --name a
                                                   one of several servers sharing a PostgreSQL store

Connections are encrypted and authenticated with CurveZMQ. The first line names the endpoint and the server's \
public key (also `zavro server-key`), which clients pin; each client proves its API key at the handshake, \
with a key pair derived from the key's secret, so a client whose key is unknown, revoked or expired is refused \
there, costing one handshake and no request (`zavro audit stats` counts them as handshake_refused).

On PostgreSQL any number of servers share keys, nonces and one audit trail: a key revoked anywhere is refused \
by every server from its next group, a request replayed to another server is a `replay`, and a retry of a \
stored request is a `duplicate` wherever it lands. Each needs the master key, and --name tells their rows \
apart. While the database is down they keep running and answer `internal` (retryable), and reconnect by \
themselves.";

const SEND_EXAMPLES: &str = "\
Examples:
  export ZAVRO_KEY=ZK0123456789ABCDEF
  zavro send 127.0.0.1:12345 < example.json      asks for the secret on the terminal
  ZAVRO_SECRET=... zavro send 127.0.0.1:12345 < records.ndjson
  zavro send --secret-file ~/.zavro-secret 127.0.0.1:12345 < example.json
  zavro send --profile prod < example.json      key, secret, endpoint, server key from the profile
  zavro send --server-key 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7' 10.0.0.5:12345 < records.ndjson
  zavro send --plaintext 127.0.0.1:12345 < example.json      to a `serve --plaintext` server
  zavro send --spool /var/spool/zavro --profile prod < records.ndjson   store and forward: spooled durably first
  zavro send --spool /var/spool/zavro --profile prod --flush            deliver what waits (e.g. from cron)

Credentials, first found wins: --key / --secret-file, then ZAVRO_KEY / ZAVRO_SECRET, then the profile \
(--profile, ZAVRO_PROFILE, or [default] in ~/.config/zavro/credentials), then a prompt for the secret. \
A profile's secret is used only with that profile's key. The server's public key likewise: --server-key, \
then ZAVRO_SERVER_KEY, then the profile's server_key (`zavro server-key` prints it on the server; `zavro keys \
add --save-profile` saves it); --plaintext instead of any. A wrong server key, a plaintext/CURVE mismatch, a key \
the server refuses at the handshake, or an acknowledgement the server did not sign stops `send` at once (exit 8).

Standard input holds JSON values separated by white space (NDJSON works) and is read as a stream. A single \
top-level array is a batch: its elements are the records. Bad input stops `send` before the request that \
would hold it; records of earlier requests were already accepted.

With --spool DIR nothing read is lost when the server is down or `send` is killed: each request is made \
durable in DIR before more input is read, and removed once the server acknowledged it. A server that stays \
down ends the run with exit 0 and a line saying how many requests wait; the next `send --spool DIR` (or \
`--flush`) sends them first, in order. A full spool (--spool-max-size) stops reading input: exit 10. A \
request the server refuses for good for its content (schema_mismatch, bad_payload, unsupported_schema, replay) \
is kept in DIR/refused with the reply, said in one line, and the rest is delivered: exit 12 at the end \
(--requeue-refused puts kept requests back in line). A refusal of the key or signature (revoked_key, say) moves \
nothing: `send` stops with exit 4 and the spool waits for the cause to be fixed.";

const BENCH_EXAMPLES: &str = "\
Examples:
  zavro bench 127.0.0.1:12345 --count 1000000                   batched throughput
  zavro bench 127.0.0.1:12345 --batch 1 --window 1 --count 5000  lockstep latency
  zavro bench 127.0.0.1:12345 --connections 4 --json              four senders, for scripts
  zavro bench 127.0.0.1:12345 --plaintext --count 1000000         a `serve --plaintext` server

The records are real: the server verifies, stores and logs them. Use a server and store meant for testing. \
The server's key is pinned as for `zavro send` (--server-key, ZAVRO_SERVER_KEY, the profile; or --plaintext).";

const KEYS_EXAMPLES: &str = "\
Examples:
  zavro keys add --label sensor-1      new key; the secret is printed once
  zavro keys list                      who has keys, and when each was last used
  zavro keys revoke ZK0123456789ABCDEF";

const KEYS_LIST_EXAMPLES: &str = "\
Examples:
  zavro keys list
  zavro keys list --json | jq -r 'select(.revoked == null) | .key'    keys still valid";

const KEYS_REVOKE_EXAMPLES: &str = "\
Examples:
  zavro keys revoke ZK0123456789ABCDEF
  zavro audit query --key ZK0123456789ABCDEF --status rejected    who still tries to use it";

const AUDIT_EXAMPLES: &str = "\
Examples:
  zavro audit query --status rejected --limit 20
  zavro audit verify
  zavro audit head >> ~/zavro-heads.txt
  zavro audit stats --since 24h
  zavro audit export --until 90d > audit-archive.ndjson
  zavro audit prune --before 90d --dry-run
  zavro audit schemas";

const AUDIT_HEAD_EXAMPLES: &str = "\
Examples:
  zavro audit head                                     prints e.g. 42:3f5a…
  zavro audit head | logger -t zavro-audit-head         keep a copy in the system log";

const SERVER_KEY_EXAMPLES: &str = "\
Examples:
  zavro server-key                     the public key `serve` presents, in Z85, for clients to pin
  zavro server-key --json              {\"current\": ..., \"staged\": ... or null}
  zavro server-key rotate --stage      make the next key now, to hand to clients ahead of time
  zavro server-key rotate              make the staged (or a new) key current

Clients that pin the server key know they reach this server and no other: CURVE encrypts the traffic to \
that key, and only the holder of its secret half (kept in the store, never printed) can answer. A running \
server keeps presenting the key it started with until it is restarted; its open connections keep their \
session until they reconnect.";

const SERVER_KEY_ROTATE_EXAMPLES: &str = "\
Examples:
  zavro server-key rotate --stage      prints the next key; the current one stays in use
  zavro server-key rotate              prints the new current key

Rolling a fleet without downtime: stage the next key, distribute it to the clients' configuration, rotate, \
then restart `serve`. Until the restart, running servers present the old key, and connections already open \
keep their session until they reconnect; a client that reconnects to the restarted server must pin the new \
key. Rotating without a staged key makes a new one at once.";

const STORE_EXAMPLES: &str = "\
Examples:
  zavro store status                                             sealed or not, and under which key
  zavro --master-key-file /etc/zavro/master.key store seal --create-key
  zavro --master-key-file old.key store reseal --new-master-key-file new.key --create-key
  zavro --master-key-file /etc/zavro/master.key store copy zavro.db 'postgres://zavro@db/zavro'

A sealed store keeps every secret (API secrets, the server's CURVE secret keys) encrypted under a master key \
that never enters the store, so the store file, a backup or a copy of it alone yields no usable secret. `serve` \
and `keys add` then need the key file: --master-key-file, ZAVRO_MASTER_KEY_FILE, or the systemd credential \
zavro-master-key (LoadCredential=); other commands do not.";

const STORE_SEAL_EXAMPLES: &str = "\
Examples:
  zavro --master-key-file /etc/zavro/master.key store seal --create-key    make the key file, then seal
  ZAVRO_MASTER_KEY_FILE=/etc/zavro/master.key zavro store seal             seal under a key file you made
  zavro --db new.db --master-key-file k.key store seal --create-key        a new store, sealed from the start

The key file holds 64 hexadecimal digits (32 random bytes) on one line, mode 0600; --create-key writes one and \
never overwrites a file. Keep a copy of it apart from the store's backups: without it the secrets are lost. \
Stop the servers first; afterwards each needs the key file. The file is rebuilt (VACUUM) so no clear-text \
copy of a secret is left in it.";

const STORE_RESEAL_EXAMPLES: &str = "\
Examples:
  zavro --master-key-file old.key store reseal --new-master-key-file new.key --create-key
  zavro --db 'postgres://zavro@db/zavro' --master-key-file old.key store reseal --new-master-key-file new.key

Rotation, on SQLite and PostgreSQL alike: every secret is opened with the current key and sealed under the new \
one in one transaction; a value that does not open stops it and nothing changes. Servers running on the old key \
refuse requests as internal errors until restarted with the new key file: give every server the new key file and \
restart them one by one, while clients given several endpoints fail over to the restarted ones. Backups made \
before stay sealed under the old key.";

const STORE_COPY_EXAMPLES: &str = "\
Examples:
  zavro --master-key-file /etc/zavro/master.key store copy ~/.local/share/zavro/zavro.db \\
      'postgres://zavro@db.example.com/zavro?sslmode=verify-full'

From one server to many: the keys (their secrets sealed under the master key on PostgreSQL, which a \
PostgreSQL store always needs: opened from an unsealed source, or from a source sealed under that same key), \
the server keys, the schemas, the audit trail with its ids, hashes and payloads (so `zavro audit verify` on the \
copy checks the same chain and `audit verify --against` a head recorded before still passes), and the nonces of \
the replay window (so a request retried after the move is recognised, and a replay refused). The source is read \
from one snapshot and its chain verified first: a source that does not verify is not copied (exit 6). The target \
must be empty (exit 1 otherwise); it is written in one transaction, so a failed copy leaves nothing. Stop the \
servers on the source first, or copy again: whatever they write after the snapshot is not in the copy. A \
password belongs in ~/.pgpass, never in the URL on the command line.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  source <(ZAVRO_COMPLETE=bash zavro)             in ~/.bashrc: also completes key ids for `keys revoke`
  zavro completions bash > ~/.local/share/bash-completion/completions/zavro
  zavro completions zsh > ~/.zfunc/_zavro         with ~/.zfunc on $fpath
  zavro completions fish > ~/.config/fish/completions/zavro.fish";

const KEYS_ADD_EXAMPLES: &str = "\
Examples:
  zavro keys add --label sensor-1              new key id and random secret, shown once
  zavro keys add --json | jq -r .secret        for scripts
  zavro keys add --secret-stdin < secret.txt   import a secret you already have
  zavro keys add --expires 30d                 a key that stops working in 30 days
  zavro keys add --save-profile                key, secret, server key as profile default
  zavro keys add --save-profile prod --endpoint 10.0.0.5:12345    secret into ~/.config/zavro/credentials";

const AUDIT_QUERY_EXAMPLES: &str = "\
Examples:
  zavro audit query --limit 20
  zavro audit query --status rejected --since 2026-11-28T00:00:00Z
  zavro audit query --reason bad_signature --since 2h --format csv > refused.csv
  zavro audit query --key ZK0123456789ABCDEF --json --payload | jq .payload
  zavro audit query --follow --status rejected       like tail -f; Ctrl-C to stop
  zavro audit query --schema 7b8e6d49 --since 1d     requests whose data used that schema
  zavro audit query --schema reading.avsc            the same, naming the schema by its file";

const AUDIT_SCHEMAS_EXAMPLES: &str = "\
Examples:
  zavro audit schemas                      fingerprint, name, first seen, last used, requests
  zavro audit schemas 7b8e6d49             the schema's JSON as the first request carried it
  zavro audit schemas --json | jq -r .fingerprint

A fingerprint is the SHA-256 of the schema's Parsing Canonical Form (Avro specification),
so other Avro tools compute the same one, e.g. Java's
SchemaNormalization.parsingFingerprint(\"SHA-256\", schema).";

const AUDIT_STATS_EXAMPLES: &str = "\
Examples:
  zavro audit stats --since 24h                 the last day, per key and per reason
  zavro audit stats --since 7d --until 1d --json";

const AUDIT_EXPORT_EXAMPLES: &str = "\
Examples:
  zavro audit export --until 90d > audit-archive.ndjson     archive before pruning
  zavro audit export --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z | gzip > nov.ndjson.gz";

const AUDIT_PRUNE_EXAMPLES: &str = "\
Examples:
  zavro audit prune --before 90d --dry-run       what would go
  zavro audit export --until 90d > archive.ndjson && zavro audit prune --before 90d

Only a prefix of the chain is removed (every row up to the last one written before TIME), and a checkpoint keeps \
the hash of the last row removed, so `zavro audit verify` still checks what is left.";

const AUDIT_VERIFY_EXAMPLES: &str = "\
Examples:
  zavro audit head >> ~/zavro-heads.txt                  record the head somewhere else, e.g. daily
  zavro audit verify                                     check every row and payload
  zavro audit verify --against \"$(tail -1 ~/zavro-heads.txt)\"   and that history before it is unchanged

The encoding of each row's hash is in AUDIT.md, so the chain can be checked with other tools too.";

/// Send JSON as signed Apache Avro over ZeroMQ to a server that verifies, audits and logs it.
#[derive(Debug, Parser)]
#[command(name = "zavro", version, help_expected = true, after_help = ROOT_EXAMPLES)]
pub struct Cli {
    /// The store with keys and audit trail: a SQLite file or a postgres:// URL [default: the zavro folder of the
    /// user's data directory, e.g. ~/.local/share/zavro/zavro.db]
    ///
    /// A PostgreSQL password belongs in ~/.pgpass (or the file PGPASSFILE names), not in the URL: a URL with a
    /// password is refused on the command line, where other users could read it.
    #[arg(
        long,
        global = true,
        env = "ZAVRO_DB",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub db: Option<OsString>,

    /// True when `--db` was given on the command line (where other users can read it), not taken from `ZAVRO_DB`;
    /// set by [`Cli::parse_args`] from what clap saw, never from comparing texts.
    #[arg(skip)]
    pub db_on_command_line: bool,

    /// The master key file of a sealed store (64 hex digits, mode 0600; a PostgreSQL store is always sealed),
    /// for the commands that read or write secrets: serve, keys add, server-key (when it makes a key pair),
    /// store seal and reseal [default: the systemd credential zavro-master-key in $CREDENTIALS_DIRECTORY, if
    /// there is one]. The variable names the file; the key is never given itself.
    #[arg(
        long,
        global = true,
        env = "ZAVRO_MASTER_KEY_FILE",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub master_key_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments as [`clap::Parser::parse`] does (exiting with clap's message on an error),
    /// noting whether `--db` came from the command line.
    pub fn parse_args() -> Cli {
        Self::try_parse_args_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// As [`Cli::parse_args`], from the arguments given (the first is the program's name).
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let mut command = Cli::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        cli.db_on_command_line = matches.value_source("db") == Some(ValueSource::CommandLine);
        Ok(cli)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive signed Avro messages, verify them, audit every request, store and log accepted records.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Read JSON records from stdin, encode them as Avro, sign and send them; wait until all are accepted.
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendArgs),
    /// Measure throughput and acknowledgement latency against a running server with generated records.
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(BenchArgs),
    /// Manage API keys: add, list, revoke.
    #[command(subcommand, after_help = KEYS_EXAMPLES)]
    Keys(KeysCommand),
    /// Read and check the audit trail.
    #[command(subcommand, after_help = AUDIT_EXAMPLES)]
    Audit(AuditCommand),
    /// Print the server's CURVE public key, which clients pin to know they reach this server; rotate it.
    #[command(after_help = SERVER_KEY_EXAMPLES)]
    ServerKey(ServerKeyArgs),
    /// Seal the store's secrets under a master key kept outside it, rotate that key, or show the state; copy a
    /// store into PostgreSQL.
    #[command(subcommand, after_help = STORE_EXAMPLES)]
    Store(StoreCommand),
    /// Print a shell completion script, e.g. `zavro completions bash > /etc/bash_completion.d/zavro`.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

/// Options of `zavro serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT (port `*` or 0 lets the OS pick) or a ZeroMQ endpoint (tcp://…, ipc://…)
    pub endpoint: String,

    /// Append accepted records (one JSON line each) to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Accept only data whose writer schema resolves against this reader schema (Avro's resolution rules), and
    /// log and store it in this schema's shape. Repeat it, or give a directory of .avsc files, for several;
    /// without it, any schema zavro can decode safely is accepted.
    #[arg(long = "schema", value_name = "FILE|DIR")]
    pub schemas: Vec<PathBuf>,

    /// Disconnect a peer, unanswered, once its request passes this many bytes (its frames' sizes plus 128 per frame).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_message_size: u32,

    /// Accept unencrypted connections (ZeroMQ's NULL mechanism) instead of CURVE, for benchmarks and clients
    /// without CURVE: anyone on the network path can read the records, and connections are not checked at the
    /// handshake (requests and replies are still signed). The start-up line and every audit row say plaintext.
    #[arg(long)]
    pub plaintext: bool,

    /// Refuse requests whose timestamp is more than this many seconds from the server's clock.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=MAX_SKEW_LIMIT_SECS))]
    pub max_skew: u32,

    /// Most connections held at once [default: 1024, fewer if the open-file limit leaves less room]; further
    /// ones wait in the kernel's queue until one closes. Each takes an open file: the server refuses to start
    /// when N connections and 64 files of its own do not fit under the hard open-file limit, and caps its soft
    /// limit at the files it holds plus N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,

    /// The name written into every audit row this server writes (`server` in `audit query`), to tell apart the
    /// rows of servers sharing a store [default: this machine's host name]. Printable, at most 64 characters.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Serve from a PostgreSQL database that acknowledges commits before they are durable (synchronous_commit
    /// or fsync off for this role or database), which serve otherwise refuses: a crash of the database can then
    /// lose requests the server already answered `accepted`, and a client will not send them again.
    #[arg(long)]
    pub allow_async_commit: bool,

    /// Serve Prometheus metrics on http://ADDRESS/metrics, with /healthz (the process answers) and /readyz (the
    /// socket is bound and the store takes writes) beside them; port 0 lets the OS pick. Unauthenticated: bind
    /// it to loopback (127.0.0.1:9464) or a private interface.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<std::net::SocketAddr>,

    /// How the log on stderr is written: `text`, one line per event for people, or `json`, one JSON object per
    /// line for log shippers (fields and events in README.md, "Logs"). Start-up errors are JSON too.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,

    /// Print the settings serve would use (endpoint, store, transport and server key, limits, output, log
    /// format, name) and exit without binding: 0 when they hold, else the error and exit code serve would stop
    /// with. Reads the store (and the master key) but writes nothing.
    #[arg(long)]
    pub check_config: bool,

    /// With --check-config: print the settings as one JSON object.
    #[arg(long, requires = "check_config")]
    pub json: bool,
}

/// `serve --log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// One line of text per event.
    Text,
    /// One JSON object per line: time, level, event, and audit_id, key, peer, code, records, message where
    /// they apply.
    Json,
}

/// A size in bytes, with an optional K, M or G suffix (KiB, MiB, GiB), at least 4 KiB.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.trim().char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 1 << 10),
        Some((at, 'M' | 'm')) => (&text[..at], 1 << 20),
        Some((at, 'G' | 'g')) => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    let size = digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{text:?} is not a size such as 64M, 1G or 1048576"))?;
    if size < 4096 {
        return Err(format!("{text:?} is below 4K"));
    }
    Ok(size)
}

/// Options of `zavro send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The server: HOST:PORT or a ZeroMQ endpoint (tcp://…, ipc://…). With several, requests are spread over
    /// them and move to another when one does not answer.
    /// May be omitted when the profile has an endpoint.
    #[arg(value_name = "ENDPOINT")]
    pub endpoints: Vec<String>,

    /// API key id [default: the profile's key]. The secret comes from --secret-file, ZAVRO_SECRET, the profile,
    /// or a prompt on the terminal.
    #[arg(long, env = "ZAVRO_KEY", hide_env_values = true, value_name = "KEY")]
    pub key: Option<String>,

    /// Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Take key, secret and endpoint from this profile of the credentials file [default: the `default`
    /// profile, if there is one]; a flag or environment variable still wins over the profile.
    #[arg(long, env = "ZAVRO_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Give up when the server has not answered a request within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_timeout)]
    pub timeout: f64,

    /// Resend a request this many times when its reply does not come in time, or the server could not store it
    /// or check the key for now (`internal`, its database down, say), after a pause that doubles from 0.25 s to
    /// 4 s (same request, same nonce: the server recognises a retry of what it already stored).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: u32,

    /// Most records per request.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,

    /// Most bytes of encoded records per request (a single larger record still goes alone).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..=(1 << 20)))]
    pub batch_bytes: u32,

    /// Longest a record waits for its request to fill, e.g. `250ms`, `1s`, or `0` (send what is read at once).
    ///
    /// The default keeps a slow stream (`tail -F`) at most 0.2 s behind, while a fast stream still fills whole
    /// requests and a trickle makes at most 5 requests (audit rows) a second.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = crate::batch::parse_linger)]
    pub linger: std::time::Duration,

    /// What stdin holds: JSON values (NDJSON), or an Avro object container file from any Avro writer, sent
    /// in batches of its blocks with its schema, codec and records unchanged (read into memory whole).
    #[arg(long, value_enum, default_value_t = InputFormat::Json)]
    pub format: InputFormat,

    /// Encode the JSON records with this Avro schema (.avsc) instead of zavro's JSON schema. Records are natural
    /// JSON (README.md, "JSON to Avro"); one that does not fit stops `send` before its request, naming the
    /// record and the field.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,

    /// Compression of the Avro blocks sent (JSON input only; an Avro file keeps its own codec).
    #[arg(long, value_enum, default_value_t = CodecArg::Null)]
    pub codec: CodecArg,

    /// Requests in flight per server before waiting for replies (at most 256: far below ZeroMQ's high-water mark).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub window: u32,

    /// Store and forward through this spool directory: each request is appended to DIR and made durable
    /// (fsync) before more input is read, then sent; what the server acknowledged is recorded. Requests that
    /// waited in DIR from an earlier run go first, in order. If the server stays down, `send` exits 0 once the
    /// input is spooled and says how many requests wait; deliver them later with `--flush`. Killing `send` loses
    /// nothing spooled, and nothing is stored twice: each spooled request keeps one request id however often it
    /// is signed (PROTOCOL.md, "Request ids"). One `send` per spool at a time.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// Instead of stdin, follow FILE as `tail -F` does (repeat for several files): each line a JSON record, sent
    /// as it is written, across rotation by rename and truncation, until SIGTERM or SIGINT. Needs --spool: where
    /// reading stopped is saved in the spool with each request, so a restarted `send` resumes there and no line
    /// is stored twice or lost. A file followed for the first time is read from its start; a line that is not
    /// JSON is skipped with a warning.
    #[arg(
        long,
        value_name = "FILE",
        requires = "spool",
        conflicts_with = "flush"
    )]
    pub follow: Vec<PathBuf>,

    /// With --spool: read no input, deliver what waits in the spool, and exit (0 once all is acknowledged;
    /// 5 if the server cannot be reached, the requests still waiting; 12 if some were refused for good and
    /// kept aside).
    #[arg(long, requires = "spool")]
    pub flush: bool,

    /// With --spool: most bytes the spool may hold (K, M, G suffixes are KiB, MiB, GiB) [default: 1G]. When the
    /// next request would pass it, `send` stops reading input, delivers what it can, says how many records were
    /// spooled, and exits 10: nothing read into a request is dropped unsaid.
    #[arg(long, value_name = "SIZE", requires = "spool", value_parser = parse_size)]
    pub spool_max_size: Option<u64>,

    /// With --spool: first put the requests kept in DIR/refused back in line, at the end of the spool, with
    /// their request ids (a request already stored is answered `duplicate`, never stored twice); use it once
    /// the cause of their refusal is fixed, e.g. with --flush.
    #[arg(long, requires = "spool")]
    pub requeue_refused: bool,

    /// How the server is authenticated: --server-key or --plaintext.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// How `send` and `bench` authenticate the server.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// The server's CURVE public key, 40 characters of Z85 as `zavro server-key` prints them on the server
    /// [default: ZAVRO_SERVER_KEY, else the profile's server_key]. The connection is encrypted, and only the
    /// server holding that key can answer. While servers rotate their key, give two, NEW,OLD: each connection
    /// uses the one its server presents.
    // Z85 has '-' among its characters, so a key may start with one.
    #[arg(
        long,
        value_name = "KEY",
        conflicts_with = "plaintext",
        allow_hyphen_values = true
    )]
    pub server_key: Option<String>,

    /// Talk to a `zavro serve --plaintext` server without encryption: anyone on the path can read the records.
    /// Acknowledgements must still carry the server's signature. Overrides ZAVRO_SERVER_KEY and the profile's server_key.
    #[arg(long)]
    pub plaintext: bool,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

/// Options of `zavro bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The server: HOST:PORT or a ZeroMQ endpoint [default: the profile's]. Point it at a test server: the
    /// records are stored.
    pub endpoint: Option<String>,

    /// API key id (resolved as for `zavro send`: --key, ZAVRO_KEY, then the profile).
    #[arg(long, env = "ZAVRO_KEY", hide_env_values = true, value_name = "KEY")]
    pub key: Option<String>,

    /// Read the secret from this file (first line) instead of ZAVRO_SECRET, the profile or the terminal.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Take key, secret and endpoint from this profile of the credentials file (as for `zavro send`).
    #[arg(long, env = "ZAVRO_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Records to send in all.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,

    /// Size of each generated record as JSON, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub record_size: u32,

    /// Records per request.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,

    /// Requests in flight per connection (at most 256).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub window: u32,

    /// Connections (each in its own thread) sharing the records.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub connections: u32,

    /// Give up when a reply takes longer than this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_timeout)]
    pub timeout: f64,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// How the server is authenticated: --server-key or --plaintext (as for `zavro send`).
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// `send --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// JSON values separated by white space (NDJSON), or one array of records.
    Json,
    /// An Avro object container file.
    Avro,
}

/// `send --codec` values: the block codecs of the Avro specification that zavro reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CodecArg {
    /// No compression.
    Null,
    /// Deflate (RFC 1951).
    Deflate,
    /// Snappy, with the CRC32 the Avro specification adds.
    Snappy,
    /// Zstandard.
    Zstandard,
}

/// `zavro keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key. Prints the key id and a new random secret once; the secret is never shown again.
    #[command(after_help = KEYS_ADD_EXAMPLES)]
    Add(KeysAddArgs),
    /// List keys with label, creation, revocation, expiry, last use and accepted requests and records; never
    /// secrets.
    #[command(after_help = KEYS_LIST_EXAMPLES)]
    List(JsonFlag),
    /// Revoke a key: a running server refuses it from its next request on.
    #[command(after_help = KEYS_REVOKE_EXAMPLES)]
    Revoke(KeysRevokeArgs),
}

/// Options of `zavro keys add`.
#[derive(Debug, Args)]
pub struct KeysAddArgs {
    /// A note to tell keys apart (who or what uses it).
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,

    /// Print {"key": …, "secret": …} as JSON.
    #[arg(long)]
    pub json: bool,

    /// Import an existing secret from stdin (first line) instead of generating one.
    #[arg(long, conflicts_with = "secret_prompt")]
    pub secret_stdin: bool,

    /// Import an existing secret typed at a prompt on the terminal (not echoed).
    #[arg(long)]
    pub secret_prompt: bool,

    /// Save the new key, its secret and this store's server public key (which `serve` presents) as this
    /// profile of the credentials file (created mode 0600) instead of printing the secret [NAME: default].
    #[arg(
        long,
        value_name = "NAME",
        num_args = 0..=1,
        default_missing_value = crate::profiles::DEFAULT_PROFILE
    )]
    pub save_profile: Option<String>,

    /// The endpoint to save in the profile, used by `send` when no ENDPOINT is given.
    #[arg(long, value_name = "ENDPOINT", requires = "save_profile")]
    pub endpoint: Option<String>,

    /// Replace a profile of the same name.
    #[arg(long, requires = "save_profile")]
    pub force: bool,

    /// Make the key stop working after this long (30d, 12h) or at this RFC 3339 time; the server then refuses
    /// it as `expired_key`.
    #[arg(long, value_name = "DURATION|TIME")]
    pub expires: Option<String>,
}

/// Options of `zavro keys revoke`.
#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// The key id to revoke.
    #[arg(add = ArgValueCompleter::new(crate::complete::key_id))]
    pub key: String,
}

/// A lone `--json` switch.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `zavro audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show audit rows, oldest first: every request the server answered and every key change.
    #[command(after_help = AUDIT_QUERY_EXAMPLES)]
    Query(AuditQueryArgs),
    /// Check the audit hash chain; name the first row that was edited, deleted, inserted or moved (exit 6).
    #[command(after_help = AUDIT_VERIFY_EXAMPLES)]
    Verify(AuditVerifyArgs),
    /// Print the newest audit row as ROW:HASH, to record elsewhere for `audit verify --against`.
    #[command(after_help = AUDIT_HEAD_EXAMPLES)]
    Head,
    /// Count accepted and rejected requests and records per key and per reason over a period.
    #[command(after_help = AUDIT_STATS_EXAMPLES)]
    Stats(AuditStatsArgs),
    /// Write audit rows with their stored records as NDJSON (the fields of `audit query --json --payload`).
    #[command(after_help = AUDIT_EXPORT_EXAMPLES)]
    Export(AuditExportArgs),
    /// Remove old audit rows, their payloads and nonces; the rest of the chain still verifies.
    #[command(after_help = AUDIT_PRUNE_EXAMPLES)]
    Prune(AuditPruneArgs),
    /// List the Avro writer schemas requests used, by fingerprint, or print one of them.
    #[command(after_help = AUDIT_SCHEMAS_EXAMPLES)]
    Schemas(AuditSchemasArgs),
}

/// Options of `zavro audit schemas`.
#[derive(Debug, Args)]
pub struct AuditSchemasArgs {
    /// Print this schema's JSON as first seen (a fingerprint, or enough of its first characters to be unique).
    #[arg(value_name = "FINGERPRINT")]
    pub fingerprint: Option<String>,

    /// One JSON object per schema (with its canonical form and text) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `zavro audit verify`.
#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// A head recorded earlier with `zavro audit head`; the chain must still contain it.
    #[arg(long, value_name = "ROW:HASH")]
    pub against: Option<String>,
}

/// Options of `zavro audit query`.
#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    /// Only rows for this key id.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// Only accepted or only rejected rows.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,

    /// Only rows from this peer address (as printed in the PEER column; `local` for commands on this machine).
    #[arg(long, value_name = "ADDRESS")]
    pub peer: Option<String>,

    /// Only rows with this reason: a reply code such as bad_signature, or duplicate for recognised retries.
    #[arg(long, value_name = "CODE")]
    pub reason: Option<String>,

    /// Only requests whose data used this Avro writer schema: its fingerprint (SHA-256 of the Parsing
    /// Canonical Form, as `zavro audit schemas` lists; a unique prefix is enough) or an .avsc file.
    #[arg(long, value_name = "FP|FILE")]
    pub schema: Option<String>,

    /// The period: --since and --until.
    #[command(flatten)]
    pub period: PeriodArgs,

    /// Only the N most recent matching rows (with --follow, default 10).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Output format: an aligned table, one JSON object per line, or CSV with a header row (a text field that
    /// begins with =, +, -, @, a tab or a carriage return gets a single quote in front, so a spreadsheet does not
    /// run it as a formula).
    #[arg(long, value_enum, default_value_t = FormatArg::Table, conflicts_with = "json")]
    pub format: FormatArg,

    /// Shorthand for --format json.
    #[arg(long)]
    pub json: bool,

    /// Include the stored JSON records of accepted requests (implies --format json).
    #[arg(long, conflicts_with = "format")]
    pub payload: bool,

    /// Keep running and print new matching rows as they are committed, until interrupted (Ctrl-C exits 0).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// `--since` and `--until`, shared by the audit commands that read a period.
#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// Only rows at or after this time: RFC 3339 (2026-11-28T03:00:00Z) or that long ago (15m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only rows before this time: RFC 3339 or that long ago (15m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `audit query --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line (the fields are listed in README.md).
    Json,
    /// Comma-separated values with a header row (RFC 4180 quoting; text that would start a spreadsheet
    /// formula gets a single quote in front).
    Csv,
}

/// Options of `zavro audit stats`.
#[derive(Debug, Args)]
pub struct AuditStatsArgs {
    /// The period: --since and --until.
    #[command(flatten)]
    pub period: PeriodArgs,

    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Options of `zavro audit export`.
#[derive(Debug, Args)]
pub struct AuditExportArgs {
    /// The period: --since and --until.
    #[command(flatten)]
    pub period: PeriodArgs,
}

/// Options of `zavro audit prune`.
#[derive(Debug, Args)]
pub struct AuditPruneArgs {
    /// Remove the rows written before this time: RFC 3339 or that long ago (90d). It must be at least twice
    /// --max-skew seconds ago, so nothing inside the replay window is removed (a request stamped up to --max-skew
    /// ahead of the server's clock stays acceptable until --max-skew after its timestamp).
    #[arg(long, value_name = "TIME")]
    pub before: String,

    /// Print what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The largest --max-skew any server using this store runs with (at least 300): rows newer than twice this
    /// many seconds are never pruned, since their nonces still refuse replays.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(300..=MAX_SKEW_LIMIT_SECS))]
    pub max_skew: u32,
}

/// `--status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Requests that were stored, and key changes.
    Accepted,
    /// Requests that were refused.
    Rejected,
}

/// `zavro server-key [--json]` and its one subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerKeyArgs {
    /// What to do instead of printing the key.
    #[command(subcommand)]
    pub command: Option<ServerKeyCommand>,

    /// Print {"current": …, "staged": … or null} as JSON: the key `serve` presents, and the one `rotate` will
    /// make current, if staged.
    #[arg(long)]
    pub json: bool,
}

/// `zavro server-key …`
#[derive(Debug, Subcommand)]
pub enum ServerKeyCommand {
    /// Make the staged key (or a new one) current and print it; servers present it once restarted.
    #[command(after_help = SERVER_KEY_ROTATE_EXAMPLES)]
    Rotate(ServerKeyRotateArgs),
}

/// Options of `zavro server-key rotate`.
#[derive(Debug, Args)]
pub struct ServerKeyRotateArgs {
    /// Only make the next key and print it, without using it yet (a key already staged is kept), so that
    /// clients can be given it before the rotation.
    #[arg(long)]
    pub stage: bool,
}

/// `zavro store …`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print whether the store is sealed, and the fingerprint of the master key it is sealed under.
    Status,
    /// Seal every secret of the store under the master key of --master-key-file (made first with
    /// --create-key); from then on serve and keys add need that key file. A store that does not exist yet is
    /// created sealed, so no secret is ever kept in clear text in it.
    #[command(after_help = STORE_SEAL_EXAMPLES)]
    Seal(StoreSealArgs),
    /// Move every secret from the current master key (--master-key-file) to a new one, in one transaction.
    #[command(after_help = STORE_RESEAL_EXAMPLES)]
    Reseal(StoreResealArgs),
    /// Copy a SQLite store into an empty PostgreSQL database (--db is not used): keys, server keys, schemas, the
    /// audit trail with its hash chain, and the nonces of the replay window.
    #[command(after_help = STORE_COPY_EXAMPLES)]
    Copy(StoreCopyArgs),
}

/// Options of `zavro store copy`.
#[derive(Debug, Args)]
pub struct StoreCopyArgs {
    /// The SQLite store to copy (it must exist).
    #[arg(value_name = "FROM")]
    pub from: OsString,

    /// The PostgreSQL database to copy into, a postgres:// URL: empty, or without a zavro schema yet (it is
    /// made); its secrets are sealed under the master key of --master-key-file.
    #[arg(value_name = "TO")]
    pub to: OsString,

    /// The largest --max-skew any server using the source runs with: the nonces of requests up to this many
    /// seconds old (at least 300) are copied, so they are still refused as replays, or recognised as retries,
    /// on the copy.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(300..=MAX_SKEW_LIMIT_SECS))]
    pub max_skew: u32,
}

/// Options of `zavro store seal`.
#[derive(Debug, Args)]
pub struct StoreSealArgs {
    /// Make a new random master key and write it to the --master-key-file path first (mode 0600; an existing
    /// file is never overwritten).
    #[arg(long)]
    pub create_key: bool,
}

/// Options of `zavro store reseal`.
#[derive(Debug, Args)]
pub struct StoreResealArgs {
    /// The file of the master key to seal under from now on.
    #[arg(long, value_name = "PATH")]
    pub new_master_key_file: PathBuf,

    /// Make the new key and write it to --new-master-key-file first (mode 0600; never overwrites a file).
    #[arg(long)]
    pub create_key: bool,
}

/// Options of `zavro completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn db_is_known_to_come_from_the_command_line_wherever_it_is_given() {
        let parse = |args: &[&str]| Cli::try_parse_args_from(args).unwrap();
        for args in [
            &["zavro", "--db", "x.db", "keys", "list"][..],
            &["zavro", "keys", "list", "--db", "x.db"],
            &["zavro", "keys", "--db=x.db", "list"],
        ] {
            let cli = parse(args);
            assert!(cli.db_on_command_line, "{args:?}");
            assert_eq!(cli.db.as_deref(), Some(std::ffi::OsStr::new("x.db")));
        }
        assert!(!parse(&["zavro", "keys", "list"]).db_on_command_line);
    }
}
