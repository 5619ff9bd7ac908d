//! The consumer group load (`/v1/consumers`): N fetchers share one consumer, each fetching with
//! long-poll and acking every batch in one call; reports events acked per second end to end and
//! publish→ack latency.
//!
//! Two shapes, each on a consumer of its own on the same server:
//! - **live**: the fetchers wait on an empty consumer while E events are published in batches
//!   by a few concurrent publishers, so that publishing is not what the figure measures;
//!   each event carries its send time, and its latency is the ack's answer minus that time. The
//!   rate counts from the first publish to the last ack.
//! - **backlog**: E events are published first, then the fetchers drain them; the rate counts
//!   from the first fetch to the last ack (latency would only measure the queue, so none).
//!
//! Every ack answer's `done` is counted, so an event acked twice (a redelivery after the lease)
//! would show as more acks than events. Each shape stops after E acks or its time limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::Mutex;

use crate::publish::post_json;
use crate::stats::{Latencies, Summary};
use crate::workload::{now_micros, stamped_event};

/// One consumer load.
#[derive(Debug, Clone)]
pub struct ConsumerLoad {
    /// Server base URL.
    pub url: String,
    /// Fetchers sharing the consumer.
    pub fetchers: usize,
    /// Events per shape.
    pub events: usize,
    /// `max` of each fetch.
    pub batch: usize,
    /// Events per publish request.
    pub publish_batch: usize,
    /// Publishers sending at the same time.
    pub publishers: usize,
    /// Payload padding in bytes.
    pub payload_bytes: usize,
    /// Time limit of each shape.
    pub limit: Duration,
}

/// What one shape measured.
#[derive(Debug, Clone)]
pub struct ConsumerResult {
    /// Acks done (the sum of the ack answers' `done`).
    pub acked: u64,
    /// Events published for this shape.
    pub expected: u64,
    /// Fetches that came back with messages.
    pub fetches: u64,
    /// From the first publish (live) or the first fetch (backlog) to the last ack.
    pub elapsed: Duration,
    /// Publishing alone: from the first publish to the last publish's answer.
    pub publishing: Duration,
    /// Publish→ack latency per event (live only).
    pub latency: Option<Summary>,
}

impl ConsumerResult {
    /// Events acked per second.
    pub fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Events published per second while publishing.
    pub fn publish_rate(&self) -> f64 {
        self.expected as f64 / self.publishing.as_secs_f64().max(1e-9)
    }
}

/// The part of a fetch answer the bench uses: each message's ack id and, when its event's
/// payload has one, its `sentAt`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fetched {
    ack_ids: Vec<String>,
    sent_at: Vec<u64>,
}

/// Reads `{"messages": [{"ackId", "event": {"payload": {"sentAt"}}}]}`.
fn parse_fetch(body: &[u8]) -> Result<Fetched> {
    let v: serde_json::Value = serde_json::from_slice(body).context("a fetch answer")?;
    let Some(messages) = v["messages"].as_array() else {
        bail!("a fetch answer without `messages`");
    };
    let mut out = Fetched::default();
    for m in messages {
        let Some(id) = m["ackId"].as_str() else {
            bail!("a message without `ackId`");
        };
        out.ack_ids.push(id.to_owned());
        if let Some(sent) = m["event"]["payload"]["sentAt"].as_u64() {
            out.sent_at.push(sent);
        }
    }
    Ok(out)
}

/// The latency of each event acked at `acked_at` (micros since the epoch) that was sent at one
/// of `sent_at`; a clock step back counts as zero.
fn record_acked(latencies: &mut Latencies, sent_at: &[u64], acked_at: u64) {
    for &sent in sent_at {
        latencies.record(Duration::from_micros(acked_at.saturating_sub(sent)));
    }
}

#[derive(Default)]
struct Shared {
    acked: AtomicU64,
    fetches: AtomicU64,
    latencies: Mutex<Latencies>,
    last_ack: std::sync::Mutex<Option<Instant>>,
}

/// Sends `body` to `url` and returns the answer's body; anything but `200` is an error.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> Result<bytes::Bytes> {
    let r = client
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("posting to {url}"))?;
    let status = r.status();
    let bytes = r.bytes().await?;
    if status != 200 {
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(bytes)
}

/// Creates (or resets the settings of) consumer `name` on every benchmark event from now on.
async fn create_consumer(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    load: &ConsumerLoad,
) -> Result<()> {
    // Room for every fetcher's full batch plus as many waiting, within the API's bound.
    let max_ack_pending = (load.fetchers * load.batch * 2).clamp(1000, 10_000);
    let r = client
        .put(format!("{url}/v1/consumers/{name}"))
        .json(
            &serde_json::json!({"types": ["project.*"], "startAt": "new",
            "ackWaitMs": 60_000, "maxAckPending": max_ack_pending}),
        )
        .send()
        .await
        .with_context(|| format!("creating consumer {name}"))?;
    if !r.status().is_success() {
        bail!(
            "creating consumer {name} answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// One fetcher: fetch (long-poll), ack the batch in one call, until `target` acks or `deadline`.
async fn fetch_loop(
    client: reqwest::Client,
    base: String,
    batch: usize,
    target: u64,
    deadline: Instant,
    shared: Arc<Shared>,
) -> Result<()> {
    let (fetch_url, ack_url) = (format!("{base}/fetch"), format!("{base}/ack"));
    let mut latencies = Latencies::default();
    while shared.acked.load(Ordering::Acquire) < target && Instant::now() < deadline {
        let body = post(
            &client,
            &fetch_url,
            serde_json::json!({"max": batch, "waitMs": 500}),
        )
        .await?;
        let fetched = parse_fetch(&body)?;
        if fetched.ack_ids.is_empty() {
            continue;
        }
        shared.fetches.fetch_add(1, Ordering::Relaxed);
        let answer = post(
            &client,
            &ack_url,
            serde_json::json!({"ackIds": fetched.ack_ids}),
        )
        .await?;
        let acked_at = now_micros();
        let done: serde_json::Value = serde_json::from_slice(&answer).context("an ack answer")?;
        let done = done["done"]
            .as_u64()
            .context("an ack answer without `done`")?;
        record_acked(&mut latencies, &fetched.sent_at, acked_at);
        *shared.last_ack.lock().expect("last ack lock") = Some(Instant::now());
        shared.acked.fetch_add(done, Ordering::AcqRel);
    }
    shared.latencies.lock().await.merge(latencies);
    Ok(())
}

/// Publishes `load.events` stamped events in batches from `load.publishers` publishers, each
/// sending its batches one request after another (batch `k` from publisher `k % publishers`).
async fn publish_all(client: &reqwest::Client, url: &str, load: &ConsumerLoad) -> Result<()> {
    let events_url = Arc::new(format!("{url}/v1/events"));
    let padding = Arc::new("x".repeat(load.payload_bytes.saturating_sub(60)));
    let batches = load.events.div_ceil(load.publish_batch);
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..load.publishers.max(1) {
        let (client, events_url, padding) = (client.clone(), events_url.clone(), padding.clone());
        let (events, size, step) = (load.events, load.publish_batch, load.publishers.max(1));
        publishers.spawn(async move {
            for k in (p..batches).step_by(step) {
                let first = k * size;
                let batch: Vec<serde_json::Value> = (first..(first + size).min(events))
                    .map(|i| stamped_event(i, now_micros(), &padding))
                    .collect();
                post_json(&client, &events_url, &batch.into()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.context("a publisher task")??;
    }
    Ok(())
}

/// Runs one shape on consumer `name`: `backlog` publishes before the fetchers start.
async fn run_shape(load: &ConsumerLoad, name: &str, backlog: bool) -> Result<ConsumerResult> {
    let client = crate::server::client_builder()
        .pool_max_idle_per_host(load.fetchers * 2 + 4)
        .build()?;
    create_consumer(&client, &load.url, name, load).await?;
    let shared = Arc::new(Shared::default());
    let target = load.events as u64;
    let base = format!("{}/v1/consumers/{name}", load.url);
    let spawn_fetchers = |deadline: Instant| {
        (0..load.fetchers)
            .map(|_| {
                tokio::spawn(fetch_loop(
                    client.clone(),
                    base.clone(),
                    load.batch,
                    target,
                    deadline,
                    shared.clone(),
                ))
            })
            .collect::<Vec<_>>()
    };
    let (started, publishing, fetchers) = if backlog {
        let published = Instant::now();
        publish_all(&client, &load.url, load).await?;
        let publishing = published.elapsed();
        let started = Instant::now();
        (started, publishing, spawn_fetchers(started + load.limit))
    } else {
        // The fetchers are waiting in their long-poll before the first publish.
        let fetchers = spawn_fetchers(Instant::now() + load.limit);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        publish_all(&client, &load.url, load).await?;
        (started, started.elapsed(), fetchers)
    };
    for f in fetchers {
        f.await.context("a fetcher task")??;
    }
    let last = shared
        .last_ack
        .lock()
        .expect("last ack lock")
        .unwrap_or_else(Instant::now);
    let latencies = std::mem::take(&mut *shared.latencies.lock().await);
    Ok(ConsumerResult {
        acked: shared.acked.load(Ordering::Acquire),
        expected: target,
        fetches: shared.fetches.load(Ordering::Acquire),
        elapsed: last.saturating_duration_since(started),
        publishing,
        latency: (!backlog).then(|| latencies.summary()),
    })
}

/// Runs the live shape, then the backlog shape, on the server at `load.url`.
pub async fn run(load: &ConsumerLoad) -> Result<(ConsumerResult, ConsumerResult)> {
    let live = run_shape(load, "bench-live", false).await?;
    // The live consumer goes, so the backlog's events are queued for one consumer only.
    let client = crate::server::client_builder().build()?;
    let r = client
        .delete(format!("{}/v1/consumers/bench-live", load.url))
        .send()
        .await?;
    if r.status() != 204 {
        bail!("deleting consumer bench-live answered {}", r.status());
    }
    let backlog = run_shape(load, "bench-backlog", true).await?;
    Ok((live, backlog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_answer_gives_ack_ids_and_send_times() {
        let body = br#"{"messages":[
            {"ackId":"a1","deliveryCount":1,"event":{"type":"project.updated","payload":{"sentAt":100,"pad":"x"}}},
            {"ackId":"a2","deliveryCount":2,"event":{"type":"project.updated","payload":{}}}]}"#;
        let f = parse_fetch(body).unwrap();
        assert_eq!(f.ack_ids, ["a1", "a2"]);
        assert_eq!(f.sent_at, [100]);
        assert_eq!(
            parse_fetch(br#"{"messages":[]}"#).unwrap(),
            Fetched::default()
        );
        assert!(parse_fetch(br#"{"type":"/problems/x"}"#).is_err());
        assert!(parse_fetch(br#"{"messages":[{"deliveryCount":1}]}"#).is_err());
    }

    #[test]
    fn latency_is_ack_time_minus_send_time_per_event() {
        let mut l = Latencies::default();
        record_acked(&mut l, &[1_000, 4_000, 9_000], 10_000);
        // A send time after the ack (a clock step) counts as zero, not as a wrapped huge value.
        record_acked(&mut l, &[12_000], 10_000);
        assert_eq!(l.len(), 4);
        let s = l.summary();
        assert_eq!(s.max, Duration::from_micros(9_000));
        assert_eq!(s.p50, Duration::from_micros(1_000));
    }
}
