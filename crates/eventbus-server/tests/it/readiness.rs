//! `/health/ready` follows the store: cut the bus off from PostgreSQL (a TCP proxy between them)
//! and readiness turns 503 while publishes fail fast with a 503 problem; restore the link and
//! both recover without a restart.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cluster::{create_schema, database_url};
use crate::common::TestServer;

#[path = "../../../eventbus/tests/it/common/proxy.rs"]
mod proxy;

/// Polls `/health/ready` until it answers `status` (bounded); returns the body.
async fn ready_becomes(server: &TestServer, status: StatusCode) -> Value {
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..300 {
        let r = server
            .client()
            .get(server.url("/health/ready"))
            .send()
            .await
            .unwrap();
        last = (r.status(), r.json().await.unwrap_or(Value::Null));
        if last.0 == status {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health/ready stayed {:?}: {}", last.0, last.1);
}

#[tokio::test]
async fn readiness_and_publishes_follow_the_store_and_recover_by_themselves() {
    let Some(schema) = create_schema("readiness") else {
        return;
    };
    let proxy = proxy::TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test?options=-c%20search_path%3D{schema}",
        proxy.addr().port()
    );
    let server =
        TestServer::start(&[("EVENT_STORE_URL", &url), ("EVENT_STORE_TIMEOUT", "1000")]).await;
    let body = ready_becomes(&server, StatusCode::OK).await;
    assert_eq!(body["details"]["store"]["status"], "up");
    assert_eq!(body["details"]["notifications"]["status"], "up", "{body}");
    server
        .publish_ok(&json!({"type": "project.created", "payload": {"n": 1}}))
        .await;

    proxy.cut();
    let body = ready_becomes(&server, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["store"]["status"], "down");
    let refused = server
        .publish(&json!({"type": "project.created", "payload": {"n": 2}}))
        .await;
    refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    // The driver's text (hosts, ports, settings) stays in the log; the client learns what to do.
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("Retry shortly")
            && !detail.contains("PostgreSQL")
            && !detail.contains("127.0.0.1"),
        "{detail}"
    );

    proxy.restore();
    // Ready again means every entry is up, the LISTEN session included.
    let body = ready_becomes(&server, StatusCode::OK).await;
    assert_eq!(body["details"]["notifications"]["status"], "up", "{body}");
    let mut stored = None;
    for _ in 0..100 {
        let r = server
            .publish(&json!({"type": "project.created", "payload": {"n": 3}}))
            .await;
        if r.status == StatusCode::CREATED {
            stored = Some(r.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored.is_some(),
        "publishing recovered after the link came back"
    );
    let payloads: Vec<i64> = server
        .all_events()
        .await
        .iter()
        .map(|e| e["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(payloads, [1, 3], "the refused publish stored nothing");
    let _ = Command::new("psql")
        .arg(database_url())
        .args(["-qAtc", &format!("DROP SCHEMA {schema} CASCADE")])
        .status();
}
