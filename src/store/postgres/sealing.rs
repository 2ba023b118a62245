//! Secrets on PostgreSQL: always sealed under the master key (src/sealed.rs), with no clear-text form at all, since
//! a shared database leaves the host (replicas, backups, whoever administers it). The key's fingerprint is kept in
//! `sealing`, written with the first secret, so a process given another key is told so at once.
//! [`PgStore::reseal_secrets`] moves every secret to another master key (`zavro store reseal`).

use postgres::{GenericClient, Transaction};
use zeroize::Zeroizing;

use super::{PgStore, chain::ChainWriter, statements::Statements};
use crate::{
    sealed::{MasterKey, SecretSlot},
    store::{
        AuditEntry, Resealed, StoreError,
        secrets::{StoredSecret, check_fingerprint},
    },
};

/// The fingerprint of the master key the store's secrets are sealed under, once one was sealed.
const SEALED_UNDER: &str = "SELECT fingerprint FROM sealing";

/// Records the fingerprint of the first master key a secret is sealed under; a later one changes nothing.
const RECORD: &str =
    "INSERT INTO sealing (fingerprint, sealed_us) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Every API secret, for a reseal.
const API_SECRETS: &str = "SELECT id, secret_sealed FROM keys ORDER BY id FOR UPDATE";

/// Writes API secrets resealed: one array of ids, one of their new sealed values.
const RESEAL_API_SECRETS: &str = "UPDATE keys k SET secret_sealed = v.sealed
     FROM unnest($1::text[], $2::bytea[]) AS v(id, sealed) WHERE k.id = v.id";

/// Every server secret key (current, staged and retired), for a reseal.
const SERVER_SECRETS: &str =
    "SELECT public_key, secret_sealed FROM server_keys ORDER BY id FOR UPDATE";

/// Writes server secret keys resealed, by public key.
const RESEAL_SERVER_SECRETS: &str = "UPDATE server_keys s SET secret_sealed = v.sealed
     FROM unnest($1::text[], $2::bytea[]) AS v(public_key, sealed) WHERE s.public_key = v.public_key";

/// The fingerprint of the key every secret is sealed under from now on.
const RECORD_NEW_KEY: &str = "UPDATE sealing SET fingerprint = $1, sealed_us = $2";

impl PgStore {
    /// Gives this connection the master key to seal and open secrets with (`None`: none, so only what needs
    /// no secret works). A key other than the one the store's secrets are sealed under is refused
    /// ([`StoreError::WrongMasterKey`]).
    pub fn use_master_key(&mut self, master: Option<MasterKey>) -> Result<(), StoreError> {
        if let Some(given) = &master {
            let recorded = sealed_under(&mut self.client, &mut self.statements)?;
            check_fingerprint(recorded, given)?;
        }
        self.master = master;
        Ok(())
    }

    /// The master key this connection seals and opens secrets with, if it was given one.
    pub fn master_key(&self) -> Option<&MasterKey> {
        self.master.as_ref()
    }

    /// The fingerprint of the master key the store's secrets are sealed under, or `None` before the first.
    pub fn sealed_under(&mut self) -> Result<Option<String>, StoreError> {
        sealed_under(&mut self.client, &mut self.statements)
    }

    /// The master key, or the error that says one is needed and which.
    pub fn require_master_key(&mut self) -> Result<&MasterKey, StoreError> {
        if self.master.is_none() {
            let fingerprint = self.sealed_under()?;
            return Err(StoreError::MasterKeyRequired {
                url: self.url.to_string(),
                fingerprint,
            });
        }
        self.master
            .as_ref()
            .ok_or(StoreError::NoSecret("the master key".into()))
    }
}

impl PgStore {
    /// Moves every secret (API secrets, server secret keys) from the master key this connection was given
    /// ([`PgStore::use_master_key`]) to `new`, in one transaction that holds the audit chain's lock, like every
    /// writer of secrets: the new fingerprint and an audit row (`store_reseal`, detail `OLD -> NEW`
    /// fingerprints) commit with it. A value that does not open under the old key stops it, and nothing
    /// changes. Servers still holding the old key then refuse requests as `internal` until restarted with
    /// `new` ([`StoreError::Resealed`]).
    pub fn reseal_secrets(&mut self, new: MasterKey, now_us: i64) -> Result<Resealed, StoreError> {
        let url = self.url.to_string();
        let Some(old) = self.master.as_ref() else {
            return Err(StoreError::MasterKeyRequired {
                fingerprint: sealed_under(&mut self.client, &mut self.statements)?,
                url,
            });
        };
        let old_fingerprint = old.fingerprint();
        let new_fingerprint = new.fingerprint();
        if new_fingerprint == old_fingerprint {
            return Err(StoreError::SameMasterKey(new_fingerprint));
        }
        let mut tx = self.client.transaction()?;
        let mut chain = ChainWriter::lock(&mut tx, &mut self.statements)?;
        // Checked again under the lock: another process may have resealed since the key was given.
        match sealed_under(&mut tx, &mut self.statements)? {
            None => return Err(StoreError::NothingSealed(url)),
            recorded => check_fingerprint(recorded, old)?,
        }
        let api_keys = reseal_table(
            &mut tx,
            (API_SECRETS, RESEAL_API_SECRETS),
            |name| SecretSlot::ApiKey(name),
            &url,
            (old, &new),
        )?;
        let server_keys = reseal_table(
            &mut tx,
            (SERVER_SECRETS, RESEAL_SERVER_SECRETS),
            |name| SecretSlot::ServerKey(name),
            &url,
            (old, &new),
        )?;
        tx.execute(RECORD_NEW_KEY, &[&new_fingerprint, &now_us])?;
        let detail = format!("{old_fingerprint} -> {new_fingerprint}");
        chain.append(
            &AuditEntry {
                detail: Some(&detail),
                ..AuditEntry::admin("store_reseal", None, now_us)
            },
            None,
            None,
        );
        chain.write(&mut tx, &mut self.statements)?;
        tx.commit()?;
        self.master = Some(new);
        Ok(Resealed {
            api_keys,
            server_keys,
            old_fingerprint,
            new_fingerprint,
        })
    }
}

/// Opens every secret `select` reads (name, sealed value) with `old` and writes it sealed under `new` with
/// `update` (an array of names, one of sealed values): two statements however many rows. Returns how many.
fn reseal_table(
    tx: &mut Transaction<'_>,
    (select, update): (&str, &str),
    slot: for<'a> fn(&'a str) -> SecretSlot<'a>,
    store_url: &str,
    (old, new): (&MasterKey, &MasterKey),
) -> Result<usize, StoreError> {
    let rows = tx.query(select, &[])?;
    let mut names = Vec::with_capacity(rows.len());
    let mut sealed = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row.try_get(0)?;
        let secret = open(store_url, row.try_get(1)?, slot(&name), Some(old))?;
        sealed.push(new.seal_text(slot(&name), &secret)?);
        names.push(name);
    }
    if !names.is_empty() {
        tx.execute(update, &[&names, &sealed])?;
    }
    Ok(names.len())
}

/// The fingerprint recorded in `sealing`, if any.
pub(super) fn sealed_under(
    client: &mut impl GenericClient,
    statements: &mut Statements,
) -> Result<Option<String>, StoreError> {
    let select = statements.get(client, SEALED_UNDER)?;
    Ok(match client.query_opt(&select, &[])? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Seals `secret` for `row` under `master`, in a transaction about to store it: records `master`'s fingerprint
/// when it is the first key, and refuses a key other than the recorded one, so no secret is ever stored under a
/// second key. Call it under the chain's lock, which orders it with every other writer.
pub(super) fn seal(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    master: &MasterKey,
    row: SecretSlot<'_>,
    secret: &str,
    now_us: i64,
) -> Result<Vec<u8>, StoreError> {
    let record = statements.get(client, RECORD)?;
    client.execute(&record, &[&master.fingerprint(), &now_us])?;
    check_fingerprint(sealed_under(client, statements)?, master)?;
    Ok(master.seal_text(row, secret)?)
}

/// Opens a sealed secret read from `row`; without a master key, the error names the store and what to give.
pub(super) fn open(
    store_url: &str,
    sealed: Vec<u8>,
    row: SecretSlot<'_>,
    master: Option<&MasterKey>,
) -> Result<Zeroizing<String>, StoreError> {
    StoredSecret::sealed(sealed).reveal(row, master, || StoreError::MasterKeyRequired {
        url: store_url.to_owned(),
        fingerprint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        KeyStore, RequestGroup, RequestStore,
        postgres::{
            keys::find_key,
            tests::{fresh_store, master, verify_chain},
        },
    };

    const SECRET_A: &str = "secret-of-zka-0123456789";
    const SECRET_B: &str = "secret-of-zkb-0123456789";

    /// A store sealed under `master(1)` with two keys, a current and a staged server key pair.
    fn store_with_secrets() -> Option<PgStore> {
        let mut store = fresh_store(Some(master(1)))?;
        store.add_key("ZKA", SECRET_A, None, None, 1).unwrap();
        store.add_key("ZKB", SECRET_B, None, None, 2).unwrap();
        store.server_key_pair(3).unwrap();
        store.stage_server_key(4).unwrap();
        Some(store)
    }

    /// Another connection to the same database, given `key`.
    fn other(store: &PgStore, key: Option<MasterKey>) -> Result<PgStore, StoreError> {
        let mut other = PgStore::connect(store.url())?;
        other.use_master_key(key)?;
        Ok(other)
    }

    fn secret_of(store: &mut PgStore, id: &str) -> Result<String, StoreError> {
        let url = store.url().to_string();
        let found = find_key(
            &mut store.client,
            &mut store.statements,
            &url,
            id,
            store.master.as_ref(),
        )?;
        Ok(found.expect("the key exists").secret.to_string())
    }

    /// Every sealed value the database holds, in a fixed order.
    fn sealed_values(store: &mut PgStore) -> Vec<Vec<u8>> {
        store
            .client()
            .query(
                "SELECT secret_sealed FROM (SELECT 0 AS t, id AS name, secret_sealed FROM keys
                  UNION ALL SELECT 1, public_key, secret_sealed FROM server_keys) s ORDER BY t, name",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    fn audit_actions(store: &mut PgStore) -> Vec<(String, Option<String>)> {
        store
            .client()
            .query("SELECT action, detail FROM audit ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    #[test]
    fn resealing_moves_every_secret_to_the_new_key_with_its_fingerprint_and_audit_row_in_one_step()
    {
        let Some(mut store) = store_with_secrets() else {
            return;
        };
        let server = store.server_keys(5).unwrap();
        let server_secret = store.server_key_pair(5).unwrap().secret_z85();
        let before = sealed_values(&mut store);
        let resealed = store.reseal_secrets(master(2), 10).unwrap();
        assert_eq!(
            resealed,
            Resealed {
                api_keys: 2,
                server_keys: 2,
                old_fingerprint: master(1).fingerprint(),
                new_fingerprint: master(2).fingerprint(),
            }
        );
        let after = sealed_values(&mut store);
        assert_eq!(after.len(), 4);
        assert!(
            before.iter().zip(&after).all(|(b, a)| b != a),
            "every value was sealed anew"
        );
        assert_eq!(store.sealed_under().unwrap(), Some(master(2).fingerprint()));
        let detail = format!("{} -> {}", master(1).fingerprint(), master(2).fingerprint());
        assert_eq!(
            audit_actions(&mut store).last().unwrap(),
            &("store_reseal".to_owned(), Some(detail))
        );
        assert_eq!(verify_chain(&mut store).unwrap().rows, 5);

        // The old key is refused, the new one opens everything, staged server key included.
        assert!(matches!(
            other(&store, Some(master(1))),
            Err(StoreError::WrongMasterKey { .. })
        ));
        let mut new = other(&store, Some(master(2))).unwrap();
        assert_eq!(secret_of(&mut new, "ZKA").unwrap(), SECRET_A);
        assert_eq!(secret_of(&mut new, "ZKB").unwrap(), SECRET_B);
        let pair = new.server_key_pair(11).unwrap();
        assert_eq!(pair.public_z85(), server.current);
        assert_eq!(pair.secret_z85().as_str(), server_secret.as_str());
        let staged = server.staged.unwrap();
        assert_eq!(new.rotate_server_key(12).unwrap(), staged);
        assert_eq!(new.server_key_pair(13).unwrap().public_z85(), staged);
        // This connection moved to the new key with the store.
        assert_eq!(secret_of(&mut store, "ZKB").unwrap(), SECRET_B);
    }

    #[test]
    fn a_server_holding_the_old_key_is_told_the_store_was_resealed() {
        let Some(mut store) = store_with_secrets() else {
            return;
        };
        let mut serving = other(&store, Some(master(1))).unwrap();
        serving.begin_group().unwrap().key("ZKA").unwrap().unwrap();
        store.reseal_secrets(master(2), 10).unwrap();
        let mut group = serving.begin_group().unwrap();
        let Err(err) = group.key("ZKA") else {
            panic!("a secret sealed under another key was read");
        };
        assert!(
            matches!(&err, StoreError::Resealed { sealed_under, held }
                if *sealed_under == master(2).fingerprint() && *held == master(1).fingerprint()),
            "{err}"
        );
        drop(group);
        // A row damaged under the key the store records is the row's fault, and said so.
        store
            .client()
            .execute(
                "UPDATE keys SET secret_sealed = (SELECT secret_sealed FROM keys WHERE id = 'ZKA')
                 WHERE id = 'ZKB'",
                &[],
            )
            .unwrap();
        let mut group = store.begin_group().unwrap();
        let Err(err) = group.key("ZKB") else {
            panic!("a secret moved from another row was read");
        };
        assert!(matches!(err, StoreError::Seal(_)), "{err}");
        // It fails that key only: the group reads the other key and commits.
        assert_eq!(group.key("ZKA").unwrap().unwrap().secret.as_str(), SECRET_A);
        group.commit().unwrap();
    }

    #[test]
    fn a_reseal_that_meets_a_value_it_cannot_open_changes_nothing() {
        let Some(mut store) = store_with_secrets() else {
            return;
        };
        // The last server key row holds a value sealed for another row: it does not open there.
        store
            .client()
            .execute(
                "UPDATE server_keys SET secret_sealed = (SELECT secret_sealed FROM server_keys WHERE state = 'current')
                 WHERE state = 'staged'",
                &[],
            )
            .unwrap();
        let before = sealed_values(&mut store);
        let audit_before = audit_actions(&mut store);
        let err = store.reseal_secrets(master(2), 10).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::Seal(crate::sealed::SealError::DoesNotOpen { .. })
            ),
            "{err}"
        );
        assert_eq!(sealed_values(&mut store), before, "no value was changed");
        assert_eq!(store.sealed_under().unwrap(), Some(master(1).fingerprint()));
        assert_eq!(audit_actions(&mut store), audit_before);
        let head: i64 = store
            .client()
            .query_one("SELECT last_id FROM audit_chain", &[])
            .unwrap()
            .get(0);
        assert_eq!(head, 4, "the chain's head did not move");
        // The connection still holds the old key, which still opens what is intact.
        assert_eq!(secret_of(&mut store, "ZKA").unwrap(), SECRET_A);
    }

    #[test]
    fn a_reseal_needs_the_current_key_a_new_one_and_something_sealed() {
        let Some(mut empty) = fresh_store(Some(master(1))) else {
            return;
        };
        assert!(matches!(
            empty.reseal_secrets(master(2), 1),
            Err(StoreError::NothingSealed(_))
        ));
        assert_eq!(empty.sealed_under().unwrap(), None);

        let mut store = store_with_secrets().unwrap();
        assert!(matches!(
            store.reseal_secrets(master(1), 5),
            Err(StoreError::SameMasterKey(f)) if f == master(1).fingerprint()
        ));
        let mut keyless = other(&store, None).unwrap();
        assert!(matches!(
            keyless.reseal_secrets(master(2), 5),
            Err(StoreError::MasterKeyRequired { fingerprint: Some(f), .. }) if f == master(1).fingerprint()
        ));
        // Another process resealed after this one was given its key: checked again under the chain's lock.
        let mut late = other(&store, Some(master(1))).unwrap();
        store.reseal_secrets(master(2), 6).unwrap();
        assert!(matches!(
            late.reseal_secrets(master(3), 7),
            Err(StoreError::WrongMasterKey { .. })
        ));
        assert_eq!(store.sealed_under().unwrap(), Some(master(2).fingerprint()));
    }
}
