-- CurveZMQ transport (PROTOCOL.md, "Transport security").
--
-- The server's long-term key pairs, in Z85. `serve` presents the current one; `server-key rotate --stage` makes
-- the next one ahead of time so clients can pin it before `server-key rotate` makes it current; a rotated-out
-- key is kept as retired, for the record. At most one current and one staged key.
CREATE TABLE server_keys (
    id INTEGER PRIMARY KEY,
    public_key TEXT NOT NULL UNIQUE,
    secret_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('staged', 'current', 'retired')),
    created_us INTEGER NOT NULL,
    retired_us INTEGER
);
CREATE UNIQUE INDEX server_keys_one_current ON server_keys (state) WHERE state = 'current';
CREATE UNIQUE INDEX server_keys_one_staged ON server_keys (state) WHERE state = 'staged';

-- Each API key's client public key (Z85), derived from its secret (PROTOCOL.md), so that the handshake check
-- finds the key a client proves in one indexed lookup. Filled for existing keys by the migration's hook.
ALTER TABLE keys ADD COLUMN curve_public TEXT;
CREATE UNIQUE INDEX keys_curve_public ON keys (curve_public);

-- How a request reached the server: 'curve' or 'plaintext'. NULL for rows written before this column and for
-- rows of local actions (`keys add`…); hashed into the chain only when not NULL, so older rows hash as before.
ALTER TABLE audit ADD COLUMN transport TEXT;
