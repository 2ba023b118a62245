//! Opening a connection as a libpq user expects: the URL's parts, the password file when the URL has no
//! password, TLS by `sslmode` over TCP (never over a Unix socket, where libpq does not use it either).
//!
//! Over TCP, a mode that does not verify the server (`disable`, `prefer`, `require`) is warned about once on
//! stderr: whoever is on the path could pose as the server and, if it asks for a password in clear, learn it.
//! `channel_binding` is libpq's, `prefer` by default: SCRAM is bound to the TLS connection when the server
//! offers it, which a relaying man in the middle cannot complete. It is not `require` by default, because that
//! refuses every server whose `pg_hba.conf` trusts, or asks for `password` or `md5`; set
//! `channel_binding=require` (or `PGCHANNELBINDING`) where the server uses `scram-sha-256`.

use std::path::Path;
use std::sync::Once;

use postgres::{
    Client, Config, NoTls,
    config::{ChannelBinding as WireChannelBinding, SslMode as WireSslMode},
};
use tokio_postgres_rustls::MakeRustlsConnect;
use zeroize::Zeroizing;

use super::{
    ChannelBinding, PgHost, PgUrl, SslMode, one_line,
    pgpass::{self, PASSFILE_ENV},
    tls,
};
use crate::store::StoreError;

/// Connects to the database `url` names; a failure is [`StoreError::PgConnect`], one line without the password.
/// Without a password in the URL, the password file (`PGPASSFILE`, else `~/.pgpass`) is consulted.
pub fn connect_client(url: &PgUrl) -> Result<Client, StoreError> {
    connect_with_passfile(url, pgpass::passfile_path().as_deref())
}

/// As [`connect_client`], with the password file given (`None`: none).
pub fn connect_with_passfile(url: &PgUrl, passfile: Option<&Path>) -> Result<Client, StoreError> {
    let failed = |reason: String| StoreError::PgConnect {
        url: url.to_string(),
        reason,
    };
    let mut config = Config::new();
    config
        .user(url.user())
        .dbname(url.dbname())
        .port(url.port())
        .application_name(url.application_name());
    if let Some(timeout) = url.connect_timeout() {
        config.connect_timeout(timeout);
    }
    config.channel_binding(match url.channel_binding() {
        ChannelBinding::Disable => WireChannelBinding::Disable,
        ChannelBinding::Prefer => WireChannelBinding::Prefer,
        ChannelBinding::Require => WireChannelBinding::Require,
    });
    if let PgHost::Tcp(host) = url.host()
        && let Some(warning) = unverified_warning(url.sslmode(), url.sslrootcert().is_some(), host)
    {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| eprintln!("zavro: warning: {warning}"));
    }
    let password = match url.password() {
        Some(password) => Some(Zeroizing::new(password.to_owned())),
        None => passfile.and_then(|path| password_from_file(url, path)),
    };
    if let Some(password) = &password {
        config.password(password.as_bytes());
    }
    let connected = match (url.host(), url.sslmode()) {
        (PgHost::Socket(dir), _) => {
            config.host_path(dir).ssl_mode(WireSslMode::Disable);
            config.connect(NoTls)
        }
        (PgHost::Tcp(host), SslMode::Disable) => {
            config.host(host).ssl_mode(WireSslMode::Disable);
            config.connect(NoTls)
        }
        (PgHost::Tcp(host), mode) => {
            let wire_mode = if mode == SslMode::Prefer {
                WireSslMode::Prefer
            } else {
                WireSslMode::Require
            };
            config.host(host).ssl_mode(wire_mode);
            let tls = tls::client_config(mode, url.sslrootcert()).map_err(failed)?;
            config.connect(MakeRustlsConnect::new(tls))
        }
    };
    connected.map_err(|e| failed(describe(&e, password.is_some())))
}

/// What a TCP connection in `mode` leaves open, when the server is not fully verified; `None` for `verify-full`
/// and `verify-ca`.
pub fn unverified_warning(mode: SslMode, has_root: bool, host: &str) -> Option<String> {
    const FIX: &str = "use sslmode=verify-full (with sslrootcert=FILE for a private CA)";
    let unchecked = if has_root {
        "the name in the server's certificate is not checked, so any server with a certificate from that CA can \
         pose as it"
    } else {
        "the server's certificate is not checked, so anyone on the path can pose as the server"
    };
    match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => None,
        SslMode::Disable => Some(format!(
            "sslmode=disable: the connection to {host} is not encrypted, anyone on the path can read and change \
             it; {FIX}"
        )),
        SslMode::Prefer => Some(format!(
            "sslmode=prefer (the default): the connection to {host} falls back to plain text if TLS is refused, \
             and {unchecked}; {FIX}"
        )),
        SslMode::Require => Some(format!(
            "sslmode=require: the connection to {host} is encrypted, but {unchecked}; {FIX}"
        )),
    }
}

/// The password file's password for this connection; a file that is ignored says why on stderr, as libpq does.
fn password_from_file(url: &PgUrl, path: &Path) -> Option<Zeroizing<String>> {
    let found = pgpass::lookup(
        path,
        &url.passfile_host(),
        url.port(),
        url.dbname(),
        url.user(),
    );
    if let Some(warning) = found.warning {
        eprintln!("zavro: warning: {warning}");
    }
    found.password
}

/// The connection error as one line, with a hint where the server wanted a password it did not get.
fn describe(error: &postgres::Error, had_password: bool) -> String {
    let text = one_line(error);
    if !had_password && text.contains("password missing") {
        format!(
            "{text}: the server asks for a password; put it in the password file (~/.pgpass, or the file \
             {PASSFILE_ENV} names, mode 0600)"
        )
    } else {
        text
    }
}
