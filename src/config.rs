//! Resolving configuration once at the top: where the store lives, and the credentials `send` signs with.
//!
//! Credentials and the endpoint are taken, first found wins, from: the command line, the environment
//! (`ZAVRO_KEY`, `ZAVRO_SECRET`), the profile (`--profile`, else `ZAVRO_PROFILE`, else `default` if the
//! credentials file has it), and last, for the secret only, a prompt on the terminal. The server's CURVE key
//! likewise: `--server-key`, `ZAVRO_SERVER_KEY`, the profile's `server_key`; `--plaintext` instead of any.
//! The master key of a sealed store: the file named by `--master-key-file` or `ZAVRO_MASTER_KEY_FILE`, else the
//! systemd credential `zavro-master-key`; the key itself is never in the environment or on the command line.

use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
};

use zeroize::Zeroizing;

use crate::{
    client::Transport,
    curve,
    error::Error,
    hardening,
    profiles::{self, Profile, ProfileError},
    sealed::MasterKey,
    store::Location,
};

/// Environment variable holding the API secret for `zavro send`.
pub const SECRET_ENV: &str = "ZAVRO_SECRET";

/// Environment variable holding the server's CURVE public key for `zavro send` and `zavro bench`.
///
/// Read here rather than by clap, so that `--plaintext` overrides it as a flag overrides any variable, while
/// `--plaintext` with `--server-key` on one command line is refused as a contradiction.
pub const SERVER_KEY_ENV: &str = "ZAVRO_SERVER_KEY";

/// Environment variable naming the store (clap reads it for `--db`).
pub const DB_ENV: &str = "ZAVRO_DB";

/// The store: `--db` / `ZAVRO_DB` if given (clap reads both), else the SQLite file `<data dir>/zavro/zavro.db`.
///
/// A `postgres://` URL with a password is refused when it came from the command line (`on_command_line`, as clap
/// saw it: not by comparing the text with `ZAVRO_DB`'s, which the same URL in both would pass), where other users
/// can read it in the process list: the password belongs in the password file (or the URL in `ZAVRO_DB`).
pub fn store_location(flag: Option<&OsStr>, on_command_line: bool) -> Result<Location, Error> {
    let Some(text) = flag else {
        return dirs::data_dir()
            .map(|dir| Location::Sqlite(dir.join("zavro").join("zavro.db")))
            .ok_or_else(|| {
                Error::Usage("cannot find a data directory for the store; give --db PATH".into())
            });
    };
    let location = Location::from_os(text)?;
    if let Location::Postgres(url) = &location
        && url.password().is_some()
        && on_command_line
    {
        return Err(Error::Usage(format!(
            "--db {url}: the URL holds a password, which other users can read on the command line; put it in \
             ~/.pgpass (or the file PGPASSFILE names, mode 0600), or give the URL in {DB_ENV}"
        )));
    }
    Ok(location)
}

/// Environment variable naming the master key file (clap reads it for `--master-key-file`). It names the file:
/// the key itself is never put in the environment, where child processes and `/proc` could read it.
pub const MASTER_KEY_FILE_ENV: &str = "ZAVRO_MASTER_KEY_FILE";

/// The systemd credential holding the master key, `LoadCredential=zavro-master-key:/etc/zavro/master.key`: read
/// from `$CREDENTIALS_DIRECTORY` when neither the flag nor the variable names a file.
pub const MASTER_KEY_CREDENTIAL: &str = "zavro-master-key";

/// Where systemd puts a unit's credentials (`LoadCredential=`).
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

/// Where the master key comes from, when it comes from anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeyFile {
    /// A file named by `--master-key-file` or `ZAVRO_MASTER_KEY_FILE`.
    Given(PathBuf),
    /// The systemd credential in `$CREDENTIALS_DIRECTORY`.
    Credential(PathBuf),
}

/// The master key file: `--master-key-file` / `ZAVRO_MASTER_KEY_FILE` (clap reads both), else
/// `$CREDENTIALS_DIRECTORY/zavro-master-key` when that exists, else none.
pub fn master_key_file(flag: Option<&Path>) -> Option<MasterKeyFile> {
    if let Some(path) = flag {
        return Some(MasterKeyFile::Given(path.to_owned()));
    }
    let credential =
        PathBuf::from(env::var_os(CREDENTIALS_DIRECTORY_ENV)?).join(MASTER_KEY_CREDENTIAL);
    credential
        .exists()
        .then_some(MasterKeyFile::Credential(credential))
}

/// The master key, read from the file [`master_key_file`] finds, or `None` when none is configured. Read only by
/// the commands that need secrets, so a missing or broken key file never stops `keys list` or `audit`.
pub fn master_key(flag: Option<&Path>) -> Result<Option<MasterKey>, Error> {
    Ok(match master_key_file(flag) {
        Some(MasterKeyFile::Given(path)) => Some(MasterKey::load(&path)?),
        Some(MasterKeyFile::Credential(path)) => Some(MasterKey::load_credential(&path)?),
        None => None,
    })
}

/// The credentials file: `<config dir>/zavro/credentials`.
pub fn credentials_path() -> Result<PathBuf, Error> {
    profiles::default_path().ok_or_else(|| {
        Error::Usage("cannot find a configuration directory for the credentials file".into())
    })
}

/// The profile to use: the one named by `--profile` / `ZAVRO_PROFILE` (clap reads both), which must exist, else
/// the `default` profile when the credentials file has one, else none. Its secret, kept as long as the command
/// runs, is locked out of swap where the platform allows.
pub fn profile(flag: Option<&str>) -> Result<Option<Profile>, Error> {
    let profile = find_profile(flag)?;
    if let Some(secret) = profile.as_ref().and_then(|p| p.secret.as_ref()) {
        hardening::keep_out_of_swap(secret);
    }
    Ok(profile)
}

fn find_profile(flag: Option<&str>) -> Result<Option<Profile>, Error> {
    let path = match (flag, profiles::default_path()) {
        (_, Some(path)) => path,
        (None, None) => return Ok(None),
        (Some(_), None) => credentials_path()?,
    };
    match flag {
        Some(name) => match profiles::load(&path, name)? {
            Some(profile) => Ok(Some(profile)),
            None => Err(ProfileError::Missing {
                path,
                name: name.to_owned(),
            }
            .into()),
        },
        None => Ok(profiles::load(&path, profiles::DEFAULT_PROFILE)?),
    }
}

/// The endpoints: those on the command line, else the profile's endpoint.
pub fn endpoints(given: &[String], profile: Option<&Profile>) -> Result<Vec<String>, Error> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    profile
        .and_then(|p| p.endpoint.clone())
        .map(|endpoint| vec![endpoint])
        .ok_or_else(|| {
            Error::Usage(
                "no endpoint: give ENDPOINT, or use a profile with an endpoint (--profile NAME)"
                    .into(),
            )
        })
}

/// The API key id: `--key` or `ZAVRO_KEY` (clap reads both, the flag first), else the profile's key.
pub fn key_id(flag: Option<&str>, profile: Option<&Profile>) -> Result<String, Error> {
    let key = flag
        .or_else(|| profile.and_then(|p| p.key.as_deref()))
        .ok_or_else(|| {
            Error::Usage(
                "no API key: give --key KEY, set ZAVRO_KEY, or use a profile (--profile NAME)"
                    .into(),
            )
        })?;
    if crate::protocol::is_valid_key_id(key) {
        Ok(key.to_owned())
    } else {
        Err(Error::Usage(format!(
            "{key:?} is not a key id (letters, digits, - and _)"
        )))
    }
}

/// The API secret: from `--secret-file`, else `ZAVRO_SECRET`, else the profile's secret when the profile is for
/// this key, else a prompt on the terminal.
///
/// Never from the command line, where other users could read it in the process list. A profile's secret is
/// never paired with another key given by `--key` or `ZAVRO_KEY`: it would only be refused as a bad signature.
pub fn secret(
    secret_file: Option<&Path>,
    profile: Option<&Profile>,
    key: &str,
) -> Result<Zeroizing<String>, Error> {
    if let Some(path) = secret_file {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| {
            Error::Usage(format!("cannot read secret file {}: {e}", path.display()))
        })?);
        return non_empty(
            first_line(&text),
            &format!("secret file {}", path.display()),
        );
    }
    if let Some(value) = env::var_os(SECRET_ENV) {
        let value = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| Error::Usage(format!("{SECRET_ENV} is not valid UTF-8")))?,
        );
        return non_empty(&value, SECRET_ENV);
    }
    if let Some((name, secret)) = profile
        .filter(|p| p.key.as_deref() == Some(key))
        .and_then(|p| Some((&p.name, p.secret.as_ref()?)))
    {
        return non_empty(secret, &format!("the secret of profile {name:?}"));
    }
    let typed = rpassword::prompt_password(format!("Secret for key {key}: ")).map_err(|e| {
        Error::Usage(format!(
            "no secret: set {SECRET_ENV}, give --secret-file FILE, or run on a terminal to be asked ({e})"
        ))
    })?;
    non_empty(&Zeroizing::new(typed), "the secret typed")
}

/// The first line of `text`, without its line ending.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The secret as the buffer the command keeps to the end, locked out of swap where the platform allows (the
/// copies it was read through are short-lived and wiped).
fn non_empty(secret: &str, source: &str) -> Result<Zeroizing<String>, Error> {
    if secret.is_empty() {
        return Err(Error::Usage(format!("{source} is empty")));
    }
    let kept = Zeroizing::new(secret.to_owned());
    hardening::keep_out_of_swap(&kept);
    Ok(kept)
}

/// Server keys a client may pin at once: the current one and the next, while servers rotate their key.
const MAX_PINNED_SERVER_KEYS: usize = 2;

/// How to reach the server: `--plaintext`, else the CURVE public key(s) from `--server-key`, else
/// `ZAVRO_SERVER_KEY`, else the profile's `server_key`; with none of them, a usage error that says where the key
/// comes from. A key that is not Z85 is named by where it came from, never echoed.
pub fn transport(
    server_key: Option<&str>,
    plaintext: bool,
    profile: Option<&Profile>,
) -> Result<Transport, Error> {
    if plaintext {
        return Ok(Transport::Plaintext);
    }
    let from_env = env::var_os(SERVER_KEY_ENV)
        .map(|value| {
            value
                .into_string()
                .map_err(|_| Error::Usage(format!("{SERVER_KEY_ENV} is not valid UTF-8")))
        })
        .transpose()?;
    let (text, source) = match (server_key, from_env, profile) {
        (Some(flag), _, _) => (flag.to_owned(), "--server-key".to_owned()),
        (None, Some(value), _) => (value, SERVER_KEY_ENV.to_owned()),
        (
            None,
            None,
            Some(Profile {
                name,
                server_key: Some(value),
                ..
            }),
        ) => (value.clone(), format!("the server_key of profile {name:?}")),
        (None, None, _) => {
            return Err(Error::Usage(format!(
                "no server key: give --server-key KEY (`zavro server-key` prints it on the server), set \
                 {SERVER_KEY_ENV}, or use a profile made by `zavro keys add --save-profile`; \
                 --plaintext for a `serve --plaintext` server"
            )));
        }
    };
    let server_keys = text
        .split(',')
        .map(curve::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Usage(format!("{source}: {e}")))?;
    if server_keys.len() > MAX_PINNED_SERVER_KEYS {
        return Err(Error::Usage(format!(
            "{source}: at most {MAX_PINNED_SERVER_KEYS} server keys, separated by commas"
        )));
    }
    Ok(Transport::Curve { server_keys })
}
