//! `zavro bench ENDPOINT`: send generated records over one or more connections and report records/s, MB/s and
//! acknowledgement latency percentiles.

use std::{
    thread,
    time::{Duration, Instant},
};

use apache_avro::Codec;
use serde_json::json;
use zeroize::Zeroizing;

use crate::{
    avro::BatchEncoder,
    batch::{Batch, Batcher, Limits, MAX_LINGER},
    bench::{self, Percentiles},
    cli::BenchArgs,
    client::{self, Client, Identity, Transport},
    config, credentials,
    endpoint::{self, Side},
    error::Error,
    protocol::Request,
    timestamp,
};

/// What one connection's thread measured.
struct Measured {
    records: u64,
    bytes: u64,
    latencies: Vec<Duration>,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: BenchArgs) -> Result<(), Error> {
    let profile = config::profile(args.profile.as_deref())?;
    let given: Vec<String> = args.endpoint.iter().cloned().collect();
    let endpoint = config::endpoints(&given, profile.as_ref())?.remove(0);
    let endpoint = endpoint::resolve(&endpoint, Side::Connect).map_err(Error::Usage)?;
    let key = config::key_id(args.key.as_deref(), profile.as_ref())?;
    let transport = config::transport(
        args.transport.server_key.as_deref(),
        args.transport.plaintext,
        profile.as_ref(),
    )?;
    let secret = config::secret(args.secret_file.as_deref(), profile.as_ref(), &key)?;
    let connections = u64::from(args.connections);
    let settings = client::Settings {
        timeout: Duration::from_secs_f64(args.timeout),
        retries: 0,
        window: args.window as usize,
    };
    let context = zmq::Context::new();
    let started = Instant::now();
    let results: Vec<Result<Measured, Error>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|i| {
                // Share the records out; the first connections take the remainder.
                let count = args.count / connections + u64::from(i < args.count % connections);
                let (context, endpoint, key, secret, args) =
                    (&context, &endpoint, &key, &secret, &args);
                let transport = transport.clone();
                scope.spawn(move || {
                    sender(
                        context,
                        endpoint,
                        key,
                        secret,
                        settings,
                        transport,
                        count,
                        i * args.count,
                        args,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Other("a sender thread panicked".into())))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut records = 0;
    let mut bytes = 0;
    let mut latencies = Vec::new();
    for result in results {
        let measured = result?;
        records += measured.records;
        bytes += measured.bytes;
        latencies.extend(measured.latencies);
    }
    let requests = latencies.len();
    let p = Percentiles::of(&mut latencies).expect("at least one request was sent");
    let secs = elapsed.as_secs_f64();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    if args.json {
        let report = json!({
            "records": records,
            "requests": requests,
            "seconds": secs,
            "records_per_sec": records as f64 / secs,
            "mb_per_sec": bytes as f64 / secs / 1e6,
            "latency_us": {"p50": micros(p.p50), "p99": micros(p.p99), "p999": micros(p.p999), "max": micros(p.max)},
            "batch": args.batch, "window": args.window, "connections": args.connections, "record_size": args.record_size,
        });
        println!("{report}");
    } else {
        println!(
            "{records} records in {requests} requests in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
            records as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        println!(
            "ack latency per request: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
            micros(p.p50),
            micros(p.p99),
            micros(p.p999),
            micros(p.max)
        );
        println!(
            "(batch {}, window {}, connections {}, records of {} bytes)",
            args.batch, args.window, args.connections, args.record_size
        );
    }
    Ok(())
}

/// One connection: generate, encode, sign and submit `count` records; collect every request's latency.
#[allow(clippy::too_many_arguments)]
fn sender(
    context: &zmq::Context,
    endpoint: &str,
    key: &str,
    secret: &Zeroizing<String>,
    settings: client::Settings,
    transport: Transport,
    count: u64,
    first_sequence: u64,
    args: &BenchArgs,
) -> Result<Measured, Error> {
    let identity = Identity {
        key: key.to_owned(),
        secret: secret.clone(),
    };
    let mut client = Client::connect(
        context,
        &[endpoint.to_owned()],
        settings,
        transport,
        identity,
    )?;
    // Requests of exactly --batch records, as fast as they are made: no byte bound, and nothing lingers.
    let limits = Limits {
        records: u64::from(args.batch),
        bytes: usize::MAX,
        linger: MAX_LINGER,
    };
    let mut batcher = Batcher::new(BatchEncoder::new(Codec::Null), limits);
    let mut measured = Measured {
        records: 0,
        bytes: 0,
        latencies: Vec::with_capacity((count / u64::from(args.batch) + 1) as usize),
    };
    let mut submit = |client: &mut Client, batch: Batch| -> Result<(), Error> {
        let request = Request::sign(
            key,
            secret.as_bytes(),
            timestamp::now_seconds(),
            &credentials::new_nonce()?,
            batch.payload,
        );
        client.submit(&request, batch.records)?;
        measured
            .latencies
            .extend(client.take_accepted().map(|a| a.latency));
        Ok(())
    };
    let now = Instant::now();
    for i in 0..count {
        let record = bench::record(first_sequence + i, args.record_size as usize);
        batcher.push(&record, (i + 1) as usize, now)?;
        while let Some(batch) = batcher.take_full() {
            submit(&mut client, batch)?;
        }
    }
    while let Some(batch) = batcher.take_rest()? {
        submit(&mut client, batch)?;
    }
    client.flush()?;
    measured
        .latencies
        .extend(client.take_accepted().map(|a| a.latency));
    measured.records = client.accepted_records();
    measured.bytes = count * u64::from(args.record_size);
    Ok(measured)
}
