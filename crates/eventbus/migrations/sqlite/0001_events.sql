-- The event log. `seq` is the rowid (AUTOINCREMENT: never reused, even after archiving).
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    ts         INTEGER NOT NULL,           -- microseconds since the epoch, UTC
    project_id TEXT,
    tenant_id  TEXT,
    user_id    TEXT,
    payload    TEXT    NOT NULL,           -- the publisher's JSON bytes
    metadata   TEXT                        -- JSON object, NULL when empty
);
-- UUIDv7 ids are time-ordered, so this unique index grows at its right edge.
CREATE UNIQUE INDEX events_id ON events (id);
CREATE INDEX events_type_seq ON events (type, seq);
CREATE INDEX events_project_seq ON events (project_id, seq) WHERE project_id IS NOT NULL;
CREATE INDEX events_tenant_seq ON events (tenant_id, seq) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_user_seq ON events (user_id, seq) WHERE user_id IS NOT NULL;
CREATE INDEX events_ts ON events (ts);

-- The event-type catalogue.
CREATE TABLE event_types (
    type        TEXT    PRIMARY KEY,
    description TEXT,
    schema      TEXT,                      -- JSON Schema of the payload
    builtin     INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
