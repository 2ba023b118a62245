//! HMAC-SHA1 request signatures: `base64(HMAC-SHA1(secret, string-to-sign))`, checked in constant time.
//!
//! SHA-1's broken collision resistance does not weaken HMAC-SHA1 as a MAC, and the payload is bound to the
//! string-to-sign by its SHA-256 digest, so no SHA-1 collision can swap the payload (PROTOCOL.md, "Signing").

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Signs `string_to_sign` with `secret` and returns the base64 (standard alphabet, padded) signature.
pub fn sign(secret: &[u8], string_to_sign: &str) -> String {
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// True when `signature` is the base64 HMAC-SHA1 of `string_to_sign` under `secret`.
///
/// The comparison runs in constant time over the decoded MAC bytes, so timing reveals nothing about how much
/// of a forged signature was right.
pub fn verify(secret: &[u8], string_to_sign: &str, signature: &str) -> bool {
    let Ok(claimed) = STANDARD.decode(signature) else {
        return false;
    };
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&claimed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc2202_test_case_2() {
        // RFC 2202, HMAC-SHA1 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected = STANDARD.encode(hex_bytes("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
        assert_eq!(sign(b"Jefe", "what do ya want for nothing?"), expected);
    }

    #[test]
    fn verify_accepts_own_signature_and_rejects_changes() {
        let sig = sign(b"secret", "message");
        assert!(verify(b"secret", "message", &sig));
        assert!(!verify(b"secret", "message!", &sig));
        assert!(!verify(b"other", "message", &sig));
        assert!(!verify(b"secret", "message", "not base64!"));
        assert!(!verify(b"secret", "message", ""));
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}
