-- How many requests an audit row stands for. 1 for every row but the summaries of refusals that no key vouches
-- for (malformed, unknown key, bad signature…), which are counted per peer and reason instead of written one row
-- each, so that a flood of them costs the store a bounded amount (SECURITY.md, "The audit trail as a weapon").
ALTER TABLE audit ADD COLUMN requests INTEGER NOT NULL DEFAULT 1;
