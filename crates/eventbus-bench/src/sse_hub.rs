//! The SSE hub alone, in this process, with as many streams as wanted: no sockets, so no
//! open-file limit bounds the count.
//!
//! It builds the bus on a SQLite store in a temporary directory and opens C hub connections
//! (`eventbus::transport::sse::Connection`, what `GET /v1/stream` holds for each client) spread
//! over P projects, plus one receiving everything, each read by its own task as the server's
//! connection task reads it. Then it publishes at R events/s through `EventBus::publish` (the
//! middleware chain and the durable commit) and measures publish→read latency of every frame.
//! Memory per stream is the process's RSS after opening the connections minus before, over C:
//! the hub's share of a stream (its queue, registration, heartbeat timer and task), without the
//! socket and HTTP parts that `eventbus-bench sse` measures through a real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use eventbus::core::filter::EventFilter;
use eventbus::store::sqlite::{SqliteOptions, SqliteStore};
use eventbus::transport::sse::SseOptions;
use eventbus::{BusOptions, EventBus, NewEvent, Pattern};
use tokio::sync::Mutex;

use crate::sse::{SseResult, drained, rss_kib, sent_at, streams_of_project};
use crate::stats::Latencies;
use crate::workload::now_micros;

/// One in-process hub load.
#[derive(Debug, Clone)]
pub struct HubLoad {
    /// Streams filtered by project.
    pub connections: usize,
    /// Projects the streams and events are spread over.
    pub projects: usize,
    /// Events published per second.
    pub rate: u64,
    /// How long events are published.
    pub duration: Duration,
    /// Payload size in bytes.
    pub payload_bytes: usize,
}

/// What the run measured: RSS before and after opening the streams (KiB), and the fan-out.
#[derive(Debug)]
pub struct HubResult {
    /// RSS with the bus built and no stream (KiB).
    pub rss_before: u64,
    /// RSS with every stream open and idle (KiB).
    pub rss_after: u64,
    /// The fan-out under load.
    pub fanout: SseResult,
}

/// Runs `load` on a bus whose store lives under `data_dir`.
pub async fn run(load: &HubLoad, data_dir: &std::path::Path) -> Result<HubResult> {
    let dir = tempfile::Builder::new()
        .prefix("eventbus-bench-hub-")
        .tempdir_in(data_dir)
        .context("creating a data directory")?;
    let store = SqliteStore::open(&dir.path().join("eventbus.db"), SqliteOptions::default())
        .context("opening the store")?;
    let bus = EventBus::builder(Arc::new(store))
        .options(BusOptions {
            sse: SseOptions {
                queue: 1024,
                max_connections: load.connections + 100,
                ..SseOptions::default()
            },
            ..BusOptions::default()
        })
        .build()
        .await
        .context("building the bus")?;
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = tokio::sync::watch::channel(false).0;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(std::process::id())?;
    let types = Pattern::parse_list("project.>").context("the pattern")?;
    let mut readers = Vec::with_capacity(load.connections + 1);
    for i in 0..=load.connections {
        let filter = if i == load.connections {
            EventFilter::default()
        } else {
            EventFilter {
                types: types.clone(),
                project_id: Some(format!("p{}", i % load.projects)),
                ..EventFilter::default()
            }
        };
        let mut conn = bus
            .sse()
            .connect(filter, None)
            .map_err(|e| anyhow::anyhow!("stream {i}: {e}"))?;
        let (latencies, delivered, mut stop) =
            (latencies.clone(), delivered.clone(), stop.subscribe());
        readers.push(tokio::spawn(async move {
            let mut samples = Latencies::default();
            loop {
                let chunk = tokio::select! {
                    chunk = conn.next_chunk() => chunk,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let Some(chunk) = chunk else { break };
                if let Some(sent) = sent_at(&chunk) {
                    samples.record(Duration::from_micros(now_micros().saturating_sub(sent)));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().await.merge(samples);
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(std::process::id())?;

    let padding = "x".repeat(load.payload_bytes.saturating_sub(60));
    let total = (load.rate as f64 * load.duration.as_secs_f64()) as u64;
    let tick = Duration::from_millis(10);
    let per_tick = (load.rate as f64 * tick.as_secs_f64()).max(1.0) as u64;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let (mut published, mut expected) = (0u64, 0u64);
    // Open loop: each publish is its own task, so a slow commit delays none of the next ones.
    let mut inflight = tokio::task::JoinSet::new();
    while published < total {
        interval.tick().await;
        for _ in 0..per_tick.min(total - published) {
            let project = published as usize % load.projects;
            expected += streams_of_project(load.connections, load.projects, project) + 1;
            let event = NewEvent::new(
                "project.updated",
                serde_json::json!({"sentAt": now_micros(), "pad": padding}),
            )
            .project(format!("p{project}"));
            let bus = bus.clone();
            inflight.spawn(async move { bus.publish(event).await.map(|_| ()) });
            published += 1;
        }
        while let Some(done) = inflight.try_join_next() {
            done.context("publisher task")?.context("publishing")?;
        }
    }
    while let Some(done) = inflight.join_next().await {
        done.context("publisher task")?.context("publishing")?;
    }
    let last = drained(&delivered, expected).await;
    stop.send_replace(true);
    for r in readers {
        let _ = r.await;
    }
    let deliveries = delivered.load(Ordering::Acquire);
    if deliveries < expected {
        bail!("{deliveries} of {expected} frames arrived");
    }
    let latency = std::mem::take(&mut *latencies.lock().await).summary();
    bus.shutdown().await;
    Ok(HubResult {
        rss_before,
        rss_after,
        fanout: SseResult {
            label: format!(
                "hub fan-out: {} streams / {} projects + 1, {} ev/s",
                load.connections, load.projects, load.rate
            ),
            published,
            deliveries,
            expected,
            elapsed: last.duration_since(started),
            latency,
        },
    })
}
