//! Consumer groups over HTTP (`/v1/consumers`, issue 15), on SQLite and on PostgreSQL: work
//! shared by concurrent fetchers with no message handed to two of them at once, redelivery
//! after the ack wait, nack with a delay, dead letters and their retry, per-project order, the
//! long-poll, tenant scope, every 4xx problem; with the binary, `kill -9` with unacked messages
//! and two processes sharing one consumer on one PostgreSQL schema.
//!
//! The semantic suites run in process ([`InProcessServer`]) on either backend (the PostgreSQL
//! ones skip, outside CI, when the database cannot be reached). Every wait is bounded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::pg::Schema;
use crate::common::{ApiClient, InProcessServer, Reply, TestServer};
use crate::on_both;

/// Bound of every loop that waits for something.
const WAIT: Duration = Duration::from_secs(120);

/// Events of the work-sharing test.
const SHARED_EVENTS: usize = 5000;

async fn send(api: &ApiClient, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
    let mut req = api.client().request(method.clone(), api.url(path));
    if let Some(body) = body {
        req = req.json(body);
    }
    Reply::read(
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}")),
    )
    .await
}

async fn put_consumer(api: &ApiClient, name: &str, body: Value) -> Reply {
    send(
        api,
        reqwest::Method::PUT,
        &format!("/v1/consumers/{name}"),
        Some(&body),
    )
    .await
}

async fn post(api: &ApiClient, path: &str, body: Value) -> Reply {
    send(api, reqwest::Method::POST, path, Some(&body)).await
}

/// `POST …/fetch`; the messages handed out.
async fn fetch(api: &ApiClient, name: &str, max: u64, wait_ms: u64) -> Vec<Value> {
    let reply = post(
        api,
        &format!("/v1/consumers/{name}/fetch"),
        json!({"max": max, "waitMs": wait_ms}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "fetch: {}", reply.body);
    reply.body["messages"].as_array().unwrap().clone()
}

async fn ack(api: &ApiClient, name: &str, ids: &[String]) -> Reply {
    post(
        api,
        &format!("/v1/consumers/{name}/ack"),
        json!({"ackIds": ids}),
    )
    .await
}

fn ack_ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["ackId"].as_str().unwrap().to_owned())
        .collect()
}

fn seq_of(message: &Value) -> u64 {
    message["event"]["seq"].as_u64().unwrap()
}

/// Publishes `n` events of `type` in batches of up to 1,000; `project` picks each one's project.
async fn publish_n(api: &ApiClient, ty: &str, n: usize, project: impl Fn(usize) -> Option<String>) {
    let mut i = 0;
    while i < n {
        let batch: Vec<Value> = (i..n.min(i + 1000))
            .map(|k| match project(k) {
                Some(p) => json!({"type": ty, "projectId": p, "payload": {"k": k}}),
                None => json!({"type": ty, "payload": {"k": k}}),
            })
            .collect();
        let reply = api.publish(&Value::Array(batch.clone())).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        i += batch.len();
    }
}

on_both!(
    "consumers",
    work_sharing,
    work_is_shared_by_four_fetchers,
    work_is_shared_by_four_fetchers_pg
);
on_both!(
    "consumers",
    redelivery,
    unacked_messages_come_back_after_the_ack_wait,
    unacked_messages_come_back_after_the_ack_wait_pg
);
on_both!(
    "consumers",
    nack_delay,
    nacked_messages_come_back_after_their_delay,
    nacked_messages_come_back_after_their_delay_pg
);
on_both!(
    "consumers",
    dead_letters,
    dead_letters_after_max_deliver_and_retry,
    dead_letters_after_max_deliver_and_retry_pg
);
on_both!(
    "consumers",
    ordered,
    ordered_consumers_keep_project_order_under_four_fetchers,
    ordered_consumers_keep_project_order_under_four_fetchers_pg
);
on_both!(
    "consumers",
    long_poll,
    a_long_poll_answers_when_an_event_is_published,
    a_long_poll_answers_when_an_event_is_published_pg
);

/// Four fetchers over `api` (or `apis`, round robin) share `total` messages of consumer `name`:
/// each acked exactly once, none held by two fetchers at once. Returns the seqs acked.
async fn share(
    apis: Vec<Arc<ApiClient>>,
    name: &str,
    total: usize,
    fetchers: usize,
) -> HashSet<u64> {
    let in_flight = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let acked = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let deadline = Instant::now() + WAIT;
    let mut tasks = Vec::new();
    for f in 0..fetchers {
        let api = apis[f % apis.len()].clone();
        let (in_flight, acked, name) = (in_flight.clone(), acked.clone(), name.to_owned());
        tasks.push(tokio::spawn(async move {
            while acked.lock().unwrap().len() < total {
                assert!(
                    Instant::now() < deadline,
                    "not every message acked within {WAIT:?}"
                );
                let got = fetch(&api, &name, 100, 500).await;
                let seqs: Vec<u64> = got.iter().map(seq_of).collect();
                {
                    let mut held = in_flight.lock().unwrap();
                    for s in &seqs {
                        assert!(held.insert(*s), "seq {s} handed to two fetchers at once");
                    }
                }
                if got.is_empty() {
                    continue;
                }
                // Released before the ack: this fetcher's lease still holds them until then.
                {
                    let mut held = in_flight.lock().unwrap();
                    for s in &seqs {
                        held.remove(s);
                    }
                }
                let reply = ack(&api, &name, &ack_ids(&got)).await;
                assert_eq!(reply.status, StatusCode::OK, "ack: {}", reply.body);
                assert_eq!(reply.body["failed"], json!(0), "{}", reply.body);
                let mut done = acked.lock().unwrap();
                for s in seqs {
                    assert!(done.insert(s), "seq {s} acked twice");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

async fn work_sharing(server: &InProcessServer) {
    let created = put_consumer(server, "billing", json!({"types": ["order.*"]})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    publish_n(server, "order.created", SHARED_EVENTS, |_| None).await;
    let api = Arc::new(ApiClient::new(server.url(""), server.client().clone()));
    let acked = share(vec![api], "billing", SHARED_EVENTS, 4).await;
    assert_eq!(acked.len(), SHARED_EVENTS);
    let state = server.get("/v1/consumers/billing", &[]).await;
    assert_eq!(state.body["pending"], json!(0), "{}", state.body);
    assert_eq!(state.body["ackPending"], json!(0), "{}", state.body);
    assert_eq!(state.body["redelivered"], json!(0), "{}", state.body);
}

async fn redelivery(server: &InProcessServer) {
    put_consumer(server, "slow", json!({"types": ["a.*"], "ackWaitMs": 300})).await;
    publish_n(server, "a.b", 3, |_| None).await;
    let first = fetch(server, "slow", 10, 2000).await;
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|m| m["deliveryCount"] == json!(1)));
    // Not acked: handed out again once the lease ran out, to a fetch waiting for it.
    let started = Instant::now();
    let mut again = Vec::new();
    while again.len() < 3 && started.elapsed() < WAIT {
        again.extend(fetch(server, "slow", 10, 5000).await);
    }
    assert_eq!(again.len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert!(
        again.iter().all(|m| m["deliveryCount"] == json!(2)),
        "{again:?}"
    );
    // The first deliveries are over: 409, naming each id.
    let stale = ack(server, "slow", &ack_ids(&first)).await;
    stale.assert_problem_field(StatusCode::CONFLICT, "ackIds/0");
    assert_eq!(stale.body["errors"].as_array().unwrap().len(), 3);
    let ok = ack(server, "slow", &ack_ids(&again)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let state = server.get("/v1/consumers/slow", &[]).await;
    assert_eq!(state.body["redelivered"], json!(3), "{}", state.body);
}

async fn nack_delay(server: &InProcessServer) {
    put_consumer(server, "retry", json!({"types": ["a.*"]})).await;
    publish_n(server, "a.b", 1, |_| None).await;
    let first = fetch(server, "retry", 1, 2000).await;
    assert_eq!(first.len(), 1);
    let nacked = post(
        server,
        "/v1/consumers/retry/nack",
        json!({"ackIds": ack_ids(&first), "delayMs": 800}),
    )
    .await;
    assert_eq!(nacked.status, StatusCode::OK, "{}", nacked.body);
    assert_eq!(nacked.body["results"][0]["outcome"], json!("acked"));
    let started = Instant::now();
    assert!(
        fetch(server, "retry", 1, 0).await.is_empty(),
        "handed out before its delay"
    );
    let again = fetch(server, "retry", 1, 10_000).await;
    let took = started.elapsed();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["deliveryCount"], json!(2));
    assert_eq!(again[0]["event"]["id"], first[0]["event"]["id"]);
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

async fn dead_letters(server: &InProcessServer) {
    put_consumer(server, "dl", json!({"types": ["a.*"], "maxDeliver": 2})).await;
    publish_n(server, "a.b", 1, |_| None).await;
    let mut last = Vec::new();
    for delivery in 1..=2 {
        last = fetch(server, "dl", 1, 2000).await;
        assert_eq!(last.len(), 1, "delivery {delivery}");
        assert_eq!(last[0]["deliveryCount"], json!(delivery));
        let r = post(
            server,
            "/v1/consumers/dl/nack",
            json!({"ackIds": ack_ids(&last)}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let page = server.get("/v1/consumers/dl/dead-letters", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let dead = page.body["deadLetters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{}", page.body);
    assert_eq!(dead[0]["reason"], json!("nacked"));
    assert_eq!(dead[0]["event"]["id"], last[0]["event"]["id"]);
    assert_eq!(page.body["nextAfter"], Value::Null);
    let state = server.get("/v1/consumers/dl", &[]).await;
    assert_eq!(state.body["deadLettered"], json!(1), "{}", state.body);
    // The consumer goes on.
    publish_n(server, "a.c", 1, |_| None).await;
    let next = fetch(server, "dl", 10, 2000).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["event"]["type"], json!("a.c"));
    ack(server, "dl", &ack_ids(&next)).await;
    // Retried: a fresh message, delivery count reset.
    let dead_id = dead[0]["ackId"].as_str().unwrap();
    let retried = send(
        server,
        reqwest::Method::POST,
        &format!("/v1/consumers/dl/dead-letters/{dead_id}/retry"),
        None,
    )
    .await;
    assert_eq!(retried.status, StatusCode::NO_CONTENT, "{}", retried.body);
    let back = fetch(server, "dl", 10, 2000).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["deliveryCount"], json!(1));
    assert_eq!(back[0]["event"]["id"], last[0]["event"]["id"]);
    let again = send(
        server,
        reqwest::Method::POST,
        &format!("/v1/consumers/dl/dead-letters/{dead_id}/retry"),
        None,
    )
    .await;
    again.assert_problem(StatusCode::NOT_FOUND);
}

async fn ordered(server: &InProcessServer) {
    const PROJECTS: usize = 10;
    const PER_PROJECT: usize = 50;
    put_consumer(
        server,
        "ord",
        json!({"types": ["project.*"], "ordered": true}),
    )
    .await;
    publish_n(server, "project.updated", PROJECTS * PER_PROJECT, |k| {
        Some(format!("p{}", k % PROJECTS))
    })
    .await;
    let busy = Arc::new(Mutex::new(HashSet::<String>::new()));
    let seen = Arc::new(Mutex::new(HashMap::<String, Vec<u64>>::new()));
    let done = Arc::new(Mutex::new(0usize));
    let deadline = Instant::now() + WAIT;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let api = Arc::new(ApiClient::new(server.url(""), server.client().clone()));
        let (busy, seen, done) = (busy.clone(), seen.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while *done.lock().unwrap() < PROJECTS * PER_PROJECT {
                assert!(Instant::now() < deadline, "ordered consumer stalled");
                let got = fetch(&api, "ord", 5, 500).await;
                for m in &got {
                    let project = m["event"]["projectId"].as_str().unwrap().to_owned();
                    assert!(
                        busy.lock().unwrap().insert(project.clone()),
                        "two messages of {project} in flight at once"
                    );
                    seen.lock()
                        .unwrap()
                        .entry(project)
                        .or_default()
                        .push(seq_of(m));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                for m in &got {
                    busy.lock()
                        .unwrap()
                        .remove(m["event"]["projectId"].as_str().unwrap());
                }
                if !got.is_empty() {
                    let r = ack(&api, "ord", &ack_ids(&got)).await;
                    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                    *done.lock().unwrap() += got.len();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), PROJECTS);
    for (project, seqs) in seen.iter() {
        assert_eq!(seqs.len(), PER_PROJECT, "{project}");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{project} out of order: {seqs:?}"
        );
    }
}

async fn long_poll(server: &InProcessServer) {
    put_consumer(server, "lp", json!({"types": ["a.*"]})).await;
    let api = Arc::new(ApiClient::new(server.url(""), server.client().clone()));
    let waiting = {
        let api = api.clone();
        tokio::spawn(async move {
            let got = fetch(&api, "lp", 10, 20_000).await;
            (got, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the fetch answered before anything was published"
    );
    let published = Instant::now();
    publish_n(server, "a.b", 1, |_| None).await;
    let (got, answered) = waiting.await.unwrap();
    assert_eq!(got.len(), 1);
    let lag = answered.duration_since(published);
    assert!(
        lag < Duration::from_secs(3),
        "answered {lag:?} after the publish"
    );
}

#[tokio::test]
async fn consumers_are_created_listed_updated_and_deleted() {
    let server = InProcessServer::start(&[]).await;
    let created = put_consumer(
        &server,
        "crud",
        json!({"types": ["project.*"], "startAt": "earliest", "ackWaitMs": 1000, "maxDeliver": 3, "maxAckPending": 10, "ordered": true}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["startAt"], json!("earliest"));
    assert_eq!(created.body["maxDeliver"], json!(3));
    assert_eq!(created.body["cursor"], json!(0));
    let updated = put_consumer(&server, "crud", json!({"types": ["project.created"]})).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["types"], json!(["project.created"]));
    let list = server.get("/v1/consumers", &[]).await;
    assert_eq!(
        list.body["consumers"][0]["name"],
        json!("crud"),
        "{}",
        list.body
    );
    let deleted = send(&server, reqwest::Method::DELETE, "/v1/consumers/crud", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = server.get("/v1/consumers/crud", &[]).await;
    gone.assert_problem(StatusCode::NOT_FOUND);
    let again = send(&server, reqwest::Method::DELETE, "/v1/consumers/crud", None).await;
    again.assert_problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_bad_request_is_a_problem_that_names_its_field() {
    let server = InProcessServer::start(&[("MAX_REQUEST_BYTES", "4096")]).await;
    let ok = json!({"types": ["a.*"]});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (json!({"types": []}), "types"),
        (json!({"types": ["a..b"]}), "types/0"),
        (json!({"projectId": "p"}), "types"),
        (with("ackWaitMs", json!(0)), "ackWaitMs"),
        (with("ackWaitMs", json!(100_000_000u64)), "ackWaitMs"),
        (with("maxDeliver", json!(0)), "maxDeliver"),
        (with("maxAckPending", json!(0)), "maxAckPending"),
        (with("maxAckPending", json!(1_000_000)), "maxAckPending"),
        (with("startAt", json!("later")), "startAt"),
        (with("bogus", json!(1)), "bogus"),
    ];
    for (body, field) in cases {
        put_consumer(&server, "c", body.clone())
            .await
            .assert_problem_field(StatusCode::BAD_REQUEST, field);
    }
    put_consumer(&server, "Bad Name", ok.clone())
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "name");
    let raw = |path: &str, body: &'static str| {
        server
            .client()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let big = server
        .client()
        .put(server.url("/v1/consumers/c"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"types\":[\"a.*\"],\"projectId\":\"{}\"}}",
            "x".repeat(5000)
        ))
        .send()
        .await
        .unwrap();
    Reply::read(big)
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown consumer, then fetch limits.
    post(&server, "/v1/consumers/nope/fetch", json!({}))
        .await
        .assert_problem_detail(StatusCode::NOT_FOUND, "nope");
    assert_eq!(
        put_consumer(&server, "c", ok).await.status,
        StatusCode::CREATED
    );
    for (body, field) in [
        (json!({"max": 0}), "max"),
        (json!({"max": 1001}), "max"),
        (json!({"waitMs": 30_001}), "waitMs"),
        (json!({"wait": 1}), "wait"),
    ] {
        post(&server, "/v1/consumers/c/fetch", body)
            .await
            .assert_problem_field(StatusCode::BAD_REQUEST, field);
    }
    Reply::read(raw("/v1/consumers/c/fetch", "{\"max\":").await.unwrap())
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    // An empty body takes the defaults.
    let empty = server
        .client()
        .post(server.url("/v1/consumers/c/fetch"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::OK);

    // Ack ids: none, unknown, expired, mixed.
    ack(&server, "c", &[])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "ackIds");
    let unknown = ack(&server, "c", &["garbage".into()]).await;
    unknown.assert_problem_field(StatusCode::NOT_FOUND, "ackIds/0");
    assert!(
        unknown.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("garbage")
    );
    publish_n(&server, "a.b", 2, |_| None).await;
    let got = fetch(&server, "c", 2, 2000).await;
    assert_eq!(got.len(), 2);
    let ids = ack_ids(&got);
    assert_eq!(ack(&server, "c", &ids[..1]).await.status, StatusCode::OK);
    ack(&server, "c", &ids[..1])
        .await
        .assert_problem_field(StatusCode::CONFLICT, "ackIds/0");
    let mixed = ack(&server, "c", &[ids[0].clone(), ids[1].clone(), "x".into()]).await;
    assert_eq!(mixed.status, StatusCode::OK, "{}", mixed.body);
    assert_eq!(mixed.body["done"], json!(1));
    assert_eq!(mixed.body["failed"], json!(2));
    let outcomes: Vec<&str> = mixed.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["expired", "acked", "unknown"]);
    post(
        &server,
        "/v1/consumers/c/nack",
        json!({"ackIds": ["x"], "delayMs": 100_000_000u64}),
    )
    .await
    .assert_problem_field(StatusCode::BAD_REQUEST, "delayMs");
    server
        .get("/v1/consumers/c/dead-letters", &[("limit", "0")])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "limit");
    server
        .get("/v1/consumers/c/dead-letters", &[("page", "1")])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "page");
}

async fn make_key(server: &InProcessServer, body: Value) -> ApiClient {
    let reply = post(server, "/v1/keys", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let key = reply.body["key"].as_str().unwrap();
    ApiClient::new(
        server.url(""),
        crate::common::client_with_key(key).build().unwrap(),
    )
}

#[tokio::test]
async fn a_consumer_belongs_to_its_keys_tenant() {
    let server = InProcessServer::start(&[]).await;
    let key = |t: &str, perms: Value| json!({"name": t, "tenantId": t, "permissions": perms});
    let a = make_key(&server, key("t_a", json!(["subscribe"]))).await;
    let b = make_key(&server, key("t_b", json!(["subscribe"]))).await;
    let reader = make_key(&server, key("t_a", json!(["read"]))).await;
    let created = put_consumer(&a, "mine", json!({"types": [">"]})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["tenantId"], json!("t_a"));
    // Tenant B sees nothing of it and cannot take its name.
    b.get("/v1/consumers/mine", &[])
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(
        b.get("/v1/consumers", &[]).await.body["consumers"],
        json!([])
    );
    post(&b, "/v1/consumers/mine/fetch", json!({}))
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    put_consumer(&b, "mine", json!({"types": [">"]}))
        .await
        .assert_problem(StatusCode::CONFLICT);
    // A read key lists it but may not fetch.
    assert_eq!(
        reader.get("/v1/consumers", &[]).await.body["consumers"][0]["name"],
        json!("mine")
    );
    post(&reader, "/v1/consumers/mine/fetch", json!({}))
        .await
        .assert_problem(StatusCode::FORBIDDEN);
    // Only its tenant's events reach it.
    for t in ["t_b", "t_a"] {
        let r = server
            .publish(&json!({"type": "a.b", "tenantId": t, "payload": {}}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let got = fetch(&a, "mine", 10, 2000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"]["tenantId"], json!("t_a"));
    assert!(fetch(&a, "mine", 10, 300).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_survive_kill_9_and_are_redelivered() {
    let mut server = TestServer::start(&[]).await;
    put_consumer(
        &server,
        "crash",
        json!({"types": ["a.*"], "ackWaitMs": 1000}),
    )
    .await;
    publish_n(&server, "a.b", 20, |_| None).await;
    let first = fetch(&server, "crash", 100, 2000).await;
    assert_eq!(first.len(), 20);
    let ids: HashSet<Value> = first.iter().map(|m| m["event"]["id"].clone()).collect();
    server.kill();
    server.restart().await;
    let mut again = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while again.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "only {} redelivered",
            again.len()
        );
        for m in fetch(&server, "crash", 100, 5000).await {
            assert!(m["deliveryCount"].as_u64().unwrap() >= 2, "{m}");
            again.insert(m["event"]["id"].clone());
            ack(&server, "crash", &[m["ackId"].as_str().unwrap().to_owned()]).await;
        }
    }
    assert_eq!(again, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_share_a_consumer_without_double_hand_out() {
    const EVENTS: usize = 2000;
    let Some(schema) = Schema::create("consumers", "two_processes") else {
        return;
    };
    let url = schema.store_url();
    let env = [("EVENT_STORE_URL", url.as_str())];
    let a = TestServer::start(&env).await;
    let b = TestServer::start(&env).await;
    let created = put_consumer(&a, "shared", json!({"types": ["order.*"]})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // One store: the other process sees it.
    assert_eq!(
        b.get("/v1/consumers/shared", &[]).await.status,
        StatusCode::OK
    );
    publish_n(&a, "order.created", EVENTS / 2, |_| None).await;
    publish_n(&b, "order.created", EVENTS / 2, |_| None).await;
    let apis = [&a, &b]
        .iter()
        .map(|s| Arc::new(ApiClient::new(s.url(""), s.client().clone())))
        .collect();
    let acked = share(apis, "shared", EVENTS, 4).await;
    assert_eq!(acked.len(), EVENTS);
    drop(schema);
}

#[tokio::test]
async fn metrics_and_readiness_report_consumers_and_readiness_stays_green() {
    let server = TestServer::start(&[]).await;
    put_consumer(&server, "lagging", json!({"types": ["a.*"]})).await;
    publish_n(&server, "a.b", 3, |_| None).await;
    assert_eq!(fetch(&server, "lagging", 1, 2000).await.len(), 1);
    let text = crate::metrics::scrape(&server).await;
    let value = |name: &str| crate::metrics::sample(&text, &format!("{name}{{group=\"lagging\"}}"));
    assert_eq!(value("eventbus_group_pending_events"), Some(2.0), "{text}");
    assert_eq!(value("eventbus_group_ack_pending_messages"), Some(1.0));
    assert_eq!(value("eventbus_group_redeliveries_total"), Some(0.0));
    assert_eq!(value("eventbus_group_dead_letters"), Some(0.0));
    assert!(value("eventbus_group_oldest_unacked_seconds").is_some());
    // A lagging consumer never takes the node out of service.
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let entry = &ready.body["details"]["consumers"];
    assert_eq!(entry["status"], json!("up"), "{}", ready.body);
    assert_eq!(entry["groups"], json!(1));
    assert_eq!(entry["pending"], json!(2));
    assert_eq!(entry["ackPending"], json!(1));
}
