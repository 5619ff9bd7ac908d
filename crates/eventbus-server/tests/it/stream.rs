//! `GET /v1/stream`: filters, heartbeats, gap-free resume under concurrent publishing, lag
//! disconnect with bounded server memory, connection limits, shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::sse::{Message, SseClient};
use crate::common::{ApiClient, InProcessServer, TestServer};

const WAIT: Duration = Duration::from_secs(30);

/// An event to publish: type, projectId, tenantId, userId.
type Spec<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

async fn publish_types(server: &ApiClient, events: &[Spec<'_>]) -> Vec<Value> {
    let mut out = Vec::new();
    for (ty, project, tenant, user) in events {
        let mut e = json!({"type": ty, "payload": {"n": out.len()}});
        if let Some(p) = project {
            e["projectId"] = json!(p);
        }
        if let Some(t) = tenant {
            e["tenantId"] = json!(t);
        }
        if let Some(u) = user {
            e["userId"] = json!(u);
        }
        out.push(server.publish_ok(&e).await);
    }
    out
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn filters_select_what_each_stream_receives() {
    let server = InProcessServer::start(&[]).await;
    let all = publish_types(
        &server,
        &[
            ("project.created", Some("p1"), Some("t1"), None),
            ("project.a.b", Some("p1"), Some("t1"), None),
            ("project.updated", Some("p2"), Some("t2"), Some("u1")),
            ("user.created", None, Some("t1"), Some("u1")),
            ("menu.item_updated", Some("p1"), None, Some("u2")),
            // A sentinel that every filter below selects: a replay that delivered it has
            // delivered everything before it, so nothing unexpected can still come in between.
            ("project.created", Some("p1"), Some("t1"), Some("u1")),
        ],
    )
    .await;
    let cases: &[(&str, Vec<u64>)] = &[
        ("types=project.*", vec![1, 3]),
        ("types=project.>", vec![1, 2, 3]),
        ("types=project.created,user.>", vec![1, 4]),
        ("projectId=p1", vec![1, 2, 5]),
        ("tenantId=t1", vec![1, 2, 4]),
        ("userId=u1", vec![3, 4]),
        ("types=project.*&projectId=p1", vec![1]),
        ("", vec![1, 2, 3, 4, 5]),
    ];
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6]);
    for (query, expected) in cases {
        let mut stream = SseClient::connect(&server, query, Some(0)).await;
        let got = stream.events_until_seq(6, WAIT).await;
        let mut expected = expected.clone();
        expected.push(6);
        assert_eq!(
            got.iter().map(|m| m.seq).collect::<Vec<_>>(),
            expected,
            "{query}"
        );
        for m in &got {
            assert_eq!(m.data["seq"].as_u64(), Some(m.seq), "id: is the seq");
            assert_eq!(
                m.data["type"].as_str(),
                Some(m.event.as_str()),
                "event: is the type"
            );
        }
    }
    // Live: a stream opened now sees only what is published after it, filtered.
    let mut live = SseClient::connect(&server, "types=user.*", None).await;
    publish_types(
        &server,
        &[
            ("project.created", None, None, None),
            ("user.deleted", None, None, None),
        ],
    )
    .await;
    let m = live.next_event(WAIT).await.expect("a live event");
    assert_eq!((m.seq, m.event.as_str()), (8, "user.deleted"));
}

#[tokio::test]
async fn heartbeats_and_retry_hint() {
    let server = InProcessServer::start(&[("SSE_HEARTBEAT_INTERVAL", "100")]).await;
    let mut stream = SseClient::connect(&server, "", None).await;
    assert!(
        matches!(stream.next(WAIT).await, Some(Message::Retry(_))),
        "the stream opens with retry:"
    );
    let mut heartbeats = 0;
    while heartbeats < 3 {
        match stream.next(WAIT).await {
            Some(Message::Comment(_)) => heartbeats += 1,
            other => panic!("expected heartbeats, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn resume_with_header_or_query_replays_then_goes_live() {
    let server = InProcessServer::start(&[]).await;
    let first = publish_types(&server, &[("a.b", None, None, None); 10]).await;
    assert_eq!(seqs(&first).last(), Some(&10));
    for how in ["header", "query"] {
        let head = server.count().await as u64;
        let mut stream = if how == "header" {
            SseClient::connect(&server, "", Some(4)).await
        } else {
            SseClient::connect(&server, "lastEventId=4", None).await
        };
        let replayed = stream.events_until_seq(head, WAIT).await;
        assert_eq!(
            replayed.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (5..=head).collect::<Vec<_>>(),
            "{how}"
        );
        let published = server.publish_ok(&json!({"type": "a.b"})).await;
        let live = stream.next_event(WAIT).await.expect("a live event");
        assert_eq!(live.seq, published["seq"].as_u64().unwrap(), "{how}");
    }
}

/// The client receives every matching event exactly once, in order, across 20 disconnects at
/// random points while 5,000 events are published concurrently.
#[tokio::test]
async fn resume_across_random_disconnects_under_concurrent_publishing() {
    let server = std::sync::Arc::new(InProcessServer::start(&[]).await);
    const TOTAL: usize = 5_000;
    let publisher = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for t in 0..8 {
                let server = server.clone();
                tasks.push(tokio::spawn(async move {
                    for i in (t..TOTAL).step_by(8) {
                        let ty = if i % 3 == 0 {
                            "user.updated"
                        } else {
                            "project.updated"
                        };
                        server
                            .publish_ok(&json!({"type": ty, "payload": {"i": i}}))
                            .await;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    let mut received: Vec<u64> = Vec::new();
    let mut last: u64 = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..20 {
        let mut stream = SseClient::connect(&server, "types=project.*", Some(last)).await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let take = 1 + (rng % 250) as usize;
        for _ in 0..take {
            match stream.next_event(WAIT).await {
                Some(m) => {
                    received.push(m.seq);
                    last = m.seq;
                }
                None => break,
            }
        }
        // Dropping the stream closes the connection mid-flight.
    }
    publisher.await.unwrap();
    let expected: Vec<u64> = server
        .all_events()
        .await
        .iter()
        .filter(|e| e["type"] == "project.updated")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(expected.len(), TOTAL - TOTAL.div_ceil(3));
    let mut stream = SseClient::connect(&server, "types=project.*", Some(last)).await;
    let rest = stream
        .events_until_seq(*expected.last().unwrap(), WAIT)
        .await;
    received.extend(rest.iter().map(|m| m.seq));
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    assert_eq!(received, expected, "exactly the matching events");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A client that stops reading is sent a final `lagged` event and closed; the server's memory
/// does not grow with what the client failed to read.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_as_lagged_with_memory_bounded() {
    let server = TestServer::start(&[("SSE_QUEUE", "16")]).await;
    let payload = "x".repeat(8 * 1024);
    let publish_mb = |n: usize| {
        let batch: Vec<Value> = (0..100)
            .map(|_| json!({"type": "bulk.data", "payload": {"blob": payload}}))
            .collect();
        let server = &server;
        async move {
            for _ in 0..n {
                let r = server.publish(&Value::Array(batch.clone())).await;
                assert_eq!(r.status, StatusCode::CREATED);
            }
        }
    };
    // Warm up: the hot log reaches its steady size before measuring.
    publish_mb(60).await;
    let before = rss_kib(server.pid());
    let mut stuck = SseClient::connect(&server, "types=bulk.*", None).await;
    // ~96 MiB to a client that reads nothing: far more than every socket buffer on the way.
    publish_mb(120).await;
    let after = rss_kib(server.pid());
    assert!(
        after < before + 40 * 1024,
        "server RSS grew from {before} KiB to {after} KiB while a client was not reading"
    );
    let mut last_seq = 0;
    let lag = loop {
        match stuck.next(WAIT).await {
            Some(Message::Event(m)) => {
                assert!(m.seq > last_seq);
                last_seq = m.seq;
            }
            Some(Message::Control { event, data }) => break (event, data),
            Some(_) => {}
            None => panic!("the stream ended without a lagged event"),
        }
    };
    assert_eq!(lag.0, "lagged");
    assert_eq!(
        lag.1["lastEventId"],
        json!(last_seq.to_string()),
        "names the last delivered event"
    );
    assert!(
        last_seq < 18_000,
        "the client did not get everything before lagging"
    );
    assert!(
        stuck.next(WAIT).await.is_none(),
        "the server closes the stream"
    );
    // The client resumes from the store and gets the rest, in order.
    let mut resumed = SseClient::connect(&server, "types=bulk.*", Some(last_seq)).await;
    let rest = resumed.events_until_seq(18_000, WAIT).await;
    assert_eq!(rest.first().map(|m| m.seq), Some(last_seq + 1));
    assert_eq!(rest.last().map(|m| m.seq), Some(18_000));
}

#[tokio::test]
async fn connection_limit_is_answered_with_503_and_retry_after() {
    let server = InProcessServer::start(&[("SSE_MAX_CONNECTIONS", "2")]).await;
    let _a = SseClient::connect(&server, "", None).await;
    let _b = SseClient::connect(&server, "", None).await;
    let r = server
        .client()
        .get(server.url("/v1/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    drop(_a);
    // The slot frees once the server notices the closed connection.
    let mut ok = false;
    for _ in 0..100 {
        let r = server
            .client()
            .get(server.url("/v1/stream"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a closed stream frees its slot");
}

#[tokio::test]
async fn bad_stream_parameters_are_problems() {
    let server = InProcessServer::start(&[]).await;
    for (query, field) in [
        ("types=Project.*", "types"),
        ("types=a..b", "types"),
        ("lastEventId=abc", "lastEventId"),
        ("projectId=", "projectId"),
        ("bogus=1", "bogus"),
    ] {
        let r = server.get("/v1/stream", &parse_query(query)).await;
        r.assert_problem_field(StatusCode::BAD_REQUEST, field);
    }
    let r = server
        .client()
        .get(server.url("/v1/stream"))
        .header("last-event-id", "x1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

fn parse_query(q: &str) -> Vec<(&str, &str)> {
    q.split('&').filter_map(|kv| kv.split_once('=')).collect()
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_exits_cleanly() {
    let mut server = TestServer::start(&[]).await;
    let mut stream = SseClient::connect(&server, "", None).await;
    server.terminate();
    let mut ended = false;
    for _ in 0..10 {
        if stream.next(WAIT).await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream ends on shutdown");
    assert!(server.wait_exit().await.success());
}
