//! The relay of one source: moves committed outbox rows into the log.
//!
//! - **One relay per source at a time.** A process relays a source only while it holds the
//!   session advisory lock `eventbus.outbox.relay.<schema>` on the application's database; the
//!   others stand by and try again every second. The lock lives with the relay's connection, so
//!   a relay that dies (`kill -9`, lost network) releases it as soon as PostgreSQL sees the
//!   connection close, and a standby takes over.
//! - **Batches.** One read (`ORDER BY seq LIMIT 500`), one append of the accepted rows (one
//!   commit of the store), one transaction on the application's database that moves refused rows
//!   to the dead letters and deletes the batch (or, with `keep=`, marks it relayed; kept rows
//!   are deleted once older than that, at most a minute later).
//! - **Nothing skipped, nothing twice.** The relay reads whatever rows are in the table, not a
//!   page after a remembered position, so a transaction that inserted early and committed late is
//!   read when it commits. Rows are deleted only after the store acknowledged the append; a relay
//!   that dies in between leaves them, and the next append of the same ids with the same content
//!   stores nothing new (the bus's idempotent publish).
//! - **Order.** Rows are appended in `seq` order; a row inserted by a transaction that began
//!   after another committed has a higher `seq`, so the writes an application serialises reach
//!   the log in that order.
//! - **Wake-up.** `LISTEN eventbus_outbox`: the insert trigger notifies at commit; a one-second
//!   poll is the backstop.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tokio_util::sync::CancellationToken;

use super::ddl::{CHANNEL, quote};
use super::source::OutboxSource;
use crate::bus::{EventBus, PublishError, Relayed};
use crate::core::event::{Metadata, NewEvent};
use crate::core::middleware::PublishContext;
use crate::core::time::Timestamp;
use crate::metric;

/// Rows read, appended and deleted together.
pub const BATCH: i64 = 500;
/// The backstop poll, and how often a standby tries to take over.
const TICK: Duration = Duration::from_secs(1);
/// The longest time between two deletions of kept rows.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a relay is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Connecting for the first time.
    Starting,
    /// Relaying: this process holds the source.
    Relaying,
    /// Another process relays the source; this one takes over if it stops.
    Standby,
    /// The application's database (or the store) cannot be reached; retrying.
    Degraded(String),
}

/// The state of one source, shared by its relay, the API and the metrics.
#[derive(Debug)]
pub struct SourceState {
    role: Mutex<Role>,
    /// Rows appended by this process.
    pub relayed: AtomicU64,
    /// Rows this process moved to the dead letters.
    pub dead_lettered: AtomicU64,
    /// Rows waiting, as last measured (-1: not measured yet).
    pub backlog: AtomicI64,
    /// Age of the oldest waiting row in ms, as last measured (-1: none).
    pub oldest_ms: AtomicI64,
    /// Dead letters in the table, as last measured (-1: not measured yet).
    pub dead_letters: AtomicI64,
    outage: AtomicBool,
}

impl Default for SourceState {
    fn default() -> Self {
        SourceState {
            role: Mutex::new(Role::Starting),
            relayed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            backlog: AtomicI64::new(-1),
            oldest_ms: AtomicI64::new(-1),
            dead_letters: AtomicI64::new(-1),
            outage: AtomicBool::new(false),
        }
    }
}

impl SourceState {
    /// What the relay is doing now.
    pub fn role(&self) -> Role {
        self.role.lock().expect("role lock").clone()
    }

    fn set_role(&self, source: &str, role: Role) {
        let relaying = role == Role::Relaying;
        *self.role.lock().expect("role lock") = role;
        metrics::gauge!(metric::OUTBOX_RELAYING, "source" => source.to_owned()).set(if relaying {
            1.0
        } else {
            0.0
        });
    }
}

/// Relays `source` into `bus` until `cancel`; never returns early (errors are retried).
pub async fn run(
    bus: EventBus,
    source: Arc<OutboxSource>,
    state: Arc<SourceState>,
    cancel: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => break,
            r = session(&bus, &source, &state, &cancel) => r,
        };
        let error = match result {
            Ok(()) => break,
            Err(e) => e,
        };
        metrics::counter!(metric::OUTBOX_ERRORS, "source" => source.name.clone()).increment(1);
        state.set_role(&source.name, Role::Degraded(error.clone()));
        // Logged once per outage; the recovery is logged too.
        if !state.outage.swap(true, Ordering::AcqRel) {
            tracing::warn!(source = %source.name, error = %error, "outbox relay interrupted; retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    state.set_role(&source.name, Role::Standby);
}

/// One connection's worth of relaying: waits for the lock, then relays until an error (returned
/// as text) or `cancel` (`Ok`).
async fn session(
    bus: &EventBus,
    source: &OutboxSource,
    state: &SourceState,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut conn = PgConnection::connect_with(&source.connect)
        .await
        .map_err(|e| fail("connecting to the application database", &e))?;
    loop {
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('eventbus.outbox.relay.' || $1, 0))",
        )
        .bind(&source.schema)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| fail("taking the relay lock", &e))?;
        if locked {
            break;
        }
        state.set_role(&source.name, Role::Standby);
        recovered(source, state);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(source.connect.clone());
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(|e| fail("listening", &e))?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(|e| fail("listening", &e))?;
    state.set_role(&source.name, Role::Relaying);
    recovered(source, state);
    tracing::info!(source = %source.name, schema = %source.schema, "relaying the outbox");
    let ctx = context(source);
    let mut measured = Instant::now() - TICK;
    let mut swept = Instant::now();
    loop {
        // Drain: full batches mean more rows are waiting.
        while relay_batch(&mut conn, bus, source, state, &ctx).await? == BATCH as usize {}
        if measured.elapsed() >= TICK {
            measure(&mut conn, source, state)
                .await
                .map_err(|e| fail("measuring the backlog", &e))?;
            measured = Instant::now();
        }
        if let Some(keep) = source.keep
            && swept.elapsed() >= keep.clamp(TICK, SWEEP_EVERY)
        {
            sweep(&mut conn, &quote(&source.schema), keep)
                .await
                .map_err(|e| fail("deleting kept rows", &e))?;
            swept = Instant::now();
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            n = listener.recv() => { n.map_err(|e| fail("listening", &e))?; }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

fn recovered(source: &OutboxSource, state: &SourceState) {
    if state.outage.swap(false, Ordering::AcqRel) {
        tracing::info!(source = %source.name, "outbox relay reconnected");
    }
}

/// The publisher the rows act as: the source's tenant and types, `publish` only.
fn context(source: &OutboxSource) -> PublishContext {
    use crate::core::principal::{Permission, Principal};
    let principal = Principal {
        key_id: format!("outbox:{}", source.name),
        tenant_id: source.tenant.clone(),
        project_ids: None,
        grants: [(Permission::Publish, source.types.clone())]
            .into_iter()
            .collect(),
    };
    PublishContext {
        principal: Some(Arc::new(principal)),
        traceparent: None,
    }
}

/// One batch: read, append, then move refused rows aside and delete the batch. Returns the rows
/// read.
async fn relay_batch(
    conn: &mut PgConnection,
    bus: &EventBus,
    source: &OutboxSource,
    state: &SourceState,
    ctx: &PublishContext,
) -> Result<usize, String> {
    let s = quote(&source.schema);
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT seq, id::text, type, payload::text, project_id, tenant_id, user_id, \
                metadata::text, (extract(epoch FROM occurred_at) * 1000000)::bigint \
         FROM {s}.outbox WHERE relayed_at IS NULL ORDER BY seq LIMIT {BATCH}"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| format!("reading the outbox: {e}"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut seqs = Vec::with_capacity(rows.len());
    let mut refused: Vec<(i64, String)> = Vec::new();
    let mut events = Vec::with_capacity(rows.len());
    let mut event_seqs = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.get(0);
        seqs.push(seq);
        match to_event(row) {
            Ok(event) => {
                events.push(event);
                event_seqs.push(seq);
            }
            Err(reason) => refused.push((seq, reason)),
        }
    }
    let mut appended = 0u64;
    if !events.is_empty() {
        let outcomes = bus
            .publish_relayed(events, ctx)
            .await
            .map_err(|e| match e {
                PublishError::Store(e) => format!("appending to the event store: {e}"),
                other => format!("relaying: {other}"),
            })?;
        for (seq, outcome) in event_seqs.into_iter().zip(outcomes) {
            match outcome {
                Relayed::Appended(_) => appended += 1,
                Relayed::Refused(reason) => refused.push((seq, reason)),
            }
        }
    }
    settle(conn, &s, &seqs, &refused, source.keep.is_some())
        .await
        .map_err(|e| format!("deleting relayed rows: {e}"))?;
    let name = || source.name.clone();
    state.relayed.fetch_add(appended, Ordering::Relaxed);
    metrics::counter!(metric::OUTBOX_RELAYED, "source" => name()).increment(appended);
    if !refused.is_empty() {
        state
            .dead_lettered
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        metrics::counter!(metric::OUTBOX_DEAD_LETTERED, "source" => name())
            .increment(refused.len() as u64);
        for (seq, reason) in &refused {
            tracing::warn!(source = %source.name, seq, reason = %reason, "outbox row refused; moved to the dead letters");
        }
    }
    Ok(rows.len())
}

/// The event of one outbox row, or why it cannot be one.
fn to_event(row: &sqlx::postgres::PgRow) -> Result<NewEvent, String> {
    let payload: String = row.get(3);
    let metadata: String = row.get(7);
    let micros: i64 = row.get(8);
    let metadata: Metadata = serde_json::from_str(&metadata)
        .map_err(|_| "metadata: must be a JSON object of string values".to_owned())?;
    let payload = RawValue::from_string(payload).map_err(|e| format!("payload: {e}"))?;
    Ok(NewEvent {
        id: Some(row.get(1)),
        event_type: row.get(2),
        payload: Some(payload),
        timestamp: Some(Timestamp::from_micros(micros).to_string()),
        project_id: row.get(4),
        tenant_id: row.get(5),
        user_id: row.get(6),
        metadata: Some(metadata),
        seq: None,
    })
}

/// In one transaction: moves the `refused` rows to the dead letters with their reasons, and
/// deletes the other rows of `seqs` (or, when the source keeps them, marks them relayed).
async fn settle(
    conn: &mut PgConnection,
    s: &str,
    seqs: &[i64],
    refused: &[(i64, String)],
    keep: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    if !refused.is_empty() {
        let (dead_seqs, reasons): (Vec<i64>, Vec<String>) = refused.iter().cloned().unzip();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {s}.outbox_dead_letters \
                 (seq, id, type, payload, project_id, tenant_id, user_id, metadata, occurred_at, reason) \
             SELECT o.seq, o.id, o.type, o.payload, o.project_id, o.tenant_id, o.user_id, \
                    o.metadata, o.occurred_at, d.reason \
             FROM {s}.outbox o JOIN unnest($1::bigint[], $2::text[]) AS d(seq, reason) USING (seq) \
             ON CONFLICT (seq) DO UPDATE SET reason = EXCLUDED.reason, failed_at = now()"
        )))
        .bind(&dead_seqs)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
    }
    // Refused rows are gone from the outbox either way; relayed ones too, unless kept.
    let dead: Vec<i64>;
    let deleted = if keep {
        dead = refused.iter().map(|(seq, _)| *seq).collect();
        &dead[..]
    } else {
        seqs
    };
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {s}.outbox WHERE seq = ANY($1)"
    )))
    .bind(deleted)
    .execute(&mut *tx)
    .await?;
    if keep {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {s}.outbox SET relayed_at = clock_timestamp() WHERE seq = ANY($1)"
        )))
        .bind(seqs)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Deletes rows relayed more than `keep` ago, a bounded batch at a time.
async fn sweep(conn: &mut PgConnection, s: &str, keep: Duration) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {s}.outbox WHERE seq IN (SELECT seq FROM {s}.outbox \
            WHERE relayed_at < clock_timestamp() - make_interval(secs => $1) LIMIT 10000)"
    )))
    .bind(keep.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Reads the backlog, the oldest row's age and the dead letters into `state` and the gauges.
async fn measure(
    conn: &mut PgConnection,
    source: &OutboxSource,
    state: &SourceState,
) -> Result<(), sqlx::Error> {
    let s = quote(&source.schema);
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {s}.outbox WHERE relayed_at IS NULL), \
                (SELECT (extract(epoch FROM clock_timestamp() - min(occurred_at)) * 1000)::bigint \
                   FROM {s}.outbox WHERE relayed_at IS NULL), \
                (SELECT count(*) FROM {s}.outbox_dead_letters)"
    )))
    .fetch_one(&mut *conn)
    .await?;
    let backlog: i64 = row.get(0);
    let oldest: Option<i64> = row.get(1);
    let dead: i64 = row.get(2);
    state.backlog.store(backlog, Ordering::Relaxed);
    state
        .oldest_ms
        .store(oldest.unwrap_or(-1), Ordering::Relaxed);
    state.dead_letters.store(dead, Ordering::Relaxed);
    let name = || source.name.clone();
    metrics::gauge!(metric::OUTBOX_BACKLOG, "source" => name()).set(backlog as f64);
    metrics::gauge!(metric::OUTBOX_OLDEST_AGE, "source" => name())
        .set(oldest.unwrap_or(0).max(0) as f64 / 1000.0);
    metrics::gauge!(metric::OUTBOX_DEAD_LETTERS, "source" => name()).set(dead as f64);
    Ok(())
}
