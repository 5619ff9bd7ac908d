//! Regression tests: one per fixed bug, named after the bug, with a line saying what broke
//! (as ripgrep's `tests/regression.rs`). A test here keeps pinning its bug whatever suite its
//! subject belongs to; each runs on the server its original suite used.

use std::io::{Read, Write};
use std::net::TcpStream;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::sse::SseClient;
use crate::common::{ADMIN_KEY, InProcessServer, TestServer};
use crate::errors::{Names, check};
use crate::security::{Api, WAIT, raw_exchange};

/// A path parameter that is not UTF-8 was refused with a `text/plain` body naming `project_id`.
#[tokio::test]
async fn non_utf8_path_parameter_was_a_text_plain_400_naming_an_internal_field() {
    let server = InProcessServer::start(&[]).await;
    let reply = server.send(reqwest::Method::GET, "/v1/events/%FF").await;
    check(
        "event id",
        &reply,
        StatusCode::BAD_REQUEST,
        &Names::Field("id"),
    );
    let reply = server
        .send(reqwest::Method::GET, "/v1/projects/%FF/events")
        .await;
    check(
        "project id",
        &reply,
        StatusCode::BAD_REQUEST,
        &Names::Field("projectId"),
    );
}

/// A method a route does not serve was answered 405 with an empty body, not a problem.
#[tokio::test]
async fn unsupported_method_was_a_405_with_an_empty_body() {
    let server = InProcessServer::start(&[]).await;
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/events"),
        (reqwest::Method::POST, "/v1/events/some-id"),
        (reqwest::Method::DELETE, "/v1/event-types/project.created"),
    ] {
        let reply = server.send(method.clone(), path).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        reply.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
    }
}

/// A raw `>` in the target (`curl '…?type=project.>'`) got a bare 400 with an empty body.
#[tokio::test]
async fn raw_greater_than_in_the_target_was_a_bare_400() {
    let server = InProcessServer::start(&[]).await;
    let request = format!(
        "GET /v1/events?type=project.> HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n"
    );
    let (answer, _) = raw_exchange(&server, request.as_bytes(), WAIT);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    assert!(head.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{answer}"
    );
    let problem: Value = serde_json::from_str(body).expect("a JSON problem body");
    assert_eq!(problem["type"], "/problems/invalid-request-target");
    assert_eq!(problem["status"], 400);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("`>`") && detail.contains("%3E"), "{detail}");

    // On a kept-alive connection the second request's line is the one explained.
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&first).contains("\"status\"") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed after the first request");
        first.extend_from_slice(&buf[..n]);
    }
    assert!(
        first.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    conn.write_all(b"GET /v1/events?type=<a> HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut second = Vec::new();
    let _ = conn.read_to_end(&mut second);
    let second = String::from_utf8_lossy(&second);
    assert!(second.starts_with("HTTP/1.1 400"), "{second}");
    assert!(second.contains("`<`") && second.contains("%3C"), "{second}");

    // The encoded form is served.
    let api = Api::new(&server, ADMIN_KEY);
    let reply = api.get("/v1/events?type=project.%3E").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

/// A client stalled mid-request kept the server from exiting after SIGTERM (no read timeout).
#[tokio::test]
async fn sigterm_hung_while_a_client_stalled_mid_request() {
    use tokio::io::AsyncWriteExt;

    let mut server = TestServer::start(&[]).await;
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"type\":",
        )
        .await
        .unwrap();
    let acked = server.publish_ok(&json!({"type": "project.created"})).await;

    server.terminate();
    // The stalled connection stays open for longer than the wait allows.
    let status = server.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    drop(stalled);

    server.restart().await;
    assert_eq!(
        server.get_event(acked["id"].as_str().unwrap()).await.body,
        acked
    );
}

/// A stream token whose `exp` was past the range of microseconds (here an `exp` in microseconds
/// by mistake, as a backend may mint) overflowed the stream's deadline: the handler panicked in
/// debug builds (the connection dropped unanswered) and the stream ended at once with
/// `token_expired` in release builds.
#[tokio::test]
async fn a_token_expiring_past_the_range_of_microseconds_broke_its_stream() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use hmac::{Hmac, KeyInit, Mac};
    const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";
    let server = InProcessServer::start(&[("EVENT_BUS_TOKEN_SECRET", SECRET)]).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = B64.encode(
        json!({"aud": "eventbus", "sub": "situs-backend", "exp": exp, "types": ["project.>"]})
            .to_string(),
    );
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{header}.{claims}").as_bytes());
    let token = format!(
        "{header}.{claims}.{}",
        B64.encode(mac.finalize().into_bytes())
    );
    let anonymous = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut stream =
        SseClient::connect_with(&anonymous, &server, &format!("token={token}"), None).await;
    let published = server.publish_ok(&json!({"type": "project.created"})).await;
    let e = stream
        .next_event(WAIT)
        .await
        .expect("the stream goes on: an event, not token_expired or the end");
    assert_eq!(e.data["id"], published["id"]);
}

/// Where a key's pattern and the one asked for met in a pattern longer than any type (`a….>` of
/// the key and `*.b…` of a consumer, 321 bytes together), the meeting was kept as if a type
/// matched it: the store wrote the consumer, could not read its pattern back, and the request
/// answered 503 (store unavailable). The key may subscribe to none of the types asked for: 403.
#[tokio::test]
async fn an_intersection_longer_than_any_type_made_creating_a_consumer_a_503() {
    use crate::common::{ApiClient, Reply, client_with_key};

    let server = InProcessServer::start(&[]).await;
    let admin = server.client();
    let send = |client: &reqwest::Client, method: reqwest::Method, path: &str, body: Value| {
        let request = client.request(method, server.url(path)).json(&body);
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    let made = send(
        admin,
        reqwest::Method::POST,
        "/v1/keys",
        json!({"name": "long", "permissions": ["subscribe"], "types": [format!("{}.>", "a".repeat(120))]}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let key = made.body["key"].as_str().unwrap();
    let long = ApiClient::new(server.url(""), client_with_key(key).build().unwrap());
    let asked = json!({"types": [format!("*.{}", "b".repeat(200))]});
    let reply = send(
        long.client(),
        reqwest::Method::PUT,
        "/v1/consumers/long",
        asked,
    )
    .await;
    reply.assert_problem(StatusCode::FORBIDDEN);
    let list = server.get("/v1/consumers", &[]).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["consumers"], json!([]), "{}", list.body);
}

/// A plugin loaded from `PLUGINS_DIR` at start-up took its `ok` call counter before the metrics
/// recorder was installed, so `eventbus_plugin_calls_total{outcome="ok"}` never appeared while
/// the plugin handled events.
#[tokio::test]
async fn a_plugin_loaded_at_start_up_counted_its_calls_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("counted");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("plugin.json"),
        json!({"name": "counted", "version": "1.0.0", "subscribe": ["project.*"]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        folder.join("index.js"),
        "export function onEvent(event, ctx) {}",
    )
    .unwrap();
    let server = TestServer::start(&[("PLUGINS_DIR", dir.path().to_str().unwrap())]).await;
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"type": "project.updated", "payload": {"i": i}}))
        .collect();
    assert_eq!(
        server.publish(&json!(batch)).await.status,
        StatusCode::CREATED
    );
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let p = server.get("/v1/plugins/counted", &[]).await;
        if p.body["counters"]["handled"].as_u64() == Some(3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "not handled: {}",
            p.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = crate::metrics::scrape(&server).await;
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("eventbus_plugin_calls_total{") && l.contains("plugin=\"counted\"")
        })
        .collect();
    let ok = calls
        .iter()
        .find(|l| l.contains("outcome=\"ok\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(ok, Some(3.0), "{calls:?}");
}

/// Two `eventbus` processes' settings on `schema` for the webhook lease tests.
fn webhook_node_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EVENT_STORE_URL", url.to_owned()),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8".into()),
        ("WEBHOOK_POLL_INTERVAL", "50ms".into()),
        ("WEBHOOK_ENDPOINT_CONCURRENCY", "2".into()),
        ("WEBHOOK_TIMEOUT", "60000".into()),
    ]
}

/// An endpoint disabled for failing was announced (`integration.status_changed`) by a publish
/// made after the disabling had committed: a node that died between the two never announced it.
/// Every start now announces the endpoints it finds disabled for failing, under an id made of the
/// endpoint and its failure streak, so the announcement is made once however often nodes start.
#[tokio::test]
async fn an_endpoint_disabled_just_before_a_crash_was_never_announced() {
    let Some(schema) = crate::common::pg::Schema::create("reg", "unannounced") else {
        return;
    };
    let mut env = webhook_node_env(&schema.store_url());
    env.push(("RUST_LOG", "warn,eventbus=info".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut node = TestServer::start(&env).await;
    let receiver = crate::common::receiver::WebhookReceiver::start().await;
    let ep = node
        .create_webhook(&json!({"url": receiver.url("/hook"), "tenantId": "t_1"}))
        .await;
    let id = ep["id"].as_str().expect("an endpoint id").to_owned();
    node.kill();
    // What the node left had it died right after committing the disabling.
    crate::common::psql_rows(
        &crate::common::pg::database_url(),
        &format!(
            "UPDATE {}.webhook_endpoints SET disabled = true, disabled_reason = 'failing', \
             failing_since = 1700000000000000, failure_count = 5 WHERE id = '{id}'",
            schema.0
        ),
    );
    let announcements = "/v1/events?type=integration.status_changed";
    node.restart().await;
    let page = crate::webhooks::wait_api(&node, announcements, "the announcement", |page| {
        !crate::webhooks::items(page, "events").is_empty()
    })
    .await;
    let events = crate::webhooks::items(&page, "events");
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(
        events[0]["id"],
        json!(format!("webhook-disabled-{id}-1700000000000000"))
    );
    assert_eq!(events[0]["payload"]["endpointId"], json!(id));
    assert_eq!(events[0]["payload"]["status"], "disabled");
    assert_eq!(events[0]["payload"]["reason"], "failing");
    assert_eq!(events[0]["payload"]["failures"], 5);
    assert_eq!(events[0]["tenantId"], "t_1");

    // Another crash and start: the announcement is found made, once the start's announcements
    // are done (each start says so: the third time now).
    node.kill();
    node.restart().await;
    let done = "webhook endpoints found disabled for failing are announced";
    let deadline = std::time::Instant::now() + WAIT;
    while node.log_text().matches(done).count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the start's announcements were not done within {WAIT:?}:\n{}",
            node.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page = node.get(announcements, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        crate::webhooks::items(&page.body, "events").len(),
        1,
        "announced again: {}",
        page.body
    );
}

/// On PostgreSQL, a node stopped by SIGTERM left the deliveries it had claimed and not sent
/// leased for twice the attempt timeout plus a minute: no other node could send them meanwhile.
/// The leases of what it did not send are now released when it stops.
#[tokio::test]
async fn a_stopped_node_left_its_unsent_webhook_claims_leased_for_minutes() {
    let Some(schema) = crate::common::pg::Schema::create("reg", "unsent_leases") else {
        return;
    };
    let env = webhook_node_env(&schema.store_url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut node = TestServer::start(&env).await;
    let receiver = crate::common::receiver::WebhookReceiver::start().await;
    receiver.hold(std::time::Duration::from_secs(1));
    node.create_webhook(&json!({"url": receiver.url("/hook")}))
        .await;
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"type": "project.updated", "payload": {"i": i}}))
        .collect();
    assert_eq!(
        node.publish(&json!(batch)).await.status,
        StatusCode::CREATED
    );
    // Two attempts run (the endpoint's concurrency); two more are claimed, waiting for a slot.
    receiver.wait_for(2, WAIT).await;
    node.terminate();
    assert!(node.wait_exit().await.success());
    let leased = crate::common::psql_rows(
        &crate::common::pg::database_url(),
        &format!(
            "SELECT count(*) FROM {}.webhook_deliveries WHERE status = 'pending' \
             AND lease_until > (extract(epoch from clock_timestamp()) * 1000000)::bigint",
            schema.0
        ),
    );
    assert_eq!(
        leased,
        ["0"],
        "deliveries still leased by the stopped node; its log:\n{}",
        node.log_text()
    );
}

/// On PostgreSQL, the deliveries of a node that died (`kill -9`) were leased for twice the
/// attempt timeout plus a minute (three minutes with a 60 s timeout) before another node could
/// send them. Leases now last 15 s and are renewed while held.
#[tokio::test]
async fn a_killed_node_held_its_webhook_deliveries_for_minutes() {
    let Some(schema) = crate::common::pg::Schema::create("reg", "killed_leases") else {
        return;
    };
    let env = webhook_node_env(&schema.store_url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = TestServer::start(&env).await;
    let receiver = crate::common::receiver::WebhookReceiver::start().await;
    // The first node's attempt is under way, unanswered, when it dies.
    receiver.hold(std::time::Duration::from_secs(3600));
    first
        .create_webhook(&json!({"url": receiver.url("/hook")}))
        .await;
    first
        .publish_ok(&json!({"type": "project.updated", "payload": {}}))
        .await;
    let sent = receiver.wait_for(1, WAIT).await;
    first.kill();
    receiver.hold(std::time::Duration::ZERO);
    let _second = TestServer::start(&env).await;
    // The lease (15 s) runs out, and the second node sends the delivery again, same id. The
    // bound leaves room for a slow machine; the old lease (180 s here) could not meet it.
    let again = receiver
        .wait_until(
            "the delivery again",
            std::time::Duration::from_secs(45),
            |r| r.len() >= 2,
        )
        .await;
    assert_eq!(again[1].id, sent[0].id, "the same webhook-id");
}

/// A batch of one event (`[{…}]`) was answered with the event as an object, not an array of one:
/// a client reading the answer of a batch as an array broke on batches of one.
#[tokio::test]
async fn a_batch_of_one_was_answered_as_a_single_event() {
    let server = InProcessServer::start(&[]).await;
    let one = server
        .publish(&json!([{"type": "project.created", "payload": {"n": 1}}]))
        .await;
    assert_eq!(one.status, StatusCode::CREATED, "{}", one.body);
    let stored = one
        .body
        .as_array()
        .expect("a batch is answered as an array");
    assert_eq!(stored.len(), 1, "{}", one.body);
    assert_eq!(stored[0]["payload"], json!({"n": 1}));
    assert!(stored[0]["seq"].as_u64().is_some(), "{}", one.body);

    let single = server
        .publish(&json!({"type": "project.created", "payload": {"n": 2}}))
        .await;
    assert_eq!(single.status, StatusCode::CREATED, "{}", single.body);
    assert_eq!(
        single.body["payload"],
        json!({"n": 2}),
        "one event is an object"
    );
}
