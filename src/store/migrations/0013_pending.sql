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

-- A server of an older zavro that was already running when this migration ran numbers its rows from `audit`
-- alone: it would give a pending row's id to a row of its own and fork the chain. Such a row is refused (its
-- group fails, and its clients retry elsewhere or later) while any pending row has its id or a higher one. A
-- pending row being settled passes: the row with its id and hash is the one waiting. A later migration that
-- rebuilds `audit` (a new table, copied, renamed) drops this trigger with the old table: it must create it again.
CREATE TRIGGER audit_below_pending BEFORE INSERT ON audit
WHEN EXISTS (SELECT 1 FROM pending WHERE audit_id >= NEW.id)
 AND NOT EXISTS (SELECT 1 FROM pending WHERE audit_id = NEW.id AND hash IS NEW.hash)
BEGIN
    SELECT RAISE(ABORT, 'acknowledged requests wait in the pending table at or above this audit id: a zavro older than store version 13 is still writing to this store; stop it and run the new version');
END;
