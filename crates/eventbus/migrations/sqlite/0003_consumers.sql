-- Cursors of durable named consumers (in-process consumers, plugins).
CREATE TABLE consumer_cursors (
    name       TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL               -- microseconds since the epoch
) WITHOUT ROWID;
