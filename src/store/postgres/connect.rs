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
    let mut config = settings(url);
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

/// The connection's settings from `url`, but for the password, the host and TLS, which [`connect_with_passfile`]
/// adds: role, database, port, timeouts, channel binding, and how a TCP connection notices a vanished host
/// ([`PgUrl::tcp_liveness`]).
pub fn settings(url: &PgUrl) -> Config {
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
    let liveness = url.tcp_liveness();
    config.keepalives(liveness.keepalives.is_some());
    if let Some(keepalives) = liveness.keepalives {
        config
            .keepalives_idle(keepalives.idle)
            .keepalives_interval(keepalives.interval)
            .keepalives_retries(keepalives.count);
    }
    if let Some(timeout) = liveness.user_timeout {
        config.tcp_user_timeout(timeout);
    }
    if let Some(options) = url.session_options() {
        config.options(&options);
    }
    config
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::postgres::Serving;

    fn settings_of(text: &str) -> Config {
        settings(&PgUrl::parse_with_env(text, |_| None).unwrap())
    }

    #[test]
    fn keepalives_give_up_on_a_vanished_host_well_under_a_minute_by_default() {
        let config = settings_of("postgres://zavro@db.example/zavro");
        assert!(config.get_keepalives());
        let idle = config.get_keepalives_idle();
        let interval = config.get_keepalives_interval().unwrap();
        let count = config.get_keepalives_retries().unwrap();
        assert_eq!(
            (idle, interval, count),
            (Duration::from_secs(10), Duration::from_secs(5), 3)
        );
        let given_up_after = idle + interval * count;
        assert!(
            given_up_after < Duration::from_secs(30),
            "{given_up_after:?}"
        );
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(25)),
            "a query waiting on a vanished host is given up as soon"
        );
        // The rest of the URL is there too.
        assert_eq!(config.get_user(), Some("zavro"));
        assert_eq!(config.get_dbname(), Some("zavro"));
    }

    #[test]
    fn a_servers_sessions_are_bounded_and_durable_and_the_urls_options_come_last() {
        let url = |text: &str| PgUrl::parse_with_env(text, |_| None).unwrap();
        // Other commands send no options.
        assert_eq!(settings_of("postgres://u@h/d").get_options(), None);
        let served = settings(&url("postgres://u@h/d").for_serving(Serving::Durable));
        assert_eq!(
            served.get_options(),
            Some(
                "-c lock_timeout=5s -c statement_timeout=30s -c idle_in_transaction_session_timeout=15s \
                 -c synchronous_commit=on"
            )
        );
        let allowed = settings(&url("postgres://u@h/d").for_serving(Serving::AsyncAllowed));
        assert_eq!(
            allowed.get_options(),
            Some(super::super::url::SERVE_SESSION_OPTIONS)
        );
        // PostgreSQL applies the options in order, so the URL's override the server's own.
        let overridden = settings(
            &url("postgres://u@h/d?options=-c%20lock_timeout%3D1s").for_serving(Serving::Durable),
        );
        let options = overridden.get_options().unwrap();
        assert!(
            options.ends_with("-c synchronous_commit=on -c lock_timeout=1s"),
            "{options}"
        );
        assert_eq!(
            settings_of("postgres://u@h/d?options=-c%20x%3D1").get_options(),
            Some("-c x=1")
        );
    }

    #[test]
    fn the_urls_libpq_parameters_override_the_keepalives() {
        let config = settings_of(
            "postgres://u@h/d?keepalives_idle=30&keepalives_interval=7&keepalives_count=9&tcp_user_timeout=1500",
        );
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(config.get_keepalives_retries(), Some(9));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_millis(1500)),
            "milliseconds, as libpq reads it"
        );
        // Off, and the system's default for unacknowledged data.
        let config = settings_of("postgres://u@h/d?keepalives=0&tcp_user_timeout=0");
        assert!(!config.get_keepalives());
        assert_eq!(config.get_tcp_user_timeout(), None);
        // One parameter alone keeps zavro's defaults for the others.
        let config = settings_of("postgres://u@h/d?keepalives_count=5");
        assert_eq!(config.get_keepalives_retries(), Some(5));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(10));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(25))
        );
    }

    #[test]
    fn keepalive_values_the_system_would_refuse_are_refused_when_the_url_is_read() {
        for (text, expect) in [
            ("keepalives=yes", "keepalives must be 0 (off) or 1 (on)"),
            (
                "keepalives_idle=0",
                "keepalives_idle must be a whole number of seconds from 1",
            ),
            ("keepalives_idle=40000", "keepalives_idle must be"),
            ("keepalives_interval=-1", "keepalives_interval must be"),
            (
                "keepalives_count=0",
                "keepalives_count must be a whole number from 1 to 127",
            ),
            ("keepalives_count=128", "keepalives_count must be"),
            (
                "tcp_user_timeout=2.5",
                "tcp_user_timeout must be a whole number of milliseconds",
            ),
        ] {
            let err = PgUrl::parse_with_env(&format!("postgres://u:hunter2@h/d?{text}"), |_| None)
                .err()
                .unwrap_or_else(|| panic!("{text} was accepted"));
            let message = err.to_string();
            assert!(message.contains(expect), "{text}: {message}");
            assert!(!message.contains("hunter2"), "{text}: {message}");
        }
    }
}
