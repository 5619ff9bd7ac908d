-- The archive manifest: one row per archive segment (a compressed JSON Lines file holding the
-- events `first_seq..=last_seq` that left the hot `events` table). A row is inserted in the same
-- transaction that deletes its events, so an event is either hot or in exactly one segment.
CREATE TABLE archive_segments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    first_seq  INTEGER NOT NULL UNIQUE,
    last_seq   INTEGER NOT NULL,
    from_ts    INTEGER NOT NULL,           -- smallest event timestamp, µs since the epoch
    to_ts      INTEGER NOT NULL,           -- largest event timestamp, µs since the epoch
    count      INTEGER NOT NULL,
    location   TEXT    NOT NULL UNIQUE,    -- file name inside the archive target
    checksum   TEXT    NOT NULL,           -- sha256 of the file's bytes, hex
    created_at INTEGER NOT NULL
);
CREATE INDEX archive_segments_last_seq ON archive_segments (last_seq);
