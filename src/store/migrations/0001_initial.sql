-- zavro store, schema version 1. Shipped: never edit; add a new numbered migration instead.

-- API keys. The server needs the secret itself to check HMACs, so it is stored as is: the file is mode 0600.
CREATE TABLE keys (
    id           TEXT PRIMARY KEY,
    secret       TEXT NOT NULL,
    label        TEXT,
    created_us   INTEGER NOT NULL,
    revoked_us   INTEGER,
    last_used_us INTEGER
) STRICT;

-- One row per action: every request the server answered, and every key added or revoked.
-- AUTOINCREMENT so that ids are never reused, even after the newest rows are deleted.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time_us    INTEGER NOT NULL,
    action     TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason     TEXT,
    detail     TEXT,
    key_id     TEXT,
    peer       TEXT,
    records    INTEGER NOT NULL DEFAULT 0,
    size       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX audit_by_time ON audit (time_us);
CREATE INDEX audit_by_key ON audit (key_id, id);

-- The original JSON of every accepted request: a JSON array of its records.
CREATE TABLE payloads (
    audit_id INTEGER PRIMARY KEY REFERENCES audit (id),
    json     TEXT NOT NULL
) STRICT;

-- Nonces of accepted requests, kept while their timestamp is inside the replay window.
CREATE TABLE nonces (
    key_id    TEXT NOT NULL,
    nonce     TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    audit_id  INTEGER NOT NULL,
    PRIMARY KEY (key_id, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_by_timestamp ON nonces (timestamp);
