//! Raw bytes straight into the payload decoder, as if they were a request's third frame.

#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use zavro::avro;

static LIMIT: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    LIMIT.call_once(avro::limit_decode_allocations);
    let _ = avro::decode(data);
});
