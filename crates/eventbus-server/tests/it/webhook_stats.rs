//! `GET /v1/webhooks/{id}/stats` on the real router (in process), on SQLite and on PostgreSQL:
//! an endpoint whose receiver fails the first events and accepts the later ones, its figures once
//! those attempts are recorded, the `since` window, and the refusals (a bad `since`, an unknown
//! endpoint, another tenant's endpoint, a caller without `read`).

use std::time::{Duration, Instant};

use eventbus::core::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::receiver::WebhookReceiver;
use crate::common::{InProcessServer, Reply, admin_client, client_with_key};
use crate::on_both;

/// Generous bound for anything asynchronous.
const WAIT: Duration = Duration::from_secs(60);

/// The fields that are `null` when no attempt started in the window.
const NULL_WITHOUT_ATTEMPTS: [&str; 5] = [
    "successRate",
    "meanDurationMs",
    "maxDurationMs",
    "lastAttemptAt",
    "lastFailure",
];

/// The tenant of the endpoint and its events.
const TENANT: &str = "t_stats";

on_both!(
    "whstats",
    figures_follow_the_attempts,
    stats_count_the_window_and_every_delivery,
    stats_count_the_window_and_every_delivery_pg,
    &[
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        // Every failure is a dead letter at once: each event makes exactly one attempt.
        ("WEBHOOK_RETRY_ATTEMPTS", "0"),
    ]
);

/// Publishes `n` events of [`TENANT`].
async fn publish(server: &InProcessServer, n: usize) {
    for i in 0..n {
        let reply = server
            .publish(&json!({"type": "project.updated", "tenantId": TENANT, "payload": {"i": i}}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
}

/// Waits until endpoint `id` has `n` deliveries and none is pending (each delivery's attempt is
/// recorded in the transaction that ends it).
async fn wait_ended(server: &InProcessServer, id: &str, n: usize) {
    let path = format!("/v1/webhooks/{id}/deliveries");
    let deadline = Instant::now() + WAIT;
    loop {
        let page = server.get(&path, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let deliveries = page.body["deliveries"].as_array().unwrap();
        if deliveries.len() == n && deliveries.iter().all(|d| d["status"] != "pending") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} ended deliveries within {WAIT:?}: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `GET /v1/webhooks/{id}/stats` with `params`, as the admin.
async fn stats(server: &InProcessServer, id: &str, params: &[(&str, &str)]) -> Value {
    let reply = server
        .get(&format!("/v1/webhooks/{id}/stats"), params)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// A key of `tenant` (none: unbound) with `permissions`, as a client.
async fn key_client(
    server: &InProcessServer,
    tenant: Option<&str>,
    permissions: &[&str],
) -> reqwest::Client {
    let mut body = json!({"name": "stats", "permissions": permissions});
    if let Some(t) = tenant {
        body["tenantId"] = json!(t);
    }
    let admin = admin_client().build().unwrap();
    let request = admin.post(server.url("/v1/keys")).json(&body);
    let reply = Reply::read(request.send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    client_with_key(reply.body["key"].as_str().unwrap())
        .build()
        .unwrap()
}

async fn get_as(client: &reqwest::Client, server: &InProcessServer, path: &str) -> Reply {
    Reply::read(client.get(server.url(path)).send().await.unwrap()).await
}

async fn figures_follow_the_attempts(server: &InProcessServer) {
    let receiver = WebhookReceiver::start().await;
    let ep = server
        .create_webhook(&json!({"url": receiver.url("/hook"), "tenantId": TENANT}))
        .await;
    let id = ep["id"].as_str().unwrap().to_owned();

    // Before any event: nothing, and `null` where there is nothing to divide or show.
    let before = Timestamp::now();
    let empty = stats(server, &id, &[]).await;
    let since = Timestamp::parse_rfc3339(empty["since"].as_str().unwrap()).unwrap();
    let day = 24 * 3600 * 1_000_000;
    assert!(
        (before.plus_micros(-day)..=Timestamp::now().plus_micros(-day)).contains(&since),
        "the default window is the last 24 hours: {empty}"
    );
    assert_eq!(
        (&empty["attempts"], &empty["failed"]),
        (&json!(0), &json!(0))
    );
    for field in NULL_WITHOUT_ATTEMPTS {
        assert!(empty[field].is_null(), "{field}: {empty}");
    }
    assert_eq!(empty["deliveries"], json!({"pending": 0, "failed": 0}));

    // Two events the receiver answers 500, then three it accepts.
    receiver.fail_next(2, 500, None);
    publish(server, 2).await;
    wait_ended(server, &id, 2).await;
    let between = Timestamp::now().to_string();
    publish(server, 3).await;
    wait_ended(server, &id, 5).await;
    assert_eq!(receiver.count(), 5, "one attempt per event");

    let all = stats(server, &id, &[]).await;
    assert_eq!(
        (&all["attempts"], &all["succeeded"], &all["failed"]),
        (&json!(5), &json!(3), &json!(2)),
        "{all}"
    );
    assert_eq!(all["successRate"], json!(0.6));
    let mean = all["meanDurationMs"].as_f64().expect("a mean duration");
    let max = all["maxDurationMs"].as_u64().expect("a longest duration");
    assert!(mean >= 0.0 && mean <= max as f64, "{all}");
    let failure = &all["lastFailure"];
    assert_eq!(failure["statusCode"], 500, "{all}");
    assert!(failure["error"].is_string(), "{all}");
    let failed_at = Timestamp::parse_rfc3339(failure["at"].as_str().unwrap()).unwrap();
    let last_at = Timestamp::parse_rfc3339(all["lastAttemptAt"].as_str().unwrap()).unwrap();
    assert!(failed_at < last_at, "the accepted events came later: {all}");
    let delivery = server
        .get(&format!("/v1/deliveries/{}", failure["deliveryId"]), &[])
        .await;
    assert_eq!(
        (&delivery.body["status"], &delivery.body["lastStatusCode"]),
        (&json!("failed"), &json!(500)),
        "lastFailure names its dead letter: {}",
        delivery.body
    );
    assert_eq!(all["deliveries"], json!({"pending": 0, "failed": 2}));

    // Since the failures ended: only the three successes.
    let recent = stats(server, &id, &[("since", &between)]).await;
    assert_eq!(recent["since"], json!(between));
    assert_eq!(
        (&recent["attempts"], &recent["succeeded"], &recent["failed"]),
        (&json!(3), &json!(3), &json!(0)),
        "{recent}"
    );
    assert_eq!(recent["successRate"], json!(1.0));
    assert!(recent["lastFailure"].is_null(), "{recent}");
    // A window in the future holds no attempt; the deliveries are counted all the same.
    let future = stats(server, &id, &[("since", "2999-01-01T00:00:00+01:00")]).await;
    assert_eq!(future["since"], "2998-12-31T23:00:00.000Z");
    assert_eq!(future["attempts"], 0);
    for field in NULL_WITHOUT_ATTEMPTS {
        assert!(future[field].is_null(), "{field}: {future}");
    }
    assert_eq!(future["deliveries"], all["deliveries"]);

    // Refusals.
    let path = format!("/v1/webhooks/{id}/stats");
    server
        .get(&path, &[("since", "yesterday")])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "since");
    server
        .get(&path, &[("after", "1")])
        .await
        .assert_problem_field(StatusCode::BAD_REQUEST, "after");
    let missing = server
        .get(
            "/v1/webhooks/0190a0b0-0000-7000-8000-000000000000/stats",
            &[],
        )
        .await;
    missing.assert_problem(StatusCode::NOT_FOUND);
    let theirs = get_as(
        &key_client(server, Some("t_other"), &["read"]).await,
        server,
        &path,
    )
    .await;
    theirs.assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(
        theirs.body["detail"].as_str().unwrap().replace(&id, "<id>"),
        missing.body["detail"]
            .as_str()
            .unwrap()
            .replace("0190a0b0-0000-7000-8000-000000000000", "<id>"),
        "another tenant's endpoint answers like a missing one"
    );
    let own = get_as(
        &key_client(server, Some(TENANT), &["read"]).await,
        server,
        &path,
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["attempts"], 5);
    get_as(&key_client(server, None, &["publish"]).await, server, &path)
        .await
        .assert_problem(StatusCode::FORBIDDEN);
    let anonymous = reqwest::Client::builder().no_proxy().build().unwrap();
    get_as(&anonymous, server, &path)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
}
