//! JavaScript plugins end to end: real plugin folders in a temporary `PLUGINS_DIR`, the real
//! binary, HTTP only. Each test waits with a generous, bounded deadline; none measures speed.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::receiver::WebhookReceiver;

/// Longest wait for something a plugin does.
const DEADLINE: Duration = Duration::from_secs(60);

/// Writes `<dir>/<name>/plugin.json` and `index.js`.
fn write_plugin(dir: &Path, manifest: Value, source: &str) {
    let name = manifest["name"].as_str().expect("a name");
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("plugin.json"), manifest.to_string()).unwrap();
    std::fs::write(folder.join("index.js"), source).unwrap();
}

/// The audit plugin of the examples: one summary per project event; refused publishes are
/// reported as `audit.refused`.
fn audit(dir: &Path) {
    write_plugin(
        dir,
        json!({"name": "audit", "version": "1.0.0", "subscribe": ["project.*"],
               "publish": ["audit.*"], "limits": {"memoryMb": 16, "timeoutMs": 500}}),
        r#"export function onEvent(event, ctx) {
             const n = (ctx.kv.get("count") ?? 0) + 1;
             ctx.kv.set("count", n);
             ctx.publish("audit.summary", { type: event.type, id: event.id, count: n });
             if (event.payload && event.payload.sneaky) {
               try { ctx.publish("billing.charged", { amount: 1 }); }
               catch (e) { ctx.publish("audit.refused", { message: String(e.message) }); }
             }
           }"#,
    );
}

async fn start(dir: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![("PLUGINS_DIR", dir.to_str().unwrap())];
    env.extend_from_slice(extra);
    TestServer::start(&env).await
}

/// Polls `check` every 100 ms until it gives `Some`, at most [`DEADLINE`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn plugin(server: &TestServer, name: &str) -> Value {
    let r = server.get(&format!("/v1/plugins/{name}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn events_of(server: &TestServer, ty: &str) -> Vec<Value> {
    server.collect("/v1/events", &[("type", ty)], 1000).await
}

async fn post_json(server: &TestServer, path: &str, body: &Value) -> crate::common::Reply {
    let resp = server
        .client()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    crate::common::Reply::read(resp).await
}

#[tokio::test]
async fn a_plugin_handles_events_publishes_follow_ups_and_is_refused_other_types() {
    let dir = tempfile::tempdir().unwrap();
    audit(dir.path());
    let server = start(dir.path(), &[]).await;
    let p = plugin(&server, "audit").await;
    assert_eq!(p["status"], "running", "{p}");
    assert_eq!(p["exports"], json!(["onEvent"]));
    // Installing published `plugin.installed` through the bus.
    let installed = events_of(&server, "plugin.installed").await;
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0]["payload"]["name"], "audit");

    let source = server
        .publish_ok(
            &json!({"type": "project.created", "payload": {"sneaky": true}, "projectId": "p_1"}),
        )
        .await;
    let summaries = wait_for("the summary", || async {
        let s = events_of(&server, "audit.summary").await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(summaries[0]["payload"]["id"], source["id"]);
    assert_eq!(summaries[0]["payload"]["count"], 1);
    assert_eq!(summaries[0]["projectId"], "p_1");
    assert_eq!(summaries[0]["metadata"]["causationId"], source["id"]);
    assert_eq!(summaries[0]["metadata"]["source"], "plugin:audit");
    // The type outside the manifest was refused inside the plugin and never stored.
    let refused = events_of(&server, "audit.refused").await;
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("billing.charged")
    );
    assert!(events_of(&server, "billing.*").await.is_empty());
    let p = plugin(&server, "audit").await;
    assert_eq!(p["counters"]["refusedPublishes"], 1, "{p}");
    assert_eq!(p["counters"]["published"], 2, "{p}");
    // Events of other types never reach it.
    server.publish_ok(&json!({"type": "user.created"})).await;
    server.publish_ok(&json!({"type": "project.updated"})).await;
    wait_for("the second summary", || async {
        (events_of(&server, "audit.summary").await.len() == 2).then_some(())
    })
    .await;
    let s = events_of(&server, "audit.summary").await;
    assert_eq!(
        s[1]["payload"]["count"], 2,
        "the key-value store keeps the count"
    );
    assert_eq!(s[1]["payload"]["type"], "project.updated");
}

#[tokio::test]
async fn an_infinite_loop_is_interrupted_while_other_plugins_keep_up() {
    let dir = tempfile::tempdir().unwrap();
    audit(dir.path());
    write_plugin(
        dir.path(),
        json!({"name": "spin", "version": "1", "subscribe": ["spin.*"],
               "limits": {"timeoutMs": 50}}),
        "export function onEvent() { for (;;) {} }",
    );
    let server = start(dir.path(), &[]).await;
    server.publish_ok(&json!({"type": "spin.go"})).await;
    for _ in 0..20 {
        server.publish_ok(&json!({"type": "project.created"})).await;
    }
    wait_for("audit to handle all 20 events", || async {
        (events_of(&server, "audit.summary").await.len() == 20).then_some(())
    })
    .await;
    let spin = wait_for("the dead letter of the spinning plugin", || async {
        let p = plugin(&server, "spin").await;
        (p["counters"]["deadLetters"] == 1).then_some(p)
    })
    .await;
    assert_eq!(spin["counters"]["timeouts"], 4, "{spin}");
    assert_eq!(spin["counters"]["retries"], 3, "{spin}");
    assert!(
        spin["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("time budget of 50 ms"),
        "{spin}"
    );
    let letters = server.get("/v1/plugins/spin/dead-letters", &[]).await;
    assert_eq!(letters.status, StatusCode::OK);
    assert_eq!(letters.body["deadLetters"][0]["eventType"], "spin.go");
    assert_eq!(letters.body["deadLetters"][0]["attempts"], 4);
    assert_eq!(plugin(&server, "audit").await["counters"]["errors"], 0);
}

#[tokio::test]
async fn memory_exhaustion_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    audit(dir.path());
    write_plugin(
        dir.path(),
        json!({"name": "hog", "version": "1", "subscribe": ["hog.*"],
               "limits": {"memoryMb": 8, "timeoutMs": 5000}}),
        "export function onEvent() { const a = []; for (;;) a.push(new Array(100000).fill(1)); }",
    );
    let server = start(dir.path(), &[]).await;
    server.publish_ok(&json!({"type": "hog.go"})).await;
    let hog = wait_for("the hog's dead letter", || async {
        let p = plugin(&server, "hog").await;
        (p["counters"]["deadLetters"] == 1).then_some(p)
    })
    .await;
    assert_eq!(hog["counters"]["memoryErrors"], 4, "{hog}");
    assert!(
        hog["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("memory")
    );
    // The bus and the other plugin carry on.
    server.publish_ok(&json!({"type": "project.created"})).await;
    wait_for("audit's summary", || async {
        (events_of(&server, "audit.summary").await.len() == 1).then_some(())
    })
    .await;
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
}

#[tokio::test]
async fn exceptions_are_retried_then_dead_lettered_and_suspend_the_plugin_until_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = json!({"name": "flaky", "version": "1", "subscribe": ["job.*"],
                          "publish": ["job_done.*"]});
    write_plugin(
        dir.path(),
        manifest.clone(),
        r#"export function onEvent(e) { throw new Error("broken on " + e.type); }"#,
    );
    // A witness on the same types: once it handled an event, that event was committed and the
    // plugins' consumers (woken by the same commit) had their chance, the suspended one too.
    write_plugin(
        dir.path(),
        json!({"name": "witness", "version": "1", "subscribe": ["job.*"],
               "publish": ["witness.*"]}),
        r#"export function onEvent(e, ctx) { ctx.publish("witness.seen", { id: e.id }); }"#,
    );
    let server = start(dir.path(), &[]).await;
    for _ in 0..3 {
        server.publish_ok(&json!({"type": "job.run"})).await;
    }
    let p = wait_for("the suspension", || async {
        let p = plugin(&server, "flaky").await;
        (p["status"] == "suspended").then_some(p)
    })
    .await;
    assert_eq!(p["counters"]["deadLetters"], 3, "{p}");
    assert_eq!(p["counters"]["retries"], 9, "{p}");
    assert_eq!(p["counters"]["errors"], 12, "{p}");
    assert!(
        p["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("broken on job.run")
    );
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.body["details"]["plugins"]["suspended"],
        json!(["flaky"])
    );
    let letters = server.get("/v1/plugins/flaky/dead-letters", &[]).await;
    let letters = letters.body["deadLetters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 3);
    assert!(letters.iter().all(|d| d["attempts"] == 4));

    // While suspended, new events wait (nothing is lost): the witness handles the event, the
    // suspended plugin is not called.
    let waiting = server.publish_ok(&json!({"type": "job.run"})).await;
    wait_for("the witness to handle the waiting event", || async {
        events_of(&server, "witness.seen")
            .await
            .iter()
            .any(|e| e["payload"]["id"] == waiting["id"])
            .then_some(())
    })
    .await;
    let p = plugin(&server, "flaky").await;
    assert_eq!(p["counters"]["calls"], 12, "{p}");
    assert_eq!(p["status"], "suspended", "{p}");

    // A fixed version, reloaded: the waiting event is handled, a dead letter can be retried.
    write_plugin(
        dir.path(),
        json!({"name": "flaky", "version": "2", "subscribe": ["job.*"], "publish": ["job_done.*"]}),
        r#"export function onEvent(e, ctx) { ctx.publish("job_done.ok", { id: e.id }); }"#,
    );
    let r = server.send(Method::POST, "/v1/plugins/reload").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["updated"], json!(["flaky"]));
    let done = wait_for("the waiting event", || async {
        let d = events_of(&server, "job_done.ok").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(done[0]["payload"]["id"], waiting["id"]);
    assert_eq!(plugin(&server, "flaky").await["status"], "running");
    let retry = server
        .send(
            Method::POST,
            &format!("/v1/plugins/flaky/dead-letters/{}/retry", letters[0]["id"]),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.body["succeeded"], true);
    let left = server.get("/v1/plugins/flaky/dead-letters", &[]).await;
    assert_eq!(left.body["deadLetters"].as_array().unwrap().len(), 2);
    assert_eq!(events_of(&server, "job_done.ok").await.len(), 2);
    assert!(events_of(&server, "plugin.updated").await.len() == 1);
}

/// The retry and suspension settings come from the environment: no retry, and suspended at the
/// first dead letter.
#[tokio::test]
async fn plugin_retries_and_suspension_follow_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    write_plugin(
        dir.path(),
        json!({"name": "strict", "version": "1", "subscribe": ["job.*"]}),
        r#"export function onEvent(e) { throw new Error("no"); }"#,
    );
    let settings = [
        ("PLUGIN_RETRIES", "0"),
        ("PLUGIN_RETRY_DELAY", "10ms"),
        ("PLUGIN_SUSPEND_AFTER", "1"),
    ];
    let server = start(dir.path(), &settings).await;
    server.publish_ok(&json!({"type": "job.run"})).await;
    server.publish_ok(&json!({"type": "job.run"})).await;
    let p = wait_for("the suspension", || async {
        let p = plugin(&server, "strict").await;
        (p["status"] == "suspended").then_some(p)
    })
    .await;
    let counters = &p["counters"];
    assert_eq!(
        (
            &counters["calls"],
            &counters["retries"],
            &counters["deadLetters"]
        ),
        (&json!(1), &json!(0), &json!(1)),
        "{p}"
    );
}

#[tokio::test]
async fn middleware_plugins_transform_and_reject_per_their_failure_policy() {
    let dir = tempfile::tempdir().unwrap();
    write_plugin(
        dir.path(),
        json!({"name": "redact", "version": "1", "subscribe": ["user.*"], "middleware": true}),
        r#"export function transform(event) {
             if (event.payload.block) return null;
             if ("password" in event.payload) event.payload.password = "***";
             return event;
           }"#,
    );
    for (name, policy, ty) in [
        ("strict", "reject", "order.*"),
        ("lenient", "pass", "note.*"),
    ] {
        write_plugin(
            dir.path(),
            json!({"name": name, "version": "1", "subscribe": [ty], "middleware": true,
                   "failurePolicy": policy}),
            "export function transform() { throw new Error('middleware down'); }",
        );
    }
    let server = start(dir.path(), &[]).await;
    let stored = server
        .publish_ok(
            &json!({"type": "user.created", "payload": {"name": "a", "password": "hunter2"}}),
        )
        .await;
    assert_eq!(stored["payload"], json!({"name": "a", "password": "***"}));
    let read = server.get_event(stored["id"].as_str().unwrap()).await;
    assert_eq!(read.body["payload"]["password"], "***");

    let refused = server
        .publish(&json!({"type": "user.created", "payload": {"block": true}}))
        .await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["type"], "/problems/rejected-by-plugin");

    let failed = server
        .publish(&json!({"type": "order.placed", "payload": {}}))
        .await;
    failed.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.body["type"], "/problems/middleware-failed");
    let passed = server
        .publish_ok(&json!({"type": "note.added", "payload": {"x": 1}}))
        .await;
    assert_eq!(passed["payload"], json!({"x": 1}));

    assert!(events_of(&server, "order.*").await.is_empty());
    assert_eq!(events_of(&server, "user.*").await.len(), 1);
    let p = plugin(&server, "redact").await;
    assert_eq!(
        (
            p["counters"]["transformed"].as_u64(),
            p["counters"]["rejected"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(plugin(&server, "lenient").await["counters"]["errors"], 1);
}

#[tokio::test]
async fn a_plugin_reloaded_mid_stream_sees_every_one_of_5000_events() {
    const TOTAL: usize = 5000;
    const BATCH: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let manifest = |v: &str| {
        json!({"name": "tally", "version": v, "subscribe": ["load.*"], "publish": ["seen.*"],
               "limits": {"timeoutMs": 1000}})
    };
    let source = |tag: &str| {
        format!(
            "// {tag}\nexport function onEvent(e, ctx) {{ ctx.publish('seen.event', {{ n: e.payload.n }}); }}"
        )
    };
    write_plugin(dir.path(), manifest("1"), &source("v1"));
    let server = start(dir.path(), &[]).await;
    for b in 0..TOTAL / BATCH {
        let batch: Vec<Value> = (b * BATCH..(b + 1) * BATCH)
            .map(|n| json!({"type": "load.tick", "payload": {"n": n}}))
            .collect();
        let r = server.publish(&Value::Array(batch)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        if b == TOTAL / BATCH / 2 {
            write_plugin(dir.path(), manifest("2"), &source("v2"));
            let r = server.send(Method::POST, "/v1/plugins/reload").await;
            assert_eq!(r.body["updated"], json!(["tally"]), "{}", r.body);
        }
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(180);
    let seen = loop {
        let seen: std::collections::HashSet<u64> = events_of(&server, "seen.event")
            .await
            .iter()
            .map(|e| e["payload"]["n"].as_u64().unwrap())
            .collect();
        if seen.len() == TOTAL || tokio::time::Instant::now() > until {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let missing: Vec<u64> = (0..TOTAL as u64)
        .filter(|n| !seen.contains(n))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "never seen: {missing:?} ({} of {TOTAL} seen)",
        seen.len()
    );
    assert_eq!(plugin(&server, "tally").await["version"], "2");
}

#[tokio::test]
async fn install_update_and_uninstall_publish_lifecycle_events_that_other_plugins_see() {
    let dir = tempfile::tempdir().unwrap();
    write_plugin(
        dir.path(),
        json!({"name": "watcher", "version": "1", "subscribe": ["plugin.*"], "publish": ["audit.*"]}),
        r#"export function onEvent(e, ctx) { ctx.publish("audit.lifecycle", { type: e.type, name: e.payload.name }); }"#,
    );
    let server = start(dir.path(), &[]).await;
    let bundle = |version: &str| {
        json!({"manifest": {"name": "greeter", "version": version, "subscribe": ["project.*"]},
               "source": "export function onEvent() {}"})
    };
    let r = post_json(&server, "/v1/plugins", &bundle("1.0.0")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["plugin"]["status"], "running");
    assert!(dir.path().join("greeter/plugin.json").is_file());
    let r = post_json(&server, "/v1/plugins", &bundle("1.1.0")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(plugin(&server, "greeter").await["version"], "1.1.0");
    let r = server.send(Method::DELETE, "/v1/plugins/greeter").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["uninstalled"], json!(["greeter"]));
    assert!(!dir.path().join("greeter").exists());
    server
        .get("/v1/plugins/greeter", &[])
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    server
        .send(Method::DELETE, "/v1/plugins/greeter")
        .await
        .assert_problem(StatusCode::NOT_FOUND);

    let lifecycle: Vec<(String, String)> = wait_for("the watcher to see three events", || async {
        let seen = events_of(&server, "audit.lifecycle").await;
        let greeter: Vec<(String, String)> = seen
            .iter()
            .filter(|e| e["payload"]["name"] == "greeter")
            .map(|e| {
                (
                    e["payload"]["type"].as_str().unwrap().to_owned(),
                    String::new(),
                )
            })
            .collect();
        (greeter.len() == 3).then_some(greeter)
    })
    .await;
    let types: Vec<&str> = lifecycle.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["plugin.installed", "plugin.updated", "plugin.uninstalled"]
    );
    let updated = events_of(&server, "plugin.updated").await;
    assert_eq!(updated[0]["payload"]["previousVersion"], "1.0.0");

    // Bad bundles are problems, and nothing is written.
    let r = post_json(
        &server,
        "/v1/plugins",
        &json!({"manifest": {"name": "Bad Name", "version": "1", "subscribe": [">"]}, "source": ""}),
    )
    .await;
    r.assert_problem_field(StatusCode::BAD_REQUEST, "manifest/name");
    let r = post_json(
        &server,
        "/v1/plugins",
        &json!({"manifest": {"name": "broken", "version": "1", "subscribe": [">"]},
                "source": "export function onEvent( {"}),
    )
    .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["type"], "/problems/invalid-plugin");
    assert!(!dir.path().join("broken").exists());
    let r = post_json(&server, "/v1/plugins", &json!({"manifest": {}})).await;
    r.assert_problem(StatusCode::BAD_REQUEST);

    // A folder that does not load is listed as failed, with why.
    std::fs::create_dir_all(dir.path().join("halfway")).unwrap();
    std::fs::write(dir.path().join("halfway/plugin.json"), "{not json").unwrap();
    let r = server.send(Method::POST, "/v1/plugins/reload").await;
    assert!(r.body["failed"]["halfway"].is_string(), "{}", r.body);
    let listed = server.get("/v1/plugins", &[]).await;
    let halfway = listed.body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "halfway")
        .unwrap()
        .clone();
    assert_eq!(halfway["status"], "failed");
    assert_eq!(
        server.get("/health/ready", &[]).await.body["details"]["plugins"]["failed"],
        json!(["halfway"])
    );
}

#[tokio::test]
async fn a_webhook_shaper_plugin_shapes_the_signed_body() {
    let dir = tempfile::tempdir().unwrap();
    write_plugin(
        dir.path(),
        json!({"name": "shaper", "version": "1", "subscribe": ["project.*"]}),
        r#"export function webhookPayload(event, endpoint) {
             if (event.payload && event.payload.plain) return undefined;
             return { text: `${event.type} in ${event.projectId}`, endpoint: endpoint.id };
           }"#,
    );
    let server = start(dir.path(), &[("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")]).await;
    let receiver = WebhookReceiver::start().await;
    let ep = post_json(
        &server,
        "/v1/webhooks",
        &json!({"url": receiver.url("/hook"), "eventTypes": [">"]}),
    )
    .await;
    assert_eq!(ep.status, StatusCode::CREATED, "{}", ep.body);
    server
        .publish_ok(&json!({"type": "project.created", "projectId": "p_9"}))
        .await;
    server
        .publish_ok(&json!({"type": "project.updated", "payload": {"plain": true}}))
        .await;
    let got = receiver.wait_for(2, DEADLINE).await;
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    assert!(
        bodies.contains(&json!({"text": "project.created in p_9", "endpoint": ep.body["id"]})),
        "{bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| b["type"] == "project.updated"),
        "{bodies:?}"
    );
    assert!(got.iter().all(|r| r.header("webhook-signature").is_some()));
}

#[tokio::test]
async fn the_example_plugins_load_and_work() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins");
    for name in ["audit", "redact", "webhook-shaper"] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        for file in ["plugin.json", "index.js"] {
            std::fs::copy(
                examples.join(name).join(file),
                dir.path().join(name).join(file),
            )
            .unwrap();
        }
    }
    let server = start(dir.path(), &[]).await;
    let listed = server.get("/v1/plugins", &[]).await;
    let statuses: Vec<&str> = listed.body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["running"; 3], "{}", listed.body);
    let user = server
        .publish_ok(&json!({"type": "user.created", "payload": {"name": "a", "password": "x"}}))
        .await;
    assert_eq!(user["payload"]["password"], "***");
    server
        .publish_ok(&json!({"type": "project.created", "payload": {"name": "Site"}}))
        .await;
    let summary = wait_for("the audit summary", || async {
        events_of(&server, "audit.summary").await.pop()
    })
    .await;
    assert_eq!(summary["payload"]["payloadKeys"], json!(["name"]));
}

/// Handler calls of `name` on `server` since it was loaded, and whether it runs the handler.
async fn handled_and_running(server: &TestServer, name: &str) -> (u64, bool) {
    let p = plugin(server, name).await;
    (
        p["counters"]["handled"].as_u64().unwrap(),
        p["runsHandler"]
            .as_bool()
            .expect("a plugin with a handler says"),
    )
}

/// Publishes `project.updated` events `from..to` in one batch; returns the last one's `seq`.
async fn publish_range(server: &TestServer, from: usize, to: usize) -> u64 {
    let batch: Vec<Value> = (from..to)
        .map(|i| json!({"type": "project.updated", "payload": {"i": i}}))
        .collect();
    let reply = server.publish(&json!(batch)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    crate::common::seq(reply.body.as_array().unwrap().last().unwrap())
}

/// One value (the first column of the first row, as text) of `sql` on the test database.
fn pg_value(sql: &str) -> String {
    let rows = crate::common::psql_rows(&crate::cluster::database_url(), sql);
    rows.into_iter()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Two processes on one PostgreSQL database load the same plugin: one runs its handler, the
/// other stands by, so each event is handled once. When the runner dies (`kill -9`), the other
/// takes over once the lease expires, from the saved cursor.
#[tokio::test]
async fn two_processes_on_postgres_run_a_plugin_once_and_the_survivor_takes_over() {
    let Some(schema) = crate::cluster::create_schema("plugin_lease") else {
        return;
    };
    let url = format!(
        "{}?options=-c%20search_path%3D{schema}",
        crate::cluster::database_url()
    );
    let dir = tempfile::tempdir().unwrap();
    write_plugin(
        dir.path(),
        json!({"name": "counter", "version": "1.0.0", "subscribe": ["project.*"]}),
        "export function onEvent(event, ctx) { ctx.log(`seen ${event.seq}`); }",
    );
    let mut servers = [
        start(dir.path(), &[("EVENT_STORE_URL", &url)]).await,
        start(dir.path(), &[("EVENT_STORE_URL", &url)]).await,
    ];
    let runner = wait_for("one process to run the handler", || async {
        match (
            handled_and_running(&servers[0], "counter").await.1,
            handled_and_running(&servers[1], "counter").await.1,
        ) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        }
    })
    .await;
    let survivor = 1 - runner;
    let last = publish_range(&servers[survivor], 0, 40).await;
    wait_for("the runner to handle 40 events", || async {
        (handled_and_running(&servers[runner], "counter").await.0 == 40).then_some(())
    })
    .await;
    // Positive markers instead of a pause: the runner saved its cursor past the 40 events (so
    // the takeover below starts after them), and renewed its lease after handling them, up to
    // 5 s later; the standby asks for the lease every 2 s, so it was refused meanwhile and still
    // handled nothing.
    let cursor = format!("SELECT seq FROM {schema}.consumer_cursors WHERE name = 'plugin:counter'");
    wait_for("the runner to save its cursor", || async {
        (pg_value(&cursor).parse::<u64>().ok()? >= last).then_some(())
    })
    .await;
    let lease =
        format!("SELECT expires_at FROM {schema}.consumer_leases WHERE name = 'plugin:counter'");
    let expiry: i64 = pg_value(&lease).parse().expect("the runner holds a lease");
    wait_for("the runner to renew its lease", || async {
        (pg_value(&lease).parse::<i64>().ok()? > expiry).then_some(())
    })
    .await;
    assert_eq!(
        handled_and_running(&servers[runner], "counter").await,
        (40, true)
    );
    assert_eq!(
        handled_and_running(&servers[survivor], "counter").await,
        (0, false)
    );

    servers[runner].kill();
    let survivor = &servers[survivor];
    publish_range(survivor, 40, 60).await;
    let handled = wait_for("the survivor to take over", || async {
        let (handled, running) = handled_and_running(survivor, "counter").await;
        (running && handled >= 20).then_some(handled)
    })
    .await;
    // From the dead runner's saved cursor: the 20 new events, none of the 40 again.
    assert_eq!(handled, 20, "{}", survivor.log_text());
    for server in &mut servers {
        server.kill();
    }
    pg_value(&format!("DROP SCHEMA {schema} CASCADE"));
}
