//! The seam between the key commands (`keys add|list|revoke`, `server-key [rotate]`) and a store: what they
//! need of API keys and of the server's CURVE key pairs, in domain types, as a trait each backend implements.
//!
//! Object-safe, so a command takes `&mut dyn KeyStore` and runs unchanged on whichever backend was opened.
//! Every method takes `&mut self`: a backend's connection may need it even to read (a PostgreSQL client does).
//! Every change a method makes is audited by the backend in the same transaction (rows with `peer = local`).

use super::{KeyRecord, ServerKeys, Store, StoreError};

/// What `keys` and `server-key` need of a store.
pub trait KeyStore {
    /// Stores a new key (stopping at `expires_us` if given) and its `key_add` audit row, in one transaction.
    /// The id must be new; the secret is never logged or audited.
    fn add_key(
        &mut self,
        id: &str,
        secret: &str,
        label: Option<&str>,
        expires_us: Option<i64>,
        now_us: i64,
    ) -> Result<(), StoreError>;

    /// Every key with its use so far (from the audit trail), oldest first (by creation time, then id).
    fn list_keys(&mut self) -> Result<Vec<KeyRecord>, StoreError>;

    /// Revokes a key (auditing `key_revoke` when it was not revoked yet); returns when it was revoked, earlier
    /// if it already was. [`StoreError::UnknownKey`] when no key has this id.
    fn revoke_key(&mut self, id: &str, now_us: i64) -> Result<i64, StoreError>;

    /// The current and staged server public keys, making (and auditing) the current pair if there is none yet.
    fn server_keys(&mut self, now_us: i64) -> Result<ServerKeys, StoreError>;

    /// Makes the next server key pair without using it yet (or keeps the one already staged); returns its
    /// public key.
    fn stage_server_key(&mut self, now_us: i64) -> Result<String, StoreError>;

    /// Retires the current server key pair and makes the staged one (or a new one) current; returns the new
    /// public key.
    fn rotate_server_key(&mut self, now_us: i64) -> Result<String, StoreError>;
}

impl KeyStore for Store {
    fn add_key(
        &mut self,
        id: &str,
        secret: &str,
        label: Option<&str>,
        expires_us: Option<i64>,
        now_us: i64,
    ) -> Result<(), StoreError> {
        Store::add_key_expiring(self, id, secret, label, expires_us, now_us)
    }

    fn list_keys(&mut self) -> Result<Vec<KeyRecord>, StoreError> {
        Store::list_keys(self)
    }

    fn revoke_key(&mut self, id: &str, now_us: i64) -> Result<i64, StoreError> {
        Store::revoke_key(self, id, now_us)
    }

    fn server_keys(&mut self, now_us: i64) -> Result<ServerKeys, StoreError> {
        Store::server_keys(self, now_us)
    }

    fn stage_server_key(&mut self, now_us: i64) -> Result<String, StoreError> {
        Store::stage_server_key(self, now_us)
    }

    fn rotate_server_key(&mut self, now_us: i64) -> Result<String, StoreError> {
        Store::rotate_server_key(self, now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_server_keys_work_through_the_seam() {
        let mut sqlite = Store::open_in_memory().unwrap();
        let store: &mut dyn KeyStore = &mut sqlite;
        store
            .add_key("ZK1", "secret-secret-secret", Some("laptop"), Some(99), 1)
            .unwrap();
        let keys = store.list_keys().unwrap();
        assert_eq!(
            keys.iter()
                .map(|k| (k.id.as_str(), k.label.as_deref(), k.expires_us))
                .collect::<Vec<_>>(),
            [("ZK1", Some("laptop"), Some(99))]
        );
        assert_eq!(store.revoke_key("ZK1", 5).unwrap(), 5);
        assert_eq!(store.revoke_key("ZK1", 6).unwrap(), 5, "revoked once");
        assert!(matches!(
            store.revoke_key("nope", 7),
            Err(StoreError::UnknownKey(id)) if id == "nope"
        ));

        let first = store.server_keys(8).unwrap();
        assert_eq!(first.staged, None);
        let staged = store.stage_server_key(9).unwrap();
        assert_eq!(
            store.server_keys(10).unwrap().staged.as_deref(),
            Some(&*staged)
        );
        assert_eq!(store.rotate_server_key(11).unwrap(), staged);
        assert_eq!(store.server_keys(12).unwrap().current, staged);

        let actions: Vec<String> = sqlite
            .query_audit(&Default::default())
            .unwrap()
            .into_iter()
            .map(|row| row.action)
            .collect();
        assert_eq!(
            actions,
            [
                "key_add",
                "key_revoke",
                "server_key_create",
                "server_key_stage",
                "server_key_rotate"
            ]
        );
    }
}
