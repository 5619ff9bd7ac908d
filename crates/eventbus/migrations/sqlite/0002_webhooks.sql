-- Webhook endpoints. Times are microseconds since the epoch, UTC.
CREATE TABLE webhook_endpoints (
    id                         TEXT    PRIMARY KEY,
    url                        TEXT    NOT NULL,
    description                TEXT,
    event_types                TEXT    NOT NULL,   -- JSON array of patterns
    project_id                 TEXT,
    tenant_id                  TEXT,
    headers                    TEXT    NOT NULL,   -- JSON object
    rate_limit                 INTEGER,            -- requests per second
    ordered                    INTEGER NOT NULL DEFAULT 0,
    disabled                   INTEGER NOT NULL DEFAULT 0,
    disabled_reason            TEXT,
    secret                     TEXT    NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    since_seq                  INTEGER NOT NULL,   -- log head at creation, enabling, filter change
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    failing_since              INTEGER,
    failure_count              INTEGER NOT NULL DEFAULT 0
);

-- Counters: the fan-out cursor and the endpoints version (bumped by every endpoint change).
CREATE TABLE webhook_state (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO webhook_state (name, value)
    VALUES ('fanout_cursor', coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)),
           ('endpoints_version', 0);

-- The durable delivery queue and its history: one row per (endpoint, event) sent or to send.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id     TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    status          TEXT    NOT NULL,              -- pending | succeeded | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    cycle_attempts  INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
-- The head of an ordered endpoint's queue.
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, event_seq, id)
    WHERE status = 'pending';
-- Due deliveries of an endpoint.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';

-- Every attempt.
CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   INTEGER NOT NULL,
    endpoint_id   TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status_code   INTEGER,
    response_body TEXT,
    error         TEXT,
    success       INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
