//! The store contract, run against every backend.
//!
//! Each contract test is one `async fn(TestDb)`; [`contract!`] runs it on SQLite (a temporary
//! directory) and on PostgreSQL (a schema of its own). Expected results come from
//! [`EventFilter::matches`] over the events the test wrote, so the SQL of every backend is checked
//! against the one reference definition of a filter. PostgreSQL-only properties (several
//! processes on one database, an unavailable database, index use) follow in `postgres_only`.

use std::collections::HashSet;
use std::sync::Arc;

use eventbus::core::catalogue::EventTypeDef;
use eventbus::core::filter::EventFilter;
use eventbus::core::time::Timestamp;
use eventbus::store::{Appended, EventQuery, ExpectedSeq, MAX_PAGE};
use eventbus::{Event, EventStore, Pattern, StoreError};

use crate::common::TestDb;
use crate::common::event;

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = crate::common::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

contract!(
    append_assigns_increasing_seqs_and_keeps_the_publishers_bytes,
    same_id_same_content_returns_the_stored_event,
    conflict_stores_nothing_of_the_batch,
    conflict_in_a_group_spares_the_other_batches,
    an_expected_seq_is_checked_with_the_append,
    a_wrong_expected_seq_in_a_group_spares_the_other_batches,
    eight_writers_racing_with_one_expected_seq_one_wins_each_round,
    every_filter_selects_what_the_reference_filter_selects,
    counts_by_type_follow_the_reference_filter,
    pages_cover_the_result_exactly_once,
    read_after_and_tail_follow_the_log,
    concurrent_appends_get_unique_increasing_seqs_and_a_tailing_reader_sees_all,
    event_types_are_kept,
    ping_answers,
    a_consumer_lease_has_one_holder_at_a_time,
);

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

fn seqs(events: &[Arc<Event>]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

async fn append_assigns_increasing_seqs_and_keeps_the_publishers_bytes(db: TestDb) {
    let store = db.open().await;
    let mut first = event::raw(
        "project.created",
        "{ \"name\" : \"a\",\n \"n\": [1, 2.50] }",
    );
    first.project_id = Some("p1".into());
    first.tenant_id = Some("t1".into());
    first.user_id = Some("u1".into());
    first.metadata.insert("correlationId".into(), "c-1".into());
    let batch = vec![
        first.clone(),
        event::of("project.updated"),
        event::of("user.created"),
    ];
    let stored = store.append(batch).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|a| a.created));
    let s: Vec<u64> = stored.iter().map(|a| a.event.seq).collect();
    assert!(s[0] > 0 && s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
    assert_eq!(store.log().head(), s[2]);

    let got = store.get(&first.id).await.unwrap().expect("stored");
    assert_eq!(
        got.payload.get(),
        first.payload.get(),
        "payload bytes are the publisher's"
    );
    assert_eq!(got.seq, s[0]);
    assert_eq!(got.timestamp, first.timestamp);
    assert_eq!(got.metadata, first.metadata);
    assert_eq!(
        (
            got.project_id.as_deref(),
            got.tenant_id.as_deref(),
            got.user_id.as_deref()
        ),
        (Some("p1"), Some("t1"), Some("u1"))
    );
    assert!(store.get("no-such-id").await.unwrap().is_none());
    assert!(store.append(Vec::new()).await.unwrap().is_empty());

    let more = store
        .append(vec![event::of("project.deleted")])
        .await
        .unwrap();
    assert!(more[0].event.seq > s[2]);
    store.close().await;
}

async fn same_id_same_content_returns_the_stored_event(db: TestDb) {
    let store = db.open().await;
    let original = event::with_id("project.created", "evt-1", r#"{"a":1}"#);
    let first = store
        .append(vec![original.clone()])
        .await
        .unwrap()
        .remove(0);
    assert!(first.created);

    // A retry: same content, other timestamp, metadata and JSON formatting.
    let mut retry = event::with_id("project.created", "evt-1", r#"{ "a": 1 }"#);
    retry.timestamp = Timestamp::from_micros(0);
    retry.metadata.insert("traceparent".into(), "00-x".into());
    let again = store
        .append(vec![retry, event::of("user.created")])
        .await
        .unwrap();
    assert!(!again[0].created);
    assert_eq!(again[0].event.seq, first.event.seq);
    assert_eq!(
        again[0].event.payload.get(),
        r#"{"a":1}"#,
        "the stored event is returned"
    );
    assert!(again[1].created);

    // The same id twice in one batch: stored once.
    let twice = vec![
        event::with_id("user.updated", "evt-2", "true"),
        event::with_id("user.updated", "evt-2", "true"),
    ];
    let r = store.append(twice).await.unwrap();
    assert!(r[0].created && !r[1].created);
    assert_eq!(r[0].event.seq, r[1].event.seq);
    let all = store
        .read_after(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(all.events.len(), 3);
    store.close().await;
}

async fn conflict_stores_nothing_of_the_batch(db: TestDb) {
    let store = db.open().await;
    store
        .append(vec![event::with_id("project.created", "x", "1")])
        .await
        .unwrap();
    let before = store.log().head();
    let a = event::of("project.updated");
    let b = event::of("project.updated");
    let batch = vec![
        a.clone(),
        event::with_id("project.created", "x", "2"),
        b.clone(),
    ];
    match store.append(batch).await {
        Err(StoreError::Conflict { index, id }) => assert_eq!((index, id.as_str()), (1, "x")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(store.get(&a.id).await.unwrap().is_none());
    assert!(store.get(&b.id).await.unwrap().is_none());
    assert_eq!(store.get("x").await.unwrap().unwrap().payload.get(), "1");
    let all = store
        .read_after(0, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(all.events.len(), 1);
    assert_eq!(store.log().head(), before);
    // The same id with other content inside one batch conflicts too.
    let inner = vec![
        event::with_id("a.b", "y", "1"),
        event::with_id("a.b", "y", "2"),
    ];
    assert!(matches!(
        store.append(inner).await,
        Err(StoreError::Conflict { index: 1, .. })
    ));
    assert!(store.get("y").await.unwrap().is_none());
    store.close().await;
}

async fn conflict_in_a_group_spares_the_other_batches(db: TestDb) {
    let store = db.open().await;
    store
        .append(vec![event::with_id("project.created", "taken", "1")])
        .await
        .unwrap();
    // Many publishers at once, so that they share group commits; every third conflicts.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut batch = vec![event::with_id("load.test", &format!("ok-{i}-a"), "1")];
            if i % 3 == 0 {
                batch.push(event::with_id("project.created", "taken", "2"));
            }
            batch.push(event::with_id("load.test", &format!("ok-{i}-b"), "1"));
            (i, store.append(batch).await)
        }));
    }
    every_third_refused_alone(&*store, tasks, "ok", |result| {
        matches!(result, Err(StoreError::Conflict { index: 1, .. }))
    })
    .await;
    store.close().await;
}

/// The outcome of one of the 60 racing publishers of the group-commit tests.
type Publisher = tokio::task::JoinHandle<(usize, Result<Vec<Appended>, StoreError>)>;

/// Awaits the 60 publishers of a group-commit test, each of a batch `<prefix>-<i>-a`,
/// `<prefix>-<i>-b` (with a refused event between them for every third): every third is refused
/// as `refused` says and stores nothing of its batch; every other batch is stored whole; the log
/// holds the one event written first and the 40 stored batches.
async fn every_third_refused_alone(
    store: &dyn EventStore,
    tasks: Vec<Publisher>,
    prefix: &str,
    refused: impl Fn(&Result<Vec<Appended>, StoreError>) -> bool,
) {
    for task in tasks {
        let (i, result) = task.await.unwrap();
        let stored_a = store
            .get(&format!("{prefix}-{i}-a"))
            .await
            .unwrap()
            .is_some();
        let stored_b = store
            .get(&format!("{prefix}-{i}-b"))
            .await
            .unwrap()
            .is_some();
        if i % 3 == 0 {
            assert!(refused(&result), "{i}: {result:?}");
            assert!(
                !stored_a && !stored_b,
                "{i}: nothing of a refused batch is stored"
            );
        } else {
            assert!(result.unwrap().iter().all(|a| a.created), "{i}");
            assert!(stored_a && stored_b, "{i}");
        }
    }
    let all = store
        .read_after(0, &EventFilter::default(), 1000)
        .await
        .unwrap();
    assert_eq!(all.events.len(), 1 + 40 * 2);
}

/// An event of project `project` with this id.
fn in_project(project: &str, id: &str) -> Event {
    let mut e = event::with_id("project.updated", id, r#"{"n":1}"#);
    e.project_id = Some(project.to_owned());
    e
}

fn expect(project: &str, last_seq: u64) -> Option<ExpectedSeq> {
    Some(ExpectedSeq {
        project_id: project.to_owned(),
        last_seq,
    })
}

async fn an_expected_seq_is_checked_with_the_append(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.last_seq_of_project("p1").await.unwrap(), 0);
    // 0: the project has no events yet.
    let a = store
        .append_expecting(vec![in_project("p1", "a")], expect("p1", 0))
        .await
        .unwrap();
    let sa = a[0].event.seq;
    // Events of other projects, or of none, move the global seq but not p1's.
    store
        .append(vec![event::of("user.created"), in_project("p2", "x")])
        .await
        .unwrap();
    assert_eq!(store.last_seq_of_project("p1").await.unwrap(), sa);

    match store
        .append_expecting(vec![in_project("p1", "b")], expect("p1", 0))
        .await
    {
        Err(StoreError::WrongExpectedSeq {
            project_id,
            expected: 0,
            actual,
        }) => assert_eq!((project_id.as_str(), actual), ("p1", sa)),
        other => panic!("a wrong expectation: {other:?}"),
    }
    assert!(store.get("b").await.unwrap().is_none(), "nothing stored");
    // The global head is no expectation of p1's.
    let head = store.log().head();
    assert!(
        store
            .append_expecting(vec![in_project("p1", "b")], expect("p1", head))
            .await
            .is_err()
    );

    let bc = store
        .append_expecting(
            vec![in_project("p1", "b"), in_project("p1", "c")],
            expect("p1", sa),
        )
        .await
        .unwrap();
    let sc = bc[1].event.seq;
    assert_eq!(store.last_seq_of_project("p1").await.unwrap(), sc);
    // A retry of the stored batch is answered as stored, though its expectation no longer holds.
    let again = store
        .append_expecting(
            vec![in_project("p1", "b"), in_project("p1", "c")],
            expect("p1", sa),
        )
        .await
        .unwrap();
    assert!(again.iter().all(|a| !a.created));
    assert_eq!(again[1].event.seq, sc);
    // A batch that adds anything new is checked, and stores nothing when it fails.
    assert!(matches!(
        store
            .append_expecting(
                vec![in_project("p1", "b"), in_project("p1", "d")],
                expect("p1", sa)
            )
            .await,
        Err(StoreError::WrongExpectedSeq { actual, .. }) if actual == sc
    ));
    assert!(store.get("d").await.unwrap().is_none());
    // The expectation is about one project; the batch may hold others.
    let mixed = store
        .append_expecting(
            vec![in_project("p1", "e"), in_project("p2", "f")],
            expect("p1", sc),
        )
        .await
        .unwrap();
    assert_eq!(
        store.last_seq_of_project("p1").await.unwrap(),
        mixed[0].event.seq
    );
    assert_eq!(
        store.last_seq_of_project("p2").await.unwrap(),
        mixed[1].event.seq
    );
    store.close().await;
}

async fn a_wrong_expected_seq_in_a_group_spares_the_other_batches(db: TestDb) {
    let store = db.open().await;
    store
        .append(vec![in_project("busy", "first")])
        .await
        .unwrap();
    // Many publishers at once, so that they share group commits; every third expects a seq the
    // project does not have, the others expect nothing or write another project.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let batch = vec![
                in_project("busy", &format!("e-{i}-a")),
                in_project("other", &format!("e-{i}-b")),
            ];
            let expected = (i % 3 == 0).then(|| ExpectedSeq {
                project_id: "busy".into(),
                last_seq: 1_000_000,
            });
            (i, store.append_expecting(batch, expected).await)
        }));
    }
    every_third_refused_alone(&*store, tasks, "e", |result| {
        matches!(
            result,
            Err(StoreError::WrongExpectedSeq {
                expected: 1_000_000,
                ..
            })
        )
    })
    .await;
    store.close().await;
}

/// Rounds of `writers` appends racing with the same expectation on one project, spread over
/// `stores` (several stores on one PostgreSQL schema are several committers, as in several
/// processes): exactly one wins each round, every other gets the winner's seq as the actual.
pub(crate) async fn race_rounds(stores: &[Arc<dyn EventStore>], writers: usize, rounds: usize) {
    let mut last = stores[0].last_seq_of_project("race").await.unwrap();
    assert_eq!(last, 0);
    for round in 0..rounds {
        let start = Arc::new(tokio::sync::Barrier::new(writers));
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let store = stores[w % stores.len()].clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    store
                        .append_expecting(
                            vec![in_project("race", &format!("r{round}-w{w}"))],
                            expect("race", last),
                        )
                        .await
                })
            })
            .collect();
        let mut won = Vec::new();
        let mut lost = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(a) => won.push(a[0].event.seq),
                Err(StoreError::WrongExpectedSeq {
                    expected, actual, ..
                }) => {
                    assert_eq!(expected, last);
                    lost.push(actual);
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: one winner, got {won:?}");
        assert!(won[0] > last);
        assert_eq!(lost, vec![won[0]; writers - 1], "round {round}");
        last = won[0];
        for store in stores {
            assert_eq!(store.last_seq_of_project("race").await.unwrap(), last);
        }
    }
    let stored = stores[0]
        .query(&EventQuery {
            filter: EventFilter {
                project_id: Some("race".into()),
                ..Default::default()
            },
            after: 0,
            limit: MAX_PAGE,
        })
        .await
        .unwrap();
    assert_eq!(stored.events.len(), rounds, "one event stored per round");
}

async fn eight_writers_racing_with_one_expected_seq_one_wins_each_round(db: TestDb) {
    let store = db.open().await;
    race_rounds(std::slice::from_ref(&store), 8, 25).await;
    store.close().await;
}

const TYPES: &[&str] = &[
    "project.created",
    "project.updated",
    "project.a.b",
    "projects.created",
    "user.created",
    "menu.item_updated",
];

/// Writes 240 events over every combination of type, scope and time; returns them as stored.
async fn seed(store: &Arc<dyn EventStore>) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    for chunk in 0..4 {
        let mut batch = Vec::new();
        for j in 0..60 {
            let i = chunk * 60 + j;
            let mut e = event::raw(TYPES[i % TYPES.len()], &format!("{{\"i\":{i}}}"));
            e.project_id = [None, Some("p1"), Some("p2")][i % 3].map(str::to_owned);
            e.tenant_id = [Some("t1"), Some("t2"), None, Some("t1")][i % 4].map(str::to_owned);
            e.user_id = [Some("u1"), None, Some("u2"), Some("u3"), None][i % 5].map(str::to_owned);
            // Time goes back and forth so that `seq` order is not time order.
            e.timestamp = Timestamp::from_micros(
                1_800_000_000_000_000 + ((i * 7919) % 240) as i64 * 1_000_000,
            );
            batch.push(e);
        }
        out.extend(
            store
                .append(batch)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.event),
        );
    }
    out
}

fn filters(events: &[Arc<Event>]) -> Vec<EventFilter> {
    let t = |i: usize| events[i].timestamp;
    let mut out = Vec::new();
    for types in [
        vec![],
        vec![p(">")],
        vec![p("project.created")],
        vec![p("project.*")],
        vec![p("project.>")],
        vec![p("*.created")],
        vec![p("project.*.b")],
        vec![p("user.created"), p("menu.>")],
        vec![p("project.created"), p(">")],
        vec![p("nothing.here")],
    ] {
        out.push(EventFilter::types(types));
    }
    out.push(EventFilter {
        project_id: Some("p1".into()),
        ..Default::default()
    });
    out.push(EventFilter {
        tenant_id: Some("t2".into()),
        ..Default::default()
    });
    out.push(EventFilter {
        project_ids: vec!["p1".into(), "p3".into()],
        ..Default::default()
    });
    out.push(EventFilter {
        types: vec![p("project.*")],
        project_ids: vec!["p2".into()],
        tenant_id: Some("t1".into()),
        ..Default::default()
    });
    out.push(EventFilter {
        user_id: Some("u3".into()),
        ..Default::default()
    });
    out.push(EventFilter {
        from: Some(t(10)),
        ..Default::default()
    });
    out.push(EventFilter {
        to: Some(t(10)),
        ..Default::default()
    });
    out.push(EventFilter {
        from: Some(t(3)),
        to: Some(t(50)),
        ..Default::default()
    });
    out.push(EventFilter {
        types: vec![p("project.*")],
        project_id: Some("p2".into()),
        tenant_id: Some("t1".into()),
        ..Default::default()
    });
    out.push(EventFilter {
        types: vec![p("*.created")],
        user_id: Some("u1".into()),
        from: Some(t(100)),
        ..Default::default()
    });
    out
}

async fn every_filter_selects_what_the_reference_filter_selects(db: TestDb) {
    let store = db.open().await;
    let events = seed(&store).await;
    let middle = events[events.len() / 2].seq;
    for filter in filters(&events) {
        for after in [0, middle] {
            let expected: Vec<u64> = events
                .iter()
                .filter(|e| e.seq > after && filter.matches(e))
                .map(|e| e.seq)
                .collect();
            let page = store
                .query(&EventQuery {
                    filter: filter.clone(),
                    after,
                    limit: MAX_PAGE,
                })
                .await
                .unwrap();
            assert_eq!(
                seqs(&page.events),
                expected,
                "query {filter:?} after {after}"
            );
            assert!(page.next_after.is_none());
            let read = store.read_after(after, &filter, MAX_PAGE).await.unwrap();
            assert_eq!(
                seqs(&read.events),
                expected,
                "read_after {filter:?} after {after}"
            );
        }
    }
    store.close().await;
}

async fn counts_by_type_follow_the_reference_filter(db: TestDb) {
    let store = db.open().await;
    assert!(
        store
            .count_by_type(&EventFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "an empty store counts no type"
    );
    let events = seed(&store).await;
    for filter in filters(&events) {
        let mut expected = std::collections::BTreeMap::<&str, u64>::new();
        for e in events.iter().filter(|e| filter.matches(e)) {
            *expected.entry(e.event_type.as_str()).or_default() += 1;
        }
        let counts = store.count_by_type(&filter).await.unwrap();
        let got: Vec<(&str, u64)> = counts
            .iter()
            .map(|c| (c.event_type.as_str(), c.count))
            .collect();
        let expected: Vec<(&str, u64)> = expected.into_iter().collect();
        assert_eq!(got, expected, "counts of {filter:?}");
    }
    store.close().await;
}

async fn pages_cover_the_result_exactly_once(db: TestDb) {
    let store = db.open().await;
    let events = seed(&store).await;
    for filter in [
        EventFilter::default(),
        EventFilter::types(vec![p("project.>")]),
        EventFilter {
            tenant_id: Some("t1".into()),
            ..Default::default()
        },
    ] {
        let expected: Vec<u64> = events
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| e.seq)
            .collect();
        let mut got = Vec::new();
        let mut after = 0;
        for _ in 0..=expected.len() {
            let page = store
                .query(&EventQuery {
                    filter: filter.clone(),
                    after,
                    limit: 7,
                })
                .await
                .unwrap();
            assert!(page.events.len() <= 7);
            got.extend(seqs(&page.events));
            match page.next_after {
                Some(next) => {
                    assert_eq!(Some(next), page.events.last().map(|e| e.seq));
                    after = next;
                }
                None => break,
            }
        }
        assert_eq!(got, expected, "{filter:?}");
    }
    store.close().await;
}

async fn read_after_and_tail_follow_the_log(db: TestDb) {
    let store = db.open().await;
    let events = seed(&store).await;
    let head = events.last().unwrap().seq;
    assert_eq!(store.log().head(), head);
    let filter = EventFilter::types(vec![p("user.created")]);
    let expected: Vec<u64> = events
        .iter()
        .filter(|e| filter.matches(e))
        .map(|e| e.seq)
        .collect();
    for tail in [false, true] {
        let (mut cursor, mut got) = (0, Vec::new());
        for _ in 0..=events.len() {
            let r = if tail {
                store.tail(cursor, &filter, 16).await.unwrap()
            } else {
                store.read_after(cursor, &filter, 16).await.unwrap()
            };
            got.extend(seqs(&r.events));
            assert!(r.next >= cursor);
            cursor = r.next;
            if r.at_end {
                break;
            }
        }
        assert_eq!(got, expected, "tail: {tail}");
        assert_eq!(
            cursor, head,
            "at the end the cursor is the head (tail: {tail})"
        );
    }
    // Past the head: nothing, and the cursor stays.
    let r = store
        .read_after(head, &EventFilter::default(), 10)
        .await
        .unwrap();
    assert!(r.events.is_empty() && r.at_end && r.next == head);
    // A later commit is found from the old cursor.
    let late = store.append(vec![event::of("user.created")]).await.unwrap();
    let r = store.read_after(head, &filter, 10).await.unwrap();
    assert_eq!(seqs(&r.events), [late[0].event.seq]);
    let r = store.tail(head, &filter, 10).await.unwrap();
    assert_eq!(seqs(&r.events), [late[0].event.seq]);
    store.close().await;
}

async fn concurrent_appends_get_unique_increasing_seqs_and_a_tailing_reader_sees_all(db: TestDb) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 150;
    let store = db.open().await;
    // The listener's first read of the head, racing the writers, could send the reader to the
    // store once; this test counts those reads, so the listener starts first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.notification_link() == Some(false) {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener did not connect within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut head = store.log().watch();
            let (mut cursor, mut seen) = (0u64, Vec::new());
            loop {
                let r = store
                    .tail(cursor, &EventFilter::default(), 500)
                    .await
                    .unwrap();
                seen.extend(r.events.iter().map(|e| (e.seq, e.id.clone())));
                cursor = r.next;
                if r.at_end {
                    if seen
                        .iter()
                        .filter(|(_, id)| id.starts_with("last-"))
                        .count()
                        == WRITERS
                    {
                        return seen;
                    }
                    while *head.borrow_and_update() <= cursor {
                        head.changed().await.unwrap();
                    }
                }
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..APPENDS {
                let n = 1 + (i + w) % 3;
                let batch: Vec<Event> = (0..n)
                    .map(|k| event::with_id("load.test", &format!("w{w}-{i}-{k}"), "{}"))
                    .collect();
                let stored = store.append(batch).await.unwrap();
                let s: Vec<u64> = stored.iter().map(|a| a.event.seq).collect();
                assert!(s.windows(2).all(|x| x[0] < x[1]), "a batch's seqs increase");
                mine.extend(s);
            }
            store
                .append(vec![event::with_id(
                    "load.test",
                    &format!("last-{w}"),
                    "{}",
                )])
                .await
                .unwrap();
            mine
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        let mine = w.await.unwrap();
        assert!(
            mine.windows(2).all(|x| x[0] < x[1]),
            "one writer's seqs increase"
        );
        all.extend(mine);
    }
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "seqs are unique");
    let seen = reader.await.unwrap();
    let seen_seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert!(
        seen_seqs.windows(2).all(|x| x[0] < x[1]),
        "the reader sees seq order, no duplicates"
    );
    let stored = store
        .read_after(0, &EventFilter::default(), 100_000)
        .await
        .unwrap();
    assert_eq!(
        seen_seqs,
        seqs(&stored.events),
        "the reader saw exactly what is stored"
    );
    assert_eq!(stored.events.len(), all.len() + WRITERS);
    // One process: every commit reaches the reader from memory, never by a read of the store
    // (on PostgreSQL, the committer's own notifications never get ahead of its commits).
    assert_eq!(store.log().misses(), 0, "the reader was sent to the store");
    store.close().await;
}

async fn event_types_are_kept(db: TestDb) {
    let store = db.open().await;
    let now = Timestamp::from_micros(1_000);
    let builtins = EventTypeDef::builtins(now);
    store.ensure_event_types(builtins.clone()).await.unwrap();
    store.ensure_event_types(builtins.clone()).await.unwrap();
    assert_eq!(
        store.list_event_types().await.unwrap().len(),
        builtins.len()
    );
    let def = EventTypeDef {
        name: "order.placed".into(),
        description: Some("An order".into()),
        schema: Some(serde_json::json!({"type": "object"})),
        builtin: false,
        updated_at: now,
    };
    assert!(store.put_event_type(def.clone()).await.unwrap());
    let changed = EventTypeDef {
        description: Some("Changed".into()),
        ..def.clone()
    };
    assert!(!store.put_event_type(changed.clone()).await.unwrap());
    let list = store.list_event_types().await.unwrap();
    assert_eq!(
        list.iter().find(|d| d.name == "order.placed"),
        Some(&changed)
    );
    // ensure leaves existing entries as they are.
    store.ensure_event_types(vec![def]).await.unwrap();
    let list = store.list_event_types().await.unwrap();
    assert_eq!(
        list.iter().find(|d| d.name == "order.placed"),
        Some(&changed)
    );
    let names: Vec<&str> = list.iter().map(|d| d.name.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted by name");
    store.close().await;
}

async fn a_consumer_lease_has_one_holder_at_a_time(db: TestDb) {
    let store = db.open().await;
    let long = std::time::Duration::from_secs(60);
    assert!(
        store.lease("c", "a", long).await.unwrap(),
        "a free lease is taken"
    );
    assert!(
        store.lease("c", "a", long).await.unwrap(),
        "its holder renews it"
    );
    assert!(
        !store.lease("c", "b", long).await.unwrap(),
        "a held lease is refused"
    );
    assert!(
        store.lease("d", "b", long).await.unwrap(),
        "one lease per consumer"
    );
    // Released by its holder only; then free at once.
    store.release("c", "b").await.unwrap();
    assert!(!store.lease("c", "b", long).await.unwrap());
    store.release("c", "a").await.unwrap();
    assert!(store.lease("c", "b", long).await.unwrap());
    // An expired lease is taken over, and its old holder is refused.
    let short = std::time::Duration::from_millis(200);
    assert!(store.lease("e", "a", short).await.unwrap());
    tokio::time::sleep(short * 2).await;
    assert!(
        store.lease("e", "b", long).await.unwrap(),
        "expired: taken over"
    );
    assert!(!store.lease("e", "a", short).await.unwrap());
    store.close().await;
}

async fn ping_answers(db: TestDb) {
    let store = db.open().await;
    store.ping().await.unwrap();
    store.close().await;
}

/// Properties only PostgreSQL has: several processes on one database, an unavailable database,
/// migrations that can fail, index use at scale.
mod postgres_only {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use eventbus::core::filter::EventFilter;
    use eventbus::core::time::Timestamp;
    use eventbus::store::postgres::{PgOptions, PgStore, migrate};
    use eventbus::store::{EventQuery, TailRead};
    use eventbus::{Event, EventStore, StoreError};
    use tokio::sync::watch;

    use crate::common::proxy::TcpProxy;
    use crate::common::{PgSchema, event, test_pg_options};

    /// Guards a test against hanging; not a timing assertion.
    const HANG_GUARD: Duration = Duration::from_secs(300);

    async fn open(schema: &PgSchema) -> Arc<PgStore> {
        Arc::new(
            PgStore::open_with(schema.connect_options(), test_pg_options())
                .await
                .unwrap(),
        )
    }

    // Every session of the pool carries the bus's settings, whatever the server's defaults: a
    // statement the bus gave up on stops on the server too (`statement_timeout`), a stuck
    // transaction cannot hold locks forever (`idle_in_transaction_session_timeout`), and commits
    // wait for the WAL flush (`synchronous_commit`).
    #[tokio::test]
    async fn pool_sessions_carry_the_bus_settings() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let options = PgOptions {
            timeout: Duration::from_millis(1500),
            ..test_pg_options()
        };
        let store = PgStore::open_with(schema.connect_options(), options)
            .await
            .unwrap();
        for (setting, expected) in [
            ("statement_timeout", "1500ms"),
            ("idle_in_transaction_session_timeout", "1500ms"),
            ("synchronous_commit", "on"),
            ("plan_cache_mode", "force_custom_plan"),
            ("application_name", "eventbus"),
        ] {
            let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(value, expected, "{setting}");
        }
        let err = sqlx::query("SELECT pg_sleep(3)")
            .execute(store.pool())
            .await
            .expect_err("statement_timeout stops a longer statement");
        let code = err.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("57014"), "{err}");
        store.close().await;
    }

    /// Follows the log of `store` from 0 until the writers are done (`done` holds the final
    /// head) and the cursor reached it; returns every `seq` seen, in order.
    async fn follow(
        store: Arc<PgStore>,
        use_tail: bool,
        mut done: watch::Receiver<Option<u64>>,
    ) -> Vec<u64> {
        let mut head = store.log().watch();
        let (mut cursor, mut seen) = (0u64, Vec::new());
        let all = EventFilter::default();
        loop {
            let r: TailRead = if use_tail {
                store.tail(cursor, &all, 1000).await.unwrap()
            } else {
                store.read_after(cursor, &all, 1000).await.unwrap()
            };
            seen.extend(r.events.iter().map(|e| e.seq));
            assert!(r.next >= cursor, "the cursor never goes back");
            cursor = r.next;
            if !r.at_end {
                continue;
            }
            if done.borrow().is_some_and(|last| cursor >= last) {
                return seen;
            }
            if *head.borrow_and_update() > cursor {
                continue;
            }
            tokio::select! {
                changed = head.changed() => changed.unwrap(),
                changed = done.changed() => changed.unwrap(),
            }
        }
    }

    // Invariant 2: 4 writers in 2 store instances (as 2 processes would be) publish 50,000
    // events while readers tail from each instance; every reader sees exactly the stored set, in
    // seq order, without duplicates.
    // Two committers on one schema (as two processes): the expectation is checked and written
    // under the append lock, so 8 racing writers split over both still have one winner a round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eight_writers_racing_with_one_expected_seq_over_two_committers_one_wins_each_round() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let stores: Vec<Arc<dyn EventStore>> = vec![open(&schema).await, open(&schema).await];
        super::race_rounds(&stores, 8, 25).await;
        for store in stores {
            store.close().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_gaps_for_tailing_readers_with_writers_in_two_processes() {
        const TOTAL: usize = 50_000;
        const WRITERS: usize = 4;
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let stores = [open(&schema).await, open(&schema).await];
        let (done_tx, done) = watch::channel(None);
        let readers = vec![
            tokio::spawn(follow(stores[0].clone(), false, done.clone())),
            tokio::spawn(follow(stores[0].clone(), true, done.clone())),
            tokio::spawn(follow(stores[1].clone(), true, done.clone())),
        ];
        let run = async {
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let store = stores[w % 2].clone();
                writers.push(tokio::spawn(async move {
                    let (mut left, mut i) = (TOTAL / WRITERS, 0);
                    while left > 0 {
                        let n = left.min(1 + (i * 7 + w) % 25);
                        let batch: Vec<Event> = (0..n)
                            .map(|k| {
                                event::with_id("load.test", &format!("w{w}-{i}-{k}"), r#"{"x":1}"#)
                            })
                            .collect();
                        let stored = store.append(batch).await.unwrap();
                        assert!(stored.iter().all(|a| a.created));
                        left -= n;
                        i += 1;
                    }
                }));
            }
            for w in writers {
                w.await.unwrap();
            }
            let last: i64 = sqlx::query_scalar("SELECT max(seq) FROM events")
                .fetch_one(stores[0].pool())
                .await
                .unwrap();
            done_tx.send(Some(last as u64)).unwrap();
            let mut seen = Vec::new();
            for r in readers {
                seen.push(r.await.unwrap());
            }
            seen
        };
        let seen = tokio::time::timeout(HANG_GUARD, run)
            .await
            .expect("the test hung");

        // The stored set, page by page.
        let mut stored = Vec::new();
        let mut after = 0;
        for _ in 0..=TOTAL {
            let page = stores[1]
                .query(&EventQuery {
                    filter: EventFilter::default(),
                    after,
                    limit: 1000,
                })
                .await
                .unwrap();
            stored.extend(page.events.iter().map(|e| e.seq));
            match page.next_after {
                Some(n) => after = n,
                None => break,
            }
        }
        assert_eq!(stored.len(), TOTAL);
        assert_eq!(stored.iter().collect::<HashSet<_>>().len(), TOTAL);
        for (i, reader) in seen.iter().enumerate() {
            assert!(
                reader.windows(2).all(|w| w[0] < w[1]),
                "reader {i}: seq order, no duplicates"
            );
            let first_difference = reader.iter().zip(&stored).position(|(r, s)| r != s);
            assert!(
                reader.len() == stored.len() && first_difference.is_none(),
                "reader {i} saw {} events of {}; first difference at index {first_difference:?}: \
                 the reader skipped {:?}",
                reader.len(),
                stored.len(),
                first_difference.map(|d| stored[d]),
            );
        }
        for s in stores {
            s.close().await;
        }
    }

    // Commits made through one instance wake readers of another (LISTEN/NOTIFY), and the
    // commit log of the other instance does not serve a range it has not seen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_of_another_process_advance_the_head() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let (a, b) = (open(&schema).await, open(&schema).await);
        let mut head = b.log().watch();
        let stored = a.append(vec![event::of("project.created")]).await.unwrap();
        let seq = stored[0].event.seq;
        tokio::time::timeout(HANG_GUARD, async {
            while *head.borrow_and_update() < seq {
                head.changed().await.unwrap();
            }
        })
        .await
        .expect("the notification never came");
        let r = b.tail(0, &EventFilter::default(), 10).await.unwrap();
        assert_eq!(r.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [seq]);
        // b's own commit follows a's: its log must not claim to cover a's event.
        let own = b.append(vec![event::of("project.updated")]).await.unwrap();
        let r = b.tail(0, &EventFilter::default(), 10).await.unwrap();
        assert_eq!(
            r.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [seq, own[0].event.seq]
        );
        a.close().await;
        b.close().await;
    }

    use crate::common::pg_upstream as upstream;

    // An unavailable database: publishes and pings fail with `Unavailable` (nothing
    // half-written), commits of other processes made meanwhile are picked up, and the store
    // recovers by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unavailable_database_fails_publishes_and_the_store_recovers() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let proxy = TcpProxy::start(upstream().await).await;
        let options = PgOptions {
            pool_size: 2,
            timeout: Duration::from_secs(3),
            ..PgOptions::default()
        };
        let through_proxy = schema
            .connect_options()
            .host("127.0.0.1")
            .port(proxy.addr().port());
        let store = PgStore::open_with(through_proxy, options).await.unwrap();
        let direct = open(&schema).await;
        let first = store
            .append(vec![event::of("project.created")])
            .await
            .unwrap();
        store.ping().await.unwrap();

        proxy.cut();
        let batch = vec![
            event::with_id("a.b", "cut-1", "1"),
            event::with_id("a.b", "cut-2", "2"),
        ];
        for _ in 0..3 {
            match store.append(batch.clone()).await {
                Err(StoreError::Unavailable(_)) => {}
                other => panic!("expected Unavailable, got {other:?}"),
            }
            assert!(matches!(
                store.ping().await,
                Err(StoreError::Unavailable(_))
            ));
            assert!(matches!(
                store.get("cut-1").await,
                Err(StoreError::Unavailable(_))
            ));
        }
        assert!(
            direct.get("cut-1").await.unwrap().is_none(),
            "nothing half-written"
        );
        assert!(
            direct.get("cut-2").await.unwrap().is_none(),
            "nothing half-written"
        );
        // Another process commits while this one is cut off.
        let elsewhere = direct
            .append(vec![event::of("project.updated")])
            .await
            .unwrap();

        proxy.restore();
        let mut recovered = false;
        for _ in 0..100 {
            if store.ping().await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "ping recovers once the database is back");
        let again = store.append(batch).await.unwrap();
        assert!(again.iter().all(|a| a.created));
        assert!(again[0].event.seq > elsewhere[0].event.seq);
        // The listener reconnected and resynchronised: the head covers the commit made meanwhile.
        let mut head = store.log().watch();
        tokio::time::timeout(HANG_GUARD, async {
            while *head.borrow_and_update() < again[1].event.seq {
                head.changed().await.unwrap();
            }
        })
        .await
        .unwrap();
        let all = store
            .read_after(0, &EventFilter::default(), 100)
            .await
            .unwrap();
        let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            [
                first[0].event.seq,
                elsewhere[0].event.seq,
                again[0].event.seq,
                again[1].event.seq
            ]
        );
        store.close().await;
        direct.close().await;
    }

    // Cutting the database off while publishers write: an acknowledged batch is stored whole,
    // a failed one is stored whole or not at all (a lost COMMIT answer), never in part.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_under_load_never_stores_part_of_a_batch() {
        const WRITERS: usize = 4;
        const BATCHES: usize = 150;
        const SIZE: usize = 5;
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let proxy = TcpProxy::start(upstream().await).await;
        let options = PgOptions {
            pool_size: 2,
            timeout: Duration::from_secs(3),
            ..PgOptions::default()
        };
        let through_proxy = schema
            .connect_options()
            .host("127.0.0.1")
            .port(proxy.addr().port());
        let store = Arc::new(PgStore::open_with(through_proxy, options).await.unwrap());
        let (results, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (store, results) = (store.clone(), results.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..BATCHES {
                    let batch: Vec<Event> = (0..SIZE)
                        .map(|k| event::with_id("load.test", &format!("w{w}-{i}-{k}"), "1"))
                        .collect();
                    let outcome = store.append(batch).await;
                    let failed = outcome.is_err();
                    if let Err(e) = &outcome {
                        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
                    }
                    results
                        .send((
                            w,
                            i,
                            outcome.map(|a| a.iter().map(|a| a.event.seq).collect::<Vec<_>>()),
                        ))
                        .unwrap();
                    if failed {
                        // Pacing, so that the writers outlast the cut.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        drop(results);
        let mut all = Vec::new();
        let (mut ok, mut failed, mut cut, mut restored) = (0, 0, false, false);
        let collect = async {
            while let Some(outcome) = outcomes.recv().await {
                match &outcome.2 {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                all.push(outcome);
                if !cut && ok >= 40 {
                    proxy.cut();
                    cut = true;
                }
                if cut && !restored && failed >= 8 {
                    proxy.restore();
                    restored = true;
                }
            }
        };
        tokio::time::timeout(HANG_GUARD, collect)
            .await
            .expect("the test hung");
        for w in writers {
            w.await.unwrap();
        }
        assert!(
            cut && restored && failed >= 8,
            "the cut happened while writing"
        );

        let direct = open(&schema).await;
        let stored = direct
            .read_after(0, &EventFilter::default(), 100_000)
            .await
            .unwrap();
        let ids: HashSet<&str> = stored.events.iter().map(|e| e.id.as_str()).collect();
        for (w, i, outcome) in &all {
            let present = (0..SIZE)
                .filter(|k| ids.contains(format!("w{w}-{i}-{k}").as_str()))
                .count();
            match outcome {
                Ok(seqs) => {
                    assert_eq!(present, SIZE, "acknowledged batch w{w}-{i} is stored");
                    assert!(seqs.windows(2).all(|s| s[0] < s[1]));
                }
                Err(_) => assert!(
                    present == 0 || present == SIZE,
                    "batch w{w}-{i}: {present} of {SIZE} stored"
                ),
            }
        }
        let acknowledged_after_restore = all.iter().rev().take_while(|o| o.2.is_ok()).count();
        assert!(
            acknowledged_after_restore > 0,
            "publishing resumed after the restore"
        );
        store.close().await;
        direct.close().await;
    }

    // `EVENT_STORE_URL=postgres://…` opens this store; `options` in the URL choose the schema.
    #[tokio::test]
    async fn a_postgres_url_opens_the_postgres_store() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let base = crate::common::pg_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{}", schema.name);
        let parsed = eventbus::store::StoreUrl::parse(&url).unwrap();
        let options = eventbus::store::StoreOptions {
            postgres: test_pg_options(),
            ..Default::default()
        };
        let store = eventbus::store::open(&parsed, options)
            .await
            .unwrap()
            .events;
        assert_eq!(store.backend(), "postgres");
        let stored = store
            .append(vec![event::of("project.created")])
            .await
            .unwrap();
        let direct = open(&schema).await;
        assert_eq!(direct.schema(), schema.name);
        assert!(
            direct.get(&stored[0].event.id).await.unwrap().is_some(),
            "written to the URL's schema"
        );
        store.close().await;
        direct.close().await;
    }

    #[tokio::test]
    async fn opening_an_unreachable_database_fails_with_a_clear_message() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let proxy = TcpProxy::start(upstream().await).await;
        proxy.cut();
        let options = schema
            .connect_options()
            .host("127.0.0.1")
            .port(proxy.addr().port());
        match PgStore::open_with(options, test_pg_options()).await {
            Err(StoreError::Unavailable(m)) => assert!(
                m.contains("cannot connect to PostgreSQL at 127.0.0.1"),
                "{m}"
            ),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    // A failing migration leaves the schema as it was, and the store refuses to open a schema
    // migrated by a newer binary.
    #[tokio::test]
    async fn a_failing_migration_changes_nothing() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let mut conn = schema.connect().await;
        let broken = [
            migrate::MIGRATIONS[0],
            (
                "0002_broken",
                "CREATE TABLE t2 (x int); SELECT no_such_function();",
            ),
        ];
        let err = migrate::apply(&mut conn, &broken).await.unwrap_err();
        assert!(
            matches!(
                err,
                migrate::MigrateError::Failed {
                    name: "0002_broken",
                    ..
                }
            ),
            "{err}"
        );
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(tables, 0, "not even the first migration was kept");

        assert_eq!(
            migrate::migrate(&mut conn).await.unwrap(),
            migrate::MIGRATIONS.len()
        );
        assert_eq!(migrate::migrate(&mut conn).await.unwrap(), 0);
        assert!(migrate::apply(&mut conn, &broken).await.is_err());
        let t2: Option<String> = sqlx::query_scalar("SELECT to_regclass('t2')::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(t2, None);
        let version: i64 = sqlx::query_scalar("SELECT max(version) FROM eventbus_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(version, migrate::MIGRATIONS.len() as i64);

        sqlx::query("INSERT INTO eventbus_migrations (version, name) VALUES (99, 'future')")
            .execute(&mut conn)
            .await
            .unwrap();
        match PgStore::open_with(schema.connect_options(), test_pg_options()).await {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("newer than this binary"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    // Every query shape of the HTTP API (DESIGN.md §3) uses an index on a table of 100,000 rows.
    #[tokio::test]
    async fn every_query_shape_uses_an_index() {
        let Some(schema) = PgSchema::create().await else {
            return;
        };
        let store = open(&schema).await;
        let mut conn = schema.connect().await;
        sqlx::raw_sql(
            "INSERT INTO events (seq, id, type, ts, project_id, tenant_id, user_id, payload) \
             SELECT g, 'id-' || g, \
                    CASE WHEN g % 1000 = 0 THEN 'audit.rare' ELSE (ARRAY['project.created', 'project.updated', 'project.deleted', 'user.created', \
                           'user.updated', 'menu.item_updated', 'integration.created', \
                           'integration.status_changed', 'plugin.installed', 'order.placed'])[1 + g % 10] \
                      || CASE WHEN g % 7 = 0 THEN '.x' ELSE '' END END, \
                    1800000000000000 + g::bigint * 1000000, \
                    CASE WHEN g % 4 = 0 THEN NULL ELSE 'p' || (g % 1000) END, \
                    't' || (g % 50), \
                    CASE WHEN g % 2 = 0 THEN 'u' || (g % 5000) END, \
                    '{\"n\":1}' \
             FROM generate_series(1, 100000) g; \
             ANALYZE events;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let p = |s: &str| eventbus::Pattern::parse(s).unwrap();
        let t = |g: i64| Timestamp::from_micros(1_800_000_000_000_000 + g * 1_000_000);
        // Where the choice is clear-cut, the index the shape was made for.
        let expected = [
            ("everything", "events_pkey"),
            ("rare type", "events_type_seq"),
            ("project", "events_project_seq"),
            ("user", "events_user_seq"),
            ("time range", "events_ts"),
        ];
        let shapes: Vec<(&str, EventFilter, u64)> = vec![
            ("everything", EventFilter::default(), 0),
            ("everything after a cursor", EventFilter::default(), 90_000),
            ("exact type", EventFilter::types(vec![p("user.created")]), 0),
            ("rare type", EventFilter::types(vec![p("audit.rare")]), 0),
            ("type.*", EventFilter::types(vec![p("project.*")]), 0),
            ("type.>", EventFilter::types(vec![p("integration.>")]), 0),
            (
                "several patterns",
                EventFilter::types(vec![p("user.created"), p("menu.>")]),
                0,
            ),
            (
                "project",
                EventFilter {
                    project_id: Some("p17".into()),
                    ..Default::default()
                },
                0,
            ),
            (
                "tenant",
                EventFilter {
                    tenant_id: Some("t3".into()),
                    ..Default::default()
                },
                0,
            ),
            (
                "user",
                EventFilter {
                    user_id: Some("u42".into()),
                    ..Default::default()
                },
                0,
            ),
            (
                "time range",
                EventFilter {
                    from: Some(t(5_000)),
                    to: Some(t(5_500)),
                    ..Default::default()
                },
                0,
            ),
            (
                "from",
                EventFilter {
                    from: Some(t(99_000)),
                    ..Default::default()
                },
                0,
            ),
            (
                "project and type",
                EventFilter {
                    project_id: Some("p17".into()),
                    types: vec![p("project.*")],
                    ..Default::default()
                },
                0,
            ),
            (
                "tenant, type and time",
                EventFilter {
                    tenant_id: Some("t3".into()),
                    types: vec![p("user.>")],
                    from: Some(t(10_000)),
                    to: Some(t(60_000)),
                    ..Default::default()
                },
                0,
            ),
        ];
        for (name, filter, after) in shapes {
            let plan = store
                .explain(&EventQuery {
                    filter,
                    after,
                    limit: 100,
                })
                .await
                .unwrap()
                .join("\n");
            assert!(
                !plan.contains("Seq Scan") && plan.contains("Index"),
                "{name}:\n{plan}"
            );
            if let Some((_, index)) = expected.iter().find(|(shape, _)| *shape == name) {
                assert!(plan.contains(index), "{name} should use {index}:\n{plan}");
            }
            if std::env::var("EVENTBUS_TEST_SHOW_PLANS").is_ok() {
                println!("{name}:\n{plan}\n");
            }
        }
        // The project's last seq (`Expected-Last-Seq`, `lastSeq`): one step down its index.
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN {}",
            eventbus::store::postgres::LAST_SEQ_OF_PROJECT
        )))
        .bind("p17")
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("events_project_seq") && !plan.contains("Seq Scan"),
            "last seq of a project:\n{plan}"
        );
        store.close().await;
    }
}

/// Properties of the SQLite migrator: each migration commits alone, so a failing one is rolled
/// back and the database stays at the version before it.
mod sqlite_only {
    use std::path::Path;
    use std::sync::Arc;

    use eventbus::EventStore;
    use eventbus::core::filter::EventFilter;
    use eventbus::store::Migrated;
    use eventbus::store::sqlite::migrate::{self, MigrateError};
    use eventbus::store::sqlite::{SqliteOptions, SqliteStore};
    use rusqlite::Connection;

    use crate::common::event;

    /// A migration of a newer binary whose SQL fails half-way: a new table with a row and a new
    /// column on `events` are done before the failing statement.
    const BROKEN: (&str, &str) = (
        "0008_broken",
        "CREATE TABLE broken_half (x INTEGER NOT NULL); \
         INSERT INTO broken_half VALUES (1); \
         ALTER TABLE events ADD COLUMN broken_col TEXT; \
         SELECT no_such_function();",
    );

    fn user_version(conn: &Connection) -> usize {
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .unwrap() as usize
    }

    fn has_table(conn: &Connection, name: &str) -> bool {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Applies this binary's migrations and then [`BROKEN`] to the database at `path`; asserts
    /// that it fails naming the broken one and that none of its work is left.
    fn fail_to_upgrade(path: &Path) -> MigrateError {
        let mut conn = Connection::open(path).unwrap();
        let mut newer = migrate::MIGRATIONS.to_vec();
        newer.push(BROKEN);
        let err = migrate::apply(&mut conn, &newer).unwrap_err();
        assert!(
            matches!(
                err,
                MigrateError::Failed {
                    name: "0008_broken",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("0008_broken"), "{err}");
        assert_eq!(
            user_version(&conn),
            migrate::MIGRATIONS.len(),
            "the version is the last good migration's"
        );
        assert!(
            !has_table(&conn, "broken_half"),
            "the failed migration's table was kept"
        );
        assert!(
            !columns(&conn, "events").contains(&"broken_col".to_owned()),
            "the failed migration's column was kept"
        );
        err
    }

    async fn open(path: &Path) -> Arc<SqliteStore> {
        let path = path.to_owned();
        let store =
            tokio::task::spawn_blocking(move || SqliteStore::open(&path, SqliteOptions::default()))
                .await
                .unwrap()
                .expect("the store opens");
        Arc::new(store)
    }

    async fn ids_in(store: &SqliteStore) -> Vec<String> {
        let read = store
            .read_after(0, &EventFilter::default(), 100)
            .await
            .unwrap();
        read.events.iter().map(|e| e.id.clone()).collect()
    }

    // A migration that fails half-way, after others of the same run succeeded, leaves the
    // database at the last good version without any of its work, and the store opens there and
    // appends and reads; its events survive a second failed upgrade.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_migration_leaves_the_store_usable_at_its_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        // A database of an older binary: the first five migrations.
        {
            let mut conn = Connection::open(&path).unwrap();
            assert_eq!(
                migrate::apply(&mut conn, &migrate::MIGRATIONS[..5]).unwrap(),
                5
            );
            assert_eq!(user_version(&conn), 5);
            assert!(!has_table(&conn, "consumer_leases"));
        }
        // The upgrade applies the sixth and seventh, then fails on the eighth.
        fail_to_upgrade(&path);
        {
            let conn = Connection::open(&path).unwrap();
            for table in ["plugin_states", "consumer_leases"] {
                assert!(
                    has_table(&conn, table),
                    "{table}: the migrations before the failed one were kept"
                );
            }
        }

        // The store opens at that version (nothing left to apply) and serves.
        let store = open(&path).await;
        assert_eq!(
            store.migrated(),
            &Migrated {
                applied: Vec::new(),
                version: migrate::MIGRATIONS.len()
            }
        );
        let first = vec![event::of("project.created"), event::of("project.updated")];
        let want: Vec<String> = first.iter().map(|e| e.id.clone()).collect();
        let stored = store.append(first).await.unwrap();
        assert!(stored.iter().all(|a| a.created));
        assert_eq!(ids_in(&store).await, want);
        store.close().await;

        // A second failed upgrade, now over stored events: they are all still there and the
        // store goes on appending after them.
        fail_to_upgrade(&path);
        let store = open(&path).await;
        assert_eq!(ids_in(&store).await, want);
        let more = store.append(vec![event::of("user.created")]).await.unwrap();
        assert_eq!(more[0].event.seq, stored[1].event.seq + 1);
        let mut want = want;
        want.push(more[0].event.id.clone());
        assert_eq!(ids_in(&store).await, want);
        store.close().await;
    }
}
