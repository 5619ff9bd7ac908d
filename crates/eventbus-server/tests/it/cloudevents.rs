//! CloudEvents at the HTTP edge, the parts the SDK suite (`tests/cloudevents`, the official
//! JavaScript SDK) does not reach: content negotiation leaves plain clients as they were, and the
//! stream's `format` parameter is checked.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{InProcessServer, Reply};

#[tokio::test]
async fn plain_clients_get_plain_json_and_cloudevents_clients_get_cloudevents() {
    let server = InProcessServer::start(&[]).await;
    let stored = server
        .publish_ok(
            &json!({"id": "e1", "type": "project.created", "projectId": "p1",
                            "payload": {"a": 1}, "metadata": {"source": "/crm"}}),
        )
        .await;
    let plain = server.get_event("e1").await;
    assert_eq!(plain.content_type, "application/json");
    assert_eq!(plain.body, stored);

    let resp = server
        .client()
        .get(server.url("/v1/events/e1"))
        .header("accept", "text/html, application/cloudevents+json;q=0.9")
        .send()
        .await
        .unwrap();
    let ce = Reply::read(resp).await;
    assert_eq!(ce.content_type, "application/cloudevents+json");
    assert_eq!(
        ce.body,
        json!({"specversion": "1.0", "id": "e1", "source": "/crm", "type": "project.created",
               "time": stored["timestamp"], "datacontenttype": "application/json",
               "data": {"a": 1}, "projectid": "p1", "seq": stored["seq"]})
    );

    let resp = server
        .client()
        .get(server.url("/v1/projects/p1/events"))
        .header("accept", "application/cloudevents-batch+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["last-seq"].to_str().unwrap(),
        stored["seq"].to_string()
    );
    assert!(resp.headers().get("next-after").is_none());
    let batch = Reply::read(resp).await;
    assert_eq!(batch.content_type, "application/cloudevents-batch+json");
    assert_eq!(batch.body, json!([ce.body]));
}

#[tokio::test]
async fn a_query_page_as_a_cloudevents_batch_names_the_next_page_in_a_header() {
    let server = InProcessServer::start(&[]).await;
    for i in 0..3 {
        server
            .publish_ok(&json!({"type": "project.created", "payload": {"i": i}}))
            .await;
    }
    let resp = server
        .client()
        .get(server.url("/v1/events?limit=2"))
        .header("accept", "application/cloudevents-batch+json")
        .send()
        .await
        .unwrap();
    let next = resp.headers()["next-after"].to_str().unwrap().to_owned();
    let page = Reply::read(resp).await;
    assert_eq!(page.body.as_array().unwrap().len(), 2);
    assert_eq!(page.body[1]["seq"].to_string(), next);
    assert_eq!(page.body[0]["source"], json!("urn:situs:eventbus"));
}

#[tokio::test]
async fn an_unknown_stream_format_is_a_400_naming_it() {
    let server = InProcessServer::start(&[]).await;
    let reply = server.get("/v1/stream", &[("format", "xml")]).await;
    reply.assert_problem_field(StatusCode::BAD_REQUEST, "format");
}
