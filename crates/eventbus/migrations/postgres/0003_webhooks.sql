-- Webhooks: endpoints, the durable delivery queue, the attempt log and the fan-out state.
-- Same tables as SQLite's 0002_webhooks; times are microseconds since the epoch, UTC. See
-- src/store/postgres/webhook.rs for the locking that lets several processes share the queue.
CREATE TABLE webhook_endpoints (
    id                         text    COLLATE "C" PRIMARY KEY,
    url                        text    NOT NULL,
    description                text,
    event_types                text    NOT NULL,   -- JSON array of patterns
    project_id                 text    COLLATE "C",
    tenant_id                  text    COLLATE "C",
    headers                    text    NOT NULL,   -- JSON object
    rate_limit                 bigint,             -- requests per second
    ordered                    boolean NOT NULL DEFAULT false,
    disabled                   boolean NOT NULL DEFAULT false,
    disabled_reason            text,
    secret                     text    NOT NULL,
    previous_secret            text,
    previous_secret_expires_at bigint,
    since_seq                  bigint  NOT NULL,   -- log head at creation, enabling, filter change
    created_at                 bigint  NOT NULL,
    updated_at                 bigint  NOT NULL,
    failing_since              bigint,
    failure_count              bigint  NOT NULL DEFAULT 0
);

-- Counters: the fan-out cursor and the endpoints version (bumped by every endpoint change).
CREATE TABLE webhook_state (
    name  text   COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO webhook_state (name, value)
    VALUES ('fanout_cursor', (SELECT coalesce(max(seq), 0) FROM events)),
           ('endpoints_version', 0);

-- The durable delivery queue and its history: one row per (endpoint, event) sent or to send.
CREATE TABLE webhook_deliveries (
    id               bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      text    COLLATE "C" NOT NULL,
    event_seq        bigint  NOT NULL,
    event_id         text    COLLATE "C" NOT NULL,
    event_type       text    COLLATE "C" NOT NULL,
    status           text    COLLATE "C" NOT NULL,  -- pending | succeeded | failed
    attempts         bigint  NOT NULL DEFAULT 0,
    cycle_attempts   bigint  NOT NULL DEFAULT 0,
    next_attempt_at  bigint  NOT NULL,
    lease_until      bigint  NOT NULL DEFAULT 0,
    created_at       bigint  NOT NULL,
    updated_at       bigint  NOT NULL,
    last_status_code integer,
    last_error       text
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
    id            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   bigint  NOT NULL,
    endpoint_id   text    COLLATE "C" NOT NULL,
    event_id      text    COLLATE "C" NOT NULL,
    attempt       bigint  NOT NULL,
    started_at    bigint  NOT NULL,
    duration_ms   bigint  NOT NULL,
    status_code   integer,
    response_body text,
    error         text,
    success       boolean NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
