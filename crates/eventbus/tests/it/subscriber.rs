//! In-process subscribers: isolation, ordering, catch-up.
//!
//! A slow or panicking subscriber holds up neither publishers nor other subscribers; every live
//! subscriber receives each event committed after it subscribed exactly once, in `seq` order,
//! catching up from the store when its bounded queue overflows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use eventbus::{BusOptions, Event, EventBus, NewEvent, Pattern};
use serde_json::json;
use tempfile::TempDir;

/// Upper bound of every wait on asynchronous delivery.
const PATIENCE: Duration = Duration::from_secs(30);

/// A bus over a fresh SQLite store in `dir`, with subscriber queues of `queue` events, whose
/// delivery task is running.
async fn bus(dir: &TempDir, queue: usize) -> EventBus {
    let bus = unstarted_bus(dir, queue).await;
    delivery_running(&bus).await;
    bus
}

/// A bus as [`EventBus::builder`] returns it: its delivery task spawned, maybe not yet running.
pub(crate) async fn unstarted_bus(dir: &TempDir, queue: usize) -> EventBus {
    let options = SqliteOptions {
        synchronous: Synchronous::Normal,
        ..SqliteOptions::default()
    };
    let store =
        SqliteStore::open(&dir.path().join("eventbus.db"), options).expect("opening the store");
    EventBus::builder(Arc::new(store))
        .options(BusOptions {
            subscriber_queue: queue,
            ..BusOptions::default()
        })
        .build()
        .await
        .expect("building the bus")
}

/// Waits until the bus's dispatcher follows the log: a probe subscriber receives a probe event.
/// (Events committed before the dispatcher first runs are not dispatched; see
/// `events_committed_before_the_dispatcher_first_runs_reach_subscribers`.)
async fn delivery_running(bus: &EventBus) {
    let probe = Received::default();
    let _sub = bus.subscribe(pattern("probe.ping"), {
        let probe = probe.clone();
        move |e| {
            let probe = probe.clone();
            async move { probe.push(e) }
        }
    });
    for _ in 0..(PATIENCE.as_millis() / 10) {
        bus.publish(NewEvent::new("probe.ping", json!({})))
            .await
            .expect("publishing a probe");
        tokio::time::sleep(Duration::from_millis(10)).await;
        if probe.len() > 0 {
            return;
        }
    }
    panic!("the bus never delivered a probe event");
}

pub(crate) fn pattern(s: &str) -> Pattern {
    Pattern::parse(s).expect("a valid pattern")
}

/// What a subscriber received, in arrival order.
#[derive(Clone, Default)]
pub(crate) struct Received(Arc<Mutex<Vec<Arc<Event>>>>);

impl Received {
    pub(crate) fn push(&self, event: Arc<Event>) {
        self.0.lock().unwrap().push(event);
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn seqs(&self) -> Vec<u64> {
        self.0.lock().unwrap().iter().map(|e| e.seq).collect()
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.id.clone())
            .collect()
    }

    pub(crate) fn has_id(&self, id: &str) -> bool {
        self.0.lock().unwrap().iter().any(|e| e.id == id)
    }
}

/// Polls `done` until it holds, failing after [`PATIENCE`].
pub(crate) async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..(PATIENCE.as_millis() / 10) {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_panicking_subscribers_hold_up_no_one() {
    const PUBLISHERS: usize = 8;
    const PER_PUBLISHER: usize = 1250;
    const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;
    /// The slow subscriber stalls on this event of its own until the publishers are done.
    const STALL_AT: usize = 100;

    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir, 16).await;

    let normal = Received::default();
    let normal_sub = bus.subscribe(pattern(">"), {
        let normal = normal.clone();
        move |e| {
            let normal = normal.clone();
            async move { normal.push(e) }
        }
    });

    // Panics on every event whose seq is a multiple of 100.
    let panicky = Received::default();
    let panics_thrown = Arc::new(AtomicU64::new(0));
    let panicky_sub = bus.subscribe(pattern(">"), {
        let (panicky, thrown) = (panicky.clone(), panics_thrown.clone());
        move |e| {
            let (panicky, thrown) = (panicky.clone(), thrown.clone());
            async move {
                if e.seq % 100 == 0 {
                    thrown.fetch_add(1, Ordering::SeqCst);
                    panic!("handler failure on seq {}", e.seq);
                }
                panicky.push(e);
            }
        }
    });

    // Sleeps 2 ms per event while the publishers run; stalls on its 100th event until they are
    // done, so its queue overflows whatever the machine's speed.
    let slow = Received::default();
    let released = Arc::new(AtomicBool::new(false));
    let slow_sub = bus.subscribe(pattern(">"), {
        let (slow, released) = (slow.clone(), released.clone());
        move |e| {
            let (slow, released) = (slow.clone(), released.clone());
            async move {
                if !released.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if slow.len() + 1 >= STALL_AT {
                    while !released.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                slow.push(e);
            }
        }
    });

    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        publishers.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(PER_PUBLISHER);
            for i in 0..PER_PUBLISHER {
                let event = NewEvent::new("project.updated", json!({"p": p, "i": i}))
                    .with_id(format!("{p}-{i}"));
                let appended = bus.publish(event).await.expect("publish");
                assert!(appended.created);
                seqs.push(appended.event.seq);
            }
            seqs
        }));
    }
    let mut acked = Vec::with_capacity(TOTAL);
    for p in publishers {
        acked.extend(p.await.expect("a publisher"));
    }
    // Every publisher completed while the slow subscriber was still far behind.
    let slow_at_end = slow.len();
    assert!(
        slow_at_end < STALL_AT,
        "the slow subscriber had {slow_at_end} events when publishing ended"
    );
    assert!(
        slow_sub.stats().lags.load(Ordering::SeqCst) > 0,
        "the slow subscriber's queue never overflowed"
    );
    released.store(true, Ordering::SeqCst);

    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked.len(), TOTAL, "every publish got its own seq");
    let panicking: Vec<u64> = acked.iter().copied().filter(|s| s % 100 == 0).collect();
    let survivors: Vec<u64> = acked.iter().copied().filter(|s| s % 100 != 0).collect();

    wait_for("the normal subscriber", || normal.len() >= TOTAL).await;
    wait_for("the panicking subscriber", || {
        panicky.len() + panicky_sub.stats().panics.load(Ordering::SeqCst) as usize >= TOTAL
    })
    .await;
    wait_for("the slow subscriber to catch up", || slow.len() >= TOTAL).await;

    assert!(
        normal.seqs() == acked,
        "the normal subscriber did not get every event once, in order"
    );

    assert_eq!(panics_thrown.load(Ordering::SeqCst), panicking.len() as u64);
    assert_eq!(
        panicky_sub.stats().panics.load(Ordering::SeqCst),
        panicking.len() as u64
    );
    assert!(
        panicky.seqs() == survivors,
        "the panicking subscriber lost or repeated events"
    );
    assert_eq!(
        panicky_sub.stats().delivered.load(Ordering::SeqCst),
        survivors.len() as u64
    );

    assert!(
        slow.seqs() == acked,
        "the slow subscriber did not get every event once, in order"
    );
    assert_eq!(
        slow_sub.stats().delivered.load(Ordering::SeqCst),
        TOTAL as u64
    );
    assert_eq!(slow_sub.stats().panics.load(Ordering::SeqCst), 0);
    assert_eq!(normal_sub.stats().panics.load(Ordering::SeqCst), 0);

    // Nothing more arrives later: one more event reaches each exactly once.
    let last = bus
        .publish(NewEvent::new("project.deleted", json!({})))
        .await
        .unwrap()
        .event
        .seq;
    wait_for("the last event", || {
        normal.len() > TOTAL && slow.len() > TOTAL
    })
    .await;
    assert_eq!(normal.seqs()[TOTAL..], [last]);
    assert_eq!(slow.seqs()[TOTAL..], [last]);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_only_events_committed_after_they_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir, 1024).await;
    bus.publish(NewEvent::new("project.created", json!({})).with_id("before"))
        .await
        .unwrap();
    let got = Received::default();
    let _sub = bus.subscribe(pattern(">"), {
        let got = got.clone();
        move |e| {
            let got = got.clone();
            async move { got.push(e) }
        }
    });
    bus.publish(NewEvent::new("project.created", json!({})).with_id("after"))
        .await
        .unwrap();
    wait_for("the event", || got.len() >= 1).await;
    assert_eq!(got.ids(), ["after"]);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_subscription_stops_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir, 1024).await;
    let dropped = Received::default();
    let handler_alive = Arc::new(());
    let sub = bus.subscribe(pattern("project.>"), {
        let (dropped, alive) = (dropped.clone(), handler_alive.clone());
        move |e| {
            let _alive = &alive;
            let dropped = dropped.clone();
            async move { dropped.push(e) }
        }
    });
    let witness = Received::default();
    let _witness_sub = bus.subscribe(pattern("project.>"), {
        let witness = witness.clone();
        move |e| {
            let witness = witness.clone();
            async move { witness.push(e) }
        }
    });
    assert_eq!(bus.subscriber_count(), 2);

    for i in 0..10 {
        bus.publish(NewEvent::new("project.updated", json!({"i": i})))
            .await
            .unwrap();
    }
    wait_for("the first ten events", || {
        dropped.len() == 10 && witness.len() == 10
    })
    .await;

    drop(sub);
    assert_eq!(bus.subscriber_count(), 1);
    for i in 10..20 {
        bus.publish(NewEvent::new("project.updated", json!({"i": i})))
            .await
            .unwrap();
    }
    // The witness has the later events, so they were dispatched; the dropped one got none.
    wait_for("the witness", || witness.len() == 20).await;
    assert_eq!(dropped.len(), 10);
    // Its task ends and releases the handler.
    wait_for("the dropped subscriber's task to end", || {
        Arc::strong_count(&handler_alive) == 1
    })
    .await;
    assert_eq!(dropped.len(), 10);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_select_the_right_events() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir, 1024).await;
    let patterns = [
        "project.created",
        "project.*",
        "project.>",
        ">",
        "user.*,project.created",
    ];
    let mut subs = Vec::new();
    let mut received = Vec::new();
    for p in patterns {
        // A comma list is several subscriptions whose events are merged.
        for one in Pattern::parse_list(p).unwrap() {
            let got = Received::default();
            let sub = bus.subscribe(one.clone(), {
                let got = got.clone();
                move |e| {
                    let got = got.clone();
                    async move { got.push(e) }
                }
            });
            subs.push(sub);
            received.push((p, one, got));
        }
    }
    let types = [
        "project.created",
        "project.updated",
        "project.a.b",
        "user.created",
        "projects.created",
        "project.created.x",
        "user.a.b",
    ];
    for t in types {
        bus.publish(NewEvent::new(t, json!({})).with_id(t))
            .await
            .unwrap();
    }
    // Sentinels: every subscription matches one of them. Delivery is in seq order, so once a
    // subscription has its sentinel, everything before it was delivered or skipped.
    bus.publish(NewEvent::new("user.sentinel", json!({})).with_id("user.sentinel"))
        .await
        .unwrap();
    bus.publish(NewEvent::new("project.created", json!({})).with_id("sentinel"))
        .await
        .unwrap();
    for (p, one, got) in &received {
        let sentinel = if one.matches("project.created") {
            "sentinel"
        } else {
            "user.sentinel"
        };
        wait_for(&format!("{sentinel} on {p}"), || got.has_id(sentinel)).await;
    }

    let ids = |p: &str| -> Vec<String> {
        let mut all: Vec<(u64, String)> = Vec::new();
        for (name, _, got) in &received {
            if *name == p {
                all.extend(got.seqs().into_iter().zip(got.ids()));
            }
        }
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    };
    assert_eq!(ids("project.created"), ["project.created", "sentinel"]);
    assert_eq!(
        ids("project.*"),
        ["project.created", "project.updated", "sentinel"]
    );
    assert_eq!(
        ids("project.>"),
        [
            "project.created",
            "project.updated",
            "project.a.b",
            "project.created.x",
            "sentinel"
        ]
    );
    let mut everything: Vec<&str> = types.to_vec();
    everything.extend(["user.sentinel", "sentinel"]);
    assert_eq!(ids(">"), everything);
    assert_eq!(
        ids("user.*,project.created"),
        [
            "project.created",
            "user.created",
            "user.sentinel",
            "sentinel"
        ]
    );
    drop(subs);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_continues_past_a_rejected_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir, 1024).await;
    let got = Received::default();
    let _sub = bus.subscribe(pattern("project.>"), {
        let got = got.clone();
        move |e| {
            let got = got.clone();
            async move { got.push(e) }
        }
    });
    bus.publish(NewEvent::new("project.created", json!({"v": 1})).with_id("a"))
        .await
        .unwrap();
    let conflict = bus
        .publish_batch(vec![
            NewEvent::new("project.updated", json!({})).with_id("n1"),
            NewEvent::new("project.created", json!({"v": 2})).with_id("a"),
        ])
        .await;
    assert!(
        conflict.is_err(),
        "a batch with a conflicting id is refused"
    );
    for id in ["b", "c"] {
        bus.publish(NewEvent::new("project.updated", json!({})).with_id(id))
            .await
            .unwrap();
    }
    wait_for("the event after the refused batch", || got.has_id("c")).await;
    assert_eq!(got.ids(), ["a", "b", "c"]);
    assert!(bus.get("n1").await.unwrap().is_none());
    bus.shutdown().await;
}

/// Queues of one event overflow all the time: every subscriber still gets every event once, in
/// order, alternating between its queue and catch-up reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_queues_still_deliver_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus(&dir, 1).await;
    let mut subs = Vec::new();
    let mut received = Vec::new();
    for (n, p) in ["project.>", ">", "project.updated"]
        .into_iter()
        .enumerate()
    {
        let got = Received::default();
        subs.push(bus.subscribe(pattern(p), {
            let got = got.clone();
            move |e| {
                let got = got.clone();
                async move {
                    if e.seq % 7 == n as u64 {
                        tokio::task::yield_now().await;
                    }
                    got.push(e)
                }
            }
        }));
        received.push(got);
    }
    let mut publishers = Vec::new();
    for p in 0..4 {
        let bus = bus.clone();
        publishers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..500 {
                let batch: Vec<NewEvent> = (0..(1 + i % 3))
                    .map(|k| NewEvent::new("project.updated", json!({"p": p, "i": i, "k": k})))
                    .collect();
                seqs.extend(
                    bus.publish_batch(batch)
                        .await
                        .unwrap()
                        .iter()
                        .map(|a| a.event.seq),
                );
            }
            seqs
        }));
    }
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    acked.sort_unstable();
    for (got, sub) in received.iter().zip(&subs) {
        wait_for("every event", || got.len() >= acked.len()).await;
        assert!(
            got.seqs() == acked,
            "{}: lost, repeated or reordered events",
            sub.pattern()
        );
    }
    assert!(subs[0].stats().lags.load(Ordering::SeqCst) > 0);
    bus.shutdown().await;
}
