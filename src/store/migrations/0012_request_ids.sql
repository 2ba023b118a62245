-- zavro store, schema version 12. Shipped: never edit.
-- The stable ids of accepted requests (PROTOCOL.md, envelope field `id`): a request whose key already stored a
-- request under its id is answered `duplicate` with that request's audit id, whatever its nonce and timestamp,
-- so a spooled request signed again after its timestamp left the window is still stored once. Kept as long as
-- the audit row they name: `audit prune` removes them with it. `payload_digest` is the SHA-256 of the request's
-- payload frame, so an id reused for other data is refused rather than taken for a retry.
CREATE TABLE request_ids (
    key_id         TEXT NOT NULL,
    id             TEXT NOT NULL,
    audit_id       INTEGER NOT NULL,
    payload_digest TEXT NOT NULL,
    PRIMARY KEY (key_id, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX request_ids_by_audit ON request_ids (audit_id);
