//! Archiving: events older than the retention leave the hot `events` table for compressed,
//! self-describing files in an [`ArchiveTarget`], listed in the `archive_segments` manifest
//! table of the same store; they can be queried there and restored.
//!
//! Layout: this module holds the backend-neutral [`Archive`] (run, list, restore, query) and the
//! [`ArchiveStore`] trait each backend implements with its own SQL (`store::sqlite::archive`,
//! `store::postgres::archive`); [`format`](mod@format) is the file format, [`target`] where
//! files live (`file://` or `s3://`).
//!
//! Invariants:
//! - **Nothing lost, nothing duplicated.** A segment is archived in two steps: (1) its file is
//!   written, atomically and durably, under a name derived from its seq range (on `file://` a
//!   temporary name, fsync, rename, fsync of the directory; on `s3://` one `PUT`); (2) **one**
//!   transaction inserts the manifest row and deletes the archived rows.
//!   A crash before (2) commits leaves the events hot and at most an orphan file, which the next
//!   run removes before it archives (or overwrites, when it writes the same range). A crash after
//!   (2) leaves a complete file with its manifest row. So every event is, at every moment, either
//!   in the hot table or in exactly one segment listed by the manifest.
//! - **Archived seqs precede hot ones.** A run takes the hot events in `seq` order and stops at the
//!   first one younger than the retention (retention is by event `timestamp`), and never takes
//!   the newest stored event (so a backend that numbers by `max(seq)` never reuses a `seq`).
//!   Restoring a segment out of order breaks this ordering, so [`Archive::query`] merges both
//!   sources by `seq` rather than relying on it.
//! - **One archiver at a time** per store: a run and a restore hold the store's archive lock
//!   ([`ArchiveStore::archive_lock`]; on PostgreSQL a session advisory lock, so several processes
//!   take turns), since removing orphans must not race another archiver's uncommitted file.
//! - **Publishes are not held up**: segments are read in batches from a read connection, files
//!   are written outside any transaction, and the deleting transaction touches only old rows (on
//!   SQLite it runs on the writer between two group commits: publishes wait for at most one
//!   segment's delete).
//! - **Queries see each event once**: [`Archive::query`] retries when the manifest changed while
//!   it read, so an event moving between the hot table and a segment is neither missed nor
//!   doubled.
//! - **Reads are cached**: queries keep recently read segments decoded ([`cache`], up to
//!   [`cache::CACHE_BYTES`]), keyed by the file's checksum, so paging through a segment reads
//!   and decodes it once, not once per page. A segment's content never changes under its
//!   checksum, so the cache is never stale; a restore drops its entry.
//! - **Idempotency covers hot events only**: an `id` republished after its event was archived is
//!   stored again as a new event (a restore of its segment then fails on the duplicate id).

mod cache;
pub mod format;
pub mod target;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use self::format::Header;
pub use self::target::{ArchiveTarget, FileTarget, S3Target, open_target};
use super::{EventPage, EventQuery, EventStore, StoreError};
use crate::core::event::Event;
use crate::core::time::Timestamp;

/// Events per segment unless configured otherwise.
pub const DEFAULT_BATCH: usize = 10_000;
const SEGMENT_SUFFIX: &str = ".jsonl.zst";
const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;
/// How often [`Archive::query`] reads again when segments moved while it read.
const QUERY_ATTEMPTS: usize = 40;

/// Pause before trying a query again after segments moved: an archive run commits one segment
/// after another, so a query retried at once would likely meet the next one.
const QUERY_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// One archived segment: a manifest row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// Manifest id (0 before the row is inserted).
    pub id: u64,
    /// `seq` of the first event.
    pub first_seq: u64,
    /// `seq` of the last event.
    pub last_seq: u64,
    /// Smallest event timestamp.
    pub from_ts: Timestamp,
    /// Largest event timestamp.
    pub to_ts: Timestamp,
    /// Number of events.
    pub count: u64,
    /// Object name in the archive target.
    pub location: String,
    /// sha256 of the file, hex.
    pub checksum: String,
    /// When the segment was archived.
    pub created_at: Timestamp,
}

/// A held archive lock; dropping it releases the lock.
pub type ArchiveLock = Box<dyn std::any::Any + Send>;

/// The backend-specific part of archiving (the manifest table and moving rows).
#[async_trait]
pub trait ArchiveStore: EventStore {
    /// Takes the store's archive lock; `None` when another archiver holds it.
    async fn archive_lock(&self) -> Result<Option<ArchiveLock>, StoreError>;

    /// The oldest hot events in `seq` order, at most `limit`, never the newest stored event.
    async fn oldest_events(&self, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// In one transaction: deletes the hot events `first_seq..=last_seq` (which must number
    /// exactly `count`, otherwise nothing changes and the result is `Internal`) and inserts the
    /// manifest row; returns its id.
    async fn commit_segment(&self, segment: &Segment) -> Result<u64, StoreError>;

    /// Every manifest row, by `first_seq`.
    async fn segments(&self) -> Result<Vec<Segment>, StoreError>;

    /// In one transaction: inserts `events` (with their `seq` and `id`) into the hot table and
    /// deletes the manifest row `segment_id`.
    async fn restore_segment(
        &self,
        segment_id: u64,
        events: Vec<Arc<Event>>,
    ) -> Result<(), StoreError>;
}

/// Archiving failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The archive target failed.
    #[error("archive target: {0}")]
    Target(String),
    /// An archive file is damaged or not an archive file.
    #[error("archive file: {0}")]
    Format(String),
    /// No segment has this id.
    #[error("no archive segment has id {0}")]
    NotFound(u64),
    /// Another archiver holds the archive lock.
    #[error("another archive run or restore is in progress")]
    Busy,
}

impl ArchiveError {
    fn format(e: impl std::fmt::Display) -> Self {
        ArchiveError::Format(e.to_string())
    }
}

impl From<ArchiveError> for StoreError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Store(e) => e,
            ArchiveError::Target(m) => StoreError::Unavailable(format!("archive target: {m}")),
            ArchiveError::Busy => StoreError::Unavailable(ArchiveError::Busy.to_string()),
            e => StoreError::Internal(e.to_string()),
        }
    }
}

/// A segment whose file is written but whose manifest transaction has not run.
#[derive(Debug)]
pub struct PendingSegment {
    segment: Segment,
}

impl PendingSegment {
    /// The segment it will become.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
}

/// What a run archived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Segments written.
    pub segments: usize,
    /// Events moved out of the hot table.
    pub events: u64,
    /// Orphan files (from interrupted runs) removed.
    pub orphans_removed: usize,
}

/// How this process's archive runs went (for `/health/ready`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// When a run last finished without error.
    pub last_success: Option<Timestamp>,
    /// When a run last failed.
    pub last_failure: Option<Timestamp>,
    /// Why it failed.
    pub last_error: Option<String>,
}

/// Archiving for one store and one target.
pub struct Archive {
    store: Arc<dyn ArchiveStore>,
    target: Arc<dyn ArchiveTarget>,
    batch: usize,
    running: tokio::sync::Mutex<()>,
    cache: cache::SegmentCache,
    status: std::sync::Mutex<RunStatus>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("target", &self.target)
            .field("batch", &self.batch)
            .finish()
    }
}

impl Archive {
    /// Archiving of `store` into `target`, [`DEFAULT_BATCH`] events per segment.
    pub fn new(store: Arc<dyn ArchiveStore>, target: Box<dyn ArchiveTarget>) -> Self {
        Archive {
            store,
            target: Arc::from(target),
            batch: DEFAULT_BATCH,
            running: tokio::sync::Mutex::new(()),
            cache: cache::SegmentCache::new(cache::CACHE_BYTES),
            status: std::sync::Mutex::default(),
        }
    }

    /// Sets the most events per segment (at least 1).
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ArchiveStore> {
        &self.store
    }

    /// The cutoff of a retention of `days`: events with a timestamp before it are archived.
    pub fn cutoff(days: u32, now: Timestamp) -> Timestamp {
        now.plus_micros(-(i64::from(days) * MICROS_PER_DAY))
    }

    /// Archives every event older than `before` (in `seq` order, up to the first younger one),
    /// in segments of the batch size. Removes orphan files of interrupted runs first.
    pub async fn run(&self, before: Timestamp) -> Result<RunReport, ArchiveError> {
        self.run_until(before, &CancellationToken::new()).await
    }

    /// How the runs of this process went.
    pub fn status(&self) -> RunStatus {
        self.status.lock().expect("archive status").clone()
    }

    /// Like [`Archive::run`], stopping between two segments once `cancel` fires. Every run is
    /// counted in the metrics and in [`Archive::status`].
    pub async fn run_until(
        &self,
        before: Timestamp,
        cancel: &CancellationToken,
    ) -> Result<RunReport, ArchiveError> {
        let result = self.run_locked(before, cancel).await;
        let now = Timestamp::now();
        let outcome = match &result {
            Ok(report) => {
                metrics::counter!(crate::metric::ARCHIVED_EVENTS).increment(report.events);
                metrics::gauge!(crate::metric::ARCHIVE_LAST_SUCCESS)
                    .set(now.as_micros() as f64 / 1e6);
                self.status.lock().expect("archive status").last_success = Some(now);
                "ok"
            }
            Err(ArchiveError::Busy) => "busy",
            Err(e) => {
                let mut status = self.status.lock().expect("archive status");
                status.last_failure = Some(now);
                status.last_error = Some(e.to_string());
                "failed"
            }
        };
        metrics::counter!(crate::metric::ARCHIVE_RUNS, "outcome" => outcome).increment(1);
        result
    }

    async fn run_locked(
        &self,
        before: Timestamp,
        cancel: &CancellationToken,
    ) -> Result<RunReport, ArchiveError> {
        let _running = self.running.lock().await;
        let Some(_lock) = self.store.archive_lock().await? else {
            return Err(ArchiveError::Busy);
        };
        let mut report = RunReport {
            orphans_removed: self.remove_orphans().await?,
            ..RunReport::default()
        };
        while !cancel.is_cancelled()
            && let Some(pending) = self.write_next_segment(before).await?
        {
            let segment = self.commit_segment(pending).await?;
            report.segments += 1;
            report.events += segment.count;
            tracing::info!(
                first_seq = segment.first_seq,
                last_seq = segment.last_seq,
                count = segment.count,
                location = %segment.location,
                "archived a segment"
            );
        }
        Ok(report)
    }

    /// Step 1 of archiving one segment: writes the file of the next events older than `before`
    /// and returns it, without touching the database; `None` when nothing is due. Dropping the
    /// result instead of passing it to [`Archive::commit_segment`] is what a crash between the
    /// two steps leaves behind.
    pub async fn write_next_segment(
        &self,
        before: Timestamp,
    ) -> Result<Option<PendingSegment>, ArchiveError> {
        let mut events = self.store.oldest_events(self.batch).await?;
        let due = events.iter().take_while(|e| e.timestamp < before).count();
        events.truncate(due);
        if events.is_empty() {
            return Ok(None);
        }
        let (header, bytes, checksum) = blocking(move || {
            let (header, bytes) = format::encode(&events)?;
            let checksum = format::checksum(&bytes);
            Ok((header, bytes, checksum))
        })
        .await?;
        let location = format!(
            "{:020}-{:020}{SEGMENT_SUFFIX}",
            header.first_seq, header.last_seq
        );
        self.target.put(&location, bytes).await?;
        let segment = Segment {
            id: 0,
            first_seq: header.first_seq,
            last_seq: header.last_seq,
            from_ts: Timestamp::from_micros(header.from_ts),
            to_ts: Timestamp::from_micros(header.to_ts),
            count: header.count,
            location,
            checksum,
            created_at: Timestamp::now(),
        };
        Ok(Some(PendingSegment { segment }))
    }

    /// Step 2: in one transaction, records the segment in the manifest and deletes its events
    /// from the hot table.
    pub async fn commit_segment(&self, pending: PendingSegment) -> Result<Segment, ArchiveError> {
        let mut segment = pending.segment;
        segment.id = self.store.commit_segment(&segment).await?;
        Ok(segment)
    }

    /// Removes files of the target that no manifest row names (and temporary files).
    async fn remove_orphans(&self) -> Result<usize, ArchiveError> {
        let known: HashSet<String> = self
            .store
            .segments()
            .await?
            .into_iter()
            .map(|s| s.location)
            .collect();
        self.target.remove_temporary().await?;
        let mut removed = 0;
        for name in self.target.list().await? {
            if name.ends_with(SEGMENT_SUFFIX) && !known.contains(&name) {
                tracing::warn!(file = %name, "removing an archive file of an interrupted run");
                self.target.remove(&name).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Every segment, by `first_seq`.
    pub async fn list(&self) -> Result<Vec<Segment>, ArchiveError> {
        Ok(self.store.segments().await?)
    }

    /// Puts the events of segment `id` back into the hot table (original `seq` and `id`) and
    /// removes its manifest row, in one transaction; then removes its file.
    pub async fn restore(&self, id: u64) -> Result<Segment, ArchiveError> {
        let _running = self.running.lock().await;
        let Some(_lock) = self.store.archive_lock().await? else {
            return Err(ArchiveError::Busy);
        };
        self.restore_locked(id).await
    }

    /// Restores every segment.
    pub async fn restore_all(&self) -> Result<Vec<Segment>, ArchiveError> {
        let _running = self.running.lock().await;
        let Some(_lock) = self.store.archive_lock().await? else {
            return Err(ArchiveError::Busy);
        };
        let mut restored = Vec::new();
        for segment in self.store.segments().await? {
            restored.push(self.restore_locked(segment.id).await?);
        }
        Ok(restored)
    }

    async fn restore_locked(&self, id: u64) -> Result<Segment, ArchiveError> {
        let segment = self
            .store
            .segments()
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(ArchiveError::NotFound(id))?;
        let events = self.read_segment(&segment).await?;
        self.store.restore_segment(id, events).await?;
        self.cache.remove(&segment.checksum);
        // A crash here leaves an orphan file, removed by the next run.
        self.target.remove(&segment.location).await?;
        Ok(segment)
    }

    /// The events of `segment`, from the cache or read (and then cached).
    async fn cached_segment(&self, segment: &Segment) -> Result<cache::Events, ArchiveError> {
        if let Some(events) = self.cache.get(&segment.checksum) {
            return Ok(events);
        }
        let events: cache::Events = self.read_segment(segment).await?.into();
        self.cache.insert(&segment.checksum, events.clone());
        Ok(events)
    }

    async fn read_segment(&self, segment: &Segment) -> Result<Vec<Arc<Event>>, ArchiveError> {
        let bytes = self.target.get(&segment.location).await?;
        let segment = segment.clone();
        blocking(move || {
            let (header, events) = format::decode(&bytes, Some(&segment.checksum))?;
            if (header.first_seq, header.last_seq, header.count)
                != (segment.first_seq, segment.last_seq, segment.count)
            {
                return Err(ArchiveError::Format(format!(
                    "{} does not match its manifest row",
                    segment.location
                )));
            }
            Ok(events)
        })
        .await
    }

    /// Archived events matching `query` (filter, `seq > after`), in `seq` order, at most
    /// `limit + 1`: only segments whose manifest ranges can hold a match are read.
    pub async fn query_archived(
        &self,
        query: &EventQuery,
    ) -> Result<Vec<Arc<Event>>, ArchiveError> {
        let segments = self.store.segments().await?;
        self.query_segments(&segments, query).await
    }

    async fn query_segments(
        &self,
        segments: &[Segment],
        query: &EventQuery,
    ) -> Result<Vec<Arc<Event>>, ArchiveError> {
        let filter = &query.filter;
        let wanted = query.limit + 1;
        let mut found = Vec::new();
        for segment in segments {
            let may_match = segment.last_seq > query.after
                && filter.from.is_none_or(|from| segment.to_ts >= from)
                && filter.to.is_none_or(|to| segment.from_ts < to);
            if !may_match {
                continue;
            }
            for event in self.cached_segment(segment).await?.iter() {
                if event.seq > query.after && filter.matches(event) {
                    found.push(event.clone());
                    if found.len() == wanted {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }

    /// A page across archived and hot events: the same filters and keyset paging as
    /// [`EventStore::query`], both sources merged by `seq`.
    ///
    /// Consistent with archive runs and restores that commit meanwhile: the manifest is read
    /// before and after the hot read and the segment reads, and since every move of rows changes
    /// the manifest in the same transaction, an unchanged manifest means no event moved between
    /// the two sources during the query; otherwise the query is tried again.
    pub async fn query(&self, query: &EventQuery) -> Result<EventPage, ArchiveError> {
        for _ in 0..QUERY_ATTEMPTS {
            let segments = self.store.segments().await?;
            let hot = self.store.query(query).await?;
            let archived = self.query_segments(&segments, query).await;
            if self.store.segments().await? != segments {
                tokio::time::sleep(QUERY_RETRY_PAUSE).await;
                continue;
            }
            let mut events = archived?;
            events.extend(hot.events);
            events.sort_by_key(|e| e.seq);
            events.dedup_by_key(|e| e.seq);
            let next_after = if events.len() > query.limit {
                events.truncate(query.limit);
                events.last().map(|e| e.seq)
            } else {
                hot.next_after
            };
            return Ok(EventPage { events, next_after });
        }
        Err(ArchiveError::Busy)
    }

    /// Archives per a retention of `days` now, then every `interval`, until `cancel` fires. A
    /// failed run is logged and retried at the next tick.
    pub async fn run_periodically(
        self: Arc<Self>,
        days: u32,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        loop {
            match self
                .run_until(Self::cutoff(days, Timestamp::now()), &cancel)
                .await
            {
                Ok(report) if report.segments > 0 || report.orphans_removed > 0 => {
                    tracing::info!(
                        segments = report.segments,
                        events = report.events,
                        "archive run finished"
                    );
                }
                Ok(_) => {}
                Err(ArchiveError::Busy) => tracing::debug!("another process is archiving"),
                Err(e) => tracing::error!(error = %e, "archive run failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ArchiveError> + Send + 'static,
) -> Result<T, ArchiveError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArchiveError::Target(e.to_string()))?
}
