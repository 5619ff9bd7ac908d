//! The raw PostgreSQL mode: the rows the bus would store, written straight into PostgreSQL — no
//! HTTP, no middleware, no committer — as the yardstick for the figures through the bus on
//! PostgreSQL.
//!
//! Same schema (created by [`PgStore::open_with`], so its migrations run, in a schema of its
//! own), same server settings (`synchronous_commit` as configured, `on` by default), one
//! connection, `batch` rows per transaction, written either as the committer writes them (one
//! multi-row `INSERT … SELECT * FROM UNNEST(…)`, [`INSERT_ROWS`]) or with `COPY … FROM STDIN`,
//! PostgreSQL's fastest way in. `seq` is counted by the inserter, as the committer counts it.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use eventbus::core::time::Timestamp;
use eventbus::store::EventStore;
use eventbus::store::postgres::{INSERT_ROWS, PgConnectOptions, PgOptions, PgStore};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::stats::{Latencies, Measurement};
use crate::workload;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One `INSERT … SELECT * FROM UNNEST(…)` per transaction.
    Insert,
    /// One `COPY events FROM STDIN` per transaction.
    Copy,
}

/// One raw PostgreSQL run.
#[derive(Debug, Clone)]
pub struct RawPgRun {
    /// The database (`postgres://…`).
    pub url: String,
    /// Rows per transaction.
    pub batch: usize,
    /// How rows are written.
    pub method: Method,
    /// Rows to write at most.
    pub events: u64,
    /// Time limit.
    pub duration: Duration,
    /// Payload size in bytes.
    pub payload_bytes: usize,
}

/// A schema of its own on the database at `url`, dropped by [`Schema::drop_now`].
pub struct Schema {
    url: String,
    name: String,
}

impl Schema {
    /// Creates a new empty schema.
    pub async fn create(url: &str, prefix: &str) -> Result<Schema> {
        let mut conn = PgConnection::connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut conn)
            .await?;
        Ok(Schema {
            url: url.to_owned(),
            name,
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL with this schema as the search path (for `EVENT_STORE_URL`).
    pub fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// Connection options with this schema as the search path.
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(&self.url)?.options([("search_path", self.name.as_str())]))
    }

    /// Drops the schema and everything in it.
    pub async fn drop_now(self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA \"{}\" CASCADE",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

/// Escapes a value for `COPY … (FORMAT text)`.
fn copy_text(out: &mut String, value: Option<&str>) {
    let Some(v) = value else {
        out.push_str("\\N");
        return;
    };
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Runs `run` in a new schema, dropped afterwards.
pub async fn run(run: &RawPgRun) -> Result<Measurement> {
    let schema = Schema::create(&run.url, "eventbus_bench_raw").await?;
    let result = run_in(run, &schema).await;
    schema.drop_now().await?;
    result
}

async fn run_in(run: &RawPgRun, schema: &Schema) -> Result<Measurement> {
    let store = PgStore::open_with(schema.connect_options()?, PgOptions::default()).await?;
    store.close().await;
    let mut conn = PgConnection::connect_with(&schema.connect_options()?).await?;
    let payload = workload::payload(run.payload_bytes);
    let projects: Vec<String> = (0..workload::PROJECTS).map(workload::project_id).collect();
    let tenants: Vec<String> = (0..workload::TENANTS).map(workload::tenant_id).collect();
    let batch = run.batch.max(1);
    let transactions = run.events.div_ceil(batch as u64);
    let mut latencies = Latencies::with_capacity(transactions.min(10_000_000) as usize);
    let mut stored = 0u64;
    let cpu_before = crate::cpu::Snapshot::take(None);
    let start = Instant::now();
    let deadline = start + run.duration;
    while stored < run.events && Instant::now() < deadline {
        let t0 = Instant::now();
        let now = Timestamp::now().as_micros();
        let rows = stored..stored + batch as u64;
        let ids: Vec<String> = rows
            .clone()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let mut tx = conn.begin().await?;
        match run.method {
            Method::Insert => {
                let seqs: Vec<i64> = rows.clone().map(|s| s as i64 + 1).collect();
                let n = seqs.len();
                sqlx::query(INSERT_ROWS)
                    .bind(seqs)
                    .bind(&ids)
                    .bind(vec![workload::EVENT_TYPE; n])
                    .bind(vec![now; n])
                    .bind(
                        rows.clone()
                            .map(|i| Some(projects[i as usize % projects.len()].as_str()))
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        rows.clone()
                            .map(|i| Some(tenants[i as usize % tenants.len()].as_str()))
                            .collect::<Vec<_>>(),
                    )
                    .bind(vec![None::<&str>; n])
                    .bind(vec![payload.as_str(); n])
                    .bind(vec![None::<&str>; n])
                    .execute(&mut *tx)
                    .await?;
            }
            Method::Copy => {
                let mut data = String::with_capacity(batch * (payload.len() + 120));
                for (k, i) in rows.clone().enumerate() {
                    let i = i as usize;
                    data.push_str(&(i + 1).to_string());
                    data.push('\t');
                    copy_text(&mut data, Some(&ids[k]));
                    data.push('\t');
                    data.push_str(workload::EVENT_TYPE);
                    data.push('\t');
                    data.push_str(&now.to_string());
                    data.push('\t');
                    copy_text(&mut data, Some(&projects[i % projects.len()]));
                    data.push('\t');
                    copy_text(&mut data, Some(&tenants[i % tenants.len()]));
                    data.push_str("\t\\N\t");
                    copy_text(&mut data, Some(&payload));
                    data.push_str("\t\\N\n");
                }
                let mut copy = tx
                    .copy_in_raw(
                        "COPY events (seq, id, type, ts, project_id, tenant_id, user_id, payload, \
                         metadata) FROM STDIN (FORMAT text)",
                    )
                    .await?;
                copy.send(data.into_bytes()).await?;
                copy.finish().await?;
            }
        }
        tx.commit().await?;
        stored += batch as u64;
        latencies.record(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let usage = cpu_before.since(&crate::cpu::Snapshot::take(None), elapsed);
    let method = match run.method {
        Method::Insert => "insert",
        Method::Copy => "COPY",
    };
    Ok(Measurement {
        label: format!(
            "raw pg {method} {batch} row{}/txn",
            if batch == 1 { "" } else { "s" }
        ),
        events: stored,
        elapsed,
        latency: latencies.summary(),
        errors: 0,
        others: usage.others(),
    })
}
