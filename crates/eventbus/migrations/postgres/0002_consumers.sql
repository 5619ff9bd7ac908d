-- Cursors of durable named consumers (in-process consumers, plugins).
CREATE TABLE consumer_cursors (
    name       text   COLLATE "C" PRIMARY KEY,
    seq        bigint NOT NULL,
    updated_at bigint NOT NULL               -- microseconds since the epoch
);
