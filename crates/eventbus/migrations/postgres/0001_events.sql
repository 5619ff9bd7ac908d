-- The event log. `seq` is assigned by the committer under the append lock (see
-- src/store/postgres/commit.rs), so commit order is seq order; there is no sequence object.
-- Text keys use the "C" collation: byte order makes the type-prefix ranges of patterns exact
-- (`project.` < t < `project/`) and comparisons cheap.
CREATE TABLE events (
    seq        bigint  PRIMARY KEY,
    id         text    COLLATE "C" NOT NULL,
    type       text    COLLATE "C" NOT NULL,
    ts         bigint  NOT NULL,             -- microseconds since the epoch, UTC
    project_id text    COLLATE "C",
    tenant_id  text    COLLATE "C",
    user_id    text    COLLATE "C",
    payload    text    NOT NULL,             -- the publisher's JSON bytes
    metadata   text                          -- JSON object, NULL when empty
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
    type        text    COLLATE "C" PRIMARY KEY,
    description text,
    schema      text,                        -- JSON Schema of the payload
    builtin     boolean NOT NULL DEFAULT false,
    updated_at  bigint  NOT NULL
);
