-- zavro store, schema version 6. Shipped: never edit; add a new numbered migration instead.

-- The Avro writer schemas that requests used, one row per fingerprint: the SHA-256, lowercase hex, of the
-- schema's Parsing Canonical Form (both as the Avro specification defines them, so other Avro tools compute the
-- same fingerprint). `schema` is the JSON text as first seen, with the docs, defaults and logical types that the
-- canonical form leaves out.
CREATE TABLE schemas (
    id            INTEGER PRIMARY KEY,
    fingerprint   TEXT NOT NULL UNIQUE,
    canonical     TEXT NOT NULL,
    schema        TEXT NOT NULL,
    first_seen_us INTEGER NOT NULL
) STRICT;

-- The writer schema of the request's Avro data. NULL where there is none: key changes, prunes, requests whose
-- container header could not be read, and rows written before schema version 6. When set, the schema's
-- fingerprint is part of the row's hash (AUDIT.md), so rows written before keep their hashes.
ALTER TABLE audit ADD COLUMN schema_id INTEGER REFERENCES schemas (id);

-- `audit query --schema FP` newest first, and `audit schemas` counting each schema's requests from the index.
CREATE INDEX audit_by_schema ON audit (schema_id, id) WHERE schema_id IS NOT NULL;
