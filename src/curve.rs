//! CurveZMQ keys (RFC 26): the server's long-term key pair, and the client key pair each API key has, derived
//! from its secret so that users manage no second credential (PROTOCOL.md, "Transport security").

use std::ffi::{CStr, CString};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Characters of a key in Z85, the text form libzmq and pyzmq use (32 bytes → 40 characters).
pub const Z85_KEY_LEN: usize = 40;

/// What the derivation of a client key signs: this label, a newline, then the key id (PROTOCOL.md).
pub const CLIENT_KEY_LABEL: &str = "zavro curve client key v1";

/// Why a CURVE key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    /// Text that should be a Z85 key is not one.
    #[error("not a CURVE key: expected 40 characters of Z85 (as `zavro server-key` prints)")]
    NotAKey,
    /// libzmq was built without CURVE, or failed to make a key.
    #[error("libzmq cannot make CURVE keys: {0}")]
    Unavailable(String),
}

unsafe extern "C" {
    /// libzmq's `zmq_curve_public(3)`: the Z85 public key of a Z85 secret key (zmq-sys binds it but does not
    /// export it).
    fn zmq_curve_public(
        z85_public_key: *mut std::ffi::c_char,
        z85_secret_key: *const std::ffi::c_char,
    ) -> std::ffi::c_int;
}

/// True when the linked libzmq implements CURVE (it does when built as vendor/README.md describes).
pub fn available() -> bool {
    zmq::has("curve") == Some(true)
}

/// A Curve25519 key pair; the secret half is wiped from memory when dropped.
pub struct KeyPair {
    /// The public key, which peers pin or admit.
    pub public: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
}

impl KeyPair {
    /// A new random key pair, for a server.
    pub fn generate() -> Result<KeyPair, CurveError> {
        let pair = zmq::CurveKeyPair::new().map_err(|e| CurveError::Unavailable(e.to_string()))?;
        let secret = Zeroizing::new(pair.secret_key);
        KeyPair::from_secret(*secret)
    }

    /// The key pair whose secret half is `secret`: the public half is computed as libzmq's `zmq_curve_public`
    /// (and pyzmq's `zmq.curve_public`) does.
    pub fn from_secret(secret: [u8; 32]) -> Result<KeyPair, CurveError> {
        let secret = Zeroizing::new(secret);
        let secret_z85 = Zeroizing::new(encode(&secret));
        let secret_c = Zeroizing::new(
            CString::new(secret_z85.as_str())
                .expect("Z85 has no NUL")
                .into_bytes_with_nul(),
        );
        let mut public_c = [0u8; Z85_KEY_LEN + 1];
        // SAFETY: both buffers are 41 bytes, NUL-terminated Z85 as zmq_curve_public(3) requires; it writes 41
        // bytes into the first and only reads the second.
        let rc =
            unsafe { zmq_curve_public(public_c.as_mut_ptr().cast(), secret_c.as_ptr().cast()) };
        if rc != 0 {
            return Err(CurveError::Unavailable(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        let public_z85 = CStr::from_bytes_until_nul(&public_c)
            .ok()
            .and_then(|text| text.to_str().ok())
            .ok_or(CurveError::NotAKey)?;
        Ok(KeyPair {
            public: decode(public_z85)?,
            secret,
        })
    }

    /// The client key pair of API key `key_id` whose secret is `secret` (its UTF-8 bytes, as for signing):
    /// the secret half is `HMAC-SHA256(secret, "zavro curve client key v1\n" + key_id)`. HMAC is one-way, so
    /// the CURVE key reveals nothing about the signing secret, and binding the key id gives two keys that share
    /// a secret different CURVE keys.
    pub fn for_client(key_id: &str, secret: &[u8]) -> Result<KeyPair, CurveError> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(CLIENT_KEY_LABEL.as_bytes());
        mac.update(b"\n");
        mac.update(key_id.as_bytes());
        let derived = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        KeyPair::from_secret(*derived)
    }

    /// The secret half, for `ZMQ_CURVE_SECRETKEY`.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public half in Z85.
    pub fn public_z85(&self) -> String {
        encode(&self.public)
    }

    /// The secret half in Z85, for the store; wiped when dropped.
    pub fn secret_z85(&self) -> Zeroizing<String> {
        Zeroizing::new(encode(&self.secret))
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public_z85())
            .finish_non_exhaustive()
    }
}

/// A 32-byte key in Z85.
pub fn encode(key: &[u8; 32]) -> String {
    zmq::z85_encode(key).expect("32 bytes is a multiple of 4")
}

/// The Z85 alphabet (ZeroMQ RFC 32), in digit order.
const Z85_ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// A 32-byte key from its Z85 text (surrounding white space ignored).
///
/// Decoded here rather than with `zmq::z85_decode`, which ignores libzmq's refusal of characters outside the
/// alphabet and returns zeros for them.
pub fn decode(text: &str) -> Result<[u8; 32], CurveError> {
    let text = text.trim().as_bytes();
    if text.len() != Z85_KEY_LEN {
        return Err(CurveError::NotAKey);
    }
    let mut key = [0u8; 32];
    for (chunk, out) in text.chunks_exact(5).zip(key.chunks_exact_mut(4)) {
        let mut value: u64 = 0;
        for &character in chunk {
            let digit = Z85_ALPHABET
                .iter()
                .position(|&c| c == character)
                .ok_or(CurveError::NotAKey)?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value).map_err(|_| CurveError::NotAKey)?;
        out.copy_from_slice(&value.to_be_bytes());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libzmq_has_curve() {
        assert!(
            available(),
            "libzmq was built without CURVE: see vendor/README.md, patch 0005"
        );
    }

    #[test]
    fn public_key_of_rfc7748_secret_matches_the_rfc() {
        // RFC 7748, section 6.1: Alice's private key and the public key X25519 gives for it.
        let secret =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap();
        let pair = KeyPair::from_secret(secret.try_into().unwrap()).unwrap();
        assert_eq!(
            hex::encode(pair.public),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn client_keys_depend_on_secret_and_key_id() {
        let a = KeyPair::for_client("ZKA", b"secret").unwrap();
        assert_eq!(
            a.public,
            KeyPair::for_client("ZKA", b"secret").unwrap().public
        );
        assert_ne!(
            a.public,
            KeyPair::for_client("ZKB", b"secret").unwrap().public
        );
        assert_ne!(
            a.public,
            KeyPair::for_client("ZKA", b"secret2").unwrap().public
        );
    }

    #[test]
    fn generated_pairs_differ_and_round_trip_through_z85() {
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        assert_ne!(a.public, b.public);
        assert_eq!(decode(&a.public_z85()).unwrap(), a.public);
        let again = KeyPair::from_secret(decode(&a.secret_z85()).unwrap()).unwrap();
        assert_eq!(again.public, a.public);
    }

    #[test]
    fn decode_refuses_what_is_not_a_key() {
        assert!(decode("short").is_err());
        assert!(decode(&"~".repeat(40)).is_err(), "~ is not a Z85 character");
        assert!(decode(&"0".repeat(45)).is_err());
        assert!(decode(&"#".repeat(40)).is_err(), "#####  is past 2^32");
        // ZeroMQ RFC 32's test vector: these 8 bytes are "HelloWorld".
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&[0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
        assert_eq!(&encode(&key)[..10], "HelloWorld");
        assert_eq!(decode(&encode(&key)).unwrap(), key);
    }
}
