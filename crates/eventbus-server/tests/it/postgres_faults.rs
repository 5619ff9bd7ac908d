//! The bus against a PostgreSQL that closes its connections, as a managed primary's fail-over or
//! an operator's `pg_terminate_backend` does, and against one that restarts.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::cluster::{create_schema, database_url};
use crate::common::own_pg::OwnPostgres;
use crate::common::pg::terminate_sessions;
use crate::common::receiver::WebhookReceiver;
use crate::common::sse::{Message, SseClient};
use crate::common::{self, TestServer, seq, seqs_by_id};

// Every session of the bus is terminated twice while eight clients publish: clients see only
// 201s and brief 503 problems (never a hang or another error), the bus reconnects by itself,
// and every acknowledged event is stored with the seq it was answered with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_sessions_under_load_lose_nothing_and_the_bus_reconnects() {
    let Some(schema) = create_schema("pg_terminate") else {
        return;
    };
    let app = format!("eb_terminate_{}", std::process::id());
    let url = format!(
        "{}?options=-c%20search_path%3D{schema}&application_name={app}",
        database_url()
    );
    let server = TestServer::start(&[("EVENT_STORE_URL", &url)]).await;
    let base = server.url("");
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = publishers(&base, "term", 8, &stop);
    // Terminate every session of the bus twice, each time once publishes are flowing again.
    let started = Instant::now();
    let mut terminated = 0;
    for _ in 0..2 {
        let before = server.count().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.count().await < before + 50 {
            assert!(Instant::now() < deadline, "publishes did not flow again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        terminated += terminate_sessions(&app);
    }
    assert!(
        terminated >= 2,
        "no session of the bus was found to terminate"
    );
    // Flowing again after the second cut.
    let before = server.count().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.count().await < before + 50 {
        assert!(
            Instant::now() < deadline,
            "the bus did not reconnect by itself"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut unavailable) = (HashMap::new(), 0);
    for task in tasks {
        let (a, u) = task.await.expect("a publisher");
        acked.extend(a);
        unavailable += u;
    }
    println!(
        "{} acknowledged, {unavailable} answered 503, {terminated} sessions terminated, in {:?}",
        acked.len(),
        started.elapsed()
    );
    let stored = seqs_by_id(&server.all_events().await);
    for (id, s) in &acked {
        assert_eq!(
            stored.get(id),
            Some(s),
            "acknowledged event {id} lost or moved"
        );
    }
    let _ = Command::new("psql")
        .arg(database_url())
        .args(["-qc", &format!("DROP SCHEMA {schema} CASCADE")])
        .output();
}

// PostgreSQL itself (a server of the test's own) restarted while four publishers, an SSE stream
// and a webhook endpoint run: publishers get 201s or `503 store-unavailable` problems, never
// another answer and never a hang (their client gives up after 30 s); the bus recovers without
// a restart; every acknowledged event is stored with the seq it was answered with, streamed and
// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_loses_nothing_and_the_bus_recovers() {
    let Some(pg) = OwnPostgres::start_plain() else {
        return;
    };
    let pg = Arc::new(pg);
    let receiver = WebhookReceiver::start().await;
    let url = pg.plain_url("eb_restart");
    let server = TestServer::start(&[
        ("EVENT_STORE_URL", url.as_str()),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_RETRY_SCHEDULE", "100ms,200ms,300ms,500ms,1s"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
    ])
    .await;
    let endpoint = server
        .client()
        .post(server.url("/v1/webhooks"))
        .json(&json!({"url": receiver.url("/"), "eventTypes": ["project.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(endpoint.status(), StatusCode::CREATED);
    let mut stream = SseClient::connect(&server, "", None).await;

    let stop = Arc::new(AtomicBool::new(false));
    let base = server.url("");
    let tasks = publishers(&base, "restart", 4, &stop);
    let flowing = async |n: usize, what: &str| {
        let before = server.count().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.count().await < before + n {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    flowing(100, "publishes did not start").await;
    let restarting = pg.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();
    flowing(100, "the bus did not recover by itself after the restart").await;
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut unavailable) = (HashMap::new(), 0);
    for task in tasks {
        let (a, u) = task.await.expect("a publisher");
        acked.extend(a);
        unavailable += u;
    }
    println!("{} acknowledged, {unavailable} answered 503", acked.len());
    let stored = seqs_by_id(&server.all_events().await);
    for (id, s) in &acked {
        assert_eq!(
            stored.get(id),
            Some(s),
            "acknowledged event {id} lost or moved"
        );
    }
    // The stream (resumed from its last seq if the bus ended it) carries every acknowledged event.
    let mut streamed = std::collections::HashSet::new();
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.keys().any(|id| !streamed.contains(id)) {
        assert!(
            Instant::now() < deadline,
            "the stream missed acknowledged events"
        );
        match stream.next(Duration::from_secs(5)).await {
            Some(Message::Event(e)) => {
                last = Some(e.seq);
                streamed.insert(e.data["id"].as_str().unwrap().to_owned());
            }
            Some(_) => {}
            None => stream = SseClient::connect(&server, "", last).await,
        }
    }
    let delivered = receiver
        .wait_until("every acknowledged event", Duration::from_secs(60), |got| {
            let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
            acked.keys().all(|id| ids.contains(id.as_str()))
        })
        .await;
    assert!(delivered.len() >= acked.len());
}

/// What one publisher got: the events answered 201 (id, seq), and how many 503s.
type Published = (Vec<(String, u64)>, u32);

/// `count` publishers posting `project.updated` events with ids `<prefix>-<t>-<i>` until
/// `stop`: each returns the events answered 201 (id, seq) and how many were answered `503
/// store-unavailable`; any other answer, or none within 30 s, fails the test.
fn publishers(
    base: &str,
    prefix: &'static str,
    count: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Published>> {
    (0..count)
        .map(|t| {
            let (stop, base) = (stop.clone(), base.to_owned());
            let client = common::admin_client()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            tokio::spawn(async move {
                let (mut acked, mut unavailable) = (Vec::new(), 0u32);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = format!("{prefix}-{t}-{i}");
                    let body = json!({"id": id, "type": "project.updated", "payload": {"i": i}});
                    let resp = client
                        .post(format!("{base}/v1/events"))
                        .json(&body)
                        .send()
                        .await
                        .expect("the bus answers within 30 s");
                    let status = resp.status();
                    let stored: serde_json::Value = resp.json().await.unwrap();
                    match status {
                        StatusCode::CREATED => acked.push((id, seq(&stored))),
                        StatusCode::SERVICE_UNAVAILABLE => {
                            assert_eq!(stored["type"], "/problems/store-unavailable", "{stored}");
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("unexpected {other}: {stored}"),
                    }
                }
                (acked, unavailable)
            })
        })
        .collect()
}
