-- Leases of durable named consumers: the consumer instance holding a consumer's lease is the
-- only one that runs it (one process opens a SQLite database; leases keep two instances of one
-- consumer in that process from both running it, as on PostgreSQL).
CREATE TABLE consumer_leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,              -- the consumer instance: process id and a UUID
    expires_at INTEGER NOT NULL               -- microseconds since the epoch
) WITHOUT ROWID;
