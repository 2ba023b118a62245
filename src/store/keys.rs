//! API keys: add, list, revoke, and look up a secret for verification.

use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use super::{
    AuditEntry, Status, Store, StoreError,
    sealing::{self, stored_secret},
};
use crate::sealed::{MasterKey, SecretSlot};

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
    /// When the key stops working, if it was given an expiry.
    pub expires_us: Option<i64>,
    /// When a request signed with the key was last accepted (from the audit trail).
    pub last_used_us: Option<i64>,
    /// Requests accepted under the key, retries of stored requests not counted (from the audit trail).
    pub requests: u64,
    /// Records in those requests.
    pub records: u64,
}

/// What the server needs to verify a request: the secret and whether the key still counts.
pub struct StoredKey {
    /// The shared secret, wiped from memory when dropped.
    pub secret: Zeroizing<String>,
    /// True once the key has been revoked.
    pub revoked: bool,
    /// When the key stops working (µs since the epoch), if it expires.
    pub expires_us: Option<i64>,
}

impl Store {
    /// Stores a new key that never expires and records the action in the audit trail, in one transaction.
    pub fn add_key(
        &mut self,
        id: &str,
        secret: &str,
        label: Option<&str>,
        now_us: i64,
    ) -> Result<(), StoreError> {
        self.add_key_expiring(id, secret, label, None, now_us)
    }

    /// Stores a new key that stops working at `expires_us` (if given) and audits it, in one transaction. In a
    /// sealed store the secret is sealed under the master key given to [`Store::use_master_key`] (none given:
    /// refused, never written in clear text).
    pub fn add_key_expiring(
        &mut self,
        id: &str,
        secret: &str,
        label: Option<&str>,
        expires_us: Option<i64>,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let curve_public = super::server_keys::client_public(id, secret)?;
        let tx = self.conn.transaction()?;
        let (clear, sealed) =
            sealing::to_store(&tx, SecretSlot::ApiKey(id), secret, self.master.as_ref())?;
        tx.execute(
            "INSERT INTO keys (id, secret, secret_sealed, label, created_us, expires_us, curve_public)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, clear, sealed, label, now_us, expires_us, curve_public],
        )?;
        AuditEntry::admin("key_add", Some(id), now_us).insert(&tx, None, None)?;
        tx.commit()?;
        Ok(())
    }

    /// Every key with its use so far, oldest first.
    ///
    /// The counts are computed here from the `audit_key_usage` index (migration 5), not kept by the server: a
    /// counter would cost every request one more write. Rows removed by `audit prune` no longer count.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT k.id, k.label, k.created_us, k.revoked_us, k.expires_us,
                    u.last_used, coalesce(u.requests, 0), coalesce(u.records, 0)
             FROM keys k LEFT JOIN (
                 SELECT key_id, max(time_us) AS last_used, count(*) AS requests, sum(records) AS records
                 FROM audit INDEXED BY audit_key_usage
                 WHERE action = 'send' AND status = 'accepted' AND reason IS NULL
                 GROUP BY key_id
             ) u ON u.key_id = k.id
             ORDER BY k.created_us, k.id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(KeyRecord {
                id: row.get(0)?,
                label: row.get(1)?,
                created_us: row.get(2)?,
                revoked_us: row.get(3)?,
                expires_us: row.get(4)?,
                last_used_us: row.get(5)?,
                requests: row.get::<_, i64>(6)?.try_into().unwrap_or(0),
                records: row.get::<_, i64>(7)?.try_into().unwrap_or(0),
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
                AuditEntry::admin("key_revoke", Some(id), now_us).insert(&tx, None, None)?;
                now_us
            }
        };
        tx.commit()?;
        Ok(revoked_us)
    }
}

/// The secret and state of a key, or `None` when no such key exists; the server reads it inside its batch. In a
/// sealed store, `master` opens the secret; one that does not open (altered, or moved from another key's row)
/// is an error, never a key.
pub(super) fn find_key(
    conn: &Connection,
    id: &str,
    master: Option<&MasterKey>,
) -> Result<Option<StoredKey>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT secret, secret_sealed, revoked_us IS NOT NULL, expires_us FROM keys WHERE id = ?1",
    )?;
    let found = stmt
        .query_row([id], |row| {
            Ok((
                stored_secret(row, 0)?,
                row.get::<_, bool>(2)?,
                row.get::<_, Option<i64>>(3)?,
            ))
        })
        .optional()?;
    let Some((stored, revoked, expires_us)) = found else {
        return Ok(None);
    };
    Ok(Some(StoredKey {
        secret: sealing::reveal(stored, conn, SecretSlot::ApiKey(id), master)?,
        revoked,
        expires_us,
    }))
}

impl AuditEntry<'_> {
    /// An audit entry for a key-management action taken on this machine, on API key `key_id` when it names one.
    pub(super) fn admin<'a>(
        action: &'a str,
        key_id: Option<&'a str>,
        now_us: i64,
    ) -> AuditEntry<'a> {
        AuditEntry {
            time_us: now_us,
            action,
            status: Status::Accepted,
            reason: None,
            detail: None,
            key_id,
            peer: Some("local"),
            records: 0,
            size: 0,
            schema: None,
            requests: 1,
            transport: None,
            server: None,
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

        let found = find_key(&store.conn, "ZK1", None).unwrap().unwrap();
        assert_eq!(found.secret.as_str(), "s3cret-s3cret-s3cret");
        assert!(!found.revoked);

        assert_eq!(store.revoke_key("ZK1", 30).unwrap(), 30);
        assert_eq!(
            store.revoke_key("ZK1", 40).unwrap(),
            30,
            "revoking twice keeps the first time"
        );
        assert!(find_key(&store.conn, "ZK1", None).unwrap().unwrap().revoked);
        assert!(find_key(&store.conn, "nope", None).unwrap().is_none());
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

    #[test]
    fn list_counts_accepted_requests_and_records_but_not_retries_or_rejections() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .add_key_expiring("ZK1", "s3cret-s3cret-s3cret", None, Some(99), 1)
            .unwrap();
        store
            .add_key("ZK2", "another-secret-value", None, 2)
            .unwrap();
        let send = |status, reason, records, time_us| AuditEntry {
            status,
            reason,
            records,
            ..AuditEntry::test_send(time_us)
        };
        let nonce = |nonce| crate::store::Nonce {
            nonce,
            timestamp: 1,
            signature: "sig",
            request_id: None,
        };
        store
            .commit_accepted(
                &send(Status::Accepted, None, 3, 10),
                &nonce("n1"),
                "[1,2,3]",
            )
            .unwrap();
        store
            .commit_accepted(&send(Status::Accepted, None, 2, 20), &nonce("n2"), "[1,2]")
            .unwrap();
        store
            .record(&send(Status::Accepted, Some("duplicate"), 0, 30))
            .unwrap();
        store
            .record(&send(Status::Rejected, Some("bad_signature"), 0, 40))
            .unwrap();

        let keys = store.list_keys().unwrap();
        assert_eq!(
            (
                keys[0].requests,
                keys[0].records,
                keys[0].last_used_us,
                keys[0].expires_us
            ),
            (2, 5, Some(20), Some(99))
        );
        assert_eq!(
            (keys[1].requests, keys[1].records, keys[1].last_used_us),
            (0, 0, None)
        );
        assert_eq!(
            find_key(&store.conn, "ZK1", None)
                .unwrap()
                .unwrap()
                .expires_us,
            Some(99)
        );
    }
}
