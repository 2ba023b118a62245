-- zavro store on PostgreSQL, schema version 2. Shipped: never edit; add a new numbered migration instead.
-- The stable ids of accepted requests (PROTOCOL.md, envelope field `id`), as in the SQLite store's version 12: a
-- request whose key already stored a request under its id is answered `duplicate` with that request's audit id,
-- whatever its nonce and timestamp. The primary key refuses a second use also between servers (the group that
-- loses the race is checked again). Kept as long as the audit row they name: `audit prune` removes them with it.
CREATE TABLE request_ids (
    key_id         TEXT NOT NULL,
    id             TEXT NOT NULL,
    audit_id       BIGINT NOT NULL REFERENCES audit (id),
    payload_digest TEXT NOT NULL,
    PRIMARY KEY (key_id, id)
);
CREATE INDEX request_ids_by_audit ON request_ids (audit_id);
