-- zavro store, schema version 5. Shipped: never edit; add a new numbered migration instead.

-- Keys may expire: from this time on (µs since the epoch) the server refuses the key as `expired_key`.
ALTER TABLE keys ADD COLUMN expires_us INTEGER;

-- `keys list` counts each key's accepted requests and records at query time instead of the server writing a
-- counter per request. Covering and partial: only accepted first-time sends are in it (rejections, duplicates and
-- key changes cost nothing), and a count reads index entries only, never the table.
CREATE INDEX audit_key_usage ON audit (key_id, time_us, records)
    WHERE action = 'send' AND status = 'accepted' AND reason IS NULL;

-- `audit query --status rejected` and `--reason CODE` with --limit read newest first among the few rows that
-- match, instead of walking back through millions of accepted ones. Partial, so accepted sends never touch them.
CREATE INDEX audit_rejected ON audit (id) WHERE status = 'rejected';
CREATE INDEX audit_by_reason ON audit (reason, id) WHERE reason IS NOT NULL;

-- `audit query --peer ADDRESS` newest first.
CREATE INDEX audit_by_peer ON audit (peer, id);
