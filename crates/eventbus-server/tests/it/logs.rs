//! Structured logs: JSON lines with `LOG_FORMAT=json`, and the event id and `traceparent` on every
//! line about an event.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::receiver::WebhookReceiver;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn every_log_line_about_an_event_names_its_id_and_traceparent() {
    let server = TestServer::start(&[
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "warn,eventbus=debug"),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_RETRY_SCHEDULE", "100ms"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
    ])
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.fail_next(2, 500, None);
    let created = server
        .client()
        .post(server.url("/v1/webhooks"))
        .json(&json!({"url": receiver.url("/hook")}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let published = server
        .client()
        .post(server.url("/v1/events"))
        .header("traceparent", TRACEPARENT)
        .json(&json!({"type": "project.created", "payload": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::CREATED);
    let id = published.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Two failed attempts, then one that succeeds.
    let got = receiver.wait_for(3, Duration::from_secs(30)).await;
    assert!(got.last().unwrap().succeeded());

    const EXPECTED: [&str; 3] = [
        "event accepted by the chain",
        "webhook attempt failed",
        "webhook attempt succeeded",
    ];
    // The bus logs the successful attempt after the receiver answered: wait for the line.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (log, lines) = loop {
        let log = server.log_text();
        let lines: Vec<Value> = log
            .lines()
            .filter(|l| l.contains(&id))
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect();
        let logged = |m: &str| lines.iter().any(|l| l["fields"]["message"] == m);
        if EXPECTED.iter().all(|m| logged(m)) || tokio::time::Instant::now() > deadline {
            break (log, lines);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["fields"]["message"].as_str().unwrap_or(""))
        .collect();
    for expected in EXPECTED {
        assert!(
            messages.contains(&expected),
            "no `{expected}` line: {messages:?}\n{log}"
        );
    }
    for line in &lines {
        assert_eq!(line["fields"]["event.id"], json!(id), "{line}");
        assert_eq!(line["fields"]["traceparent"], json!(TRACEPARENT), "{line}");
    }
}
