-- The archive manifest: one row per archive segment (a compressed JSON Lines file holding the
-- events `first_seq..=last_seq` that left the hot `events` table). A row is inserted in the same
-- transaction that deletes its events, so an event is either hot or in exactly one segment.
CREATE TABLE archive_segments (
    id         bigserial PRIMARY KEY,
    first_seq  bigint NOT NULL UNIQUE,
    last_seq   bigint NOT NULL,
    from_ts    bigint NOT NULL,              -- smallest event timestamp, µs since the epoch
    to_ts      bigint NOT NULL,              -- largest event timestamp, µs since the epoch
    count      bigint NOT NULL,
    location   text   COLLATE "C" NOT NULL UNIQUE, -- file name inside the archive target
    checksum   text   NOT NULL,              -- sha256 of the file's bytes, hex
    created_at bigint NOT NULL
);
CREATE INDEX archive_segments_last_seq ON archive_segments (last_seq);
