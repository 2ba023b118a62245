//! The Avro writer schemas requests used, by fingerprint: added by a batch the first time a schema is seen,
//! listed by `audit schemas`.

use rusqlite::{Connection, Row, params};

use super::{Store, StoreError};
use crate::avro::SchemaFingerprint;

/// A schema seen by the server, with how much it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRow {
    /// SHA-256 of its Parsing Canonical Form, lowercase hex.
    pub fingerprint: String,
    /// Its Parsing Canonical Form.
    pub canonical: String,
    /// Its JSON text as first seen.
    pub text: String,
    /// When a request first used it (µs since the epoch).
    pub first_seen_us: i64,
    /// When a request last used it, if any row still says so (rows may have been pruned).
    pub last_used_us: Option<i64>,
    /// Audit rows naming it: requests accepted or refused with data in this schema.
    pub requests: u64,
}

impl Store {
    /// Every schema seen, oldest first.
    pub fn list_schemas(&self) -> Result<Vec<SchemaRow>, StoreError> {
        // Every fingerprint starts with the empty prefix.
        self.schemas_matching("")
    }

    /// The schemas whose fingerprint starts with `prefix` (hex, any case), oldest first.
    pub fn schemas_matching(&self, prefix: &str) -> Result<Vec<SchemaRow>, StoreError> {
        // substr rather than LIKE: `_` and `%` in the prefix must not act as wildcards. Counted and dated from
        // the audit_by_schema index: each schema's entries only, never the table.
        let mut stmt = self.conn.prepare(
            "SELECT fingerprint, canonical, schema, first_seen_us,
                    (SELECT time_us FROM audit WHERE schema_id = s.id ORDER BY id DESC LIMIT 1),
                    (SELECT count(*) FROM audit WHERE schema_id = s.id)
             FROM schemas s WHERE substr(fingerprint, 1, length(?1)) = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([prefix.to_ascii_lowercase()], schema_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The id of a schema in the `schemas` table, added the first time it is seen.
pub(super) fn remember_schema(
    conn: &Connection,
    schema: &SchemaFingerprint,
    time_us: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO schemas (fingerprint, canonical, schema, first_seen_us) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (fingerprint) DO NOTHING",
    )?
    .execute(params![
        schema.fingerprint,
        schema.canonical,
        schema.text,
        time_us
    ])?;
    conn.prepare_cached("SELECT id FROM schemas WHERE fingerprint = ?1")?
        .query_row([&schema.fingerprint], |row| row.get(0))
}

fn schema_row(row: &Row) -> rusqlite::Result<SchemaRow> {
    Ok(SchemaRow {
        fingerprint: row.get(0)?,
        canonical: row.get(1)?,
        text: row.get(2)?,
        first_seen_us: row.get(3)?,
        last_used_us: row.get(4)?,
        requests: row.get::<_, i64>(5)?.try_into().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        avro::SchemaFingerprint,
        store::{AuditEntry, AuditFilter, Nonce, RequestGroup, RequestStore, Status},
    };

    fn fingerprint(text: &str) -> SchemaFingerprint {
        SchemaFingerprint::of(&apache_avro::Schema::parse_str(text).unwrap(), text)
    }

    #[test]
    fn schemas_are_kept_once_and_rows_name_theirs() {
        let mut store = Store::open_in_memory().unwrap();
        let int = fingerprint(r#"{"type": "int", "doc": "first seen"}"#);
        let int_again = fingerprint(r#""int""#);
        let long = fingerprint(r#""long""#);
        assert_eq!(
            int.fingerprint, int_again.fingerprint,
            "same canonical form"
        );
        for (time_us, schema, status) in [
            (10, &int, Status::Accepted),
            (20, &long, Status::Rejected),
            (30, &int_again, Status::Accepted),
        ] {
            let entry = AuditEntry {
                status,
                schema: Some(schema),
                ..AuditEntry::test_send(time_us)
            };
            let nonce = format!("n{time_us}");
            match status {
                Status::Accepted => {
                    let nonce = Nonce {
                        nonce: &nonce,
                        timestamp: 1,
                        signature: "sig",
                        request_id: None,
                    };
                    store.commit_accepted(&entry, &nonce, "[1]").unwrap();
                }
                Status::Rejected => {
                    store.record(&entry).unwrap();
                }
            }
        }
        store
            .record(&AuditEntry::test_send(40))
            .expect("a row without a schema");

        let schemas = store.list_schemas().unwrap();
        assert_eq!(schemas.len(), 2);
        assert_eq!(schemas[0].fingerprint, int.fingerprint);
        assert_eq!(schemas[0].text, r#"{"type": "int", "doc": "first seen"}"#);
        assert_eq!(schemas[0].canonical, r#""int""#);
        assert_eq!(
            (
                schemas[0].first_seen_us,
                schemas[0].last_used_us,
                schemas[0].requests
            ),
            (10, Some(30), 2)
        );
        assert_eq!(schemas[1].requests, 1);

        let rows = store
            .query_audit(&AuditFilter {
                schema: Some(int.fingerprint.clone()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(rows.iter().map(|r| r.time_us).collect::<Vec<_>>(), [10, 30]);
        assert!(
            rows.iter()
                .all(|r| r.schema.as_deref() == Some(&*int.fingerprint))
        );
        let all = store.query_audit(&AuditFilter::default()).unwrap();
        assert_eq!(all.last().unwrap().schema, None);

        assert_eq!(
            store
                .schemas_matching(&long.fingerprint[..6].to_uppercase())
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.schemas_matching("").unwrap().len(), 2);
        assert!(store.schemas_matching("%").unwrap().is_empty());
        assert!(store.verify_audit(None).unwrap().is_ok());
    }

    #[test]
    fn a_schema_added_by_a_batch_that_rolled_back_is_added_again() {
        let mut store = Store::open_in_memory().unwrap();
        let int = fingerprint(r#""int""#);
        let long = fingerprint(r#""long""#);
        let with = |time_us, schema| AuditEntry {
            schema: Some(schema),
            ..AuditEntry::test_send(time_us)
        };
        {
            let mut batch = store.begin_group().unwrap();
            batch.append(&with(10, &int)).unwrap();
            // Dropped without commit: the schema row it added is gone, and its id free again.
        }
        store.record(&with(20, &long)).unwrap();
        store.record(&with(30, &int)).unwrap();

        let schemas = store.list_schemas().unwrap();
        let fingerprints: Vec<_> = schemas.iter().map(|s| s.fingerprint.as_str()).collect();
        assert_eq!(fingerprints, [&*long.fingerprint, &*int.fingerprint]);
        let rows = store.query_audit(&AuditFilter::default()).unwrap();
        let named: Vec<_> = rows.iter().map(|r| r.schema.as_deref()).collect();
        assert_eq!(named, [Some(&*long.fingerprint), Some(&*int.fingerprint)]);
        assert!(store.verify_audit(None).unwrap().is_ok());
    }
}
