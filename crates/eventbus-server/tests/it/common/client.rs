//! The typed HTTP client of the tests: [`ApiClient`] knows the server's base URL and sends the
//! admin key. Both servers of the tests ([`super::TestServer`], the binary, and
//! [`super::InProcessServer`], the router in this process) dereference to it, so a suite or a
//! helper written against `&ApiClient` runs on either.

use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::{Reply, ids, seq};

/// A server's base URL and an HTTP client holding the admin key.
pub struct ApiClient {
    base: String,
    client: reqwest::Client,
}

impl ApiClient {
    /// A client of the server at `base` (`http://127.0.0.1:<port>`), or of none yet when
    /// `base` is empty.
    pub fn new(base: String, client: reqwest::Client) -> ApiClient {
        ApiClient { base, client }
    }

    /// Points the client at another address (a restarted server).
    pub fn set_base(&mut self, base: String) {
        self.base = base;
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1/events` with `body` as JSON.
    pub async fn publish(&self, body: &Value) -> Reply {
        let resp = self
            .client
            .post(self.url("/v1/events"))
            .json(body)
            .send()
            .await;
        Reply::read(resp.expect("POST /v1/events")).await
    }

    /// `POST /v1/events` with raw bytes and an optional content type.
    pub async fn publish_raw(&self, body: impl Into<Vec<u8>>, content_type: Option<&str>) -> Reply {
        let mut req = self.client.post(self.url("/v1/events")).body(body.into());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        Reply::read(req.send().await.expect("POST /v1/events")).await
    }

    /// `GET path` with query parameters.
    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> Reply {
        let mut url = Url::parse(&self.url(path)).expect("a valid URL");
        if !params.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in params {
                pairs.append_pair(k, v);
            }
        }
        Reply::read(
            self.client
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}")),
        )
        .await
    }

    /// `method path` without a body; `path` is sent as written (percent-escapes included).
    pub async fn send(&self, method: reqwest::Method, path: &str) -> Reply {
        let resp = self
            .client
            .request(method.clone(), self.url(path))
            .send()
            .await;
        Reply::read(resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"))).await
    }

    /// `GET /v1/events` with query parameters.
    pub async fn query(&self, params: &[(&str, &str)]) -> Reply {
        self.get("/v1/events", params).await
    }

    /// `GET /v1/events/{id}`.
    pub async fn get_event(&self, id: &str) -> Reply {
        self.get(&format!("/v1/events/{id}"), &[]).await
    }

    /// `PUT /v1/event-types/{name}` with `body`.
    pub async fn put_event_type(&self, name: &str, body: &Value) -> Reply {
        let resp = self
            .client
            .put(self.url(&format!("/v1/event-types/{name}")))
            .json(body)
            .send()
            .await;
        Reply::read(resp.expect("PUT /v1/event-types")).await
    }

    /// Every event matching `params` (on `path`), following `nextAfter` with pages of `limit`.
    pub async fn collect(&self, path: &str, params: &[(&str, &str)], limit: usize) -> Vec<Value> {
        let limit = limit.to_string();
        let mut after: Option<String> = None;
        let mut events = Vec::new();
        for _ in 0..100_000 {
            let mut p: Vec<(&str, &str)> = params.to_vec();
            p.push(("limit", &limit));
            if let Some(a) = &after {
                p.push(("after", a));
            }
            let page = self.get(path, &p).await;
            assert_eq!(
                page.status,
                StatusCode::OK,
                "GET {path} {p:?}: {}",
                page.body
            );
            let batch = page.body["events"].as_array().expect("events is an array");
            assert!(
                batch.len() <= limit.parse::<usize>().unwrap(),
                "a page holds more than `limit` events"
            );
            events.extend(batch.iter().cloned());
            match &page.body["nextAfter"] {
                Value::Null => return events,
                Value::Number(n) => {
                    assert!(!batch.is_empty(), "an empty page has a nextAfter");
                    let next = n.as_u64().expect("nextAfter is a seq");
                    let previous = after.as_deref().map_or(0, |a| a.parse::<u64>().unwrap());
                    assert!(
                        next > previous,
                        "nextAfter does not advance: {next} after {previous}"
                    );
                    assert_eq!(
                        Some(next),
                        batch.last().map(seq),
                        "nextAfter is the page's last seq"
                    );
                    after = Some(next.to_string());
                }
                other => panic!("nextAfter is {other}"),
            }
        }
        panic!("paging did not end");
    }

    /// `POST /v1/webhooks` with `body`; fails the test unless it is a 201. Returns the endpoint.
    pub async fn create_webhook(&self, body: &Value) -> Value {
        let reply = Reply::read(
            self.client
                .post(self.url("/v1/webhooks"))
                .json(body)
                .send()
                .await
                .expect("POST /v1/webhooks"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    /// `POST /v1/keys` with `body`; fails the test unless it is a 201. Returns the key string.
    pub async fn create_key(&self, body: &Value) -> String {
        let reply = Reply::read(
            self.client
                .post(self.url("/v1/keys"))
                .json(body)
                .send()
                .await
                .expect("POST /v1/keys"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{body}: {}", reply.body);
        reply.body["key"]
            .as_str()
            .expect("the key string is shown once")
            .to_owned()
    }

    /// A client of the same server that sends `key` instead.
    pub fn with_key(&self, key: &str) -> ApiClient {
        let client = super::client_with_key(key)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("building the HTTP client");
        ApiClient::new(self.base.clone(), client)
    }

    /// Every stored event, in `seq` order.
    pub async fn all_events(&self) -> Vec<Value> {
        self.collect("/v1/events", &[], 1000).await
    }

    /// How many events are stored.
    pub async fn count(&self) -> usize {
        self.all_events().await.len()
    }

    /// Ids (in order) of the events `GET /v1/events` returns for `params`, in one page.
    pub async fn query_ids(&self, params: &[(&str, &str)]) -> Vec<String> {
        let reply = self.query(params).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "query {params:?}: {}",
            reply.body
        );
        ids(&reply.body["events"])
    }

    /// Publishes `event` and returns the stored event, failing the test unless it is a 201.
    pub async fn publish_ok(&self, event: &Value) -> Value {
        let reply = self.publish(event).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "publish {event}: {}",
            reply.body
        );
        reply.body
    }

    /// The HTTP client the server's helpers use (keep-alive connections to the server).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}
