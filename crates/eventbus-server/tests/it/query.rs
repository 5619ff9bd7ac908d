//! `GET /v1/events` and `GET /v1/projects/{projectId}/events`: every filter and keyset paging.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{InProcessServer, ids, seq};

/// Query parameters.
type Params = &'static [(&'static str, &'static str)];

/// Six events over two hours, one per 20 minutes, with distinct types and scopes.
async fn seed(server: &InProcessServer) -> Vec<Value> {
    let events = json!([
        {"id": "e1", "type": "project.created", "projectId": "p1", "tenantId": "t1", "userId": "u1",
         "timestamp": "2026-01-01T00:00:00Z"},
        {"id": "e2", "type": "project.updated", "projectId": "p1", "tenantId": "t1", "userId": "u2",
         "timestamp": "2026-01-01T00:20:00Z"},
        {"id": "e3", "type": "project.a.b", "projectId": "p2", "tenantId": "t1", "userId": "u1",
         "timestamp": "2026-01-01T00:40:00Z"},
        {"id": "e4", "type": "user.created", "projectId": "p2", "tenantId": "t2", "userId": "u1",
         "timestamp": "2026-01-01T01:00:00Z"},
        {"id": "e5", "type": "integration.created", "tenantId": "t2",
         "timestamp": "2026-01-01T01:20:00Z"},
        {"id": "e6", "type": "menu.item_updated", "projectId": "p1", "tenantId": "t2",
         "timestamp": "2026-01-01T01:40:00Z"}
    ]);
    let reply = server.publish(&events).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn type_patterns_select_the_right_events() {
    let server = InProcessServer::start(&[]).await;
    seed(&server).await;
    let cases: &[(&str, &[&str])] = &[
        ("project.created", &["e1"]),
        ("project.*", &["e1", "e2"]),
        ("project.>", &["e1", "e2", "e3"]),
        ("project.a.*", &["e3"]),
        (">", &["e1", "e2", "e3", "e4", "e5", "e6"]),
        ("project.created,user.*", &["e1", "e4"]),
        (
            "user.>,menu.item_updated,integration.*",
            &["e4", "e5", "e6"],
        ),
        ("plugin.installed", &[]),
    ];
    for (pattern, want) in cases {
        assert_eq!(
            server.query_ids(&[("type", pattern)]).await,
            *want,
            "type={pattern}"
        );
    }
}

#[tokio::test]
async fn scope_filters_select_the_right_events() {
    let server = InProcessServer::start(&[]).await;
    seed(&server).await;
    let cases: &[(Params, &[&str])] = &[
        (&[("projectId", "p1")], &["e1", "e2", "e6"]),
        (&[("projectId", "p2")], &["e3", "e4"]),
        (&[("projectId", "nope")], &[]),
        (&[("tenantId", "t2")], &["e4", "e5", "e6"]),
        (&[("userId", "u1")], &["e1", "e3", "e4"]),
        (&[("tenantId", "t1"), ("userId", "u1")], &["e1", "e3"]),
        (&[("type", "project.>"), ("projectId", "p1")], &["e1", "e2"]),
    ];
    for (params, want) in cases {
        assert_eq!(server.query_ids(params).await, *want, "{params:?}");
    }
}

#[tokio::test]
async fn time_range_is_from_inclusive_to_exclusive() {
    let server = InProcessServer::start(&[]).await;
    seed(&server).await;
    let cases: &[(Params, &[&str])] = &[
        (
            &[("from", "2026-01-01T00:40:00Z")],
            &["e3", "e4", "e5", "e6"],
        ),
        (&[("to", "2026-01-01T00:40:00Z")], &["e1", "e2"]),
        (
            &[
                ("from", "2026-01-01T00:20:00Z"),
                ("to", "2026-01-01T01:20:00Z"),
            ],
            &["e2", "e3", "e4"],
        ),
        // Any offset is accepted and compared as the same instant.
        (
            &[
                ("from", "2026-01-01T02:00:00+01:00"),
                ("to", "2026-01-01T02:20:00+01:00"),
            ],
            &["e4"],
        ),
        (
            &[
                ("from", "2026-01-01T00:00:00.000001Z"),
                ("type", "project.*"),
            ],
            &["e2"],
        ),
        (&[("from", "2026-01-02T00:00:00Z")], &[]),
    ];
    for (params, want) in cases {
        assert_eq!(server.query_ids(params).await, *want, "{params:?}");
    }
}

#[tokio::test]
async fn after_continues_from_a_seq() {
    let server = InProcessServer::start(&[]).await;
    let stored = seed(&server).await;
    let third = seq(&stored[2]).to_string();
    assert_eq!(
        server.query_ids(&[("after", &third)]).await,
        ["e4", "e5", "e6"]
    );
    assert_eq!(
        server
            .query_ids(&[("after", &third), ("tenantId", "t1")])
            .await,
        Vec::<String>::new()
    );
    assert_eq!(server.query_ids(&[("after", "0")]).await.len(), 6);
    let last = seq(&stored[5]).to_string();
    let reply = server.query(&[("after", &last)]).await;
    assert_eq!(reply.body, json!({"events": [], "nextAfter": null}));
}

#[tokio::test]
async fn limit_pages_with_next_after() {
    let server = InProcessServer::start(&[]).await;
    let stored = seed(&server).await;
    let first = server.query(&[("limit", "4")]).await;
    assert_eq!(ids(&first.body["events"]), ["e1", "e2", "e3", "e4"]);
    assert_eq!(first.body["nextAfter"], json!(seq(&stored[3])));
    let next = first.body["nextAfter"].to_string();
    let second = server.query(&[("limit", "4"), ("after", &next)]).await;
    assert_eq!(ids(&second.body["events"]), ["e5", "e6"]);
    assert_eq!(second.body["nextAfter"], Value::Null);
    // A page that ends exactly on the last event says there is no more.
    let exact = server.query(&[("limit", "6")]).await;
    assert_eq!(exact.body["events"].as_array().unwrap().len(), 6);
    assert_eq!(exact.body["nextAfter"], Value::Null);
}

#[tokio::test]
async fn project_route_lists_the_projects_events() {
    let server = InProcessServer::start(&[]).await;
    seed(&server).await;
    let reply = server.get("/v1/projects/p1/events", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(ids(&reply.body["events"]), ["e1", "e2", "e6"]);
    assert_eq!(reply.body["nextAfter"], Value::Null);
    // The project's last seq, for `Expected-Last-Seq`.
    assert_eq!(reply.body["lastSeq"], reply.body["events"][2]["seq"]);

    let typed = server
        .get("/v1/projects/p1/events", &[("type", "project.*")])
        .await;
    assert_eq!(ids(&typed.body["events"]), ["e1", "e2"]);

    let paged = server.collect("/v1/projects/p1/events", &[], 1).await;
    assert_eq!(ids(&Value::Array(paged)), ["e1", "e2", "e6"]);

    let none = server.get("/v1/projects/p9/events", &[]).await;
    assert_eq!(
        none.body,
        json!({"events": [], "nextAfter": null, "lastSeq": 0})
    );
}

/// 10,000 events, paged with two page sizes: every stored seq exactly once, in order.
#[tokio::test]
async fn paging_over_ten_thousand_events_has_no_duplicates_or_gaps() {
    let server = InProcessServer::start(&[]).await;
    let mut stored: Vec<u64> = Vec::with_capacity(10_000);
    for b in 0..10 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| {
                let t = if i % 2 == 0 {
                    "project.updated"
                } else {
                    "user.updated"
                };
                let p = if i % 3 == 0 { "p3" } else { "p" };
                json!({"type": t, "projectId": p, "payload": {"b": b, "i": i}})
            })
            .collect();
        let reply = server.publish(&Value::Array(batch)).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "batch {b}: {}",
            reply.body
        );
        stored.extend(reply.body.as_array().unwrap().iter().map(seq));
    }
    assert_eq!(stored.len(), 10_000);
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "seqs of successive batches increase"
    );

    for limit in [1000, 333] {
        let seen: Vec<u64> = server
            .collect("/v1/events", &[], limit)
            .await
            .iter()
            .map(seq)
            .collect();
        assert_eq!(seen.len(), 10_000, "limit={limit}");
        assert!(
            seen == stored,
            "limit={limit}: paging does not return exactly the stored seqs in order"
        );
    }

    // Filtered walks return exactly the matching events, each once, also with overlapping
    // patterns and on the project route.
    let by_index = |keep: &dyn Fn(usize) -> bool| -> Vec<u64> {
        stored
            .iter()
            .enumerate()
            .filter(|(n, _)| keep(n % 1000))
            .map(|(_, s)| *s)
            .collect()
    };
    let walks: [(&str, Params, Vec<u64>); 4] = [
        (
            "/v1/events",
            &[("type", "project.*")],
            by_index(&|i| i % 2 == 0),
        ),
        (
            "/v1/events",
            &[("type", "project.updated,project.>,user.*,project.*")],
            stored.clone(),
        ),
        (
            "/v1/events",
            &[("type", "user.>"), ("projectId", "p3")],
            by_index(&|i| i % 2 == 1 && i % 3 == 0),
        ),
        ("/v1/projects/p3/events", &[], by_index(&|i| i % 3 == 0)),
    ];
    for (path, params, want) in walks {
        let seen: Vec<u64> = server
            .collect(path, params, 333)
            .await
            .iter()
            .map(seq)
            .collect();
        assert!(
            seen == want,
            "{path} {params:?}: {} events instead of {}",
            seen.len(),
            want.len()
        );
    }
}
