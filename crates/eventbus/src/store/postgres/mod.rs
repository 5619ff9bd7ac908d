//! The PostgreSQL event store: the backend for production and for several `eventbus` processes
//! on one database (invariant 6).
//!
//! - **Appends** go through one committer per store, on a thread of its own ([`commit`]):
//!   group commit of every waiting publish into one transaction, serialised across processes
//!   by an advisory lock so that `seq` order is commit order (invariant 2), each publisher
//!   answered only after `COMMIT` (invariant 1). It pushes every committed group into the
//!   [`CommitLog`] with the `seq` that preceded it and `NOTIFY`s the new head.
//! - **Other processes' commits** reach this process through `LISTEN` ([`listen`]), which
//!   advances the commit log's head so that tailing readers wake and read them from the store.
//! - **Reads** use a pool of connections (`pool_size`). A tailing read ([`EventStore::read_after`])
//!   takes its rows and the head from one statement, hence one snapshot, so its cursor never
//!   passes an event it did not see.
//! - **The link** ([`link`]): TLS by the URL's `sslmode`, as libpq means it; what the connection
//!   is (host, TLS, what was verified) is logged at start and shown in readiness.
//! - **Unavailable database**: connecting and every operation are bounded by `timeout`; a
//!   refused connection fails at once with [`StoreError::Unavailable`]. Nothing is cached that
//!   needs repair: the committer and the listener reconnect by themselves.
//!
//! The schema lives in the connection's `search_path` (the first schema), created by the
//! migrations in `migrations/postgres` ([`migrate`]) when the store opens. Several schemas may
//! hold separate buses in one database: locks and notification channels are keyed by schema.

mod archive;
mod commit;
mod consumer;
mod db;
mod group;
mod key;
pub mod link;
mod listen;
pub mod migrate;
mod plugin;
mod pooler;
mod query;
#[cfg(test)]
pub(crate) mod testing;
mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::commit::{APPEND_LOCK, AppendJob, Committer};
pub use self::commit::{INSERT_ROWS, LAST_SEQ_OF_PROJECT, MAX_GROUP_ROWS};
pub use self::db::Db;
pub use self::link::LinkInfo;
pub use self::migrate::MigrateError;
use self::query::{bind_all, count_by_type_sql, row_to_event, select_after_sql};
use super::{
    Appended, EventPage, EventQuery, EventStore, ExpectedSeq, StoreError, TailRead, TypeCount,
    prefix_upper_bound,
};
use crate::core::catalogue::EventTypeDef;
use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::core::log::CommitLog;
use crate::core::pattern::{Pattern, Segment};
use crate::core::time::Timestamp;
pub use sqlx::postgres::PgConnectOptions;

/// PostgreSQL tuning.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections of the pool of reads and writes other than appends (the committer, the
    /// listener and the archiver's lock have one each besides).
    pub pool_size: u32,
    /// A URL that reaches PostgreSQL itself, for what needs a server session of its own (the
    /// committer's appends, `LISTEN`, migrations, the archiver's lock), when the store's URL
    /// goes through a pooler in transaction mode. The pool then uses the store's URL with one
    /// transaction per statement and no prepared statement kept.
    pub direct_url: Option<String>,
    /// Events kept in the in-memory commit log.
    pub hot_events: usize,
    /// Appends that may wait for the committer before publishers get `Overloaded`.
    pub queue: usize,
    /// Bound on connecting and on each operation; past it the call fails with `Unavailable`.
    pub timeout: Duration,
    /// Leave `synchronous_commit` at the server's, database's or role's default instead of
    /// setting it `on` for the bus's sessions: faster where that default is `off`, but an
    /// acknowledged event can then be lost on a power cut (reported as not durable).
    pub allow_non_durable_acks: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 8,
            direct_url: None,
            hot_events: 16_384,
            queue: 16_384,
            timeout: Duration::from_secs(5),
            allow_non_durable_acks: false,
        }
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    db: Db,
    /// How to open a server session of the bus's own (the direct URL when there is one).
    session: PgConnectOptions,
    jobs: Mutex<Option<mpsc::Sender<AppendJob>>>,
    log: Arc<CommitLog>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    timeout: Duration,
    schema: String,
    /// Whether the listener holds a live `LISTEN` session.
    listening: Arc<std::sync::atomic::AtomicBool>,
    migrated: super::Migrated,
    durability: super::Durability,
    link: link::LinkInfo,
    /// The endpoints as the last webhook claim read them.
    claim_endpoints: Mutex<Option<Arc<webhook::KnownEndpoints>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The committer ends with its queue; the listener needs telling.
        self.cancel.cancel();
    }
}

/// Whether commits on this session are durable: the server must fsync (`fsync`), write full
/// pages after a checkpoint (`full_page_writes`, against torn pages), and the session must wait
/// for the WAL flush (`synchronous_commit` not `off`).
async fn read_durability(conn: &mut PgConnection) -> Result<super::Durability, sqlx::Error> {
    let (fsync, full_pages, synchronous): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('fsync'), current_setting('full_page_writes'), \
                current_setting('synchronous_commit')",
    )
    .fetch_one(conn)
    .await?;
    let reasons: Vec<String> = [
        ("fsync", fsync),
        ("full_page_writes", full_pages),
        ("synchronous_commit", synchronous),
    ]
    .into_iter()
    .filter(|(_, value)| value == "off")
    .map(|(name, value)| format!("{name}={value}"))
    .collect();
    Ok(if reasons.is_empty() {
        super::Durability::Durable
    } else {
        super::Durability::NotDurable(reasons.join(", "))
    })
}

/// The event columns, in the order [`row_to_event`] reads them.
const COLUMNS: &str = "seq, id, type, ts, project_id, tenant_id, user_id, payload, metadata";

/// Longest notification channel name PostgreSQL keeps (identifiers are 63 bytes).
const MAX_CHANNEL_LEN: usize = 63;

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`; `?options=-c
    /// search_path=…` chooses the schema), applies migrations and starts the committer and the
    /// listener. Must run inside a tokio runtime.
    pub async fn open(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let connect = link::parse_url(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        Self::open_with(connect, options).await
    }

    /// Like [`PgStore::open`], with parsed connection options.
    pub async fn open_with(
        connect: PgConnectOptions,
        options: PgOptions,
    ) -> Result<Self, StoreError> {
        // Named in `pg_stat_activity`; and no `extra_float_digits` at start-up, which poolers
        // refuse (PostgreSQL 12 and later print floats exactly by default anyway).
        let named = |c: PgConnectOptions| {
            match c.get_application_name() {
                Some(_) => c,
                None => c.application_name("eventbus"),
            }
            .extra_float_digits(None)
        };
        let connect = named(connect);
        let direct = match &options.direct_url {
            Some(url) => Some(named(link::parse_url(url).map_err(|e| {
                StoreError::Misconfigured(format!("invalid direct PostgreSQL URL: {e}"))
            })?)),
            None => None,
        };
        // The bus's own sessions: the direct URL's when the store's URL is a pooler's.
        let session = direct.clone().unwrap_or_else(|| connect.clone());
        let timeout = options.timeout;
        let bound_ms = timeout.as_millis().max(1);
        let durable = !options.allow_non_durable_acks;
        let where_ = where_(&session);
        let mut conn = bounded(timeout, PgConnection::connect_with(&session))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {where_}: {}",
                    link::explain(&e)
                ))
            })?;
        // Before any statement that needs a session: a transaction pooler would break them in
        // ways much harder to read than this.
        if pooler::shares_sessions(&mut conn, &session, timeout)
            .await
            .map_err(unavailable)?
        {
            return Err(StoreError::Misconfigured(pooler::refusal(
                &where_,
                direct.is_some(),
            )));
        }
        let link = link::inspect(&mut conn, &session).await;
        link.log(if direct.is_some() {
            "event store (direct)"
        } else {
            "event store"
        });
        let applied = migrate::migrate(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL at {where_}: {e}")))?;
        let migrated = super::Migrated::last(migrate::MIGRATIONS, applied);
        let settings = db::session_settings(false, durable, bound_ms);
        // The committer holds the append lock of every process on this schema: it waits for
        // no lock longer than the bound either.
        let committer_settings = format!("{settings}; SET lock_timeout = {bound_ms}");
        sqlx::raw_sql(AssertSqlSafe(committer_settings.clone()))
            .execute(&mut conn)
            .await
            .map_err(unavailable)?;
        let durability = read_durability(&mut conn).await.map_err(unavailable)?;
        durability.warn_once("postgres");
        let row = sqlx::query(
            "SELECT current_schema(), hashtext(current_schema()), \
                    (SELECT coalesce(max(seq), 0) FROM events)",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(unavailable)?;
        let schema: String = row.try_get(0).map_err(unavailable)?;
        let schema_key: i32 = row.try_get(1).map_err(unavailable)?;
        let head: i64 = row.try_get(2).map_err(unavailable)?;
        let log = Arc::new(CommitLog::new(head as u64, options.hot_events));
        let channel = channel_name(&schema);

        let pool_options = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(timeout)
            .test_before_acquire(false);
        let db = match direct {
            Some(_) => {
                link::declared(&connect).log("event store (pooled)");
                // Nothing may outlive a transaction: no statement cache, settings per transaction.
                let pool = pool_options.connect_lazy_with(connect.statement_cache_capacity(0));
                Db::pooled(
                    pool,
                    &schema,
                    &db::session_settings(true, durable, bound_ms),
                )
            }
            None => Db::straight(
                with_settings(pool_options, settings.clone()).connect_lazy_with(session.clone()),
            ),
        };
        let listen_pool = with_settings(
            PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(timeout)
                .test_before_acquire(false),
            settings,
        )
        .connect_lazy_with(session.clone());

        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let own = Arc::new(listen::OwnCommits::default());
        let committer = Committer {
            connect: session.clone(),
            settings: committer_settings,
            conn: None,
            log: log.clone(),
            own: own.clone(),
            sql: commit::Statements {
                begin_sql: format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK}, {schema_key})"
                ),
                append_sql: format!(
                    "SELECT eventbus_append({APPEND_LOCK}, {schema_key}, $1, $2, $3, $4, $5, $6, \
                     $7, $8, $9)"
                ),
                channel: channel.clone(),
            },
            timeout,
        };
        // The committer connects on its own thread (see `Committer::start`).
        let _ = conn.close().await;
        committer
            .start(rx, &tasks)
            .await
            .map_err(|e| StoreError::Unavailable(format!("starting the committer: {e}")))?;
        let listening = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tasks.spawn(listen::run(
            listen_pool,
            channel,
            log.clone(),
            own,
            listening.clone(),
            cancel.clone(),
        ));
        tasks.close();
        Ok(PgStore {
            db,
            session,
            jobs: Mutex::new(Some(tx)),
            log,
            tasks,
            cancel,
            timeout,
            listening,
            migrated,
            durability,
            link,
            schema,
            claim_endpoints: Mutex::new(None),
        })
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool of reads and writes (for diagnostics and the tables of other components).
    pub fn pool(&self) -> &Db {
        &self.db
    }

    /// The plan PostgreSQL chooses for `query` (`EXPLAIN` text, one line per element): for
    /// operators checking that every query shape uses an index.
    pub async fn explain(&self, query: &EventQuery) -> Result<Vec<String>, StoreError> {
        self.read(|pool| {
            let (sql, args) = select_after_sql(&query.filter, query.after, query.limit + 1);
            let sql = format!("EXPLAIN {sql}");
            async move {
                let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
                    .fetch_all(&pool)
                    .await?;
                rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
            }
        })
        .await
    }

    fn sender(&self) -> Result<mpsc::Sender<AppendJob>, StoreError> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Runs the write `f` within the timeout (never twice: its outcome may be unknown).
    async fn write<T>(
        &self,
        f: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        bounded(self.timeout, f).await.map_err(store_error)
    }

    /// Runs the read `f` on the pool within the timeout. Pooled connections may have died while
    /// idle (the server restarted, a fail-over, `pg_terminate_backend`): a read that fails for
    /// that reason is tried again, on another or a new connection, up to once per pooled
    /// connection more.
    async fn read<T, F, Fut>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(Db) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        // A read is idempotent, and each failed attempt discards one dead connection.
        let attempts = async {
            let mut left = self.db.pool().size() + 1;
            loop {
                match f(self.db.clone()).await {
                    Err(e) if is_connection_error(&e) && left > 0 => left -= 1,
                    result => return result,
                }
            }
        };
        bounded(self.timeout, attempts).await.map_err(store_error)
    }
}

/// Whether `e` says the connection is unusable rather than the statement wrong.
pub(super) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // Class 08: connection exception; 57P01 to 57P03: the server shut down or restarted.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// `host:port/database` of `connect`, for messages.
fn where_(connect: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or_default()
    )
}

/// `pool` with the bus's session `settings` applied to each new connection.
fn with_settings(pool: PgPoolOptions, settings: String) -> PgPoolOptions {
    pool.after_connect(move |conn, _| {
        let settings = settings.clone();
        Box::pin(async move {
            sqlx::raw_sql(AssertSqlSafe(settings))
                .execute(conn)
                .await
                .map(|_| ())
        })
    })
}

/// `f`, failing with `PoolTimedOut` once `timeout` has passed.
async fn bounded<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

fn channel_name(schema: &str) -> String {
    let mut name = format!("eventbus_{schema}");
    while name.len() > MAX_CHANNEL_LEN {
        name.pop();
    }
    name
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

/// What a failed operation means for the caller: a row this code cannot read is a bug, a closed
/// pool is a closed store, anything else (connection, server, timeout) makes the store unavailable.
pub(super) fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Closed,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Internal(format!("PostgreSQL: {e}")),
        // disk_full
        sqlx::Error::Database(db) if db.code().as_deref() == Some("53100") => {
            StoreError::Full(format!("PostgreSQL: {db}"))
        }
        e => unavailable(e),
    }
}

#[async_trait]
impl EventStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn log(&self) -> &Arc<CommitLog> {
        &self.log
    }

    async fn append_expecting(
        &self,
        events: Vec<Event>,
        expected: Option<ExpectedSeq>,
    ) -> Result<Vec<Appended>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .try_send(AppendJob {
                events,
                expected,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn last_seq_of_project(&self, project_id: &str) -> Result<u64, StoreError> {
        self.read(|pool| async move {
            let seq: Option<i64> = sqlx::query_scalar(commit::LAST_SEQ_OF_PROJECT)
                .bind(project_id)
                .fetch_optional(&pool)
                .await?;
            Ok(seq.unwrap_or(0) as u64)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<Event>>, StoreError> {
        self.read(|pool| async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM events WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(&pool)
            .await?;
            row.map(|r| row_to_event(&r, 0).map(Arc::new)).transpose()
        })
        .await
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let mut events = self
            .read(|pool| {
                let (sql, args) = select_after_sql(&query.filter, query.after, query.limit + 1);
                async move {
                    let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
                        .fetch_all(&pool)
                        .await?;
                    rows.iter()
                        .map(|r| row_to_event(r, 0).map(Arc::new))
                        .collect::<Result<Vec<_>, _>>()
                }
            })
            .await?;
        let next_after = (events.len() > query.limit).then(|| {
            events.truncate(query.limit);
            events.last().map_or(query.after, |e| e.seq)
        });
        Ok(EventPage { events, next_after })
    }

    async fn count_by_type(&self, filter: &EventFilter) -> Result<Vec<TypeCount>, StoreError> {
        self.read(|pool| {
            let (sql, args) = count_by_type_sql(filter);
            async move {
                let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
                    .fetch_all(&pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(TypeCount {
                            event_type: r.try_get(0)?,
                            count: r.try_get::<i64, _>(1)? as u64,
                        })
                    })
                    .collect()
            }
        })
        .await
    }

    async fn read_after(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<TailRead, StoreError> {
        // One statement, one snapshot: the rows and the head agree, so `next` never passes a
        // commit the rows did not include.
        let (head, events) = self
            .read(|pool| {
                let (inner, args) = select_after_sql(filter, after, limit);
                let sql = format!(
                    "SELECT h.head, e.* FROM (SELECT coalesce(max(seq), 0) AS head FROM events) h \
                     LEFT JOIN LATERAL ({inner}) e ON true ORDER BY e.seq"
                );
                async move {
                    let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
                        .fetch_all(&pool)
                        .await?;
                    let head: i64 = match rows.first() {
                        Some(r) => r.try_get(0)?,
                        None => 0,
                    };
                    let mut events = Vec::with_capacity(rows.len());
                    for row in &rows {
                        if row.try_get::<Option<i64>, _>(1)?.is_some() {
                            events.push(Arc::new(row_to_event(row, 1)?));
                        }
                    }
                    Ok((head as u64, events))
                }
            })
            .await?;
        let at_end = events.len() < limit;
        let next = if at_end {
            head.max(after)
        } else {
            events.last().map_or(after, |e| e.seq)
        };
        Ok(TailRead {
            events,
            next,
            at_end,
        })
    }

    async fn list_event_types(&self) -> Result<Vec<EventTypeDef>, StoreError> {
        self.read(|pool| async move {
            let rows = sqlx::query(
                "SELECT type, description, schema, builtin, updated_at FROM event_types ORDER BY type",
            )
            .fetch_all(&pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let schema: Option<String> = r.try_get(2)?;
                    Ok(EventTypeDef {
                        name: r.try_get(0)?,
                        description: r.try_get(1)?,
                        schema: schema.and_then(|s| serde_json::from_str(&s).ok()),
                        builtin: r.try_get(3)?,
                        updated_at: Timestamp::from_micros(r.try_get(4)?),
                    })
                })
                .collect()
        })
        .await
    }

    async fn put_event_type(&self, def: EventTypeDef) -> Result<bool, StoreError> {
        self.write(async {
            // `xmax = 0` only on a freshly inserted row.
            sqlx::query_scalar(
                "INSERT INTO event_types (type, description, schema, builtin, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (type) DO UPDATE SET \
                 description = excluded.description, schema = excluded.schema, \
                 updated_at = excluded.updated_at \
                 RETURNING (xmax = 0)",
            )
            .bind(&def.name)
            .bind(&def.description)
            .bind(def.schema.as_ref().map(|s| s.to_string()))
            .bind(def.builtin)
            .bind(def.updated_at.as_micros())
            .fetch_one(&self.db)
            .await
        })
        .await
    }

    async fn ensure_event_types(&self, defs: Vec<EventTypeDef>) -> Result<(), StoreError> {
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        let descriptions: Vec<Option<&str>> =
            defs.iter().map(|d| d.description.as_deref()).collect();
        let schemas: Vec<Option<String>> = defs
            .iter()
            .map(|d| d.schema.as_ref().map(|s| s.to_string()))
            .collect();
        let builtins: Vec<bool> = defs.iter().map(|d| d.builtin).collect();
        let updated: Vec<i64> = defs.iter().map(|d| d.updated_at.as_micros()).collect();
        self.write(async {
            sqlx::query(
                "INSERT INTO event_types (type, description, schema, builtin, updated_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::int8[]) \
                 ON CONFLICT (type) DO NOTHING",
            )
            .bind(&names)
            .bind(&descriptions)
            .bind(&schemas)
            .bind(&builtins)
            .bind(&updated)
            .execute(&self.db)
            .await
            .map(|_| ())
        })
        .await
    }

    fn write_queue_depth(&self) -> usize {
        self.jobs
            .lock()
            .expect("jobs lock")
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|pool| async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()) })
            .await
    }

    fn migrated(&self) -> &super::Migrated {
        &self.migrated
    }

    fn durability(&self) -> &super::Durability {
        &self.durability
    }

    fn link(&self) -> Option<&link::LinkInfo> {
        Some(&self.link)
    }

    fn notification_link(&self) -> Option<bool> {
        Some(self.listening.load(std::sync::atomic::Ordering::Acquire))
    }

    async fn close(&self) {
        // Dropping the sender lets the committer finish every queued append, then exit.
        drop(self.jobs.lock().expect("jobs lock").take());
        self.cancel.cancel();
        self.tasks.wait().await;
        self.db.pool().close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_an_identifier() {
        assert_eq!(channel_name("public"), "eventbus_public");
        assert_eq!(channel_name(&"s".repeat(100)).len(), MAX_CHANNEL_LEN);
    }
}
