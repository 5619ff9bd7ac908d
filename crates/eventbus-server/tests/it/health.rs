//! `/health/live` and `/health/ready`.

use reqwest::StatusCode;
use serde_json::json;

use std::time::Duration;

use crate::common::TestServer;
use crate::common::receiver::WebhookReceiver;

#[tokio::test]
async fn live_and_ready_report_up() {
    let server = TestServer::start(&[]).await;

    let live = server.get("/health/live", &[]).await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);

    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["status"], json!("ok"), "{}", ready.body);
    assert_eq!(
        ready.body["details"]["store"]["status"],
        json!("up"),
        "{}",
        ready.body
    );
    assert_eq!(
        ready.body["details"]["store"]["backend"],
        json!("sqlite"),
        "{}",
        ready.body
    );
}

/// `/health/ready` until it answers `status`, for up to 30 s.
async fn ready_becomes(server: &TestServer, status: StatusCode) -> serde_json::Value {
    let mut last = None;
    for _ in 0..300 {
        let ready = server.get("/health/ready", &[]).await;
        if ready.status == status {
            return ready.body;
        }
        last = Some(ready.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health/ready never answered {status}: {last:?}");
}

#[tokio::test]
async fn the_webhook_queue_is_not_ready_above_its_pending_threshold_and_recovers() {
    let server = TestServer::start(&[
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
        ("WEBHOOK_TIMEOUT", "1000"),
        ("WEBHOOK_RETRY_SCHEDULE", "100ms"),
        ("WEBHOOK_RETRY_ATTEMPTS", "50"),
        ("WEBHOOK_READY_MAX_PENDING", "3"),
    ])
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.hang(true);
    let created = server
        .client()
        .post(server.url("/v1/webhooks"))
        .json(&json!({"url": receiver.url("/hook"), "ordered": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(
        ready.body["details"]["webhooks"]["pending"],
        json!(0),
        "{}",
        ready.body
    );
    assert_eq!(ready.body["details"]["webhooks"]["maxPending"], json!(3));
    for i in 0..5 {
        server
            .publish_ok(&json!({"type": "project.created", "payload": {"i": i}}))
            .await;
    }
    let body = ready_becomes(&server, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"]["webhooks"]["status"], "down", "{body}");
    let pending = body["error"]["webhooks"]["pending"].as_u64().unwrap();
    assert!(
        (4..=5).contains(&pending),
        "down only above 3 pending: {body}"
    );
    assert!(
        body["info"]["store"].is_object(),
        "the store stays up: {body}"
    );
    receiver.hang(false);
    // Ready again as the queue drains to at most 3, and the queue empties.
    ready_becomes(&server, StatusCode::OK).await;
    let mut pending = None;
    for _ in 0..300 {
        let ready = server.get("/health/ready", &[]).await;
        pending = ready.body["details"]["webhooks"]["pending"].as_u64();
        if pending == Some(0) {
            assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the webhook queue did not drain: {pending:?} pending");
}
