//! Several `eventbus` processes on one PostgreSQL: events published on one node reach the SSE
//! streams of another (LISTEN/NOTIFY wakes it; it reads the store), in `seq` order, none missed.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::TestServer;
use crate::common::sse::SseClient;

const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn database_url() -> String {
    std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema for this test; `None` (outside CI) when PostgreSQL cannot be reached.
pub(crate) fn create_schema(test: &str) -> Option<String> {
    let name = format!("eb_{test}_{}", std::process::id());
    let ok = Command::new("psql")
        .arg(database_url())
        .args([
            "-qAtc",
            &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(name);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "PostgreSQL is required in CI"
    );
    eprintln!("SKIPPED: PostgreSQL at {} is unreachable", database_url());
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
