//! The raw-store mode: the rows the bus would store, inserted straight into SQLite — no HTTP, no
//! middleware, no group-commit queue — as the yardstick for the figures through the bus.
//!
//! Same schema (the database is created by [`SqliteStore::open`], so its migrations run), same
//! connection settings ([`configure`]: WAL, `synchronous`, checkpoint backstop), same `INSERT`
//! ([`INSERT_EVENT_SQL`], prepared once), and `batch` rows per `BEGIN IMMEDIATE … COMMIT`, as the
//! store's writer thread does. One difference in the raw store's favour: no checkpoint thread
//! runs beside it; `wal_autocheckpoint` is the backstop, as in the store.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use eventbus::core::time::Timestamp;
use eventbus::store::EventStore;
use eventbus::store::sqlite::{
    INSERT_EVENT_SQL, SqliteOptions, SqliteStore, Synchronous, configure,
};
use rusqlite::{Connection, params};

use crate::stats::{Latencies, Measurement};
use crate::workload;

/// One raw-store run.
#[derive(Debug, Clone)]
pub struct RawRun {
    /// Rows per transaction.
    pub batch: usize,
    /// Rows to insert at most.
    pub events: u64,
    /// Time limit of the inserting.
    pub duration: Duration,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Durability setting.
    pub synchronous: Synchronous,
}

/// Runs `run` in a new database under `data_dir`, deleted afterwards.
pub fn run(data_dir: &Path, run: &RawRun) -> Result<Measurement> {
    let dir = tempfile::Builder::new()
        .prefix("eventbus-bench-raw-")
        .tempdir_in(data_dir)
        .with_context(|| format!("creating a data directory in {}", data_dir.display()))?;
    let path = dir.path().join("eventbus.db");
    create_schema(&path, run.synchronous)?;

    let conn = Connection::open(&path)?;
    configure(&conn, run.synchronous)?;
    let payload = workload::payload(run.payload_bytes);
    // Rows are built before the clock starts; the id is a UUIDv7 made at insert time, as the
    // bus makes it when the publisher sends none.
    let projects: Vec<String> = (0..workload::PROJECTS).map(workload::project_id).collect();
    let tenants: Vec<String> = (0..workload::TENANTS).map(workload::tenant_id).collect();
    let mut insert = conn.prepare(INSERT_EVENT_SQL)?;
    let batch = run.batch.max(1);

    let transactions = run.events.div_ceil(batch as u64);
    let mut latencies = Latencies::with_capacity(transactions.min(10_000_000) as usize);
    let mut stored = 0u64;
    let cpu_before = crate::cpu::Snapshot::take(None);
    let start = Instant::now();
    let deadline = start + run.duration;
    while stored < run.events && Instant::now() < deadline {
        let t0 = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for _ in 0..batch {
            let i = stored as usize;
            let id = uuid::Uuid::now_v7().to_string();
            insert.execute(params![
                id,
                workload::EVENT_TYPE,
                Timestamp::now().as_micros(),
                projects[i % projects.len()],
                tenants[i % tenants.len()],
                None::<&str>,
                payload,
                None::<&str>,
            ])?;
            stored += 1;
        }
        conn.execute_batch("COMMIT")?;
        latencies.record(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let usage = cpu_before.since(&crate::cpu::Snapshot::take(None), elapsed);
    drop(insert);
    drop(conn);
    Ok(Measurement {
        label: format!("raw   {batch} row{}/txn", if batch == 1 { "" } else { "s" }),
        events: stored,
        elapsed,
        latency: latencies.summary(),
        errors: 0,
        others: usage.others(),
    })
}

/// Creates the store's schema at `path` by opening (and closing) the store itself.
fn create_schema(path: &Path, synchronous: Synchronous) -> Result<()> {
    let store = SqliteStore::open(
        path,
        SqliteOptions {
            synchronous,
            ..SqliteOptions::default()
        },
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(store.close());
    Ok(())
}

/// The disk's commit cost, measured where the databases go: 200 times a 4 KiB write into a
/// preallocated file followed by `fdatasync` (what a WAL commit with `synchronous=FULL` does).
pub fn fsync_probe(data_dir: &Path) -> Result<crate::stats::Summary> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = tempfile::tempfile_in(data_dir)
        .with_context(|| format!("creating a probe file in {}", data_dir.display()))?;
    let page = [0x5au8; 4096];
    for _ in 0..64 {
        file.write_all(&page)?;
    }
    file.sync_all()?;
    let mut latencies = Latencies::with_capacity(200);
    for i in 0..200u64 {
        file.seek(SeekFrom::Start((i % 64) * 4096))?;
        file.write_all(&page)?;
        let t0 = Instant::now();
        file.sync_data()?;
        latencies.record(t0.elapsed());
    }
    Ok(latencies.summary())
}
