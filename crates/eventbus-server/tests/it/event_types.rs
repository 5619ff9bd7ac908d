//! `/v1/event-types`: the catalogue, JSON Schema validation of payloads, strict mode, and the
//! counts of stored events per type within each key's scope.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{ApiClient, InProcessServer, TestServer};

fn order_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "total": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "enum": ["EUR", "USD"]}
        },
        "required": ["total"]
    })
}

fn type_names(list: &Value) -> Vec<String> {
    list["eventTypes"]
        .as_array()
        .expect("eventTypes is an array")
        .iter()
        .map(|t| t["type"].as_str().expect("a type name").to_owned())
        .collect()
}

#[tokio::test]
async fn schema_is_enforced_on_publish() {
    let server = InProcessServer::start(&[]).await;

    let created = server
        .put_event_type(
            "order.placed",
            &json!({"description": "An order", "schema": order_schema()}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["type"], json!("order.placed"));
    assert_eq!(created.body["schema"], order_schema());

    let updated = server
        .put_event_type(
            "order.placed",
            &json!({"description": "An order placed", "schema": order_schema()}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["description"], json!("An order placed"));

    let got = server.get("/v1/event-types/order.placed", &[]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["schema"], order_schema());

    let bad = server
        .publish(&json!({"type": "order.placed", "payload": {"total": "12"}}))
        .await;
    bad.assert_problem_field(StatusCode::UNPROCESSABLE_ENTITY, "payload/total");
    let missing = server
        .publish(&json!({"type": "order.placed", "payload": {"currency": "EUR"}}))
        .await;
    missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    let field = missing.body["errors"][0]["field"]
        .as_str()
        .unwrap_or_default();
    assert!(field.starts_with("payload"), "{}", missing.body);
    // In a batch, the error names the event's index.
    let batch = server
        .publish(&json!([
            {"type": "order.placed", "payload": {"total": 1}},
            {"type": "order.placed", "payload": {"total": -1}}
        ]))
        .await;
    batch.assert_problem_field(StatusCode::UNPROCESSABLE_ENTITY, "1/payload/total");
    assert_eq!(server.count().await, 0, "refused events are not stored");

    let ok = server
        .publish(&json!({"type": "order.placed", "payload": {"total": 12.5, "currency": "EUR"}}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(server.count().await, 1);
}

#[tokio::test]
async fn invalid_schema_is_refused_and_the_old_one_stays() {
    let server = InProcessServer::start(&[]).await;
    let created = server
        .put_event_type("order.placed", &json!({"schema": order_schema()}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let reply = server
        .put_event_type("order.placed", &json!({"schema": {"type": "no-such-type"}}))
        .await;
    reply.assert_problem_field(StatusCode::BAD_REQUEST, "schema");
    let reply = server
        .put_event_type("order.refunded", &json!({"schema": {"minimum": "zero"}}))
        .await;
    reply.assert_problem_field(StatusCode::BAD_REQUEST, "schema");
    assert_eq!(
        server
            .get("/v1/event-types/order.refunded", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let bad = server
        .publish(&json!({"type": "order.placed", "payload": {"total": "x"}}))
        .await;
    bad.assert_problem_field(StatusCode::UNPROCESSABLE_ENTITY, "payload/total");
}

#[tokio::test]
async fn catalogue_lists_builtins_and_registered_types() {
    let server = InProcessServer::start(&[]).await;
    let before = server.get("/v1/event-types", &[]).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    let names = type_names(&before.body);
    for builtin in [
        "project.created",
        "integration.status_changed",
        "user.deleted",
        "menu.item_updated",
        "plugin.uninstalled",
    ] {
        assert!(
            names.iter().any(|n| n == builtin),
            "{builtin} missing from {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "order.placed"));

    let created = server
        .put_event_type("order.placed", &json!({"description": "An order"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let after = type_names(&server.get("/v1/event-types", &[]).await.body);
    assert!(after.iter().any(|n| n == "order.placed"), "{after:?}");
    assert!(after.iter().any(|n| n == "project.created"), "{after:?}");
    assert_eq!(after.len(), names.len() + 1);

    let builtin = server.get("/v1/event-types/project.created", &[]).await;
    assert_eq!(builtin.status, StatusCode::OK);
    assert_eq!(builtin.body["builtin"], json!(true));
}

#[tokio::test]
async fn registered_types_and_schemas_survive_a_restart() {
    let mut server = TestServer::start(&[]).await;
    let created = server
        .put_event_type("order.placed", &json!({"schema": order_schema()}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    server.terminate();
    assert!(server.wait_exit().await.success());
    server.restart().await;
    let bad = server
        .publish(&json!({"type": "order.placed", "payload": {"total": "x"}}))
        .await;
    bad.assert_problem_field(StatusCode::UNPROCESSABLE_ENTITY, "payload/total");
}

#[tokio::test]
async fn strict_mode_refuses_unregistered_types() {
    let server = InProcessServer::start(&[("STRICT_EVENT_TYPES", "true")]).await;
    let reply = server
        .publish(&json!({"type": "order.placed", "payload": {}}))
        .await;
    reply.assert_problem_field(StatusCode::UNPROCESSABLE_ENTITY, "type");
    assert_eq!(server.count().await, 0);

    server.publish_ok(&json!({"type": "project.created"})).await;
    let created = server.put_event_type("order.placed", &json!({})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    server
        .publish_ok(&json!({"type": "order.placed", "payload": {}}))
        .await;
    assert_eq!(server.count().await, 2);
}

#[tokio::test]
async fn default_mode_accepts_unregistered_types() {
    let server = InProcessServer::start(&[]).await;
    server
        .publish_ok(&json!({"type": "order.placed", "payload": {"anything": true}}))
        .await;
    assert_eq!(server.count().await, 1);
}

/// `{type: count}` of `GET /v1/event-types/counts` as `client` sees it.
async fn counts_of(client: &ApiClient) -> BTreeMap<String, u64> {
    let reply = client.get("/v1/event-types/counts", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let counts = reply.body["counts"].as_array().expect("counts is an array");
    let names: Vec<&str> = counts.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted by type: {names:?}"
    );
    counts
        .iter()
        .map(|c| {
            let n = c["count"].as_u64().expect("a count");
            assert!(n > 0, "a type without events is listed: {c}");
            (c["type"].as_str().unwrap().to_owned(), n)
        })
        .collect()
}

/// `{type: count}` of the events `GET /v1/events` lists to `client`.
async fn listed_by_type(client: &ApiClient) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in client.collect("/v1/events", &[], 1000).await {
        *out.entry(e["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

// Each key counts exactly the events it may list: a tenant's key never counts another
// tenant's events, a project list or type patterns narrow the counts as they narrow the list.
#[tokio::test]
async fn counts_cover_exactly_the_events_the_key_may_list() {
    let server = InProcessServer::start(&[]).await;
    let mut batch = Vec::new();
    for (n, ty, tenant, project) in [
        (3, "project.created", Some("t_a"), Some("p1")),
        (2, "user.created", Some("t_a"), Some("p2")),
        (4, "project.created", Some("t_b"), Some("p1")),
        (1, "order.placed", Some("t_b"), None),
        (1, "menu.item_updated", None, None),
    ] {
        for _ in 0..n {
            batch.push(json!({"type": ty, "tenantId": tenant, "projectId": project}));
        }
    }
    let stored = server.publish(&Value::Array(batch)).await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);

    let everything = counts_of(&server).await;
    let expected: BTreeMap<String, u64> = [
        ("menu.item_updated", 1),
        ("order.placed", 1),
        ("project.created", 7),
        ("user.created", 2),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n))
    .collect();
    assert_eq!(everything, expected);

    let keys = [
        json!({"name": "a", "tenantId": "t_a", "permissions": ["read"]}),
        json!({"name": "b", "tenantId": "t_b", "permissions": ["read"]}),
        json!({"name": "b orders", "tenantId": "t_b", "permissions": ["read"], "types": ["order.*"]}),
        json!({"name": "p1", "projectIds": ["p1"], "permissions": ["read"]}),
        json!({"name": "a admin", "tenantId": "t_a", "permissions": ["admin", "read"]}),
    ];
    let mut seen = Vec::new();
    for body in &keys {
        let client = server.with_key(&server.create_key(body).await);
        let counts = counts_of(&client).await;
        assert_eq!(counts, listed_by_type(&client).await, "key {body}");
        seen.push(counts);
    }
    let n = |m: &BTreeMap<String, u64>, t: &str| m.get(t).copied().unwrap_or(0);
    assert_eq!(
        (n(&seen[0], "project.created"), n(&seen[0], "user.created")),
        (3, 2)
    );
    assert_eq!(
        seen[0].len(),
        2,
        "tenant A counts none of B's: {:?}",
        seen[0]
    );
    assert_eq!(
        (n(&seen[1], "project.created"), n(&seen[1], "order.placed")),
        (4, 1)
    );
    assert_eq!(seen[2].len(), 1, "type patterns narrow: {:?}", seen[2]);
    assert_eq!(seen[3].len(), 1, "projects narrow: {:?}", seen[3]);
    assert_eq!(n(&seen[3], "project.created"), 7);
    assert_eq!(seen[4], seen[0]);

    // Without `read` there is nothing to count.
    let publisher = server.with_key(
        &server
            .create_key(&json!({"name": "pub", "permissions": ["publish"]}))
            .await,
    );
    publisher
        .get("/v1/event-types/counts", &[])
        .await
        .assert_problem(StatusCode::FORBIDDEN);
    server
        .get("/v1/event-types/counts", &[("type", "project.*")])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "type");
    // `counts` is a route, not a type name: writing it is not served.
    let put = server.put_event_type("counts", &json!({})).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED, "{}", put.body);
}
