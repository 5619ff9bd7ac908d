//! Three `eventbus` processes on one PostgreSQL database behind HAProxy (`deploy/haproxy.cfg`),
//! under every kind of load at once, with one node killed (`kill -9`) and later restarted, and
//! another shut down (SIGTERM) and restarted: a rolling restart under load.
//!
//! A test binary of its own: `cargo test` runs test binaries one after another, so this load
//! has the machine (and the PostgreSQL server) to itself. It needs PostgreSQL
//! (`EVENTBUS_TEST_DATABASE_URL`) and HAProxy (Debian's `haproxy`); without either it skips
//! outside CI and fails in CI.

#[path = "../it/common/mod.rs"]
mod common;
mod lb;
mod load;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use common::receiver::{Received, WebhookReceiver};
use common::{ApiClient, TestServer, admin_client};
use load::{ConsumerLog, Failure, HandlerSamples, PublisherLog, StreamLog};

/// How long the clients publish.
const LOAD: Duration = Duration::from_secs(40);
/// When the node running the plugin is killed, and when it starts again.
const KILL_AT: Duration = Duration::from_secs(10);
const RESTART_AT: Duration = Duration::from_secs(18);
/// When another node gets SIGTERM (it restarts once it has exited).
const TERM_AT: Duration = Duration::from_secs(26);
/// How long, after the load, everything may take to arrive everywhere.
const DRAIN: Duration = Duration::from_secs(120);
const PUBLISHERS: usize = 4;
/// Each publisher sends a request this often (one event, then a batch of four): 100 events/s.
const PUBLISH_PERIOD: Duration = Duration::from_millis(100);
const STREAMS: usize = 200;
const FETCHERS: usize = 4;
const ENDPOINTS: usize = 5;
/// Endpoints `0..ORDERED` are created with `"ordered": true`.
const ORDERED: usize = 2;
const CONSUMER: &str = "cl-group";
const PLUGIN: &str = "witness";

/// The plugin: every `cl.*` event it handles, it witnesses with an `audit.seen` event (whose id
/// the bus derives from the plugin and the event, so handling an event twice stores one).
fn write_plugin(dir: &Path) {
    let folder = dir.join(PLUGIN);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("plugin.json"),
        json!({"name": PLUGIN, "version": "1.0.0", "subscribe": ["cl.*"],
               "publish": ["audit.*"]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        folder.join("index.js"),
        "export function onEvent(event, ctx) { ctx.publish('audit.seen', { id: event.id }); }",
    )
    .unwrap();
}

/// A node: the real binary on a fixed loopback port (so HAProxy finds it again after a restart).
async fn start_node(port: u16, store_url: &str, plugins: &Path) -> TestServer {
    let port = port.to_string();
    TestServer::start(&[
        ("PORT", &port),
        ("EVENT_STORE_URL", store_url),
        ("PLUGINS_DIR", plugins.to_str().unwrap()),
        // The settings every node shares (docs/deployment.md); the admin key is the test one.
        (
            "EVENT_BUS_TOKEN_SECRET",
            "cluster-token-secret-0123456789abcdef0123",
        ),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_TIMEOUT", "2000"),
        ("SSE_HEARTBEAT_INTERVAL", "5000"),
    ])
    .await
}

/// Waits (up to `limit`) until `done()`; whether it became true.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_haproxy_lose_nothing_when_one_is_killed_and_another_restarted() {
    let Some(haproxy) = lb::binary() else {
        eventbus::testing::skip("HAProxy is not installed (apt-get install haproxy)");
        return;
    };
    let Some(schema) = common::pg::Schema::create("cluster", "three_nodes") else {
        return;
    };
    let store_url = schema.store_url();
    let plugins = tempfile::tempdir().unwrap();
    write_plugin(plugins.path());

    // The nodes, then HAProxy in front of them.
    let ports = [lb::free_port(), lb::free_port(), lb::free_port()];
    let mut nodes = Vec::new();
    for port in ports {
        nodes.push(start_node(port, &store_url, plugins.path()).await);
    }
    let addresses = ports.map(|p| format!("127.0.0.1:{p}"));
    let balancer = lb::LoadBalancer::start(&haproxy, &addresses).await;
    let lb = balancer.url();
    let client = admin_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let streaming = admin_client().build().unwrap();
    let api = ApiClient::new(lb.clone(), client.clone());

    // Five webhook endpoints on one local receiver (two of them ordered), and the consumer
    // group, before the first event.
    let receiver = WebhookReceiver::start().await;
    let mut endpoint_paths = Vec::new();
    for e in 0..ENDPOINTS {
        let path = format!("/e{e}");
        api.create_webhook(&json!({"url": receiver.url(&path), "eventTypes": ["cl.*"],
                                   "ordered": e < ORDERED}))
            .await;
        endpoint_paths.push(path);
    }
    let consumer = api
        .client()
        .put(format!("{lb}/v1/consumers/{CONSUMER}"))
        .json(
            &json!({"types": ["cl.*"], "startAt": "earliest", "ackWaitMs": 3000,
                      "maxDeliver": 1000, "maxAckPending": 10000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(consumer.status(), 201, "{}", consumer.text().await.unwrap());

    // The clients.
    let start = Instant::now();
    let stop_publishing = CancellationToken::new();
    let give_up = CancellationToken::new();
    let stop_clients = CancellationToken::new();
    let mut publishers = Vec::new();
    for w in 0..PUBLISHERS {
        publishers.push(tokio::spawn(load::publisher(
            w,
            lb.clone(),
            client.clone(),
            start,
            PUBLISH_PERIOD,
            stop_publishing.clone(),
            give_up.clone(),
        )));
    }
    let streams: Vec<Arc<Mutex<StreamLog>>> = (0..STREAMS)
        .map(|_| Arc::new(Mutex::new(StreamLog::default())))
        .collect();
    for (i, log) in streams.iter().enumerate() {
        tokio::spawn(load::stream(
            format!("p{}", i % load::PROJECTS),
            lb.clone(),
            streaming.clone(),
            log.clone(),
            stop_clients.clone(),
        ));
    }
    let consumed = Arc::new(Mutex::new(ConsumerLog::default()));
    for _ in 0..FETCHERS {
        tokio::spawn(load::fetcher(
            CONSUMER,
            lb.clone(),
            client.clone(),
            start,
            consumed.clone(),
            stop_clients.clone(),
        ));
    }
    let handlers = Arc::new(Mutex::new(HandlerSamples::default()));
    tokio::spawn(load::sample_handlers(
        PLUGIN,
        addresses.iter().map(|a| format!("http://{a}")).collect(),
        client.clone(),
        start,
        handlers.clone(),
        stop_clients.clone(),
    ));

    // The faults: kill -9 the node running the plugin's handler, restart it; then SIGTERM
    // another and restart it once it has exited.
    tokio::time::sleep_until((start + KILL_AT).into()).await;
    let runner = handlers
        .lock()
        .unwrap()
        .runners
        .last()
        .and_then(|(_, r)| *r)
        .unwrap_or(0);
    let killed_at = start.elapsed();
    nodes[runner].kill();
    tokio::time::sleep_until((start + RESTART_AT).into()).await;
    let restarted_at = start.elapsed();
    nodes[runner].restart().await;
    tokio::time::sleep_until((start + TERM_AT).into()).await;
    let stopped = (runner + 1) % 3;
    let terminated_at = start.elapsed();
    nodes[stopped].terminate();
    let exit = nodes[stopped].wait_exit().await;
    assert!(exit.success(), "SIGTERM: the node exited with {exit}");
    let exited_at = start.elapsed();
    nodes[stopped].restart().await;
    let back_at = start.elapsed();
    tokio::time::sleep_until((start + LOAD).into()).await;
    stop_publishing.cancel();

    let mut published = Vec::new();
    let drain = tokio::time::timeout(DRAIN, async {
        for p in publishers {
            published.push(p.await.unwrap());
        }
    })
    .await;
    if drain.is_err() {
        give_up.cancel();
    }
    let published: Vec<PublisherLog> = published;
    assert_eq!(published.len(), PUBLISHERS, "the publishers did not finish");

    // 1. Every acknowledged publish is stored exactly once, in one seq order, the same on
    //    every node.
    let stored = api.collect("/v1/events", &[("type", "cl.*")], 1000).await;
    let stored_seq: HashMap<String, u64> = common::seqs_by_id(&stored);
    assert_eq!(stored_seq.len(), stored.len(), "an id stored twice");
    assert!(
        stored
            .windows(2)
            .all(|w| common::seq(&w[0]) < common::seq(&w[1])),
        "the log is not in seq order"
    );
    let sent: HashSet<&String> = published.iter().flat_map(|p| &p.sent).collect();
    let mut acked = 0;
    for p in &published {
        assert!(
            p.unexpected.is_empty(),
            "unexpected answers: {:?}",
            p.unexpected
        );
        for (id, seq) in &p.acked {
            assert_eq!(
                stored_seq.get(id),
                Some(seq),
                "acknowledged {id} (seq {seq}) is not stored as acknowledged"
            );
            acked += 1;
        }
    }
    assert_eq!(
        acked,
        sent.len(),
        "every publish was acknowledged in the end"
    );
    assert!(
        stored_seq.keys().all(|id| sent.contains(id)),
        "an event nobody sent"
    );
    for node in &nodes {
        let seen: Vec<u64> = node
            .collect("/v1/events", &[("type", "cl.*")], 1000)
            .await
            .iter()
            .map(common::seq)
            .collect();
        let expected: Vec<u64> = stored.iter().map(common::seq).collect();
        assert!(seen == expected, "a node sees another log");
    }

    // 2. Every stream got every event of its project exactly once, in order, across reconnects.
    let mut by_project: HashMap<String, Vec<u64>> = HashMap::new();
    for e in &stored {
        by_project
            .entry(e["projectId"].as_str().unwrap().to_owned())
            .or_default()
            .push(common::seq(e));
    }
    let caught_up = wait_until(DRAIN, || {
        streams.iter().all(|s| {
            let s = s.lock().unwrap();
            s.seqs.last() == by_project[&s.project].last()
        })
    })
    .await;
    // 3. The consumer group acked every event, and 4. the plugin witnessed every event.
    let all_ids: HashSet<String> = stored_seq.keys().cloned().collect();
    let consumed_all = wait_until(DRAIN, || {
        consumed.lock().unwrap().acked_ids.is_superset(&all_ids)
    })
    .await;
    let mut witnessed: HashSet<String>;
    let plugin_done = {
        let deadline = Instant::now() + DRAIN;
        loop {
            witnessed = api
                .collect("/v1/events", &[("type", "audit.seen")], 1000)
                .await
                .iter()
                .map(|e| e["payload"]["id"].as_str().unwrap().to_owned())
                .collect();
            if witnessed.is_superset(&all_ids) || Instant::now() > deadline {
                break witnessed.is_superset(&all_ids);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    // 5. Every endpoint got every event at least once.
    let webhooks_done = wait_until(DRAIN, || {
        let requests = receiver.requests();
        endpoint_paths.iter().all(|path| {
            let got: HashSet<u64> = requests
                .iter()
                .filter(|r| &r.path == path && r.succeeded())
                .map(Received::seq)
                .collect();
            got.len() == stored.len()
        })
    })
    .await;
    let drained_at = start.elapsed();
    stop_clients.cancel();

    // The report, then the verdicts.
    let failures: Vec<&Failure> = published.iter().flat_map(|p| &p.failures).collect();
    let consumed = consumed.lock().unwrap();
    let handlers = handlers.lock().unwrap();
    let requests = receiver.requests();
    let reconnects: usize = streams.iter().map(|s| s.lock().unwrap().reconnects).sum();
    let (kill_errors, kill_window) = load::error_window(&failures, killed_at, restarted_at);
    let (term_errors, term_window) =
        load::error_window(&failures, terminated_at, back_at + Duration::from_secs(2));
    println!(
        "three nodes behind HAProxy, {:.0} s of load:",
        LOAD.as_secs_f64()
    );
    println!(
        "  stored {} events ({acked} acknowledged publishes); {} publish requests failed in all",
        stored.len(),
        failures.len()
    );
    println!(
        "  kill -9 node {runner} at {:.1} s (restarted at {:.1} s): {kill_errors} publish \
         requests failed, clients saw errors for {} ms",
        killed_at.as_secs_f64(),
        restarted_at.as_secs_f64(),
        kill_window.as_millis()
    );
    println!(
        "  SIGTERM node {stopped} at {:.1} s (exited at {:.1} s, back at {:.1} s): {term_errors} \
         publish requests failed, clients saw errors for {} ms",
        terminated_at.as_secs_f64(),
        exited_at.as_secs_f64(),
        back_at.as_secs_f64(),
        term_window.as_millis()
    );
    let mut kinds: Vec<&str> = failures.iter().map(|f| f.what.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    println!("  publish failures seen: {kinds:?}");
    println!("  {STREAMS} streams: {reconnects} reconnects");
    println!(
        "  consumer group: {} deliveries for {} events, {} fetch/ack failures",
        consumed.deliveries.len(),
        all_ids.len(),
        consumed.failures.len()
    );
    println!(
        "  webhooks: {} requests for {} deliveries; at most {} in flight per delivery",
        requests.len(),
        ENDPOINTS * stored.len(),
        receiver.max_in_flight_per_id()
    );
    println!(
        "  plugin handler runners over time (s, node): {:?}; {} of {} samples with two runners",
        handlers
            .runners
            .iter()
            .map(|(at, r)| (format!("{:.1}", at.as_secs_f64()), *r))
            .collect::<Vec<_>>(),
        handlers.doubled,
        handlers.samples
    );
    println!(
        "  everything delivered everywhere at {:.1} s",
        drained_at.as_secs_f64()
    );

    assert!(caught_up, "a stream did not get its project's last event");
    for s in &streams {
        let s = s.lock().unwrap();
        assert_eq!(
            s.seqs, by_project[&s.project],
            "a stream of {} (after {} reconnects) did not get its events exactly once, in order",
            s.project, s.reconnects
        );
    }
    assert!(consumed_all, "the consumer group did not ack every event");
    let overlaps = load::overlapping_deliveries(&consumed.deliveries);
    assert!(
        overlaps.is_empty(),
        "a message was held by two fetchers at once: {:?}",
        overlaps.first()
    );
    assert!(
        plugin_done,
        "the plugin did not handle every event: {} of {}",
        witnessed.len(),
        all_ids.len()
    );
    assert_eq!(
        handlers.doubled, 0,
        "two nodes ran the plugin's handler at once"
    );
    assert!(webhooks_done, "an endpoint did not get every event");
    assert_eq!(
        receiver.max_in_flight_per_id(),
        1,
        "two requests of one delivery were in flight at once"
    );
    let mut webhook_ids: HashMap<(String, u64), HashSet<String>> = HashMap::new();
    for r in &requests {
        webhook_ids
            .entry((r.path.clone(), r.seq()))
            .or_default()
            .insert(r.id.clone());
    }
    assert!(
        webhook_ids.values().all(|ids| ids.len() == 1),
        "a repeated delivery carried another webhook-id"
    );
    for path in &endpoint_paths[..ORDERED] {
        let mut first_seen = Vec::new();
        let mut seen = HashSet::new();
        for r in requests.iter().filter(|r| &r.path == path) {
            if seen.insert(r.seq()) {
                first_seen.push(r.seq());
            }
        }
        assert!(
            first_seen.windows(2).all(|w| w[0] < w[1]),
            "the ordered endpoint {path} got events out of seq order"
        );
    }
}
