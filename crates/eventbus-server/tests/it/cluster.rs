//! Several `eventbus` processes on one PostgreSQL: events published on one node reach the SSE
//! streams of another (LISTEN/NOTIFY wakes it; it reads the store), in `seq` order, none missed.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::TestServer;
use crate::common::sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);

pub(crate) use crate::common::pg::database_url;

/// A fresh schema for this test (left in place: the nodes' logs name it); `None` (outside CI)
/// when PostgreSQL cannot be reached.
pub(crate) fn create_schema(test: &str) -> Option<String> {
    let name = format!("eb_{test}_{}", std::process::id());
    if crate::common::pg::psql(&format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
    )) {
        return Some(name);
    }
    eventbus::testing::skip(&format!("PostgreSQL at {} is unreachable", database_url()));
    None
}

#[tokio::test]
async fn events_published_on_one_node_reach_streams_on_another() {
    let Some(schema) = create_schema("cluster") else {
        return;
    };
    let url = format!("{}?options=-c%20search_path%3D{schema}", database_url());
    let a = TestServer::start(&[("EVENT_STORE_URL", &url)]).await;
    let b = TestServer::start(&[("EVENT_STORE_URL", &url)]).await;
    let mut on_b = SseClient::connect(&b, "types=project.*", None).await;
    let mut expected = Vec::new();
    for i in 0..30 {
        // Mostly on A, some on B itself: B's stream sees one ordered log.
        let node = if i % 5 == 4 { &b } else { &a };
        let stored = node
            .publish_ok(&json!({"type": "project.updated", "payload": {"i": i}}))
            .await;
        expected.push(stored["seq"].as_u64().unwrap());
        node.publish_ok(&json!({"type": "user.updated", "payload": {"i": i}}))
            .await;
    }
    let got: Vec<u64> = on_b
        .events_until_seq(*expected.last().unwrap(), WAIT)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        got, expected,
        "every event from either node, once, in seq order"
    );
    // A stream on A resuming from the start sees the same log.
    let mut on_a = SseClient::connect(&a, "types=project.*", Some(0)).await;
    let replay: Vec<u64> = on_a
        .events_until_seq(*expected.last().unwrap(), WAIT)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(replay, expected);
    let _ = Command::new("psql")
        .arg(database_url())
        .args(["-qAtc", &format!("DROP SCHEMA {schema} CASCADE")])
        .status();
}

/// Invariant 2 across processes: 4 writer tasks in 2 `eventbus` processes publish 50,000 events
/// over HTTP while readers tail: a stream on one node (from the start) and a reader paging
/// `GET /v1/events?after=<cursor>` on the other. Each sees exactly the stored set, in `seq`
/// order, without duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_gaps_for_tailing_readers_with_writers_in_two_processes() {
    const TOTAL: usize = 50_000;
    const WRITERS: usize = 4;
    let Some(schema) = create_schema("nogap") else {
        return;
    };
    let url = format!("{}?options=-c%20search_path%3D{schema}", database_url());
    let nodes = std::sync::Arc::new([
        TestServer::start(&[("EVENT_STORE_URL", &url), ("SSE_QUEUE", "65536")]).await,
        TestServer::start(&[("EVENT_STORE_URL", &url)]).await,
    ]);
    let mut stream = SseClient::connect(&nodes[0], "", Some(0)).await;
    let last_seq = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));

    // The paging reader on node B.
    let pager = {
        let (nodes, last_seq) = (nodes.clone(), last_seq.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0u64, Vec::new());
            loop {
                let page = nodes[1]
                    .query(&[("after", &cursor.to_string()), ("limit", "1000")])
                    .await;
                assert_eq!(page.status, 200, "{}", page.body);
                let events = page.body["events"].as_array().unwrap();
                seen.extend(events.iter().map(crate::common::seq));
                if let Some(last) = events.last() {
                    cursor = crate::common::seq(last);
                }
                if page.body["nextAfter"].is_null() {
                    if cursor >= last_seq.load(std::sync::atomic::Ordering::Acquire) {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };

    // Four writers, two per process, in batches of 1 to 25 events.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let nodes = nodes.clone();
        writers.push(tokio::spawn(async move {
            let node = &nodes[w % 2];
            let (mut left, mut i) = (TOTAL / WRITERS, 0usize);
            while left > 0 {
                let n = left.min(1 + (i * 7 + w) % 25);
                let batch: Vec<_> = (0..n)
                    .map(|k| json!({"id": format!("w{w}-{i}-{k}"), "type": "load.test", "payload": {"k": k}}))
                    .collect();
                let r = node.publish(&json!(batch)).await;
                assert_eq!(r.status, 201, "{}", r.body);
                left -= n;
                i += 1;
            }
        }));
    }
    let run = async {
        for w in writers {
            w.await.unwrap();
        }
        let stored = nodes[0].all_events().await;
        let seqs: Vec<u64> = stored.iter().map(crate::common::seq).collect();
        last_seq.store(*seqs.last().unwrap(), std::sync::atomic::Ordering::Release);
        let paged = pager.await.unwrap();
        let streamed: Vec<u64> = stream
            .events_until_seq(*seqs.last().unwrap(), WAIT)
            .await
            .iter()
            .map(|m| m.seq)
            .collect();
        (seqs, paged, streamed)
    };
    let (stored, paged, streamed) = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the test hung");
    assert_eq!(stored.len(), TOTAL);
    for (name, seen) in [("pager on B", &paged), ("stream on A", &streamed)] {
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{name}: seq order, no duplicates"
        );
        let first_difference = seen.iter().zip(&stored).position(|(r, s)| r != s);
        assert!(
            seen.len() == stored.len() && first_difference.is_none(),
            "{name} saw {} of {} events; first difference at {first_difference:?}",
            seen.len(),
            stored.len()
        );
    }
    let _ = Command::new("psql")
        .arg(database_url())
        .args(["-qAtc", &format!("DROP SCHEMA {schema} CASCADE")])
        .status();
}
