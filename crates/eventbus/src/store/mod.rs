//! Event stores: the durable log behind the bus (DESIGN.md §1, step 2).
//!
//! [`EventStore`] is the one contract every backend keeps:
//! - `append` returns only after the batch is durable (fsync'd per the backend's settings), and is
//!   atomic: every event of a batch is stored, or none is;
//! - `seq` is global and strictly increasing, and a reader tailing with [`EventStore::read_after`]
//!   never skips an event that commits later with a smaller `seq` (invariant 2);
//! - an `id` already stored with the same content is a no-op returning the stored event; with other
//!   content it is a [`StoreError::Conflict`];
//! - an append may carry an [`ExpectedSeq`]: it is stored only if the last stored event of that
//!   project has that `seq` (checked and written atomically with respect to every other append,
//!   of this process and of others), else it is a [`StoreError::WrongExpectedSeq`] that fails
//!   that append alone, not the others committed in its group;
//! - every committed batch is pushed, in `seq` order, into the store's [`CommitLog`]; commits
//!   made by other processes (PostgreSQL) only [`CommitLog::advance`] its head.
//!
//! Layout: `sqlite` (embedded default), `postgres` (production, several processes on one
//! database), `url` (choosing a backend from `EVENT_STORE_URL`), `key` (API keys and signing
//! secrets), `archive` (moving old events into archive files and back, querying them), `webhook`
//! and `plugin` (the contracts of the webhook and plugin tables), `group` (the contract of the
//! consumer group tables: shared, durable pull consumers with leases, acks and dead letters).

pub mod archive;
pub mod group;
pub mod key;
pub mod plugin;
pub mod postgres;
pub mod sqlite;
mod url;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use self::url::{StoreOptions, StoreUrl, StoreUrlError, Stores, open};
use crate::core::catalogue::EventTypeDef;
use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::core::log::CommitLog;

/// Most events one query page returns.
pub const MAX_PAGE: usize = 1000;

/// A query: a filter, a keyset cursor and a page size.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Which events.
    pub filter: EventFilter,
    /// Only events with `seq` greater than this.
    pub after: u64,
    /// Page size (1 to [`MAX_PAGE`]).
    pub limit: usize,
}

/// One page of a query.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events, in `seq` order.
    pub events: Vec<Arc<Event>>,
    /// The cursor for the next page, `None` when this was the last.
    pub next_after: Option<u64>,
}

/// A tailing read: matching events and the cursor to continue from.
#[derive(Debug, Clone)]
pub struct TailRead {
    /// Matching events after the cursor, in `seq` order.
    pub events: Vec<Arc<Event>>,
    /// Every event with `seq` up to this was considered; continue after it.
    pub next: u64,
    /// Whether the read reached the newest event committed when it ran.
    pub at_end: bool,
}

/// How many stored events have one type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeCount {
    /// The type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Stored events of this type.
    pub count: u64,
}

/// The outcome of appending one event.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The stored event (with `seq`).
    pub event: Arc<Event>,
    /// `false` when an identical event with this id was already stored.
    pub created: bool,
}

/// The condition of an optimistic append: the last stored event of `project_id` has `seq`
/// `last_seq` (`0`: the project has no stored event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSeq {
    /// The project whose last event is checked.
    pub project_id: String,
    /// The `seq` its last stored event must have; `0` when it must have none.
    pub last_seq: u64,
}

/// Store failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The id is stored with other content (the batch is not stored).
    #[error("event {index} has id `{id}`, which is already stored with different content")]
    Conflict {
        /// Index of the event in its batch.
        index: usize,
        /// The id.
        id: String,
    },
    /// The append carried an [`ExpectedSeq`] that does not hold (the batch is not stored).
    #[error(
        "the last stored event of project `{project_id}` has seq {actual}, not the expected {expected}"
    )]
    WrongExpectedSeq {
        /// The project.
        project_id: String,
        /// The `seq` the append expected.
        expected: u64,
        /// The `seq` of the project's last stored event (`0`: none).
        actual: u64,
    },
    /// The backend cannot be reached or refused the write; nothing was stored.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The store's disk (or database) has no space left; nothing was stored; retrying helps once
    /// space is freed.
    #[error("the event store has no space left: {0}")]
    Full(String),
    /// Too many appends are waiting; nothing was stored; try again shortly.
    #[error("the event store is overloaded; retry shortly")]
    Overloaded,
    /// The store is shutting down.
    #[error("the event store is closed")]
    Closed,
    /// The store's settings cannot work as given (retrying will not help); the message says
    /// which setting to change.
    #[error("the event store's settings cannot work: {0}")]
    Misconfigured(String),
    /// Another process holds the store, which serves one process (SQLite).
    #[error("{0}")]
    InUse(String),
    /// Something that should not happen (corrupt row, bug).
    #[error("event store error: {0}")]
    Internal(String),
}

/// Whether an acknowledged append survives a power cut of the database's host, as the store
/// found its backend's settings at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is flushed to disk before the append returns.
    Durable,
    /// A commit may be acknowledged before it is on disk; the reason names the setting.
    NotDurable(String),
}

impl Durability {
    /// `"durable"` or `"not durable: <reason>"`.
    pub fn describe(&self) -> String {
        match self {
            Durability::Durable => "durable".to_owned(),
            Durability::NotDurable(why) => format!("not durable: {why}"),
        }
    }

    /// Logs the start-up warning when acknowledged events could be lost on a power cut.
    pub(crate) fn warn_once(&self, backend: &str) {
        if let Durability::NotDurable(why) = self {
            tracing::warn!(
                backend,
                reason = %why,
                "acknowledged events are NOT durable: a power cut or OS crash of the database's \
                 host can lose events that were answered 201 ({why})"
            );
        }
    }
}

/// What opening a store did to its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations this open applied, oldest first (empty when the schema was up to date).
    pub applied: Vec<&'static str>,
    /// The schema version the store is at now.
    pub version: usize,
}

impl Migrated {
    /// The outcome of applying the last `count` of `migrations` (`(name, sql)` in order).
    pub(crate) fn last(migrations: &[(&'static str, &'static str)], count: usize) -> Self {
        let version = migrations.len();
        let applied = migrations[version - count.min(version)..]
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>();
        for name in &applied {
            tracing::info!(migration = name, "applied schema migration");
        }
        Migrated { applied, version }
    }
}

/// Where durable consumers keep their cursors (in the same database as the events).
#[async_trait]
pub trait ConsumerStore: Send + Sync + 'static {
    /// The saved cursor of `name`, if it has one.
    async fn load_cursor(&self, name: &str) -> Result<Option<u64>, StoreError>;
    /// Saves the cursor of `name` (never moves it backwards).
    async fn save_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError>;
    /// Takes or renews the lease of consumer `name` for `holder`, until `ttl` from now (by the
    /// database's clock); `true` when `holder` holds it afterwards. Taken when free, expired or
    /// already `holder`'s.
    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Gives up `holder`'s lease of `name`, so another instance takes over at once.
    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}

/// A durable, ordered, queryable event log.
#[async_trait]
pub trait EventStore: ConsumerStore + key::KeyStore + Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// The in-memory tail this store feeds.
    fn log(&self) -> &Arc<CommitLog>;

    /// Appends a batch atomically; returns once it is durable.
    async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, StoreError> {
        self.append_expecting(events, None).await
    }

    /// Appends a batch atomically when `expected` holds (or is `None`); returns once it is
    /// durable. A batch whose events are all stored already with the same content is answered
    /// as stored, whatever `expected` says (a retry of an append that succeeded).
    async fn append_expecting(
        &self,
        events: Vec<Event>,
        expected: Option<ExpectedSeq>,
    ) -> Result<Vec<Appended>, StoreError>;

    /// The `seq` of the last stored event of `project_id`, `0` when it has none (an indexed
    /// lookup).
    async fn last_seq_of_project(&self, project_id: &str) -> Result<u64, StoreError>;

    /// The event with this id.
    async fn get(&self, id: &str) -> Result<Option<Arc<Event>>, StoreError>;

    /// A page of events matching a filter, in `seq` order.
    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError>;

    /// How many stored events match `filter`, per type: the types with at least one, sorted by
    /// name. Archived events are not counted (archiving removes them from the store).
    async fn count_by_type(&self, filter: &EventFilter) -> Result<Vec<TypeCount>, StoreError>;

    /// Matching events after `after` (at most `limit`), and where to continue.
    async fn read_after(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<TailRead, StoreError>;

    /// Like [`EventStore::read_after`], served from the in-memory commit log when it covers the
    /// range, from the backend otherwise. `limit` bounds the events looked at in memory and the
    /// events returned from the backend.
    async fn tail(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<TailRead, StoreError> {
        if let Some(hot) = self.log().read_after(after, limit, |e| filter.matches(e)) {
            return Ok(TailRead {
                events: hot.events,
                next: hot.next,
                at_end: hot.at_end,
            });
        }
        self.read_after(after, filter, limit).await
    }

    /// Every catalogue entry.
    async fn list_event_types(&self) -> Result<Vec<EventTypeDef>, StoreError>;

    /// Inserts or replaces a catalogue entry; `true` when it was new.
    async fn put_event_type(&self, def: EventTypeDef) -> Result<bool, StoreError>;

    /// Inserts the entries that are missing, leaving existing ones as they are.
    async fn ensure_event_types(&self, defs: Vec<EventTypeDef>) -> Result<(), StoreError>;

    /// A real round trip to the backend.
    async fn ping(&self) -> Result<(), StoreError>;

    /// What opening this store did to its schema.
    fn migrated(&self) -> &Migrated;

    /// Whether acknowledged appends survive a power cut, as found at open.
    fn durability(&self) -> &Durability;

    /// The database connection, for a backend that connects over a network (PostgreSQL).
    fn link(&self) -> Option<&postgres::LinkInfo> {
        None
    }

    /// Whether the link that tells this process of other processes' commits is up: `None` when
    /// the backend has none (SQLite: one process owns the database).
    fn notification_link(&self) -> Option<bool> {
        None
    }

    /// Appends waiting for the writer (the group-commit queue).
    fn write_queue_depth(&self) -> usize;

    /// Finishes queued writes and releases the backend.
    async fn close(&self);
}

/// The upper bound of the string range holding every type that starts with `prefix`, where
/// `prefix` ends with `.` (types use only `[a-z0-9_.]`, and `/` follows `.`).
pub(crate) fn prefix_upper_bound(prefix: &str) -> String {
    let mut upper = prefix[..prefix.len() - 1].to_owned();
    upper.push('/');
    upper
}
