//! API keys: add, list, revoke, and look up a secret for verification.

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::{AuditEntry, Status, Store, StoreError};

/// What `keys list` shows of a key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id.
    pub id: String,
    /// A free-text label given at creation.
    pub label: Option<String>,
    /// When the key was created (µs since the epoch).
    pub created_us: i64,
    /// When the key was revoked, if it was.
    pub revoked_us: Option<i64>,
    /// When a request signed with the key was last accepted (from the audit trail).
    pub last_used_us: Option<i64>,
}

/// What the server needs to verify a request: the secret and whether the key still counts.
pub struct StoredKey {
    /// The shared secret, wiped from memory when dropped.
    pub secret: Zeroizing<String>,
    /// True once the key has been revoked.
    pub revoked: bool,
}

impl Store {
    /// Stores a new key and records the action in the audit trail, in one transaction.
    pub fn add_key(
        &mut self,
        id: &str,
        secret: &str,
        label: Option<&str>,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO keys (id, secret, label, created_us) VALUES (?1, ?2, ?3, ?4)",
            params![id, secret, label, now_us],
        )?;
        AuditEntry::admin("key_add", id, now_us).insert(&tx, None)?;
        tx.commit()?;
        Ok(())
    }

    /// Every key, oldest first.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, label, created_us, revoked_us,
                    (SELECT time_us FROM audit
                     WHERE key_id = keys.id AND action = 'send' AND status = 'accepted'
                     ORDER BY id DESC LIMIT 1)
             FROM keys ORDER BY created_us, id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(KeyRecord {
                id: row.get(0)?,
                label: row.get(1)?,
                created_us: row.get(2)?,
                revoked_us: row.get(3)?,
                last_used_us: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a key; returns when it was revoked (earlier, if it already was).
    pub fn revoke_key(&mut self, id: &str, now_us: i64) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let revoked: Option<Option<i64>> = tx
            .query_row("SELECT revoked_us FROM keys WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?;
        let revoked_us = match revoked {
            None => return Err(StoreError::UnknownKey(id.to_owned())),
            Some(Some(earlier)) => earlier,
            Some(None) => {
                tx.execute(
                    "UPDATE keys SET revoked_us = ?1 WHERE id = ?2",
                    params![now_us, id],
                )?;
                AuditEntry::admin("key_revoke", id, now_us).insert(&tx, None)?;
                now_us
            }
        };
        tx.commit()?;
        Ok(revoked_us)
    }

    /// The secret and state of a key, or `None` when no such key exists.
    pub fn find_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT secret, revoked_us IS NOT NULL FROM keys WHERE id = ?1")?;
        Ok(stmt
            .query_row([id], |row| {
                Ok(StoredKey {
                    secret: Zeroizing::new(row.get(0)?),
                    revoked: row.get(1)?,
                })
            })
            .optional()?)
    }
}

impl AuditEntry<'_> {
    /// An audit entry for a key-management action taken on this machine.
    fn admin<'a>(action: &'a str, key_id: &'a str, now_us: i64) -> AuditEntry<'a> {
        AuditEntry {
            time_us: now_us,
            action,
            status: Status::Accepted,
            reason: None,
            detail: None,
            key_id: Some(key_id),
            peer: Some("local"),
            records: 0,
            size: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditFilter;

    #[test]
    fn add_list_revoke_and_find() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .add_key("ZK1", "s3cret-s3cret-s3cret", Some("laptop"), 10)
            .unwrap();
        store
            .add_key("ZK2", "another-secret-value", None, 20)
            .unwrap();

        let keys = store.list_keys().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].label.as_deref(), Some("laptop"));

        let found = store.find_key("ZK1").unwrap().unwrap();
        assert_eq!(found.secret.as_str(), "s3cret-s3cret-s3cret");
        assert!(!found.revoked);

        assert_eq!(store.revoke_key("ZK1", 30).unwrap(), 30);
        assert_eq!(
            store.revoke_key("ZK1", 40).unwrap(),
            30,
            "revoking twice keeps the first time"
        );
        assert!(store.find_key("ZK1").unwrap().unwrap().revoked);
        assert!(store.find_key("nope").unwrap().is_none());
        assert!(matches!(
            store.revoke_key("nope", 50),
            Err(StoreError::UnknownKey(_))
        ));

        let actions: Vec<_> = store
            .query_audit(&AuditFilter::default())
            .unwrap()
            .into_iter()
            .map(|row| row.action)
            .collect();
        assert_eq!(actions, ["key_add", "key_add", "key_revoke"]);
    }
}
