//! The clients of the cluster test, each talking to the load balancer only: publishers, SSE
//! streams that resume, consumer-group fetchers, and a sampler of which node runs the plugin.
//! Each records what it saw, with times relative to the start of the load, for the checks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::sse::{Message, SseClient};

/// Projects the events are spread over; each stream follows one.
pub const PROJECTS: usize = 20;

/// A request that failed (no connection, no answer, or a 5xx), `at` from the start of the load.
#[derive(Debug, Clone)]
pub struct Failure {
    pub at: Duration,
    pub what: String,
}

/// What one publisher did.
#[derive(Default)]
pub struct PublisherLog {
    /// Every id it sent (acknowledged or not).
    pub sent: Vec<String>,
    /// `id → seq` of the acknowledged events.
    pub acked: HashMap<String, u64>,
    pub failures: Vec<Failure>,
    /// Answers that are neither an acknowledgement nor a 5xx (a defect).
    pub unexpected: Vec<String>,
}

/// Publishes every `period`, alternately one event and a batch of four, each with its own `id`;
/// a request that fails is sent again, same body, until it is acknowledged or `give_up` fires.
/// A single event is acknowledged by 201, or by 200 on a resend whose first try was stored but
/// not answered (the node died between commit and answer); a 200 on a first try is a defect.
pub async fn publisher(
    w: usize,
    lb: String,
    client: reqwest::Client,
    start: Instant,
    period: Duration,
    stop: CancellationToken,
    give_up: CancellationToken,
) -> PublisherLog {
    let mut log = PublisherLog::default();
    let mut tick = tokio::time::interval(period);
    for i in 0.. {
        tick.tick().await;
        if stop.is_cancelled() {
            break;
        }
        let n = if i % 2 == 0 { 1 } else { 4 };
        let events: Vec<Value> = (0..n)
            .map(|k| {
                let id = format!("w{w}-{i}-{k}");
                log.sent.push(id.clone());
                json!({
                    "id": id,
                    "type": if k % 2 == 0 { "cl.updated" } else { "cl.created" },
                    "projectId": format!("p{}", (i * 4 + k + w) % PROJECTS),
                    "payload": {"w": w, "i": i, "k": k},
                })
            })
            .collect();
        let body = if n == 1 {
            events[0].clone()
        } else {
            json!(events)
        };
        let mut resend = false;
        loop {
            let sent = client
                .post(format!("{lb}/v1/events"))
                .json(&body)
                .send()
                .await;
            let failure = match sent {
                Ok(r) if r.status() == 201 || (resend && r.status() == 200) => {
                    let stored: Value = r.json().await.expect("a stored event");
                    let stored = match stored {
                        Value::Array(a) => a,
                        one => vec![one],
                    };
                    for e in stored {
                        log.acked.insert(
                            e["id"].as_str().unwrap().to_owned(),
                            e["seq"].as_u64().unwrap(),
                        );
                    }
                    break;
                }
                Ok(r) if r.status().is_server_error() => format!("answered {}", r.status()),
                Ok(r) => {
                    let status = r.status();
                    log.unexpected
                        .push(format!("{status}: {}", r.text().await.unwrap_or_default()));
                    break;
                }
                Err(e) => format!("no answer: {e}"),
            };
            log.failures.push(Failure {
                at: start.elapsed(),
                what: failure,
            });
            if give_up.is_cancelled() {
                return log;
            }
            resend = true;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    log
}

/// What one stream received, across its connections.
#[derive(Default)]
pub struct StreamLog {
    pub project: String,
    /// The `seq` of every event message, in arrival order.
    pub seqs: Vec<u64>,
    /// Connections after the first (the stream was cut, by a node's death or shutdown).
    pub reconnects: usize,
    /// Connection attempts that failed.
    pub failed_connects: usize,
}

/// Follows `cl.*` of one project through the load balancer until `stop`, reconnecting with
/// `Last-Event-ID` (the last `seq` it got; `0` at first) whenever the stream ends.
pub async fn stream(
    project: String,
    lb: String,
    client: reqwest::Client,
    log: Arc<Mutex<StreamLog>>,
    stop: CancellationToken,
) {
    log.lock().unwrap().project = project.clone();
    let query = format!("types=cl.*&projectId={project}");
    let url = format!("{lb}/v1/stream");
    let mut last = 0u64;
    let mut connections = 0usize;
    while !stop.is_cancelled() {
        let connected = tokio::select! {
            c = SseClient::try_connect(&client, &url, &query, Some(last)) => c,
            _ = stop.cancelled() => return,
        };
        let mut sse = match connected {
            Ok(sse) => sse,
            Err(_) => {
                log.lock().unwrap().failed_connects += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        connections += 1;
        if connections > 1 {
            log.lock().unwrap().reconnects += 1;
        }
        loop {
            let message = tokio::select! {
                m = sse.next(Duration::from_secs(1)) => m,
                _ = stop.cancelled() => return,
            };
            match message {
                Some(Message::Event(e)) => {
                    last = e.seq;
                    log.lock().unwrap().seqs.push(e.seq);
                }
                // `lagged` or `error`: resume from the store on a new connection.
                Some(Message::Control { .. }) => break,
                Some(_) => {}
                None if sse.ended() => break,
                None => {}
            }
        }
    }
}

/// One delivery of a consumer-group message, as a fetcher saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    /// When the fetch that handed it out was sent and answered.
    pub fetch_sent: Instant,
    pub fetch_answered: Instant,
    /// When its ack was sent, and whether the bus answered `acked`.
    pub ack_sent: Instant,
    pub acked: bool,
}

/// What the fetchers did, together.
#[derive(Default)]
pub struct ConsumerLog {
    pub deliveries: Vec<Delivery>,
    pub acked_ids: HashSet<String>,
    pub failures: Vec<Failure>,
}

/// Fetches from the consumer group `name` (long-poll, up to 50) and acks each batch in one call,
/// until `stop`.
pub async fn fetcher(
    name: &'static str,
    lb: String,
    client: reqwest::Client,
    start: Instant,
    log: Arc<Mutex<ConsumerLog>>,
    stop: CancellationToken,
) {
    let fail = |what: String| Failure {
        at: start.elapsed(),
        what,
    };
    while !stop.is_cancelled() {
        let fetch_sent = Instant::now();
        let fetched = client
            .post(format!("{lb}/v1/consumers/{name}/fetch"))
            .json(&json!({"max": 50, "waitMs": 1000}))
            .send()
            .await;
        let body: Value = match fetched {
            Ok(r) if r.status() == 200 => r.json().await.expect("a fetch answer"),
            Ok(r) => {
                log.lock()
                    .unwrap()
                    .failures
                    .push(fail(format!("fetch answered {}", r.status())));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                log.lock()
                    .unwrap()
                    .failures
                    .push(fail(format!("fetch: {e}")));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let fetch_answered = Instant::now();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let ack_ids: Vec<&str> = messages
            .iter()
            .map(|m| m["ackId"].as_str().unwrap())
            .collect();
        let ack_sent = Instant::now();
        let acked = client
            .post(format!("{lb}/v1/consumers/{name}/ack"))
            .json(&json!({"ackIds": ack_ids}))
            .send()
            .await;
        let outcomes: HashMap<String, bool> = match acked {
            Ok(r) if r.status() == 200 => {
                let body: Value = r.json().await.expect("an ack answer");
                body["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["ackId"].as_str().unwrap().to_owned(),
                            r["outcome"] == "acked",
                        )
                    })
                    .collect()
            }
            Ok(r) => {
                let status = r.status();
                log.lock()
                    .unwrap()
                    .failures
                    .push(fail(format!("ack answered {status}")));
                HashMap::new()
            }
            Err(e) => {
                log.lock().unwrap().failures.push(fail(format!("ack: {e}")));
                HashMap::new()
            }
        };
        let mut log = log.lock().unwrap();
        for m in &messages {
            let event_id = m["event"]["id"].as_str().unwrap().to_owned();
            let acked = outcomes
                .get(m["ackId"].as_str().unwrap())
                .copied()
                .unwrap_or(false);
            if acked {
                log.acked_ids.insert(event_id.clone());
            }
            log.deliveries.push(Delivery {
                event_id,
                fetch_sent,
                fetch_answered,
                ack_sent,
                acked,
            });
        }
    }
}

/// Pairs of deliveries of one message that were held at once: `b` handed out after `a` was
/// (its fetch sent after `a`'s fetch was answered) and before `a`'s ack, which succeeded, was
/// sent. A successful ack means `a`'s lease still ran, so the bus gave the message to two
/// fetchers at once.
pub fn overlapping_deliveries(deliveries: &[Delivery]) -> Vec<(Delivery, Delivery)> {
    let mut by_event: HashMap<&str, Vec<&Delivery>> = HashMap::new();
    for d in deliveries {
        by_event.entry(&d.event_id).or_default().push(d);
    }
    let mut out = Vec::new();
    for ds in by_event.values().filter(|ds| ds.len() > 1) {
        for a in ds.iter().filter(|a| a.acked) {
            for b in ds.iter() {
                if b.fetch_sent > a.fetch_answered && b.fetch_answered < a.ack_sent {
                    out.push(((*a).clone(), (*b).clone()));
                }
            }
        }
    }
    out
}

/// How often several nodes said at once that they run the plugin's handler.
#[derive(Default)]
pub struct HandlerSamples {
    pub samples: usize,
    /// Samples in which two or more nodes said so.
    pub doubled: usize,
    /// `(at, node)` each time the runner changed.
    pub runners: Vec<(Duration, Option<usize>)>,
}

/// Asks every node (directly, not through the load balancer) every 250 ms whether it runs the
/// plugin `name`'s handler; a node that does not answer counts as not running it.
pub async fn sample_handlers(
    name: &'static str,
    nodes: Vec<String>,
    client: reqwest::Client,
    start: Instant,
    log: Arc<Mutex<HandlerSamples>>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let mut running = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let answer = client
                .get(format!("{node}/v1/plugins/{name}"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(r) = answer
                && r.status() == 200
                && let Ok(body) = r.json::<Value>().await
                && body["runsHandler"] == true
            {
                running.push(i);
            }
        }
        {
            let mut log = log.lock().unwrap();
            log.samples += 1;
            if running.len() > 1 {
                log.doubled += 1;
            }
            let now = running.first().copied();
            if log.runners.last().map(|(_, r)| *r) != Some(now) {
                log.runners.push((start.elapsed(), now));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The failures of `failures` from `from` to `to` (from the start of the load): how many, and
/// for how long clients saw them (first to last).
pub fn error_window(failures: &[&Failure], from: Duration, to: Duration) -> (usize, Duration) {
    let inside: Vec<Duration> = failures
        .iter()
        .filter(|f| f.at >= from && f.at < to)
        .map(|f| f.at)
        .collect();
    match (inside.iter().min(), inside.iter().max()) {
        (Some(first), Some(last)) => (inside.len(), *last - *first),
        _ => (0, Duration::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(at: u64, answered: u64, ack: u64, acked: bool) -> Delivery {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        Delivery {
            event_id: "e".into(),
            fetch_sent: t0 + ms(at),
            fetch_answered: t0 + ms(answered),
            ack_sent: t0 + ms(ack),
            acked,
        }
    }

    #[test]
    fn a_delivery_handed_out_during_an_acked_lease_is_an_overlap() {
        let held = delivery(0, 10, 100, true);
        let second = delivery(20, 30, 200, true);
        assert_eq!(overlapping_deliveries(&[held, second]).len(), 1);
    }

    #[test]
    fn a_redelivery_after_a_failed_ack_is_not_an_overlap() {
        // The first ack failed (its lease ran out): the message was handed out again.
        let expired = delivery(0, 10, 100, false);
        let again = delivery(20, 30, 200, true);
        assert!(overlapping_deliveries(&[expired, again]).is_empty());
    }

    #[test]
    fn the_error_window_spans_the_failures_inside_it() {
        let f = |ms| Failure {
            at: Duration::from_millis(ms),
            what: String::new(),
        };
        let failures = [f(5), f(1_000), f(1_300), f(9_000)];
        let refs: Vec<&Failure> = failures.iter().collect();
        assert_eq!(
            error_window(&refs, Duration::from_millis(900), Duration::from_secs(5)),
            (2, Duration::from_millis(300))
        );
        assert_eq!(
            error_window(&refs, Duration::from_secs(20), Duration::from_secs(30)),
            (0, Duration::ZERO)
        );
    }
}
