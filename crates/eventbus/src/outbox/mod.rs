//! The transactional outbox: applications insert their events into a table of their own
//! PostgreSQL database in the same transaction as their change, and the bus relays committed
//! rows into its log, through the same middleware chain as an HTTP publish.
//!
//! - [`source`]: a source's configuration (`OUTBOX_SOURCES`);
//! - [`ddl`]: the tables in the application's database (`eventbus outbox init`);
//! - [`relay`]: the loop that moves rows into the log, one process per source at a time;
//! - [`Outboxes`]: the running relays, their state, and their dead letters.
//!
//! The guarantees are in `docs/outbox.md`: each committed row is appended exactly once by id
//! (at least once, and the idempotent append makes the repeats no-ops), none rolled back ever is,
//! and rows of one project written one transaction after another keep their order.

pub mod ddl;
pub mod relay;
pub mod source;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::core::time::Timestamp;
use ddl::quote;
use relay::{Role, SourceState};
pub use source::{OutboxSource, SourceError, parse_sources};

/// One source as `GET /v1/outboxes` shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OutboxInfo {
    /// The source's name.
    pub name: String,
    /// The application database, without its password.
    pub url: String,
    /// The schema of the outbox tables.
    pub schema: String,
    /// The tenant every relayed event is bound to.
    pub tenant_id: Option<String>,
    /// `relaying` (this process holds the source), `standby` (another process does), `degraded`
    /// (the database or the store cannot be reached; retrying) or `starting`.
    pub state: &'static str,
    /// Why it is degraded.
    pub error: Option<String>,
    /// Rows this process appended since it started.
    pub relayed: u64,
    /// Rows this process moved to the dead letters since it started.
    pub dead_lettered: u64,
    /// Rows waiting, as the relaying process last measured (about every second); null on a
    /// standby.
    pub backlog: Option<i64>,
    /// Age of the oldest waiting row in ms; null when none or not measured.
    pub oldest_row_age_ms: Option<i64>,
    /// Dead letters in the table, as last measured.
    pub dead_letters: Option<i64>,
}

/// A row the bus refused, kept in `<schema>.outbox_dead_letters`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OutboxDeadLetter {
    /// The row's place in the outbox; names it in `…/dead-letters/{seq}/retry`.
    pub seq: i64,
    /// The event's id.
    pub id: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload as the application wrote it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Box<RawValue>,
    /// Scopes.
    pub project_id: Option<String>,
    /// Scopes.
    pub tenant_id: Option<String>,
    /// Scopes.
    pub user_id: Option<String>,
    /// Metadata as the application wrote it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Box<RawValue>,
    /// When the row was written (RFC 3339).
    pub occurred_at: String,
    /// Why the bus refused it.
    pub reason: String,
    /// When it was refused (RFC 3339).
    pub failed_at: String,
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// No source of that name.
    #[error("no outbox source is named `{0}`")]
    UnknownSource(String),
    /// No dead letter at that `seq`.
    #[error("the outbox `{0}` has no dead letter {1}")]
    NoSuchDeadLetter(String, i64),
    /// The event's id is in the outbox already (written again by the application).
    #[error("the outbox `{0}` already holds a row with the id of dead letter {1}")]
    AlreadyQueued(String, i64),
    /// The application's database failed.
    #[error("the application database of outbox `{0}` is unavailable: {1}")]
    Unavailable(String, String),
}

struct Entry {
    source: Arc<OutboxSource>,
    state: Arc<SourceState>,
    /// For the API (the relay has a connection of its own).
    pool: PgPool,
}

/// The relays of this process, one per configured source.
pub struct Outboxes {
    entries: Vec<Entry>,
    cancel: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Outboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outboxes")
            .field("sources", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Outboxes {
    /// Starts one relay per source into `bus` (each waits for its database by itself).
    pub fn start(bus: &EventBus, sources: Vec<OutboxSource>) -> Outboxes {
        let cancel = CancellationToken::new();
        let mut entries = Vec::with_capacity(sources.len());
        let mut tasks = Vec::with_capacity(sources.len());
        for source in sources {
            // The series exist from the start, at zero.
            for counter in [
                crate::metric::OUTBOX_RELAYED,
                crate::metric::OUTBOX_DEAD_LETTERED,
                crate::metric::OUTBOX_ERRORS,
            ] {
                metrics::counter!(counter, "source" => source.name.clone()).absolute(0);
            }
            let source = Arc::new(source);
            let state = Arc::new(SourceState::default());
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect_lazy_with(source.connect.clone());
            tasks.push(tokio::spawn(relay::run(
                bus.clone(),
                source.clone(),
                state.clone(),
                cancel.child_token(),
            )));
            entries.push(Entry {
                source,
                state,
                pool,
            });
        }
        Outboxes {
            entries,
            cancel,
            tasks: std::sync::Mutex::new(tasks),
        }
    }

    /// Whether any source is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every source and its state.
    pub fn list(&self) -> Vec<OutboxInfo> {
        self.entries.iter().map(info).collect()
    }

    fn entry(&self, name: &str) -> Result<&Entry, OutboxError> {
        self.entries
            .iter()
            .find(|e| e.source.name == name)
            .ok_or_else(|| OutboxError::UnknownSource(name.to_owned()))
    }

    /// One source and its state.
    pub fn get(&self, name: &str) -> Result<OutboxInfo, OutboxError> {
        self.entry(name).map(info)
    }

    /// Up to `limit` dead letters of `name` with `seq` above `after`, oldest first.
    pub async fn dead_letters(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxDeadLetter>, OutboxError> {
        let entry = self.entry(name)?;
        let s = quote(&entry.source.schema);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT seq, id::text, type, payload::text, project_id, tenant_id, user_id, \
                    metadata::text, (extract(epoch FROM occurred_at) * 1000000)::bigint, reason, \
                    (extract(epoch FROM failed_at) * 1000000)::bigint \
             FROM {s}.outbox_dead_letters WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&entry.pool)
        .await
        .map_err(|e| OutboxError::Unavailable(name.to_owned(), e.to_string()))?;
        let raw = |text: String| {
            RawValue::from_string(text).unwrap_or_else(|_| crate::core::event::null_payload())
        };
        Ok(rows
            .into_iter()
            .map(|r| OutboxDeadLetter {
                seq: r.get(0),
                id: r.get(1),
                event_type: r.get(2),
                payload: raw(r.get(3)),
                project_id: r.get(4),
                tenant_id: r.get(5),
                user_id: r.get(6),
                metadata: raw(r.get(7)),
                occurred_at: Timestamp::from_micros(r.get(8)).to_string(),
                reason: r.get(9),
                failed_at: Timestamp::from_micros(r.get(10)).to_string(),
            })
            .collect())
    }

    /// Puts dead letter `seq` of `name` back at the end of the outbox, to be relayed again
    /// (after its cause was fixed: a schema corrected, a type registered).
    pub async fn retry(&self, name: &str, seq: i64) -> Result<(), OutboxError> {
        let entry = self.entry(name)?;
        let s = quote(&entry.source.schema);
        let result = sqlx::query(AssertSqlSafe(format!(
            "WITH moved AS (DELETE FROM {s}.outbox_dead_letters WHERE seq = $1 \
                            RETURNING id, type, payload, project_id, tenant_id, user_id, \
                                      metadata, occurred_at) \
             INSERT INTO {s}.outbox (id, type, payload, project_id, tenant_id, user_id, \
                                     metadata, occurred_at) \
             SELECT id, type, payload, project_id, tenant_id, user_id, metadata, occurred_at \
             FROM moved"
        )))
        .bind(seq)
        .execute(&entry.pool)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 1 => Ok(()),
            Ok(_) => Err(OutboxError::NoSuchDeadLetter(name.to_owned(), seq)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(OutboxError::AlreadyQueued(name.to_owned(), seq))
            }
            Err(e) => Err(OutboxError::Unavailable(name.to_owned(), e.to_string())),
        }
    }

    /// Stops the relays (a batch in flight finishes or is abandoned before its rows are
    /// deleted, so nothing is lost) and closes their connections.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for task in tasks {
            let _ = task.await;
        }
        for entry in &self.entries {
            entry.pool.close().await;
        }
    }
}

fn info(entry: &Entry) -> OutboxInfo {
    let state = &entry.state;
    let (name, error) = match state.role() {
        Role::Starting => ("starting", None),
        Role::Relaying => ("relaying", None),
        Role::Standby => ("standby", None),
        Role::Degraded(e) => ("degraded", Some(e)),
    };
    let measured = |v: i64| (v >= 0).then_some(v);
    let relaying = name == "relaying";
    OutboxInfo {
        name: entry.source.name.clone(),
        url: entry.source.display_url.clone(),
        schema: entry.source.schema.clone(),
        tenant_id: entry.source.tenant.clone(),
        state: name,
        error,
        relayed: state.relayed.load(Ordering::Relaxed),
        dead_lettered: state.dead_lettered.load(Ordering::Relaxed),
        backlog: measured(state.backlog.load(Ordering::Relaxed)).filter(|_| relaying),
        oldest_row_age_ms: measured(state.oldest_ms.load(Ordering::Relaxed)).filter(|_| relaying),
        dead_letters: measured(state.dead_letters.load(Ordering::Relaxed)),
    }
}
