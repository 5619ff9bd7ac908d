//! Optimistic concurrency: `Expected-Last-Seq` on `POST /v1/events`, the `409
//! /problems/wrong-expected-seq` answer, and the project's `lastSeq` on
//! `GET /v1/projects/{projectId}/events`; racing writers on SQLite and on two processes sharing
//! one PostgreSQL schema.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::client::ApiClient;
use crate::common::pg::Schema;
use crate::common::{InProcessServer, Reply, TestServer, seq};

/// `POST /v1/events` with `body` and `Expected-Last-Seq: expected`.
async fn publish_expecting(server: &ApiClient, body: &Value, expected: &str) -> Reply {
    let resp = server
        .client()
        .post(server.url("/v1/events"))
        .header("Expected-Last-Seq", expected)
        .json(body)
        .send()
        .await
        .expect("POST /v1/events");
    Reply::read(resp).await
}

/// The `lastSeq` that `GET /v1/projects/{project}/events` reports.
async fn last_seq(server: &ApiClient, project: &str) -> u64 {
    let page = server
        .get(&format!("/v1/projects/{project}/events"), &[("limit", "1")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["lastSeq"]
        .as_u64()
        .unwrap_or_else(|| panic!("a lastSeq: {}", page.body))
}

fn assert_wrong_expected_seq(reply: &Reply, actual: u64) {
    reply.assert_problem(StatusCode::CONFLICT);
    assert_eq!(
        reply.body["type"],
        json!("/problems/wrong-expected-seq"),
        "{}",
        reply.body
    );
    assert_eq!(reply.body["lastSeq"], json!(actual), "{}", reply.body);
}

#[tokio::test]
async fn expected_last_seq_stores_only_when_it_holds_and_otherwise_answers_409_with_the_actual_seq()
{
    let server = InProcessServer::start(&[]).await;
    assert_eq!(last_seq(&server, "p1").await, 0, "a project without events");

    let event = |id: &str| json!({"id": id, "type": "project.updated", "projectId": "p1"});
    let first = publish_expecting(&server, &event("a"), "0").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let s1 = seq(&first.body);
    // Other projects move the global seq, not p1's.
    server
        .publish_ok(&json!({"type": "project.updated", "projectId": "p2"}))
        .await;
    assert_eq!(last_seq(&server, "p1").await, s1);

    let stale = publish_expecting(&server, &event("b"), "0").await;
    assert_wrong_expected_seq(&stale, s1);
    assert!(
        stale.body["detail"].as_str().unwrap().contains("p1"),
        "{}",
        stale.body
    );
    assert_eq!(server.get_event("b").await.status, StatusCode::NOT_FOUND);

    let second = publish_expecting(&server, &event("b"), &s1.to_string()).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let s2 = seq(&second.body);
    // A retry of a stored publish is answered as stored, whatever its expectation.
    let retry = publish_expecting(&server, &event("b"), &s1.to_string()).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(seq(&retry.body), s2);

    // A batch applies the expectation to its first event's project, and is stored whole or not.
    let batch = json!([
        {"id": "c", "type": "project.updated", "projectId": "p1"},
        {"id": "d", "type": "project.updated", "projectId": "p3"},
    ]);
    let wrong = publish_expecting(&server, &batch, &s1.to_string()).await;
    assert_wrong_expected_seq(&wrong, s2);
    assert_eq!(server.get_event("d").await.status, StatusCode::NOT_FOUND);
    let stored = publish_expecting(&server, &batch, &s2.to_string()).await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
    assert_eq!(last_seq(&server, "p1").await, seq(&stored.body[0]));
    assert_eq!(last_seq(&server, "p3").await, seq(&stored.body[1]));

    // `lastSeq` is the project's, whatever the page's filters.
    let page = server
        .get("/v1/projects/p1/events", &[("type", "user.*")])
        .await;
    assert_eq!(page.body["events"], json!([]));
    assert_eq!(page.body["lastSeq"], json!(seq(&stored.body[0])));
}

#[tokio::test]
async fn a_bad_expected_last_seq_or_an_event_without_project_is_a_400_naming_it() {
    let server = InProcessServer::start(&[]).await;
    let event = json!({"type": "project.updated", "projectId": "p1"});
    for bad in ["", "-1", "1.0", "x", "+1", "99999999999999999999"] {
        let reply = publish_expecting(&server, &event, bad).await;
        reply.assert_problem_field(StatusCode::BAD_REQUEST, "Expected-Last-Seq");
    }
    let reply = publish_expecting(&server, &json!({"type": "project.updated"}), "0").await;
    reply.assert_problem_field(StatusCode::BAD_REQUEST, "projectId");
    let reply = publish_expecting(
        &server,
        &json!([{"type": "project.updated"}, {"type": "project.updated", "projectId": "p1"}]),
        "0",
    )
    .await;
    reply.assert_problem_field(StatusCode::BAD_REQUEST, "0/projectId");
    let all = server.query(&[]).await;
    assert_eq!(all.body["events"], json!([]), "nothing was stored");
}

/// Rounds of `writers` publishes of project `race` racing with the same `Expected-Last-Seq`,
/// spread over `servers`: exactly one wins each round, every other gets `409` with the
/// winner's seq.
async fn race(servers: &[&ApiClient], writers: usize, rounds: usize) {
    let mut last = 0;
    for round in 0..rounds {
        let start = Arc::new(tokio::sync::Barrier::new(writers));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let server = servers[w % servers.len()];
            let client = server.client().clone();
            let url = server.url("/v1/events");
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                let body = json!({
                    "id": format!("r{round}-w{w}"),
                    "type": "project.updated",
                    "projectId": "race",
                });
                start.wait().await;
                let resp = client
                    .post(url)
                    .header("Expected-Last-Seq", last.to_string())
                    .json(&body)
                    .send()
                    .await
                    .expect("POST /v1/events");
                Reply::read(resp).await
            }));
        }
        let mut won = Vec::new();
        let mut lost = Vec::new();
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                StatusCode::CREATED => won.push(seq(&reply.body)),
                StatusCode::CONFLICT => {
                    assert_eq!(reply.body["type"], json!("/problems/wrong-expected-seq"));
                    lost.push(reply.body["lastSeq"].as_u64().unwrap());
                }
                other => panic!("round {round}: {other}: {}", reply.body),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: one winner, got {won:?}");
        assert!(won[0] > last);
        assert_eq!(lost, vec![won[0]; writers - 1], "round {round}");
        last = won[0];
        for server in servers {
            assert_eq!(last_seq(server, "race").await, last);
        }
    }
    let page = servers[0]
        .get("/v1/projects/race/events", &[("limit", "1000")])
        .await;
    assert_eq!(
        page.body["events"].as_array().unwrap().len(),
        rounds,
        "one event stored per round"
    );
}

#[tokio::test]
async fn eight_writers_racing_with_one_expected_seq_on_sqlite_one_wins_each_round() {
    let server = TestServer::start(&[]).await;
    race(&[&server], 8, 20).await;
}

#[tokio::test]
async fn eight_writers_racing_with_one_expected_seq_on_two_postgres_processes_one_wins_each_round()
{
    let Some(schema) = Schema::create("occ", "race") else {
        return;
    };
    let url = schema.store_url();
    let a = TestServer::start(&[("EVENT_STORE_URL", &url)]).await;
    let b = TestServer::start(&[("EVENT_STORE_URL", &url)]).await;
    race(&[&a, &b], 8, 20).await;
}
