//! zavro sends JSON records, encoded as Apache Avro and signed S3-style with HMAC-SHA1, over ZeroMQ to a server
//! that verifies every request, keeps a SQLite audit trail of every action, and logs the records it accepted.
//!
//! # Layout
//!
//! - Pure parts, no sockets or files: [`protocol`] (frames, envelope, string-to-sign, replies), [`auth`]
//!   (HMAC sign and constant-time verify), [`avro`] (JSON ↔ Avro container files, schema fingerprints),
//!   [`input`] (stdin text to records), [`batch`] (records cut into requests by count, bytes and linger time),
//!   [`untrusted`] (wire text made safe to show), [`endpoint`], [`credentials`], [`timestamp`], [`bench`] (load
//!   generation, percentiles), [`sealed`] (the master key and the sealing of secrets at rest, for any backend).
//! - State: [`store`] (SQLite: migrations, keys, audit, payloads, schemas, nonces; the server reaches it only
//!   through the [`store::RequestStore`] seam, which a second backend implements).
//! - Network: [`server`] (the request pipeline, frames → checks → one commit per group → replies, and the loop
//!   that owns the socket), [`client`] (send, keep a window in flight, await replies and check their signatures), [`handshake`] (a
//!   client socket's CURVE handshake watched through a libzmq monitor) and [`read_ahead`] (stdin
//!   parsed on its own thread, so a sender waits for input and replies at once), [`metrics`] (`serve --metrics`:
//!   Prometheus metrics, `/healthz` and `/readyz` on an HTTP listener of their own thread); [`follow`] (files
//!   followed as `tail -F` does, each line with the position to resume from).
//! - Front-ends: [`cli`] (clap types only), [`cmd`] (one thin `run` per subcommand), [`config`] (store path and
//!   credentials resolved once), [`error`] (one error type and the exit codes), [`docs`] (completions, man pages),
//!   [`complete`] (key ids for shell completion, read from the store while the user types), [`hardening`]
//!   (no core dumps, secrets kept out of swap, the open-file limit raised), [`service`] (readiness and
//!   stopping told to systemd).

#![warn(missing_docs)]

pub mod auth;
pub mod avro;
pub mod batch;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod complete;
pub mod config;
pub mod credentials;
pub mod curve;
pub mod docs;
pub mod endpoint;
pub mod error;
pub mod follow;
pub mod handshake;
pub mod hardening;
pub mod input;
pub mod metrics;
pub mod profiles;
pub mod protocol;
pub mod read_ahead;
pub mod sealed;
pub mod server;
pub mod service;
pub mod spool;
pub mod store;
pub mod table;
pub mod timestamp;
pub mod untrusted;
