//! `GET /openapi.json`: an OpenAPI 3.1 document that describes every route the server serves.
//!
//! The route list below is written down independently of the document (from DESIGN.md §3 and
//! docs/). The test checks it against the running server both ways: every listed route is served
//! (anything but the router's `no route for` 404 or a 405), and every other method on a listed
//! path is refused with 405. Then the listed routes and the document's operations must be the
//! same set.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode, header};
use serde_json::Value;

use crate::common::TestServer;

/// Every route of the API: method and path template.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("GET", "/v1/stats"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/events"),
    ("POST", "/v1/events"),
    ("GET", "/v1/events/{id}"),
    ("GET", "/v1/projects/{projectId}/events"),
    ("GET", "/v1/stream"),
    ("GET", "/v1/event-types"),
    ("GET", "/v1/event-types/counts"),
    ("GET", "/v1/event-types/{type}"),
    ("PUT", "/v1/event-types/{type}"),
    ("GET", "/v1/webhooks"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("POST", "/v1/webhooks/{id}/enable"),
    ("POST", "/v1/webhooks/{id}/disable"),
    ("POST", "/v1/webhooks/{id}/rotate-secret"),
    ("POST", "/v1/webhooks/{id}/test"),
    ("POST", "/v1/webhooks/{id}/replay"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("GET", "/v1/webhooks/{id}/attempts"),
    ("GET", "/v1/webhooks/{id}/stats"),
    ("GET", "/v1/deliveries/{id}"),
    ("POST", "/v1/deliveries/{id}/retry"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys/{id}"),
    ("DELETE", "/v1/keys/{id}"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/plugins"),
    ("POST", "/v1/plugins"),
    ("POST", "/v1/plugins/reload"),
    ("GET", "/v1/plugins/{name}"),
    ("DELETE", "/v1/plugins/{name}"),
    ("GET", "/v1/plugins/{name}/dead-letters"),
    ("POST", "/v1/plugins/{name}/dead-letters/{id}/retry"),
    ("GET", "/v1/outboxes"),
    ("GET", "/v1/outboxes/{name}"),
    ("GET", "/v1/outboxes/{name}/dead-letters"),
    ("POST", "/v1/outboxes/{name}/dead-letters/{seq}/retry"),
    ("GET", "/v1/consumers"),
    ("GET", "/v1/consumers/{name}"),
    ("PUT", "/v1/consumers/{name}"),
    ("DELETE", "/v1/consumers/{name}"),
    ("POST", "/v1/consumers/{name}/fetch"),
    ("POST", "/v1/consumers/{name}/ack"),
    ("POST", "/v1/consumers/{name}/nack"),
    ("GET", "/v1/consumers/{name}/dead-letters"),
    ("POST", "/v1/consumers/{name}/dead-letters/{ackId}/retry"),
];

/// Methods the API could use; a listed path must refuse every one it does not list.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// `/v1/webhooks/{id}` with every `{…}` filled with a harmless value (nothing exists under it,
/// and no route treats it as valid input that would change anything).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{type}" => "probe.route",
            s if s.starts_with('{') => "1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends `method path` with no body and says whether the router matched a route: anything but
/// its `no route for` 404 or a 405. Only the head of the answer is read for 2xx (the SSE stream
/// never ends).
async fn served(server: &TestServer, method: &str, path: &str) -> (bool, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let resp = server
        .client()
        .request(method.clone(), server.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status();
    if status.is_success() {
        return (true, status.to_string());
    }
    let body = resp.text().await.unwrap_or_default();
    let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && body.contains("no route for"));
    (!unrouted, format!("{status} {body}"))
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let server = TestServer::start(&[]).await;

    let resp = server
        .client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = resp.json().await.expect("the document is JSON");
    let version = doc["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3.1."), "OpenAPI {version}");
    assert!(
        doc["info"]["title"].is_string() && doc["info"]["version"].is_string(),
        "{}",
        doc["info"]
    );

    // The listed routes are exactly those the server serves on these paths.
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed.len(), ROUTES.len(), "a route is listed twice");
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for template in &paths {
        let path = concrete(template);
        for method in METHODS {
            let (is_served, answer) = served(&server, method, &path).await;
            let expected = listed.contains(&((*method).to_owned(), (*template).to_owned()));
            assert_eq!(
                is_served, expected,
                "{method} {path} (listed: {expected}) answered {answer}"
            );
        }
    }
    let (is_served, answer) = served(&server, "GET", "/v1/no-such-route").await;
    assert!(!is_served, "an unknown path is served: {answer}");

    // The document describes exactly the listed routes.
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("`paths` is an object") {
        for (method, op) in item.as_object().expect("a path item is an object") {
            if !METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                continue;
            }
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            described.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let missing: Vec<_> = listed.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "served but not in /openapi.json: {missing:?}"
    );
    let extra: Vec<_> = described.difference(&listed).collect();
    assert!(
        extra.is_empty(),
        "in /openapi.json but not served: {extra:?}"
    );

    // Every `$ref` points at a schema the document holds.
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("component schemas");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }

    // Errors are described as problem+json.
    let get_event = &doc["paths"]["/v1/events/{id}"]["get"]["responses"];
    assert!(
        get_event["404"]["content"]["application/problem+json"].is_object(),
        "{get_event}"
    );
    let stream = &doc["paths"]["/v1/stream"]["get"]["responses"]["200"]["content"];
    assert!(stream["text/event-stream"].is_object(), "{stream}");
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
