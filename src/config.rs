//! Resolving configuration once at the top: where the store lives, and the credentials `send` signs with.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use zeroize::Zeroizing;

use crate::error::Error;

/// Environment variable holding the API secret for `zavro send`.
pub const SECRET_ENV: &str = "ZAVRO_SECRET";

/// The store path: `--db` / `ZAVRO_DB` if given (clap reads both), else `<data dir>/zavro/zavro.db`.
pub fn store_path(flag: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    dirs::data_dir()
        .map(|dir| dir.join("zavro").join("zavro.db"))
        .ok_or_else(|| {
            Error::Usage("cannot find a data directory for the store; give --db PATH".into())
        })
}

/// The API key id, which must be given by `--key` or `ZAVRO_KEY` (clap reads both).
pub fn key_id(flag: Option<&str>) -> Result<String, Error> {
    let key =
        flag.ok_or_else(|| Error::Usage("no API key: give --key KEY or set ZAVRO_KEY".into()))?;
    if crate::protocol::is_valid_key_id(key) {
        Ok(key.to_owned())
    } else {
        Err(Error::Usage(format!(
            "{key:?} is not a key id (letters, digits, - and _)"
        )))
    }
}

/// The API secret: from `--secret-file`, else `ZAVRO_SECRET`, else a prompt on the terminal.
///
/// Never from the command line, where other users could read it in the process list.
pub fn secret(secret_file: Option<&Path>, key: &str) -> Result<Zeroizing<String>, Error> {
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

fn non_empty(secret: &str, source: &str) -> Result<Zeroizing<String>, Error> {
    if secret.is_empty() {
        Err(Error::Usage(format!("{source} is empty")))
    } else {
        Ok(Zeroizing::new(secret.to_owned()))
    }
}
