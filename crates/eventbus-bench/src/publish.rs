//! The HTTP publish load: `POST /v1/events` with one event or a batch per request, from a fixed
//! number of concurrent publishers, until `events` are acknowledged or the time limit passes.
//! Latency is per request: from sending until the `201` answer is read in full.
//!
//! Each publisher has its own keep-alive connection: with the lean client ([`crate::http1`]) one
//! socket per publisher, with reqwest one shared client whose pool holds a connection per
//! publisher. Connections are opened and warmed before the clock starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;

use crate::http1;
use crate::stats::{Latencies, Measurement};
use crate::workload;

/// Which HTTP client sends the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// The minimal HTTP/1.1 client of this crate: least CPU taken from the server.
    Lean,
    /// reqwest (hyper): a typical Rust client, for comparison.
    Reqwest,
}

/// One HTTP publish run.
#[derive(Debug, Clone)]
pub struct HttpRun {
    /// Base URL of the server, e.g. `http://127.0.0.1:3002`.
    pub url: String,
    /// Events to publish at most (rounded up to whole requests).
    pub events: u64,
    /// Events per request (1 = a single event object, more = an array).
    pub batch: usize,
    /// Publishers sending at the same time.
    pub concurrency: usize,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Time limit of the timed part.
    pub duration: Duration,
    /// Requests sent before the clock starts.
    pub warmup: u64,
    /// The client.
    pub client: ClientKind,
}

/// Distinct bodies sent in turn (the events cycle through the projects).
const BODIES: usize = workload::PROJECTS;
const PATH: &str = "/v1/events";

/// Runs `run` and measures its timed part.
pub async fn run(run: &HttpRun) -> Result<Measurement> {
    let payload = workload::payload(run.payload_bytes);
    let bodies: Vec<Bytes> = (0..BODIES)
        .map(|k| Bytes::from(workload::http_body(k * run.batch, run.batch, &payload)))
        .collect();
    let authority = http1::authority(&run.url)?.to_owned();
    let requests: Arc<[Bytes]> = bodies
        .iter()
        .map(|b| {
            Bytes::from(http1::post_request(
                &authority,
                &crate::server::api_key(),
                PATH,
                b,
            ))
        })
        .collect();
    let url: Arc<str> = format!("http://{authority}{PATH}").into();
    let bodies: Arc<[Bytes]> = bodies.into();

    let mut senders = Vec::with_capacity(run.concurrency);
    let shared = crate::server::client_builder()
        .pool_max_idle_per_host(run.concurrency)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;
    for _ in 0..run.concurrency {
        senders.push(match run.client {
            ClientKind::Lean => Sender::Lean(
                http1::Connection::connect(&authority)
                    .await
                    .with_context(|| format!("connecting to {authority}"))?,
            ),
            ClientKind::Reqwest => Sender::Reqwest(shared.clone()),
        });
    }
    let load = Load {
        url,
        bodies,
        requests,
    };

    let (senders, warm) = load
        .drive(
            senders,
            run.warmup.max(run.concurrency as u64),
            Duration::from_secs(30),
        )
        .await;
    if let Some(e) = warm.first_error {
        anyhow::bail!("warm-up failed: {e}");
    }

    let start = Instant::now();
    let (_, done) = load
        .drive(senders, run.events.div_ceil(run.batch as u64), run.duration)
        .await;
    let elapsed = start.elapsed();
    if let Some(e) = &done.first_error {
        eprintln!("warning: {} request(s) failed; the first: {e}", done.errors);
    }
    Ok(Measurement {
        label: format!("http  batch {} x c{}", run.batch, run.concurrency),
        events: done.latencies.len() as u64 * run.batch as u64,
        elapsed,
        latency: done.latencies.summary(),
        errors: done.errors,
        others: None,
    })
}

/// One publisher's way to the server.
enum Sender {
    Lean(http1::Connection),
    Reqwest(reqwest::Client),
}

struct Load {
    url: Arc<str>,
    /// JSON bodies, for reqwest.
    bodies: Arc<[Bytes]>,
    /// The same as complete requests, for the lean client.
    requests: Arc<[Bytes]>,
}

#[derive(Default)]
struct Done {
    latencies: Latencies,
    errors: u64,
    first_error: Option<String>,
}

impl Load {
    /// Sends `requests` requests, one publisher per sender, stopping early at `limit`.
    async fn drive(
        &self,
        senders: Vec<Sender>,
        requests: u64,
        limit: Duration,
    ) -> (Vec<Sender>, Done) {
        let next = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + limit;
        let per_task = (requests / senders.len().max(1) as u64 + 1) as usize;
        let mut tasks = Vec::with_capacity(senders.len());
        for mut sender in senders {
            let (url, bodies, full, next) = (
                self.url.clone(),
                self.bodies.clone(),
                self.requests.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut done = Done {
                    latencies: Latencies::with_capacity(per_task),
                    ..Done::default()
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests || Instant::now() >= deadline {
                        break;
                    }
                    let k = i as usize % bodies.len();
                    let t0 = Instant::now();
                    let sent = match &mut sender {
                        Sender::Lean(conn) => send_lean(conn, &full[k]).await,
                        Sender::Reqwest(client) => {
                            send_reqwest(client, &url, bodies[k].clone()).await
                        }
                    };
                    match sent {
                        Ok(()) => done.latencies.record(t0.elapsed()),
                        Err(e) => {
                            done.errors += 1;
                            done.first_error.get_or_insert(e);
                        }
                    }
                }
                (sender, done)
            }));
        }
        let mut senders = Vec::with_capacity(tasks.len());
        let mut all = Done::default();
        for task in tasks {
            let (sender, done) = task.await.expect("a publisher task panicked");
            senders.push(sender);
            all.latencies.merge(done.latencies);
            all.errors += done.errors;
            if all.first_error.is_none() {
                all.first_error = done.first_error;
            }
        }
        (senders, all)
    }
}

/// One publish over the lean client; `Ok` only for a `201`.
async fn send_lean(conn: &mut http1::Connection, request: &[u8]) -> Result<(), String> {
    let (status, body) = conn
        .roundtrip(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    if status != 201 {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok(())
}

/// One publish over reqwest; `Ok` only for a `201` whose body was read in full.
async fn send_reqwest(client: &reqwest::Client, url: &str, body: Bytes) -> Result<(), String> {
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if status != reqwest::StatusCode::CREATED {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    Ok(())
}

/// Posts `body` (one event or an array) to `url` (`…/v1/events`); anything but `201` is an error.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let r = client
        .post(url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("publishing to {url}"))?;
    if r.status() != 201 {
        anyhow::bail!(
            "publish to {url} answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}
