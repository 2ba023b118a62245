-- zavro store, schema version 13. Shipped: never edit.
-- Accepted requests acknowledged before their rows reach `audit` and `payloads` (README, "Where an accepted
-- request goes"): a small request's commit writes this one row (with its nonce, and its request id if it has one)
-- instead of an audit row, five index entries, a payload row and the id counter. Each row is the audit row it
-- becomes, already numbered and hash-chained (`audit_id`, `prev_hash`, `hash` as `audit` would hold them), with
-- its payload in `json`. Servers move the rows into `audit` and `payloads` in id order, in one transaction, when
-- enough wait or when idle; every command that opens the store moves them first, so no reader misses one.
CREATE TABLE pending (
    audit_id       INTEGER PRIMARY KEY,
    time_us        INTEGER NOT NULL,
    action         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason         TEXT,
    detail         TEXT,
    key_id         TEXT,
    peer           TEXT,
    records        INTEGER NOT NULL DEFAULT 0,
    size           INTEGER NOT NULL DEFAULT 0,
    payload_sha256 TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL,
    schema_id      INTEGER REFERENCES schemas (id),
    requests       INTEGER NOT NULL DEFAULT 1,
    transport      TEXT,
    server         TEXT,
    json           TEXT NOT NULL
) STRICT;
