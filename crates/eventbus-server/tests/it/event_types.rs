//! `/v1/event-types`: the catalogue, JSON Schema validation of payloads, strict mode.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{InProcessServer, TestServer};

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
