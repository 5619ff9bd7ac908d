//! The embedded SQLite event store (the default backend).
//!
//! One writer thread owns the only write connection and does **group commit**: it takes every
//! append waiting in its queue (up to [`MAX_GROUP_ROWS`] events), writes them in one `BEGIN
//! IMMEDIATE` transaction (a savepoint per multi-event batch, so a conflicting batch is undone
//! alone), commits once — one fsync for the whole group with `synchronous=FULL` — and only then
//! answers each waiting publisher. Because a single thread commits, `seq` order is commit order,
//! so tailing readers can never see a later commit with a smaller `seq` (invariant 2).
//!
//! Reads run on a small pool of read-only connections (WAL lets them run beside the writer).
//! A checkpoint thread runs `wal_checkpoint(PASSIVE)` off the commit path. That copies the WAL
//! into the database but cannot start the WAL over while commits keep coming: only a
//! transaction that begins with every frame copied restarts it, and the writer commits again
//! before the thread's checkpoint ends. Left alone, the WAL would grow to the
//! `wal_autocheckpoint` backstop, where the writer checkpoints it whole and truncates it, a
//! stall of tens of milliseconds on the commit path. So once the WAL passes
//! [`WAL_RESTART_PAGES`] with nearly all of it copied, the thread asks the writer to checkpoint
//! the last few frames itself, between two groups: its next transaction then starts the WAL
//! from the beginning. A lock file keeps a second process from opening the same database, whose
//! commits this process could not see.

mod archive;
mod consumer;
mod group;
mod key;
pub mod migrate;
#[cfg(test)]
pub(crate) mod testing;

pub use self::migrate::SCHEMA_VERSION;
mod plugin;
mod webhook;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub use self::migrate::MigrateError;
use self::writer::Writer;
use super::{
    Appended, EventPage, EventQuery, EventStore, ExpectedSeq, StoreError, TailRead, TypeCount,
    prefix_upper_bound,
};
use crate::core::catalogue::EventTypeDef;
use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::core::log::CommitLog;
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;

/// Most events committed in one group transaction.
pub const MAX_GROUP_ROWS: usize = 4096;

/// How the store trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL on every commit: an acknowledged event survives power loss (default).
    #[default]
    Full,
    /// fsync only at checkpoints: survives a crash of the process, not of the machine.
    Normal,
}

/// SQLite tuning.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Read connections.
    pub readers: usize,
    /// Events kept in the in-memory commit log.
    pub hot_events: usize,
    /// Appends that may wait for the writer before publishers get `Overloaded`.
    pub queue: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            readers: 4,
            hot_events: 16_384,
            queue: 16_384,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Append {
        events: Vec<Event>,
        expected: Option<ExpectedSeq>,
        reply: Reply<Vec<Appended>>,
    },
    Exec(Box<dyn FnOnce(&mut Connection) + Send>),
}

struct ReaderPool {
    path: PathBuf,
    conns: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// The SQLite store.
pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Arc<ReaderPool>,
    log: Arc<CommitLog>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop_checkpoints: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// Held while open; released by `close` so the database can be reopened.
    lock: Mutex<Option<File>>,
    migrated: super::Migrated,
    durability: super::Durability,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "seq, id, type, ts, project_id, tenant_id, user_id, payload, metadata";

/// The statement that appends one event; parameters `id, type, ts (µs), project_id, tenant_id,
/// user_id, payload, metadata`. Public so that the benchmark's raw-store mode runs the same one.
pub const INSERT_EVENT_SQL: &str = "INSERT INTO events (id, type, ts, project_id, tenant_id, user_id, payload, metadata) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING";

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and applies migrations. Blocking.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let lock = lock_file(path)?;
        let mut writer = Connection::open(path).map_err(unavailable)?;
        configure(&writer, options.synchronous).map_err(unavailable)?;
        let applied =
            migrate::migrate(&mut writer).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let migrated = super::Migrated::last(migrate::MIGRATIONS, applied);
        let durability = match options.synchronous {
            Synchronous::Full => super::Durability::Durable,
            Synchronous::Normal => super::Durability::NotDurable(
                "SQLite synchronous=NORMAL (SQLITE_SYNCHRONOUS=normal) syncs at checkpoints only"
                    .to_owned(),
            ),
        };
        durability.warn_once("sqlite");
        let head = read_head(&writer).map_err(unavailable)?;
        let log = Arc::new(CommitLog::new(head, options.hot_events));

        let readers = (0..options.readers.max(1))
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        let readers = Arc::new(ReaderPool {
            path: path.to_owned(),
            permits: Semaphore::new(readers.len()),
            conns: Mutex::new(readers),
        });

        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let writer_log = log.clone();
        let writer_thread = std::thread::Builder::new()
            .name("eventbus-sqlite-writer".into())
            .spawn(move || {
                Writer {
                    conn: writer,
                    log: writer_log,
                    head,
                }
                .run(rx)
            })
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let checkpoint_conn = Connection::open(path).map_err(unavailable)?;
        checkpoint_conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(unavailable)?;
        let writer_jobs = tx.downgrade();
        let checkpoint_thread = std::thread::Builder::new()
            .name("eventbus-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stopped, writer_jobs))
            .map_err(|e| StoreError::Internal(e.to_string()))?;

        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            readers,
            log,
            threads: Mutex::new(vec![writer_thread, checkpoint_thread]),
            stop_checkpoints: Mutex::new(Some(stop)),
            lock: Mutex::new(Some(lock)),
            migrated,
            durability,
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Runs `f` on the writer connection, in order with appends.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Exec(Box::new(move |conn| {
            let _ = reply.send(f(conn).map_err(unavailable));
        }));
        self.sender()?
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        let _permit = pool
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conn = pool.conns.lock().expect("reader pool lock").pop();
        let pool2 = pool.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = match conn {
                Some(c) => c,
                None => open_reader(&pool2.path)?,
            };
            let result = f(&mut conn);
            pool2.conns.lock().expect("reader pool lock").push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?;
        result.map_err(unavailable)
    }
}

fn lock_file(path: &Path) -> Result<File, StoreError> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
        })?;
    file.try_lock().map_err(|_| {
        StoreError::InUse(format!(
            "{} is in use by another eventbus process; SQLite serves one process (use PostgreSQL \
             to run several)",
            path.display()
        ))
    })?;
    Ok(file)
}

/// Applies the store's connection settings (WAL, `synchronous`, checkpoint backstop, cache) and
/// registers its SQL functions. Public so that the benchmark's raw-store mode writes with exactly
/// the settings of the store it is compared with.
pub fn configure(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    // Checkpoints run on their own thread; this is only the backstop (pages of 4 KiB).
    conn.pragma_update(None, "wal_autocheckpoint", 20_000)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    register_functions(conn)
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", -16_384)?;
    register_functions(&conn)?;
    Ok(conn)
}

/// `eb_match(pattern, type)`: the pattern grammar, for type filters the index range cannot
/// express exactly (`project.*` must not match `project.a.b`).
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "eb_match",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let pattern = ctx.get_or_create_aux(0, |v| -> Result<Pattern, rusqlite::Error> {
                let text = v
                    .as_str()
                    .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
                Pattern::parse(text).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
            })?;
            let ty = ctx
                .get_raw(1)
                .as_str()
                .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            Ok(pattern.matches(ty))
        },
    )
}

fn read_head(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// WAL length (pages of 4 KiB) from which the checkpoint thread asks the writer to start the WAL
/// over (see the module docs): 16 MiB, well under the `wal_autocheckpoint` backstop.
const WAL_RESTART_PAGES: i64 = 4_096;

/// Most WAL pages not yet copied for which the writer is asked: what it copies itself, on the
/// commit path, is then small.
const WAL_RESTART_LEFT: i64 = 1_024;

/// Whether the writer should checkpoint the WAL's last frames, after a checkpoint that left a WAL
/// of `log` pages with `copied` of them copied: only a long WAL, nearly all copied (a reader may
/// hold the rest back: then the writer would copy much on the commit path, so it waits).
fn writer_should_restart(log: i64, copied: i64) -> bool {
    log >= WAL_RESTART_PAGES && log - copied <= WAL_RESTART_LEFT
}

/// `PRAGMA wal_checkpoint(PASSIVE)` on `conn`: the WAL's length and how much of it is copied, in
/// pages.
fn checkpoint_passive(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// The writer's own checkpoint, run between two groups: it copies the frames committed since
/// the thread's last checkpoint, so the writer's next transaction begins with the whole WAL
/// copied and starts it over (unless a reader still reads from it: then a later request does).
fn checkpoint_on_writer(conn: &mut Connection) {
    if let Err(e) = checkpoint_passive(conn) {
        tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
    }
}

fn checkpoint_loop(
    conn: Connection,
    stop: std::sync::mpsc::Receiver<()>,
    writer: mpsc::WeakSender<Job>,
) {
    // At most one request waits in the writer's queue.
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_millis(500))
    {
        let (log, copied) = match checkpoint_passive(&conn) {
            Ok(pages) => pages,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                continue;
            }
        };
        if !writer_should_restart(log, copied) {
            continue;
        }
        let Some(jobs) = writer.upgrade() else { return };
        if asked.swap(true, std::sync::atomic::Ordering::AcqRel) {
            continue;
        }
        let done = asked.clone();
        let job = Job::Exec(Box::new(move |c| {
            checkpoint_on_writer(c);
            done.store(false, std::sync::atomic::Ordering::Release);
        }));
        // A full queue means a busy writer: the next round asks again.
        if jobs.try_send(job).is_err() {
            asked.store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

/// The `seq` of the project's last stored event, `0` when none: one step down the
/// `(project_id, seq)` index.
fn last_seq_of_project(conn: &Connection, project_id: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(LAST_SEQ_OF_PROJECT_SQL)?
        .query_row([project_id], |r| r.get::<_, i64>(0))
        .optional()
        .map(|seq| seq.unwrap_or(0) as u64)
}

/// See [`last_seq_of_project`].
const LAST_SEQ_OF_PROJECT_SQL: &str =
    "SELECT seq FROM events WHERE project_id = ?1 ORDER BY seq DESC LIMIT 1";

fn select_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Event>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE id = ?1"))?
        .query_row([id], row_to_event)
        .optional()
}

fn row_to_event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let conversion = |i, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let payload: String = row.get(7)?;
    let metadata: Option<String> = row.get(8)?;
    Ok(Event {
        seq: row.get::<_, i64>(0)? as u64,
        id: row.get(1)?,
        event_type: row.get(2)?,
        timestamp: Timestamp::from_micros(row.get(3)?),
        project_id: row.get(4)?,
        tenant_id: row.get(5)?,
        user_id: row.get(6)?,
        payload: RawValue::from_string(payload).map_err(|e| conversion(7, e))?,
        metadata: match metadata {
            Some(m) => serde_json::from_str(&m).map_err(|e| conversion(8, e))?,
            None => Default::default(),
        },
    })
}

/// `SELECT … WHERE seq > after AND <filter> ORDER BY seq LIMIT limit`.
fn select_after(
    conn: &Connection,
    filter: &EventFilter,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<Arc<Event>>> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > ?");
    let mut args: Vec<SqlValue> = vec![SqlValue::Integer(after as i64)];
    push_filter(filter, &mut sql, &mut args);
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(SqlValue::Integer(limit as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| row_to_event(r).map(Arc::new))?;
    rows.collect()
}

/// `SELECT type, count(*) … WHERE <filter> GROUP BY type ORDER BY type`. Without a condition
/// on other columns it reads the `(type, seq)` index alone (a covering scan, in type order).
fn count_by_type(conn: &Connection, filter: &EventFilter) -> rusqlite::Result<Vec<TypeCount>> {
    let (sql, args) = count_by_type_sql(filter);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(TypeCount {
            event_type: r.get(0)?,
            count: r.get::<_, i64>(1)? as u64,
        })
    })?;
    rows.collect()
}

/// The SQL of [`count_by_type`] and its arguments.
fn count_by_type_sql(filter: &EventFilter) -> (String, Vec<SqlValue>) {
    let mut sql = "SELECT type, count(*) FROM events WHERE 1".to_owned();
    let mut args = Vec::new();
    push_filter(filter, &mut sql, &mut args);
    sql.push_str(" GROUP BY type ORDER BY type");
    (sql, args)
}

/// Appends ` AND <condition>` for each condition of `filter` to `sql`, and their arguments to
/// `args`, in order: type patterns as an index range on their literal prefix plus `eb_match`,
/// then scopes and time bounds.
fn push_filter(filter: &EventFilter, sql: &mut String, args: &mut Vec<SqlValue>) {
    if !filter.all_types() {
        sql.push_str(" AND (");
        for (i, pattern) in filter.types.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            if pattern.is_exact() {
                sql.push_str("type = ?");
                args.push(SqlValue::Text(pattern.as_str().to_owned()));
                continue;
            }
            let prefix = pattern.literal_prefix();
            sql.push('(');
            if !prefix.is_empty() {
                sql.push_str("type > ? AND type < ? AND ");
                args.push(SqlValue::Text(prefix.clone()));
                args.push(SqlValue::Text(prefix_upper_bound(&prefix)));
            }
            sql.push_str("eb_match(?, type))");
            args.push(SqlValue::Text(pattern.as_str().to_owned()));
        }
        sql.push(')');
    }
    for (column, value) in [
        ("project_id", &filter.project_id),
        ("tenant_id", &filter.tenant_id),
        ("user_id", &filter.user_id),
    ] {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(SqlValue::Text(v.clone()));
        }
    }
    if !filter.project_ids.is_empty() {
        sql.push_str(" AND project_id IN (");
        for (i, project) in filter.project_ids.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(SqlValue::Text(project.clone()));
        }
        sql.push(')');
    }
    if let Some(from) = filter.from {
        sql.push_str(" AND ts >= ?");
        args.push(SqlValue::Integer(from.as_micros()));
    }
    if let Some(to) = filter.to {
        sql.push_str(" AND ts < ?");
        args.push(SqlValue::Integer(to.as_micros()));
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
            .try_send(Job::Append {
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
        let project_id = project_id.to_owned();
        self.read(move |c| last_seq_of_project(c, &project_id))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<Event>>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| select_by_id(c, &id).map(|e| e.map(Arc::new)))
            .await
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let query = query.clone();
        self.read(move |c| {
            let mut events = select_after(c, &query.filter, query.after, query.limit + 1)?;
            let next_after = (events.len() > query.limit).then(|| {
                events.truncate(query.limit);
                events.last().map_or(query.after, |e| e.seq)
            });
            Ok(EventPage { events, next_after })
        })
        .await
    }

    async fn count_by_type(&self, filter: &EventFilter) -> Result<Vec<TypeCount>, StoreError> {
        let filter = filter.clone();
        self.read(move |c| count_by_type(c, &filter)).await
    }

    async fn read_after(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<TailRead, StoreError> {
        let filter = filter.clone();
        self.read(move |c| {
            // One snapshot for the rows and the head, so `next` never passes an unseen commit.
            let tx = c.transaction()?;
            let events = select_after(&tx, &filter, after, limit)?;
            let at_end = events.len() < limit;
            let next = if at_end {
                read_head(&tx)?.max(after)
            } else {
                events.last().map_or(after, |e| e.seq)
            };
            drop(tx);
            Ok(TailRead {
                events,
                next,
                at_end,
            })
        })
        .await
    }

    async fn list_event_types(&self) -> Result<Vec<EventTypeDef>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT type, description, schema, builtin, updated_at FROM event_types ORDER BY type",
            )?;
            let rows = stmt.query_map([], |r| {
                let schema: Option<String> = r.get(2)?;
                Ok(EventTypeDef {
                    name: r.get(0)?,
                    description: r.get(1)?,
                    schema: schema.and_then(|s| serde_json::from_str(&s).ok()),
                    builtin: r.get(3)?,
                    updated_at: Timestamp::from_micros(r.get(4)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn put_event_type(&self, def: EventTypeDef) -> Result<bool, StoreError> {
        self.write(move |c| {
            let existed: bool = c
                .query_row(
                    "SELECT 1 FROM event_types WHERE type = ?1",
                    [&def.name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            c.execute(
                "INSERT INTO event_types (type, description, schema, builtin, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (type) DO UPDATE SET \
                 description = excluded.description, schema = excluded.schema, \
                 updated_at = excluded.updated_at",
                params![
                    def.name,
                    def.description,
                    def.schema.as_ref().map(|s| s.to_string()),
                    def.builtin,
                    def.updated_at.as_micros()
                ],
            )?;
            Ok(!existed)
        })
        .await
    }

    async fn ensure_event_types(&self, defs: Vec<EventTypeDef>) -> Result<(), StoreError> {
        self.write(move |c| {
            let tx = c.transaction()?;
            for def in &defs {
                tx.execute(
                    "INSERT INTO event_types (type, description, schema, builtin, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (type) DO NOTHING",
                    params![
                        def.name,
                        def.description,
                        def.schema.as_ref().map(|s| s.to_string()),
                        def.builtin,
                        def.updated_at.as_micros()
                    ],
                )?;
            }
            tx.commit()
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
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn migrated(&self) -> &super::Migrated {
        &self.migrated
    }

    fn durability(&self) -> &super::Durability {
        &self.durability
    }

    async fn close(&self) {
        // Dropping the sender lets the writer finish every queued job, then exit.
        drop(self.jobs.lock().expect("jobs lock").take());
        drop(self.stop_checkpoints.lock().expect("stop lock").take());
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        drop(self.lock.lock().expect("lock file lock").take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::NewEvent;

    async fn append_one(store: &SqliteStore) {
        let event = NewEvent::new("a.b", serde_json::json!({ "x": "y".repeat(400) }))
            .into_event(Timestamp::now())
            .expect("a valid event");
        store.append(vec![event]).await.expect("appended");
    }

    /// The WAL file's size: it grows while commits append to the WAL, and stays as it is when
    /// they write it from its beginning again.
    fn wal_bytes(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal"))
            .expect("the WAL file")
            .len()
    }

    /// Brings the WAL to the state that commits during a checkpoint leave it in: some frames
    /// not copied when the writer begins its next transaction. A reader's snapshot holds the
    /// checkpoint back from the last commit.
    async fn leave_frames_uncopied(store: &SqliteStore, path: &Path, other: &Connection) {
        let reader = Connection::open(path).expect("a reader");
        reader.execute_batch("BEGIN").expect("begin");
        let _: i64 = reader
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .expect("a read");
        append_one(store).await;
        let (log, copied) = checkpoint_passive(other).expect("a checkpoint");
        assert!(
            copied < log,
            "the reader holds the last commit back: {copied} of {log}"
        );
        reader.execute_batch("COMMIT").expect("commit");
    }

    #[test]
    fn the_writer_is_asked_for_long_wals_nearly_copied() {
        assert!(!writer_should_restart(
            WAL_RESTART_PAGES - 1,
            WAL_RESTART_PAGES - 1
        ));
        assert!(writer_should_restart(WAL_RESTART_PAGES, WAL_RESTART_PAGES));
        assert!(writer_should_restart(
            WAL_RESTART_PAGES + WAL_RESTART_LEFT,
            WAL_RESTART_PAGES
        ));
        assert!(!writer_should_restart(
            WAL_RESTART_PAGES + WAL_RESTART_LEFT + 1,
            WAL_RESTART_PAGES
        ));
        // A busy checkpoint answers -1, -1.
        assert!(!writer_should_restart(-1, -1));
    }

    #[tokio::test]
    async fn the_writers_own_checkpoint_starts_the_wal_over() {
        let (dir, store) = testing::store();
        // Only this test's checkpoints run: the thread's could start the WAL over by chance.
        drop(store.stop_checkpoints.lock().expect("stop lock").take());
        let path = dir.path().join("store.db");
        let other = Connection::open(&path).expect("a second connection");
        for _ in 0..100 {
            append_one(&store).await;
        }

        // Without the writer's checkpoint, the next commit appends to the WAL.
        leave_frames_uncopied(&store, &path, &other).await;
        let before = wal_bytes(&path);
        append_one(&store).await;
        assert!(wal_bytes(&path) > before, "the WAL grew");

        // With it, the next commit writes from the WAL's beginning: the file does not grow.
        leave_frames_uncopied(&store, &path, &other).await;
        let before = wal_bytes(&path);
        store
            .write(|c| {
                checkpoint_on_writer(c);
                Ok(())
            })
            .await
            .unwrap();
        append_one(&store).await;
        assert_eq!(wal_bytes(&path), before, "the WAL started over");
        let (log, _) = checkpoint_passive(&other).expect("a checkpoint");
        assert!(log < 50, "the WAL holds the last commit only: {log} pages");
        store.close().await;
    }
}
