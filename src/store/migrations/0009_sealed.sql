-- Secrets sealed at rest (src/sealed.rs; README.md, "Secrets at rest"). Shipped: never edit.
--
-- A store is unsealed (no `sealing` row: secrets in clear text in `keys.secret` and `server_keys.secret_key`, as
-- before) or sealed under one master key (a `sealing` row with its fingerprint: every secret is in
-- `secret_sealed` as nonce || XChaCha20-Poly1305 ciphertext, its clear-text column NULL). Each row holds exactly
-- one of the two. SQLite cannot make a column nullable in place, so both tables are rebuilt; nothing else
-- refers to them.

CREATE TABLE keys_new (
    id            TEXT PRIMARY KEY,
    secret        TEXT,
    label         TEXT,
    created_us    INTEGER NOT NULL,
    revoked_us    INTEGER,
    last_used_us  INTEGER,
    expires_us    INTEGER,
    curve_public  TEXT,
    secret_sealed BLOB,
    CHECK ((secret IS NULL) <> (secret_sealed IS NULL))
) STRICT;
INSERT INTO keys_new (id, secret, label, created_us, revoked_us, last_used_us, expires_us, curve_public)
    SELECT id, secret, label, created_us, revoked_us, last_used_us, expires_us, curve_public FROM keys;
DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;
CREATE UNIQUE INDEX keys_curve_public ON keys (curve_public);

CREATE TABLE server_keys_new (
    id            INTEGER PRIMARY KEY,
    public_key    TEXT NOT NULL UNIQUE,
    secret_key    TEXT,
    state         TEXT NOT NULL CHECK (state IN ('staged', 'current', 'retired')),
    created_us    INTEGER NOT NULL,
    retired_us    INTEGER,
    secret_sealed BLOB,
    CHECK ((secret_key IS NULL) <> (secret_sealed IS NULL))
);
INSERT INTO server_keys_new (id, public_key, secret_key, state, created_us, retired_us)
    SELECT id, public_key, secret_key, state, created_us, retired_us FROM server_keys;
DROP TABLE server_keys;
ALTER TABLE server_keys_new RENAME TO server_keys;
CREATE UNIQUE INDEX server_keys_one_current ON server_keys (state) WHERE state = 'current';
CREATE UNIQUE INDEX server_keys_one_staged ON server_keys (state) WHERE state = 'staged';

-- At most one row: the fingerprint of the master key the store is sealed under (never the key), and when.
CREATE TABLE sealing (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    sealed_us   INTEGER NOT NULL
) STRICT;
