//! The webhook store on PostgreSQL shared by several processes: each test opens two
//! [`PgStore`]s on one schema (two connection pools, as two bus processes have) and runs them
//! concurrently. (The backend-independent contract, `store::webhook::contract`, runs on
//! PostgreSQL in the unit tests of `store::postgres::webhook`.)
//!
//! What is checked: no delivery is claimed twice while its lease runs, an ordered endpoint is
//! served strictly in `seq` order even with two claimers, concurrent fan-out queues every event
//! exactly once and nothing for an endpoint deleted meanwhile, and an endpoint's `sinceSeq` never
//! passes an event that commits later.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::core::filter::EventFilter;
use eventbus::core::time::Timestamp;
use eventbus::store::postgres::PgStore;
use eventbus::store::webhook::{
    AttemptQuery, AttemptRecord, Claim, DeliveryQuery, Endpoint, FanOut, FanOutResult,
    HealthPolicy, NewDelivery, WebhookStore,
};
use eventbus::{EventStore, Pattern};

use crate::common::{PgSchema, event, test_pg_options};

/// Generous bound on each test's work loop.
const WAIT: Duration = Duration::from_secs(60);

const HEALTH: HealthPolicy = HealthPolicy {
    window_micros: 0,
    failures: 1_000_000,
};

/// Two stores ("processes") on one fresh schema; `None` when PostgreSQL is unreachable.
async fn two_processes() -> Option<(PgSchema, Arc<PgStore>, Arc<PgStore>)> {
    let schema = PgSchema::create().await?;
    let open = || PgStore::open_with(schema.connect_options(), test_pg_options());
    let a = Arc::new(open().await.expect("open A"));
    let b = Arc::new(open().await.expect("open B"));
    Some((schema, a, b))
}

fn endpoint(id: &str, ordered: bool) -> Endpoint {
    let now = Timestamp::now();
    Endpoint {
        id: id.into(),
        url: "https://example.com/".into(),
        description: None,
        event_types: vec![Pattern::all()],
        project_id: None,
        tenant_id: None,
        headers: BTreeMap::new(),
        rate_limit: None,
        ordered,
        format: Default::default(),
        disabled: false,
        disabled_reason: None,
        secret: "whsec_x".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        since_seq: 0,
        created_at: now,
        updated_at: now,
        failing_since: None,
        failure_count: 0,
    }
}

fn claim(limit: usize) -> Claim {
    let now = Timestamp::now();
    Claim {
        now,
        // Far longer than any test: a lease never expires here.
        lease_until: now.plus_micros(3_600_000_000),
        limit,
        per_endpoint: limit,
        held: Default::default(),
    }
}

fn success(d: &eventbus::store::webhook::Delivery) -> AttemptRecord {
    AttemptRecord {
        delivery_id: d.id,
        endpoint_id: d.endpoint_id.clone(),
        event_id: d.event_id.clone(),
        started_at: Timestamp::now(),
        duration_ms: 1,
        status_code: Some(200),
        response_body: None,
        error: None,
        success: true,
        retry_at: None,
    }
}

fn new_delivery(ep: &str, seq: u64) -> NewDelivery {
    NewDelivery {
        endpoint_id: ep.into(),
        event_seq: seq,
        event_id: format!("e{seq}"),
        event_type: "a.b".into(),
    }
}

/// Every delivery of `endpoint`, following the pages.
async fn all_deliveries(
    s: &dyn WebhookStore,
    endpoint: &str,
) -> Vec<eventbus::store::webhook::Delivery> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = s
            .list_deliveries(DeliveryQuery {
                endpoint_id: endpoint.into(),
                after,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        out.extend(page.items);
        match page.next_after {
            Some(a) => after = a,
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_never_claim_the_same_delivery() {
    let Some((_schema, a, b)) = two_processes().await else {
        return;
    };
    a.create_endpoint(endpoint("p", false)).await.unwrap();
    a.create_endpoint(endpoint("q", false)).await.unwrap();
    const N: u64 = 300;
    let rows = (1..=N)
        .flat_map(|seq| [new_delivery("p", seq), new_delivery("q", seq)])
        .collect();
    a.enqueue(rows, Timestamp::now()).await.unwrap();

    let claimed: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    let mut workers = Vec::new();
    for (who, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let claimed = claimed.clone();
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + WAIT;
            while store.pending_count().await.unwrap() > 0 {
                assert!(Instant::now() < deadline, "the queue did not drain");
                let batch = store.claim_due(claim(16)).await.unwrap();
                claimed
                    .lock()
                    .unwrap()
                    .extend(batch.iter().map(|d| (who % 2, d.id)));
                store
                    .complete(batch.iter().map(success).collect(), HEALTH)
                    .await
                    .unwrap();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let ids: HashSet<u64> = claimed.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids.len(),
        claimed.len(),
        "a delivery was claimed twice while leased"
    );
    assert_eq!(ids.len() as u64, 2 * N, "every delivery was claimed");
    for ep in ["p", "q"] {
        let attempts = a
            .list_attempts(AttemptQuery {
                endpoint_id: ep.into(),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(attempts.items.len() as u64, N, "one attempt per delivery");
        assert!(attempts.items.iter().all(|t| t.attempt == 1 && t.success));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ordered_endpoint_is_served_in_seq_order_by_two_processes() {
    let Some((_schema, a, b)) = two_processes().await else {
        return;
    };
    a.create_endpoint(endpoint("o", true)).await.unwrap();
    const N: u64 = 60;
    // Queued in two inserts, the second one older events first in id order but later in seq,
    // so id order is not seq order.
    a.enqueue(
        (31..=N).map(|s| new_delivery("o", s)).collect(),
        Timestamp::now(),
    )
    .await
    .unwrap();
    a.enqueue(
        (1..=30).map(|s| new_delivery("o", s)).collect(),
        Timestamp::now(),
    )
    .await
    .unwrap();

    let sent: Arc<Mutex<Vec<u64>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
        let (sent, in_flight) = (sent.clone(), in_flight.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + WAIT;
            while store.pending_count().await.unwrap() > 0 {
                assert!(Instant::now() < deadline, "the queue did not drain");
                let batch = store.claim_due(claim(10)).await.unwrap();
                assert!(batch.len() <= 1, "an ordered endpoint yields its head only");
                for d in &batch {
                    assert_eq!(
                        in_flight.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two deliveries of an ordered endpoint in flight"
                    );
                    sent.lock().unwrap().push(d.event_seq);
                    tokio::task::yield_now().await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                store
                    .complete(batch.iter().map(success).collect(), HEALTH)
                    .await
                    .unwrap();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        sent,
        (1..=N).collect::<Vec<_>>(),
        "strict seq order, once each"
    );
}

/// Follows the log like the transport's fan-out: match, [`WebhookStore::fan_out`], and after a
/// refusal continue from the stored cursor.
async fn fan_out_until(store: Arc<PgStore>, head: u64, steps: Arc<AtomicUsize>) {
    let deadline = Instant::now() + WAIT;
    let mut cursor = store.fanout_cursor().await.unwrap();
    let (mut endpoints, mut version) = store.list_endpoints().await.unwrap();
    while cursor < head {
        assert!(Instant::now() < deadline, "fan-out did not reach the head");
        let read = store
            .read_after(cursor, &EventFilter::default(), 7)
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for e in &read.events {
            for ep in &endpoints {
                if e.seq > ep.since_seq && ep.matches(e) {
                    deliveries.push(NewDelivery::of(&ep.id, e));
                }
            }
        }
        let step = FanOut {
            from: cursor,
            to: read.next,
            endpoints_version: version,
            deliveries,
            now: Timestamp::now(),
        };
        match store.fan_out(step).await.unwrap() {
            FanOutResult::Applied => {
                steps.fetch_add(1, Ordering::Relaxed);
                cursor = read.next;
            }
            FanOutResult::Stale { cursor: stored, .. } => {
                cursor = stored;
                (endpoints, version) = store.list_endpoints().await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fan_out_queues_every_event_exactly_once() {
    let Some((_schema, a, b)) = two_processes().await else {
        return;
    };
    a.create_endpoint(endpoint("x", false)).await.unwrap();
    let mut typed = endpoint("y", false);
    typed.event_types = vec![Pattern::parse("project.*").unwrap()];
    a.create_endpoint(typed).await.unwrap();
    let mut events = Vec::new();
    for i in 0..300 {
        events.push(event::of(if i % 3 == 0 {
            "project.created"
        } else {
            "user.created"
        }));
    }
    let appended = a.append(events).await.unwrap();
    let head = appended.last().unwrap().event.seq;

    let steps: [Arc<AtomicUsize>; 2] = Default::default();
    let fa = tokio::spawn(fan_out_until(a.clone(), head, steps[0].clone()));
    let fb = tokio::spawn(fan_out_until(b.clone(), head, steps[1].clone()));
    fa.await.unwrap();
    fb.await.unwrap();
    assert_eq!(a.fanout_cursor().await.unwrap(), head);

    for (ep, expected) in [("x", 300), ("y", 100)] {
        let ds = all_deliveries(&*a, ep).await;
        let mut per_seq: HashMap<u64, usize> = HashMap::new();
        for d in &ds {
            *per_seq.entry(d.event_seq).or_default() += 1;
        }
        assert!(
            per_seq.values().all(|n| *n == 1),
            "an event was queued twice for {ep}"
        );
        assert_eq!(ds.len(), expected, "every matching event queued for {ep}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn since_seq_never_passes_an_event_that_commits_later() {
    let Some((_schema, a, b)) = two_processes().await else {
        return;
    };
    // B publishes continuously while A creates endpoints; each endpoint must then see, among
    // the committed events, exactly those with a larger seq than its `sinceSeq`, and none of
    // the events with a smaller one may have been committed after the endpoint.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (b, stop) = (b.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                b.append(vec![event::of("a.b"), event::of("a.c")])
                    .await
                    .unwrap();
                n += 2;
            }
            n
        })
    };
    let mut created = Vec::new();
    for i in 0..20 {
        let ep = a
            .create_endpoint(endpoint(&format!("e{i:02}"), false))
            .await
            .unwrap();
        // Every event with seq <= sinceSeq is committed now: reading them finds them all.
        let read = a
            .read_after(0, &EventFilter::default(), 100_000)
            .await
            .unwrap();
        let seen: HashSet<u64> = read.events.iter().map(|e| e.seq).collect();
        assert!(
            (1..=ep.since_seq).all(|s| seen.contains(&s)),
            "an event at or below sinceSeq {} was not committed yet",
            ep.since_seq
        );
        created.push(ep);
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await.unwrap();
    assert!(published > 0);
    let since: Vec<u64> = created.iter().map(|e| e.since_seq).collect();
    assert!(
        since.windows(2).all(|w| w[0] <= w[1]),
        "sinceSeq follows creation order: {since:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_deleted_during_fan_out_keeps_no_deliveries() {
    let Some((_schema, a, b)) = two_processes().await else {
        return;
    };
    a.create_endpoint(endpoint("x", false)).await.unwrap();
    a.create_endpoint(endpoint("z", false)).await.unwrap();
    let events = (0..300).map(|_| event::of("a.b")).collect();
    let head = a.append(events).await.unwrap().last().unwrap().event.seq;

    let steps: [Arc<AtomicUsize>; 2] = Default::default();
    let fa = tokio::spawn(fan_out_until(a.clone(), head, steps[0].clone()));
    let fb = tokio::spawn(fan_out_until(b.clone(), head, steps[1].clone()));
    // Delete once fan-out is under way (or done: the outcome must be the same).
    while steps[0].load(Ordering::Relaxed) + steps[1].load(Ordering::Relaxed) < 3
        && a.fanout_cursor().await.unwrap() < head
    {
        tokio::task::yield_now().await;
    }
    assert!(b.delete_endpoint("z").await.unwrap());
    fa.await.unwrap();
    fb.await.unwrap();

    assert!(
        all_deliveries(&*a, "z").await.is_empty(),
        "a fan-out step queued deliveries for a deleted endpoint"
    );
    let x = all_deliveries(&*a, "x").await;
    let seqs: HashSet<u64> = x.iter().map(|d| d.event_seq).collect();
    assert_eq!((x.len(), seqs.len()), (300, 300), "x gets every event once");
}
