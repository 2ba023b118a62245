//! The `audit` subcommands on PostgreSQL: [`AuditStore`] for [`PgStore`]. Reading, counting and listing here;
//! the chain walk is in `verify`, retention in `prune`.
//!
//! Rows are streamed (`query_raw`: the client reads them off the socket as the callback takes them, so a query of
//! millions of rows runs in bounded memory), in id order.

use std::ops::ControlFlow;

use postgres::{fallible_iterator::FallibleIterator, types::ToSql};

use super::PgStore;
use crate::store::{
    AuditCount, AuditFilter, AuditRow, AuditStore, ChainBreak, Pruned, SchemaRow, Status,
    StoreError, Verified,
};

/// The parameters of a query built at run time, numbered `$1`, `$2`, … in the order they are added.
#[derive(Default)]
struct Params<'a> {
    values: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Params<'a> {
    /// Adds a value and returns its placeholder.
    fn add(&mut self, value: &'a (dyn ToSql + Sync)) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }
}

impl AuditStore for PgStore {
    /// Audit ids on PostgreSQL are consecutive and committed in id order: every writer takes its ids from
    /// `audit_chain` while holding that row's lock, so id N+1 exists only once the transaction that wrote N has
    /// committed. So `--follow` polling for `id > last` is exact: it can never pass over a row that commits later
    /// with a smaller id (as it could if ids came from a sequence, handed out before their transactions commit).
    fn for_each_audit(
        &mut self,
        filter: &AuditFilter,
        each: &mut dyn FnMut(AuditRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let limit = filter.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut params = Params::default();
        let mut conditions = Vec::new();
        if let Some(key) = &filter.key {
            conditions.push(format!("a.key_id = {}", params.add(key)));
        }
        match filter.status {
            Some(Status::Accepted) => conditions.push("a.status = 'accepted'".into()),
            // A literal, so the planner can use the partial index `audit_rejected`.
            Some(Status::Rejected) => conditions.push("a.status = 'rejected'".into()),
            None => {}
        }
        if let Some(peer) = &filter.peer {
            conditions.push(format!("a.peer = {}", params.add(peer)));
        }
        if let Some(reason) = &filter.reason {
            conditions.push(format!("a.reason = {}", params.add(reason)));
        }
        if let Some(fingerprint) = &filter.schema {
            conditions.push(format!(
                "a.schema_id = (SELECT id FROM schemas WHERE fingerprint = {})",
                params.add(fingerprint)
            ));
        }
        if let Some(since) = &filter.since_us {
            conditions.push(format!("a.time_us >= {}", params.add(since)));
        }
        if let Some(until) = &filter.until_us {
            conditions.push(format!("a.time_us < {}", params.add(until)));
        }
        if let Some(after) = &filter.after_id {
            conditions.push(format!("a.id > {}", params.add(after)));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let (payload, payload_join) = if filter.with_payload {
            ("p.json", "LEFT JOIN payloads p ON p.audit_id = a.id")
        } else {
            ("NULL::text", "")
        };
        let select = format!(
            "SELECT a.id, a.time_us, a.action, a.status, a.reason, a.detail, a.key_id, a.peer,
                    a.records, a.size, {payload} AS payload, s.fingerprint, a.requests, a.transport, a.server,
                    r.id AS request_id
             FROM audit a {payload_join} LEFT JOIN schemas s ON s.id = a.schema_id
                  LEFT JOIN request_ids r ON r.audit_id = a.id
             {where_clause}"
        );
        // LIMIT NULL is no limit.
        let sql = if filter.limit.is_none() || filter.after_id.is_some() {
            format!("{select} ORDER BY a.id LIMIT {}", params.add(&limit))
        } else {
            // The newest N, then read oldest first.
            format!(
                "SELECT * FROM ({select} ORDER BY a.id DESC LIMIT {}) newest ORDER BY id",
                params.add(&limit)
            )
        };
        let mut rows = self.client.query_raw(&sql, params.values)?;
        while let Some(row) = rows.next()? {
            let read = AuditRow {
                id: row.try_get(0)?,
                time_us: row.try_get(1)?,
                action: row.try_get(2)?,
                status: row.try_get(3)?,
                reason: row.try_get(4)?,
                detail: row.try_get(5)?,
                key_id: row.try_get(6)?,
                peer: row.try_get(7)?,
                records: row.try_get(8)?,
                size: row.try_get(9)?,
                payload: row.try_get(10)?,
                schema: row.try_get(11)?,
                requests: row.try_get(12)?,
                transport: row.try_get(13)?,
                server: row.try_get(14)?,
                request_id: row.try_get(15)?,
            };
            if each(read).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", &[])?;
        Ok(match row {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
            None => None,
        })
    }

    fn verify_audit(
        &mut self,
        against: Option<(i64, &str)>,
    ) -> Result<Result<Verified, ChainBreak>, StoreError> {
        super::verify::verify(&mut self.client, against)
    }

    fn count_audit(
        &mut self,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        let mut params = Params::default();
        let mut range = String::new();
        if let Some(since) = &since_us {
            range.push_str(&format!(" AND time_us >= {}", params.add(since)));
        }
        if let Some(until) = &until_us {
            range.push_str(&format!(" AND time_us < {}", params.add(until)));
        }
        // Negative counts (only in a store edited by hand) add nothing, as on SQLite.
        let sql = format!(
            "SELECT key_id, status, reason, server,
                    sum(greatest(records, 0))::bigint, sum(greatest(requests, 0))::bigint
             FROM audit WHERE action = 'send'{range}
             GROUP BY key_id, status, reason, server"
        );
        let mut counts = Vec::new();
        let mut rows = self.client.query_raw(&sql, params.values)?;
        while let Some(row) = rows.next()? {
            counts.push(AuditCount {
                key_id: row.try_get(0)?,
                status: row.try_get(1)?,
                reason: row.try_get(2)?,
                server: row.try_get(3)?,
                records: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or(0),
                requests: u64::try_from(row.try_get::<_, i64>(5)?).unwrap_or(0),
            });
        }
        // Sorted here, not by ORDER BY, so the order is SQLite's (bytes, `None` first) whatever the collation.
        counts.sort_by(|a, b| {
            (&a.key_id, &a.status, &a.reason, &a.server)
                .cmp(&(&b.key_id, &b.status, &b.reason, &b.server))
        });
        Ok(counts)
    }

    fn prune_audit(
        &mut self,
        before_us: i64,
        now_us: i64,
        dry_run: bool,
    ) -> Result<Pruned, StoreError> {
        super::prune::prune(
            &mut self.client,
            &mut self.statements,
            before_us,
            now_us,
            dry_run,
        )
    }

    fn schemas_matching(&mut self, prefix: &str) -> Result<Vec<SchemaRow>, StoreError> {
        // substr rather than LIKE, so `_` and `%` are taken literally; counted and dated from the
        // audit_by_schema index.
        let rows = self.client.query(
            "SELECT fingerprint, canonical, schema, first_seen_us,
                    (SELECT time_us FROM audit WHERE schema_id = s.id ORDER BY id DESC LIMIT 1),
                    (SELECT count(*) FROM audit WHERE schema_id = s.id)
             FROM schemas s WHERE substr(fingerprint, 1, length($1)) = $1 ORDER BY id",
            &[&prefix.to_ascii_lowercase()],
        )?;
        rows.iter()
            .map(|row| {
                Ok(SchemaRow {
                    fingerprint: row.try_get(0)?,
                    canonical: row.try_get(1)?,
                    text: row.try_get(2)?,
                    first_seen_us: row.try_get(3)?,
                    last_used_us: row.try_get(4)?,
                    requests: u64::try_from(row.try_get::<_, i64>(5)?).unwrap_or(0),
                })
            })
            .collect()
    }
}
