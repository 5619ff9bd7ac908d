//! Webhooks on PostgreSQL with two `eventbus` processes on one schema and one receiver: the
//! processes share one delivery queue (fan-out refused when another process moved the cursor,
//! claims leased with `FOR UPDATE SKIP LOCKED`), so when nothing fails every event reaches the
//! receiver exactly once, whichever node it was published on and whichever node sent it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::pg::Schema;
use crate::common::receiver::WebhookReceiver;

/// Generous bound for anything asynchronous.
const WAIT: Duration = Duration::from_secs(90);

/// Events published across both nodes.
const EVENTS: usize = 500;

/// Publishers running at once.
const PUBLISHERS: usize = 10;

/// What each process logs (at debug level) for every attempt it makes.
const ATTEMPT_LOG: &str = "webhook attempt";

/// Every attempt the API lists for `endpoint`, following the pages.
async fn all_attempts(server: &TestServer, endpoint: &str) -> Vec<Value> {
    let path = format!("/v1/webhooks/{endpoint}/attempts");
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = vec![("limit", "1000")];
        if let Some(a) = &after {
            params.push(("after", a));
        }
        let reply = server.get(&path, &params).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
        out.extend(reply.body["attempts"].as_array().unwrap().iter().cloned());
        match &reply.body["nextAfter"] {
            Value::Number(n) => after = Some(n.to_string()),
            _ => return out,
        }
    }
}

/// Waits until at least `n` attempts of `endpoint` are recorded; returns them all.
async fn wait_attempts(server: &TestServer, endpoint: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempts = all_attempts(server, endpoint).await;
        if attempts.len() >= n {
            return attempts;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} attempts recorded within {WAIT:?}",
            attempts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many attempts a process logged.
fn logged_attempts(server: &TestServer) -> usize {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains(ATTEMPT_LOG))
        .count()
}

/// Two processes on `schema`, allowed to reach loopback receivers, logging their attempts.
async fn two_processes(schema: &Schema) -> (Arc<TestServer>, Arc<TestServer>) {
    let url = schema.store_url();
    let env = [
        ("EVENT_STORE_URL", url.as_str()),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
        (
            "RUST_LOG",
            "warn,eventbus::transport::webhook::worker=debug",
        ),
    ];
    let a = Arc::new(TestServer::start(&env).await);
    let b = Arc::new(TestServer::start(&env).await);
    (a, b)
}

/// Creates an endpoint on `on` and checks that `other` sees it; returns its id.
async fn create_endpoint(on: &TestServer, other: &TestServer, body: Value) -> String {
    let created = on
        .client()
        .post(on.url("/v1/webhooks"))
        .json(&body)
        .send()
        .await
        .expect("POST /v1/webhooks");
    assert_eq!(created.status(), StatusCode::CREATED);
    let endpoint: Value = created.json().await.unwrap();
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    // One store: the other process knows it too.
    let seen = other.get(&format!("/v1/webhooks/{endpoint}"), &[]).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    endpoint
}

/// Publishes `n` events, alternately on `a` and `b`, [`PUBLISHERS`] at a time; returns the
/// stored events' `id → seq`.
async fn publish_across(
    a: &Arc<TestServer>,
    b: &Arc<TestServer>,
    n: usize,
) -> HashMap<String, u64> {
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (a, b) = (a.clone(), b.clone());
        publishers.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            for i in (p..n).step_by(PUBLISHERS) {
                let node = if i % 2 == 0 { &a } else { &b };
                let event = node
                    .publish_ok(&json!({"type": "order.created", "payload": {"i": i}}))
                    .await;
                stored.push((
                    event["id"].as_str().unwrap().to_owned(),
                    event["seq"].as_u64().unwrap(),
                ));
            }
            stored
        }));
    }
    let mut published = HashMap::new();
    for p in publishers {
        published.extend(p.await.unwrap());
    }
    assert_eq!(published.len(), n);
    published
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_queue_and_deliver_every_event_once() {
    let Some(schema) = Schema::create("webhooks_pg", "shared") else {
        return;
    };
    let (a, b) = two_processes(&schema).await;
    let receiver = WebhookReceiver::start().await;
    let endpoint = create_endpoint(&a, &b, json!({"url": receiver.url("/hook")})).await;
    let published: HashSet<String> = publish_across(&a, &b, EVENTS).await.into_keys().collect();

    // Every event arrives…
    receiver
        .wait_until("every published event", WAIT, |rs| {
            rs.iter().map(|r| &r.id).collect::<HashSet<_>>().len() >= EVENTS
        })
        .await;
    // …and once every attempt is recorded (the attempt is recorded after the receiver
    // answered), and then a sentinel event published afterwards is delivered and recorded too
    // (both processes had the chance to send anything still due), nothing was sent twice.
    wait_attempts(&a, &endpoint, EVENTS).await;
    let sentinel = b
        .publish_ok(&json!({"type": "order.created", "payload": {"sentinel": true}}))
        .await;
    let sentinel = sentinel["id"].as_str().unwrap().to_owned();
    let mut attempts = wait_attempts(&a, &endpoint, EVENTS + 1).await;
    assert!(
        attempts.iter().any(|t| t["eventId"] == json!(sentinel)),
        "the sentinel's attempt is recorded"
    );
    attempts.retain(|t| t["eventId"] != json!(sentinel));
    assert_eq!(attempts.len(), EVENTS, "one attempt per event");
    assert!(
        attempts.iter().all(|t| t["success"] == json!(true)),
        "every attempt succeeded"
    );

    let mut requests = receiver.requests();
    assert_eq!(
        requests.iter().filter(|r| r.id == sentinel).count(),
        1,
        "the sentinel arrived once"
    );
    requests.retain(|r| r.id != sentinel);
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &requests {
        *per_id.entry(r.id.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    assert_eq!(requests.len(), EVENTS, "exactly one request per event");
    let received: HashSet<String> = per_id.keys().map(|id| (*id).to_owned()).collect();
    assert_eq!(received, published, "the published events, all of them");
    assert!(requests.iter().all(|r| r.succeeded()));

    // Both processes sent some: each logs its attempts, the sentinel's included. (Polled: the
    // logs are read from the processes' output by threads of their own.)
    let deadline = Instant::now() + WAIT;
    let (on_a, on_b) = loop {
        let (on_a, on_b) = (logged_attempts(&a), logged_attempts(&b));
        if on_a + on_b > EVENTS {
            break (on_a, on_b);
        }
        assert!(
            Instant::now() < deadline,
            "only {} attempts logged within {WAIT:?}",
            on_a + on_b
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("attempts sent: A {on_a}, B {on_b}");
    assert_eq!(
        on_a + on_b,
        EVENTS + 1,
        "attempts logged by the two processes (the events and the sentinel)"
    );
    assert!(
        on_a > 0 && on_b > 0,
        "both processes delivered: A sent {on_a}, B sent {on_b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ordered_endpoint_gets_events_in_seq_order_from_two_processes() {
    let Some(schema) = Schema::create("webhooks_pg", "ordered") else {
        return;
    };
    let (a, b) = two_processes(&schema).await;
    let receiver = WebhookReceiver::start().await;
    create_endpoint(
        &b,
        &a,
        json!({"url": receiver.url("/ordered"), "ordered": true}),
    )
    .await;
    let published = publish_across(&a, &b, 150).await;
    receiver
        .wait_until("every published event", WAIT, |rs| {
            rs.len() >= published.len()
        })
        .await;
    // A sentinel published after all of them comes last: anything sent twice or late would
    // have to arrive before it, in order.
    let sentinel = a
        .publish_ok(&json!({"type": "order.created", "payload": {"sentinel": true}}))
        .await;
    let sentinel_seq = sentinel["seq"].as_u64().unwrap();
    let requests = receiver
        .wait_until("the sentinel", WAIT, |rs| {
            rs.iter().any(|r| r.id == sentinel["id"].as_str().unwrap())
        })
        .await;
    let got: Vec<u64> = requests.iter().map(|r| r.seq()).collect();
    let mut expected: Vec<u64> = published.values().copied().collect();
    expected.sort_unstable();
    expected.push(sentinel_seq);
    assert_eq!(got, expected, "each event once, strictly in seq order");
}
