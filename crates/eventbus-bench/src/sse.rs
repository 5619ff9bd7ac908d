//! The SSE fan-out load (DESIGN.md §6): C connections spread over P projects plus one connection
//! subscribed to everything, events published at R per second, each carrying its send time.
//!
//! Reports deliveries per second, publish→receive latency (p50/p99/max) and the server's memory
//! per idle connection. The baseline, measured in the same run against the same server, is one
//! connection receiving everything at the same rate: the table shows the fan-out's p99 beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::Mutex;

use crate::stats::{Latencies, Summary};
use crate::workload::now_micros;

/// One SSE load.
#[derive(Debug, Clone)]
pub struct SseLoad {
    /// Server base URL (streams, and publishes unless `publish_url` is set).
    pub url: String,
    /// Another server's base URL to publish to (the streams' server reads the events from the
    /// shared store: a cross-node latency).
    pub publish_url: Option<String>,
    /// Connections filtered by project.
    pub connections: usize,
    /// Projects the connections and events are spread over.
    pub projects: usize,
    /// Events published per second.
    pub rate: u64,
    /// How long events are published.
    pub duration: Duration,
    /// Payload size in bytes.
    pub payload_bytes: usize,
}

/// What one SSE run measured.
#[derive(Debug, Clone)]
pub struct SseResult {
    /// Label of the run.
    pub label: String,
    /// Events published.
    pub published: u64,
    /// Events received over all connections.
    pub deliveries: u64,
    /// Deliveries expected (each event reaches its project's connections and the firehose).
    pub expected: u64,
    /// Wall time from the first publish to the last delivery.
    pub elapsed: Duration,
    /// Publish→receive latency.
    pub latency: Summary,
}

impl SseResult {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Raises this process's open-file limit to at least `needed` (the hard limit too when it is
/// lower and the process may raise it, as root may) and at least to the hard limit; returns the
/// new soft limit. The server this tool spawns inherits it.
pub fn raise_fd_limit(needed: u64) -> Result<u64> {
    let (_, hard) = rlimit::Resource::NOFILE
        .get()
        .context("reading RLIMIT_NOFILE")?;
    if hard < needed && rlimit::Resource::NOFILE.set(needed, needed).is_ok() {
        return Ok(needed);
    }
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .context("raising RLIMIT_NOFILE")?;
    Ok(hard)
}

/// Streams opened from one loopback source address: below the 28,232 ephemeral ports of
/// Linux's default range, which one source address can use towards one server port.
pub const STREAMS_PER_SOURCE: usize = 20_000;

/// HTTP clients for `n` streams: one per [`STREAMS_PER_SOURCE`] streams, each bound to its own
/// source address (127.0.0.1, 127.0.0.2, …), so that ports do not run out.
fn stream_clients(n: usize) -> Result<Vec<reqwest::Client>> {
    let sources = n.div_ceil(STREAMS_PER_SOURCE).max(1);
    (0..sources)
        .map(|k| {
            let mut builder = crate::server::client_builder().pool_max_idle_per_host(usize::MAX);
            if sources > 1 {
                let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + k as u8);
                builder = builder.local_address(std::net::IpAddr::V4(source));
            }
            builder.build().context("building the HTTP client")
        })
        .collect()
}

/// The server's resident memory in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS line")
}

struct Shared {
    latencies: Mutex<Latencies>,
    deliveries: AtomicU64,
    connected: AtomicU64,
    /// Set when the phase is over: readers stop and hand in their samples.
    stop: tokio::sync::watch::Sender<bool>,
}

/// Opens `n` streams (`query(i)` gives each one's query string); resolves once every one of them
/// has received its opening `retry:` line, i.e. is registered on the server.
async fn open_streams(
    clients: &[reqwest::Client],
    url: &str,
    n: usize,
    query: impl Fn(usize) -> String,
    shared: &Arc<Shared>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let resp = clients[i % clients.len()]
            .get(format!("{url}/v1/stream?{}", query(i)))
            .send()
            .await
            .with_context(|| format!("opening stream {i}"))?;
        if resp.status() != 200 {
            bail!("stream {i} answered {}", resp.status());
        }
        let shared = shared.clone();
        tasks.push(tokio::spawn(read_stream(resp, shared)));
    }
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 1000);
    while shared.connected.load(Ordering::Acquire) < n as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} streams opened",
                shared.connected.load(Ordering::Acquire)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(tasks)
}

async fn read_stream(mut resp: reqwest::Response, shared: Arc<Shared>) {
    let mut buf = Vec::<u8>::new();
    let mut samples = Latencies::with_capacity(1024);
    let mut opened = false;
    let mut stop = shared.stop.subscribe();
    loop {
        let chunk = tokio::select! {
            chunk = resp.chunk() => chunk,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(Some(chunk)) = chunk else { break };
        let now = now_micros();
        buf.extend_from_slice(&chunk);
        while let Some(end) = find(&buf, b"\n\n") {
            let block = &buf[..end];
            if block.starts_with(b"retry:") && !opened {
                opened = true;
                shared.connected.fetch_add(1, Ordering::AcqRel);
            }
            if let Some(sent) = sent_at(block) {
                samples.record(Duration::from_micros(now.saturating_sub(sent)));
                shared.deliveries.fetch_add(1, Ordering::Relaxed);
            }
            buf.drain(..end + 2);
        }
        if samples.len() >= 1024 {
            let full = std::mem::replace(&mut samples, Latencies::with_capacity(1024));
            shared.latencies.lock().await.merge(full);
        }
    }
    shared.latencies.lock().await.merge(samples);
}

/// Waits (at most a minute) until the server's `eventbus_sse_connections` gauge reads 0.
async fn wait_for_no_streams(client: &reqwest::Client, url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = crate::server::parse_metrics(&crate::server::metrics_text(client, url).await?)
            .get("eventbus_sse_connections")
            .copied();
        if open == Some(0.0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server still holds {open:?} streams a minute after they were dropped");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many of `connections` streams spread over `projects` (stream `i` on project
/// `i mod projects`) are on project `p`.
pub fn streams_of_project(connections: usize, projects: usize, p: usize) -> u64 {
    (connections / projects + usize::from(p < connections % projects)) as u64
}

/// Waits until `delivered` reaches `expected` (at most 30 s after the last publish); returns
/// the time the wait ended.
pub async fn drained(delivered: &AtomicU64, expected: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Instant::now();
    while delivered.load(Ordering::Acquire) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        last = Instant::now();
    }
    last
}

/// The `sentAt` stamp (µs) of an SSE message carrying a benchmark event.
pub fn sent_at(message: &[u8]) -> Option<u64> {
    let at = find(message, b"\"sentAt\":")?;
    let digits: Vec<u8> = message[at + 9..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The table of SSE runs: deliveries, rate and publish→receive latency.
pub fn print_results(runs: &[&SseResult]) {
    println!(
        "{:<58} {:>9} {:>11} {:>11} {:>13} {:>8} {:>8} {:>8}",
        "run", "published", "deliveries", "expected", "deliveries/s", "p50 ms", "p99 ms", "max ms"
    );
    for r in runs {
        println!(
            "{:<58} {:>9} {:>11} {:>11} {:>13.0} {:>8.2} {:>8.2} {:>8.2}",
            r.label,
            r.published,
            r.deliveries,
            r.expected,
            r.rate(),
            r.latency.p50.as_secs_f64() * 1e3,
            r.latency.p99.as_secs_f64() * 1e3,
            r.latency.max.as_secs_f64() * 1e3
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs `load` with `streams` connections (`query(i)` each) while publishing; returns the result.
async fn run_phase(
    label: String,
    load: &SseLoad,
    streams: usize,
    query: impl Fn(usize) -> String,
    fanout: impl Fn(usize) -> u64,
) -> Result<SseResult> {
    let client = crate::server::client_builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .context("building the HTTP client")?;
    let shared = Arc::new(Shared {
        latencies: Mutex::new(Latencies::default()),
        deliveries: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        stop: tokio::sync::watch::channel(false).0,
    });
    let readers = open_streams(
        &stream_clients(streams)?,
        &load.url,
        streams,
        query,
        &shared,
    )
    .await?;

    let padding = "x".repeat(load.payload_bytes.saturating_sub(60));
    let total = (load.rate as f64 * load.duration.as_secs_f64()) as u64;
    let tick = Duration::from_millis(10);
    let per_tick = (load.rate as f64 * tick.as_secs_f64()).max(1.0) as u64;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut published = 0u64;
    let mut expected = 0u64;
    let mut inflight = tokio::task::JoinSet::new();
    while published < total {
        interval.tick().await;
        for _ in 0..per_tick.min(total - published) {
            let project = (published as usize) % load.projects;
            expected += fanout(project);
            let body = serde_json::json!({
                "type": "project.updated",
                "projectId": format!("p{project}"),
                "payload": {"sentAt": now_micros(), "pad": padding},
            });
            let client = client.clone();
            let url = format!(
                "{}/v1/events",
                load.publish_url.as_deref().unwrap_or(&load.url)
            );
            inflight.spawn(async move {
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status())
            });
            published += 1;
        }
        while let Some(done) = inflight.try_join_next() {
            let status = done.context("publisher task")?.context("publishing")?;
            if status != 201 {
                bail!("publish answered {status}");
            }
        }
    }
    while let Some(done) = inflight.join_next().await {
        done.context("publisher task")?.context("publishing")?;
    }
    let elapsed = drained(&shared.deliveries, expected)
        .await
        .duration_since(started);
    // Every reader hands in its samples (aborting them would drop those not merged yet).
    shared.stop.send_replace(true);
    for r in readers {
        let _ = r.await;
    }
    let latencies = std::mem::take(&mut *shared.latencies.lock().await);
    Ok(SseResult {
        label,
        published,
        deliveries: shared.deliveries.load(Ordering::Acquire),
        expected,
        elapsed,
        latency: latencies.summary(),
    })
}

/// The baseline (one connection receiving everything) and the fan-out run.
pub async fn run(load: &SseLoad) -> Result<(SseResult, SseResult)> {
    let baseline = run_phase(
        format!("sse baseline: 1 conn, {} ev/s", load.rate),
        load,
        1,
        |_| String::new(),
        |_| 1,
    )
    .await?;
    let fanout = run_phase(
        format!(
            "sse fan-out: {} conns / {} projects + 1, {} ev/s",
            load.connections, load.projects, load.rate
        ),
        load,
        load.connections + 1,
        |i| {
            if i == load.connections {
                String::new()
            } else {
                format!("types=project.>&projectId=p{}", i % load.projects)
            }
        },
        |p| streams_of_project(load.connections, load.projects, p) + 1,
    )
    .await?;
    Ok((baseline, fanout))
}

/// Server memory per idle connection: RSS after opening `n` idle streams minus before, over `n`.
pub async fn idle_memory(url: &str, pid: u32, n: usize) -> Result<(u64, u64, f64)> {
    let clients = stream_clients(n)?;
    let shared = Arc::new(Shared {
        latencies: Mutex::new(Latencies::default()),
        deliveries: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        stop: tokio::sync::watch::channel(false).0,
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let readers = open_streams(
        &clients,
        url,
        n,
        |i| format!("types=project.>&projectId=p{}", i % 100),
        &shared,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    for r in &readers {
        r.abort();
    }
    // The next phase starts once the server has closed these streams, so that their teardown
    // is not measured as its latency.
    wait_for_no_streams(&clients[0], url).await?;
    Ok((
        before,
        after,
        (after.saturating_sub(before)) as f64 * 1024.0 / n as f64,
    ))
}
