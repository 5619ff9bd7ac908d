-- Consumer groups: durable, shared pull consumers (issue 15). Times are microseconds since the
-- epoch, UTC. See src/store/group.rs for the design and src/store/sqlite/group.rs for the SQL.
CREATE TABLE consumer_groups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: part of the ack ids
    name            TEXT    NOT NULL UNIQUE,
    tenant_id       TEXT,                              -- owner and filter
    types           TEXT    NOT NULL,                  -- JSON array of patterns
    project_id      TEXT,
    user_id         TEXT,
    start_at        TEXT    NOT NULL,                  -- new | earliest | <seq>, as created
    ack_wait_ms     INTEGER NOT NULL,
    max_deliver     INTEGER NOT NULL,
    max_ack_pending INTEGER NOT NULL,
    ordered         INTEGER NOT NULL,
    cursor          INTEGER NOT NULL,                  -- every event up to it was considered
    redelivered     INTEGER NOT NULL DEFAULT 0,        -- deliveries after the first, in total
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX consumer_groups_tenant ON consumer_groups (tenant_id, name);

-- One row per (group, event) taken from the log and not acked yet (acked rows are deleted).
CREATE TABLE group_messages (
    group_id       INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    project_id     TEXT,                -- the event's, for ordered groups
    state          INTEGER NOT NULL,    -- 0 ready, 1 leased, 2 dead
    visible_at     INTEGER NOT NULL,    -- ready: from when; leased: lease end; dead: 0
    delivery_count INTEGER NOT NULL DEFAULT 0,
    token          INTEGER NOT NULL DEFAULT 0,  -- random part of the last delivery's ack id
    created_at     INTEGER NOT NULL,
    dead_at        INTEGER,
    dead_reason    TEXT,                -- expired | nacked | archived
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;
-- Ready rows of a group (state 0 or 1 with visible_at <= now), lease counts, and dead letters
-- in seq order (state 2, visible_at 0).
CREATE INDEX group_messages_ready ON group_messages (group_id, state, visible_at, seq);
