//! The server's CurveZMQ key pairs, and the client public key of each API key (PROTOCOL.md, "Transport
//! security").

use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use super::{
    AuditEntry, Store, StoreError,
    sealing::{self, stored_secret},
    secrets::StoredSecret,
};
use crate::{
    curve::{self, CurveError, KeyPair},
    sealed::{MasterKey, SecretSlot},
};

/// The server public keys a client may need to pin: the one `serve` presents, and the next one if staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeys {
    /// The key `serve` presents (Z85).
    pub current: String,
    /// The key `server-key rotate` will make current, if one was staged (Z85).
    pub staged: Option<String>,
}

/// The API key a client public key belongs to, as the handshake check finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurveClient {
    /// The key id.
    pub id: String,
    /// True when the key is neither revoked nor expired.
    pub active: bool,
}

impl Store {
    /// The key pair `serve` presents, made (and audited) on first use. In a sealed store its secret half is
    /// opened (or, made now, sealed) with the master key given to [`Store::use_master_key`].
    pub fn server_key_pair(&mut self, now_us: i64) -> Result<KeyPair, StoreError> {
        let master = self.master.as_ref();
        if let Some(pair) = read_pair(&self.conn, "current", master)? {
            return Ok(pair);
        }
        let tx = self.conn.transaction()?;
        // Another process may have made it since the read above; the transaction makes the check and the
        // insert one step.
        let pair = match read_pair(&tx, "current", master)? {
            Some(pair) => pair,
            None => insert_pair(&tx, "current", "server_key_create", now_us, master)?,
        };
        tx.commit()?;
        Ok(pair)
    }

    /// The key pair `serve` would present, if one was made: nothing is written. In a sealed store its secret
    /// half is opened with the master key, so a wrong key is found here too.
    pub fn existing_server_key_pair(&mut self) -> Result<Option<KeyPair>, StoreError> {
        read_pair(&self.conn, "current", self.master.as_ref())
    }

    /// The current and staged public keys, making the current one if there is none yet. Reads no secret, so
    /// it needs no master key unless it makes the first key pair of a sealed store.
    pub fn server_keys(&mut self, now_us: i64) -> Result<ServerKeys, StoreError> {
        let current = match read_public(&self.conn, "current")? {
            Some(public) => public,
            None => self.server_key_pair(now_us)?.public_z85(),
        };
        let staged = read_public(&self.conn, "staged")?;
        Ok(ServerKeys { current, staged })
    }

    /// Makes the next key pair without using it yet (or keeps the one already staged), so that clients can
    /// pin it before a rotation; returns its public key.
    pub fn stage_server_key(&mut self, now_us: i64) -> Result<String, StoreError> {
        self.server_keys(now_us)?;
        let master = self.master.as_ref();
        let tx = self.conn.transaction()?;
        let public = match read_public(&tx, "staged")? {
            Some(public) => public,
            None => insert_pair(&tx, "staged", "server_key_stage", now_us, master)?.public_z85(),
        };
        tx.commit()?;
        Ok(public)
    }

    /// Retires the current key pair and makes the staged one (or a new one) current; returns the new public
    /// key. Running servers keep presenting the key they started with until restarted.
    pub fn rotate_server_key(&mut self, now_us: i64) -> Result<String, StoreError> {
        let master = self.master.as_ref();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE server_keys SET state = 'retired', retired_us = ?1 WHERE state = 'current'",
            [now_us],
        )?;
        let promoted = tx.execute(
            "UPDATE server_keys SET state = 'current' WHERE state = 'staged'",
            [],
        )?;
        let promoted = match promoted {
            1 => read_public(&tx, "current")?,
            _ => None,
        };
        let public = match promoted {
            Some(public) => public,
            None => insert_pair(&tx, "current", "server_key_create", now_us, master)?.public_z85(),
        };
        audit(&tx, "server_key_rotate", &public, now_us)?;
        tx.commit()?;
        Ok(public)
    }

    /// The id of the active (not revoked, not expired) API key whose client public key is `public`, as the
    /// handshake check asks.
    pub fn active_key_by_curve_public(
        &self,
        public: &[u8; 32],
        now_us: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .curve_client(public, now_us)?
            .filter(|client| client.active)
            .map(|client| client.id))
    }

    /// The API key whose client public key is `public`, active or not (at `now_us`), so that refused handshakes
    /// can name a revoked or expired key: one lookup in the unique index.
    pub fn curve_client(
        &self,
        public: &[u8; 32],
        now_us: i64,
    ) -> Result<Option<CurveClient>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, revoked_us IS NULL AND (expires_us IS NULL OR expires_us > ?2)
                 FROM keys WHERE curve_public = ?1",
            )?
            .query_row(params![curve::encode(public), now_us], |row| {
                Ok(CurveClient {
                    id: row.get(0)?,
                    active: row.get(1)?,
                })
            })
            .optional()?)
    }
}

/// The client public key (Z85) of key `id` with `secret`, as stored in `keys.curve_public`.
pub(super) fn client_public(id: &str, secret: &str) -> Result<String, StoreError> {
    Ok(KeyPair::for_client(id, secret.as_bytes())
        .map_err(curve_unavailable)?
        .public_z85())
}

/// Migration 8's hook: fills `keys.curve_public` for the keys that existed before it.
pub(super) fn backfill_client_publics(conn: &Connection) -> Result<(), StoreError> {
    let keys: Vec<(String, Zeroizing<String>)> = conn
        .prepare("SELECT id, secret FROM keys WHERE curve_public IS NULL")?
        .query_map([], |row| Ok((row.get(0)?, Zeroizing::new(row.get(1)?))))?
        .collect::<Result<_, _>>()?;
    for (id, secret) in keys {
        conn.execute(
            "UPDATE keys SET curve_public = ?1 WHERE id = ?2",
            params![client_public(&id, &secret)?, id],
        )?;
    }
    Ok(())
}

fn curve_unavailable(error: CurveError) -> StoreError {
    StoreError::from(error)
}

/// The public key (Z85) of the key pair in `state`, if there is one: no secret is read.
fn read_public(conn: &Connection, state: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT public_key FROM server_keys WHERE state = ?1")?
        .query_row([state], |row| row.get(0))
        .optional()?)
}

/// The key pair in `state`, its secret half opened with `master` in a sealed store.
fn read_pair(
    conn: &Connection,
    state: &str,
    master: Option<&MasterKey>,
) -> Result<Option<KeyPair>, StoreError> {
    let stored: Option<(String, StoredSecret)> = conn
        .prepare_cached(
            "SELECT public_key, secret_key, secret_sealed FROM server_keys WHERE state = ?1",
        )?
        .query_row([state], |row| Ok((row.get(0)?, stored_secret(row, 1)?)))
        .optional()?;
    let Some((public, stored)) = stored else {
        return Ok(None);
    };
    let secret = sealing::reveal(stored, conn, SecretSlot::ServerKey(&public), master)?;
    let pair = KeyPair::from_secret(curve::decode(&secret)?).map_err(curve_unavailable)?;
    if pair.public_z85() != public {
        // Clients pin the public key (and a sealed secret is bound to it): a secret half that does not match it
        // was not stored by zavro, and would make the server present a key nobody pins.
        return Err(StoreError::ServerKeyMismatch(public));
    }
    Ok(Some(pair))
}

fn insert_pair(
    conn: &Connection,
    state: &str,
    action: &str,
    now_us: i64,
    master: Option<&MasterKey>,
) -> Result<KeyPair, StoreError> {
    let pair = KeyPair::generate().map_err(curve_unavailable)?;
    let public = pair.public_z85();
    let secret = pair.secret_z85();
    let (clear, sealed) = sealing::to_store(conn, SecretSlot::ServerKey(&public), &secret, master)?;
    conn.execute(
        "INSERT INTO server_keys (public_key, secret_key, secret_sealed, state, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![public, clear, sealed, state, now_us],
    )?;
    audit(conn, action, &public, now_us)?;
    Ok(pair)
}

/// An audit row for a server key action; the detail is the public key, which is no secret.
fn audit(conn: &Connection, action: &str, public: &str, now_us: i64) -> Result<(), StoreError> {
    AuditEntry {
        detail: Some(public),
        ..AuditEntry::admin(action, None, now_us)
    }
    .insert(conn, None, None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_key_is_made_once_and_kept() {
        let mut store = Store::open_in_memory().unwrap();
        let first = store.server_key_pair(1).unwrap();
        let again = store.server_key_pair(2).unwrap();
        assert_eq!(first.public, again.public);
        assert_eq!(first.secret(), again.secret());
        assert_eq!(
            store.server_keys(3).unwrap(),
            ServerKeys {
                current: first.public_z85(),
                staged: None
            }
        );
    }

    #[test]
    fn a_secret_half_that_does_not_give_its_public_key_is_refused() {
        let mut store = Store::open_in_memory().unwrap();
        let public = store.server_key_pair(1).unwrap().public_z85();
        let other = KeyPair::generate().unwrap();
        store
            .conn
            .execute(
                "UPDATE server_keys SET secret_key = ?1 WHERE state = 'current'",
                [other.secret_z85().as_str()],
            )
            .unwrap();
        let err = store.server_key_pair(2).unwrap_err();
        assert!(
            matches!(&err, StoreError::ServerKeyMismatch(p) if *p == public),
            "{err}"
        );
        assert_eq!(
            store.server_keys(3).unwrap().current,
            public,
            "showing the public key reads no secret"
        );
    }

    #[test]
    fn staging_then_rotating_makes_the_staged_key_current() {
        let mut store = Store::open_in_memory().unwrap();
        let old = store.server_key_pair(1).unwrap().public_z85();
        let staged = store.stage_server_key(2).unwrap();
        assert_ne!(staged, old);
        assert_eq!(
            store.stage_server_key(3).unwrap(),
            staged,
            "staging twice keeps the first"
        );
        assert_eq!(
            store.server_keys(4).unwrap(),
            ServerKeys {
                current: old.clone(),
                staged: Some(staged.clone())
            }
        );
        assert_eq!(store.rotate_server_key(5).unwrap(), staged);
        assert_eq!(store.server_key_pair(6).unwrap().public_z85(), staged);
        let fresh = store.rotate_server_key(7).unwrap();
        assert!(
            fresh != staged && fresh != old,
            "rotating without a staged key makes a new one"
        );
        let retired: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM server_keys WHERE state = 'retired'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(retired, 2);
    }

    #[test]
    fn only_active_keys_are_found_by_their_client_public_key() {
        let mut store = Store::open_in_memory().unwrap();
        store.add_key("ZKLIVE", "secret-live", None, 1).unwrap();
        store
            .add_key_expiring("ZKEXPIRES", "secret-exp", None, Some(100), 1)
            .unwrap();
        store.add_key("ZKREVOKED", "secret-rev", None, 1).unwrap();
        store.revoke_key("ZKREVOKED", 2).unwrap();
        let public =
            |id: &str, secret: &str| KeyPair::for_client(id, secret.as_bytes()).unwrap().public;
        let find = |store: &Store, public: [u8; 32], now| {
            store.active_key_by_curve_public(&public, now).unwrap()
        };
        assert_eq!(
            find(&store, public("ZKLIVE", "secret-live"), 50).as_deref(),
            Some("ZKLIVE")
        );
        assert_eq!(
            find(&store, public("ZKEXPIRES", "secret-exp"), 50).as_deref(),
            Some("ZKEXPIRES")
        );
        assert_eq!(
            find(&store, public("ZKEXPIRES", "secret-exp"), 100),
            None,
            "expired"
        );
        assert_eq!(
            find(&store, public("ZKREVOKED", "secret-rev"), 50),
            None,
            "revoked"
        );
        assert_eq!(find(&store, public("ZKLIVE", "wrong"), 50), None);
        assert_eq!(
            store
                .curve_client(&public("ZKREVOKED", "secret-rev"), 50)
                .unwrap(),
            Some(CurveClient {
                id: "ZKREVOKED".into(),
                active: false
            }),
            "a revoked key is still found, as inactive"
        );
        assert_eq!(
            store
                .curve_client(&public("ZKLIVE", "secret-live"), 50)
                .unwrap()
                .map(|c| c.active),
            Some(true)
        );
    }

    #[test]
    fn keys_that_predate_migration_8_get_their_client_public_key() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::MIGRATIONS.to_version(&mut conn, 7).unwrap();
        conn.execute(
            "INSERT INTO keys (id, secret, created_us) VALUES ('ZKOLD', 'old-secret', 1)",
            [],
        )
        .unwrap();
        super::super::MIGRATIONS.to_version(&mut conn, 8).unwrap();
        let stored: String = conn
            .query_row(
                "SELECT curve_public FROM keys WHERE id = 'ZKOLD'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, client_public("ZKOLD", "old-secret").unwrap());
    }
}
