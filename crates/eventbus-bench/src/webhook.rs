//! The webhook load: E endpoints on a local receiver that answers `200` at once, N events
//! published; reports deliveries per second and publish→delivery latency.
//!
//! The receiver is a minimal HTTP/1.1 server on a loopback port (keep-alive, `Content-Length`
//! bodies); each event carries its send time, so latency covers publish, commit, fan-out, the
//! worker's claim and the signed POST. Deliveries are counted per endpoint and event id, so a
//! duplicate (allowed by at-least-once) is reported, not counted twice.
//!
//! Two ways to publish:
//! - burst (the default): batches of events sent one request after another, as fast as the
//!   server answers; measures the throughput of deliveries.
//! - open loop (`rate`): one event per request on a fixed schedule, event `i` due at
//!   `start + i / rate` whatever earlier publishes took (several may be in flight at once, as in
//!   wrk2). The event carries its *scheduled* time, so a publish sent late because the server or
//!   the client fell behind counts its wait in the latency (no coordinated omission).
//!
//! With several server URLs (nodes sharing one store), endpoints are created through the first
//! and publish request `k` goes to node `k % nodes`; deliveries may come from any node.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::publish::post_json as publish;
use crate::stats::{Latencies, Summary};
use crate::workload::{now_micros, stamped_event as event};

/// One webhook load.
#[derive(Debug, Clone)]
pub struct WebhookLoad {
    /// Base URLs of the servers (nodes sharing one store): endpoints are created through the
    /// first, publish requests go to each in turn.
    pub urls: Vec<String>,
    /// Endpoints, all matching every event.
    pub endpoints: usize,
    /// Events published.
    pub events: usize,
    /// Events per publish request (burst mode).
    pub batch: usize,
    /// Events per second, one per request on a fixed schedule (open loop), instead of batches
    /// sent as fast as the server answers.
    pub rate: Option<u64>,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Events published and delivered before the measured ones, and not counted: the servers'
    /// connections, prepared statements and caches are warm when the clock starts.
    pub warmup: usize,
    /// Where to write every measured delivery as `sent µs,received µs,path` lines.
    pub latency_csv: Option<std::path::PathBuf>,
}

/// What one webhook run measured.
#[derive(Debug, Clone)]
pub struct WebhookResult {
    /// Distinct (endpoint, event) deliveries received.
    pub deliveries: u64,
    /// Deliveries expected: events × endpoints.
    pub expected: u64,
    /// Requests received more than once for the same (endpoint, event).
    pub duplicates: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Publish→delivery latency.
    pub latency: Summary,
    /// Open loop: the most a publish was sent after its scheduled time (zero in burst mode).
    pub behind_schedule: Duration,
    /// Open loop: the most publishes in flight at once (one in burst mode).
    pub max_in_flight: usize,
}

/// How closely an open-loop run kept to its schedule.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    behind: Duration,
    max_in_flight: usize,
}

impl WebhookResult {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Received {
    latencies: Mutex<Latencies>,
    seen: Mutex<HashSet<(String, String)>>,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
    last: Mutex<Option<Instant>>,
    /// Off during the warm-up: deliveries are counted apart and their latency is not kept.
    recording: std::sync::atomic::AtomicBool,
    warmup_deliveries: AtomicU64,
    /// Each measured delivery: sent and received (µs since the epoch), endpoint path; kept
    /// only for `--latency-csv`.
    trace: Option<Mutex<Vec<(u64, u64, String)>>>,
}

/// One request a receiver read: its path, `webhook-id` header and body.
pub struct Request {
    /// The request's path (which endpoint).
    pub path: String,
    /// The `webhook-id` header (empty when absent).
    pub id: String,
    /// The body, read by its `Content-Length`.
    pub body: Vec<u8>,
}

/// Reads the next request of a receiver connection; `None` when the client closed it.
pub async fn read_request<R>(read: &mut R) -> std::io::Result<Option<Request>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut line = String::new();
    let (mut path, mut length, mut id) = (String::new(), 0usize, String::new());
    if read.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    if let Some(p) = line.split_whitespace().nth(1) {
        path = p.to_owned();
    }
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "webhook-id" => id = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await?;
    Ok(Some(Request { path, id, body }))
}

/// Serves one receiver connection: reads requests, records them, answers `200`.
async fn serve(stream: tokio::net::TcpStream, received: Arc<Received>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(Request { path, id, body }) = read_request(&mut read).await? {
        let now = now_micros();
        write
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
        let first = received
            .seen
            .lock()
            .expect("seen lock")
            .insert((path.clone(), id));
        if !received.recording.load(Ordering::Acquire) {
            if first {
                received.warmup_deliveries.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if !first {
            received.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(at) = body.windows(9).position(|w| w == b"\"sentAt\":") {
            let digits: String = body[at + 9..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|b| *b as char)
                .collect();
            if let Ok(sent) = digits.parse::<u64>() {
                received
                    .latencies
                    .lock()
                    .expect("latency lock")
                    .record(Duration::from_micros(now.saturating_sub(sent)));
                if let Some(trace) = &received.trace {
                    trace
                        .lock()
                        .expect("trace lock")
                        .push((sent, now, path.clone()));
                }
            }
        }
        received.deliveries.fetch_add(1, Ordering::Relaxed);
        *received.last.lock().expect("last lock") = Some(Instant::now());
    }
    Ok(())
}

/// Runs `load`: starts the receiver, creates the endpoints, publishes, waits for every delivery.
pub async fn run(load: &WebhookLoad) -> Result<WebhookResult> {
    let Some(first) = load.urls.first() else {
        bail!("no server to publish to");
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the receiver")?;
    let port = listener.local_addr()?.port();
    let received = Arc::new(Received {
        trace: load.latency_csv.as_ref().map(|_| Mutex::default()),
        ..Received::default()
    });
    let acceptor = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, received.clone()));
            }
        })
    };
    let client = crate::server::client_builder().build()?;
    let mut endpoints = Vec::with_capacity(load.endpoints);
    for e in 0..load.endpoints {
        endpoints.push(create_endpoint(&client, first, port, e, "project.>").await?);
    }
    let padding = "x".repeat(load.payload_bytes.saturating_sub(60));
    let events_urls: Vec<String> = load.urls.iter().map(|u| format!("{u}/v1/events")).collect();
    if load.warmup > 0 {
        let warmup = WebhookLoad {
            events: load.warmup,
            ..load.clone()
        };
        match load.rate {
            Some(rate) => {
                publish_open_loop(&warmup, rate, &client, &events_urls, &padding).await?;
            }
            None => publish_burst(&warmup, &client, &events_urls, &padding).await?,
        }
        let expected = (load.warmup * load.endpoints) as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.warmup_deliveries.load(Ordering::Acquire) < expected {
            if Instant::now() > deadline {
                bail!("the warm-up's deliveries did not all arrive within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    received.recording.store(true, Ordering::Release);
    let started = Instant::now();
    let schedule = match load.rate {
        Some(rate) => publish_open_loop(load, rate, &client, &events_urls, &padding).await?,
        None => {
            publish_burst(load, &client, &events_urls, &padding).await?;
            Schedule {
                behind: Duration::ZERO,
                max_in_flight: 1,
            }
        }
    };
    let expected = (load.events * load.endpoints) as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.deliveries.load(Ordering::Acquire) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A database used again (`--store-url`) must not fan the next run's events out to this
    // run's receiver, which is gone by then.
    for id in &endpoints {
        if let Err(e) = delete_endpoint(&client, first, id).await {
            eprintln!("warning: {e:#}; later runs on this database will deliver to it too");
        }
    }
    acceptor.abort();
    let last = received
        .last
        .lock()
        .expect("last lock")
        .unwrap_or_else(Instant::now);
    let latency = std::mem::take(&mut *received.latencies.lock().expect("latency lock")).summary();
    if let Some(path) = &load.latency_csv {
        let trace = received
            .trace
            .as_ref()
            .expect("kept with --latency-csv")
            .lock()
            .expect("trace lock");
        let lines: String = trace
            .iter()
            .map(|(sent, got, path)| format!("{sent},{got},{path}\n"))
            .collect();
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(WebhookResult {
        deliveries: received.deliveries.load(Ordering::Acquire),
        expected,
        duplicates: received.duplicates.load(Ordering::Acquire),
        elapsed: last.duration_since(started),
        latency,
        behind_schedule: schedule.behind,
        max_in_flight: schedule.max_in_flight,
    })
}

/// Burst mode: batches of `load.batch` events, one request after another, request `k` to node
/// `k % nodes`, each event stamped with the time its batch is built.
async fn publish_burst(
    load: &WebhookLoad,
    client: &reqwest::Client,
    urls: &[String],
    padding: &str,
) -> Result<()> {
    let mut published = 0;
    let mut request = 0;
    while published < load.events {
        let n = load.batch.min(load.events - published);
        let batch: Vec<serde_json::Value> = (0..n)
            .map(|i| event(published + i, now_micros(), padding))
            .collect();
        publish(client, &urls[request % urls.len()], &batch.into()).await?;
        published += n;
        request += 1;
    }
    Ok(())
}

/// Open loop: event `i` is sent alone at `start + i / rate` in a task of its own, whether or not
/// earlier publishes have been answered, to node `i % nodes`, stamped with its scheduled time.
async fn publish_open_loop(
    load: &WebhookLoad,
    rate: u64,
    client: &reqwest::Client,
    urls: &[String],
    padding: &str,
) -> Result<Schedule> {
    let start = Instant::now();
    let start_micros = now_micros();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut schedule = Schedule {
        behind: Duration::ZERO,
        max_in_flight: 0,
    };
    for i in 0..load.events {
        let offset = Duration::from_secs_f64(i as f64 / rate as f64);
        let due = start + offset;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        schedule.behind = schedule
            .behind
            .max(Instant::now().saturating_duration_since(due));
        // A failed publish stops the run as soon as it is seen.
        while let Some(done) = in_flight.try_join_next() {
            done.context("a publish task failed")??;
        }
        let body = event(i, start_micros + offset.as_micros() as u64, padding);
        let (client, url) = (client.clone(), urls[i % urls.len()].clone());
        in_flight.spawn(async move { publish(&client, &url, &body).await });
        schedule.max_in_flight = schedule.max_in_flight.max(in_flight.len());
    }
    while let Some(done) = in_flight.join_next().await {
        done.context("a publish task failed")??;
    }
    Ok(schedule)
}

/// Creates endpoint `e` for events of `types` on `server`, posting to the receiver on `port`
/// at `/hook/<e>`; returns its id.
pub async fn create_endpoint(
    client: &reqwest::Client,
    server: &str,
    port: u16,
    e: usize,
    types: &str,
) -> Result<String> {
    let r = client
        .post(format!("{server}/v1/webhooks"))
        .json(&serde_json::json!({
            "url": format!("http://127.0.0.1:{port}/hook/{e}"),
            "eventTypes": [types],
        }))
        .send()
        .await
        .with_context(|| format!("creating endpoint {e}"))?;
    if r.status() != 201 {
        bail!(
            "creating endpoint {e} answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    let created: serde_json::Value = r.json().await.context("reading the created endpoint")?;
    match created["id"].as_str() {
        Some(id) => Ok(id.to_owned()),
        None => bail!("the created endpoint {e} has no id: {created}"),
    }
}

/// Deletes endpoint `id` on `server`.
async fn delete_endpoint(client: &reqwest::Client, server: &str, id: &str) -> Result<()> {
    let r = client
        .delete(format!("{server}/v1/webhooks/{id}"))
        .send()
        .await
        .with_context(|| format!("deleting endpoint {id}"))?;
    if !r.status().is_success() {
        bail!("deleting endpoint {id} answered {}", r.status());
    }
    Ok(())
}
