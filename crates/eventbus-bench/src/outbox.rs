//! The transactional outbox load: rows inserted into `<schema>.outbox` of an application's
//! PostgreSQL database (the tables made by `eventbus::outbox::ddl::init_at`, as
//! `eventbus outbox init` makes them), relayed by a spawned server (`OUTBOX_SOURCES`) into its
//! log, and watched on one SSE stream (`GET /v1/stream?types=project.updated`).
//!
//! Every row carries an id the bench chose: its phase's tag in the high 64 bits and the row's
//! number in the low ones ([`row_id`]), so the stream's reader maps each event frame back to its
//! row without a lookup and ignores the events of other phases.
//!
//! The phases, in the order [`run`] drives them, on one schema and one server:
//! 1. **writers alone**: W connections insert N rows, B per transaction (one multi-row
//!    `INSERT … SELECT … FROM unnest(…)` between `BEGIN` and `COMMIT`), while no relay runs: the
//!    rate the database takes the rows, the yardstick of the others. The bench holds the relay's
//!    lock (the session advisory lock `eventbus.outbox.relay.<schema>` a relay needs) meanwhile,
//!    so the server, started next, stands by.
//! 2. **backlog**: the bench releases the lock; the relay takes the source (seen as the state
//!    `relaying` in `GET /v1/outboxes/bench`, polled every 2 ms) and drains the N rows: rows/s
//!    from that moment to the last row's arrival on the stream.
//! 3. **live**: the W writers insert N more rows as fast as they can while the relay runs:
//!    rows/s from the first commit to the last row's arrival, commit→SSE latency per row (the
//!    commit of its transaction), and the writers' own rate meanwhile.
//! 4. **latency**: one row per transaction at R rows/s on a fixed schedule for D seconds (open
//!    loop: row `i` is due at `start + i / R` whatever earlier rows took; each is sent in a task
//!    of its own over a pool of `--pool` connections), commit→SSE latency per row, the commit instant
//!    taken right after `COMMIT` returned. Rows late on their schedule (a stalled database, an
//!    exhausted pool) show in the scheduled→SSE latency printed beside it, so no coordinated
//!    omission hides them.
//!
//! Every phase stops after its rows or its time limit, and fails if a row never arrived or arrived
//! twice.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use crate::cpu;
use crate::server::SpawnedServer;
use crate::stats::{Latencies, Summary};
use crate::workload;

/// The source's name in `OUTBOX_SOURCES` and `/v1/outboxes/{name}`.
pub const SOURCE: &str = "bench";

/// The variant bits (RFC 9562 `10`) of the low half of a row id.
const VARIANT: u64 = 0b10 << 62;
/// The row number's bits in the low half of a row id.
const INDEX_MASK: u64 = (1 << 62) - 1;
/// A row's slot that nothing filled (never committed, never arrived).
const NONE: u64 = u64::MAX;

/// A new phase tag: the high half of a fresh UUIDv7 (its millisecond and version) with its
/// 12 `rand_a` bits replaced by a counter of this process (from a random start), so row ids are
/// well-formed version 7 UUIDs and no two phases share a tag, even within one millisecond.
pub fn new_tag() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| Uuid::now_v7().as_u64_pair().1);
    let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    (Uuid::now_v7().as_u64_pair().0 & !0xFFF) | (n & 0xFFF)
}

/// The id of row `i` of the phase tagged `tag`.
pub fn row_id(tag: u64, i: u64) -> Uuid {
    Uuid::from_u64_pair(tag, VARIANT | (i & INDEX_MASK))
}

/// The row number of `id` when it belongs to the phase tagged `tag`.
pub fn row_index(tag: u64, id: &Uuid) -> Option<u64> {
    let (high, low) = id.as_u64_pair();
    (high == tag && low & !INDEX_MASK == VARIANT).then_some(low & INDEX_MASK)
}

/// What one run needs.
#[derive(Debug, Clone)]
pub struct OutboxLoad {
    /// The application's database.
    pub database_url: String,
    /// The schema of the outbox tables (made and dropped by the caller).
    pub schema: String,
    /// The spawned server's `EVENT_STORE_URL` (a SQLite file in its data directory when `None`).
    pub store_url: Option<String>,
    /// Rows of each throughput phase.
    pub rows: u64,
    /// Writer connections of the throughput phases.
    pub writers: usize,
    /// Connections of the latency phase's pool.
    pub pool: usize,
    /// Rows per transaction of the throughput phases.
    pub batch: usize,
    /// Rows per second of the latency phase.
    pub rate: u64,
    /// How long the latency phase sends.
    pub duration: Duration,
    /// Time limit of each phase.
    pub limit: Duration,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Skip the backlog phase (the writers' rows are deleted before the server starts).
    pub no_backlog: bool,
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What ran.
    pub label: String,
    /// Rows inserted, or relayed and seen on the stream.
    pub rows: u64,
    /// Wall time the rate is taken over.
    pub elapsed: Duration,
    /// Per transaction (writers) or commit→SSE per row (relayed), when measured.
    pub latency: Option<Summary>,
    /// The store's group commits during the phase (relayed phases).
    pub commits: Option<StoreCommits>,
}

/// The store's group commits over a span, from the server's `/metrics`
/// (`eventbus_store_append_duration_seconds`, `eventbus_store_append_batch_size`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreCommits {
    /// Group commits.
    pub count: u64,
    /// Time spent in them, in seconds.
    pub seconds: f64,
    /// Events they stored.
    pub events: f64,
}

impl StoreCommits {
    /// Reads the totals so far.
    async fn read(client: &reqwest::Client, url: &str) -> Result<StoreCommits> {
        let text = crate::server::metrics_text(client, url).await?;
        Ok(StoreCommits::parse(&text))
    }

    /// The totals in a Prometheus text page.
    fn parse(text: &str) -> StoreCommits {
        let value = |name: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        StoreCommits {
            count: value("eventbus_store_append_duration_seconds_count") as u64,
            seconds: value("eventbus_store_append_duration_seconds_sum"),
            events: value("eventbus_store_append_batch_size_sum"),
        }
    }

    /// What happened between `self` and `later`.
    fn until(&self, later: &StoreCommits) -> StoreCommits {
        StoreCommits {
            count: later.count.saturating_sub(self.count),
            seconds: later.seconds - self.seconds,
            events: later.events - self.events,
        }
    }
}

impl Phase {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The latency phase.
#[derive(Debug, Clone)]
pub struct LatencyPhase {
    /// Rows per second asked for.
    pub rate: u64,
    /// Rows committed.
    pub sent: u64,
    /// Rows seen on the stream.
    pub arrived: u64,
    /// From the first row's due time to the last row's arrival.
    pub elapsed: Duration,
    /// Commit→SSE per row.
    pub commit_to_sse: Summary,
    /// Scheduled→SSE per row (includes the wait for a connection, the insert and the commit).
    pub schedule_to_sse: Summary,
    /// `BEGIN` to `COMMIT` returned, per row.
    pub transaction: Summary,
    /// The most a row was sent after its due time.
    pub behind: Duration,
    /// The most rows in flight at once.
    pub max_in_flight: usize,
    /// The store's group commits during the phase.
    pub commits: StoreCommits,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct OutboxResult {
    /// The writers with no relay running.
    pub alone: Phase,
    /// The relay draining the writers' rows.
    pub backlog: Option<Phase>,
    /// The writers while the relay runs.
    pub live_writers: Phase,
    /// The rows relayed while written.
    pub live: Phase,
    /// CPU use during the live phase.
    pub live_usage: cpu::Usage,
    /// The open-loop phase.
    pub latency: LatencyPhase,
    /// CPU use during the latency phase.
    pub latency_usage: cpu::Usage,
}

/// Starts a server on `load` (with `OUTBOX_SOURCES` on its outbox) and runs the four phases.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    load: &OutboxLoad,
    binary: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<OutboxResult> {
    let connect = PgConnectOptions::from_str(&load.database_url)?;
    let ran = runtime
        .block_on(eventbus::outbox::ddl::init_at(&connect, &load.schema))
        .context("creating the outbox tables")?;
    println!("outbox: schema {} ({ran} migration(s) run)", load.schema);
    let writers = Writers {
        connect: connect.clone(),
        sql: insert_many_sql(&load.schema).into(),
        writers: load.writers,
        batch: load.batch,
        payload: workload::payload(load.payload_bytes).into(),
    };
    let base = Instant::now();

    // 1. The writers alone, the relay's lock held by the bench.
    let hold = runtime.block_on(RelayHold::take(&connect, &load.schema))?;
    let backlog_tag = new_tag();
    let alone = runtime.block_on(writers.write(
        backlog_tag,
        load.rows,
        base,
        Instant::now() + load.limit,
    ))?;
    if load.no_backlog {
        runtime.block_on(async {
            let mut conn = PgConnection::connect_with(&connect).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "TRUNCATE {}.outbox",
                quote(&load.schema)
            )))
            .execute(&mut conn)
            .await?;
            anyhow::Ok(())
        })?;
    }

    let mut env = vec![
        (
            "OUTBOX_SOURCES",
            format!(
                "name={SOURCE},url={},schema={}",
                load.database_url, load.schema
            ),
        ),
        // One stream receives every row of a phase at once; it must not lag.
        ("SSE_QUEUE", "65536".to_owned()),
    ];
    if let Some(url) = &load.store_url {
        env.push(("EVENT_STORE_URL", url.clone()));
    }
    let server = SpawnedServer::start_with(binary, data_dir, "full", &env)?;
    println!(
        "server: {} (pid {}), data in {}",
        server.url(),
        server.pid(),
        server.data_dir().display()
    );
    let outcome = runtime.block_on(with_server(
        load,
        &writers,
        &server,
        hold,
        backlog_tag,
        alone,
        base,
    ));
    server.stop().context("stopping the server")?;
    outcome
}

async fn with_server(
    load: &OutboxLoad,
    writers: &Writers,
    server: &SpawnedServer,
    hold: RelayHold,
    backlog_tag: u64,
    alone: Written,
    base: Instant,
) -> Result<OutboxResult> {
    let client = crate::server::client_builder()
        .build()
        .context("building the HTTP client")?;
    let url = server.url();
    let limit = load.limit;

    // 2. The backlog.
    wait_state(
        &client,
        url,
        "standby",
        Instant::now() + Duration::from_secs(10),
    )
    .await
    .context("the relay should stand by while the bench holds its lock")?;
    let backlog = if load.no_backlog {
        hold.release().await?;
        None
    } else {
        let stream = Stream::open(&client, url, backlog_tag, base).await?;
        let store_before = StoreCommits::read(&client, url).await?;
        hold.release().await?;
        let took = wait_state(
            &client,
            url,
            "relaying",
            Instant::now() + Duration::from_secs(10),
        )
        .await?;
        stream.wait_for(load.rows, Instant::now() + limit).await;
        let store_after = StoreCommits::read(&client, url).await?;
        let arrivals = stream.finish().await?;
        let first = first_arrivals(load.rows, &arrivals)?;
        let last = first.iter().copied().max().unwrap_or(0);
        Some(Phase {
            label: format!("backlog of {} rows drained", load.rows),
            rows: load.rows,
            elapsed: Duration::from_micros(last.saturating_sub(micros(base, took))),
            latency: None,
            commits: Some(store_before.until(&store_after)),
        })
    };
    wait_empty(&writers.connect, &load.schema, Instant::now() + limit).await?;

    // 3. Written while relayed.
    let live_tag = new_tag();
    let stream = Stream::open(&client, url, live_tag, base).await?;
    let store_before = StoreCommits::read(&client, url).await?;
    let cpu_before = cpu::Snapshot::take(Some(server.pid()));
    let cpu_started = Instant::now();
    let written = writers
        .write(live_tag, load.rows, base, Instant::now() + limit)
        .await?;
    stream.wait_for(load.rows, Instant::now() + limit).await;
    let live_usage = cpu_before.since(
        &cpu::Snapshot::take(Some(server.pid())),
        cpu_started.elapsed(),
    );
    let store_after = StoreCommits::read(&client, url).await?;
    let arrivals = stream.finish().await?;
    let first = first_arrivals(load.rows, &arrivals)?;
    let commits: Vec<u64> = (0..load.rows)
        .map(|i| written.commits[(i / writers.batch as u64) as usize])
        .collect();
    let last = first.iter().copied().max().unwrap_or(0);
    let first_commit = commits.iter().copied().min().unwrap_or(0);
    let live = Phase {
        label: format!(
            "relayed while written ({} x {} rows/txn)",
            writers.writers, writers.batch
        ),
        rows: load.rows,
        elapsed: Duration::from_micros(last.saturating_sub(first_commit)),
        latency: Some(latencies(&first, &commits).summary()),
        commits: Some(store_before.until(&store_after)),
    };
    let live_writers = written.phase(format!(
        "writers meanwhile: {} x {} rows/txn",
        writers.writers, writers.batch
    ));
    wait_empty(&writers.connect, &load.schema, Instant::now() + limit).await?;

    // 4. Open loop, one row per transaction.
    let pool = PgPoolOptions::new()
        .max_connections(load.pool as u32)
        .min_connections(load.pool as u32)
        .connect_with(writers.connect.clone())
        .await
        .context("connecting the latency phase's pool")?;
    let latency_tag = new_tag();
    let stream = Stream::open(&client, url, latency_tag, base).await?;
    let store_before = StoreCommits::read(&client, url).await?;
    let cpu_before = cpu::Snapshot::take(Some(server.pid()));
    let cpu_started = Instant::now();
    let sent = open_loop(
        &pool,
        &insert_one_sql(&load.schema),
        &writers.payload,
        latency_tag,
        load.rate,
        load.duration,
        base,
        Instant::now() + load.duration + limit,
    )
    .await?;
    stream
        .wait_for(sent.committed(), Instant::now() + limit)
        .await;
    let latency_usage = cpu_before.since(
        &cpu::Snapshot::take(Some(server.pid())),
        cpu_started.elapsed(),
    );
    let store_after = StoreCommits::read(&client, url).await?;
    pool.close().await;
    let arrivals = stream.finish().await?;
    let first = first_arrivals(sent.due.len() as u64, &arrivals)?;
    let last = first.iter().copied().max().unwrap_or(0);
    let latency = LatencyPhase {
        rate: load.rate,
        sent: sent.committed(),
        arrived: arrivals.rows.len() as u64,
        elapsed: Duration::from_micros(last.saturating_sub(sent.due.first().copied().unwrap_or(0))),
        commit_to_sse: latencies(&first, &sent.commits).summary(),
        schedule_to_sse: latencies(&first, &sent.due).summary(),
        transaction: sent.transactions.summary(),
        behind: sent.behind,
        max_in_flight: sent.max_in_flight,
        commits: store_before.until(&store_after),
    };
    Ok(OutboxResult {
        alone: alone.phase(format!(
            "writers alone: {} x {} rows/txn",
            writers.writers, writers.batch
        )),
        backlog,
        live_writers,
        live,
        live_usage,
        latency,
        latency_usage,
    })
}

/// `name` as a quoted identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The throughput phases' statement: B rows in one `INSERT`, ids and projects as arrays, one
/// payload for all (`$1` ids, `$2` type, `$3` payload, `$4` projects).
fn insert_many_sql(schema: &str) -> String {
    format!(
        "INSERT INTO {}.outbox (id, type, payload, project_id) \
         SELECT u.id, $2, $3::jsonb, u.project FROM unnest($1::uuid[], $4::text[]) AS u(id, project)",
        quote(schema)
    )
}

/// The latency phase's statement, one row.
fn insert_one_sql(schema: &str) -> String {
    format!(
        "INSERT INTO {}.outbox (id, type, payload, project_id) VALUES ($1::uuid, $2, $3::jsonb, $4)",
        quote(schema)
    )
}

/// Micros from `base` to `at` (0 before it).
fn micros(base: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(base).as_micros() as u64
}

/// The writers of the throughput phases.
struct Writers {
    connect: PgConnectOptions,
    sql: Arc<str>,
    writers: usize,
    batch: usize,
    payload: Arc<str>,
}

/// What the writers of one phase did.
struct Written {
    rows: u64,
    /// Connections open, the clock started.
    started: Instant,
    /// The last commit returned.
    finished: Instant,
    /// Micros after the run's base when each transaction's `COMMIT` returned, by transaction.
    commits: Vec<u64>,
    /// `BEGIN` to `COMMIT` returned, per transaction.
    transactions: Latencies,
}

impl Written {
    fn phase(&self, label: String) -> Phase {
        Phase {
            label,
            rows: self.rows,
            elapsed: self.finished.duration_since(self.started),
            latency: Some(self.transactions.clone().summary()),
            commits: None,
        }
    }
}

impl Writers {
    /// Inserts rows `0..rows` of phase `tag`: transaction `k` (rows `k*B..`) by writer `k % W`.
    async fn write(
        &self,
        tag: u64,
        rows: u64,
        base: Instant,
        deadline: Instant,
    ) -> Result<Written> {
        let transactions = rows.div_ceil(self.batch as u64);
        let mut conns = Vec::with_capacity(self.writers);
        for _ in 0..self.writers {
            conns.push(
                PgConnection::connect_with(&self.connect)
                    .await
                    .context("connecting a writer")?,
            );
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (w, mut conn) in conns.into_iter().enumerate() {
            let (sql, payload) = (self.sql.clone(), self.payload.clone());
            let (batch, step) = (self.batch as u64, self.writers);
            tasks.spawn(async move {
                let mut done = Vec::new();
                for k in (w as u64..transactions).step_by(step) {
                    if Instant::now() > deadline {
                        bail!("the writers did not finish within the time limit");
                    }
                    let rows = k * batch..((k + 1) * batch).min(rows);
                    let ids: Vec<String> =
                        rows.clone().map(|i| row_id(tag, i).to_string()).collect();
                    let projects: Vec<String> =
                        rows.map(|i| workload::project_id(i as usize)).collect();
                    let t0 = Instant::now();
                    let mut tx = conn.begin().await?;
                    sqlx::query(AssertSqlSafe(sql.clone()))
                        .bind(ids)
                        .bind(workload::EVENT_TYPE)
                        .bind(&*payload)
                        .bind(projects)
                        .execute(&mut *tx)
                        .await
                        .context("inserting into the outbox")?;
                    tx.commit().await?;
                    let now = Instant::now();
                    done.push((k, micros(base, now), now - t0));
                }
                let _ = conn.close().await;
                anyhow::Ok(done)
            });
        }
        let mut commits = vec![NONE; transactions as usize];
        let mut latencies = Latencies::with_capacity(transactions as usize);
        while let Some(done) = tasks.join_next().await {
            for (k, at, took) in done.context("a writer task")?? {
                commits[k as usize] = at;
                latencies.record(took);
            }
        }
        let last = commits.iter().copied().max().unwrap_or(0);
        Ok(Written {
            rows,
            started,
            finished: base + Duration::from_micros(last),
            commits,
            transactions: latencies,
        })
    }
}

/// The open-loop phase's rows, by row number: micros after the run's base.
struct Sent {
    /// When each row was due.
    due: Vec<u64>,
    /// When each row's `COMMIT` returned ([`NONE`]: not committed).
    commits: Vec<u64>,
    transactions: Latencies,
    behind: Duration,
    max_in_flight: usize,
}

impl Sent {
    fn committed(&self) -> u64 {
        self.commits.iter().filter(|&&c| c != NONE).count() as u64
    }
}

/// Sends `rate × duration` rows, row `i` alone in a transaction at `start + i / rate`, each in a
/// task of its own over `pool`.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    pool: &PgPool,
    sql: &str,
    payload: &Arc<str>,
    tag: u64,
    rate: u64,
    duration: Duration,
    base: Instant,
    deadline: Instant,
) -> Result<Sent> {
    let total = (rate as f64 * duration.as_secs_f64()).round().max(1.0) as u64;
    let sql: Arc<str> = sql.into();
    let mut sent = Sent {
        due: Vec::with_capacity(total as usize),
        commits: vec![NONE; total as usize],
        transactions: Latencies::with_capacity(total as usize),
        behind: Duration::ZERO,
        max_in_flight: 0,
    };
    let mut in_flight = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if due > deadline {
            bail!("the open loop ran past its time limit");
        }
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        sent.behind = sent
            .behind
            .max(Instant::now().saturating_duration_since(due));
        sent.due.push(micros(base, due));
        while let Some(done) = in_flight.try_join_next() {
            collect(&mut sent, done)?;
        }
        let (pool, sql, payload) = (pool.clone(), sql.clone(), payload.clone());
        in_flight.spawn(async move {
            let mut conn = pool.acquire().await.context("a connection of the pool")?;
            let t0 = Instant::now();
            let mut tx = conn.begin().await?;
            sqlx::query(AssertSqlSafe(sql))
                .bind(row_id(tag, i).to_string())
                .bind(workload::EVENT_TYPE)
                .bind(&*payload)
                .bind(workload::project_id(i as usize))
                .execute(&mut *tx)
                .await
                .context("inserting into the outbox")?;
            tx.commit().await?;
            let now = Instant::now();
            anyhow::Ok::<RowDone>((i, micros(base, now), now - t0))
        });
        sent.max_in_flight = sent.max_in_flight.max(in_flight.len());
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, in_flight.join_next()).await {
            Ok(Some(done)) => collect(&mut sent, done)?,
            Ok(None) => break,
            Err(_) => bail!("rows still uncommitted at the time limit"),
        }
    }
    Ok(sent)
}

type RowDone = (u64, u64, Duration);

/// Records a finished row's task: its commit instant and transaction time.
fn collect(sent: &mut Sent, done: Result<Result<RowDone>, tokio::task::JoinError>) -> Result<()> {
    let (i, at, took) = done.context("a row's task")??;
    sent.commits[i as usize] = at;
    sent.transactions.record(took);
    Ok(())
}

/// For each of rows `0..n`, the micros of its arrival; fails if one never arrived, one arrived
/// twice, or the stream lagged.
fn first_arrivals(n: u64, arrivals: &Arrivals) -> Result<Vec<u64>> {
    if arrivals.lagged {
        bail!("the SSE stream lagged and was closed by the server");
    }
    let first = first_of(n, &arrivals.rows);
    let missing = first.iter().filter(|&&a| a == NONE).count();
    if missing > 0 {
        bail!("{missing} of {n} rows never arrived on the stream");
    }
    let extra = arrivals.rows.len() - first.len();
    if extra > 0 {
        bail!("{extra} events of the {n} rows arrived more than once");
    }
    Ok(first)
}

/// The first of the `(row, micros)` arrivals of each row of `0..n` ([`NONE`] if none).
fn first_of(n: u64, rows: &[(u64, u64)]) -> Vec<u64> {
    let mut first = vec![NONE; n as usize];
    for &(i, at) in rows {
        if let Some(slot) = first.get_mut(i as usize) {
            *slot = (*slot).min(at);
        }
    }
    first
}

/// `arrival − reference` of every row that has both (a reference after the arrival counts 0).
fn latencies(arrivals: &[u64], reference: &[u64]) -> Latencies {
    let mut out = Latencies::with_capacity(arrivals.len());
    for (&a, &r) in arrivals.iter().zip(reference) {
        if a != NONE && r != NONE {
            out.record(Duration::from_micros(a.saturating_sub(r)));
        }
    }
    out
}

/// The bench's connection holding the relay's lock: the server's relay stands by until
/// [`RelayHold::release`].
struct RelayHold(PgConnection);

impl RelayHold {
    async fn take(connect: &PgConnectOptions, schema: &str) -> Result<RelayHold> {
        let mut conn = PgConnection::connect_with(connect)
            .await
            .context("connecting to the application database")?;
        // The same key the relay takes (`eventbus::outbox::relay`).
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('eventbus.outbox.relay.' || $1, 0))",
        )
        .bind(schema)
        .fetch_one(&mut conn)
        .await?;
        if !locked {
            bail!("another process relays the outbox in schema {schema}");
        }
        Ok(RelayHold(conn))
    }

    async fn release(self) -> Result<()> {
        // Closing the session releases the lock.
        self.0.close().await?;
        Ok(())
    }
}

/// Polls `GET /v1/outboxes/bench` every 2 ms until its state is `want`; the instant it was seen.
async fn wait_state(
    client: &reqwest::Client,
    url: &str,
    want: &str,
    deadline: Instant,
) -> Result<Instant> {
    let mut last = String::new();
    while Instant::now() < deadline {
        let r = client
            .get(format!("{url}/v1/outboxes/{SOURCE}"))
            .send()
            .await
            .context("reading the outbox's state")?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if status == 200 && body["state"] == want {
            return Ok(Instant::now());
        }
        last = format!("{status} {body}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("the outbox `{SOURCE}` was not {want} in time; last answer: {last}")
}

/// Waits until the outbox table is empty (the relay deleted every row it relayed).
async fn wait_empty(connect: &PgConnectOptions, schema: &str, deadline: Instant) -> Result<()> {
    let mut conn = PgConnection::connect_with(connect).await?;
    let sql = format!("SELECT count(*) FROM {}.outbox", quote(schema));
    loop {
        let left: i64 = sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
            .fetch_one(&mut conn)
            .await?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{left} rows still in the outbox at the time limit");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = conn.close().await;
    Ok(())
}

/// What a stream saw.
#[derive(Debug, Default)]
struct Arrivals {
    /// `(row, micros after the run's base)` of each event of the phase, in arrival order.
    rows: Vec<(u64, u64)>,
    /// The server closed the stream with a `lagged` event.
    lagged: bool,
}

struct Watched {
    opened: AtomicBool,
    rows: AtomicU64,
}

/// One SSE stream on the phase's rows.
struct Stream {
    watched: Arc<Watched>,
    stop: tokio::sync::watch::Sender<bool>,
    reader: tokio::task::JoinHandle<Arrivals>,
}

impl Stream {
    /// Opens `GET /v1/stream?types=project.updated` and waits until it is registered (its
    /// `retry:` line arrived).
    async fn open(client: &reqwest::Client, url: &str, tag: u64, base: Instant) -> Result<Stream> {
        let resp = client
            .get(format!("{url}/v1/stream?types={}", workload::EVENT_TYPE))
            .send()
            .await
            .context("opening the SSE stream")?;
        if resp.status() != 200 {
            bail!("the SSE stream answered {}", resp.status());
        }
        let watched = Arc::new(Watched {
            opened: AtomicBool::new(false),
            rows: AtomicU64::new(0),
        });
        let stop = tokio::sync::watch::channel(false).0;
        let reader = tokio::spawn(read(resp, tag, base, watched.clone(), stop.subscribe()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watched.opened.load(Ordering::Acquire) {
            if Instant::now() > deadline || reader.is_finished() {
                bail!("the SSE stream did not open");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Stream {
            watched,
            stop,
            reader,
        })
    }

    /// Waits until `n` rows of the phase arrived or `deadline`.
    async fn wait_for(&self, n: u64, deadline: Instant) {
        while self.watched.rows.load(Ordering::Acquire) < n
            && Instant::now() < deadline
            && !self.reader.is_finished()
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the reader and hands over what it saw.
    async fn finish(self) -> Result<Arrivals> {
        self.stop.send_replace(true);
        self.reader.await.context("the stream's reader")
    }
}

async fn read(
    mut resp: reqwest::Response,
    tag: u64,
    base: Instant,
    watched: Arc<Watched>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Arrivals {
    let mut scanner = FrameScanner::default();
    let mut out = Arrivals::default();
    loop {
        let chunk = tokio::select! {
            chunk = resp.chunk() => chunk,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(Some(chunk)) = chunk else { break };
        let at = micros(base, Instant::now());
        let before = out.rows.len();
        scanner.feed(&chunk, |frame| match frame {
            Frame::Opened => watched.opened.store(true, Ordering::Release),
            Frame::Event(Some(id)) => {
                if let Some(i) = row_index(tag, &id) {
                    out.rows.push((i, at));
                }
            }
            Frame::Lagged => out.lagged = true,
            Frame::Event(None) | Frame::Other => {}
        });
        if out.rows.len() > before {
            watched
                .rows
                .fetch_add((out.rows.len() - before) as u64, Ordering::AcqRel);
        }
    }
    out
}

/// One SSE frame, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The `retry:` line the server sends when the stream is registered.
    Opened,
    /// An event frame (`id: <seq>`, `event: <type>`, `data: {"id":"<uuid>",…}`), with the
    /// event's id when it reads as a UUID.
    Event(Option<Uuid>),
    /// The server's `lagged` control event: it closes the stream.
    Lagged,
    /// A heartbeat comment or anything else.
    Other,
}

/// Splits a byte stream into SSE frames (blocks ended by a blank line).
#[derive(Debug, Default)]
struct FrameScanner {
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no frame end (less one, in case it is the first `\n`).
    scanned: usize,
}

impl FrameScanner {
    fn feed(&mut self, chunk: &[u8], mut on: impl FnMut(Frame)) {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(at) = self.buf[from..].windows(2).position(|w| w == b"\n\n") {
            let end = from + at;
            on(classify(&self.buf[start..end]));
            start = end + 2;
            from = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len().saturating_sub(1);
    }
}

fn classify(block: &[u8]) -> Frame {
    if block.starts_with(b"retry:") {
        return Frame::Opened;
    }
    if block.starts_with(b"event: lagged\n") {
        return Frame::Lagged;
    }
    if !block.starts_with(b"id: ") {
        return Frame::Other;
    }
    const DATA: &[u8] = b"\ndata: {\"id\":\"";
    let id = block
        .windows(DATA.len())
        .position(|w| w == DATA)
        .and_then(|at| block.get(at + DATA.len()..at + DATA.len() + 36))
        .and_then(|text| std::str::from_utf8(text).ok())
        .and_then(|text| Uuid::parse_str(text).ok());
    Frame::Event(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_carry_their_phase_and_number() {
        let (a, b) = (new_tag(), new_tag());
        assert_ne!(a, b);
        let tags: std::collections::HashSet<u64> = (0..1000).map(|_| new_tag()).collect();
        assert_eq!(tags.len(), 1000);
        for i in [0, 1, 49_999, INDEX_MASK] {
            let id = row_id(a, i);
            assert_eq!(row_index(a, &id), Some(i));
            assert_eq!(row_index(b, &id), None);
            assert_eq!(id.get_version_num(), 7, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            // PostgreSQL's text form reads back the same.
            assert_eq!(Uuid::parse_str(&id.to_string()).unwrap(), id);
        }
        assert_eq!(row_index(a, &Uuid::now_v7()), None);
    }

    #[test]
    fn frames_split_across_chunks() {
        let id = row_id(new_tag(), 42);
        let stream = format!(
            "retry: 2000\n\n: heartbeat\n\nid: 7\nevent: project.updated\ndata: {{\"id\":\"{id}\",\"type\":\"project.updated\",\"payload\":{{}},\"seq\":7}}\n\n\
             id: 8\nevent: project.updated\ndata: {{\"id\":\"not-a-uuid\"}}\n\n\
             event: lagged\ndata: {{\"lastEventId\":8}}\n\n"
        );
        // Every split point, so a frame end cut between its two newlines is found too.
        for cut in 0..stream.len() {
            let mut scanner = FrameScanner::default();
            let mut frames = Vec::new();
            scanner.feed(&stream.as_bytes()[..cut], |f| frames.push(f));
            scanner.feed(&stream.as_bytes()[cut..], |f| frames.push(f));
            assert_eq!(
                frames,
                [
                    Frame::Opened,
                    Frame::Other,
                    Frame::Event(Some(id)),
                    Frame::Event(None),
                    Frame::Lagged
                ],
                "cut at {cut}"
            );
            assert!(scanner.buf.is_empty());
        }
    }

    #[test]
    fn store_commits_from_metrics() {
        let page = "# TYPE eventbus_store_append_duration_seconds histogram\n\
            eventbus_store_append_duration_seconds_bucket{le=\"0.001\"} 3\n\
            eventbus_store_append_duration_seconds_sum 0.25\n\
            eventbus_store_append_duration_seconds_count 4\n\
            eventbus_store_append_duration_seconds_count_other 99\n\
            eventbus_store_append_batch_size_sum{store=\"a\"} 1500\n\
            eventbus_store_append_batch_size_count 4\n";
        let c = StoreCommits::parse(page);
        assert_eq!(
            c,
            StoreCommits {
                count: 4,
                seconds: 0.25,
                events: 1500.0
            }
        );
        let d = StoreCommits::default().until(&c);
        assert_eq!(d.count, 4);
        assert_eq!(StoreCommits::parse(""), StoreCommits::default());
    }

    #[test]
    fn latency_is_first_arrival_minus_reference() {
        let first = first_of(4, &[(0, 100), (2, 300), (0, 90), (9, 1)]);
        assert_eq!(first, [90, NONE, 300, NONE]);
        let mut l = latencies(&first, &[40, 50, 310, 60]);
        assert_eq!(l.len(), 2);
        // A commit seen after the arrival (the stream was faster than the writer's wake-up)
        // counts as zero.
        l.merge(latencies(&[5], &[7]));
        let s = l.summary();
        assert_eq!(s.max, Duration::from_micros(50));
        assert_eq!(s.p50, Duration::from_micros(0));
        let arrivals = Arrivals {
            rows: vec![(0, 1)],
            lagged: false,
        };
        assert!(first_arrivals(2, &arrivals).is_err());
        assert!(first_arrivals(1, &arrivals).is_ok());
        let twice = Arrivals {
            rows: vec![(0, 1), (0, 2)],
            lagged: false,
        };
        assert!(first_arrivals(1, &twice).is_err());
        let lagged = Arrivals {
            rows: vec![(0, 1)],
            lagged: true,
        };
        assert!(first_arrivals(1, &lagged).is_err());
    }
}
