//! Invariant 1: an acknowledged publish survives `kill -9` and a graceful shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{self, TestServer, seq, seqs_by_id};

/// Asserts that every acknowledged `id → seq` is stored with the same `seq`.
async fn assert_all_present(server: &TestServer, acked: &HashMap<String, u64>) {
    let stored = seqs_by_id(&server.all_events().await);
    let missing: Vec<&String> = acked
        .keys()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for (id, seq) in acked {
        assert_eq!(stored[id], *seq, "event {id} changed its seq");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let mut server = TestServer::start(&[]).await;
    let base = Arc::new(server.url(""));
    let client = server.client().clone();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            // 16 tasks, 500 events: tasks 0..4 publish 32, the others 31.
            let n = if t < 4 { 32 } else { 31 };
            for i in 0..n {
                let id = format!("k9-{t}-{i}");
                let body = json!({"id": id, "type": "project.updated", "projectId": format!("p{t}"), "payload": {"i": i}});
                let resp = client.post(format!("{base}/v1/events")).json(&body).send().await.expect("publish");
                assert_eq!(resp.status(), StatusCode::CREATED);
                let stored: serde_json::Value = resp.json().await.expect("the stored event");
                acked.push((id, seq(&stored)));
            }
            acked
        }));
    }
    let mut acked = HashMap::new();
    for task in tasks {
        acked.extend(task.await.expect("a publisher task"));
    }
    server.kill();
    assert_eq!(acked.len(), 500);
    let seqs: std::collections::HashSet<u64> = acked.values().copied().collect();
    assert_eq!(seqs.len(), 500, "every acknowledged event has its own seq");

    server.restart().await;
    assert_all_present(&server, &acked).await;
    assert_eq!(server.count().await, 500);
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_continues_after(&server, &acked).await;
}

/// After a restart, `seq` keeps increasing and the stored events still guard their ids.
async fn assert_continues_after(server: &TestServer, acked: &HashMap<String, u64>) {
    let max = acked.values().copied().max().unwrap();
    let next = server.publish_ok(&json!({"type": "project.created"})).await;
    assert!(
        seq(&next) > max,
        "seq {} reused after restart (max acknowledged {max})",
        seq(&next)
    );

    let (id, old_seq) = acked.iter().next().unwrap();
    let stored = server.get_event(id).await.body;
    let mut retry = stored.clone();
    retry.as_object_mut().unwrap().remove("seq");
    let again = server.publish(&retry).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(seq(&again.body), *old_seq);
    retry["payload"] = json!("something else");
    server
        .publish(&retry)
        .await
        .assert_problem(StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_publishing_keeps_every_acknowledged_event_and_exits_0() {
    let mut server = TestServer::start(&[]).await;
    let base = Arc::new(server.url(""));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (base, acks, stop) = (base.clone(), acks.clone(), stop.clone());
        // One client per task: each task has its own connection, in flight when SIGTERM lands.
        let client = common::admin_client()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            for i in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("term-{t}-{i}");
                let body = json!({"id": id, "type": "project.updated", "payload": {"i": i}});
                let Ok(resp) = client
                    .post(format!("{base}/v1/events"))
                    .json(&body)
                    .send()
                    .await
                else {
                    break; // the server stopped accepting
                };
                let status = resp.status();
                let Ok(stored) = resp.json::<serde_json::Value>().await else {
                    break;
                };
                if status == StatusCode::CREATED {
                    acked.push((id, seq(&stored)));
                    acks.fetch_add(1, Ordering::Relaxed);
                } else {
                    // Refusals while draining must be explicit problems, never a lost ack.
                    assert!(status.is_server_error(), "unexpected {status}: {stored}");
                    refused += 1;
                }
            }
            (acked, refused)
        }));
    }
    // Let the publishers get going, then ask the server to stop while they are still sending.
    for _ in 0..3000 {
        if acks.load(Ordering::Relaxed) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        acks.load(Ordering::Relaxed) >= 300,
        "the publishers did not get going"
    );
    server.terminate();
    let status = server.wait_exit().await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.success(),
        "the server exited with {status} after SIGTERM; its output:\n{}",
        server.log_text()
    );

    let mut acked = HashMap::new();
    for task in tasks {
        let (a, _refused) = task.await.expect("a publisher task");
        acked.extend(a);
    }
    assert!(acked.len() >= 300);

    server.restart().await;
    assert_all_present(&server, &acked).await;
    assert_continues_after(&server, &acked).await;
}

/// Batches are atomic across a crash: after `kill -9` mid-stream every batch is either
/// entirely stored (always so when acknowledged) or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_batches_leaves_whole_batches() {
    const BATCH: usize = 200;
    let mut server = TestServer::start(&[]).await;
    let base = Arc::new(server.url(""));
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (base, acked_batches) = (base.clone(), acked_batches.clone());
        let client = common::admin_client().build().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in 0..1000 {
                let key = format!("{t}-{b}");
                let batch: Vec<_> = (0..BATCH)
                    .map(|i| json!({"id": format!("{key}-{i}"), "type": "project.updated", "projectId": key}))
                    .collect();
                let Ok(resp) = client.post(format!("{base}/v1/events")).json(&batch).send().await else {
                    break;
                };
                if resp.status() != StatusCode::CREATED || resp.bytes().await.is_err() {
                    break;
                }
                acked.push(key);
                acked_batches.fetch_add(1, Ordering::Relaxed);
            }
            acked
        }));
    }
    for _ in 0..3000 {
        if acked_batches.load(Ordering::Relaxed) >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("a publisher task"));
    }
    assert!(acked.len() >= 12, "the publishers did not get going");

    server.restart().await;
    let mut per_batch: HashMap<String, usize> = HashMap::new();
    for e in server.all_events().await {
        *per_batch
            .entry(e["projectId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (key, n) in &per_batch {
        assert_eq!(*n, BATCH, "batch {key} is partly stored after the crash");
    }
    for key in &acked {
        assert!(
            per_batch.contains_key(key),
            "acknowledged batch {key} is lost"
        );
    }
}

/// Regression: a client that stops sending in the middle of a request kept the server from
/// stopping after SIGTERM for as long as it held the connection (no drain deadline, no read
/// timeout), although every other request had been answered.
#[tokio::test]
async fn sigterm_exits_although_a_client_stalls_mid_request() {
    use tokio::io::AsyncWriteExt;

    let mut server = TestServer::start(&[]).await;
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"type\":",
        )
        .await
        .unwrap();
    let acked = server.publish_ok(&json!({"type": "project.created"})).await;

    server.terminate();
    // The stalled connection stays open for longer than the wait allows.
    let status = server.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    drop(stalled);

    server.restart().await;
    assert_eq!(
        server.get_event(acked["id"].as_str().unwrap()).await.body,
        acked
    );
}
