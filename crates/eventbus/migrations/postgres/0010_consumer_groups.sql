-- Consumer groups: durable, shared pull consumers (issue 15). Same tables as SQLite's
-- 0009_consumer_groups; times are microseconds since the epoch, UTC. See src/store/group.rs for
-- the design and src/store/postgres/group.rs for the locking that lets processes share a group.
CREATE TABLE consumer_groups (
    id              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- part of the ack ids
    name            text    COLLATE "C" NOT NULL UNIQUE,
    tenant_id       text    COLLATE "C",              -- owner and filter
    types           text    NOT NULL,                 -- JSON array of patterns
    project_id      text    COLLATE "C",
    user_id         text    COLLATE "C",
    start_at        text    NOT NULL,                 -- new | earliest | <seq>, as created
    ack_wait_ms     bigint  NOT NULL,
    max_deliver     bigint  NOT NULL,
    max_ack_pending bigint  NOT NULL,
    ordered         boolean NOT NULL,
    cursor          bigint  NOT NULL,                 -- every event up to it was considered
    redelivered     bigint  NOT NULL DEFAULT 0,       -- deliveries after the first, in total
    created_at      bigint  NOT NULL,
    updated_at      bigint  NOT NULL
);
CREATE INDEX consumer_groups_tenant ON consumer_groups (tenant_id, name);

-- One row per (group, event) taken from the log and not acked yet (acked rows are deleted).
CREATE TABLE group_messages (
    group_id       bigint   NOT NULL,
    seq            bigint   NOT NULL,
    project_id     text     COLLATE "C",  -- the event's, for ordered groups
    state          smallint NOT NULL,     -- 0 ready, 1 leased, 2 dead
    visible_at     bigint   NOT NULL,     -- ready: from when; leased: lease end; dead: 0
    delivery_count integer  NOT NULL DEFAULT 0,
    token          bigint   NOT NULL DEFAULT 0, -- random part of the last delivery's ack id
    created_at     bigint   NOT NULL,
    dead_at        bigint,
    dead_reason    text,                  -- expired | nacked | archived
    PRIMARY KEY (group_id, seq)
) WITH (fillfactor = 80);
-- Ready rows of a group (state 0 or 1 with visible_at <= now), lease counts, and dead letters
-- in seq order (state 2, visible_at 0).
CREATE INDEX group_messages_ready ON group_messages (group_id, state, visible_at, seq);
