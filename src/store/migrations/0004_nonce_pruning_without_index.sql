-- zavro store, schema version 4. Shipped: never edit.
-- The nonces table only holds the replay window's worth of rows, so pruning it once a minute by a full scan is
-- cheap, while keeping this index cost every accepted request one more page to write and fsync.
DROP INDEX nonces_by_timestamp;
