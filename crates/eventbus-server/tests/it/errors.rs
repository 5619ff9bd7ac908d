//! Every bad input is answered with a 4xx `application/problem+json` that names what is wrong,
//! and leaves the store as it was.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{InProcessServer, Reply};

/// What a problem must name.
pub(crate) enum Names {
    /// `errors[0].field` is exactly this.
    Field(&'static str),
    /// `detail` mentions this.
    Detail(&'static str),
}

/// Small limits so that oversize bodies stay small.
const LIMITS: &[(&str, &str)] = &[
    ("MAX_REQUEST_BYTES", "4096"),
    ("MAX_PAYLOAD_BYTES", "1024"),
    ("MAX_BATCH_EVENTS", "5"),
];

/// A server holding two events.
async fn seeded() -> InProcessServer {
    let server = InProcessServer::start(LIMITS).await;
    server
        .publish_ok(&json!({"type": "project.created", "projectId": "p1"}))
        .await;
    server.publish_ok(&json!({"type": "user.created"})).await;
    server
}

pub(crate) fn check(what: &str, reply: &Reply, status: StatusCode, names: &Names) {
    match names {
        Names::Field(f) => {
            assert_eq!(
                reply.body["errors"][0]["field"],
                json!(f),
                "{what}: the problem names another field: {}",
                reply.body
            )
        }
        Names::Detail(d) => {
            let detail = reply.body["detail"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            assert!(
                detail.contains(&d.to_lowercase()),
                "{what}: detail does not mention `{d}`: {}",
                reply.body
            )
        }
    }
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    reply.assert_problem(status);
}

/// What is sent, with what content type, and the problem expected.
type BodyCase = (
    &'static str,
    Vec<u8>,
    Option<&'static str>,
    StatusCode,
    Names,
);

/// Sends each body and checks the problem and that nothing was stored.
async fn refuse_bodies(server: &InProcessServer, cases: Vec<BodyCase>) {
    let before = server.all_events().await;
    for (what, body, content_type, status, names) in cases {
        let reply = server.publish_raw(body, content_type).await;
        check(what, &reply, status, &names);
        assert_eq!(
            server.all_events().await,
            before,
            "{what}: the store changed"
        );
    }
}

fn bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Query parameters.
type Params = &'static [(&'static str, &'static str)];

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn oversize_bodies_payloads_and_batches_are_413() {
    let server = seeded().await;
    let big = "x".repeat(900);
    let big_batch: Vec<Value> = (0..5)
        .map(|_| json!({"type": "project.updated", "payload": {"s": big}}))
        .collect();
    assert!(bytes(Value::Array(big_batch.clone())).len() > 4096);
    refuse_bodies(
        &server,
        vec![
            ("body over MAX_REQUEST_BYTES", bytes(Value::Array(big_batch)), JSON, StatusCode::PAYLOAD_TOO_LARGE, Names::Detail("body")),
            (
                "single event over MAX_REQUEST_BYTES",
                bytes(json!({"type": "project.updated", "payload": {"s": "y".repeat(5000)}})),
                JSON,
                StatusCode::PAYLOAD_TOO_LARGE,
                Names::Detail("body"),
            ),
            (
                "payload over MAX_PAYLOAD_BYTES",
                bytes(json!({"type": "project.updated", "payload": {"s": "z".repeat(1100)}})),
                JSON,
                StatusCode::PAYLOAD_TOO_LARGE,
                Names::Field("payload"),
            ),
            (
                "payload over MAX_PAYLOAD_BYTES in a batch",
                bytes(json!([{"type": "project.updated"}, {"type": "project.updated", "payload": "z".repeat(1100)}])),
                JSON,
                StatusCode::PAYLOAD_TOO_LARGE,
                Names::Field("1/payload"),
            ),
            ("empty batch", b"[]".to_vec(), JSON, StatusCode::PAYLOAD_TOO_LARGE, Names::Detail("batch")),
            (
                "batch over MAX_BATCH_EVENTS",
                bytes(Value::Array(vec![json!({"type": "project.updated"}); 6])),
                JSON,
                StatusCode::PAYLOAD_TOO_LARGE,
                Names::Detail("batch"),
            ),
        ],
    )
    .await;
    // At the limits themselves, the same shapes pass.
    let at_limit: Vec<Value> = (0..5).map(|_| json!({"type": "project.updated"})).collect();
    assert_eq!(
        server.publish(&Value::Array(at_limit)).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let server = seeded().await;
    refuse_bodies(
        &server,
        vec![
            (
                "truncated JSON",
                br#"{"type": "project.created","#.to_vec(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("JSON"),
            ),
            (
                "truncated batch",
                br#"[{"type": "project.created"}"#.to_vec(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("JSON"),
            ),
            (
                "trailing garbage",
                br#"{"type": "project.created"} x"#.to_vec(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("JSON"),
            ),
            (
                "not JSON at all",
                b"type=project.created".to_vec(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("JSON"),
            ),
            (
                "empty body",
                Vec::new(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("JSON"),
            ),
            (
                "a number",
                b"42".to_vec(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("object"),
            ),
            (
                "a string",
                br#""project.created""#.to_vec(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("object"),
            ),
            (
                "null",
                b"null".to_vec(),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Detail("object"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let server = seeded().await;
    let body = bytes(json!({"type": "project.created"}));
    refuse_bodies(
        &server,
        vec![
            (
                "text/plain",
                body.clone(),
                Some("text/plain"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Names::Detail("json"),
            ),
            (
                "form",
                body.clone(),
                Some("application/x-www-form-urlencoded"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Names::Detail("json"),
            ),
        ],
    )
    .await;
    // A charset parameter and +json types are JSON.
    assert_eq!(
        server
            .publish_raw(body.clone(), Some("application/json; charset=utf-8"))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn invalid_fields_are_400_naming_the_field() {
    let server = seeded().await;
    let long_id = "i".repeat(129);
    refuse_bodies(
        &server,
        vec![
            (
                "projectId is a number",
                bytes(json!({"type": "project.created", "projectId": 5})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("projectId"),
            ),
            (
                "tenantId is an object",
                bytes(json!({"type": "project.created", "tenantId": {}})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("tenantId"),
            ),
            (
                "type is a number",
                bytes(json!({"type": 5})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("type"),
            ),
            (
                "metadata is a string",
                bytes(json!({"type": "project.created", "metadata": "x"})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("metadata"),
            ),
            (
                "wrong type in a batch",
                bytes(
                    json!([{"type": "project.created"}, {"type": "project.created", "userId": 5}]),
                ),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("1/userId"),
            ),
            (
                "unknown field",
                bytes(json!({"type": "project.created", "bogus": 1})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("bogus"),
            ),
            (
                "missing type",
                bytes(json!({"payload": {}})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("type"),
            ),
            (
                "uppercase type",
                bytes(json!({"type": "Project.Created"})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("type"),
            ),
            (
                "one-segment type",
                bytes(json!({"type": "project"})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("type"),
            ),
            (
                "empty segment",
                bytes(json!({"type": "project..created"})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("type"),
            ),
            (
                "pattern as type",
                bytes(json!({"type": "project.*"})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("type"),
            ),
            (
                "empty projectId",
                bytes(json!({"type": "project.created", "projectId": ""})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("projectId"),
            ),
            (
                "bad timestamp",
                bytes(json!({"type": "project.created", "timestamp": "yesterday"})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("timestamp"),
            ),
            (
                "id too long",
                bytes(json!({"type": "project.created", "id": long_id})),
                JSON,
                StatusCode::BAD_REQUEST,
                Names::Field("id"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn invalid_query_parameters_are_400_naming_the_parameter() {
    let server = seeded().await;
    let before = server.all_events().await;
    let cases: &[(&str, Params, &str)] = &[
        ("/v1/events", &[("type", "Project.Created")], "type"),
        ("/v1/events", &[("type", "project.>.created")], "type"),
        ("/v1/events", &[("type", "project..created")], "type"),
        ("/v1/events", &[("type", "project.created,")], "type"),
        ("/v1/events", &[("type", "")], "type"),
        ("/v1/events", &[("after", "abc")], "after"),
        ("/v1/events", &[("after", "-1")], "after"),
        ("/v1/events", &[("limit", "0")], "limit"),
        ("/v1/events", &[("limit", "1001")], "limit"),
        ("/v1/events", &[("limit", "ten")], "limit"),
        ("/v1/events", &[("foo", "1")], "foo"),
        ("/v1/events", &[("projectid", "p1")], "projectid"),
        ("/v1/events", &[("from", "yesterday")], "from"),
        ("/v1/events", &[("to", "2026-13-01T00:00:00Z")], "to"),
        ("/v1/events", &[("projectId", "")], "projectId"),
        ("/v1/projects/p1/events", &[("limit", "0")], "limit"),
        ("/v1/projects/p1/events", &[("after", "abc")], "after"),
        ("/v1/projects/p1/events", &[("type", "Bad")], "type"),
        ("/v1/projects/p1/events", &[("bogus", "1")], "bogus"),
    ];
    for (path, params, field) in cases {
        let reply = server.get(path, params).await;
        check(
            &format!("GET {path} {params:?}"),
            &reply,
            StatusCode::BAD_REQUEST,
            &Names::Field(field),
        );
    }
    assert_eq!(server.all_events().await, before);
}

#[tokio::test]
async fn catalogue_errors_are_problems() {
    let server = seeded().await;
    let reply = server.get("/v1/event-types/Not.Valid", &[]).await;
    check(
        "GET invalid type name",
        &reply,
        StatusCode::BAD_REQUEST,
        &Names::Field("type"),
    );
    let reply = server.get("/v1/event-types/order.unknown", &[]).await;
    reply.assert_problem(StatusCode::NOT_FOUND);
    let reply = server
        .put_event_type("order.placed", &json!({"schema": {}, "bogus": true}))
        .await;
    check(
        "PUT unknown field",
        &reply,
        StatusCode::BAD_REQUEST,
        &Names::Field("bogus"),
    );
    let reply = server
        .put_event_type("order.placed", &json!({"description": 5}))
        .await;
    check(
        "PUT description as number",
        &reply,
        StatusCode::BAD_REQUEST,
        &Names::Field("description"),
    );
    let reply = server.put_event_type("order", &json!({})).await;
    check(
        "PUT one-segment name",
        &reply,
        StatusCode::BAD_REQUEST,
        &Names::Field("type"),
    );
    assert_eq!(
        server.get("/v1/event-types/order.placed", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let server = InProcessServer::start(&[]).await;
    server
        .get("/v1/nothing-here", &[])
        .await
        .assert_problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn payload_limit_is_inclusive() {
    let server = InProcessServer::start(LIMITS).await;
    // A JSON string of exactly 1024 bytes, quotes included.
    let at_limit = "a".repeat(1022);
    let reply = server
        .publish(&json!({"type": "project.updated", "payload": at_limit}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let over = "a".repeat(1023);
    let reply = server
        .publish(&json!({"type": "project.updated", "payload": over}))
        .await;
    check(
        "payload one byte over",
        &reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        &Names::Field("payload"),
    );
    assert_eq!(server.count().await, 1);
}

#[tokio::test]
async fn strict_mode_refuses_a_batch_with_one_unregistered_type() {
    let server = InProcessServer::start(&[("STRICT_EVENT_TYPES", "true")]).await;
    let reply = server
        .publish(&json!([{"type": "project.created"}, {"type": "order.placed"}]))
        .await;
    check(
        "unregistered type in a batch",
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        &Names::Field("1/type"),
    );
    assert_eq!(server.count().await, 0);
}
