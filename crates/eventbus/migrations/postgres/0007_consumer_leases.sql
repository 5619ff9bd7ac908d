-- Leases of durable named consumers: with several processes on one database, the process whose
-- consumer instance holds a consumer's lease is the only one that runs it.
CREATE TABLE consumer_leases (
    name       text   COLLATE "C" PRIMARY KEY,
    holder     text   NOT NULL,               -- the consumer instance: process id and a UUID
    expires_at bigint NOT NULL                -- microseconds since the epoch, by the database clock
);
