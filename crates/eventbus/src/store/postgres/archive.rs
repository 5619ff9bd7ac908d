//! The archive manifest and row moves for PostgreSQL ([`ArchiveStore`]).
//!
//! - The archive lock is a **session** advisory lock `(ARCHIVE_LOCK, hashtext(schema))` held on
//!   a connection of its own for the whole run or restore, so archivers of several processes on
//!   one schema take turns (one must not remove another's not-yet-committed file as an orphan).
//!   Dropping the lock closes that connection, which releases the lock even after a crash.
//! - Deleting archived rows and inserting the manifest row run in one transaction. It touches
//!   only rows older than the newest one and never takes the append lock, so publishes go on.
//! - A restore inserts rows with their original `seq`, all below the head: tailing readers have
//!   passed them already and are not woken for them.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use super::commit::{EventColumns, INSERT_ROWS};
use super::{COLUMNS, PgStore, row_to_event};
use crate::core::event::Event;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::archive::{ArchiveLock, ArchiveStore, Segment};

/// First key of the archive advisory lock (`EBAR`); the second is the schema's hash.
const ARCHIVE_LOCK: i32 = 0x4542_4152;

const SEGMENT_COLUMNS: &str =
    "id, first_seq, last_seq, from_ts, to_ts, count, location, checksum, created_at";

fn row_to_segment(r: &PgRow) -> Result<Segment, sqlx::Error> {
    Ok(Segment {
        id: r.try_get::<i64, _>(0)? as u64,
        first_seq: r.try_get::<i64, _>(1)? as u64,
        last_seq: r.try_get::<i64, _>(2)? as u64,
        from_ts: Timestamp::from_micros(r.try_get(3)?),
        to_ts: Timestamp::from_micros(r.try_get(4)?),
        count: r.try_get::<i64, _>(5)? as u64,
        location: r.try_get(6)?,
        checksum: r.try_get(7)?,
        created_at: Timestamp::from_micros(r.try_get(8)?),
    })
}

/// Why a row move changed nothing.
enum Refused {
    Db(sqlx::Error),
    Mismatch(u64),
    Missing,
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Refused::Db(e)
    }
}

#[async_trait]
impl ArchiveStore for PgStore {
    async fn archive_lock(&self) -> Result<Option<ArchiveLock>, StoreError> {
        let connect = self.session.clone();
        let locked = self
            .write(async {
                let mut conn = PgConnection::connect_with(&connect).await?;
                let got: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
                )
                .bind(ARCHIVE_LOCK)
                .fetch_one(&mut conn)
                .await?;
                Ok((got, conn))
            })
            .await?;
        Ok(match locked {
            (true, conn) => Some(Box::new(conn) as ArchiveLock),
            (false, _) => None,
        })
    }

    async fn oldest_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(|pool| async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM events WHERE seq < (SELECT max(seq) FROM events) \
                 ORDER BY seq LIMIT $1"
            )))
            .bind(limit as i64)
            .fetch_all(&pool)
            .await?;
            rows.iter().map(|r| row_to_event(r, 0)).collect()
        })
        .await
    }

    async fn commit_segment(&self, segment: &Segment) -> Result<u64, StoreError> {
        let s = segment;
        let outcome = self
            .write(async {
                let attempt = async {
                    let mut tx = self.db.begin().await?;
                    let deleted = sqlx::query("DELETE FROM events WHERE seq BETWEEN $1 AND $2")
                        .bind(s.first_seq as i64)
                        .bind(s.last_seq as i64)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted != s.count {
                        tx.rollback().await?;
                        return Err(Refused::Mismatch(deleted));
                    }
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO archive_segments \
                         (first_seq, last_seq, from_ts, to_ts, count, location, checksum, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    )
                    .bind(s.first_seq as i64)
                    .bind(s.last_seq as i64)
                    .bind(s.from_ts.as_micros())
                    .bind(s.to_ts.as_micros())
                    .bind(s.count as i64)
                    .bind(&s.location)
                    .bind(&s.checksum)
                    .bind(s.created_at.as_micros())
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(id as u64)
                };
                Ok(attempt.await)
            })
            .await?;
        match outcome {
            Ok(id) => Ok(id),
            Err(Refused::Db(e)) => Err(super::store_error(e)),
            Err(Refused::Mismatch(deleted)) => Err(StoreError::Internal(format!(
                "archive segment {}..={} expected {} hot events, found {deleted}; nothing changed",
                s.first_seq, s.last_seq, s.count
            ))),
            Err(Refused::Missing) => unreachable!("commit_segment never looks a segment up"),
        }
    }

    async fn segments(&self) -> Result<Vec<Segment>, StoreError> {
        self.read(|pool| async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SEGMENT_COLUMNS} FROM archive_segments ORDER BY first_seq"
            )))
            .fetch_all(&pool)
            .await?;
            rows.iter().map(row_to_segment).collect()
        })
        .await
    }

    async fn restore_segment(
        &self,
        segment_id: u64,
        events: Vec<Arc<Event>>,
    ) -> Result<(), StoreError> {
        let columns = EventColumns::new(events.iter().map(|e| &**e));
        let outcome = self
            .write(async {
                let attempt = async {
                    let mut tx = self.db.begin().await?;
                    let removed = sqlx::query("DELETE FROM archive_segments WHERE id = $1")
                        .bind(segment_id as i64)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if removed != 1 {
                        tx.rollback().await?;
                        return Err(Refused::Missing);
                    }
                    columns
                        .bind(sqlx::query(INSERT_ROWS))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                };
                Ok(attempt.await)
            })
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(Refused::Db(e)) => Err(super::store_error(e)),
            Err(Refused::Missing) => Err(StoreError::Internal(format!(
                "archive segment {segment_id} is not in the manifest"
            ))),
            Err(Refused::Mismatch(_)) => unreachable!("restore_segment counts nothing"),
        }
    }
}
