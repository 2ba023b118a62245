//! The audit hash chain (AUDIT.md): each row's hash covers the previous row's hash and the row's fields, so any
//! edit, deletion, insertion or reordering is found by walking the chain.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::avro::{canonical_form, fingerprint_of_canonical};

/// The `prev_hash` of the first row: 32 zero bytes, in hex.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an audit row that its hash covers, in the order they are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedFields<'a> {
    /// Row id.
    pub id: i64,
    /// Time in µs since the epoch.
    pub time_us: i64,
    /// Action.
    pub action: &'a str,
    /// `accepted` or `rejected`.
    pub status: &'a str,
    /// Reject code.
    pub reason: Option<&'a str>,
    /// Human detail.
    pub detail: Option<&'a str>,
    /// Key id.
    pub key_id: Option<&'a str>,
    /// Peer address.
    pub peer: Option<&'a str>,
    /// Record count.
    pub records: i64,
    /// Request size.
    pub size: i64,
    /// SHA-256 (hex) of the stored payload text.
    pub payload_sha256: Option<&'a str>,
    /// Fingerprint of the row's Avro writer schema; hashed only when there is one, so rows without (and rows
    /// written before schema version 6) hash as they always did.
    pub schema: Option<&'a str>,
    /// How many requests the row stands for; hashed only when not 1, so every older row hashes as it did.
    pub requests: i64,
    /// How the request reached the server (`curve`, `plaintext`); hashed only when there is one, so rows without
    /// (local actions, and every row written before schema version 8) hash as they did.
    pub transport: Option<&'a str>,
}

impl ChainedFields<'_> {
    /// `SHA-256(prev_hash bytes ‖ encoding)`, in lowercase hex. The encoding is AUDIT.md's, byte for byte.
    pub fn hash(&self, prev_hash_hex: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash_hex.as_bytes());
        h.update(b"\n");
        h.update(self.id.to_be_bytes());
        h.update(self.time_us.to_be_bytes());
        for text in [
            Some(self.action),
            Some(self.status),
            self.reason,
            self.detail,
            self.key_id,
            self.peer,
        ] {
            encode_text(&mut h, text);
        }
        h.update(self.records.to_be_bytes());
        h.update(self.size.to_be_bytes());
        encode_text(&mut h, self.payload_sha256);
        if self.schema.is_some() {
            encode_text(&mut h, self.schema);
        }
        if self.requests != 1 {
            h.update([2u8]);
            h.update(self.requests.to_be_bytes());
        }
        if self.transport.is_some() {
            h.update([3u8]);
            encode_text(&mut h, self.transport);
        }
        hex::encode(h.finalize())
    }
}

/// NULL is one 0x00 byte; text is 0x01, its UTF-8 length as 4 bytes big-endian, then the bytes.
fn encode_text(h: &mut Sha256, text: Option<&str>) {
    match text {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            h.update(u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// SHA-256 (hex) of a stored payload's text.
pub fn payload_sha256(json: &str) -> String {
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// The newest checkpoint left by pruning: (last pruned row id, its hash).
fn last_checkpoint(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT last_row, last_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
}

/// Where the next audit row goes: the id AUTOINCREMENT would give it, and the hash it follows.
pub struct Link {
    /// The new row's id: past every id ever handed out, so ids are never reused.
    pub id: i64,
    /// The newest row's hash; the newest checkpoint's when pruning removed every row; [`GENESIS`] at the start.
    pub prev_hash: String,
}

/// The [`Link`] for the next row; the caller holds the write transaction until that row is inserted.
pub fn next_link(conn: &Connection) -> rusqlite::Result<Link> {
    // AUTOINCREMENT's rule: one past the larger of the highest id ever issued and the highest id present.
    let (id, newest_hash): (i64, Option<String>) = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0),
                        coalesce((SELECT max(id) FROM audit), 0)) + 1,
                    (SELECT hash FROM audit ORDER BY id DESC LIMIT 1)",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let prev_hash = match newest_hash {
        Some(hash) => hash,
        None => last_checkpoint(conn)?.map_or_else(|| GENESIS.to_owned(), |(_, hash)| hash),
    };
    Ok(Link { id, prev_hash })
}

/// Sets `prev_hash` and `hash` of the existing row `id`: how migration 2 chains the rows written before the
/// chain existed.
fn backfill_seal(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    let prev: String = conn
        .prepare_cached("SELECT hash FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([id], |row| row.get(0))
        .optional()?
        .map_or_else(
            || last_checkpoint(conn).map(|c| c.map_or_else(|| GENESIS.to_owned(), |(_, h)| h)),
            Ok,
        )?;
    let mut stmt = conn.prepare_cached(BACKFILL_SELECT)?;
    let mut rows = stmt.query([id])?;
    let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let hash = fields_of(row)?.hash(&prev);
    conn.prepare_cached("UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3")?
        .execute(params![prev, hash, id])?;
    Ok(())
}

/// The hashed columns of `audit`, in `ChainedFields` order, ending with `$schema`, `$requests` and
/// `$transport`: the expressions that give the row's schema fingerprint, request count and transport (older
/// stores have none of these columns). A macro so the SELECTs below are literals, built at compile time.
macro_rules! hashed_columns {
    ($schema:expr, $requests:expr, $transport:expr) => {
        concat!(
            "id, time_us, action, status, reason, detail, key_id, peer, records, size, payload_sha256, ",
            $schema,
            ", ",
            $requests,
            ", ",
            $transport
        )
    };
}

/// The row's schema fingerprint, by its `schemas` row.
macro_rules! schema_fingerprint {
    () => {
        "(SELECT fingerprint FROM schemas WHERE schemas.id = audit.schema_id)"
    };
}

/// The hashed columns, for `verify`'s walk over every row.
const FIELDS: &str = hashed_columns!(schema_fingerprint!(), "requests", "transport");

/// The hashed columns of one row as migration 2's backfill reads them: it runs on stores older than version 6,
/// which have no schemas.
const BACKFILL_SELECT: &str = concat!(
    "SELECT ",
    hashed_columns!("NULL", "1", "NULL"),
    " FROM audit WHERE id = ?1"
);

/// Reads the hashed fields from a row selected with the `FIELDS` columns, in order.
fn fields_of<'r>(row: &'r rusqlite::Row) -> rusqlite::Result<ChainedFields<'r>> {
    let text = |i| {
        row.get_ref(i)
            .and_then(|v| v.as_str_or_null().map_err(Into::into))
    };
    Ok(ChainedFields {
        id: row.get(0)?,
        time_us: row.get(1)?,
        action: text(2)?.unwrap_or_default(),
        status: text(3)?.unwrap_or_default(),
        reason: text(4)?,
        detail: text(5)?,
        key_id: text(6)?,
        peer: text(7)?,
        records: row.get(8)?,
        size: row.get(9)?,
        payload_sha256: text(10)?,
        schema: text(11)?,
        requests: row.get(12)?,
        transport: text(13)?,
    })
}

/// Chains the rows written before the chain existed (migration 2's hook, so with the columns of version 2),
/// with the same encoding as new rows.
pub fn backfill(conn: &Connection) -> rusqlite::Result<()> {
    let payloads: Vec<(i64, String)> = conn
        .prepare("SELECT audit_id, json FROM payloads")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, json) in payloads {
        conn.execute(
            "UPDATE audit SET payload_sha256 = ?1 WHERE id = ?2",
            params![payload_sha256(&json), id],
        )?;
    }
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM audit ORDER BY id")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        backfill_seal(conn, id)?;
    }
    Ok(())
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The row's fields (or its payload) no longer give its stored hash: it was edited.
    #[error("row #{id} was altered: {what}")]
    Altered {
        /// The row.
        id: i64,
        /// What no longer matches.
        what: String,
    },
    /// The row does not follow the row before it: rows were deleted, inserted or reordered there.
    #[error("row #{id} does not follow {after}: rows were deleted, inserted or reordered there")]
    Link {
        /// The first row after the break.
        id: i64,
        /// What it should follow (`row #N`, `the start`, or `the pruning checkpoint at #N`).
        after: String,
    },
    /// The newest rows are gone: SQLite's id counter is past the newest row.
    #[error("rows after #{newest} were deleted (ids were handed out up to #{issued})")]
    Truncated {
        /// The newest remaining row.
        newest: i64,
        /// The highest id SQLite ever handed out.
        issued: i64,
    },
    /// The recorded head is not part of today's chain.
    #[error("the recorded head {row}:{hash} is not in the chain{}", found.as_ref().map(|h| format!(" (row #{row} now hashes to {h})")).unwrap_or_else(|| format!(" (row #{row} is gone)")))]
    HeadMismatch {
        /// The recorded row id.
        row: i64,
        /// The recorded hash.
        hash: String,
        /// What that row hashes to now, if it still exists.
        found: Option<String>,
    },
    /// A schema's stored text or canonical form no longer gives its fingerprint, which the rows' hashes cover.
    #[error("schema {fingerprint} was altered: {what}")]
    SchemaAltered {
        /// The fingerprint the rows name.
        fingerprint: String,
        /// What no longer matches.
        what: String,
    },
    /// The recorded head was removed by `audit prune`, so the chain can no longer be compared with it.
    #[error(
        "the recorded head #{row} was pruned (rows up to #{through} were removed by `zavro audit prune`), so it \
         cannot be checked; verify against a head recorded after the prune"
    )]
    HeadPruned {
        /// The recorded row id.
        row: i64,
        /// The newest row pruned so far.
        through: i64,
    },
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Rows checked.
    pub rows: u64,
    /// The newest row id and hash (`None` for an empty trail).
    pub head: Option<(i64, String)>,
}

/// Walks the whole chain; with `against`, also checks that the recorded head (row id, hash) is still in it.
pub fn verify(
    conn: &Connection,
    against: Option<(i64, &str)>,
) -> Result<Result<Verified, ChainBreak>, StoreError> {
    if let Some(broken) = verify_schemas(conn)? {
        return Ok(Err(broken));
    }
    let checkpoint = last_checkpoint(conn)?;
    let (mut prev, mut after) = match &checkpoint {
        Some((row, hash)) => (hash.clone(), format!("the pruning checkpoint at #{row}")),
        None => (GENESIS.to_owned(), "the start".to_owned()),
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {FIELDS}, prev_hash, hash, (SELECT json FROM payloads WHERE audit_id = audit.id)
         FROM audit ORDER BY id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut checked = 0u64;
    let mut head = None;
    let mut against_found = None;
    while let Some(row) = rows.next()? {
        let fields = fields_of(row)?;
        let stored_prev: Option<String> = row.get(14)?;
        let stored_hash: Option<String> = row.get(15)?;
        let payload: Option<String> = row.get(16)?;
        let id = fields.id;
        if stored_prev.as_deref() != Some(prev.as_str()) {
            return Ok(Err(ChainBreak::Link { id, after }));
        }
        let payload_digest = payload.as_deref().map(payload_sha256);
        if payload_digest.as_deref() != fields.payload_sha256 {
            let what = match payload {
                Some(_) => "its stored payload was changed or added",
                None => "its stored payload was deleted",
            };
            return Ok(Err(ChainBreak::Altered {
                id,
                what: what.into(),
            }));
        }
        let hash = fields.hash(&prev);
        if stored_hash.as_deref() != Some(hash.as_str()) {
            return Ok(Err(ChainBreak::Altered {
                id,
                what: "its fields no longer match its hash".into(),
            }));
        }
        if against.is_some_and(|(row, _)| row == id) {
            against_found = Some(hash.clone());
        }
        checked += 1;
        after = format!("row #{id}");
        head = Some((id, hash.clone()));
        prev = hash;
    }
    let issued: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let newest = head
        .as_ref()
        .map(|(id, _)| *id)
        .or(checkpoint.as_ref().map(|(row, _)| *row))
        .unwrap_or(0);
    if issued > newest {
        return Ok(Err(ChainBreak::Truncated { newest, issued }));
    }
    if let Some((row, hash)) = against {
        let in_checkpoint = checkpoint
            .as_ref()
            .is_some_and(|(r, h)| *r == row && h == hash);
        if let Some((through, _)) = checkpoint.as_ref().filter(|(r, _)| row < *r) {
            return Ok(Err(ChainBreak::HeadPruned {
                row,
                through: *through,
            }));
        }
        if against_found.as_deref() != Some(hash) && !in_checkpoint {
            return Ok(Err(ChainBreak::HeadMismatch {
                row,
                hash: hash.to_owned(),
                found: against_found,
            }));
        }
    }
    Ok(Ok(Verified {
        rows: checked,
        head,
    }))
}

/// Checks that each stored schema's text still has its canonical form, and that form its fingerprint: the rows'
/// hashes cover only the fingerprint.
fn verify_schemas(conn: &Connection) -> Result<Option<ChainBreak>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT fingerprint, canonical, schema FROM schemas ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (fingerprint, canonical, text): (String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?);
        let altered = |what: &str| {
            Ok(Some(ChainBreak::SchemaAltered {
                fingerprint: fingerprint.clone(),
                what: what.into(),
            }))
        };
        if fingerprint_of_canonical(&canonical) != fingerprint {
            return altered("its canonical form does not give its fingerprint");
        }
        match apache_avro::Schema::parse_str(&text) {
            Ok(schema) if canonical_form(&schema) == canonical => {}
            _ => return altered("its text does not give its canonical form"),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEntry, Status, Store};

    /// A store with five chained rows: two key actions, two accepted requests with payloads, one rejection.
    fn populated() -> Store {
        let nonce = |nonce| crate::store::Nonce {
            nonce,
            timestamp: 1,
            signature: "sig",
        };
        let mut store = Store::open_in_memory().unwrap();
        store
            .add_key("ZK1", "secret-secret-secret", None, 1)
            .unwrap();
        let mut entry = AuditEntry::test_send(2);
        store
            .commit_accepted(&entry, &nonce("nonce-0000000001"), "[1]")
            .unwrap();
        entry.time_us = 3;
        store
            .commit_accepted(&entry, &nonce("nonce-0000000002"), "[2]")
            .unwrap();
        entry.status = Status::Rejected;
        entry.reason = Some("bad_signature");
        store.record(&entry).unwrap();
        store.revoke_key("ZK1", 5).unwrap();
        store
    }

    fn tamper(store: &Store, sql: &str) -> ChainBreak {
        store.conn.execute_batch(sql).unwrap();
        store.verify_audit(None).unwrap().unwrap_err()
    }

    /// Undoes what [`tamper`] did; the chain verifies again.
    fn tamper_undo(store: &Store, sql: &str) {
        store.conn.execute_batch(sql).unwrap();
        assert!(store.verify_audit(None).unwrap().is_ok(), "{sql}");
    }

    #[test]
    fn new_rows_take_the_id_autoincrement_would_give_them() {
        let mut store = populated();
        // The newest row deleted behind zavro's back: its id was handed out, so it is not given again.
        store
            .conn
            .execute("DELETE FROM audit WHERE id = 5", [])
            .unwrap();
        let id = store.record(&AuditEntry::test_send(6)).unwrap();
        assert_eq!(id, 6);
        let ids: Vec<i64> = store
            .conn
            .prepare("SELECT id FROM audit ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [1, 2, 3, 4, 6]);
        let issued: i64 = store
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(issued, 6, "SQLite's counter follows the explicit id");
    }

    #[test]
    fn an_untouched_chain_verifies_and_reports_its_head() {
        let store = populated();
        let verified = store.verify_audit(None).unwrap().unwrap();
        assert_eq!(verified.rows, 5);
        assert_eq!(verified.head, store.audit_head().unwrap());
        let (row, hash) = verified.head.unwrap();
        assert_eq!(row, 5);
        assert!(store.verify_audit(Some((row, &hash))).unwrap().is_ok());
        assert!(
            store.verify_audit(Some((3, &hash))).unwrap().is_err(),
            "wrong hash for row 3"
        );
    }

    #[test]
    fn an_edited_field_names_its_row() {
        let store = populated();
        let broken = tamper(&store, "UPDATE audit SET peer = '10.9.9.9' WHERE id = 3");
        assert!(
            matches!(broken, ChainBreak::Altered { id: 3, .. }),
            "{broken}"
        );
    }

    #[test]
    fn an_edited_payload_names_its_row() {
        let store = populated();
        let broken = tamper(
            &store,
            "UPDATE payloads SET json = '[666]' WHERE audit_id = 2",
        );
        assert!(
            matches!(broken, ChainBreak::Altered { id: 2, .. }),
            "{broken}"
        );
    }

    #[test]
    fn a_deleted_row_breaks_the_link_after_it() {
        let store = populated();
        let broken = tamper(
            &store,
            "DELETE FROM payloads WHERE audit_id = 3; DELETE FROM audit WHERE id = 3",
        );
        assert_eq!(
            broken,
            ChainBreak::Link {
                id: 4,
                after: "row #2".into()
            }
        );
    }

    #[test]
    fn deleting_the_newest_rows_is_caught_by_the_id_counter() {
        let store = populated();
        let broken = tamper(&store, "DELETE FROM audit WHERE id = 5");
        assert_eq!(
            broken,
            ChainBreak::Truncated {
                newest: 4,
                issued: 5
            }
        );
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_a_recorded_head() {
        let mut store = populated();
        let (row, hash) = store.audit_head().unwrap().unwrap();
        // Rewrite history from row 2 on and re-seal everything, as an attacker with the code could.
        store
            .conn
            .execute_batch("UPDATE audit SET peer = '10.9.9.9' WHERE id = 2")
            .unwrap();
        let tx = store.conn.transaction().unwrap();
        backfill(&tx).unwrap();
        tx.commit().unwrap();
        assert!(
            store.verify_audit(None).unwrap().is_ok(),
            "a rewritten chain is self-consistent"
        );
        let broken = store.verify_audit(Some((row, &hash))).unwrap().unwrap_err();
        assert!(
            matches!(broken, ChainBreak::HeadMismatch { row: 5, .. }),
            "{broken}"
        );
    }

    #[test]
    fn swapped_rows_are_caught() {
        let store = populated();
        let broken = tamper(
            &store,
            "UPDATE audit SET id = -1 WHERE id = 4; UPDATE audit SET id = 4 WHERE id = 5; \
             UPDATE audit SET id = 5 WHERE id = -1",
        );
        assert_eq!(
            broken,
            ChainBreak::Link {
                id: 4,
                after: "row #3".into()
            }
        );
    }

    #[test]
    fn an_inserted_row_is_caught() {
        let store = populated();
        let broken = tamper(
            &store,
            "UPDATE audit SET id = 10 WHERE id = 5; \
             INSERT INTO audit (id, time_us, action, status, records, size, prev_hash, hash) \
             SELECT 5, 4, 'send', 'accepted', 1, 1, hash, hash FROM audit WHERE id = 4",
        );
        assert!(
            matches!(broken, ChainBreak::Altered { id: 5, .. }),
            "{broken}"
        );
    }

    /// `populated()` plus a rejected request whose data used a schema (row 6), and another schema's row 7.
    fn with_schemas() -> Store {
        let mut store = populated();
        for (time_us, text) in [(6, r#"{"type": "long", "doc": "d"}"#), (7, r#""string""#)] {
            let schema = crate::avro::SchemaFingerprint::of(
                &apache_avro::Schema::parse_str(text).unwrap(),
                text,
            );
            store
                .record(&AuditEntry {
                    status: Status::Rejected,
                    reason: Some("schema_mismatch"),
                    schema: Some(&schema),
                    ..AuditEntry::test_send(time_us)
                })
                .unwrap();
        }
        assert!(store.verify_audit(None).unwrap().is_ok());
        store
    }

    #[test]
    fn a_rows_schema_is_covered_by_its_hash() {
        for sql in [
            "UPDATE audit SET schema_id = NULL WHERE id = 6",
            "UPDATE audit SET schema_id = (SELECT id FROM schemas WHERE canonical = '\"string\"') WHERE id = 6",
            "UPDATE schemas SET canonical = '\"int\"', schema = '\"int\"',              fingerprint = '3f2b87a9fe7cc9b13835598c3981cd45e3e355309e5090aa0933d7becb6fba45'              WHERE canonical = '\"long\"'",
        ] {
            let broken = tamper(&with_schemas(), sql);
            assert!(
                matches!(broken, ChainBreak::Altered { id: 6, .. }),
                "{sql}: {broken}"
            );
        }
    }

    #[test]
    fn an_edited_schema_is_caught() {
        for sql in [
            "UPDATE schemas SET schema = '\"int\"' WHERE canonical = '\"long\"'",
            "UPDATE schemas SET canonical = '\"int\"' WHERE canonical = '\"long\"'",
        ] {
            let broken = tamper(&with_schemas(), sql);
            assert!(
                matches!(broken, ChainBreak::SchemaAltered { .. }),
                "{sql}: {broken}"
            );
        }
        // Docs and defaults are not part of the canonical form, but the text is still checked against it only:
        // an edit that keeps the canonical form is not a change to what the rows' data meant.
        let store = with_schemas();
        store
            .conn
            .execute_batch(
                r#"UPDATE schemas SET schema = '{"type": "long"}' WHERE canonical = '"long"'"#,
            )
            .unwrap();
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    /// A store file made at schema version 1 with a key action and one accepted request (plus `more` SQL),
    /// migrated to `version`, as a store of that version would be (chained by migration 2's backfill); returns
    /// its path (mode 0600, ready for `Store::open`) and the hash its newest row then had.
    fn old_store(
        dir: &std::path::Path,
        more: &str,
        version: usize,
    ) -> (std::path::PathBuf, String) {
        let path = dir.join("old.db");
        let mut conn = Connection::open(&path).unwrap();
        super::super::MIGRATIONS.to_version(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO audit (time_us, action, status, key_id, peer) VALUES (1, 'key_add', 'accepted', 'ZK1', 'local');
             INSERT INTO audit (time_us, action, status, key_id, peer, records, size)
                 VALUES (2, 'send', 'accepted', 'ZK1', '10.0.0.1', 1, 99);",
        )
        .unwrap();
        conn.execute_batch(more).unwrap();
        super::super::MIGRATIONS
            .to_version(&mut conn, version)
            .unwrap();
        let head: String = conn
            .query_row("SELECT hash FROM audit WHERE id = 2", [], |row| row.get(0))
            .unwrap();
        drop(conn);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        (path, head)
    }

    #[test]
    fn rows_written_before_schemas_existed_keep_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, head_at_5) = old_store(
            dir.path(),
            "INSERT INTO payloads (audit_id, json) VALUES (2, '[1]');",
            5,
        );
        let store = Store::open(&path).unwrap();
        assert_eq!(store.audit_head().unwrap(), Some((2, head_at_5)));
        assert_eq!(store.verify_audit(None).unwrap().unwrap().rows, 2);
    }

    #[test]
    fn the_encoding_is_stable() {
        // Pinned so an accidental change to the documented encoding (AUDIT.md) fails loudly.
        let fields = ChainedFields {
            id: 1,
            time_us: 1_764_301_635_000_000,
            action: "key_add",
            status: "accepted",
            reason: None,
            detail: None,
            key_id: Some("ZK3F9A0C17B2E45D88"),
            peer: Some("local"),
            records: 0,
            size: 0,
            payload_sha256: None,
            schema: None,
            requests: 1,
            transport: None,
        };
        let documented = |label: &str| {
            include_str!("../../AUDIT.md")
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .unwrap_or_else(|| panic!("AUDIT.md has {label:?}"))
                .trim()
        };
        let first = fields.hash(GENESIS);
        assert_eq!(first, documented("example hash: "));
        let with_schema = ChainedFields {
            id: 2,
            time_us: 1_764_301_636_000_000,
            action: "send",
            peer: Some("127.0.0.1"),
            records: 1,
            size: 612,
            payload_sha256: Some(&payload_sha256(r#"[{"n":1}]"#)),
            schema: Some(&fingerprint_of_canonical(r#""int""#)),
            ..fields
        };
        let second = with_schema.hash(&first);
        assert_eq!(second, documented("example hash with a schema: "));
        let summary = ChainedFields {
            id: 3,
            time_us: 1_764_301_646_000_000,
            status: "rejected",
            reason: Some("malformed"),
            detail: Some(
                "41 more malformed refusals from this peer between 2025-11-28T03:47:17Z and \
                 2025-11-28T03:47:26Z; the first of the window is #1",
            ),
            key_id: None,
            peer: Some("192.0.2.7"),
            records: 0,
            size: 2911,
            payload_sha256: None,
            schema: None,
            requests: 41,
            ..with_schema
        };
        let third = summary.hash(&second);
        assert_eq!(third, documented("example hash of a summary: "));
        let over_curve = ChainedFields {
            id: 4,
            time_us: 1_764_301_647_000_000,
            status: "accepted",
            reason: None,
            detail: None,
            key_id: Some("ZK3F9A0C17B2E45D88"),
            peer: Some("127.0.0.1"),
            records: 1,
            size: 612,
            requests: 1,
            transport: Some("curve"),
            ..with_schema
        };
        assert_eq!(
            over_curve.hash(&third),
            documented("example hash with a transport: ")
        );
    }

    #[test]
    fn rows_written_before_transports_keep_their_hashes_and_new_rows_chain_onto_them() {
        let dir = tempfile::tempdir().unwrap();
        let (path, hash_at_7) = old_store(dir.path(), "", 7);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.audit_head().unwrap(), Some((2, hash_at_7)));
        for transport in ["curve", "plaintext"] {
            store
                .record(&AuditEntry {
                    transport: Some(transport),
                    ..AuditEntry::test_send(3)
                })
                .unwrap();
        }
        let rows = store.query_audit(&Default::default()).unwrap();
        let transports: Vec<_> = rows.iter().map(|r| r.transport.as_deref()).collect();
        assert_eq!(transports, [None, None, Some("curve"), Some("plaintext")]);
        assert_eq!(store.verify_audit(None).unwrap().unwrap().rows, 4);

        for (edit, undo, id) in [
            ("'plaintext'", "'curve'", 3),
            ("NULL", "'plaintext'", 4),
            ("'curve'", "NULL", 2),
        ] {
            let broken = tamper(
                &store,
                &format!("UPDATE audit SET transport = {edit} WHERE id = {id}"),
            );
            assert!(
                matches!(broken, ChainBreak::Altered { id: found, .. } if found == id),
                "transport {edit} on row {id}: {broken}"
            );
            tamper_undo(
                &store,
                &format!("UPDATE audit SET transport = {undo} WHERE id = {id}"),
            );
        }
    }
}
