-- The replay window nonces are kept for: the largest `--max-skew` any server has run with on this store. A
-- server raises it at start-up to its own `--max-skew` if that is larger (never lowers it), and every server
-- prunes nonces by it, so one with a smaller skew never forgets a nonce another still accepts requests for.
-- Exactly one row; stores made before it start at the default `--max-skew`, 300 s. An operator lowers it by
-- hand after retiring a server with a large skew (README, "Several servers").
CREATE TABLE nonce_window (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    max_skew_secs INTEGER NOT NULL CHECK (max_skew_secs > 0)
) STRICT;
INSERT INTO nonce_window (id, max_skew_secs) VALUES (1, 300);
