//! Durable named consumers: at least once, in `seq` order, across a stop and a restart of the
//! bus, with failing handlers retried, one instance at a time (the lease) — on every backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::transport::consumer::StartFrom;
use eventbus::{ConsumerOptions, EventBus, NewEvent, Pattern};
use serde_json::json;

use crate::common::TestDb;

const PATIENCE: Duration = Duration::from_secs(30);

type Seen = Arc<Mutex<Vec<u64>>>;

async fn bus(db: &TestDb) -> EventBus {
    EventBus::builder(db.open().await)
        .build()
        .await
        .expect("building the bus")
}

async fn publish(bus: &EventBus, n: usize, ty: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let stored = bus
            .publish(NewEvent::new(ty, json!({"i": i})))
            .await
            .expect("publish");
        seqs.push(stored.event.seq);
    }
    seqs
}

fn options() -> ConsumerOptions {
    ConsumerOptions {
        start: StartFrom::Beginning,
        save_every: Duration::from_millis(20),
        min_backoff: Duration::from_millis(5),
        ..ConsumerOptions::default()
    }
}

fn start(bus: &EventBus, seen: &Seen, slow: bool) -> eventbus::Consumer {
    let seen = seen.clone();
    bus.consumer(
        "billing-sync",
        Pattern::parse("order.*").unwrap(),
        options(),
        move |e| {
            let seen = seen.clone();
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                seen.lock().unwrap().push(e.seq);
                Ok(())
            }
        },
    )
}

async fn wait_for(seen: &Seen, what: impl Fn(&[u64]) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !what(&seen.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; seen {:?}",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stopped_mid_stream_and_restarted_receives_everything(db: TestDb) {
    let bus1 = bus(&db).await;
    let mut expected = publish(&bus1, 150, "order.placed").await;
    publish(&bus1, 20, "user.created").await;
    let first: Seen = Arc::default();
    let consumer = start(&bus1, &first, true);
    wait_for(&first, |s| s.len() >= 40).await;
    consumer.stop().await;
    let stopped_at = first.lock().unwrap().len();
    assert!(stopped_at < 150, "stopped mid-stream ({stopped_at} of 150)");
    // Published while the consumer is not running.
    expected.extend(publish(&bus1, 100, "order.shipped").await);
    bus1.shutdown().await;

    // A new bus on the same database: the consumer resumes from its saved cursor.
    let bus2 = bus(&db).await;
    let second: Seen = Arc::default();
    let consumer = start(&bus2, &second, false);
    let last = *expected.last().unwrap();
    wait_for(&second, |s| s.last() == Some(&last)).await;
    // Live events reach it too.
    expected.extend(publish(&bus2, 10, "order.placed").await);
    let last = *expected.last().unwrap();
    wait_for(&second, |s| s.last() == Some(&last)).await;
    consumer.stop().await;
    bus2.shutdown().await;

    let first = first.lock().unwrap().clone();
    let second = second.lock().unwrap().clone();
    for run in [&first, &second] {
        assert!(
            run.windows(2).all(|w| w[0] < w[1]),
            "each run is in seq order without repeats"
        );
    }
    // At least once: the second run starts at or before the event after the first run's last.
    assert!(
        second[0] <= first.last().unwrap() + 1,
        "no gap at the restart"
    );
    let mut all: Vec<u64> = first.iter().chain(second.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, expected, "every matching event, and nothing else");
    let repeats = first.len() + second.len() - expected.len();
    assert!(
        repeats <= 64,
        "{repeats} events handled twice: the cursor was saved too rarely"
    );
}

async fn failing_handler_is_retried_in_place(db: TestDb) {
    let bus = bus(&db).await;
    let seqs = publish(&bus, 5, "order.placed").await;
    let seen: Seen = Arc::default();
    let failures_left = Arc::new(Mutex::new(3u32));
    let flaky = seqs[2];
    let consumer = {
        let (seen, failures_left) = (seen.clone(), failures_left.clone());
        bus.consumer(
            "flaky",
            Pattern::parse("order.>").unwrap(),
            options(),
            move |e| {
                let (seen, failures_left) = (seen.clone(), failures_left.clone());
                async move {
                    if e.seq == flaky {
                        let was: u32 = {
                            let mut left = failures_left.lock().unwrap();
                            let was = *left;
                            *left = was.saturating_sub(1);
                            was
                        };
                        match was {
                            1 => panic!("a handler panic is retried too"),
                            2.. => return Err("downstream unavailable".to_owned()),
                            0 => {}
                        }
                    }
                    seen.lock().unwrap().push(e.seq);
                    Ok(())
                }
            },
        )
    };
    let expected = seqs.clone();
    wait_for(&seen, |s| s.len() == 5).await;
    assert_eq!(
        *seen.lock().unwrap(),
        expected,
        "in order, the failed event not skipped"
    );
    assert_eq!(
        consumer
            .stats()
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    consumer.stop().await;
    bus.shutdown().await;
}

#[tokio::test]
async fn sqlite_consumer_stopped_mid_stream_and_restarted_receives_everything() {
    stopped_mid_stream_and_restarted_receives_everything(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_consumer_stopped_mid_stream_and_restarted_receives_everything() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    stopped_mid_stream_and_restarted_receives_everything(db).await;
}

#[tokio::test]
async fn sqlite_failing_handler_is_retried_in_place() {
    failing_handler_is_retried_in_place(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_failing_handler_is_retried_in_place() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    failing_handler_is_retried_in_place(db).await;
}

fn recorder(
    seen: &Seen,
) -> impl Fn(Arc<eventbus::Event>) -> futures_util::future::Ready<Result<(), String>>
+ Send
+ Sync
+ 'static {
    let seen = seen.clone();
    move |e| {
        seen.lock().unwrap().push(e.seq);
        futures_util::future::ready(Ok(()))
    }
}

fn leased(consumer: &eventbus::Consumer) -> bool {
    consumer
        .stats()
        .leased
        .load(std::sync::atomic::Ordering::Relaxed)
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn leasing_options() -> ConsumerOptions {
    ConsumerOptions {
        lease_ttl: Duration::from_millis(600),
        ..options()
    }
}

/// Two instances of one consumer (two buses on one PostgreSQL database, like two processes; or
/// two instances in one process on SQLite): one handles every event, the other stands by; when
/// the first stops, the second takes over from the saved cursor, with nothing handled twice.
async fn one_instance_runs_a_consumer_and_another_takes_over_when_it_stops(
    first_bus: EventBus,
    second_bus: EventBus,
) {
    let (a, b): (Seen, Seen) = Default::default();
    let pattern = || Pattern::parse("order.*").unwrap();
    let first = first_bus.consumer("leased", pattern(), leasing_options(), recorder(&a));
    wait_until("the first instance holds the lease", || leased(&first)).await;
    let second = second_bus.consumer("leased", pattern(), leasing_options(), recorder(&b));
    let mut expected = publish(&first_bus, 60, "order.placed").await;
    wait_for(&a, |s| s.len() == 60).await;
    // Several lease renewals pass; the second instance still stands by.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(b.lock().unwrap().is_empty(), "the standby handled nothing");
    assert!(!leased(&second));

    first.stop().await;
    wait_until("the second instance takes over", || leased(&second)).await;
    expected.extend(publish(&second_bus, 40, "order.placed").await);
    wait_for(&b, |s| s.len() == 40).await;
    assert_eq!(*a.lock().unwrap(), expected[..60]);
    assert_eq!(
        *b.lock().unwrap(),
        expected[60..],
        "from the saved cursor, nothing twice"
    );
    second.stop().await;
    first_bus.shutdown().await;
    second_bus.shutdown().await;
}

#[tokio::test]
async fn sqlite_one_instance_runs_a_consumer_and_another_takes_over_when_it_stops() {
    let db = TestDb::sqlite();
    let bus = bus(&db).await;
    one_instance_runs_a_consumer_and_another_takes_over_when_it_stops(bus.clone(), bus).await;
}

#[tokio::test]
async fn postgres_one_instance_runs_a_consumer_and_another_takes_over_when_it_stops() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (first, second) = (bus(&db).await, bus(&db).await);
    one_instance_runs_a_consumer_and_another_takes_over_when_it_stops(first, second).await;
}

/// The holder is cut off its database (as if its process hung or its network failed): it stops
/// handling before its lease can expire, the other process takes over once it has, and every
/// event is handled, in order, at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_holder_cut_off_its_database_stops_and_another_process_takes_over() {
    use eventbus::store::postgres::{PgOptions, PgStore};

    use crate::common::proxy::TcpProxy;
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let schema = db.schema().unwrap();
    let proxy = TcpProxy::start(crate::common::pg_upstream().await).await;
    let through_proxy = schema
        .connect_options()
        .host("127.0.0.1")
        .port(proxy.addr().port());
    let options = PgOptions {
        pool_size: 2,
        timeout: Duration::from_secs(1),
        ..PgOptions::default()
    };
    let cut_bus = EventBus::builder(Arc::new(
        PgStore::open_with(through_proxy, options).await.unwrap(),
    ))
    .build()
    .await
    .unwrap();
    let other_bus = bus(&db).await;

    let (a, b): (Seen, Seen) = Default::default();
    let pattern = || Pattern::parse("order.*").unwrap();
    let first = cut_bus.consumer("failover", pattern(), leasing_options(), recorder(&a));
    wait_until("the first instance holds the lease", || leased(&first)).await;
    let second = other_bus.consumer("failover", pattern(), leasing_options(), recorder(&b));
    let mut expected = publish(&other_bus, 30, "order.placed").await;
    wait_for(&a, |s| s.len() == 30).await;

    proxy.cut();
    wait_until("the cut-off instance stops", || !leased(&first)).await;
    wait_until("the other instance takes over", || leased(&second)).await;
    expected.extend(publish(&other_bus, 30, "order.placed").await);
    let last = *expected.last().unwrap();
    wait_for(&b, |s| s.last() == Some(&last)).await;
    let a = a.lock().unwrap().clone();
    let b = b.lock().unwrap().clone();
    assert!(
        a.len() <= 30,
        "the cut-off instance handled nothing after the cut"
    );
    assert!(b.windows(2).all(|w| w[0] < w[1]), "in order");
    let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, expected, "every event at least once");

    // Back on its database, the first instance stands by: the lease is the other's.
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!leased(&first) && leased(&second));
    second.stop().await;
    first.stop().await;
    other_bus.shutdown().await;
    cut_bus.shutdown().await;
}

/// A failing handler is retried after `min_backoff`, then after twice as long each time up to
/// `max_backoff`, on the same event; checked on the documented defaults (100 ms doubling to
/// 30 s, two minutes of retries) in paused time. SQLite only: a PostgreSQL store bounds its
/// round trips with timeouts, which paused time would fire while a query is on the network.
#[tokio::test]
async fn sqlite_a_failing_handler_backs_off_doubling_up_to_the_maximum() {
    let db = TestDb::sqlite();
    let bus = bus(&db).await;
    let seqs = publish(&bus, 2, "order.placed").await;
    tokio::time::pause();
    let calls: Arc<Mutex<Vec<(u64, tokio::time::Instant)>>> = Arc::default();
    let options = ConsumerOptions {
        start: StartFrom::Beginning,
        // No renewal falls within the retries: only the backoff's timers run.
        lease_ttl: Duration::from_secs(3600),
        ..ConsumerOptions::default()
    };
    let (min, max) = (options.min_backoff, options.max_backoff);
    let consumer = {
        let calls = calls.clone();
        bus.consumer(
            "backoff",
            Pattern::parse("order.*").unwrap(),
            options,
            move |e| {
                let calls = calls.clone();
                async move {
                    let mut calls = calls.lock().unwrap();
                    calls.push((e.seq, tokio::time::Instant::now()));
                    // The first event fails 11 times, then succeeds.
                    if calls.len() <= 11 {
                        return Err("downstream unavailable".to_owned());
                    }
                    Ok(())
                }
            },
        )
    };
    // Bounded in real time: the virtual clock runs ahead whenever the runtime idles.
    let deadline = std::time::Instant::now() + PATIENCE;
    while consumer
        .stats()
        .handled
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out; calls {:?}",
            calls.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [[seqs[0]; 12].as_slice(), &[seqs[1]]].concat(),
        "the failed event is retried in place, the next one waits for it"
    );
    let waits: Vec<Duration> = calls[..12].windows(2).map(|w| w[1].1 - w[0].1).collect();
    let expected: Vec<Duration> = (0..11).map(|i| (min * 2u32.pow(i)).min(max)).collect();
    // Tokio's timer rounds a deadline up to its next millisecond.
    assert!(
        waits
            .iter()
            .zip(&expected)
            .all(|(w, e)| *e <= *w && *w <= *e + Duration::from_millis(1)),
        "waited {waits:?}, the schedule is {expected:?}"
    );
    assert_eq!(
        expected[..3],
        [100, 200, 400].map(Duration::from_millis),
        "the documented start"
    );
    assert_eq!(expected[9..], [Duration::from_secs(30); 2], "and cap");
    consumer.stop().await;
    bus.shutdown().await;
}
