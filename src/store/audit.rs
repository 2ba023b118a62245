//! The audit trail: one row per action, written by the server and key commands, read by `audit query`.

use rusqlite::{Connection, ToSql, params};

use super::{Store, StoreError, chain};

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
    /// What was done: `send`, `key_add`, `key_revoke`.
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
}

impl AuditEntry<'_> {
    /// Inserts the row (and its payload, if any), chains it to the previous row, and returns its id.
    ///
    /// The caller holds a write transaction, so no other writer can chain a row in between.
    pub(super) fn insert(
        &self,
        conn: &Connection,
        payload: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO audit (time_us, action, status, reason, detail, key_id, peer, records, size,
                                payload_sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        stmt.execute(params![
            self.time_us,
            self.action,
            self.status.as_str(),
            self.reason,
            self.detail,
            self.key_id,
            self.peer,
            i64::try_from(self.records).unwrap_or(i64::MAX),
            i64::try_from(self.size).unwrap_or(i64::MAX),
            payload.map(chain::payload_sha256),
        ])?;
        let id = conn.last_insert_rowid();
        if let Some(json) = payload {
            conn.prepare_cached("INSERT INTO payloads (audit_id, json) VALUES (?1, ?2)")?
                .execute(params![id, json])?;
        }
        chain::seal(conn, id)?;
        Ok(id)
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
}

/// Which rows `query_audit` returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows for this key id.
    pub key: Option<String>,
    /// Only rows with this status.
    pub status: Option<Status>,
    /// Only rows at or after this time (µs).
    pub since_us: Option<i64>,
    /// Only rows before this time (µs).
    pub until_us: Option<i64>,
    /// Only the newest N matching rows.
    pub limit: Option<u64>,
    /// Also read the stored payloads.
    pub with_payload: bool,
}

impl Store {
    /// Writes one audit row on its own (rejections), durably, and returns its id.
    pub fn record(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut batch = self.begin_batch()?;
        let id = batch.record(entry)?;
        batch.commit()?;
        Ok(id)
    }

    /// The rows matching `filter`, oldest first.
    pub fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let mut conditions = Vec::new();
        let mut args: Vec<&dyn ToSql> = Vec::new();
        if let Some(key) = &filter.key {
            conditions.push("a.key_id = ?");
            args.push(key);
        }
        let status = filter.status.map(Status::as_str);
        if let Some(status) = &status {
            conditions.push("a.status = ?");
            args.push(status);
        }
        if let Some(since) = &filter.since_us {
            conditions.push("a.time_us >= ?");
            args.push(since);
        }
        if let Some(until) = &filter.until_us {
            conditions.push("a.time_us < ?");
            args.push(until);
        }
        let limit = filter
            .limit
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            .unwrap_or(-1);
        args.push(&limit);
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
        // Newest N first so LIMIT keeps the most recent rows, then flipped to read oldest first.
        let sql = format!(
            "SELECT * FROM (
                SELECT a.id, a.time_us, a.action, a.status, a.reason, a.detail, a.key_id, a.peer,
                       a.records, a.size, {payload}
                FROM audit a LEFT JOIN payloads p ON p.audit_id = a.id
                {where_clause} ORDER BY a.id DESC LIMIT ?
             ) ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args.as_slice(), |row| {
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
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time_us: i64, status: Status, key: &'static str) -> AuditEntry<'static> {
        AuditEntry {
            time_us,
            action: "send",
            status,
            reason: (status == Status::Rejected).then_some("bad_signature"),
            detail: None,
            key_id: Some(key),
            peer: Some("127.0.0.1"),
            records: 1,
            size: 10,
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
    }
}
