//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a publish carrying a `traceparent`
//! is one trace from `POST /v1/events` (span `publish`) through the store append
//! (`store.append`) to each webhook attempt (`webhook.attempt`), exported over OTLP to a local
//! receiver, and the webhook request carries the attempt's `traceparent` in that trace; a
//! consumer group handing the event out (`consumer.deliver`) is in it too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::receiver::WebhookReceiver;

const WAIT: Duration = Duration::from_secs(30);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A local OTLP/HTTP (JSON) receiver: keeps every span it is sent.
struct OtlpReceiver {
    url: String,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl OtlpReceiver {
    async fn start() -> OtlpReceiver {
        let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = spans.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).expect("OTLP/JSON");
                    let mut kept = kept.lock().unwrap();
                    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            kept.extend(ss["spans"].as_array().into_iter().flatten().cloned());
                        }
                    }
                    ([("content-type", "application/json")], "{}")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        OtlpReceiver { url, spans }
    }

    /// The spans named `name` of trace `trace`, once there are some (panics after `WAIT`).
    async fn wait_for(&self, name: &str, trace: &str) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<Value> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s["name"] == json!(name) && s["traceId"] == json!(trace))
                .cloned()
                .collect();
            if !found.is_empty() {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no `{name}` span of trace {trace}; got {:?}",
                self.spans.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn one_trace_runs_from_the_publish_to_the_webhook_receiver() {
    let otlp = OtlpReceiver::start().await;
    let hooks = WebhookReceiver::start().await;
    let server = TestServer::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
    ])
    .await;
    server
        .create_webhook(&json!({"url": hooks.url("/hook")}))
        .await;
    let consumer = server
        .client()
        .put(server.url("/v1/consumers/traced"))
        .json(&json!({"types": ["project.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(consumer.status(), 201);

    let published = server
        .client()
        .post(server.url("/v1/events"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"id": "traced-1", "type": "project.created"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);

    let got = hooks.wait_for(1, WAIT).await;
    let sent = got[0]
        .header("traceparent")
        .expect("a traceparent")
        .to_owned();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        parts[1], TRACE,
        "the webhook request is in the caller's trace"
    );
    assert_ne!(parts[2], CLIENT_SPAN, "it names the attempt's own span");

    let publish = otlp.wait_for("publish", TRACE).await;
    assert_eq!(publish[0]["parentSpanId"], json!(CLIENT_SPAN));
    let append = otlp.wait_for("store.append", TRACE).await;
    assert_eq!(append[0]["parentSpanId"], publish[0]["spanId"]);
    let attempt = otlp.wait_for("webhook.attempt", TRACE).await;
    assert_eq!(
        attempt[0]["spanId"],
        json!(parts[2]),
        "the receiver's traceparent names the exported attempt span"
    );

    let fetched: Value = server
        .client()
        .post(server.url("/v1/consumers/traced/fetch"))
        .json(&json!({"max": 1, "waitMs": 5000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["messages"][0]["event"]["id"], json!("traced-1"));
    let delivered = otlp.wait_for("consumer.deliver", TRACE).await;
    assert_eq!(delivered[0]["parentSpanId"], json!(CLIENT_SPAN));
}

#[tokio::test]
async fn without_an_endpoint_the_stored_traceparent_goes_on_as_it_is() {
    let hooks = WebhookReceiver::start().await;
    let server = TestServer::start(&[
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
    ])
    .await;
    server
        .create_webhook(&json!({"url": hooks.url("/hook")}))
        .await;
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let published = server
        .client()
        .post(server.url("/v1/events"))
        .header("traceparent", &traceparent)
        .json(&json!({"type": "project.created"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let got = hooks.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("traceparent"), Some(traceparent.as_str()));
}
