//! Secrets at rest in the SQLite store: unsealed (in clear text, the default) or sealed under a master key
//! (src/sealed.rs), and the commands that seal a store and move it to another master key.
//!
//! A store is sealed when its `sealing` table has a row (migration 9): then every secret is in a
//! `secret_sealed` column and its clear-text column is NULL. The master key itself never enters the store, only
//! its fingerprint. A process that reads or writes secrets is given the key with [`Store::use_master_key`]; the
//! functions that touch secrets take it as `Option<&MasterKey>`.

use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use super::{
    AuditEntry, Store, StoreError,
    secrets::{StoredSecret, wrong_key},
};
use crate::sealed::{MasterKey, SecretSlot};

/// What [`Store::seal_secrets`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// API secrets sealed now.
    pub api_keys: usize,
    /// Server secret keys sealed now.
    pub server_keys: usize,
    /// True when the store was already sealed under this key: nothing was sealed, old copies were scrubbed
    /// again.
    pub already: bool,
}

/// What [`Store::reseal_secrets`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// API secrets moved to the new key.
    pub api_keys: usize,
    /// Server secret keys moved to the new key.
    pub server_keys: usize,
    /// The fingerprint of the key the store was sealed under.
    pub old_fingerprint: String,
    /// The fingerprint of the key it is sealed under now.
    pub new_fingerprint: String,
}

impl Store {
    /// The fingerprint of the master key the store is sealed under, or `None` when it is not sealed.
    pub fn sealed_under(&self) -> Result<Option<String>, StoreError> {
        sealed_under(&self.conn)
    }

    /// Gives this process's connection what it needs to read and write secrets: the master key of a sealed
    /// store, or none for an unsealed one. Fails, naming what is wrong, when the store is sealed and no key or
    /// another key is given, or when a key is given for a store that is not sealed (it would not protect
    /// anything, and the one who gave it should know).
    pub fn use_master_key(&mut self, master: Option<MasterKey>) -> Result<(), StoreError> {
        check_master(&self.conn, master.as_ref())?;
        self.master = master;
        Ok(())
    }

    /// The master key this connection reads and writes secrets with, if it was given one.
    pub fn master_key(&self) -> Option<&MasterKey> {
        self.master.as_ref()
    }

    /// Seals every secret of an unsealed store under `master` in one transaction, records its fingerprint and
    /// an audit row (`store_seal`, the fingerprint as detail), then rebuilds the file so that no clear-text copy
    /// is left in its free pages or its WAL. On a store already sealed under `master`, only rebuilds.
    pub fn seal_secrets(&mut self, master: MasterKey, now_us: i64) -> Result<Sealed, StoreError> {
        // Whatever the sealing frees or rewrites is overwritten with zeros, not left in free space.
        self.conn.pragma_update(None, "secure_delete", "ON")?;
        let fingerprint = master.fingerprint();
        let tx = self.conn.transaction()?;
        let sealed = match sealed_under(&tx)? {
            Some(under) if under == fingerprint => Sealed {
                api_keys: 0,
                server_keys: 0,
                already: true,
            },
            Some(under) => return Err(wrong_key(under, &master)),
            None => {
                let api_keys = reseal_api_keys(&tx, None, &master)?;
                let server_keys = reseal_server_keys(&tx, None, &master)?;
                tx.execute(
                    "INSERT INTO sealing (id, fingerprint, sealed_us) VALUES (1, ?1, ?2)",
                    params![fingerprint, now_us],
                )?;
                AuditEntry {
                    detail: Some(&fingerprint),
                    ..AuditEntry::admin("store_seal", None, now_us)
                }
                .insert(&tx, None, None)?;
                Sealed {
                    api_keys,
                    server_keys,
                    already: false,
                }
            }
        };
        tx.commit()?;
        self.master = Some(master);
        self.scrub(&fingerprint)?;
        Ok(sealed)
    }

    /// Moves every secret of a sealed store from the master key this connection was given
    /// ([`Store::use_master_key`]) to `new`, in one transaction with the new fingerprint and an audit row
    /// (`store_reseal`, detail `OLD -> NEW` fingerprints), then rebuilds the file as [`Store::seal_secrets`]
    /// does. A value that does not open under the old key stops it, and nothing changes.
    pub fn reseal_secrets(&mut self, new: MasterKey, now_us: i64) -> Result<Resealed, StoreError> {
        let Some(old) = self.master.as_ref() else {
            return Err(match sealed_under(&self.conn)? {
                Some(fingerprint) => self.locked(fingerprint),
                None => StoreError::NotSealed {
                    path: store_path(&self.conn),
                    key_file: new.describe_source(),
                },
            });
        };
        let old_fingerprint = old.fingerprint();
        let new_fingerprint = new.fingerprint();
        if new_fingerprint == old_fingerprint {
            return Err(StoreError::SameMasterKey(new_fingerprint));
        }
        self.conn.pragma_update(None, "secure_delete", "ON")?;
        let tx = self.conn.transaction()?;
        // Checked again under the write lock: another process may have resealed since the key was given.
        check_master(&tx, Some(old))?;
        let api_keys = reseal_api_keys(&tx, Some(old), &new)?;
        let server_keys = reseal_server_keys(&tx, Some(old), &new)?;
        tx.execute(
            "UPDATE sealing SET fingerprint = ?1, sealed_us = ?2 WHERE id = 1",
            params![new_fingerprint, now_us],
        )?;
        let detail = format!("{old_fingerprint} -> {new_fingerprint}");
        AuditEntry {
            detail: Some(&detail),
            ..AuditEntry::admin("store_reseal", None, now_us)
        }
        .insert(&tx, None, None)?;
        tx.commit()?;
        self.master = Some(new);
        self.scrub(&new_fingerprint)?;
        Ok(Resealed {
            api_keys,
            server_keys,
            old_fingerprint,
            new_fingerprint,
        })
    }

    /// Rebuilds the database file (VACUUM) and empties its WAL, so that values overwritten before are not left
    /// in free pages, in unused space of a page, or in old WAL frames. Runs after the sealing committed, so any
    /// failure is [`StoreError::ScrubIncomplete`], which says the secrets are sealed under `fingerprint`.
    fn scrub(&self, fingerprint: &str) -> Result<(), StoreError> {
        let incomplete = |reason: String| StoreError::ScrubIncomplete {
            path: store_path(&self.conn),
            fingerprint: fingerprint.to_owned(),
            reason,
        };
        self.conn
            .execute_batch("VACUUM")
            .map_err(|e| incomplete(e.to_string()))?;
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(|e| incomplete(e.to_string()))?;
        if busy != 0 {
            return Err(incomplete(
                "another process kept the store open, so its WAL could not be emptied".into(),
            ));
        }
        Ok(())
    }

    /// The error for a sealed store read or written without its key.
    fn locked(&self, fingerprint: String) -> StoreError {
        StoreError::Locked {
            path: store_path(&self.conn),
            fingerprint,
        }
    }
}

/// The fingerprint of the master key the store is sealed under, if it is.
pub(super) fn sealed_under(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT fingerprint FROM sealing WHERE id = 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

/// Checks that `master` is what the store needs: none for an unsealed store, the key it is sealed under for a
/// sealed one.
fn check_master(conn: &Connection, master: Option<&MasterKey>) -> Result<(), StoreError> {
    match (sealed_under(conn)?, master) {
        (None, None) => Ok(()),
        (None, Some(master)) => Err(StoreError::NotSealed {
            path: store_path(conn),
            key_file: master.describe_source(),
        }),
        (Some(fingerprint), None) => Err(StoreError::Locked {
            path: store_path(conn),
            fingerprint,
        }),
        (Some(fingerprint), Some(master)) if fingerprint != master.fingerprint() => {
            Err(wrong_key(fingerprint, master))
        }
        (Some(_), Some(_)) => Ok(()),
    }
}

/// The store's file for messages (`:memory:` for a store in memory).
fn store_path(conn: &Connection) -> String {
    match conn.path() {
        Some(path) if !path.is_empty() => path.to_owned(),
        _ => ":memory:".to_owned(),
    }
}

/// How a secret about to be written is stored: `(clear text, sealed)`, exactly one of them. Reads the store's
/// state, so call it in the transaction that writes, and it refuses to write a clear-text secret into a sealed
/// store (or one sealed under another key).
pub(super) fn to_store<'s>(
    conn: &Connection,
    row: SecretSlot<'_>,
    secret: &'s str,
    master: Option<&MasterKey>,
) -> Result<(Option<&'s str>, Option<Vec<u8>>), StoreError> {
    check_master(conn, master)?;
    match master {
        Some(master) => Ok((None, Some(master.seal_text(row, secret)?))),
        None => Ok((Some(secret), None)),
    }
}

/// Reads a row's secret from its clear-text column at index `clear` and its sealed one at `clear + 1`.
pub(super) fn stored_secret(
    row: &rusqlite::Row<'_>,
    clear: usize,
) -> rusqlite::Result<StoredSecret> {
    let text: Option<String> = row.get(clear)?;
    Ok(StoredSecret {
        clear: text.map(Zeroizing::new),
        sealed: row.get(clear + 1)?,
    })
}

/// The secret of `stored`, as [`StoredSecret::reveal`] gives it, naming this store and the key it is sealed
/// under when no master key was given.
pub(super) fn reveal(
    stored: StoredSecret,
    conn: &Connection,
    row: SecretSlot<'_>,
    master: Option<&MasterKey>,
) -> Result<Zeroizing<String>, StoreError> {
    stored.reveal(row, master, || match sealed_under(conn) {
        Ok(fingerprint) => StoreError::Locked {
            path: store_path(conn),
            fingerprint: fingerprint.unwrap_or_else(|| "(none recorded)".into()),
        },
        Err(e) => e,
    })
}

/// Seals every API secret under `new`: those in clear text (`old` is `None`, sealing a store) or those sealed
/// under `old` (resealing). Returns how many.
fn reseal_api_keys(
    tx: &Connection,
    old: Option<&MasterKey>,
    new: &MasterKey,
) -> Result<usize, StoreError> {
    reseal_table(
        tx,
        "SELECT id, secret, secret_sealed FROM keys ORDER BY id",
        "UPDATE keys SET secret = NULL, secret_sealed = ?1 WHERE id = ?2",
        |name| SecretSlot::ApiKey(name),
        old,
        new,
    )
}

/// Seals every server secret key under `new`, as [`reseal_api_keys`] does API secrets.
fn reseal_server_keys(
    tx: &Connection,
    old: Option<&MasterKey>,
    new: &MasterKey,
) -> Result<usize, StoreError> {
    reseal_table(
        tx,
        "SELECT public_key, secret_key, secret_sealed FROM server_keys ORDER BY id",
        "UPDATE server_keys SET secret_key = NULL, secret_sealed = ?1 WHERE public_key = ?2",
        |name| SecretSlot::ServerKey(name),
        old,
        new,
    )
}

/// Reads every (name, clear text, sealed) row of `select`, and writes each secret sealed under `new` with
/// `update` (?1 the sealed value, ?2 the name).
fn reseal_table(
    tx: &Connection,
    select: &str,
    update: &str,
    row_of: for<'a> fn(&'a str) -> SecretSlot<'a>,
    old: Option<&MasterKey>,
    new: &MasterKey,
) -> Result<usize, StoreError> {
    let rows: Vec<(String, StoredSecret)> = tx
        .prepare(select)?
        .query_map([], |row| Ok((row.get(0)?, stored_secret(row, 1)?)))?
        .collect::<Result<_, _>>()?;
    let count = rows.len();
    let mut update = tx.prepare(update)?;
    for (name, stored) in rows {
        let row = row_of(&name);
        let secret = reveal(stored, tx, row, old)?;
        update.execute(params![new.seal_text(row, &secret)?, name])?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::store::{AuditFilter, RequestGroup, RequestStore, keys::find_key};

    const SECRET_A: &str = "secret-of-key-a-0123456789-MARKER";
    const SECRET_B: &str = "secret-of-key-b-0123456789-MARKER";

    /// A store file with two keys and a server key pair, unsealed.
    fn store_with_keys(dir: &Path) -> Store {
        let mut store = Store::open(&dir.join("zavro.db")).unwrap();
        store.add_key("ZKA", SECRET_A, None, 1).unwrap();
        store.add_key("ZKB", SECRET_B, None, 2).unwrap();
        store.server_key_pair(3).unwrap();
        store
    }

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    fn secret_of(store: &Store, id: &str) -> Result<Option<String>, StoreError> {
        Ok(find_key(&store.conn, id, store.master_key())?.map(|k| k.secret.to_string()))
    }

    /// Every file of the store (the database, its WAL), as bytes.
    fn store_bytes(dir: &Path) -> Vec<u8> {
        ["zavro.db", "zavro.db-wal"]
            .iter()
            .filter_map(|name| std::fs::read(dir.join(name)).ok())
            .flatten()
            .collect()
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    }

    #[test]
    fn sealing_leaves_no_secret_in_clear_text_and_the_key_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_keys(dir.path());
        let server_secret = store.server_key_pair(4).unwrap().secret_z85();
        assert!(
            contains(&store_bytes(dir.path()), SECRET_A),
            "the control: an unsealed store holds the secret in clear text"
        );
        let sealed = store.seal_secrets(key(1), 10).unwrap();
        assert_eq!(
            sealed,
            Sealed {
                api_keys: 2,
                server_keys: 1,
                already: false
            }
        );
        let bytes = store_bytes(dir.path());
        for secret in [SECRET_A, SECRET_B, "MARKER", server_secret.as_str()] {
            assert!(!contains(&bytes, secret), "{secret} is still in the file");
        }
        assert_eq!(store.sealed_under().unwrap(), Some(key(1).fingerprint()));
        assert_eq!(secret_of(&store, "ZKA").unwrap().as_deref(), Some(SECRET_A));
        assert_eq!(
            store.server_key_pair(11).unwrap().secret_z85().as_str(),
            server_secret.as_str()
        );
        let audit = store.query_audit(&AuditFilter::default()).unwrap();
        let last = audit.last().unwrap();
        assert_eq!(
            (last.action.as_str(), last.detail.as_deref()),
            ("store_seal", Some(key(1).fingerprint().as_str()))
        );
        assert!(store.verify_audit(None).unwrap().is_ok());

        // Another process, as `serve` opens it.
        let mut other = Store::open_existing(&dir.path().join("zavro.db")).unwrap();
        let err = other.use_master_key(None).unwrap_err();
        assert!(
            matches!(&err, StoreError::Locked { fingerprint, .. } if *fingerprint == key(1).fingerprint()),
            "{err}"
        );
        let err = other.use_master_key(Some(key(2))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "this store is sealed under master key {}; the key in the key given is {}",
                key(1).fingerprint(),
                key(2).fingerprint()
            )
        );
        assert!(
            matches!(secret_of(&other, "ZKA"), Err(StoreError::Locked { .. })),
            "without the key, a sealed secret is not read"
        );
        other.use_master_key(Some(key(1))).unwrap();
        assert_eq!(secret_of(&other, "ZKB").unwrap().as_deref(), Some(SECRET_B));
    }

    #[test]
    fn a_sealed_store_seals_new_secrets_and_refuses_to_write_them_without_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_keys(dir.path());
        store.seal_secrets(key(1), 10).unwrap();
        let path = dir.path().join("zavro.db");

        let mut locked = Store::open_existing(&path).unwrap();
        let err = locked
            .add_key("ZKC", "secret-c-0123456789", None, 11)
            .unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(locked.list_keys().unwrap().iter().all(|k| k.id != "ZKC"));
        // What needs no secret works without the key.
        assert_eq!(locked.list_keys().unwrap().len(), 2);
        locked.revoke_key("ZKB", 12).unwrap();
        let public = locked.server_keys(13).unwrap().current;
        assert_eq!(public, store.server_keys(13).unwrap().current);
        let err = locked.stage_server_key(14).unwrap_err();
        assert!(
            matches!(err, StoreError::Locked { .. }),
            "making a key pair seals its secret: {err}"
        );

        store
            .add_key("ZKC", "secret-c-0123456789", None, 15)
            .unwrap();
        let clear: Option<String> = store
            .conn
            .query_row("SELECT secret FROM keys WHERE id = 'ZKC'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(clear, None, "the new secret is stored sealed only");
        assert_eq!(
            secret_of(&store, "ZKC").unwrap().as_deref(),
            Some("secret-c-0123456789")
        );
        let staged = store.stage_server_key(16).unwrap();
        assert_eq!(store.rotate_server_key(17).unwrap(), staged);
        assert_eq!(store.server_key_pair(18).unwrap().public_z85(), staged);
        assert!(!contains(&store_bytes(dir.path()), "secret-c-0123456789"));
    }

    #[test]
    fn a_sealed_secret_moved_to_another_row_or_altered_is_an_error_never_a_key() {
        let mut store = Store::open_in_memory().unwrap();
        store.add_key("ZKA", SECRET_A, None, 1).unwrap();
        store.add_key("ZKB", SECRET_B, None, 2).unwrap();
        store.seal_secrets(key(1), 10).unwrap();
        store
            .conn
            .execute(
                "UPDATE keys SET secret_sealed = (SELECT secret_sealed FROM keys WHERE id = 'ZKA')
                 WHERE id = 'ZKB'",
                [],
            )
            .unwrap();
        let err = secret_of(&store, "ZKB").unwrap_err();
        assert!(
            matches!(&err, StoreError::Seal(crate::sealed::SealError::DoesNotOpen { row }) if row.contains("ZKB")),
            "{err}"
        );
        assert!(!err.to_string().contains(SECRET_A), "{err}");
        assert_eq!(secret_of(&store, "ZKA").unwrap().as_deref(), Some(SECRET_A));

        // The server's group reads it the same way: an error, which it answers as `internal`.
        let mut group = store.begin_group().unwrap();
        assert!(matches!(group.key("ZKB"), Err(StoreError::Seal(_))));
        assert!(group.key("ZKA").unwrap().is_some());
        drop(group);

        // A clear-text secret slipped into a sealed store is refused, not used.
        store
            .conn
            .execute(
                "UPDATE keys SET secret = 'chosen-by-whoever', secret_sealed = NULL WHERE id = 'ZKA'",
                [],
            )
            .unwrap();
        assert!(matches!(
            secret_of(&store, "ZKA"),
            Err(StoreError::ClearTextInSealedStore(_))
        ));
    }

    #[test]
    fn resealing_moves_every_secret_to_the_new_key_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_keys(dir.path());
        let server_public = store.server_keys(4).unwrap().current;
        store.seal_secrets(key(1), 10).unwrap();
        let sealed_before: Vec<u8> = store
            .conn
            .query_row("SELECT secret_sealed FROM keys WHERE id = 'ZKA'", [], |r| {
                r.get(0)
            })
            .unwrap();

        let err = store.reseal_secrets(key(1), 11).unwrap_err();
        assert!(matches!(err, StoreError::SameMasterKey(_)), "{err}");
        let resealed = store.reseal_secrets(key(2), 12).unwrap();
        assert_eq!(
            resealed,
            Resealed {
                api_keys: 2,
                server_keys: 1,
                old_fingerprint: key(1).fingerprint(),
                new_fingerprint: key(2).fingerprint(),
            }
        );
        let audit = store.query_audit(&AuditFilter::default()).unwrap();
        let last = audit.last().unwrap();
        let detail = format!("{} -> {}", key(1).fingerprint(), key(2).fingerprint());
        assert_eq!(
            (last.action.as_str(), last.detail.as_deref()),
            ("store_reseal", Some(detail.as_str()))
        );

        let path = dir.path().join("zavro.db");
        let mut old = Store::open_existing(&path).unwrap();
        assert!(matches!(
            old.use_master_key(Some(key(1))),
            Err(StoreError::WrongMasterKey { .. })
        ));
        let mut new = Store::open_existing(&path).unwrap();
        new.use_master_key(Some(key(2))).unwrap();
        assert_eq!(secret_of(&new, "ZKA").unwrap().as_deref(), Some(SECRET_A));
        assert_eq!(new.server_key_pair(13).unwrap().public_z85(), server_public);
        // A value sealed under the old key (a restored backup's, say) does not open under the new one.
        new.conn
            .execute(
                "UPDATE keys SET secret_sealed = ?1 WHERE id = 'ZKA'",
                [&sealed_before],
            )
            .unwrap();
        assert!(matches!(secret_of(&new, "ZKA"), Err(StoreError::Seal(_))));
        assert!(!contains(&store_bytes(dir.path()), "MARKER"));
    }

    #[test]
    fn a_reseal_that_meets_a_value_it_cannot_open_changes_nothing() {
        let mut store = Store::open_in_memory().unwrap();
        store.add_key("ZKA", SECRET_A, None, 1).unwrap();
        store.add_key("ZKB", SECRET_B, None, 2).unwrap();
        store.seal_secrets(key(1), 10).unwrap();
        store
            .conn
            .execute(
                "UPDATE keys SET secret_sealed = (SELECT secret_sealed FROM keys WHERE id = 'ZKA')
                 WHERE id = 'ZKB'",
                [],
            )
            .unwrap();
        let err = store.reseal_secrets(key(2), 11).unwrap_err();
        assert!(matches!(err, StoreError::Seal(_)), "{err}");
        assert_eq!(store.sealed_under().unwrap(), Some(key(1).fingerprint()));
        assert_eq!(secret_of(&store, "ZKA").unwrap().as_deref(), Some(SECRET_A));
    }

    #[test]
    fn a_key_for_an_unsealed_store_is_refused_and_sealing_twice_only_scrubs() {
        let mut store = Store::open_in_memory().unwrap();
        store.add_key("ZKA", SECRET_A, None, 1).unwrap();
        let err = store.use_master_key(Some(key(1))).unwrap_err();
        assert!(matches!(err, StoreError::NotSealed { .. }), "{err}");
        store.use_master_key(None).unwrap();
        assert!(matches!(
            store.reseal_secrets(key(2), 2),
            Err(StoreError::NotSealed { .. })
        ));
        store.seal_secrets(key(1), 3).unwrap();
        assert!(store.seal_secrets(key(1), 4).unwrap().already);
        assert!(matches!(
            store.seal_secrets(key(2), 5),
            Err(StoreError::WrongMasterKey { .. })
        ));
        let seals = store
            .query_audit(&AuditFilter::default())
            .unwrap()
            .into_iter()
            .filter(|row| row.action == "store_seal")
            .count();
        assert_eq!(seals, 1);
    }

    #[test]
    fn migration_9_keeps_the_keys_and_server_keys_of_older_stores() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::MIGRATIONS.to_version(&mut conn, 8).unwrap();
        conn.execute_batch(
            "INSERT INTO keys (id, secret, label, created_us, revoked_us, expires_us, curve_public)
                 VALUES ('ZKOLD', 'old-secret', 'lab', 1, 2, 3, 'cp');
             INSERT INTO server_keys (id, public_key, secret_key, state, created_us)
                 VALUES (7, 'pub', 'sec', 'current', 4);",
        )
        .unwrap();
        super::super::MIGRATIONS.to_version(&mut conn, 9).unwrap();
        let key: (String, String, String, i64, i64, i64, String) = conn
            .query_row(
                "SELECT id, secret, label, created_us, revoked_us, expires_us, curve_public FROM keys",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .unwrap();
        assert_eq!(
            key,
            (
                "ZKOLD".into(),
                "old-secret".into(),
                "lab".into(),
                1,
                2,
                3,
                "cp".into()
            )
        );
        let server: (i64, String, String) = conn
            .query_row(
                "SELECT id, secret_key, state FROM server_keys WHERE public_key = 'pub'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(server, (7, "sec".into(), "current".into()));
        let both = conn.execute(
            "INSERT INTO keys (id, secret, secret_sealed, created_us) VALUES ('ZKX', 's', x'00', 1)",
            [],
        );
        assert!(both.is_err(), "a row holds its secret in one form only");
        assert!(sealed_under(&conn).unwrap().is_none());
    }
}
