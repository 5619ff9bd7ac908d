//! Rust plugins through the library: the handler runs as a durable consumer (in order, catching
//! up after a restart), failures are retried then dead-lettered and suspend the plugin, the
//! middleware joins the publish chain, and installs and updates are announced — on every
//! backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventbus::core::event::Event;
use eventbus::core::filter::EventFilter;
use eventbus::core::middleware::{Middleware, MiddlewareError, PublishContext};
use eventbus::plugin::{HostOptions, Plugin, PluginContext, PluginError, PluginHost};
use eventbus::store::EventQuery;
use eventbus::{EventBus, EventStore, NewEvent, Pattern};
use serde_json::json;

use crate::common::TestDb;

const PATIENCE: Duration = Duration::from_secs(30);

/// Records the `seq` of each event; fails on payloads with `"fail": true`; publishes a
/// follow-up for each `order.placed`.
struct Recorder {
    version: &'static str,
    seen: Arc<Mutex<Vec<u64>>>,
}

struct Stamp;

#[async_trait]
impl Middleware for Stamp {
    fn name(&self) -> &str {
        "stamp"
    }

    async fn handle(&self, e: &mut Event, _: &PublishContext) -> Result<(), MiddlewareError> {
        e.metadata.insert("stamped".into(), "yes".into());
        Ok(())
    }
}

#[async_trait]
impl Plugin for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn version(&self) -> &str {
        self.version
    }

    fn subscribe(&self) -> Vec<Pattern> {
        vec![Pattern::parse("order.*").unwrap()]
    }

    async fn on_event(&self, event: Arc<Event>, ctx: &PluginContext) -> Result<(), PluginError> {
        if event.payload.get().contains("\"fail\":true") {
            return Err(PluginError::new("cannot handle this order"));
        }
        self.seen.lock().unwrap().push(event.seq);
        if event.event_type == "order.placed" {
            ctx.publish(NewEvent::new("invoice.drafted", json!({"order": event.id})))
                .await
                .map_err(|e| PluginError::new(e.to_string()))?;
        }
        Ok(())
    }

    fn middleware(&self) -> Option<Arc<dyn Middleware>> {
        Some(Arc::new(Stamp))
    }
}

fn options() -> HostOptions {
    HostOptions {
        retries: 2,
        min_backoff: Duration::from_millis(5),
        suspend_after: 2,
        ..HostOptions::default()
    }
}

/// A bus with the `Recorder` plugin, and its plugin host.
async fn bus(
    db: &TestDb,
    version: &'static str,
    seen: &Arc<Mutex<Vec<u64>>>,
) -> (EventBus, PluginHost) {
    let stores = db.open_all().await;
    let host = PluginHost::new(
        stores.plugins,
        options(),
        vec![Arc::new(Recorder {
            version,
            seen: seen.clone(),
        })],
    );
    let bus = EventBus::builder(stores.events)
        .extension(Arc::new(host.clone()))
        .build()
        .await
        .expect("building the bus");
    (bus, host)
}

async fn count(store: &Arc<dyn EventStore>, ty: &str) -> usize {
    store
        .query(&EventQuery {
            filter: EventFilter::types(vec![Pattern::parse(ty).unwrap()]),
            after: 0,
            limit: 1000,
        })
        .await
        .unwrap()
        .events
        .len()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + PATIENCE;
    while !f() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::common::TestDb::sqlite()).await; }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(db) = crate::common::TestDb::postgres().await { super::$name(db).await; }
            }
        )* }
    };
}

both!(
    a_rust_plugin_handles_in_order_and_catches_up_after_a_restart,
    failures_are_dead_lettered_and_suspend_a_rust_plugin
);

async fn a_rust_plugin_handles_in_order_and_catches_up_after_a_restart(db: TestDb) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (b, _) = bus(&db, "1.0.0", &seen).await;
    assert!(b.middleware_names().contains(&"stamp"));
    let mut expected = Vec::new();
    for i in 0..20 {
        let a = b
            .publish(NewEvent::new("order.placed", json!({"i": i})))
            .await
            .unwrap();
        assert_eq!(
            a.event.metadata["stamped"], "yes",
            "the plugin's middleware ran"
        );
        expected.push(a.event.seq);
    }
    wait_until("20 events", || seen.lock().unwrap().len() >= 20).await;
    assert_eq!(*seen.lock().unwrap(), expected, "in order, each once");
    let store = b.store().clone();
    let until = tokio::time::Instant::now() + PATIENCE;
    while count(&store, "invoice.drafted").await < 20 {
        assert!(tokio::time::Instant::now() < until, "follow-ups missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&store, "plugin.installed").await, 1);
    b.shutdown().await;

    // Events published while the plugin is not running are handled after the restart.
    let plain = EventBus::builder(db.open().await).build().await.unwrap();
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(
            plain
                .publish(NewEvent::new("order.shipped", json!({"i": i})))
                .await
                .unwrap()
                .event
                .seq,
        );
    }
    plain.shutdown().await;
    let after = Arc::new(Mutex::new(Vec::new()));
    let (b, host) = bus(&db, "1.1.0", &after).await;
    wait_until("the 5 missed events", || {
        after
            .lock()
            .unwrap()
            .iter()
            .filter(|s| missed.contains(s))
            .count()
            == 5
    })
    .await;
    let store = b.store().clone();
    assert_eq!(
        count(&store, "plugin.updated").await,
        1,
        "a new version is an update"
    );
    assert_eq!(count(&store, "plugin.installed").await, 1);
    let info = host.get("recorder").unwrap();
    assert_eq!((info.kind, info.status), ("rust", "running"));
    b.shutdown().await;
}

async fn failures_are_dead_lettered_and_suspend_a_rust_plugin(db: TestDb) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (b, host) = bus(&db, "1.0.0", &seen).await;
    for _ in 0..2 {
        b.publish(NewEvent::new("order.placed", json!({"fail": true})))
            .await
            .unwrap();
    }
    wait_until("the suspension", || host.suspended() == ["recorder"]).await;
    let info = host.get("recorder").unwrap();
    assert_eq!(info.counters.dead_letters, 2);
    assert_eq!(info.counters.retries, 4);
    assert_eq!(info.last_error.unwrap().message, "cannot handle this order");
    let letters = host.dead_letters("recorder", 0, 10).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].attempts, 3);
    // Suspended: later events wait; a reload resumes and they are handled.
    let waiting = b
        .publish(NewEvent::new("order.placed", json!({"ok": true})))
        .await
        .unwrap()
        .event
        .seq;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(seen.lock().unwrap().is_empty());
    let report = host.reload().await.unwrap();
    assert_eq!(report.resumed, ["recorder"]);
    wait_until("the waiting event", || {
        seen.lock().unwrap().contains(&waiting)
    })
    .await;
    b.shutdown().await;
}
