-- zavro store, schema version 2: the audit trail becomes a hash chain (AUDIT.md). Shipped: never edit.
-- Rows that already exist are chained by this migration's hook, in Rust, with the same code as new rows.

-- SHA-256 (hex) of the payloads.json text of an accepted request; NULL when the row has no payload.
ALTER TABLE audit ADD COLUMN payload_sha256 TEXT;
-- The previous row's hash (hex); 64 zeros for the first row.
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
-- SHA-256 (hex) over prev_hash and this row's canonical encoding.
ALTER TABLE audit ADD COLUMN hash TEXT;

-- What `audit prune` removed: enough to check that the rest still continues the chain.
CREATE TABLE audit_checkpoints (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time_us     INTEGER NOT NULL,
    last_row    INTEGER NOT NULL,
    last_hash   TEXT NOT NULL,
    rows        INTEGER NOT NULL
) STRICT;
