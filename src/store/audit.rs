//! The audit trail: one row per action, written by the server and key commands, read by `audit query`.

use rusqlite::{Connection, ToSql, params};

use super::{
    Store, StoreError,
    chain::{self, ChainedFields},
    pending, sqlite_chain,
};
use crate::avro::SchemaFingerprint;

/// Whether an action was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Carried out (records stored, key added or revoked).
    Accepted,
    /// Refused; the row's reason says why.
    Rejected,
}

impl Status {
    /// The word stored in the `status` column and printed by `audit query`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
        }
    }
}

/// A new audit row, before it has an id.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// When it happened (µs since the epoch).
    pub time_us: i64,
    /// What was done: `send`, `key_add`, `key_revoke`, `audit_prune`.
    pub action: &'a str,
    /// Accepted or rejected.
    pub status: Status,
    /// The stable reject code, for rejected rows.
    pub reason: Option<&'a str>,
    /// A human explanation of a rejection.
    pub detail: Option<&'a str>,
    /// The key id the action named, if any.
    pub key_id: Option<&'a str>,
    /// Where a request came from (IP address), or `local` for commands run on this machine.
    pub peer: Option<&'a str>,
    /// How many records the request carried (0 when unknown or not applicable).
    pub records: u64,
    /// Size of the request in bytes.
    pub size: u64,
    /// The Avro writer schema of the request's data, when its container header could be read.
    pub schema: Option<&'a SchemaFingerprint>,
    /// How many requests the row stands for: 1, or more for a summary of refusals no key vouched for.
    pub requests: u64,
    /// How the request reached the server: `curve` or `plaintext`; `None` for actions taken on this machine.
    pub transport: Option<&'a str>,
    /// The name of the server that wrote the row (`serve --name`); `None` for actions taken on this machine.
    pub server: Option<&'a str>,
}

impl AuditEntry<'_> {
    /// Inserts the row (and its payload, if any) chained to the newest row, and returns its id. `schema_id` is
    /// the `schemas` row of `self.schema`.
    ///
    /// The caller holds a write transaction, so no other writer can take the id or chain a row in between.
    pub(super) fn insert(
        &self,
        conn: &Connection,
        schema_id: Option<i64>,
        payload: Option<&str>,
    ) -> Result<i64, StoreError> {
        // Rows acknowledged as pending go first: they have the lower ids.
        pending::settle(conn)?;
        let link = sqlite_chain::next_link(conn)?;
        self.insert_at(conn, &link, schema_id, payload)?;
        Ok(link.id)
    }

    /// Inserts the row as `link.id`, hashed onto `link.prev_hash`, and returns the link of the row after it (the
    /// next id, this row's hash), for a caller that writes several rows in one transaction. The hash is computed
    /// from the values as they are written, so the row is sealed by the one INSERT instead of being read back and
    /// updated.
    pub(super) fn insert_at(
        &self,
        conn: &Connection,
        link: &sqlite_chain::Link,
        schema_id: Option<i64>,
        payload: Option<&str>,
    ) -> Result<sqlite_chain::Link, StoreError> {
        let after = self.insert_sealed(
            conn,
            "INSERT INTO audit (id, time_us, action, status, reason, detail, key_id, peer, records, size,
                                payload_sha256, schema_id, prev_hash, hash, requests, transport, server)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            link,
            schema_id,
            payload,
            None,
        )?;
        if let Some(json) = payload {
            conn.prepare_cached("INSERT INTO payloads (audit_id, json) VALUES (?1, ?2)")?
                .execute(params![link.id, json])?;
        }
        Ok(after)
    }

    /// Inserts the row, with its payload, as the pending row `link.id` ([`pending`]): numbered and hashed onto
    /// `link.prev_hash` exactly as [`AuditEntry::insert_at`] would, so settling it only moves it. Returns the
    /// link of the row after it.
    pub(super) fn insert_pending_at(
        &self,
        conn: &Connection,
        link: &sqlite_chain::Link,
        schema_id: Option<i64>,
        payload: &str,
    ) -> Result<sqlite_chain::Link, StoreError> {
        self.insert_sealed(
            conn,
            "INSERT INTO pending (audit_id, time_us, action, status, reason, detail, key_id, peer, records, size,
                                  payload_sha256, schema_id, prev_hash, hash, requests, transport, server, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            link,
            schema_id,
            Some(payload),
            Some(payload),
        )
    }

    /// Runs `insert`, whose parameters are the row's columns in `audit`'s order (then `json`, when given), for the
    /// row hashed onto `link`; returns the link after it.
    fn insert_sealed(
        &self,
        conn: &Connection,
        insert: &str,
        link: &sqlite_chain::Link,
        schema_id: Option<i64>,
        payload: Option<&str>,
        json: Option<&str>,
    ) -> Result<sqlite_chain::Link, StoreError> {
        debug_assert_eq!(schema_id.is_some(), self.schema.is_some());
        let payload_sha256 = payload.map(chain::payload_sha256);
        let fields = self.chained(link.id, payload_sha256.as_deref());
        let hash = fields.hash(&link.prev_hash);
        let mut values: Vec<&dyn ToSql> = vec![
            &fields.id,
            &fields.time_us,
            &fields.action,
            &fields.status,
            &fields.reason,
            &fields.detail,
            &fields.key_id,
            &fields.peer,
            &fields.records,
            &fields.size,
            &fields.payload_sha256,
            &schema_id,
            &link.prev_hash,
            &hash,
            &fields.requests,
            &fields.transport,
            &fields.server,
        ];
        if let Some(json) = &json {
            values.push(json);
        }
        conn.prepare_cached(insert)?.execute(values.as_slice())?;
        drop(values);
        // AUTOINCREMENT's rule gives the next row one past this one: its id is now both the highest present and
        // the highest issued (settling a pending row moves the counter to it).
        Ok(sqlite_chain::Link {
            id: link.id + 1,
            prev_hash: hash,
        })
    }
}

impl<'a> AuditEntry<'a> {
    /// The fields the row's hash covers when it is stored as row `id` with a payload whose text has this
    /// SHA-256 ([`chain::payload_sha256`]): what every backend hashes onto the previous row's hash.
    pub fn chained(&self, id: i64, payload_sha256: Option<&'a str>) -> ChainedFields<'a> {
        ChainedFields {
            id,
            time_us: self.time_us,
            action: self.action,
            status: self.status.as_str(),
            reason: self.reason,
            detail: self.detail,
            key_id: self.key_id,
            peer: self.peer,
            records: i64::try_from(self.records).unwrap_or(i64::MAX),
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            payload_sha256,
            schema: self.schema.map(|schema| schema.fingerprint.as_str()),
            requests: i64::try_from(self.requests).unwrap_or(i64::MAX),
            transport: self.transport,
            server: self.server,
        }
    }
}

/// An audit row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Row id, increasing with time and never reused.
    pub id: i64,
    /// When it happened (µs since the epoch).
    pub time_us: i64,
    /// What was done.
    pub action: String,
    /// `accepted` or `rejected`.
    pub status: String,
    /// The stable reject code, for rejected rows.
    pub reason: Option<String>,
    /// A human explanation of a rejection.
    pub detail: Option<String>,
    /// The key id, if any.
    pub key_id: Option<String>,
    /// Peer address, or `local`.
    pub peer: Option<String>,
    /// Records carried.
    pub records: i64,
    /// Request size in bytes.
    pub size: i64,
    /// The stored JSON array of records, when asked for and present.
    pub payload: Option<String>,
    /// The fingerprint of the request's Avro writer schema, when it had one.
    pub schema: Option<String>,
    /// How many requests the row stands for: 1, or more for a summary of refusals no key vouched for.
    pub requests: i64,
    /// How the request reached the server: `curve` or `plaintext`; `None` for local actions and older rows.
    pub transport: Option<String>,
    /// The name of the server that wrote the row (`serve --name`); `None` for local actions and older rows.
    pub server: Option<String>,
    /// The request id (PROTOCOL.md, envelope field `id`) the row's request was stored under: set on the accepted
    /// row of a request that carried one, while that id is kept (`None` otherwise).
    pub request_id: Option<String>,
}

/// Which rows `query_audit` returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows for this key id.
    pub key: Option<String>,
    /// Only rows with this status.
    pub status: Option<Status>,
    /// Only rows from this peer address (or `local`).
    pub peer: Option<String>,
    /// Only rows with this reason (a reply code, or `duplicate`).
    pub reason: Option<String>,
    /// Only rows whose data used the writer schema with this fingerprint (full, lowercase hex).
    pub schema: Option<String>,
    /// Only rows at or after this time (µs).
    pub since_us: Option<i64>,
    /// Only rows before this time (µs).
    pub until_us: Option<i64>,
    /// Only rows with a larger id (`audit query --follow` reads on from the last row it printed).
    pub after_id: Option<i64>,
    /// Only the newest N matching rows; with `after_id`, the oldest N after it.
    pub limit: Option<u64>,
    /// Also read the stored payloads.
    pub with_payload: bool,
}

/// Accepted and rejected requests of one key, reason and server over a period (`audit stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCount {
    /// The key id named by the requests (`None` when the envelope could not be read).
    pub key_id: Option<String>,
    /// The server that answered them (`None` for rows written before servers were named).
    pub server: Option<String>,
    /// `accepted` or `rejected`.
    pub status: String,
    /// The reply code of a rejection, `duplicate` for a recognised retry, `None` for a request stored.
    pub reason: Option<String>,
    /// Requests.
    pub requests: u64,
    /// Records they carried.
    pub records: u64,
}

impl Store {
    /// Writes one audit row in a group of its own, durably, and returns its id (for tests).
    #[cfg(test)]
    pub(crate) fn record(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        use super::{RequestGroup, RequestStore};
        let mut group = self.begin_group()?;
        let id = group.append(entry)?;
        group.commit()?;
        Ok(id)
    }

    /// The rows matching `filter`, oldest first.
    pub fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let mut rows = Vec::new();
        self.for_each_audit(filter, |row| {
            rows.push(row);
            Ok::<_, StoreError>(())
        })?;
        Ok(rows)
    }

    /// Calls `each` with the rows matching `filter`, oldest first, one at a time: memory stays bounded however
    /// many rows match. Stops at the first error `each` returns.
    pub fn for_each_audit<E: From<StoreError>>(
        &self,
        filter: &AuditFilter,
        mut each: impl FnMut(AuditRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut conditions = Vec::new();
        let mut args: Vec<&dyn ToSql> = Vec::new();
        if let Some(key) = &filter.key {
            conditions.push("a.key_id = ?");
            args.push(key);
        }
        // A literal, not a parameter: only then can SQLite prove the query matches the partial index
        // `audit_rejected` (WHERE status = 'rejected').
        match filter.status {
            Some(Status::Accepted) => conditions.push("a.status = 'accepted'"),
            Some(Status::Rejected) => conditions.push("a.status = 'rejected'"),
            None => {}
        }
        if let Some(peer) = &filter.peer {
            conditions.push("a.peer = ?");
            args.push(peer);
        }
        if let Some(reason) = &filter.reason {
            conditions.push("a.reason = ?");
            args.push(reason);
        }
        if let Some(fingerprint) = &filter.schema {
            conditions.push("a.schema_id = (SELECT id FROM schemas WHERE fingerprint = ?)");
            args.push(fingerprint);
        }
        if let Some(since) = &filter.since_us {
            conditions.push("a.time_us >= ?");
            args.push(since);
        }
        if let Some(until) = &filter.until_us {
            conditions.push("a.time_us < ?");
            args.push(until);
        }
        // A time range is turned into an id range too, from the time index (exact: the smallest and largest id
        // of the rows in the range; INDEXED BY, as SQLite would otherwise find min(id) by walking the table from
        // its first row to the first one in range), so the rows are read in id order straight from the table instead of the
        // whole table being scanned, or the range's rows sorted. Only a `--since` with `--limit` is left to the
        // plain plan: reading back from the newest row stops after the first N matches.
        let time_range: Vec<(&str, &i64)> = [
            ("time_us >= ?", filter.since_us.as_ref()),
            ("time_us < ?", filter.until_us.as_ref()),
        ]
        .into_iter()
        .filter_map(|(sql, value)| Some((sql, value?)))
        .collect();
        let id_bounds;
        if !time_range.is_empty() && (filter.limit.is_none() || filter.until_us.is_some()) {
            let range = time_range
                .iter()
                .map(|(sql, _)| *sql)
                .collect::<Vec<_>>()
                .join(" AND ");
            id_bounds = format!(
                "a.id >= (SELECT min(id) FROM audit INDEXED BY audit_by_time WHERE {range}) \
                 AND a.id <= (SELECT max(id) FROM audit INDEXED BY audit_by_time WHERE {range})"
            );
            conditions.push(&id_bounds);
            for _ in 0..2 {
                args.extend(time_range.iter().map(|(_, value)| *value as &dyn ToSql));
            }
        }
        if let Some(after) = &filter.after_id {
            conditions.push("a.id > ?");
            args.push(after);
        }
        let limit = filter
            .limit
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            .unwrap_or(-1);
        let payload = if filter.with_payload {
            "p.json"
        } else {
            "NULL"
        };
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let select = format!(
            "SELECT a.id, a.time_us, a.action, a.status, a.reason, a.detail, a.key_id, a.peer,
                    a.records, a.size, {payload}, s.fingerprint, a.requests, a.transport, a.server,
                    r.id AS request_id
             FROM audit a LEFT JOIN payloads p ON p.audit_id = a.id LEFT JOIN schemas s ON s.id = a.schema_id
                  LEFT JOIN request_ids r ON r.audit_id = a.id
             {where_clause}"
        );
        let sql = if filter.limit.is_none() || filter.after_id.is_some() {
            // Oldest first straight from the table, so rows stream out without being gathered and sorted.
            args.push(&limit);
            format!("{select} ORDER BY a.id LIMIT ?")
        } else {
            // Newest N first so LIMIT keeps the most recent rows, then flipped to read oldest first.
            args.push(&limit);
            format!("SELECT * FROM ({select} ORDER BY a.id DESC LIMIT ?) ORDER BY id")
        };
        let mut stmt = self.conn.prepare(&sql).map_err(StoreError::from)?;
        let mut rows = stmt.query(args.as_slice()).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            let read = || -> rusqlite::Result<AuditRow> {
                Ok(AuditRow {
                    id: row.get(0)?,
                    time_us: row.get(1)?,
                    action: row.get(2)?,
                    status: row.get(3)?,
                    reason: row.get(4)?,
                    detail: row.get(5)?,
                    key_id: row.get(6)?,
                    peer: row.get(7)?,
                    records: row.get(8)?,
                    size: row.get(9)?,
                    payload: row.get(10)?,
                    schema: row.get(11)?,
                    requests: row.get(12)?,
                    transport: row.get(13)?,
                    server: row.get(14)?,
                    request_id: row.get(15)?,
                })
            };
            each(read().map_err(StoreError::from)?)?;
        }
        Ok(())
    }

    /// Requests (action `send`) in `[since, until)` counted by key, status, reason and server, for `audit stats`.
    pub fn count_audit(
        &self,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        let mut range = Vec::new();
        let mut values = Vec::new();
        for (sql, value) in [("time_us >= ?", since_us), ("time_us < ?", until_us)] {
            if let Some(value) = value {
                range.push(sql);
                values.push(value);
            }
        }
        // As in `for_each_audit`: a time range read as an id range in table order, not row by row through the
        // time index; with no range, one plain scan of the table.
        let (condition, args) = if range.is_empty() {
            (String::new(), Vec::new())
        } else {
            let range = range.join(" AND ");
            let args: Vec<i64> = values
                .iter()
                .chain(&values)
                .chain(&values)
                .copied()
                .collect();
            (
                format!(
                    "AND id >= (SELECT min(id) FROM audit INDEXED BY audit_by_time WHERE {range}) \
                     AND id <= (SELECT max(id) FROM audit INDEXED BY audit_by_time WHERE {range}) AND {range}"
                ),
                args,
            )
        };
        // Counted here rather than by GROUP BY: SQLite would sort every row of the period in a temporary
        // b-tree first, while there are only as many groups as keys times reasons times servers.
        let mut stmt = self.conn.prepare(&format!(
            "SELECT key_id, status, reason, records, requests, server FROM audit WHERE action = 'send' {condition}"
        ))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut counts: Vec<AuditCount> = Vec::new();
        while let Some(row) = rows.next()? {
            let text = |i| {
                row.get_ref(i)
                    .and_then(|v| v.as_str_or_null().map_err(rusqlite::Error::from))
            };
            let (key_id, status, reason) = (text(0)?, text(1)?.unwrap_or_default(), text(2)?);
            let records = u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0);
            let requests = u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0);
            let server = text(5)?;
            let found = counts.iter_mut().find(|c| {
                c.key_id.as_deref() == key_id
                    && c.status == status
                    && c.reason.as_deref() == reason
                    && c.server.as_deref() == server
            });
            match found {
                Some(count) => {
                    count.requests += requests;
                    count.records += records;
                }
                None => counts.push(AuditCount {
                    key_id: key_id.map(str::to_owned),
                    server: server.map(str::to_owned),
                    status: status.to_owned(),
                    reason: reason.map(str::to_owned),
                    requests,
                    records,
                }),
            }
        }
        counts.sort_by(|a, b| {
            (&a.key_id, &a.status, &a.reason, &a.server)
                .cmp(&(&b.key_id, &b.status, &b.reason, &b.server))
        });
        Ok(counts)
    }
}

#[cfg(test)]
impl AuditEntry<'static> {
    /// For store tests: an accepted `send` of one 10-byte record by key `ZK1` from 127.0.0.1 at `time_us`.
    pub(crate) fn test_send(time_us: i64) -> Self {
        AuditEntry {
            time_us,
            action: "send",
            status: Status::Accepted,
            reason: None,
            detail: None,
            key_id: Some("ZK1"),
            peer: Some("127.0.0.1"),
            records: 1,
            size: 10,
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

    fn entry(time_us: i64, status: Status, key: &'static str) -> AuditEntry<'static> {
        AuditEntry {
            status,
            reason: (status == Status::Rejected).then_some("bad_signature"),
            key_id: Some(key),
            ..AuditEntry::test_send(time_us)
        }
    }

    #[test]
    fn filters_combine_and_limit_keeps_the_newest() {
        let mut store = Store::open_in_memory().unwrap();
        for (t, status, key) in [
            (100, Status::Accepted, "A"),
            (200, Status::Rejected, "A"),
            (300, Status::Accepted, "B"),
            (400, Status::Accepted, "A"),
        ] {
            store.record(&entry(t, status, key)).unwrap();
        }
        let times = |filter: AuditFilter| -> Vec<i64> {
            store
                .query_audit(&filter)
                .unwrap()
                .iter()
                .map(|r| r.time_us)
                .collect()
        };
        assert_eq!(times(AuditFilter::default()), [100, 200, 300, 400]);
        assert_eq!(
            times(AuditFilter {
                key: Some("A".into()),
                ..Default::default()
            }),
            [100, 200, 400]
        );
        assert_eq!(
            times(AuditFilter {
                status: Some(Status::Rejected),
                ..Default::default()
            }),
            [200]
        );
        assert_eq!(
            times(AuditFilter {
                since_us: Some(200),
                until_us: Some(400),
                ..Default::default()
            }),
            [200, 300]
        );
        assert_eq!(
            times(AuditFilter {
                limit: Some(2),
                ..Default::default()
            }),
            [300, 400]
        );
        assert_eq!(
            times(AuditFilter {
                reason: Some("bad_signature".into()),
                ..Default::default()
            }),
            [200]
        );
        assert_eq!(
            times(AuditFilter {
                peer: Some("127.0.0.1".into()),
                after_id: Some(2),
                limit: Some(1),
                ..Default::default()
            }),
            [300],
            "after an id, the oldest rows first"
        );
        assert!(
            times(AuditFilter {
                peer: Some("10.0.0.1".into()),
                ..Default::default()
            })
            .is_empty()
        );
    }

    #[test]
    fn counts_group_requests_by_key_status_and_reason_within_the_period() {
        let mut store = Store::open_in_memory().unwrap();
        for (t, status, key) in [
            (100, Status::Accepted, "A"),
            (200, Status::Rejected, "A"),
            (300, Status::Accepted, "B"),
            (400, Status::Accepted, "A"),
        ] {
            store.record(&entry(t, status, key)).unwrap();
        }
        let counts = store.count_audit(Some(100), Some(400)).unwrap();
        let summary: Vec<_> = counts
            .iter()
            .map(|c| {
                (
                    c.key_id.as_deref().unwrap(),
                    c.status.as_str(),
                    c.reason.as_deref(),
                    c.requests,
                    c.records,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("A", "accepted", None, 1, 1),
                ("A", "rejected", Some("bad_signature"), 1, 1),
                ("B", "accepted", None, 1, 1)
            ]
        );
    }
}
