//! What every backend does with secrets at rest, whatever its SQL: a secret as a row stores it (clear text or
//! sealed), revealing it with the master key a process was given, and telling a wrong master key apart.
//!
//! SQLite stores may be unsealed or sealed (`sealing`); PostgreSQL stores are always sealed (`postgres::sealing`).
//! Both go through [`StoredSecret::reveal`], so a row in the wrong form is refused the same way on each.

use zeroize::Zeroizing;

use super::StoreError;
use crate::sealed::{MasterKey, SecretSlot};

/// A secret as a row stores it: in clear text (an unsealed SQLite store) or sealed, of which a row holds one.
pub struct StoredSecret {
    /// The clear-text column, wiped from memory when dropped.
    pub clear: Option<Zeroizing<String>>,
    /// The sealed column: nonce, ciphertext and tag.
    pub sealed: Option<Vec<u8>>,
}

impl StoredSecret {
    /// A secret stored only sealed (every PostgreSQL row).
    pub fn sealed(sealed: Vec<u8>) -> StoredSecret {
        StoredSecret {
            clear: None,
            sealed: Some(sealed),
        }
    }

    /// The secret: the clear text of an unsealed store, or the sealed value opened with `master`. A row in the
    /// other form than the connection expects is refused, never used: a clear-text secret in a sealed store was
    /// put there by someone who bypassed zavro. `locked` is the error for a sealed value and no master key.
    pub fn reveal(
        self,
        row: SecretSlot<'_>,
        master: Option<&MasterKey>,
        locked: impl FnOnce() -> StoreError,
    ) -> Result<Zeroizing<String>, StoreError> {
        match (master, self.clear, self.sealed) {
            (Some(master), None, Some(sealed)) => Ok(master.open_text(row, &sealed)?),
            (None, Some(clear), None) => Ok(clear),
            (Some(_), Some(_), _) => Err(StoreError::ClearTextInSealedStore(row.to_string())),
            (None, _, Some(_)) => Err(locked()),
            (_, None, None) => Err(StoreError::NoSecret(row.to_string())),
        }
    }
}

/// The error for a master key that is not the one the store is sealed under.
pub fn wrong_key(sealed_under: String, given: &MasterKey) -> StoreError {
    StoreError::WrongMasterKey {
        sealed_under,
        given: given.fingerprint(),
        key_file: given.describe_source(),
    }
}

/// Checks a master key given for a sealed store against the fingerprint it records (`None`: none recorded yet,
/// so any key may become its key).
pub fn check_fingerprint(recorded: Option<String>, given: &MasterKey) -> Result<(), StoreError> {
    match recorded {
        Some(fingerprint) if fingerprint != given.fingerprint() => {
            Err(wrong_key(fingerprint, given))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    #[test]
    fn each_form_of_a_row_is_revealed_only_with_what_it_needs() {
        let row = SecretSlot::ApiKey("ZKA");
        let sealed = key(1).seal_text(row, "s3cret").unwrap();
        let locked = || StoreError::NoSecret("locked".into());
        let reveal = |stored: StoredSecret, master: Option<&MasterKey>| {
            stored.reveal(row, master, locked).map(|s| s.to_string())
        };
        assert_eq!(
            reveal(StoredSecret::sealed(sealed.clone()), Some(&key(1))).unwrap(),
            "s3cret"
        );
        assert!(matches!(
            reveal(StoredSecret::sealed(sealed.clone()), None),
            Err(StoreError::NoSecret(what)) if what == "locked"
        ));
        assert!(matches!(
            reveal(StoredSecret::sealed(sealed), Some(&key(2))),
            Err(StoreError::Seal(_))
        ));
        let clear = || StoredSecret {
            clear: Some(Zeroizing::new("plain".into())),
            sealed: None,
        };
        assert_eq!(reveal(clear(), None).unwrap(), "plain");
        assert!(matches!(
            reveal(clear(), Some(&key(1))),
            Err(StoreError::ClearTextInSealedStore(_))
        ));
        let empty = StoredSecret {
            clear: None,
            sealed: None,
        };
        assert!(matches!(reveal(empty, None), Err(StoreError::NoSecret(_))));
    }

    #[test]
    fn a_recorded_fingerprint_admits_its_key_only() {
        check_fingerprint(None, &key(1)).unwrap();
        check_fingerprint(Some(key(1).fingerprint()), &key(1)).unwrap();
        let err = check_fingerprint(Some(key(1).fingerprint()), &key(2)).unwrap_err();
        assert!(
            matches!(&err, StoreError::WrongMasterKey { sealed_under, given, .. }
                if *sealed_under == key(1).fingerprint() && *given == key(2).fingerprint()),
            "{err}"
        );
    }
}
