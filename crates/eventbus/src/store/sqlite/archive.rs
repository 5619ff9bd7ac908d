//! The archive manifest and row moves for SQLite ([`ArchiveStore`]).
//!
//! Deleting archived rows and inserting the manifest row run in one transaction on the writer
//! connection, in order with appends (between two group commits), so a publish waits at most for
//! one segment's delete. The archive lock is a no-op beyond the
//! [`Archive`](crate::store::archive::Archive)'s own mutex: the database's lock file already
//! keeps other processes out.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{COLUMNS, SqliteStore, row_to_event};
use crate::core::event::Event;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::archive::{ArchiveLock, ArchiveStore, Segment};

const SEGMENT_COLUMNS: &str =
    "id, first_seq, last_seq, from_ts, to_ts, count, location, checksum, created_at";

fn row_to_segment(r: &rusqlite::Row<'_>) -> rusqlite::Result<Segment> {
    Ok(Segment {
        id: r.get::<_, i64>(0)? as u64,
        first_seq: r.get::<_, i64>(1)? as u64,
        last_seq: r.get::<_, i64>(2)? as u64,
        from_ts: Timestamp::from_micros(r.get(3)?),
        to_ts: Timestamp::from_micros(r.get(4)?),
        count: r.get::<_, i64>(5)? as u64,
        location: r.get(6)?,
        checksum: r.get(7)?,
        created_at: Timestamp::from_micros(r.get(8)?),
    })
}

#[async_trait]
impl ArchiveStore for SqliteStore {
    async fn archive_lock(&self) -> Result<Option<ArchiveLock>, StoreError> {
        Ok(Some(Box::new(())))
    }

    async fn oldest_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE seq < (SELECT max(seq) FROM events) ORDER BY seq LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit as i64], row_to_event)?;
            rows.collect()
        })
        .await
    }

    async fn commit_segment(&self, segment: &Segment) -> Result<u64, StoreError> {
        let s = segment.clone();
        let outcome = self
            .write(move |c| {
                let tx = c.transaction()?;
                let deleted = tx.execute(
                    "DELETE FROM events WHERE seq BETWEEN ?1 AND ?2",
                    params![s.first_seq as i64, s.last_seq as i64],
                )?;
                if deleted as u64 != s.count {
                    // Dropping the transaction rolls it back.
                    return Ok(Err(deleted));
                }
                tx.execute(
                    "INSERT INTO archive_segments \
                     (first_seq, last_seq, from_ts, to_ts, count, location, checksum, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        s.first_seq as i64,
                        s.last_seq as i64,
                        s.from_ts.as_micros(),
                        s.to_ts.as_micros(),
                        s.count as i64,
                        s.location,
                        s.checksum,
                        s.created_at.as_micros()
                    ],
                )?;
                let id = tx.last_insert_rowid() as u64;
                tx.commit()?;
                Ok(Ok(id))
            })
            .await?;
        outcome.map_err(|deleted| {
            StoreError::Internal(format!(
                "archive segment {}..={} expected {} hot events, found {deleted}; nothing changed",
                segment.first_seq, segment.last_seq, segment.count
            ))
        })
    }

    async fn segments(&self) -> Result<Vec<Segment>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM archive_segments ORDER BY first_seq"
            ))?;
            let rows = stmt.query_map([], row_to_segment)?;
            rows.collect()
        })
        .await
    }

    async fn restore_segment(
        &self,
        segment_id: u64,
        events: Vec<Arc<Event>>,
    ) -> Result<(), StoreError> {
        let outcome = self
            .write(move |c| {
                let tx = c.transaction()?;
                let found = tx
                    .query_row("SELECT 1 FROM archive_segments WHERE id = ?1", [segment_id as i64], |_| Ok(()))
                    .optional()?;
                if found.is_none() {
                    return Ok(false);
                }
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO events (seq, id, type, ts, project_id, tenant_id, user_id, payload, metadata) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?;
                    for e in &events {
                        let metadata = (!e.metadata.is_empty())
                            .then(|| serde_json::to_string(&e.metadata).expect("string map serialises"));
                        insert.execute(params![
                            e.seq as i64,
                            e.id,
                            e.event_type,
                            e.timestamp.as_micros(),
                            e.project_id,
                            e.tenant_id,
                            e.user_id,
                            e.payload.get(),
                            metadata,
                        ])?;
                    }
                }
                tx.execute("DELETE FROM archive_segments WHERE id = ?1", [segment_id as i64])?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if outcome {
            Ok(())
        } else {
            Err(StoreError::Internal(format!(
                "archive segment {segment_id} is not in the manifest"
            )))
        }
    }
}
