-- API keys. The secret is kept only as its SHA-256; revocation is a timestamp, never a delete.
CREATE TABLE api_keys (
    id              TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    secret_hash     BLOB    NOT NULL,
    tenant_id       TEXT,
    project_ids     TEXT,                     -- JSON array; NULL: every project
    grants          TEXT    NOT NULL,         -- JSON {"publish": ["project.*"], ...}
    rate_limit      INTEGER,
    max_connections INTEGER,
    created_at      INTEGER NOT NULL,         -- microseconds since the epoch
    created_by      TEXT    NOT NULL,
    expires_at      INTEGER,
    revoked_at      INTEGER
) WITHOUT ROWID;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

-- Secrets the bus generates for itself (the browser-token signing key), shared by every process.
CREATE TABLE signing_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
