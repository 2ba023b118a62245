//! Integration tests of the `zavro` binary: real processes, a real store in a temporary directory, servers on
//! 127.0.0.1 or ipc:// in that directory. Every server a test starts is stopped when the test ends.

mod amplification;
mod audit;
mod bombs;
mod check_config;
mod common;
mod concurrency;
mod connections;
mod crash;
mod end_to_end;
mod endless_messages;
mod follow;
mod help;
mod hostile;
mod hygiene;
mod interop;
mod keys;
mod logs;
mod metrics;
mod on_path;
mod operators;
mod output_full;
mod postgres;
mod profiles;
mod protocol_attacks;
mod proxy;
mod request_ids;
mod scale;
mod schemas;
mod sealed;
mod send_errors;
mod servers;
mod service;
mod slow_peers;
mod spool;
mod store_copy;
mod store_moved;
mod terminal;
mod transport;
mod transport_client;
mod zmtp;

// The throwaway PostgreSQL cluster of the library's unit tests, one per test binary.
#[path = "../../src/store/postgres/test_cluster.rs"]
mod test_cluster;
