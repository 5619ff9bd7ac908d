//! `GET /metrics` after a known workload: the counters hold exactly what happened.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::receiver::WebhookReceiver;

/// The value of the sample `name{labels}` (labels as Prometheus prints them, sorted), if present.
pub(crate) fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

pub(crate) async fn scrape(server: &TestServer) -> String {
    let r = server
        .client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    r.text().await.unwrap()
}

#[tokio::test]
async fn counters_match_a_known_workload() {
    let receiver = WebhookReceiver::start().await;
    let server = TestServer::start(&[
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_RETRY_ATTEMPTS", "2"),
        ("WEBHOOK_RETRY_SCHEDULE", "50ms,50ms"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
    ])
    .await;
    // One endpoint that fails every attempt: 1 + 2 retries = 3 failed attempts, 1 dead letter.
    receiver.fail_next(1_000, 500, None);
    let created = server
        .client()
        .post(server.url("/v1/webhooks"))
        .json(&json!({"url": receiver.url("/hook"), "eventTypes": ["audit.failing"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    for batch in 0..10 {
        let events: Vec<Value> = (0..100)
            .map(|i| json!({"id": format!("e{batch}-{i}"), "type": "project.created", "payload": {"i": i}}))
            .collect();
        assert_eq!(
            server.publish(&Value::Array(events)).await.status,
            StatusCode::CREATED
        );
    }
    // A repeat of a stored event, an unregistered type, two invalid events.
    let repeat = server
        .publish(&json!({"id": "e0-0", "type": "project.created", "payload": {"i": 0}}))
        .await;
    assert_eq!(repeat.status, StatusCode::OK);
    server
        .publish_ok(&json!({"type": "audit.failing", "payload": {}}))
        .await;
    for bad in [
        json!({"type": "Bad"}),
        json!({"type": "project.created", "projectId": ""}),
    ] {
        assert_eq!(server.publish(&bad).await.status, StatusCode::BAD_REQUEST);
    }
    let mut text = String::new();
    for _ in 0..200 {
        text = scrape(&server).await;
        if sample(&text, "eventbus_webhook_dead_letters_total") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = |labels: &str| {
        sample(
            &text,
            &format!("eventbus_events_published_total{{{labels}}}"),
        )
    };
    assert_eq!(
        published(r#"type="project.created",outcome="created""#),
        Some(1000.0),
        "{text}"
    );
    assert_eq!(
        published(r#"type="project.created",outcome="duplicate""#),
        Some(1.0)
    );
    assert_eq!(published(r#"type="other",outcome="created""#), Some(1.0));
    assert_eq!(
        published(r#"type="other",outcome="rejected""#),
        Some(1.0),
        "`Bad` is no catalogue type"
    );
    assert_eq!(
        published(r#"type="project.created",outcome="rejected""#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"eventbus_webhook_attempts_total{outcome="failed"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "eventbus_webhook_dead_letters_total"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "eventbus_webhook_success_ratio"), Some(0.0));
    assert_eq!(receiver.count(), 3, "the receiver saw the three attempts");
    // 10 batches + 4 single publishes.
    assert_eq!(
        sample(&text, "eventbus_publish_duration_seconds_count"),
        Some(14.0)
    );
    assert!(sample(&text, "eventbus_store_append_batch_size_count").is_some_and(|n| n >= 1.0));
    assert!(sample(&text, "eventbus_process_resident_memory_bytes").is_some_and(|b| b > 1e6));
    assert!(sample(&text, "eventbus_process_open_fds").is_some_and(|n| n > 3.0));
    assert!(sample(&text, "eventbus_runtime_tasks").is_some_and(|n| n >= 1.0));
    assert_eq!(sample(&text, "eventbus_sse_connections"), Some(0.0));
    // The writer's queue is a live gauge: the dead letter's record may still be in it at the
    // scrape above, and it drains to 0 once the bus is idle.
    let depth = r#"eventbus_queue_depth{queue="store_writer"}"#;
    let mut drained = sample(&text, depth);
    for _ in 0..200 {
        if drained == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drained = sample(&scrape(&server).await, depth);
    }
    assert_eq!(
        drained,
        Some(0.0),
        "the store writer's queue drains when idle"
    );
}

// `promtool check metrics` exited 3 on the bus's metrics: no metric had `HELP` text, and the
// documented series appeared only after their first use.
#[tokio::test]
async fn metrics_pass_promtool_and_exist_from_start_up() {
    let server = TestServer::start(&[]).await;
    let fresh = scrape(&server).await;
    // Before any traffic: every series that has no per-thing label is there, at zero.
    for series in [
        "eventbus_sse_connections",
        "eventbus_sse_lagged_total",
        "eventbus_archived_events_total",
        "eventbus_archive_runs_total{outcome=\"failed\"}",
        "eventbus_queue_depth{queue=\"store_writer\"}",
        "eventbus_webhook_attempts_total{outcome=\"failed\"}",
        "eventbus_webhook_dead_letters_total",
        "eventbus_store_append_duration_seconds_count",
        "eventbus_store_tail_misses_total",
        "eventbus_publish_duration_seconds_count",
    ] {
        assert_eq!(sample(&fresh, series), Some(0.0), "{series} in\n{fresh}");
    }
    // Gauges of the process are read at each scrape, the first one included.
    for series in [
        "eventbus_process_resident_memory_bytes",
        "eventbus_process_open_fds",
        "eventbus_runtime_tasks",
    ] {
        assert!(
            sample(&fresh, series).is_some_and(|v| v > 0.0),
            "{series} in\n{fresh}"
        );
    }
    server
        .publish_ok(&json!({"type": "project.created", "payload": {}}))
        .await;
    let text = scrape(&server).await;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }
    // Prometheus's own linter, where it is installed (Debian's `prometheus`); CI installs it.
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match promtool {
        Ok(child) => child,
        Err(_) => {
            eventbus::testing::skip("promtool is missing (apt-get install prometheus)");
            return;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
