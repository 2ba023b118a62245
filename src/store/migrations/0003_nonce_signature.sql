-- zavro store, schema version 3. Shipped: never edit.
-- The signature of the accepted request that used each nonce, so a byte-identical retry (same nonce, same
-- signature) is answered "already accepted" instead of being refused as a replay.
ALTER TABLE nonces ADD COLUMN signature TEXT;
