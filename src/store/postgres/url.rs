//! `postgres://` URLs as libpq reads them: `postgres[ql]://[user[:password]@][host][:port][/dbname][?param=value&…]`.
//!
//! Every part is percent-decoded; a host that decodes to an absolute path (`%2Fvar%2Frun%2Fpostgresql`) or a
//! `host=/dir` parameter is the directory of a Unix socket. Defaults are libpq's (as Debian builds it): the socket
//! directory `/var/run/postgresql`, port 5432, the user name of the process, a database named like the user,
//! `sslmode=prefer`. Parameters override the URL's parts. Only one host: a list of hosts is refused rather than
//! half supported. As libpq does, `PGSSLMODE`, `PGSSLROOTCERT` and `PGCHANNELBINDING` are read when the URL does
//! not set `sslmode`, `sslrootcert` or `channel_binding`; `sslrootcert=system` makes the default `sslmode`
//! `verify-full` and refuses a weaker one (libpq 16).
//!
//! The password is kept out of every rendering: [`fmt::Display`] and [`fmt::Debug`] omit it, and parse errors
//! never echo any part of the text, which may hold it.

use std::{fmt, path::PathBuf, time::Duration};

use zeroize::Zeroizing;

use crate::store::StoreError;

/// libpq's default Unix socket directory on Debian and most Linux distributions.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// PostgreSQL's default port.
pub const DEFAULT_PORT: u16 = 5432;

/// A parsed PostgreSQL connection URL, with libpq's defaults filled in.
#[derive(Clone)]
pub struct PgUrl {
    user: String,
    password: Option<Zeroizing<String>>,
    host: PgHost,
    port: u16,
    dbname: String,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
    channel_binding: ChannelBinding,
    connect_timeout: Option<Duration>,
    application_name: Option<String>,
}

/// The environment variables libpq reads for TLS settings the URL leaves out.
pub const SSLMODE_ENV: &str = "PGSSLMODE";
/// See [`SSLMODE_ENV`].
pub const SSLROOTCERT_ENV: &str = "PGSSLROOTCERT";
/// See [`SSLMODE_ENV`].
pub const CHANNEL_BINDING_ENV: &str = "PGCHANNELBINDING";

/// libpq's `channel_binding`: whether SCRAM authentication must be bound to the TLS connection, so that a
/// server that only relays (a man in the middle holding another certificate) cannot complete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Never bind.
    Disable,
    /// Bind when the server offers SCRAM-SHA-256-PLUS over TLS (libpq's default); other authentication
    /// (trust, password, md5) is still accepted.
    Prefer,
    /// Only SCRAM-SHA-256-PLUS over TLS: trust, password and md5 authentication, and plain connections, fail.
    Require,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgHost {
    /// A host name or IP address, reached over TCP.
    Tcp(String),
    /// The directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    Socket(PathBuf),
}

/// libpq's `sslmode`, without `allow` (plaintext first, which nothing should want).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate (libpq's default).
    Prefer,
    /// Always TLS; the certificate is checked only when `sslrootcert` is given (as libpq does with a root file).
    Require,
    /// Always TLS, with a certificate signed by a trusted CA (`sslrootcert`, else the webpki roots).
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl PgUrl {
    /// True when `text` uses a PostgreSQL scheme, so it is meant as a URL and not a file name.
    pub fn is_postgres_url(text: &str) -> bool {
        strip_scheme(text).is_some()
    }

    /// Parses a `postgres://` or `postgresql://` URL, with libpq's TLS environment variables for what it leaves out.
    pub fn parse(text: &str) -> Result<PgUrl, StoreError> {
        Self::parse_with_env(text, |name| std::env::var(name).ok())
    }

    /// As [`PgUrl::parse`], with the environment given as a lookup (for tests).
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<PgUrl, StoreError> {
        let rest = strip_scheme(text).ok_or_else(|| bad("it must start with postgres://"))?;
        // `u:12/hunter2@h/d` would otherwise put the password in the database name, and from there in messages.
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if rest[authority_end..].contains('@') {
            return Err(bad(
                "it has an @ after the first / or ? (a password or user name holding /, ? or @ must \
                 percent-encode them: %2F, %3F, %40; so must an @ in the database name or a parameter)",
            ));
        }
        let (main, query) = match rest.split_once('?') {
            Some((main, query)) => (main, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match main.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (main, None),
        };
        let (userinfo, hostspec) = match authority.rsplit_once('@') {
            Some((userinfo, hostspec)) => (Some(userinfo), hostspec),
            None => (None, authority),
        };
        let mut parts = Parts::default();
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            parts.user = non_empty(decode(user, "the user name")?);
            if let Some(password) = password {
                parts.password = Some(Zeroizing::new(decode(password, "the password")?));
            }
        }
        if hostspec.contains(',') {
            return Err(bad(
                "it names several hosts; zavro connects to one (give one host)",
            ));
        }
        let (host, port) = split_host_port(hostspec)?;
        parts.host = non_empty(decode(host, "the host")?);
        if let Some(port) = port.filter(|p| !p.is_empty()) {
            parts.port = Some(parse_port(&decode(port, "the port")?)?);
        }
        if let Some(path) = path {
            parts.dbname = non_empty(decode(path, "the database name")?);
        }
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                bad("a query parameter has no value (parameters are name=value, joined by &)")
            })?;
            let key = decode(key, "a parameter name")?;
            parts.set(&key, value)?;
        }
        parts.fill_from_environment(env)?;
        parts.finish()
    }

    /// The role to log in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password given in the URL, if any (else the password file is consulted at connection time).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref().map(String::as_str)
    }

    /// Where the server listens.
    pub fn host(&self) -> &PgHost {
        &self.host
    }

    /// The server's port (for a Unix socket, the number in the socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// How TLS is used.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    /// The file of trusted CA certificates (PEM), if given.
    pub fn sslrootcert(&self) -> Option<&std::path::Path> {
        self.sslrootcert.as_deref()
    }

    /// Whether SCRAM authentication must be bound to the TLS connection.
    pub fn channel_binding(&self) -> ChannelBinding {
        self.channel_binding
    }

    /// How long to wait for the connection, if limited.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// This URL with `connect_timeout` set to `timeout` where it gives none (or 0, "wait forever"): for a server,
    /// which must not hang on a database that does not answer.
    pub fn with_default_connect_timeout(mut self, timeout: Duration) -> PgUrl {
        self.connect_timeout.get_or_insert(timeout);
        self
    }

    /// The `application_name` the server shows in `pg_stat_activity` (default `zavro`).
    pub fn application_name(&self) -> &str {
        self.application_name.as_deref().unwrap_or("zavro")
    }

    /// The host as the password file names it: libpq matches a connection over the default socket directory
    /// as `localhost`, any other socket by its directory.
    pub fn passfile_host(&self) -> String {
        match &self.host {
            PgHost::Tcp(name) => name.clone(),
            PgHost::Socket(dir) if dir == std::path::Path::new(DEFAULT_SOCKET_DIR) => {
                "localhost".to_owned()
            }
            PgHost::Socket(dir) => dir.display().to_string(),
        }
    }
}

/// The URL as it is connected to, without the password: safe for every message and log line.
impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = encode(&self.user, false);
        let db = encode(&self.dbname, false);
        match &self.host {
            PgHost::Tcp(host) if host.contains(':') => write!(f, "postgres://{user}@[{host}]")?,
            PgHost::Tcp(host) => write!(f, "postgres://{user}@{}", encode(host, false))?,
            PgHost::Socket(_) => write!(f, "postgres://{user}@")?,
        }
        if let PgHost::Socket(dir) = &self.host {
            write!(f, "/{db}?host={}", encode(&dir.display().to_string(), true))?;
            if self.port != DEFAULT_PORT {
                write!(f, "&port={}", self.port)?;
            }
            Ok(())
        } else if self.port != DEFAULT_PORT {
            write!(f, ":{}/{db}", self.port)
        } else {
            write!(f, "/{db}")
        }
    }
}

/// As [`fmt::Display`]: the password never appears, not even in a debug dump.
impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUrl")
            .field("url", &self.to_string())
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("channel_binding", &self.channel_binding)
            .finish_non_exhaustive()
    }
}

/// The query parameters zavro understands.
const KNOWN_PARAMETERS: [&str; 10] = [
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "channel_binding",
    "connect_timeout",
    "application_name",
];

/// A parameter name zavro does not know, without the name.
fn unknown_parameter() -> StoreError {
    bad(&format!(
        "it has a parameter zavro does not know (it understands {})",
        KNOWN_PARAMETERS.join(", ")
    ))
}

/// What the URL said, before defaults.
#[derive(Default)]
struct Parts {
    user: Option<String>,
    password: Option<Zeroizing<String>>,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
    channel_binding: Option<ChannelBinding>,
    connect_timeout: Option<Duration>,
    application_name: Option<String>,
}

impl Parts {
    /// Applies one `?name=value` parameter (the value still percent-encoded). An unknown name is never quoted
    /// back: it may be a secret typed in the wrong place.
    fn set(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        if !KNOWN_PARAMETERS.contains(&key) {
            return Err(unknown_parameter());
        }
        if key == "password" {
            self.password = Some(Zeroizing::new(decode(value, "the password")?));
            return Ok(());
        }
        let value = decode(value, &format!("parameter {key}"))?;
        match key {
            "user" => self.user = non_empty(value),
            "host" => {
                if value.contains(',') {
                    return Err(bad(
                        "it names several hosts; zavro connects to one (give one host)",
                    ));
                }
                self.host = non_empty(value);
            }
            "port" => self.port = Some(parse_port(&value)?),
            "dbname" => self.dbname = non_empty(value),
            "sslmode" => self.sslmode = Some(parse_sslmode(&value, "sslmode")?),
            "sslrootcert" => self.sslrootcert = non_empty(value).map(PathBuf::from),
            "channel_binding" => {
                self.channel_binding = Some(parse_channel_binding(&value, "channel_binding")?)
            }
            "connect_timeout" => {
                let seconds: u64 = value
                    .parse()
                    .map_err(|_| bad("connect_timeout must be a whole number of seconds"))?;
                // libpq: 0 means wait indefinitely; and it never waits less than 2 seconds.
                self.connect_timeout = (seconds > 0).then(|| Duration::from_secs(seconds.max(2)));
            }
            "application_name" => self.application_name = non_empty(value),
            _ => return Err(unknown_parameter()),
        }
        Ok(())
    }

    /// Takes from the environment, as libpq does, the TLS settings the URL left out; then applies libpq 16's rule
    /// for `sslrootcert=system`: `verify-full` by default, and no weaker mode.
    fn fill_from_environment(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), StoreError> {
        let env = |name: &str| env(name).filter(|value| !value.is_empty());
        if self.sslmode.is_none()
            && let Some(value) = env(SSLMODE_ENV)
        {
            self.sslmode = Some(parse_sslmode(&value, SSLMODE_ENV)?);
        }
        if self.sslrootcert.is_none() {
            self.sslrootcert = env(SSLROOTCERT_ENV).map(PathBuf::from);
        }
        if self.channel_binding.is_none()
            && let Some(value) = env(CHANNEL_BINDING_ENV)
        {
            self.channel_binding = Some(parse_channel_binding(&value, CHANNEL_BINDING_ENV)?);
        }
        if self.sslrootcert.as_deref() == Some(std::path::Path::new("system")) {
            match self.sslmode {
                None => self.sslmode = Some(SslMode::VerifyFull),
                Some(SslMode::VerifyFull) => {}
                Some(_) => {
                    return Err(bad(
                        "sslrootcert=system needs sslmode=verify-full (as libpq does): a weaker mode would trust \
                         every public CA without checking the server's name",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Fills in libpq's defaults.
    fn finish(self) -> Result<PgUrl, StoreError> {
        let user = match self.user {
            Some(user) => user,
            None => os_user_name()?,
        };
        let host = match self.host {
            Some(host) if host.starts_with('/') => PgHost::Socket(PathBuf::from(host)),
            Some(host) => PgHost::Tcp(host),
            None => PgHost::Socket(PathBuf::from(DEFAULT_SOCKET_DIR)),
        };
        Ok(PgUrl {
            dbname: self.dbname.unwrap_or_else(|| user.clone()),
            user,
            password: self.password,
            host,
            port: self.port.unwrap_or(DEFAULT_PORT),
            sslmode: self.sslmode.unwrap_or(SslMode::Prefer),
            sslrootcert: self.sslrootcert,
            channel_binding: self.channel_binding.unwrap_or(ChannelBinding::Prefer),
            connect_timeout: self.connect_timeout,
            application_name: self.application_name,
        })
    }
}

/// The name of the user this process runs as, libpq's default role.
fn os_user_name() -> Result<String, StoreError> {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.name),
        _ => Err(bad(&format!(
            "it names no user, and user id {uid} has no name; give one (postgres://USER@…)"
        ))),
    }
}

fn strip_scheme(text: &str) -> Option<&str> {
    text.strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(hostspec: &str) -> Result<(&str, Option<&str>), StoreError> {
    if let Some(bracketed) = hostspec.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address in [ has no closing ]"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(bad("unexpected text after the ] of an IPv6 address")),
            },
        };
    }
    Ok(match hostspec.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostspec, None),
    })
}

/// An `sslmode` value, from the URL or `PGSSLMODE` (`source` names which, for the message).
fn parse_sslmode(value: &str, source: &str) -> Result<SslMode, StoreError> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        _ => {
            return Err(bad(&format!(
                "{source} must be disable, prefer, require, verify-ca or verify-full"
            )));
        }
    })
}

/// A `channel_binding` value, from the URL or `PGCHANNELBINDING`.
fn parse_channel_binding(value: &str, source: &str) -> Result<ChannelBinding, StoreError> {
    Ok(match value {
        "disable" => ChannelBinding::Disable,
        "prefer" => ChannelBinding::Prefer,
        "require" => ChannelBinding::Require,
        _ => return Err(bad(&format!("{source} must be disable, prefer or require"))),
    })
}

fn parse_port(text: &str) -> Result<u16, StoreError> {
    text.parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| bad("the port must be a number from 1 to 65535"))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Percent-decodes `text` (`+` stays `+`, as in libpq), which must come out as UTF-8 without NUL.
fn decode(text: &str, what: &str) -> Result<String, StoreError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(&format!("{what} has a % not followed by two hex digits")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err(bad(&format!("{what} contains %00")));
    }
    String::from_utf8(out).map_err(|_| bad(&format!("{what} is not UTF-8 once decoded")))
}

/// Percent-encodes all but unreserved characters (and `/` when `keep_slash`), for [`fmt::Display`].
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let plain = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/');
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn bad(reason: &str) -> StoreError {
    StoreError::BadUrl(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PgUrl {
        PgUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn all_parts_of_a_tcp_url() {
        let url = parse(
            "postgresql://alice:s%3Acret%40x@db.example.com:6543/zavro_prod?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=7&application_name=z1",
        );
        assert_eq!(url.user(), "alice");
        assert_eq!(url.password(), Some("s:cret@x"));
        assert_eq!(url.host(), &PgHost::Tcp("db.example.com".into()));
        assert_eq!(url.port(), 6543);
        assert_eq!(url.dbname(), "zavro_prod");
        assert_eq!(url.sslmode(), SslMode::VerifyFull);
        assert_eq!(url.sslrootcert(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(url.connect_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(url.application_name(), "z1");
        assert_eq!(
            url.to_string(),
            "postgres://alice@db.example.com:6543/zavro_prod"
        );
    }

    #[test]
    fn a_password_with_an_unencoded_at_sign_still_splits_at_the_last_one() {
        let url = parse("postgres://bob:p@ss@db/zavro");
        assert_eq!(url.password(), Some("p@ss"));
        assert_eq!(url.host(), &PgHost::Tcp("db".into()));
    }

    #[test]
    fn unix_sockets_by_encoded_path_or_host_parameter() {
        let url = parse("postgres://bob@%2Ftmp%2Fpg%20sock:5433/zavro");
        assert_eq!(url.host(), &PgHost::Socket("/tmp/pg sock".into()));
        assert_eq!(url.port(), 5433);
        assert_eq!(
            url.to_string(),
            "postgres://bob@/zavro?host=/tmp/pg%20sock&port=5433"
        );
        let url = parse("postgres:///zavro?host=/run/pg&user=carol&port=5434");
        assert_eq!(url.host(), &PgHost::Socket("/run/pg".into()));
        assert_eq!(url.user(), "carol");
        assert_eq!(url.port(), 5434);
        assert_eq!(url.passfile_host(), "/run/pg");
    }

    #[test]
    fn libpq_defaults() {
        let url = parse("postgres://");
        assert_eq!(url.host(), &PgHost::Socket(DEFAULT_SOCKET_DIR.into()));
        assert_eq!(url.port(), DEFAULT_PORT);
        assert_eq!(url.user(), os_user_name().unwrap());
        assert_eq!(url.dbname(), url.user());
        assert_eq!(url.sslmode(), SslMode::Prefer);
        assert_eq!(url.password(), None);
        assert_eq!(url.passfile_host(), "localhost");
        assert_eq!(url.application_name(), "zavro");
    }

    #[test]
    fn parameters_override_the_url_and_ipv6_hosts_work() {
        let url = parse("postgres://u@[::1]:5000/a?dbname=b&port=5001&password=pw");
        assert_eq!(url.host(), &PgHost::Tcp("::1".into()));
        assert_eq!(url.port(), 5001);
        assert_eq!(url.dbname(), "b");
        assert_eq!(url.password(), Some("pw"));
        assert_eq!(url.to_string(), "postgres://u@[::1]:5001/b");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for (text, expect) in [
            ("postgres://u:hunter2@h:99999/d", "port"),
            ("postgres://u:hunter2@h:0/d", "port"),
            ("postgres://u:hunter2@h1,h2/d", "several hosts"),
            ("postgres://u:hunter2@h/d?sslmode=allow", "sslmode"),
            (
                "postgres://u:hunter2@h/d?bogus=1",
                "a parameter zavro does not know",
            ),
            (
                "postgres://u@h/d?hunter2=1",
                "a parameter zavro does not know",
            ),
            (
                "postgres://u@h/d?hunter2=%zz",
                "a parameter zavro does not know",
            ),
            ("postgres://u:12/hunter2@h/d", "percent-encode"),
            ("postgres://u:12?hunter2@h/d", "percent-encode"),
            ("postgres://u@h/d?application_name=hunter2@x", "%40"),
            ("postgres://u:hunter2@h/d?sslmode", "no value"),
            ("postgres://u:hunter2%zz@h/d", "password has a %"),
            ("postgres://u:hunter2@h/d%00", "%00"),
            ("postgres://u:hunter2@[::1/d", "closing ]"),
            (
                "postgres://u:hunter2@h/d?connect_timeout=soon",
                "connect_timeout",
            ),
        ] {
            let err = PgUrl::parse_with_env(text, |_| None)
                .err()
                .unwrap_or_else(|| panic!("{text}"));
            let message = err.to_string();
            assert!(message.contains(expect), "{text}: {message}");
            assert!(!message.contains("hunter2"), "{text}: {message}");
        }
    }

    #[test]
    fn tls_settings_come_from_libpqs_variables_when_the_url_leaves_them_out() {
        let env = |name: &str| match name {
            SSLMODE_ENV => Some("verify-ca".to_owned()),
            SSLROOTCERT_ENV => Some("/etc/env-ca.pem".to_owned()),
            CHANNEL_BINDING_ENV => Some("require".to_owned()),
            _ => None,
        };
        let url = PgUrl::parse_with_env("postgres://u@h/d", env).unwrap();
        assert_eq!(url.sslmode(), SslMode::VerifyCa);
        assert_eq!(
            url.sslrootcert(),
            Some(std::path::Path::new("/etc/env-ca.pem"))
        );
        assert_eq!(url.channel_binding(), ChannelBinding::Require);
        // The URL wins.
        let url = PgUrl::parse_with_env(
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=/url.pem&channel_binding=disable",
            env,
        )
        .unwrap();
        assert_eq!(url.sslmode(), SslMode::VerifyFull);
        assert_eq!(url.sslrootcert(), Some(std::path::Path::new("/url.pem")));
        assert_eq!(url.channel_binding(), ChannelBinding::Disable);
        // Unset or empty: libpq's defaults.
        let url = PgUrl::parse_with_env("postgres://u@h/d", |_| Some(String::new())).unwrap();
        assert_eq!(
            (url.sslmode(), url.sslrootcert(), url.channel_binding()),
            (SslMode::Prefer, None, ChannelBinding::Prefer)
        );
        let err = PgUrl::parse_with_env("postgres://u@h/d", |name| {
            (name == SSLMODE_ENV).then(|| "allow".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("PGSSLMODE must be"), "{err}");
    }

    #[test]
    fn sslrootcert_system_means_verify_full_and_refuses_weaker_modes() {
        let none = |_: &str| None;
        let url = PgUrl::parse_with_env("postgres://u@h/d?sslrootcert=system", none).unwrap();
        assert_eq!(url.sslmode(), SslMode::VerifyFull);
        PgUrl::parse_with_env(
            "postgres://u@h/d?sslrootcert=system&sslmode=verify-full",
            none,
        )
        .unwrap();
        for mode in ["disable", "prefer", "require", "verify-ca"] {
            let err = PgUrl::parse_with_env(
                &format!("postgres://u@h/d?sslrootcert=system&sslmode={mode}"),
                none,
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("needs sslmode=verify-full"),
                "{mode}: {err}"
            );
        }
        let err = PgUrl::parse_with_env("postgres://u@h/d?sslrootcert=system", |name| {
            (name == SSLMODE_ENV).then(|| "require".to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("needs sslmode=verify-full"),
            "{err}"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let url = parse("postgres://u:hunter2@h/d?password=hunter3");
        let debug = format!("{url:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("hunter3"),
            "{debug}"
        );
        assert!(debug.contains("<hidden>"), "{debug}");
    }
}
