//! `GET /v1/stats`: the figures of the last hour, on an in-process server sampling every second
//! (`STATS_SAMPLE_INTERVAL=1`). Published events and webhook attempts to a local receiver show
//! up in the samples; `since` returns the newer ones; only a key bound to no tenant or project
//! reads them.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::receiver::WebhookReceiver;
use crate::common::{ApiClient, InProcessServer};

/// Generous bound for anything asynchronous.
const WAIT: Duration = Duration::from_secs(60);

/// A server sampling every second that may reach loopback receivers, with short retry delays.
async fn server() -> InProcessServer {
    InProcessServer::start(&[
        ("STATS_SAMPLE_INTERVAL", "1"),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_RETRY_SCHEDULE", "100ms"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
    ])
    .await
}

/// The samples of a `GET /v1/stats` answer.
fn samples(stats: &Value) -> &[Value] {
    stats["samples"].as_array().expect("samples is an array")
}

/// The sum of the field `name` over `samples`.
fn sum(samples: &[Value], name: &str) -> u64 {
    samples
        .iter()
        .map(|s| s[name].as_u64().unwrap_or_else(|| panic!("{name} of {s}")))
        .sum()
}

/// Polls `GET /v1/stats` until `done(samples)` holds; fails the test with `what` after [`WAIT`].
async fn stats_until(api: &ApiClient, what: &str, done: impl Fn(&[Value]) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = api.get("/v1/stats", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        if done(samples(&reply.body)) {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "the samples did not show {what} within {WAIT:?}: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the figures of one sample against each other.
fn check_sample(s: &Value) {
    let at = s["at"].as_str().expect("at is a string");
    assert!(
        at.ends_with('Z') && OffsetDateTime::parse(at, &Rfc3339).is_ok(),
        "at is RFC 3339 in UTC: {s}"
    );
    let seconds = s["seconds"].as_f64().expect("seconds");
    assert!(seconds > 0.0, "{s}");
    let events = s["events"].as_u64().expect("events") as f64;
    let rate = s["eventsPerSecond"].as_f64().expect("eventsPerSecond");
    assert!(
        (rate - events / seconds).abs() <= 0.01 * rate.max(1.0),
        "eventsPerSecond is events over seconds: {s}"
    );
    let attempts = sum(std::slice::from_ref(s), "webhookSucceeded")
        + sum(std::slice::from_ref(s), "webhookFailed");
    if attempts == 0 {
        assert_eq!(s["webhookSuccessRate"], Value::Null, "{s}");
        assert_eq!(s["webhookLatencyMs"], Value::Null, "{s}");
    } else {
        let ok = s["webhookSucceeded"].as_u64().unwrap() as f64;
        let share = s["webhookSuccessRate"].as_f64().expect("a success rate");
        assert!((share - ok / attempts as f64).abs() < 0.001, "{s}");
        let (mean, max) = (
            s["webhookLatencyMs"]["mean"].as_f64().expect("a mean"),
            s["webhookLatencyMs"]["max"].as_f64().expect("a max"),
        );
        assert!(0.0 <= mean && mean <= max, "{s}");
    }
    assert!(s["sseConnections"].is_u64(), "{s}");
    for queue in ["storeWriter", "subscribers", "sse", "webhooks"] {
        assert!(s["queueDepths"][queue].is_u64(), "queueDepths.{queue}: {s}");
    }
}

#[tokio::test]
async fn published_events_and_webhook_attempts_show_in_the_samples() {
    let server = server().await;
    let receiver = WebhookReceiver::start().await;
    // The first attempt fails with 500, its retry succeeds.
    receiver.fail_next(1, 500, None);
    server
        .create_webhook(&json!({"url": receiver.url("/hook"), "eventTypes": ["order.*"]}))
        .await;
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"type": "project.created", "payload": {"i": i}}))
        .collect();
    server.publish_ok(&Value::Array(batch)).await;
    for i in 0..4 {
        server
            .publish_ok(&json!({"type": "project.updated", "payload": {"i": i}}))
            .await;
    }
    server.publish_ok(&json!({"type": "order.placed"})).await;
    const N: u64 = 25;
    let answered = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        answered.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![Some(500), Some(200)]
    );

    let stats = stats_until(&server, "25 events and both attempts", |s| {
        sum(s, "events") >= N && sum(s, "webhookSucceeded") + sum(s, "webhookFailed") >= 2
    })
    .await;
    assert_eq!(stats["intervalSeconds"], 1);
    let all = samples(&stats);
    assert_eq!(sum(all, "events"), N, "every stored event counts once");
    assert_eq!(
        (sum(all, "webhookSucceeded"), sum(all, "webhookFailed")),
        (1, 1)
    );
    for s in all {
        check_sample(s);
    }
    let ats: Vec<&str> = all.iter().map(|s| s["at"].as_str().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] < w[1]), "oldest first: {ats:?}");
    let busiest = all
        .iter()
        .max_by_key(|s| s["events"].as_u64())
        .expect("a sample");
    assert!(
        busiest["eventsPerSecond"].as_f64().unwrap() > 0.0,
        "{busiest}"
    );
    let failed = all
        .iter()
        .find(|s| s["webhookFailed"].as_u64() == Some(1))
        .expect("the sample of the failed attempt");
    assert!(
        failed["webhookSuccessRate"].as_f64().unwrap() < 1.0,
        "{failed}"
    );
    let current = &stats["current"];
    check_sample(current);
    assert!(
        current["at"].as_str().unwrap() >= ats[ats.len() - 1],
        "the interval in progress ends after the last sample: {current}"
    );

    // `since` returns the samples taken after it, oldest first.
    let since = server.get("/v1/stats", &[("since", ats[0])]).await;
    assert_eq!(since.status, StatusCode::OK, "{}", since.body);
    let newer: Vec<&str> = samples(&since.body)
        .iter()
        .map(|s| s["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        newer[..ats.len() - 1],
        ats[1..],
        "the samples after the first one, and any taken since"
    );
    assert!(newer.iter().all(|at| *at > ats[0]), "{newer:?}");
}

#[tokio::test]
async fn only_a_key_of_the_whole_bus_reads_the_figures() {
    let server = server().await;
    let key = |body: Value| {
        let server = &server;
        async move { server.with_key(&server.create_key(&body).await) }
    };
    let reader = key(json!({"name": "r", "permissions": ["read"]})).await;
    let admin = key(json!({"name": "a", "permissions": ["admin"]})).await;
    for api in [&reader, &admin] {
        let reply = api.get("/v1/stats", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }

    let tenant =
        key(json!({"name": "t", "tenantId": "t_a", "permissions": ["read", "admin"]})).await;
    tenant
        .get("/v1/stats", &[])
        .await
        .assert_problem_detail(StatusCode::FORBIDDEN, "bound to no tenant or project");
    let project = key(json!({"name": "p", "projectIds": ["p1"], "permissions": ["read"]})).await;
    project
        .get("/v1/stats", &[])
        .await
        .assert_problem_detail(StatusCode::FORBIDDEN, "every tenant");
    // A key of some types only would read the rate of every other type too.
    let typed = key(json!({"name": "o", "permissions": ["read"], "types": ["order.*"]})).await;
    typed
        .get("/v1/stats", &[])
        .await
        .assert_problem_detail(StatusCode::FORBIDDEN, "cover every type");
    let publisher = key(json!({"name": "w", "permissions": ["publish", "subscribe"]})).await;
    publisher
        .get("/v1/stats", &[])
        .await
        .assert_problem(StatusCode::FORBIDDEN);

    let anonymous = ApiClient::new(
        server.url(""),
        reqwest::Client::builder().no_proxy().build().unwrap(),
    );
    anonymous
        .get("/v1/stats", &[])
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);

    server
        .get("/v1/stats", &[("since", "yesterday")])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "since");
    server
        .get("/v1/stats", &[("from", "2026-01-01T00:00:00Z")])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "from");
}
