//! What the server does with a request before it touches its store: parse the frames, check the
//! signature and decode the Avro payload (src/server/handle.rs).
//!
//! The server decodes the payload only after the signature (and key, clock and nonce) checks pass. A fuzzer
//! cannot forge an HMAC, so this target decodes every parsed payload whatever `verify` says; the seeds in
//! `seeds/request/` are signed with `zavro_fuzz::SECRET`, so their `verify` calls return true.
//!
//! The payload goes through `Decoder::decode_request`, as in the server. (The server then joins the lines into
//! the stored array with `server::check::json_array`, a copy and a newline search that its unit tests cover and
//! that is not public.) Each input gets a fresh `Decoder`; the server keeps one, whose schema cache only skips
//! re-checking a header it has already accepted.

#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use zavro::{
    auth,
    avro::{self, Decoder},
    protocol::Request,
};
use zavro_fuzz::{SECRET, split_frames};

static LIMIT: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    LIMIT.call_once(avro::limit_decode_allocations);
    let frames = split_frames(data);
    let Ok(request) = Request::from_frames(&frames) else {
        return;
    };
    let string_to_sign = request.string_to_sign();
    let _ = auth::verify(SECRET, string_to_sign.as_str(), &request.envelope.signature);
    let _ = Decoder::new().decode_request(&request.payload);
});
