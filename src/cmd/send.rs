//! `zavro send ENDPOINT`: read JSON records from stdin, encode and sign them in batches, and send them.

use std::{io::Read, time::Duration};

use serde_json::Value;

use crate::{
    avro,
    cli::SendArgs,
    client::Client,
    config, credentials,
    endpoint::{self, Side},
    error::Error,
    input::{self, InputError},
    protocol::Request,
    timestamp,
};

/// Sends everything on stdin; succeeds only when the server accepted every record.
pub fn run(args: SendArgs) -> Result<(), Error> {
    let endpoint = endpoint::resolve(&args.endpoint, Side::Connect).map_err(Error::Usage)?;
    let key = config::key_id(args.key.as_deref())?;

    // All input is read, parsed and encoded before anything is sent, so bad input sends nothing.
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(InputError::Read)?;
    let records = input::parse_records(&text)?;
    let mut batches = Vec::new();
    for batch in records.chunks(args.batch as usize) {
        encode_batch(batch, &mut batches)?;
    }

    let secret = config::secret(args.secret_file.as_deref(), &key)?;
    let context = zmq::Context::new();
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut client = Client::connect(&context, &endpoint, timeout, args.retries)?;
    let mut last_audit_id = 0;
    for (payload, count) in batches {
        let request = Request::sign(
            &key,
            secret.as_bytes(),
            timestamp::now_seconds(),
            &credentials::new_nonce()?,
            payload,
        );
        last_audit_id = client.send(&request, count)?.audit_id;
    }
    let sent = client.accepted_records();
    let resent = match client.resends() {
        0 => String::new(),
        n => format!("; {n} resends after timeouts"),
    };
    eprintln!(
        "accepted {sent} record{} (last audit id {last_audit_id}){resent}",
        if sent == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Encodes `records` as one payload, or halves the batch until each payload fits [`avro::MAX_PAYLOAD_BYTES`].
fn encode_batch(records: &[Value], out: &mut Vec<(Vec<u8>, u64)>) -> Result<(), Error> {
    let payload = avro::encode(records)?;
    if payload.len() <= avro::MAX_PAYLOAD_BYTES || records.len() == 1 {
        out.push((payload, records.len() as u64));
        return Ok(());
    }
    let (first, second) = records.split_at(records.len() / 2);
    encode_batch(first, out)?;
    encode_batch(second, out)
}
