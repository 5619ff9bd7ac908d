//! What a payload may hold (`eventbus::core::payload`), on SQLite and on PostgreSQL alike:
//! nesting up to `MAX_JSON_DEPTH`, no `\u0000`, no lone surrogate, numbers within a 64-bit
//! float. Each refusal is a `400` naming the path to the value, stores nothing, and is the same
//! on both backends; what is accepted reads back as it was sent.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{InProcessServer, Reply};
use crate::on_both;

on_both!(
    "payloads",
    deep_nesting,
    deep_payloads_are_refused,
    deep_payloads_are_refused_pg
);
on_both!(
    "payloads",
    strings_and_numbers,
    nul_surrogates_and_huge_numbers_are_refused,
    nul_surrogates_and_huge_numbers_are_refused_pg
);

/// `depth` nested arrays around nothing.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn refused(what: &str, reply: &Reply, field: &str, says: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        reply.body
    );
    assert_eq!(
        reply.body["type"],
        json!("/problems/invalid-field"),
        "{what}"
    );
    assert_eq!(
        reply.body["errors"][0]["field"],
        json!(field),
        "{what}: {}",
        reply.body
    );
    let message = reply.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(says),
        "{what}: {message:?} does not say {says:?}"
    );
}

async fn deep_nesting(server: &InProcessServer) {
    // 100,000 levels (200 KB): refused at the 65th, whose path is 64 indexes deep.
    let body = format!(r#"{{"type":"doc.deep","payload":{}}}"#, nested(100_000));
    let reply = server.publish_raw(body, Some("application/json")).await;
    refused(
        "100,000 levels",
        &reply,
        &format!("payload{}", "/0".repeat(64)),
        "65 levels deep here; the limit is 64 (MAX_JSON_DEPTH)",
    );
    // Inside an object, the path names the keys; in a batch, the event's index comes first.
    let mut deep_object = json!(1);
    for _ in 0..70 {
        deep_object = json!({ "a/b": deep_object });
    }
    let batch = json!([{"type": "doc.deep"}, {"type": "doc.deep", "payload": deep_object}]);
    let reply = server.publish(&batch).await;
    refused(
        "a batch",
        &reply,
        &format!("1/payload{}", "/a~1b".repeat(64)),
        "limit is 64",
    );
    assert_eq!(server.count().await, 0, "a refused batch stores nothing");

    // With a JSON Schema for the type, the same body is the publisher's mistake too (not a 503).
    let schema = json!({"schema": {"type": "array"}});
    let put = server.put_event_type("doc.deep", &schema).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    let body = format!(r#"{{"type":"doc.deep","payload":{}}}"#, nested(100_000));
    let reply = server.publish_raw(body, Some("application/json")).await;
    refused(
        "with a schema",
        &reply,
        &format!("payload{}", "/0".repeat(64)),
        "limit is 64",
    );

    // 64 levels pass, and read back as sent.
    let payload: Value = serde_json::from_str(&nested(64)).unwrap();
    let stored = server
        .publish_ok(&json!({"type": "doc.deep", "payload": payload}))
        .await;
    let read = server.get_event(stored["id"].as_str().unwrap()).await;
    assert_eq!(read.body["payload"], payload);
    assert_eq!(server.count().await, 1);
}

async fn strings_and_numbers(server: &InProcessServer) {
    let cases = [
        (r#"{"s":"a\u0000b"}"#, "payload/s", "contains \\u0000"),
        (
            r#"{"list":["ok","\ud800"]}"#,
            "payload/list/1",
            "lone surrogate",
        ),
        (r#"{"s":"\udfff\ud83d"}"#, "payload/s", "lone surrogate"),
        (
            r#"{"o":{"k\u0000":1}}"#,
            "payload/o",
            "an object key contains \\u0000",
        ),
        (
            r#"{"n":1e400}"#,
            "payload/n",
            "out of the range of a 64-bit float",
        ),
        (
            r#"[-1.5E+309]"#,
            "payload/0",
            "out of the range of a 64-bit float",
        ),
    ];
    for (payload, field, says) in cases {
        let body = format!(r#"{{"type":"doc.strange","payload":{payload}}}"#);
        let reply = server.publish_raw(body, Some("application/json")).await;
        refused(payload, &reply, field, says);
    }
    let body = r#"{"type":"doc.strange","metadata":{"source":"a\u0000"}}"#;
    let reply = server.publish_raw(body, Some("application/json")).await;
    refused("metadata", &reply, "metadata.source", "\\u0000");
    assert_eq!(server.count().await, 0, "nothing refused was stored");

    // What is accepted reads back the same on both stores: a surrogate pair is one character,
    // other escapes and the extremes of the float range stay what they were.
    let body = r#"{"type":"doc.strange","payload":{"smile":"\ud83d\ude00","tab":"\t\u0001","big":1.7e308,"tiny":1e-400,"long":123456789012345678901234567890}}"#;
    let reply = server.publish_raw(body, Some("application/json")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let read = server.get_event(reply.body["id"].as_str().unwrap()).await;
    let payload = &read.body["payload"];
    assert_eq!(payload["smile"], json!("😀"));
    assert_eq!(payload["tab"], json!("\t\u{1}"));
    assert_eq!(payload["big"].as_f64(), Some(1.7e308));
    assert_eq!(payload["tiny"].as_f64(), Some(0.0));
    assert_eq!(payload["long"].as_f64(), Some(1.2345678901234568e29));
}

/// `MAX_JSON_DEPTH` sets the limit; out-of-range values are refused at start-up (see `config`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_json_depth_sets_the_limit() {
    let server = InProcessServer::start(&[("MAX_JSON_DEPTH", "3")]).await;
    let ok = json!({"type": "doc.deep", "payload": {"a": [{"b": 1}]}});
    assert_eq!(server.publish(&ok).await.status, StatusCode::CREATED);
    let reply = server
        .publish(&json!({"type": "doc.deep", "payload": {"a": [{"b": [1]}]}}))
        .await;
    refused(
        "depth 4",
        &reply,
        "payload/a/0/b",
        "4 levels deep here; the limit is 3",
    );
}
