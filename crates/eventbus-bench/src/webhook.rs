//! The webhook load: E endpoints on a local receiver that answers `200` at once, N events
//! published in batches; reports deliveries per second and publish→delivery latency.
//!
//! The receiver is a minimal HTTP/1.1 server on a loopback port (keep-alive, `Content-Length`
//! bodies); each event carries its send time, so latency covers publish, commit, fan-out, the
//! worker's claim and the signed POST. Deliveries are counted per endpoint and event id, so a
//! duplicate (allowed by at-least-once) is reported, not counted twice.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::stats::{Latencies, Summary};

/// One webhook load.
#[derive(Debug, Clone)]
pub struct WebhookLoad {
    /// Server base URL.
    pub url: String,
    /// Endpoints, all matching every event.
    pub endpoints: usize,
    /// Events published.
    pub events: usize,
    /// Events per publish request.
    pub batch: usize,
    /// Payload size in bytes.
    pub payload_bytes: usize,
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
}

impl WebhookResult {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

#[derive(Default)]
struct Received {
    latencies: Mutex<Latencies>,
    seen: Mutex<HashSet<(String, String)>>,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
    last: Mutex<Option<Instant>>,
}

/// Serves one receiver connection: reads requests, records them, answers `200`.
async fn serve(stream: tokio::net::TcpStream, received: Arc<Received>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        let (mut path, mut length, mut id) = (String::new(), 0usize, String::new());
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if let Some(p) = line.split_whitespace().nth(1) {
            path = p.to_owned();
        }
        loop {
            line.clear();
            read.read_line(&mut line).await?;
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
        let now = now_micros();
        write
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
        if !received.seen.lock().expect("seen lock").insert((path, id)) {
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
            }
        }
        received.deliveries.fetch_add(1, Ordering::Relaxed);
        *received.last.lock().expect("last lock") = Some(Instant::now());
    }
}

/// Runs `load`: starts the receiver, creates the endpoints, publishes, waits for every delivery.
pub async fn run(load: &WebhookLoad) -> Result<WebhookResult> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the receiver")?;
    let port = listener.local_addr()?.port();
    let received = Arc::new(Received::default());
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
    for e in 0..load.endpoints {
        let r = client
            .post(format!("{}/v1/webhooks", load.url))
            .json(&serde_json::json!({"url": format!("http://127.0.0.1:{port}/hook/{e}"), "eventTypes": ["project.>"]}))
            .send()
            .await?;
        if r.status() != 201 {
            bail!(
                "creating endpoint {e} answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
    }
    let padding = "x".repeat(load.payload_bytes.saturating_sub(60));
    let started = Instant::now();
    let mut published = 0;
    while published < load.events {
        let n = load.batch.min(load.events - published);
        let batch: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({"type": "project.updated", "projectId": format!("p_{}", (published + i) % 100),
                    "payload": {"sentAt": now_micros(), "pad": padding}})
            })
            .collect();
        let r = client
            .post(format!("{}/v1/events", load.url))
            .json(&batch)
            .send()
            .await?;
        if r.status() != 201 {
            bail!("publish answered {}", r.status());
        }
        published += n;
    }
    let expected = (load.events * load.endpoints) as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.deliveries.load(Ordering::Acquire) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acceptor.abort();
    let last = received
        .last
        .lock()
        .expect("last lock")
        .unwrap_or_else(Instant::now);
    let latency = std::mem::take(&mut *received.latencies.lock().expect("latency lock")).summary();
    Ok(WebhookResult {
        deliveries: received.deliveries.load(Ordering::Acquire),
        expected,
        duplicates: received.duplicates.load(Ordering::Acquire),
        elapsed: last.duration_since(started),
        latency,
    })
}
