//! The committer: group commit for PostgreSQL, and the lock that keeps `seq` order equal to
//! commit order across processes.
//!
//! One committer per store owns one connection. It takes every append waiting in its queue (up
//! to [`MAX_GROUP_ROWS`] events) and writes them in one transaction:
//!
//! 1. `BEGIN; SELECT pg_advisory_xact_lock(APPEND_LOCK, hash(schema))`: appends of every process
//!    on this schema are serialised, the lock is held until `COMMIT`;
//! 2. under the lock, in one statement (one snapshot that sees every earlier holder's commit):
//!    `prev = max(seq)` and the stored rows of every id in the group;
//!    With them, the last `seq` of each project an append of the group expects
//!    ([`ExpectedSeq`]), one step down the `(project_id, seq)` index each;
//! 3. in memory: duplicates (same id, same content) resolve to the stored event, a conflict
//!    drops its publisher's whole batch (others go on), new events get `prev + 1, prev + 2, …`;
//!    an expectation is checked against the project's last `seq` including the batches before
//!    it in the group, and a wrong one drops its batch alone, like a conflict;
//! 4. one multi-row `INSERT … SELECT FROM UNNEST(…)` of the new rows, with `pg_notify` of the new
//!    head in the same statement (delivered at commit);
//! 5. `COMMIT`, then `CommitLog::push(prev, new)`, then every publisher is answered. The
//!    listener hears the group's own notification meanwhile and leaves it to the committer
//!    ([`OwnCommits`]), so the head never runs ahead of the rows in memory.
//!
//! **The fast path.** A group whose ids are distinct (the common case: new events, no retries)
//! first goes as one statement, `SELECT eventbus_append(…)` (migration 0008), which does steps 1,
//! 2 and 4 in a function and commits by itself: one round trip instead of four. When one of its
//! ids is already stored it writes nothing and answers `-1`, and the group takes the
//! transaction above, where duplicates and conflicts are settled. A group holding an expectation
//! takes the transaction at once. Since every append of every process holds the lock from its
//! read of the heads to its commit, check and insert are atomic across processes.
//!
//! Invariant 2 (no gaps for tailing readers): a holder of the lock becomes visible (its commit
//! is in every later snapshot) before it releases the lock, and the next holder reads `max(seq)`
//! only after acquiring it. So `seq` order is commit order: a snapshot that sees `seq = s` sees
//! every `seq < s`, and anything it does not see will get a larger `seq` than it saw.
//!
//! Failures: any error or the timeout drops the connection (the server rolls back whatever was
//! open) and answers the whole group `Unavailable`; nothing was acknowledged. When `COMMIT`
//! itself is lost the outcome is unknown to the publisher, who may retry with the same ids
//! (idempotency makes that safe). The next group reconnects. A group whose very first statement
//! fails on a connection that was idle (the server restarted meanwhile) is retried once on a
//! fresh connection: `BEGIN` wrote nothing; a fast statement (above) either wrote nothing or, if
//! it committed and only its answer was lost, the retry finds its ids stored and answers them as
//! stored (`created: false`, so a single publish gets `200` instead of `201`; same seq, nothing
//! written twice). The committer's session sets `lock_timeout`, `statement_timeout` and
//! `idle_in_transaction_session_timeout` to the store's timeout, so a process that stalls
//! inside its transaction holds the other processes' appends no longer than that.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::listen::OwnCommits;
use super::{is_connection_error, row_to_event, unavailable};
use crate::core::event::Event;
use crate::core::log::CommitLog;
use crate::store::{Appended, ExpectedSeq, StoreError};

/// Most events committed in one group transaction.
pub const MAX_GROUP_ROWS: usize = 4096;

/// First key of the append advisory lock (`EBAP`); the second is the schema's hash.
pub(super) const APPEND_LOCK: i32 = 0x4542_4150;

/// The `seq` of a project's last stored event (no row: none), by the `(project_id, seq)` index.
pub const LAST_SEQ_OF_PROJECT: &str =
    "SELECT seq FROM events WHERE project_id = $1 ORDER BY seq DESC LIMIT 1";

pub(super) type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

/// One publisher's batch, waiting for the committer.
pub(super) struct AppendJob {
    pub events: Vec<Event>,
    pub expected: Option<ExpectedSeq>,
    pub reply: Reply,
}

/// Where the committer writes and whom it tells.
pub(super) struct Committer {
    pub connect: PgConnectOptions,
    /// `SET` statements run on each new connection (the bus's session settings).
    pub settings: String,
    pub conn: Option<PgConnection>,
    pub log: Arc<CommitLog>,
    /// What the listener hears from this committer's session while a group is in flight.
    pub own: Arc<OwnCommits>,
    pub sql: Statements,
    pub timeout: Duration,
}

/// The committer's statements for its schema.
pub(super) struct Statements {
    /// `BEGIN; SELECT pg_advisory_xact_lock(…)`.
    pub begin_sql: String,
    /// `SELECT eventbus_append(<lock>, <schema key>, $1, …)`: the fast path.
    pub append_sql: String,
    /// The notification channel of commits.
    pub channel: String,
}

/// An event of the group: new (index into the rows to insert) or already stored.
enum Slot {
    New { row: usize, created: bool },
    Stored(Arc<Event>),
}

/// What a group transaction did, before the replies are built.
struct Written {
    prev: u64,
    rows: Vec<Event>,
    batches: Vec<Result<Vec<Slot>, StoreError>>,
}

impl Committer {
    /// Runs the committer until `jobs` is closed and drained, on a thread of its own with a
    /// one-thread runtime whose I/O driver serves its connection alone; `tasks` tracks its end.
    ///
    /// One group commits at a time, so the time from PostgreSQL's answer to the next group's
    /// statement is on every append's path. On the server's runtime, with its workers busy
    /// with HTTP, that answer waited for a worker to poll the shared I/O driver and then for
    /// the committer's turn behind the request tasks: about 0.4 ms of a 1.3 ms group at c=64
    /// (docs/benchmarks.md, "The committer on its own thread").
    pub async fn start(
        self,
        jobs: mpsc::Receiver<AppendJob>,
        tasks: &TaskTracker,
    ) -> std::io::Result<()> {
        let (started, on_start) = oneshot::channel::<std::io::Result<()>>();
        let (ended, on_end) = oneshot::channel::<()>();
        // The runtime is built and dropped on the thread: never in the caller's async context.
        std::thread::Builder::new()
            .name("eventbus-committer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                runtime.block_on(self.run(jobs));
                drop(runtime);
                // Dropped on a panic too: the tracker never waits for a committer that is gone.
                drop(ended);
            })?;
        on_start
            .await
            .map_err(|_| std::io::Error::other("the committer's thread ended before it ran"))??;
        tasks.spawn(async move {
            let _ = on_end.await;
        });
        Ok(())
    }

    async fn run(mut self, mut jobs: mpsc::Receiver<AppendJob>) {
        // Connected before the first append waits for it, within the store's bound; a failure
        // here is the first group's to retry.
        let connecting = connection(&mut self.conn, &self.connect, &self.settings, &self.own);
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the event store's committer cannot connect yet");
            }
            Err(_) => tracing::warn!(
                timeout = ?self.timeout,
                "the event store's committer cannot connect yet: no answer within the bound"
            ),
        }
        while let Some(job) = jobs.recv().await {
            let mut rows = job.events.len();
            let mut group = vec![job];
            while rows < MAX_GROUP_ROWS {
                match jobs.try_recv() {
                    Ok(job) => {
                        rows += job.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group).await;
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    async fn commit_group(&mut self, group: Vec<AppendJob>) {
        let mut replies = Vec::with_capacity(group.len());
        let mut batches = Vec::with_capacity(group.len());
        let mut expected = Vec::with_capacity(group.len());
        for job in group {
            replies.push(job.reply);
            batches.push(job.events);
            expected.push(job.expected);
        }
        let timeout = self.timeout;
        let started = std::time::Instant::now();
        let events: usize = batches.iter().map(Vec::len).sum();
        self.own.begin();
        let outcome =
            match tokio::time::timeout(timeout, self.write_with_retry(batches, expected)).await {
                Ok(Ok(written)) => Ok(written),
                Ok(Err(e)) => Err(unavailable(e)),
                Err(_) => Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not complete the commit within {timeout:?}"
                ))),
            };
        let written = match outcome {
            Ok(w) => w,
            Err(e) => {
                // Dropping the connection ends the session: the server rolls back what was open.
                // If it committed and only the answer was lost, its notification is the news.
                self.disconnect();
                self.own.end(&self.log);
                tracing::error!(error = %e, "event store commit failed; the group was not acknowledged");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
        };
        crate::metric::store_group(events, started.elapsed());
        let rows: Vec<Arc<Event>> = written.rows.into_iter().map(Arc::new).collect();
        self.log.push(written.prev, &rows);
        self.own.end(&self.log);
        for (result, reply) in written.batches.into_iter().zip(replies) {
            let result = result.map(|slots| {
                slots
                    .into_iter()
                    .map(|slot| match slot {
                        Slot::New { row, created } => Appended {
                            event: rows[row].clone(),
                            created,
                        },
                        Slot::Stored(event) => Appended {
                            event,
                            created: false,
                        },
                    })
                    .collect()
            });
            let _ = reply.send(result);
        }
    }

    /// Drops the connection (ending its session) and forgets its server process.
    fn disconnect(&mut self) {
        self.conn = None;
        self.own.set_session(0);
    }

    async fn write_with_retry(
        &mut self,
        batches: Vec<Vec<Event>>,
        expected: Vec<Option<ExpectedSeq>>,
    ) -> Result<Written, sqlx::Error> {
        // A group of distinct ids, none stored yet, without expectations (the common case), is
        // written by one statement; any other group in the transaction of steps 1 to 5.
        let fast = distinct_ids(&batches) && expected.iter().all(Option::is_none);
        let reused = self.conn.is_some();
        let conn = connection(&mut self.conn, &self.connect, &self.settings, &self.own).await?;
        let first = first_step(conn, fast, &batches, &self.sql).await;
        let first = match first {
            Err(e) if reused && is_connection_error(&e) => {
                // Nothing of the group reached the database on a connection found dead; or, if
                // the fast statement did commit before its answer was lost, it now finds its ids
                // stored and the transaction settles them as duplicates.
                tracing::info!(error = %e, "event store connection was lost; reconnecting");
                self.disconnect();
                let conn =
                    connection(&mut self.conn, &self.connect, &self.settings, &self.own).await?;
                first_step(conn, fast, &batches, &self.sql).await?
            }
            other => other?,
        };
        let conn = self.conn.as_mut().expect("connected");
        match first {
            Some(prev) => Ok(plan(
                prev,
                batches,
                &HashMap::new(),
                &expected,
                HashMap::new(),
            )),
            None => {
                if fast {
                    begin(conn, &self.sql.begin_sql).await?;
                }
                write_group(conn, batches, &expected, &self.sql.channel).await
            }
        }
    }
}

/// The fast statement (`Some(prev)` when it wrote the group, `None` when an id is stored), or
/// `BEGIN` and the append lock (`None`).
async fn first_step(
    conn: &mut PgConnection,
    fast: bool,
    batches: &[Vec<Event>],
    sql: &Statements,
) -> Result<Option<u64>, sqlx::Error> {
    if fast {
        append_new(conn, &sql.append_sql, batches, &sql.channel).await
    } else {
        begin(conn, &sql.begin_sql).await.map(|()| None)
    }
}

/// Whether no id appears twice in the group.
fn distinct_ids(batches: &[Vec<Event>]) -> bool {
    let mut seen = std::collections::HashSet::new();
    batches.iter().flatten().all(|e| seen.insert(e.id.as_str()))
}

/// The fast path: `eventbus_append(…)` (migration 0008) takes the lock, checks that no id is
/// stored, inserts the rows numbered after `max(seq)` and notifies, in one statement that commits
/// by itself. `Some(prev)` when it wrote the rows, `None` when an id was stored (nothing written).
async fn append_new(
    conn: &mut PgConnection,
    sql: &str,
    batches: &[Vec<Event>],
    channel: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let columns = EventColumns::new(batches.iter().flatten());
    let prev: i64 = columns
        .bind_unnumbered(sqlx::query(AssertSqlSafe(sql.to_owned())).bind(channel))
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok((prev >= 0).then_some(prev as u64))
}

/// The committer's connection, connected with its session settings when there is none; the
/// listener learns its server process, to tell this committer's notifications from others'.
async fn connection<'c>(
    conn: &'c mut Option<PgConnection>,
    connect: &PgConnectOptions,
    settings: &str,
    own: &OwnCommits,
) -> Result<&'c mut PgConnection, sqlx::Error> {
    if conn.is_none() {
        let mut new = PgConnection::connect_with(connect).await?;
        sqlx::raw_sql(AssertSqlSafe(settings.to_owned()))
            .execute(&mut new)
            .await?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut new)
            .await?;
        own.set_session(u32::try_from(pid).unwrap_or(0));
        *conn = Some(new);
    }
    Ok(conn.as_mut().expect("just connected"))
}

async fn begin(conn: &mut PgConnection, begin_sql: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(begin_sql.to_owned()))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Steps 2 to 5 of the module doc, inside the transaction `begin` opened.
async fn write_group(
    conn: &mut PgConnection,
    batches: Vec<Vec<Event>>,
    expected: &[Option<ExpectedSeq>],
    channel: &str,
) -> Result<Written, sqlx::Error> {
    let ids: Vec<&str> = batches.iter().flatten().map(|e| e.id.as_str()).collect();
    let found: Vec<PgRow> = sqlx::query(
        "SELECT h.head, e.seq, e.id, e.type, e.ts, e.project_id, e.tenant_id, e.user_id, \
                e.payload, e.metadata \
         FROM (SELECT coalesce(max(seq), 0) AS head FROM events) h \
         LEFT JOIN events e ON e.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    drop(ids);
    let prev = found.first().map(|r| r.try_get::<i64, _>(0)).transpose()?;
    let prev = prev.unwrap_or(0) as u64;
    let mut stored: HashMap<String, Arc<Event>> = HashMap::with_capacity(found.len());
    for row in &found {
        if row.try_get::<Option<i64>, _>(1)?.is_some() {
            let event = row_to_event(row, 1)?;
            stored.insert(event.id.clone(), Arc::new(event));
        }
    }

    let mut heads: HashMap<String, u64> = HashMap::new();
    for e in expected.iter().flatten() {
        if !heads.contains_key(&e.project_id) {
            let seq: Option<i64> = sqlx::query_scalar(LAST_SEQ_OF_PROJECT)
                .bind(&e.project_id)
                .fetch_optional(&mut *conn)
                .await?;
            heads.insert(e.project_id.clone(), seq.unwrap_or(0) as u64);
        }
    }

    let plan = plan(prev, batches, &stored, expected, heads);
    if !plan.rows.is_empty() {
        insert(conn, &plan.rows, channel).await?;
    }
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
    Ok(plan)
}

/// Step 3: decides, batch by batch, what is new, what is a duplicate and which batches conflict
/// or expect a wrong seq. `heads` holds the last stored `seq` of every expected project.
fn plan(
    prev: u64,
    batches: Vec<Vec<Event>>,
    stored: &HashMap<String, Arc<Event>>,
    expected: &[Option<ExpectedSeq>],
    mut heads: HashMap<String, u64>,
) -> Written {
    let mut rows: Vec<Event> = Vec::new();
    let mut pending: HashMap<String, usize> = HashMap::new();
    let mut results = Vec::with_capacity(batches.len());
    for (b, batch) in batches.into_iter().enumerate() {
        let mark = rows.len();
        let mut slots = Vec::with_capacity(batch.len());
        let mut conflict = None;
        for (index, mut event) in batch.into_iter().enumerate() {
            if let Some(s) = stored.get(&event.id) {
                if s.same_content(&event) {
                    slots.push(Slot::Stored(s.clone()));
                    continue;
                }
            } else if let Some(&row) = pending.get(&event.id) {
                if rows[row].same_content(&event) {
                    slots.push(Slot::New {
                        row,
                        created: false,
                    });
                    continue;
                }
            } else {
                event.seq = prev + rows.len() as u64 + 1;
                pending.insert(event.id.clone(), rows.len());
                slots.push(Slot::New {
                    row: rows.len(),
                    created: true,
                });
                rows.push(event);
                continue;
            }
            conflict = Some(StoreError::Conflict {
                index,
                id: event.id,
            });
            break;
        }
        if conflict.is_none()
            && rows.len() > mark
            && let Some(Some(e)) = expected.get(b)
        {
            let actual = heads.get(&e.project_id).copied().unwrap_or(0);
            if actual != e.last_seq {
                conflict = Some(StoreError::WrongExpectedSeq {
                    project_id: e.project_id.clone(),
                    expected: e.last_seq,
                    actual,
                });
            }
        }
        if conflict.is_none() {
            for row in &rows[mark..] {
                if let Some(project) = &row.project_id
                    && let Some(head) = heads.get_mut(project)
                {
                    *head = row.seq;
                }
            }
        }
        match conflict {
            Some(e) => {
                for row in rows.drain(mark..) {
                    pending.remove(&row.id);
                }
                results.push(Err(e));
            }
            None => results.push(Ok(slots)),
        }
    }
    Written {
        prev,
        rows,
        batches: results,
    }
}

/// The events as one array per column, for `INSERT … SELECT * FROM UNNEST(…)` ([`INSERT_ROWS`]).
pub(super) struct EventColumns<'a> {
    seq: Vec<i64>,
    id: Vec<&'a str>,
    ty: Vec<&'a str>,
    ts: Vec<i64>,
    project: Vec<Option<&'a str>>,
    tenant: Vec<Option<&'a str>>,
    user: Vec<Option<&'a str>>,
    payload: Vec<&'a str>,
    metadata: Vec<Option<String>>,
}

/// Inserts rows given as one array per column, bound as `$1` to `$9` (see `EventColumns`).
pub const INSERT_ROWS: &str = "INSERT INTO events \
     (seq, id, type, ts, project_id, tenant_id, user_id, payload, metadata) \
     SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::text[], \
                          $6::text[], $7::text[], $8::text[], $9::text[])";

impl<'a> EventColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        EventColumns {
            seq: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            ty: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            project: Vec::with_capacity(n),
            tenant: Vec::with_capacity(n),
            user: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, e: &'a Event) {
        self.seq.push(e.seq as i64);
        self.id.push(e.id.as_str());
        self.ty.push(e.event_type.as_str());
        self.ts.push(e.timestamp.as_micros());
        self.project.push(e.project_id.as_deref());
        self.tenant.push(e.tenant_id.as_deref());
        self.user.push(e.user_id.as_deref());
        self.payload.push(e.payload.get());
        self.metadata.push(
            (!e.metadata.is_empty())
                .then(|| serde_json::to_string(&e.metadata).expect("string map serialises")),
        );
    }

    /// The columns of `events`, in their order.
    pub(super) fn new(events: impl Iterator<Item = &'a Event>) -> Self {
        let mut c = Self::with_capacity(events.size_hint().0);
        for e in events {
            c.push(e);
        }
        c
    }

    /// Binds the nine columns, in order, as the next parameters of `query`.
    pub(super) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        self.bind_unnumbered(query.bind(&self.seq))
    }

    /// Binds every column but `seq`, in order, as the next parameters of `query`.
    fn bind_unnumbered<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.id)
            .bind(&self.ty)
            .bind(&self.ts)
            .bind(&self.project)
            .bind(&self.tenant)
            .bind(&self.user)
            .bind(&self.payload)
            .bind(&self.metadata)
    }
}

/// Step 4: one statement inserting every new row and notifying the new head.
async fn insert(conn: &mut PgConnection, rows: &[Event], channel: &str) -> Result<(), sqlx::Error> {
    let columns = EventColumns::new(rows.iter());
    let head = rows.last().map_or(0, |e| e.seq);
    let sql = format!("WITH ins AS ({INSERT_ROWS}) SELECT pg_notify($10, $11)");
    columns
        .bind(sqlx::query(AssertSqlSafe(sql)))
        .bind(channel)
        .bind(head.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
