-- API keys created through the API (POST /v1/keys), shared by every
-- replica: only the blake3 of each secret is kept, and a key is looked up
-- by it. doc is the key as the service encoded it, without last_used:
-- that is a column of its own, written at most once a minute per key
-- without rewriting the document. Only adds a table (replicas of the
-- previous version keep working; they know config-file keys only).
CREATE TABLE IF NOT EXISTS api_keys (
    name      text COLLATE "C" PRIMARY KEY,
    blake3    text NOT NULL UNIQUE,
    last_used bigint,            -- unix seconds
    doc       bytea NOT NULL
);
