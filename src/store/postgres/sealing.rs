//! Secrets on PostgreSQL: always sealed under the master key (src/sealed.rs), with no clear-text form at all, since
//! a shared database leaves the host (replicas, backups, whoever administers it). The key's fingerprint is kept in
//! `sealing`, written with the first secret, so a process given another key is told so at once.

use postgres::GenericClient;
use zeroize::Zeroizing;

use super::{PgStore, statements::Statements};
use crate::{
    sealed::{MasterKey, SecretSlot},
    store::{
        StoreError,
        secrets::{StoredSecret, check_fingerprint},
    },
};

/// The fingerprint of the master key the store's secrets are sealed under, once one was sealed.
const SEALED_UNDER: &str = "SELECT fingerprint FROM sealing";

/// Records the fingerprint of the first master key a secret is sealed under; a later one changes nothing.
const RECORD: &str =
    "INSERT INTO sealing (fingerprint, sealed_us) VALUES ($1, $2) ON CONFLICT DO NOTHING";

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
