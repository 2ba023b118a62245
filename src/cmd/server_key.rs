//! `zavro server-key [--json]`, `zavro server-key rotate [--stage]`: the server's CURVE public key, which
//! clients pin, and its rotation. The secret half never leaves the store.

use std::io::Write;

use serde_json::json;

use crate::{
    cli::{ServerKeyArgs, ServerKeyCommand},
    error::Error,
    store::KeyStore,
    timestamp,
};

/// Prints the current public key (or both, as JSON), or rotates.
pub fn run(store: &mut dyn KeyStore, args: ServerKeyArgs) -> Result<(), Error> {
    let now_us = timestamp::now_micros();
    let mut out = std::io::stdout().lock();
    let written = match args.command {
        None if args.json => {
            let keys = store.server_keys(now_us)?;
            writeln!(
                out,
                "{}",
                json!({"current": keys.current, "staged": keys.staged})
            )
        }
        None => writeln!(out, "{}", store.server_keys(now_us)?.current),
        Some(ServerKeyCommand::Rotate(rotate)) if rotate.stage => {
            let staged = store.stage_server_key(now_us)?;
            eprintln!(
                "staged; serve still presents the current key until `zavro server-key rotate` and a restart"
            );
            writeln!(out, "{staged}")
        }
        Some(ServerKeyCommand::Rotate(_)) => {
            let current = store.rotate_server_key(now_us)?;
            eprintln!(
                "rotated; running servers keep presenting the old key until they are restarted, and clients \
                 must pin the new one to reach a restarted server"
            );
            writeln!(out, "{current}")
        }
    };
    written.map_err(super::stdout_error)
}
