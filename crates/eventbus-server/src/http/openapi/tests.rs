//! The document against the real answers: these tests serialise the library's types the way the
//! handlers do and check them against the generated schemas, so a field added, renamed or
//! retyped in the library, or a `value_type` that does not say what the field serialises to,
//! fails here.

use std::collections::BTreeMap;

use axum::response::IntoResponse;
use eventbus::core::catalogue::EventTypeDef;
use eventbus::core::event::FieldError;
use eventbus::core::time::Timestamp;
use eventbus::store::webhook::{
    Attempt, AttemptTotals, Delivery, DeliveryCounts, DeliveryStatus, Endpoint, EndpointStats,
    LastFailure,
};
use eventbus::transport::webhook::TestResult;
use eventbus::{NewEvent, Pattern};
use serde_json::{Value, json};

use super::document;
use crate::http::problem::ApiError;
use crate::http::webhooks::endpoint_body;

/// Checks `value` against the document's schema `name`: valid, and no property the schema
/// does not name.
fn conforms(name: &str, value: &Value) {
    let doc = serde_json::to_value(document()).unwrap();
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"].clone(),
    });
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?} in {value}");
    if let (Some(properties), Some(object)) = (
        doc["components"]["schemas"][name]["properties"].as_object(),
        value.as_object(),
    ) {
        for key in object.keys() {
            assert!(
                properties.contains_key(key),
                "{name} does not describe `{key}` of {value}"
            );
        }
    }
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T05:00:00.123Z").unwrap()
}

fn event() -> eventbus::Event {
    let mut event = NewEvent::new("project.created", json!({"name": "x"}))
        .project("p1")
        .tenant("t1")
        .into_event(now())
        .unwrap();
    event.user_id = Some("u1".into());
    event.metadata.insert("source".into(), "test".into());
    event.seq = 7;
    event
}

#[test]
fn events_and_pages_match_their_schemas() {
    let full = serde_json::to_value(event()).unwrap();
    conforms("Event", &full);
    let bare =
        serde_json::to_value(NewEvent::new("a.b", Value::Null).into_event(now()).unwrap()).unwrap();
    conforms("Event", &bare);
    conforms(
        "EventPage",
        &json!({"events": [full.clone()], "nextAfter": 7}),
    );
    conforms("EventPage", &json!({"events": [], "nextAfter": null}));
    conforms("Published", &full);
    conforms("Published", &json!([full, bare]));
}

#[test]
fn a_stored_event_is_a_valid_new_event() {
    // A stored event may be sent back as is (DESIGN.md §2).
    conforms("NewEvent", &serde_json::to_value(event()).unwrap());
    conforms("PublishBody", &json!({"type": "a.b"}));
    conforms("PublishBody", &json!([{"type": "a.b", "payload": [1, 2]}]));
}

#[test]
fn the_check_sees_a_bad_timestamp() {
    let mut bad = serde_json::to_value(event()).unwrap();
    bad["timestamp"] = json!("253402387139000000us");
    let caught = std::panic::catch_unwind(|| conforms("Event", &bad));
    assert!(caught.is_err(), "a timestamp that is not RFC 3339 passed");
}

#[test]
fn type_counts_match_their_schema() {
    let count = eventbus::store::TypeCount {
        event_type: "project.created".into(),
        count: 123,
    };
    let count = serde_json::to_value(&count).unwrap();
    assert_eq!(count, json!({"type": "project.created", "count": 123}));
    conforms("TypeCount", &count);
    conforms("EventTypeCounts", &json!({"counts": [count]}));
    conforms("EventTypeCounts", &json!({"counts": []}));
}

#[test]
fn stats_match_their_schema() {
    use eventbus::bus::QueueDepths;
    use eventbus::sample::{Counters, Gauges, Sample};
    let start = Counters::default();
    let end = Counters {
        events: 120,
        webhook_succeeded: 9,
        webhook_failed: 1,
        webhook_micros: 250_000,
    };
    let gauges = Gauges {
        sse_connections: 3,
        queue_depths: QueueDepths {
            store_writer: 0,
            subscribers: 1,
            sse: 2,
            webhooks: Some(4),
        },
    };
    let ten = std::time::Duration::from_secs(10);
    let busy = Sample::between(now(), ten, &start, &end, 80_000, gauges);
    let quiet = Sample::between(
        now(),
        ten,
        &end,
        &end,
        0,
        Gauges {
            queue_depths: QueueDepths {
                webhooks: None,
                ..gauges.queue_depths
            },
            ..gauges
        },
    );
    let busy = serde_json::to_value(&busy).unwrap();
    let quiet = serde_json::to_value(&quiet).unwrap();
    assert_eq!(quiet["webhookLatencyMs"], Value::Null);
    assert_eq!(quiet["queueDepths"]["webhooks"], Value::Null);
    conforms("Sample", &busy);
    conforms("Sample", &quiet);
    conforms("WebhookLatency", &busy["webhookLatencyMs"]);
    conforms("QueueDepths", &busy["queueDepths"]);
    conforms(
        "Stats",
        &json!({"intervalSeconds": 10, "samples": [busy, quiet], "current": quiet}),
    );
}

#[test]
fn catalogue_entries_match_their_schema() {
    let def = EventTypeDef {
        name: "project.created".into(),
        description: Some("A project was created".into()),
        schema: Some(json!({"type": "object"})),
        builtin: true,
        updated_at: now(),
    };
    conforms("EventType", &serde_json::to_value(&def).unwrap());
    let bare = EventTypeDef {
        description: None,
        schema: None,
        builtin: false,
        ..def
    };
    conforms("EventType", &serde_json::to_value(&bare).unwrap());
    conforms(
        "EventTypeList",
        &json!({"eventTypes": [serde_json::to_value(&bare).unwrap()]}),
    );
}

fn endpoint() -> Endpoint {
    Endpoint {
        id: "01a21c42-fcba-741d-8f9a-a8dd333298fd".into(),
        url: "https://example.com/hook".into(),
        description: Some("d".into()),
        event_types: vec![Pattern::parse("project.*").unwrap()],
        project_id: Some("p1".into()),
        tenant_id: None,
        headers: BTreeMap::from([("x-a".into(), "b".into())]),
        rate_limit: Some(5),
        ordered: true,
        format: Default::default(),
        disabled: true,
        disabled_reason: Some("manual".into()),
        secret: "whsec_x".into(),
        previous_secret: Some("whsec_y".into()),
        previous_secret_expires_at: Some(now()),
        since_seq: 3,
        created_at: now(),
        updated_at: now(),
        failing_since: Some(now()),
        failure_count: 2,
    }
}

#[test]
fn endpoint_stats_match_their_schema() {
    let deliveries = DeliveryCounts {
        pending: 3,
        failed: 2,
    };
    let totals = AttemptTotals {
        attempts: 120,
        succeeded: 100,
        duration_ms: 1_500,
        max_duration_ms: Some(80),
        last_attempt_at: Some(now()),
    };
    let failure = LastFailure {
        at: now(),
        status_code: Some(500),
        error: Some("answered 500".into()),
        delivery_id: 7,
    };
    let full = EndpointStats::new(now(), totals, Some(failure), deliveries);
    let full = serde_json::to_value(&full).unwrap();
    assert_eq!(full["meanDurationMs"], json!(12.5));
    conforms("EndpointStats", &full);
    let empty = EndpointStats::new(now(), AttemptTotals::default(), None, deliveries);
    let empty = serde_json::to_value(&empty).unwrap();
    assert!(empty["successRate"].is_null() && empty["lastFailure"].is_null());
    conforms("EndpointStats", &empty);
}

#[test]
fn webhook_bodies_match_their_schemas() {
    let ep = endpoint();
    conforms("Endpoint", &endpoint_body(&ep, true));
    conforms("Endpoint", &endpoint_body(&ep, false));
    conforms(
        "EndpointList",
        &json!({"webhooks": [endpoint_body(&ep, false)]}),
    );
    let delivery = Delivery {
        id: 1,
        endpoint_id: ep.id.clone(),
        event_seq: 7,
        event_id: "e1".into(),
        event_type: "project.created".into(),
        status: DeliveryStatus::Pending,
        attempts: 1,
        cycle_attempts: 1,
        next_attempt_at: Some(now()),
        created_at: now(),
        updated_at: now(),
        last_status_code: Some(500),
        last_error: Some("boom".into()),
    };
    let delivery = serde_json::to_value(&delivery).unwrap();
    conforms("Delivery", &delivery);
    conforms(
        "DeliveryPage",
        &json!({"deliveries": [delivery], "nextAfter": null}),
    );
    let attempt = Attempt {
        id: 1,
        delivery_id: 1,
        endpoint_id: ep.id.clone(),
        event_id: "e1".into(),
        attempt: 1,
        started_at: now(),
        duration_ms: 12,
        status_code: None,
        response_body: None,
        error: Some("connection refused".into()),
        success: false,
    };
    let attempt = serde_json::to_value(&attempt).unwrap();
    conforms("Attempt", &attempt);
    conforms(
        "AttemptPage",
        &json!({"attempts": [attempt], "nextAfter": 1}),
    );
    let result = TestResult {
        success: true,
        status_code: Some(200),
        duration_ms: 3,
        response_body: Some("ok".into()),
        error: None,
        event: event(),
    };
    conforms("TestResult", &serde_json::to_value(&result).unwrap());
}

#[tokio::test]
async fn problems_match_their_schema() {
    for error in [
        ApiError::parameter("limit", "out of range"),
        ApiError::NotFound("no route for /x".into()),
        ApiError::Internal("secret detail".into()),
        ApiError::InvalidField(FieldError::new("0/type", "bad")),
    ] {
        let body = axum::body::to_bytes(error.into_response().into_body(), usize::MAX)
            .await
            .unwrap();
        conforms("Problem", &serde_json::from_slice(&body).unwrap());
    }
}

#[test]
fn consumer_messages_and_dead_letters_match_their_schemas() {
    use eventbus::store::group::{DeadLetter, DeadReason, GroupMessage};
    let message = GroupMessage {
        ack_id: "1.7.1.00000000000000ff".into(),
        delivery_count: 1,
        event: std::sync::Arc::new(event()),
    };
    conforms("ConsumerMessage", &serde_json::to_value(&message).unwrap());
    conforms(
        "FetchedMessages",
        &json!({"messages": [serde_json::to_value(&message).unwrap()]}),
    );
    for event in [Some(std::sync::Arc::new(event())), None] {
        let dead = DeadLetter {
            ack_id: "1.7.5.00000000000000ff".into(),
            seq: 7,
            delivery_count: 5,
            reason: DeadReason::Nacked,
            dead_lettered_at: now(),
            event,
        };
        let dead = serde_json::to_value(&dead).unwrap();
        conforms("ConsumerDeadLetter", &dead);
        conforms(
            "ConsumerDeadLetterPage",
            &json!({"deadLetters": [dead], "nextAfter": null}),
        );
    }
}
