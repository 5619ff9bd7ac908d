//! `POST /v1/events` (one event or a batch), `GET /v1/events/{id}` and idempotency.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{InProcessServer, ids, seq};

#[tokio::test]
async fn single_event_round_trips_through_publish_get_and_query() {
    let server = InProcessServer::start(&[]).await;
    let stored = server
        .publish_ok(&json!({
            "type": "project.created",
            "payload": {"name": "Alpha", "tags": ["a", "b"], "n": 1.5},
            "projectId": "p_1",
            "tenantId": "t_1",
            "userId": "u_1",
            "metadata": {"correlationId": "c-1", "source": "tests"}
        }))
        .await;
    let id = stored["id"].as_str().expect("a generated id").to_owned();
    assert!(!id.is_empty());
    assert!(seq(&stored) >= 1);
    assert_eq!(stored["type"], json!("project.created"));
    assert_eq!(
        stored["payload"],
        json!({"name": "Alpha", "tags": ["a", "b"], "n": 1.5})
    );
    assert_eq!(stored["projectId"], json!("p_1"));
    assert_eq!(stored["tenantId"], json!("t_1"));
    assert_eq!(stored["userId"], json!("u_1"));
    assert_eq!(stored["metadata"]["correlationId"], json!("c-1"));
    assert!(
        stored["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{stored}"
    );

    let got = server.get_event(&id).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.content_type, "application/json");
    assert_eq!(got.body, stored);

    let page = server.query(&[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["events"], json!([stored]));
    assert_eq!(page.body["nextAfter"], Value::Null);
}

#[tokio::test]
async fn given_id_and_timestamp_are_kept() {
    let server = InProcessServer::start(&[]).await;
    let stored = server
        .publish_ok(&json!({
            "id": "evt-given-1",
            "type": "user.created",
            "timestamp": "2026-03-04T05:06:07.123+02:00"
        }))
        .await;
    assert_eq!(stored["id"], json!("evt-given-1"));
    // Converted to UTC; millisecond precision is kept.
    assert_eq!(stored["timestamp"], json!("2026-03-04T03:06:07.123Z"));
    assert_eq!(stored["payload"], Value::Null);
    assert_eq!(server.get_event("evt-given-1").await.body, stored);
}

#[tokio::test]
async fn unknown_id_is_a_404_problem() {
    let server = InProcessServer::start(&[]).await;
    server
        .publish_ok(&json!({"id": "present", "type": "user.created"}))
        .await;
    let reply = server.get_event("absent").await;
    reply.assert_problem_detail(StatusCode::NOT_FOUND, "absent");
}

#[tokio::test]
async fn batch_returns_every_event_with_increasing_seq() {
    let server = InProcessServer::start(&[]).await;
    server.publish_ok(&json!({"type": "user.created"})).await;
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("b-{i}"), "type": "project.updated", "payload": {"i": i}}))
        .collect();
    let reply = server.publish(&Value::Array(batch)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let stored = reply.body.as_array().expect("an array of stored events");
    assert_eq!(ids(&reply.body), ["b-0", "b-1", "b-2", "b-3", "b-4"]);
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e["payload"], json!({"i": i}));
    }
    let seqs: Vec<u64> = stored.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs are not increasing: {seqs:?}"
    );
    assert!(
        seqs[0] > 1,
        "the batch comes after the first event: {seqs:?}"
    );

    let all = server.all_events().await;
    assert_eq!(all.len(), 6);
    assert_eq!(&all[1..], stored.as_slice());
}

#[tokio::test]
async fn batch_with_one_invalid_event_stores_none() {
    let server = InProcessServer::start(&[]).await;
    server.publish_ok(&json!({"type": "user.created"})).await;
    let reply = server
        .publish(&json!([
            {"id": "ok-0", "type": "project.created"},
            {"id": "bad-1", "type": "Project.Created"},
            {"id": "ok-2", "type": "project.created"}
        ]))
        .await;
    reply.assert_problem_field(StatusCode::BAD_REQUEST, "1/type");
    assert_eq!(server.count().await, 1);
    assert_eq!(server.get_event("ok-0").await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.get_event("ok-2").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn same_id_same_content_is_stored_once() {
    let server = InProcessServer::start(&[]).await;
    let first = server
        .publish(&json!({"id": "idem-1", "type": "project.created", "projectId": "p", "payload": {"a": 1, "b": [1, 2]}}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);

    // The same content, formatted differently and with keys in another order.
    let again = server
        .publish_raw(
            r#"{ "payload" : { "b" : [ 1 , 2 ] , "a" : 1 } , "projectId":"p", "type" : "project.created" , "id" : "idem-1" }"#,
            Some("application/json"),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(seq(&again.body), seq(&first.body));
    assert_eq!(again.body, first.body, "the stored event is returned");
    assert_eq!(server.count().await, 1);
}

#[tokio::test]
async fn same_id_other_content_is_a_409_problem() {
    let server = InProcessServer::start(&[]).await;
    let first = server
        .publish_ok(&json!({"id": "idem-2", "type": "project.created", "payload": {"a": 1}}))
        .await;

    let reply = server
        .publish(&json!({"id": "idem-2", "type": "project.created", "payload": {"a": 2}}))
        .await;
    reply.assert_problem(StatusCode::CONFLICT);
    let field = reply.body["errors"][0]["field"]
        .as_str()
        .unwrap_or_default();
    assert!(
        field == "id" || field.ends_with("/id"),
        "the problem names the id: {}",
        reply.body
    );

    assert_eq!(server.count().await, 1);
    assert_eq!(
        server.get_event("idem-2").await.body,
        first,
        "the stored event is unchanged"
    );
}

#[tokio::test]
async fn batch_with_a_conflicting_id_stores_nothing() {
    let server = InProcessServer::start(&[]).await;
    server
        .publish_ok(&json!({"id": "taken", "type": "project.created", "payload": {"v": 1}}))
        .await;

    let reply = server
        .publish(&json!([
            {"id": "new-a", "type": "project.updated"},
            {"id": "taken", "type": "project.created", "payload": {"v": 2}},
            {"id": "new-b", "type": "project.updated"}
        ]))
        .await;
    reply.assert_problem_field(StatusCode::CONFLICT, "1/id");
    assert_eq!(server.count().await, 1);
    assert_eq!(
        server.get_event("new-a").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get_event("new-b").await.status,
        StatusCode::NOT_FOUND
    );
    // Publishing goes on normally after the refused batch.
    let next = server
        .publish_ok(&json!({"id": "new-c", "type": "project.updated"}))
        .await;
    assert_eq!(
        ids(&Value::Array(server.all_events().await)),
        ["taken", "new-c"]
    );
    assert!(seq(&next) > 1);
}

#[tokio::test]
async fn batch_repeating_an_id_with_other_content_stores_nothing() {
    let server = InProcessServer::start(&[]).await;
    let reply = server
        .publish(&json!([
            {"id": "twice", "type": "project.created", "payload": {"v": 1}},
            {"id": "twice", "type": "project.created", "payload": {"v": 2}}
        ]))
        .await;
    reply.assert_problem(StatusCode::CONFLICT);
    assert_eq!(server.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_id_store_it_once() {
    let server = std::sync::Arc::new(InProcessServer::start(&[]).await);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            // The same event; retries may carry other metadata, which is not part of the content.
            let same = server
                .publish(
                    &json!({"id": "race", "type": "project.created", "payload": {"v": 1},
                                 "metadata": {"attempt": t.to_string()}}),
                )
                .await;
            let other = server
                .publish(&json!({"id": "race-2", "type": "project.created", "payload": {"t": t}}))
                .await;
            (same, other)
        }));
    }
    let mut same_seqs = Vec::new();
    let (mut created, mut conflicts) = (0, 0);
    let mut other_created = 0;
    for task in tasks {
        let (same, other) = task.await.unwrap();
        match same.status {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            s => panic!("a retry got {s}: {}", same.body),
        }
        same_seqs.push(seq(&same.body));
        match other.status {
            StatusCode::CREATED => other_created += 1,
            StatusCode::CONFLICT => {
                other.assert_problem(StatusCode::CONFLICT);
                conflicts += 1;
            }
            s => panic!("a conflicting publish got {s}: {}", other.body),
        }
    }
    assert_eq!(
        created, 1,
        "exactly one of the identical publishes creates the event"
    );
    assert!(
        same_seqs.iter().all(|s| *s == same_seqs[0]),
        "every retry sees one seq: {same_seqs:?}"
    );
    assert_eq!(
        (other_created, conflicts),
        (1, 15),
        "one wins, every other content is a conflict"
    );
    assert_eq!(server.count().await, 2);
}

#[tokio::test]
async fn timestamps_keep_microseconds_and_any_era() {
    let server = InProcessServer::start(&[]).await;
    let cases = [
        ("2026-03-04T05:06:07.123456Z", "2026-03-04T05:06:07.123456Z"),
        (
            "2026-03-04T05:06:07.123456789Z",
            "2026-03-04T05:06:07.123456Z",
        ),
        ("2026-03-04T05:06:07Z", "2026-03-04T05:06:07.000Z"),
        ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.500Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ];
    for (sent, want) in cases {
        let stored = server
            .publish_ok(&json!({"type": "user.updated", "timestamp": sent}))
            .await;
        assert_eq!(stored["timestamp"], json!(want), "sent {sent}");
        let id = stored["id"].as_str().unwrap();
        assert_eq!(
            server.get_event(id).await.body["timestamp"],
            json!(want),
            "read back {sent}"
        );
    }
}

#[tokio::test]
async fn ids_and_scopes_with_reserved_characters_round_trip() {
    let server = InProcessServer::start(&[]).await;
    let stored = server
        .publish_ok(
            &json!({"id": "a/b c?d#ü%2F", "type": "project.created", "projectId": "p 1/ü?x"}),
        )
        .await;
    let got = server.get_event("a%2Fb%20c%3Fd%23%C3%BC%252F").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body, stored);
    let listed = server
        .get("/v1/projects/p%201%2F%C3%BC%3Fx/events", &[])
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(ids(&listed.body["events"]), ["a/b c?d#ü%2F"]);
    assert_eq!(
        server.query_ids(&[("projectId", "p 1/ü?x")]).await,
        ["a/b c?d#ü%2F"]
    );
}
