//! Making credentials: key ids, secrets and nonces, all from the operating system's random number generator.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Shortest secret accepted on import: shorter ones are guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// The OS random number generator failed (it practically never does).
#[derive(Debug, thiserror::Error)]
#[error("no randomness from the operating system: {0}")]
pub struct RandomError(getrandom::Error);

fn random<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(RandomError)?;
    Ok(bytes)
}

/// A new key id: `ZK` and 16 uppercase hex digits (64 random bits), e.g. `ZK3F9A0C17B2E45D88`.
pub fn new_key_id() -> Result<String, RandomError> {
    Ok(format!("ZK{}", hex::encode_upper(random::<8>()?)))
}

/// A new secret: 240 random bits as 40 characters of unpadded URL-safe base64.
pub fn new_secret() -> Result<Zeroizing<String>, RandomError> {
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(random::<30>()?)))
}

/// A new nonce: 128 random bits as 32 lowercase hex digits.
pub fn new_nonce() -> Result<String, RandomError> {
    Ok(hex::encode(random::<16>()?))
}

/// Checks a secret the user imports: long enough, and without surrounding white space that copy-paste adds.
pub fn check_imported_secret(secret: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "the imported secret is shorter than {MIN_SECRET_LEN} characters"
        ));
    }
    if secret.trim() != secret {
        return Err("the imported secret starts or ends with white space".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol;

    #[test]
    fn generated_credentials_have_their_documented_shapes() {
        let key = new_key_id().unwrap();
        assert!(
            key.starts_with("ZK") && key.len() == 18 && protocol::is_valid_key_id(&key),
            "{key}"
        );
        assert_eq!(new_secret().unwrap().len(), 40);
        let nonce = new_nonce().unwrap();
        assert_eq!(nonce.len(), 32);
        let hex_digits = |text: &str, digits: &str| text.chars().all(|c| digits.contains(c));
        assert!(hex_digits(&key[2..], "0123456789ABCDEF"), "{key}");
        assert!(hex_digits(&nonce, "0123456789abcdef"), "{nonce}");
        assert_ne!(nonce, new_nonce().unwrap());
    }

    #[test]
    fn short_or_padded_imports_are_refused() {
        assert!(check_imported_secret("short").is_err());
        assert!(check_imported_secret(" 0123456789abcdefgh").is_err());
        assert!(check_imported_secret("0123456789abcdefgh").is_ok());
    }
}
