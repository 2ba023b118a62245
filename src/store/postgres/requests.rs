//! The PostgreSQL side of the server's seam ([`RequestStore`]), built so that many servers share one database
//! without taking turns for the whole of a group.
//!
//! A group is a READ COMMITTED transaction. Its checks read keys and nonces with plain prepared reads, without
//! any lock: the signature and the Avro decoding, the CPU work, run while other servers commit. The chain's lock is
//! taken at the group's first write, once every request is checked; from then on rows get their ids and hashes in
//! memory, and at commit they go in with one statement per table (nonces first), then the chain's head, then
//! COMMIT: a few round trips per group, not per request.
//!
//! A nonce another server committed between this group's read of it and its lock is a race: the nonce insert
//! (`ON CONFLICT DO NOTHING RETURNING`) comes back short, the whole group is rolled back, and
//! [`StoreError::Raced`] tells the server to check the group again, when the nonce is seen for what it is (a
//! `duplicate` or a `replay`). The same holds for a schema deleted under the group (a foreign key that no longer
//! holds). Semantics otherwise copy SQLite's (`store::requests`).

use std::collections::{HashMap, HashSet};

use postgres::{Client, error::SqlState};

use super::{ChainWriter, PgStore, keys::find_key, sealing, statements::Statements};
use crate::{
    avro::SchemaFingerprint,
    sealed::MasterKey,
    store::{
        AuditEntry, Committed, Nonce, RequestGroup, RequestStore, SeenId, SeenNonce, StoreError,
        StoredKey, secrets::explain_unopened,
    },
};

/// Starts a group. READ COMMITTED, whatever the database's default: every read sees what was committed before it.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// The accepted request that used a nonce with a key, as the checks read it.
const FIND_NONCE: &str = "SELECT n.audit_id, n.signature, a.records
     FROM nonces n JOIN audit a ON a.id = n.audit_id
     WHERE n.key_id = $1 AND n.nonce = $2";

/// A group's nonces in one statement; those already stored come back missing, which is the race.
const INSERT_NONCES: &str = "INSERT INTO nonces (key_id, nonce, timestamp, audit_id, signature)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
     ON CONFLICT DO NOTHING
     RETURNING audit_id";

/// The accepted request that carried a request id with a key, as the checks read it.
const FIND_REQUEST_ID: &str = "SELECT r.audit_id, r.payload_digest, a.records
     FROM request_ids r JOIN audit a ON a.id = r.audit_id
     WHERE r.key_id = $1 AND r.id = $2";

/// A group's request ids in one statement, after its audit rows; those already stored come back missing, which is
/// the race, as for nonces.
const INSERT_REQUEST_IDS: &str = "INSERT INTO request_ids (key_id, id, audit_id, payload_digest)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
     ON CONFLICT DO NOTHING
     RETURNING audit_id";

/// A schema seen for the first time, unless another writer added it first.
const INSERT_SCHEMA: &str = "INSERT INTO schemas (fingerprint, canonical, schema, first_seen_us)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (fingerprint) DO NOTHING
     RETURNING id";

/// The id of a schema already stored.
const FIND_SCHEMA: &str = "SELECT id FROM schemas WHERE fingerprint = $1";

/// Raises the recorded nonce window to $1 if that is larger; the row lock ON CONFLICT takes makes two servers
/// starting at once take turns, so neither loses the larger. Returns the window recorded after it.
const WIDEN_NONCE_WINDOW: &str =
    "INSERT INTO nonce_window (singleton, max_skew_secs) VALUES (TRUE, $1)
     ON CONFLICT (singleton) DO UPDATE
         SET max_skew_secs = GREATEST(nonce_window.max_skew_secs, EXCLUDED.max_skew_secs)
     RETURNING max_skew_secs";

/// Forgets nonces older than the database's clock minus the recorded window and a margin ($1): one clock for
/// every server sharing the database, however far their own clocks are apart. Should the window's row be gone,
/// the largest window any server may use ($2) stands in, which forgets nothing needed.
const PRUNE_NONCES: &str = "DELETE FROM nonces WHERE timestamp < extract(epoch FROM now())::bigint
     - $1::bigint - COALESCE((SELECT max_skew_secs FROM nonce_window), $2::bigint)";

impl RequestStore for PgStore {
    type Group<'s> = PgGroup<'s>;

    /// A connection found closed (the database restarted, say) is replaced first, if the back-off allows.
    fn begin_group(&mut self) -> Result<PgGroup<'_>, StoreError> {
        self.ensure_connected()?;
        if let Err(e) = self.client.batch_execute(BEGIN) {
            // A connection that broke since it was last used shows it only now: replace it and begin again.
            if !self.client.is_closed() {
                return Err(e.into());
            }
            self.ensure_connected()?;
            self.client.batch_execute(BEGIN)?;
        }
        Ok(PgGroup {
            client: &mut self.client,
            statements: &mut self.statements,
            url: self.url.to_string(),
            master: self.master.as_ref(),
            schema_ids: &mut self.schema_ids,
            open: true,
            failed: false,
            chain: None,
            nonces: Vec::new(),
            nonces_seen: HashSet::new(),
            request_ids: Vec::new(),
            request_ids_seen: HashSet::new(),
            new_schema_ids: Vec::new(),
        })
    }

    fn widen_nonce_window(&mut self, max_skew_secs: i64) -> Result<i64, StoreError> {
        self.ensure_connected()?;
        let widen = self.statements.get(&mut self.client, WIDEN_NONCE_WINDOW)?;
        Ok(self
            .client
            .query_one(&widen, &[&max_skew_secs])?
            .try_get(0)?)
    }

    fn prune_nonces(&mut self, margin_secs: i64) -> Result<usize, StoreError> {
        self.ensure_connected()?;
        let prune = self.statements.get(&mut self.client, PRUNE_NONCES)?;
        let removed = self
            .client
            .execute(&prune, &[&margin_secs, &crate::cli::MAX_SKEW_LIMIT_SECS])?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    /// A database is never replaced under the server as a file can be.
    fn still_in_place(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn answers(&mut self) -> Result<(), StoreError> {
        self.ensure_connected()?;
        let standby: bool = self
            .client
            .query_one("SELECT pg_is_in_recovery()", &[])?
            .try_get(0)?;
        if standby {
            return Err(StoreError::PgDown {
                url: self.url.to_string(),
                reason: "it is a read-only standby (in recovery) now".into(),
            });
        }
        Ok(())
    }

    /// The whole database's (`pg_database_size`): zavro's tables and their indexes, and anything else in it.
    fn size_on_disk(&mut self) -> Result<u64, StoreError> {
        self.ensure_connected()?;
        let bytes: i64 = self
            .client
            .query_one("SELECT pg_database_size(current_database())", &[])?
            .try_get(0)?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }
}

/// The PostgreSQL group: checks read through it at once; its rows wait in memory until
/// [`RequestGroup::commit`]. Dropped without commit, it is rolled back.
pub struct PgGroup<'s> {
    client: &'s mut Client,
    statements: &'s mut Statements,
    /// The store's URL, without password, for messages.
    url: String,
    /// The master key that opens the secrets the group reads.
    master: Option<&'s MasterKey>,
    /// The ids of schemas committed before, by fingerprint; a schema seen before costs no statement.
    schema_ids: &'s mut HashMap<String, i64>,
    /// True until the transaction is committed or rolled back.
    open: bool,
    /// True once a statement of the group failed: PostgreSQL then refuses the rest of the transaction, and a
    /// COMMIT would quietly roll it back, so the group must not be committed.
    failed: bool,
    /// The chain, locked at the group's first write; `None` until then.
    chain: Option<ChainWriter>,
    /// The nonces of the requests to store, written at commit.
    nonces: Vec<PendingNonce>,
    /// (key, nonce) of those, so the group refuses a second use of a nonce as the primary key would.
    nonces_seen: HashSet<(String, String)>,
    /// The request ids of the requests to store that have one, written at commit.
    request_ids: Vec<PendingRequestId>,
    /// (key, id) of those, so the group refuses a second use of an id as the primary key would.
    request_ids_seen: HashSet<(String, String)>,
    /// Schemas this group added, known to `schema_ids` only once it commits.
    new_schema_ids: Vec<(String, i64)>,
}

/// A nonce to store with the audit row of its request.
struct PendingNonce {
    key_id: String,
    nonce: String,
    timestamp: i64,
    audit_id: i64,
    signature: String,
}

/// A request id to store with the audit row of its request.
struct PendingRequestId {
    key_id: String,
    id: String,
    audit_id: i64,
    payload_digest: String,
}

impl RequestGroup for PgGroup<'_> {
    fn key(&mut self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.usable()?;
        match find_key(self.client, self.statements, &self.url, id, self.master) {
            // A secret that does not open fails its own requests only: no statement failed, so the
            // transaction goes on for the rest of the group, as on SQLite. A store resealed since this server
            // started says so, rather than blaming the row.
            Err(e @ StoreError::Seal(_)) => match self.master {
                Some(held) => {
                    let recorded = sealing::sealed_under(self.client, self.statements);
                    Err(explain_unopened(e, self.noting_failure(recorded)?, held))
                }
                None => Err(e),
            },
            found => self.noting_failure(found),
        }
    }

    fn nonce(&mut self, key_id: &str, nonce: &str) -> Result<Option<SeenNonce>, StoreError> {
        self.usable()?;
        let found = find_nonce(self.client, self.statements, key_id, nonce);
        self.noting_failure(found)
    }

    fn request_id(&mut self, key_id: &str, id: &str) -> Result<Option<SeenId>, StoreError> {
        self.usable()?;
        let found = find_request_id(self.client, self.statements, key_id, id);
        self.noting_failure(found)
    }

    /// Nothing is written yet: the row is linked into the chain (whose lock the first write takes) and the
    /// nonce (and request id) kept for the commit, which finds out whether another server stored it meanwhile.
    fn append_accepted(
        &mut self,
        entry: &AuditEntry,
        nonce: &Nonce,
        payload_json: &str,
    ) -> Result<Committed, StoreError> {
        self.usable()?;
        let key_id = entry.key_id.unwrap_or_default();
        let id_taken = nonce.request_id.is_some_and(|request_id| {
            self.request_ids_seen
                .contains(&(key_id.to_owned(), request_id.id.to_owned()))
        });
        if id_taken
            || !self
                .nonces_seen
                .insert((key_id.to_owned(), nonce.nonce.to_owned()))
        {
            return Ok(Committed::Replay);
        }
        let schema_id = self.schema_id(entry)?;
        let chain = self.chain()?;
        let audit_id = chain.append(entry, schema_id, Some(payload_json));
        if let Some(request_id) = nonce.request_id {
            self.request_ids_seen
                .insert((key_id.to_owned(), request_id.id.to_owned()));
            self.request_ids.push(PendingRequestId {
                key_id: key_id.to_owned(),
                id: request_id.id.to_owned(),
                audit_id,
                payload_digest: request_id.payload_digest.to_owned(),
            });
        }
        self.nonces.push(PendingNonce {
            key_id: key_id.to_owned(),
            nonce: nonce.nonce.to_owned(),
            timestamp: nonce.timestamp,
            audit_id,
            signature: nonce.signature.to_owned(),
        });
        Ok(Committed::Stored(audit_id))
    }

    fn append(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        self.usable()?;
        let schema_id = self.schema_id(entry)?;
        Ok(self.chain()?.append(entry, schema_id, None))
    }

    fn commit(mut self) -> Result<(), StoreError> {
        self.usable()?;
        let written = self.write();
        self.noting_failure(written)?;
        let committed = self.client.batch_execute("COMMIT");
        // Whatever COMMIT answered, the transaction is over: nothing is left to roll back.
        self.open = false;
        committed?;
        let new = std::mem::take(&mut self.new_schema_ids);
        self.schema_ids.extend(new);
        Ok(())
    }
}

impl Drop for PgGroup<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing of an uncommitted group is kept. On a broken connection the server rolled it back
            // already; the error is of no interest.
            let _ = self.client.batch_execute("ROLLBACK");
        }
        if self.failed {
            // A schema removed under the group may be why: its cached id is read again next time.
            self.schema_ids.clear();
        }
    }
}

impl PgGroup<'_> {
    /// Fails once a statement of the group failed: PostgreSQL refuses the rest of such a transaction.
    fn usable(&self) -> Result<(), StoreError> {
        if self.failed {
            Err(StoreError::TransactionLost)
        } else {
            Ok(())
        }
    }

    /// Marks the group failed when `result` is an error, and turns the errors that mean "another writer got
    /// there between this group's reads and its writes" into [`StoreError::Raced`].
    fn noting_failure<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        result.map_err(|e| {
            self.failed = true;
            match &e {
                StoreError::Postgres(error)
                    if error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) =>
                {
                    StoreError::Raced
                }
                _ => e,
            }
        })
    }

    /// The chain, locked now if this is the group's first write.
    fn chain(&mut self) -> Result<&mut ChainWriter, StoreError> {
        if self.chain.is_none() {
            let locked = ChainWriter::lock(self.client, self.statements).map_err(StoreError::from);
            self.chain = Some(self.noting_failure(locked)?);
        }
        self.chain.as_mut().ok_or(StoreError::TransactionLost)
    }

    /// Writes the group's nonces (a nonce stored meanwhile by another server is [`StoreError::Raced`]), its audit
    /// rows, payloads and the chain's head.
    fn write(&mut self) -> Result<(), StoreError> {
        let Some(chain) = self.chain.take() else {
            return Ok(());
        };
        if !self.nonces.is_empty() {
            let nonces = &self.nonces;
            let key_ids: Vec<&str> = nonces.iter().map(|n| n.key_id.as_str()).collect();
            let values: Vec<&str> = nonces.iter().map(|n| n.nonce.as_str()).collect();
            let timestamps: Vec<i64> = nonces.iter().map(|n| n.timestamp).collect();
            let audit_ids: Vec<i64> = nonces.iter().map(|n| n.audit_id).collect();
            let signatures: Vec<&str> = nonces.iter().map(|n| n.signature.as_str()).collect();
            let insert = self.statements.get(self.client, INSERT_NONCES)?;
            let inserted = self.client.query(
                &insert,
                &[&key_ids, &values, &timestamps, &audit_ids, &signatures],
            )?;
            if inserted.len() != nonces.len() {
                return Err(StoreError::Raced);
            }
        }
        chain.write(self.client, self.statements)?;
        // After the audit rows, which the ids reference.
        if !self.request_ids.is_empty() {
            let ids = &self.request_ids;
            let key_ids: Vec<&str> = ids.iter().map(|r| r.key_id.as_str()).collect();
            let values: Vec<&str> = ids.iter().map(|r| r.id.as_str()).collect();
            let audit_ids: Vec<i64> = ids.iter().map(|r| r.audit_id).collect();
            let digests: Vec<&str> = ids.iter().map(|r| r.payload_digest.as_str()).collect();
            let insert = self.statements.get(self.client, INSERT_REQUEST_IDS)?;
            let inserted = self
                .client
                .query(&insert, &[&key_ids, &values, &audit_ids, &digests])?;
            if inserted.len() != ids.len() {
                return Err(StoreError::Raced);
            }
        }
        Ok(())
    }

    /// The `schemas` row of the entry's schema, added if new (under the chain's lock, like every write).
    fn schema_id(&mut self, entry: &AuditEntry) -> Result<Option<i64>, StoreError> {
        let Some(schema) = entry.schema else {
            return Ok(None);
        };
        let fingerprint = &schema.fingerprint;
        let known = self.schema_ids.get(fingerprint).copied().or_else(|| {
            let new = self.new_schema_ids.iter().find(|(f, _)| f == fingerprint);
            new.map(|(_, id)| *id)
        });
        if let Some(id) = known {
            return Ok(Some(id));
        }
        self.chain()?;
        let found = remember_schema(self.client, self.statements, schema, entry.time_us);
        let id = self.noting_failure(found)?;
        self.new_schema_ids.push((fingerprint.clone(), id));
        Ok(Some(id))
    }
}

/// The accepted request that used this nonce with this key, if it is still inside the replay window.
fn find_nonce(
    client: &mut Client,
    statements: &mut Statements,
    key_id: &str,
    nonce: &str,
) -> Result<Option<SeenNonce>, StoreError> {
    let find = statements.get(client, FIND_NONCE)?;
    let Some(row) = client.query_opt(&find, &[&key_id, &nonce])? else {
        return Ok(None);
    };
    Ok(Some(SeenNonce {
        audit_id: row.try_get(0)?,
        signature: row.try_get(1)?,
        records: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
    }))
}

/// The accepted request that carried this request id with this key, while its audit row is kept.
fn find_request_id(
    client: &mut Client,
    statements: &mut Statements,
    key_id: &str,
    id: &str,
) -> Result<Option<SeenId>, StoreError> {
    let find = statements.get(client, FIND_REQUEST_ID)?;
    let Some(row) = client.query_opt(&find, &[&key_id, &id])? else {
        return Ok(None);
    };
    Ok(Some(SeenId {
        audit_id: row.try_get(0)?,
        payload_digest: row.try_get(1)?,
        records: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
    }))
}

/// The id of a schema in `schemas`, added the first time it is seen.
fn remember_schema(
    client: &mut Client,
    statements: &mut Statements,
    schema: &SchemaFingerprint,
    time_us: i64,
) -> Result<i64, StoreError> {
    let insert = statements.get(client, INSERT_SCHEMA)?;
    let added = client.query_opt(
        &insert,
        &[
            &schema.fingerprint,
            &schema.canonical,
            &schema.text,
            &time_us,
        ],
    )?;
    let row = match added {
        Some(row) => row,
        None => {
            let find = statements.get(client, FIND_SCHEMA)?;
            client.query_one(&find, &[&schema.fingerprint])?
        }
    };
    Ok(row.try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        KeyStore, Store,
        postgres::tests::{fresh_store, master, verify_chain, wait_until},
    };

    fn nonce(nonce: &str, timestamp: i64) -> Nonce<'_> {
        Nonce {
            nonce,
            timestamp,
            signature: "sig",
            request_id: None,
        }
    }

    fn accepted(time_us: i64) -> AuditEntry<'static> {
        AuditEntry {
            records: 2,
            size: 100,
            ..AuditEntry::test_send(time_us)
        }
    }

    /// The nonce as a group's checks read it, outside any other group.
    fn find(store: &mut PgStore, nonce: &str) -> Option<SeenNonce> {
        let mut group = store.begin_group().unwrap();
        group.nonce("ZK1", nonce).unwrap()
    }

    /// One accepted request in a group of its own.
    fn commit_accepted(
        store: &mut PgStore,
        entry: &AuditEntry,
        nonce: &Nonce,
        payload: &str,
    ) -> Result<Committed, StoreError> {
        let mut group = store.begin_group()?;
        let committed = group.append_accepted(entry, nonce, payload)?;
        group.commit()?;
        Ok(committed)
    }

    /// (audit id, payload) of every stored payload, by id.
    fn payloads(store: &mut PgStore) -> Vec<(i64, String)> {
        store
            .client()
            .query("SELECT audit_id, json FROM payloads ORDER BY audit_id", &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    #[test]
    fn a_nonce_commits_once_and_its_payload_is_kept() {
        let Some(mut store) = fresh_store(Some(master(1))) else {
            return;
        };
        store
            .add_key("ZK1", "secret-secret-secret", None, None, 1)
            .unwrap();
        assert_eq!(find(&mut store, "n1"), None);
        let Committed::Stored(id) =
            commit_accepted(&mut store, &accepted(5), &nonce("n1", 100), "[1,2]").unwrap()
        else {
            panic!("first use of a nonce must be stored");
        };
        assert_eq!(
            find(&mut store, "n1"),
            Some(SeenNonce {
                audit_id: id,
                signature: Some("sig".into()),
                records: 2
            })
        );
        // Stored by an earlier group, a nonce is found at the commit (the checks read it first, so only a race
        // gets there): nothing of the group is kept.
        let again = commit_accepted(&mut store, &accepted(6), &nonce("n1", 100), "[3]");
        assert!(matches!(again, Err(StoreError::Raced)), "{again:?}");
        assert_eq!(payloads(&mut store), [(id, "[1,2]".to_owned())]);
        let keys = store.list_keys().unwrap();
        assert_eq!((keys[0].last_used_us, keys[0].requests), (Some(5), 1));
        assert_eq!(verify_chain(&mut store).unwrap().rows, 2);
        // The group that raced left the chain's head where it was.
        commit_accepted(&mut store, &accepted(7), &nonce("n2", 100), "[4]").unwrap();
        assert_eq!(verify_chain(&mut store).unwrap().rows, 3);
    }

    #[test]
    fn a_group_commits_all_or_nothing_and_chains_as_sqlite_does() {
        let Some(mut pg) = fresh_store(Some(master(1))) else {
            return;
        };
        let mut sqlite = Store::open_in_memory().unwrap();
        {
            let mut group = pg.begin_group().unwrap();
            group
                .append_accepted(&accepted(1), &nonce("a", 100), "[1]")
                .unwrap();
            // Dropped without commit: rolled back.
        }
        assert_eq!(find(&mut pg, "a"), None);
        let refused = AuditEntry {
            status: crate::store::Status::Rejected,
            reason: Some("bad_signature"),
            detail: Some("the signature does not match"),
            ..AuditEntry::test_send(4)
        };

        let results = [
            the_group(&mut pg, &refused),
            the_group(&mut sqlite, &refused),
        ];
        assert_eq!(
            results[0].as_ref().unwrap(),
            &[
                Committed::Stored(1),
                Committed::Replay,
                Committed::Stored(2),
                Committed::Stored(3)
            ]
        );
        assert_eq!(results[0].as_ref().unwrap(), results[1].as_ref().unwrap());
        assert_eq!(
            payloads(&mut pg),
            [(1, "[1]".to_owned()), (2, "[3]".to_owned())]
        );
        assert_eq!(
            verify_chain(&mut pg).unwrap().head,
            sqlite.verify_audit(None).unwrap().unwrap().head,
            "the same rows hash the same on both backends"
        );
    }

    /// The same group on either backend: a request stored, its nonce used again, another stored, a refusal.
    fn the_group<S: RequestStore>(
        store: &mut S,
        refused: &AuditEntry,
    ) -> Result<Vec<Committed>, StoreError> {
        let mut group = store.begin_group()?;
        let mut out = vec![
            group.append_accepted(&accepted(1), &nonce("a", 100), "[1]")?,
            group.append_accepted(&accepted(2), &nonce("a", 100), "[2]")?,
            group.append_accepted(&accepted(3), &nonce("b", 100), "[3]")?,
        ];
        out.push(Committed::Stored(group.append(refused)?));
        group.commit()?;
        Ok(out)
    }

    #[test]
    fn pruning_forgets_only_old_nonces() {
        let Some(mut store) = fresh_store(Some(master(1))) else {
            return;
        };
        // Relative to the database's clock, which this host shares.
        let now = crate::timestamp::now_seconds();
        commit_accepted(&mut store, &accepted(1), &nonce("old", now - 1000), "[]").unwrap();
        commit_accepted(&mut store, &accepted(2), &nonce("new", now - 10), "[]").unwrap();
        // The store's window is the default 300 s: 360 s with the margin.
        assert_eq!(store.prune_nonces(60).unwrap(), 1);
        assert_eq!(find(&mut store, "old"), None);
        assert!(find(&mut store, "new").is_some());
    }

    /// The window recorded in the database.
    fn nonce_window(store: &mut PgStore) -> i64 {
        store
            .client()
            .query_one("SELECT max_skew_secs FROM nonce_window", &[])
            .unwrap()
            .get(0)
    }

    #[test]
    fn pruning_keeps_the_nonces_inside_the_recorded_window_whatever_the_servers_own_skew() {
        let Some(mut store) = fresh_store(Some(master(1))) else {
            return;
        };
        // A server with --max-skew 3000 started on the store, then one with 60.
        assert_eq!(store.widen_nonce_window(3000).unwrap(), 3000);
        assert_eq!(store.widen_nonce_window(60).unwrap(), 3000);
        // Relative to the database's clock, which this host shares.
        let now = crate::timestamp::now_seconds();
        for (id, (name, age)) in [("inside", 2900), ("in-margin", 3050), ("outside", 3200)]
            .into_iter()
            .enumerate()
        {
            commit_accepted(
                &mut store,
                &accepted(id as i64),
                &nonce(name, now - age),
                "[]",
            )
            .unwrap();
        }
        // The server with --max-skew 60 prunes: by the recorded 3000 s plus a 100 s margin, not by its 60.
        assert_eq!(store.prune_nonces(100).unwrap(), 1);
        assert!(find(&mut store, "inside").is_some());
        assert!(find(&mut store, "in-margin").is_some());
        assert_eq!(find(&mut store, "outside"), None);
    }

    #[test]
    fn the_recorded_nonce_window_never_decreases() {
        let Some(mut store) = fresh_store(Some(master(1))) else {
            return;
        };
        assert_eq!(nonce_window(&mut store), 300, "the default --max-skew");
        for (skew, recorded) in [
            (60, 300),
            (300, 300),
            (1000, 1000),
            (600, 1000),
            (86_400, 86_400),
            (1, 86_400),
        ] {
            assert_eq!(store.widen_nonce_window(skew).unwrap(), recorded, "{skew}");
            assert_eq!(nonce_window(&mut store), recorded, "{skew}");
        }
    }

    #[test]
    fn a_group_whose_transaction_postgres_aborted_is_never_committed() {
        let Some(mut store) = fresh_store(Some(master(1))) else {
            return;
        };
        let mut group = store.begin_group().unwrap();
        group
            .append_accepted(&accepted(1), &nonce("a", 100), "[1]")
            .unwrap();
        // A statement that fails aborts the transaction; PostgreSQL would answer COMMIT with a quiet ROLLBACK.
        group.client.batch_execute("SELECT 1/0").unwrap_err();
        assert!(group.nonce("ZK1", "x").is_err());
        let lost = group.append_accepted(&accepted(2), &nonce("b", 100), "[2]");
        assert!(matches!(lost, Err(StoreError::TransactionLost)), "{lost:?}");
        assert!(matches!(group.commit(), Err(StoreError::TransactionLost)));
        assert_eq!(find(&mut store, "a"), None);
        assert!(payloads(&mut store).is_empty());
        // The connection is fine for the next group.
        commit_accepted(&mut store, &accepted(3), &nonce("c", 100), "[3]").unwrap();
        assert_eq!(verify_chain(&mut store).unwrap().rows, 1);
    }

    #[test]
    fn a_nonce_another_server_commits_between_the_read_and_the_write_is_a_race_that_keeps_nothing()
    {
        let Some(mut a) = fresh_store(Some(master(1))) else {
            return;
        };
        let mut b = PgStore::connect(a.url()).unwrap();
        b.use_master_key(Some(master(1))).unwrap();

        // A checks its group: both nonces unused, no lock taken yet.
        let mut group_a = a.begin_group().unwrap();
        assert_eq!(group_a.nonce("ZK1", "shared").unwrap(), None);
        assert_eq!(group_a.nonce("ZK1", "own").unwrap(), None);
        // Meanwhile B checks and commits a group using the same nonce: A holds no lock, so B does not wait.
        let Committed::Stored(stored_by_b) =
            commit_accepted(&mut b, &accepted(10), &nonce("shared", 100), "[\"b\"]").unwrap()
        else {
            panic!("B stores it");
        };
        // A writes: the lock is free, its rows follow B's in the chain, and the nonce comes back taken.
        let own = group_a
            .append_accepted(&accepted(11), &nonce("own", 100), "[\"own\"]")
            .unwrap();
        assert_eq!(own, Committed::Stored(stored_by_b + 1));
        group_a
            .append_accepted(&accepted(11), &nonce("shared", 100), "[\"a\"]")
            .unwrap();
        let raced = group_a.commit();
        assert!(matches!(raced, Err(StoreError::Raced)), "{raced:?}");

        // Nothing of A's group was kept, not even the request that did not race; B's row is the one stored.
        assert_eq!(payloads(&mut a), [(stored_by_b, "[\"b\"]".to_owned())]);
        assert_eq!(find(&mut a, "own"), None);
        assert_eq!(
            find(&mut a, "shared").map(|s| s.audit_id),
            Some(stored_by_b)
        );
        assert_eq!(verify_chain(&mut a).unwrap().rows, 1);
        // A checked again sees the nonce as used; its other request is stored after B's row.
        let mut again = a.begin_group().unwrap();
        assert!(again.nonce("ZK1", "shared").unwrap().is_some());
        assert_eq!(
            again
                .append_accepted(&accepted(12), &nonce("own", 100), "[\"own\"]")
                .unwrap(),
            Committed::Stored(stored_by_b + 1)
        );
        again.commit().unwrap();
        assert_eq!(verify_chain(&mut a).unwrap().rows, 2);
    }

    #[test]
    fn writers_wait_for_the_chain_only_from_their_first_write() {
        let Some(mut a) = fresh_store(Some(master(1))) else {
            return;
        };
        let mut b = PgStore::connect(a.url()).unwrap();
        let mut watcher = PgStore::connect(a.url()).unwrap();
        // A has written (so holds the chain's lock); B can still begin a group and read.
        let mut group_a = a.begin_group().unwrap();
        group_a
            .append_accepted(&accepted(1), &nonce("a", 100), "[1]")
            .unwrap();
        let mut group_b = b.begin_group().unwrap();
        assert_eq!(
            group_b.nonce("ZK1", "a").unwrap(),
            None,
            "A's rows are not committed yet"
        );
        assert!(group_b.key("ZK1").unwrap().is_none());
        drop(group_b);
        // B's writer waits for A's commit, then chains after it.
        let b_pid: i32 = b
            .client()
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let waiting = std::thread::spawn(move || {
            let committed = commit_accepted(&mut b, &accepted(2), &nonce("b", 100), "[2]");
            (b, committed)
        });
        // A commits only once B is seen waiting for a lock: otherwise B could take the lock after A's commit and
        // the test would prove nothing about waiting.
        wait_until("B to wait for the chain's lock", || {
            watcher
                .client()
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
                    &[&b_pid],
                )
                .unwrap()
                .get::<_, i64>(0)
                > 0
        });
        group_a.commit().unwrap();
        let (_, committed) = waiting.join().unwrap();
        assert_eq!(committed.unwrap(), Committed::Stored(2));
        assert_eq!(verify_chain(&mut a).unwrap().rows, 2);
    }
}
