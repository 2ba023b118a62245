//! API keys and the server's CURVE key pairs on PostgreSQL: the [`KeyStore`] the `keys` and `server-key` commands
//! use, the key lookup of a server's group, and the client key lookup of its handshake check. Same behaviour as
//! SQLite's (`store::keys`, `store::server_keys`), with every secret sealed and every audit row appended under the
//! chain's lock.

use postgres::{Client, GenericClient, Transaction};

use super::{PgStore, chain::ChainWriter, sealing, statements::Statements};
use crate::{
    curve::{self, KeyPair},
    sealed::{MasterKey, SecretSlot},
    store::{
        AuditEntry, CurveClient, KeyRecord, KeyStore, ServerKeys, StoreError, StoredKey,
        server_keys::client_public,
    },
};

/// What `keys list` shows: every key with its use, counted from the audit trail's `audit_key_usage` index.
const LIST: &str = "SELECT k.id, k.label, k.created_us, k.revoked_us, k.expires_us,
            u.last_used, coalesce(u.requests, 0), coalesce(u.records, 0)::bigint
     FROM keys k LEFT JOIN (
         SELECT key_id, max(time_us) AS last_used, count(*) AS requests, sum(records) AS records
         FROM audit
         WHERE action = 'send' AND status = 'accepted' AND reason IS NULL
         GROUP BY key_id
     ) u ON u.key_id = k.id
     ORDER BY k.created_us, k.id";

/// A key's sealed secret and state, for a server's group.
const FIND_KEY: &str =
    "SELECT secret_sealed, revoked_us IS NOT NULL, expires_us FROM keys WHERE id = $1";

/// The key whose client public key a CURVE handshake presents, and whether it is active at `$2`.
const CURVE_CLIENT: &str =
    "SELECT id, revoked_us IS NULL AND (expires_us IS NULL OR expires_us > $2)
     FROM keys WHERE curve_public = $1";

/// The public key of the server key pair in a state.
const READ_PUBLIC: &str = "SELECT public_key FROM server_keys WHERE state = $1";

/// The server key pair in a state, its secret half sealed.
const READ_PAIR: &str = "SELECT public_key, secret_sealed FROM server_keys WHERE state = $1";

impl KeyStore for PgStore {
    fn add_key(
        &mut self,
        id: &str,
        secret: &str,
        label: Option<&str>,
        expires_us: Option<i64>,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let curve_public = client_public(id, secret)?;
        self.require_master_key()?;
        let (mut tx, mut chain) = lock_chain(&mut self.client, &mut self.statements)?;
        let master = self
            .master
            .as_ref()
            .ok_or(StoreError::NoSecret(id.into()))?;
        let sealed = sealing::seal(
            &mut tx,
            &mut self.statements,
            master,
            SecretSlot::ApiKey(id),
            secret,
            now_us,
        )?;
        tx.execute(
            "INSERT INTO keys (id, secret_sealed, label, created_us, expires_us, curve_public)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id, &sealed, &label, &now_us, &expires_us, &curve_public],
        )?;
        chain.append(&AuditEntry::admin("key_add", Some(id), now_us), None, None);
        chain.write(&mut tx, &mut self.statements)?;
        tx.commit()?;
        Ok(())
    }

    fn list_keys(&mut self) -> Result<Vec<KeyRecord>, StoreError> {
        let list = self.statements.get(&mut self.client, LIST)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        self.client
            .query(&list, &[])?
            .iter()
            .map(|row| {
                Ok(KeyRecord {
                    id: row.try_get(0)?,
                    label: row.try_get(1)?,
                    created_us: row.try_get(2)?,
                    revoked_us: row.try_get(3)?,
                    expires_us: row.try_get(4)?,
                    last_used_us: row.try_get(5)?,
                    requests: count(row.try_get(6)?),
                    records: count(row.try_get(7)?),
                })
            })
            .collect()
    }

    fn revoke_key(&mut self, id: &str, now_us: i64) -> Result<i64, StoreError> {
        let (mut tx, mut chain) = lock_chain(&mut self.client, &mut self.statements)?;
        let revoked: Option<Option<i64>> = tx
            .query_opt("SELECT revoked_us FROM keys WHERE id = $1", &[&id])?
            .map(|row| row.try_get(0))
            .transpose()?;
        let revoked_us = match revoked {
            None => return Err(StoreError::UnknownKey(id.to_owned())),
            Some(Some(earlier)) => earlier,
            Some(None) => {
                tx.execute(
                    "UPDATE keys SET revoked_us = $1 WHERE id = $2",
                    &[&now_us, &id],
                )?;
                chain.append(
                    &AuditEntry::admin("key_revoke", Some(id), now_us),
                    None,
                    None,
                );
                chain.write(&mut tx, &mut self.statements)?;
                now_us
            }
        };
        tx.commit()?;
        Ok(revoked_us)
    }

    fn server_keys(&mut self, now_us: i64) -> Result<ServerKeys, StoreError> {
        let current = match read_public(&mut self.client, &mut self.statements, "current")? {
            Some(public) => public,
            None => self.server_key_pair(now_us)?.public_z85(),
        };
        let staged = read_public(&mut self.client, &mut self.statements, "staged")?;
        Ok(ServerKeys { current, staged })
    }

    fn stage_server_key(&mut self, now_us: i64) -> Result<String, StoreError> {
        self.server_keys(now_us)?;
        if let Some(public) = read_public(&mut self.client, &mut self.statements, "staged")? {
            return Ok(public);
        }
        self.require_master_key()?;
        let (mut tx, mut chain) = lock_chain(&mut self.client, &mut self.statements)?;
        // Another process may have staged one since the read above; under the lock, check and insert are one.
        let public = match read_public(&mut tx, &mut self.statements, "staged")? {
            Some(public) => public,
            None => {
                let master = self
                    .master
                    .as_ref()
                    .ok_or(StoreError::NoSecret("staged".into()))?;
                let pair = insert_pair(
                    &mut tx,
                    &mut self.statements,
                    &mut chain,
                    master,
                    ("staged", "server_key_stage"),
                    now_us,
                )?;
                pair.public_z85()
            }
        };
        chain.write(&mut tx, &mut self.statements)?;
        tx.commit()?;
        Ok(public)
    }

    /// Promoting a staged key pair reads no secret; making a new one seals its secret, so needs the master key.
    fn rotate_server_key(&mut self, now_us: i64) -> Result<String, StoreError> {
        let (mut tx, mut chain) = lock_chain(&mut self.client, &mut self.statements)?;
        tx.execute(
            "UPDATE server_keys SET state = 'retired', retired_us = $1 WHERE state = 'current'",
            &[&now_us],
        )?;
        let promoted = tx.execute(
            "UPDATE server_keys SET state = 'current' WHERE state = 'staged'",
            &[],
        )?;
        let promoted = match promoted {
            1 => read_public(&mut tx, &mut self.statements, "current")?,
            _ => None,
        };
        let public = match promoted {
            Some(public) => public,
            None => {
                let Some(master) = self.master.as_ref() else {
                    drop(tx);
                    return Err(self
                        .require_master_key()
                        .err()
                        .unwrap_or(StoreError::NoSecret("the master key".into())));
                };
                let pair = insert_pair(
                    &mut tx,
                    &mut self.statements,
                    &mut chain,
                    master,
                    ("current", "server_key_create"),
                    now_us,
                )?;
                pair.public_z85()
            }
        };
        audit_server_key(&mut chain, "server_key_rotate", &public, now_us);
        chain.write(&mut tx, &mut self.statements)?;
        tx.commit()?;
        Ok(public)
    }
}

impl PgStore {
    /// The key pair `serve` would present, if one was made, its secret half opened with the master key: nothing
    /// is written.
    pub fn existing_server_key_pair(&mut self) -> Result<Option<KeyPair>, StoreError> {
        self.require_master_key()?;
        let url = self.url.to_string();
        read_pair(
            &mut self.client,
            &mut self.statements,
            &url,
            "current",
            self.master.as_ref(),
        )
    }

    /// The key pair `serve` presents, its secret half opened with the master key; made (sealed, audited) on
    /// first use.
    pub fn server_key_pair(&mut self, now_us: i64) -> Result<KeyPair, StoreError> {
        // Its secret half is read or made: either way the master key is needed.
        self.require_master_key()?;
        let url = self.url.to_string();
        if let Some(pair) = read_pair(
            &mut self.client,
            &mut self.statements,
            &url,
            "current",
            self.master.as_ref(),
        )? {
            return Ok(pair);
        }
        let (mut tx, mut chain) = lock_chain(&mut self.client, &mut self.statements)?;
        let master = self.master.as_ref();
        // Another process may have made it since the read above; under the lock, check and insert are one.
        let pair = match read_pair(&mut tx, &mut self.statements, &url, "current", master)? {
            Some(pair) => pair,
            None => insert_pair(
                &mut tx,
                &mut self.statements,
                &mut chain,
                master.ok_or(StoreError::NoSecret("the server key".into()))?,
                ("current", "server_key_create"),
                now_us,
            )?,
        };
        chain.write(&mut tx, &mut self.statements)?;
        tx.commit()?;
        Ok(pair)
    }

    /// The API key whose client public key is `public`, active or not at `now_us`, as the handshake check asks:
    /// one lookup in the unique index.
    pub fn curve_client(
        &mut self,
        public: &[u8; 32],
        now_us: i64,
    ) -> Result<Option<CurveClient>, StoreError> {
        let find = self.statements.get(&mut self.client, CURVE_CLIENT)?;
        let found = self
            .client
            .query_opt(&find, &[&curve::encode(public), &now_us])?;
        Ok(match found {
            Some(row) => Some(CurveClient {
                id: row.try_get(0)?,
                active: row.try_get(1)?,
            }),
            None => None,
        })
    }
}

/// Begins a transaction holding the audit chain's lock, as every writer of audit rows must first.
fn lock_chain<'c>(
    client: &'c mut Client,
    statements: &mut Statements,
) -> Result<(Transaction<'c>, ChainWriter), StoreError> {
    let mut tx = client.transaction()?;
    let chain = ChainWriter::lock(&mut tx, statements)?;
    Ok((tx, chain))
}

/// The secret and state of key `id`, or `None` when there is none; its secret opened with `master`.
pub(super) fn find_key(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    store_url: &str,
    id: &str,
    master: Option<&MasterKey>,
) -> Result<Option<StoredKey>, StoreError> {
    let find = statements.get(client, FIND_KEY)?;
    let Some(row) = client.query_opt(&find, &[&id])? else {
        return Ok(None);
    };
    Ok(Some(StoredKey {
        secret: sealing::open(store_url, row.try_get(0)?, SecretSlot::ApiKey(id), master)?,
        revoked: row.try_get(1)?,
        expires_us: row.try_get(2)?,
    }))
}

/// The public key (Z85) of the key pair in `state`, if there is one: no secret is read.
fn read_public(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    state: &str,
) -> Result<Option<String>, StoreError> {
    let read = statements.get(client, READ_PUBLIC)?;
    Ok(match client.query_opt(&read, &[&state])? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// The key pair in `state`, its secret half opened with `master`.
fn read_pair(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    store_url: &str,
    state: &str,
    master: Option<&MasterKey>,
) -> Result<Option<KeyPair>, StoreError> {
    let read = statements.get(client, READ_PAIR)?;
    let Some(row) = client.query_opt(&read, &[&state])? else {
        return Ok(None);
    };
    let public: String = row.try_get(0)?;
    let secret = sealing::open(
        store_url,
        row.try_get(1)?,
        SecretSlot::ServerKey(&public),
        master,
    )?;
    let pair = KeyPair::from_secret(curve::decode(&secret)?)?;
    if pair.public_z85() != public {
        // Clients pin the public key, to which the sealed secret is bound: a secret half that does not give it
        // was not stored by zavro.
        return Err(StoreError::ServerKeyMismatch(public));
    }
    Ok(Some(pair))
}

/// Makes a key pair in `state`, its secret sealed under `master`, and appends its audit row (`action`).
fn insert_pair(
    tx: &mut Transaction<'_>,
    statements: &mut Statements,
    chain: &mut ChainWriter,
    master: &MasterKey,
    (state, action): (&str, &str),
    now_us: i64,
) -> Result<KeyPair, StoreError> {
    let pair = KeyPair::generate()?;
    let public = pair.public_z85();
    let sealed = sealing::seal(
        tx,
        statements,
        master,
        SecretSlot::ServerKey(&public),
        &pair.secret_z85(),
        now_us,
    )?;
    tx.execute(
        "INSERT INTO server_keys (public_key, secret_sealed, state, created_us) VALUES ($1, $2, $3, $4)",
        &[&public, &sealed, &state, &now_us],
    )?;
    audit_server_key(chain, action, &public, now_us);
    Ok(pair)
}

/// Appends the audit row of a server key action; the detail is the public key, which is no secret.
fn audit_server_key(chain: &mut ChainWriter, action: &str, public: &str, now_us: i64) {
    chain.append(
        &AuditEntry {
            detail: Some(public),
            ..AuditEntry::admin(action, None, now_us)
        },
        None,
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        Store,
        postgres::tests::{fresh_store, master, verify_chain},
    };

    const SECRET: &str = "secret-of-zk1-0123456789-MARKER";

    #[test]
    fn keys_and_server_keys_work_through_the_seam_and_chain_as_sqlite_does() {
        let Some(mut pg) = fresh_store(Some(master(1))) else {
            return;
        };
        let mut sqlite = Store::open_in_memory().unwrap();
        for store in [&mut pg as &mut dyn KeyStore, &mut sqlite] {
            store
                .add_key("ZK1", SECRET, Some("laptop"), Some(99), 1)
                .unwrap();
            store
                .add_key("ZK2", "another-secret-0123", None, None, 2)
                .unwrap();
            assert_eq!(store.revoke_key("ZK1", 5).unwrap(), 5);
            assert_eq!(store.revoke_key("ZK1", 6).unwrap(), 5, "revoked once");
            assert!(matches!(
                store.revoke_key("nope", 7),
                Err(StoreError::UnknownKey(id)) if id == "nope"
            ));
        }
        // The same actions at the same times make the same rows: the same chain, hash for hash.
        let sqlite_head = sqlite.verify_audit(None).unwrap().unwrap().head;
        let pg_head = verify_chain(&mut pg).unwrap().head;
        assert_eq!(pg_head, sqlite_head);
        assert_eq!(pg_head.as_ref().map(|(id, _)| *id), Some(3));
        assert_eq!(pg.list_keys().unwrap(), sqlite.list_keys().unwrap());

        let first = pg.server_keys(8).unwrap();
        assert_eq!(first.staged, None);
        assert_eq!(pg.server_key_pair(8).unwrap().public_z85(), first.current);
        let staged = pg.stage_server_key(9).unwrap();
        assert_eq!(
            pg.stage_server_key(9).unwrap(),
            staged,
            "staging twice keeps the first"
        );
        assert_eq!(
            pg.server_keys(10).unwrap().staged.as_deref(),
            Some(&*staged)
        );
        assert_eq!(pg.rotate_server_key(11).unwrap(), staged);
        assert_eq!(pg.server_key_pair(12).unwrap().public_z85(), staged);
        let fresh = pg.rotate_server_key(13).unwrap();
        assert!(fresh != staged && fresh != first.current);

        let actions: Vec<String> = pg
            .client()
            .query("SELECT action FROM audit ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(
            actions,
            [
                "key_add",
                "key_add",
                "key_revoke",
                "server_key_create",
                "server_key_stage",
                "server_key_rotate",
                "server_key_create",
                "server_key_rotate"
            ]
        );
        assert_eq!(verify_chain(&mut pg).unwrap().rows, 8);
    }

    #[test]
    fn secrets_are_stored_sealed_only_and_the_master_key_is_checked() {
        let Some(mut store) = fresh_store(Some(master(1))) else {
            return;
        };
        store.add_key("ZK1", SECRET, None, None, 1).unwrap();
        let server_secret = store.server_key_pair(2).unwrap().secret_z85();
        // Nothing the database holds shows either secret.
        let dump: String = store
            .client()
            .query_one(
                "SELECT string_agg(encode(secret_sealed, 'escape'), ' ')
                 FROM (SELECT secret_sealed FROM keys UNION ALL SELECT secret_sealed FROM server_keys) s",
                &[],
            )
            .unwrap()
            .get(0);
        for secret in [SECRET, "MARKER", server_secret.as_str()] {
            assert!(!dump.contains(secret), "{secret} is in the database");
        }
        assert_eq!(store.sealed_under().unwrap(), Some(master(1).fingerprint()));
        let url = store.url().clone();

        // Another process given another key is told so at once.
        let mut other = PgStore::connect(&url).unwrap();
        let err = other.use_master_key(Some(master(2))).unwrap_err();
        assert!(
            matches!(&err, StoreError::WrongMasterKey { sealed_under, .. }
                if *sealed_under == master(1).fingerprint()),
            "{err}"
        );

        // Without a key: what reads or makes no secret works, the rest is refused and changes nothing.
        let mut locked = PgStore::connect(&url).unwrap();
        locked.use_master_key(None).unwrap();
        assert_eq!(locked.list_keys().unwrap().len(), 1);
        let public = locked.server_keys(3).unwrap().current;
        assert_eq!(public, store.server_keys(3).unwrap().current);
        let refused = [
            locked.add_key("ZK2", "secret-2-0123456789", None, None, 4),
            locked.server_key_pair(5).map(drop),
            locked.stage_server_key(6).map(drop),
            locked.rotate_server_key(7).map(drop),
        ];
        for err in refused {
            let err = err.unwrap_err();
            assert!(
                matches!(&err, StoreError::MasterKeyRequired { fingerprint: Some(f), .. }
                    if *f == master(1).fingerprint()),
                "{err}"
            );
            assert!(err.to_string().contains("--master-key-file"), "{err}");
        }
        assert_eq!(locked.list_keys().unwrap().len(), 1);
        assert_eq!(
            locked.server_keys(8).unwrap().current,
            public,
            "not rotated"
        );
        locked.revoke_key("ZK1", 9).unwrap();
        assert_eq!(verify_chain(&mut store).unwrap().rows, 3);

        // A sealed secret moved to another row does not open.
        store
            .add_key("ZK3", "secret-3-0123456789", None, None, 10)
            .unwrap();
        store
            .client()
            .execute(
                "UPDATE keys SET secret_sealed = (SELECT secret_sealed FROM keys WHERE id = 'ZK1')
                 WHERE id = 'ZK3'",
                &[],
            )
            .unwrap();
        let url = store.url().to_string();
        let moved = read_sealed(&mut store, "ZK3");
        let err =
            sealing::open(&url, moved, SecretSlot::ApiKey("ZK3"), Some(&master(1))).unwrap_err();
        assert!(matches!(err, StoreError::Seal(_)), "{err}");
    }

    #[test]
    fn a_fresh_store_without_a_key_says_how_to_make_one() {
        let Some(mut store) = fresh_store(None) else {
            return;
        };
        let err = store.add_key("ZK1", SECRET, None, None, 1).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::MasterKeyRequired {
                    fingerprint: None,
                    ..
                }
            ),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains("openssl rand -hex 32"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(store.list_keys().unwrap().is_empty());
        assert_eq!(store.sealed_under().unwrap(), None);
        let head: i64 = store
            .client()
            .query_one("SELECT last_id FROM audit_chain", &[])
            .unwrap()
            .get(0);
        assert_eq!(head, 0, "nothing was audited");
    }

    #[test]
    fn the_handshake_check_finds_active_keys_by_their_client_public_key() {
        let Some(mut store) = fresh_store(Some(master(1))) else {
            return;
        };
        store
            .add_key("ZKLIVE", "secret-live", None, None, 1)
            .unwrap();
        store
            .add_key("ZKEXPIRES", "secret-exp", None, Some(100), 1)
            .unwrap();
        store
            .add_key("ZKREVOKED", "secret-rev", None, None, 1)
            .unwrap();
        store.revoke_key("ZKREVOKED", 2).unwrap();
        let public =
            |id: &str, secret: &str| KeyPair::for_client(id, secret.as_bytes()).unwrap().public;
        let mut find = |public: [u8; 32], now| {
            store
                .curve_client(&public, now)
                .unwrap()
                .map(|c| (c.id, c.active))
        };
        assert_eq!(
            find(public("ZKLIVE", "secret-live"), 50),
            Some(("ZKLIVE".into(), true))
        );
        assert_eq!(
            find(public("ZKEXPIRES", "secret-exp"), 50),
            Some(("ZKEXPIRES".into(), true))
        );
        assert_eq!(
            find(public("ZKEXPIRES", "secret-exp"), 100),
            Some(("ZKEXPIRES".into(), false))
        );
        assert_eq!(
            find(public("ZKREVOKED", "secret-rev"), 50),
            Some(("ZKREVOKED".into(), false))
        );
        assert_eq!(find(public("ZKLIVE", "wrong"), 50), None);
    }

    fn read_sealed(store: &mut PgStore, id: &str) -> Vec<u8> {
        store
            .client()
            .query_one("SELECT secret_sealed FROM keys WHERE id = $1", &[&id])
            .unwrap()
            .get(0)
    }
}
