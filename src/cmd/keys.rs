//! `zavro keys add|list|revoke`: manage the API keys in the store.

use std::io::{Read, Write};

use serde_json::json;
use zeroize::Zeroizing;

use crate::{
    cli::{KeysAddArgs, KeysCommand},
    config, credentials,
    error::Error,
    profiles::{self, Profile, ProfileError},
    store::KeyStore,
    table::write_table,
    timestamp::{self, format_rfc3339},
};

/// Runs one `keys` subcommand.
pub fn run(store: &mut dyn KeyStore, command: KeysCommand) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Add(args) => add(store, args, &mut out),
        KeysCommand::List(args) => list(store, args.json, &mut out),
        KeysCommand::Revoke(args) => {
            let at = store.revoke_key(&args.key, timestamp::now_micros())?;
            writeln!(out, "revoked {} at {}", args.key, format_rfc3339(at))
                .map_err(super::stdout_error)
        }
    }
}

fn add(store: &mut dyn KeyStore, args: KeysAddArgs, out: &mut dyn Write) -> Result<(), Error> {
    let imported = if args.secret_stdin {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("cannot read the secret from stdin", e))?;
        Some(Zeroizing::new(config::first_line(&text).to_owned()))
    } else if args.secret_prompt {
        let typed = rpassword::prompt_password("Secret to import: ")
            .map_err(|e| Error::Usage(format!("cannot prompt for the secret: {e}")))?;
        Some(Zeroizing::new(typed))
    } else {
        None
    };
    if let Some(secret) = &imported {
        credentials::check_imported_secret(secret).map_err(Error::Usage)?;
    }
    let now_us = timestamp::now_micros();
    let expires_us = args
        .expires
        .as_deref()
        .map(|text| timestamp::parse_future(text, now_us))
        .transpose()
        .map_err(|e| Error::Usage(format!("--expires: {e}")))?;
    if let Some(expires) = expires_us.filter(|t| *t <= now_us) {
        return Err(Error::Usage(format!(
            "--expires: {} is not in the future",
            format_rfc3339(expires)
        )));
    }
    // A profile that would be refused is refused before the key exists, so nothing is left half done.
    let profile_path = match &args.save_profile {
        Some(name) => {
            if !profiles::is_valid_name(name) {
                return Err(ProfileError::BadName(name.clone()).into());
            }
            let path = config::credentials_path()?;
            if !args.force && profiles::load(&path, name)?.is_some() {
                return Err(ProfileError::Exists {
                    path,
                    name: name.clone(),
                }
                .into());
            }
            Some(path)
        }
        None => None,
    };
    let key = credentials::new_key_id()?;
    let secret = match imported {
        Some(secret) => secret,
        None => credentials::new_secret()?,
    };
    store.add_key(&key, &secret, args.label.as_deref(), expires_us, now_us)?;

    if let (Some(name), Some(path)) = (&args.save_profile, &profile_path) {
        // The key `serve` on this store presents (made now if it has none yet), so `send` with this profile
        // pins the right server with no further step.
        let server_key = store.server_keys(now_us)?.current;
        let profile = Profile {
            name: name.clone(),
            key: Some(key.clone()),
            secret: Some(secret.clone()),
            endpoint: args.endpoint.clone(),
            server_key: Some(server_key.clone()),
        };
        if let Err(e) = profiles::save(path, &profile, args.force) {
            // The key exists now; without the profile its secret would be lost, so this is its one showing.
            return Err(Error::Other(format!(
                "{e}; key {key} was created, its secret is {} (keep it now: it will not be shown again)",
                secret.as_str()
            )));
        }
        let written = if args.json {
            writeln!(
                out,
                "{}",
                json!({"key": key, "profile": name, "server_key": server_key})
            )
        } else {
            writeln!(
                out,
                "key:        {key}\nprofile:    {name} (secret saved in {})\nserver key: {server_key} (saved \
                 with it; `send` pins it)",
                path.display()
            )
        };
        return written.map_err(super::stdout_error);
    }

    // A secret the user imported is not echoed back: they already have it.
    let show_secret = !(args.secret_stdin || args.secret_prompt);
    let written = if args.json {
        let value = if show_secret {
            json!({"key": key, "secret": secret.as_str()})
        } else {
            json!({"key": key})
        };
        writeln!(out, "{value}")
    } else if show_secret {
        writeln!(
            out,
            "key:    {key}\nsecret: {}\nKeep the secret now: zavro will not show it again.",
            secret.as_str()
        )
    } else {
        writeln!(out, "key: {key}")
    };
    written.map_err(super::stdout_error)
}

fn list(store: &mut dyn KeyStore, as_json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let keys = store.list_keys()?;
    let time = |t: Option<i64>| t.map(format_rfc3339);
    let written = if as_json {
        keys.iter().try_for_each(|k| {
            let value = json!({
                "key": k.id,
                "label": k.label,
                "created": format_rfc3339(k.created_us),
                "revoked": time(k.revoked_us),
                "expires": time(k.expires_us),
                "last_used": time(k.last_used_us),
                "requests": k.requests,
                "records": k.records,
            });
            writeln!(out, "{value}")
        })
    } else {
        let dash = |t: Option<i64>| time(t).unwrap_or_else(|| "-".into());
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                vec![
                    k.id.clone(),
                    k.label.clone().unwrap_or_else(|| "-".into()),
                    format_rfc3339(k.created_us),
                    dash(k.revoked_us),
                    dash(k.expires_us),
                    dash(k.last_used_us),
                    k.requests.to_string(),
                    k.records.to_string(),
                ]
            })
            .collect();
        write_table(
            out,
            &[
                "KEY",
                "LABEL",
                "CREATED",
                "REVOKED",
                "EXPIRES",
                "LAST USED",
                "REQUESTS",
                "RECORDS",
            ],
            &rows,
        )
    };
    written.map_err(super::stdout_error)
}
