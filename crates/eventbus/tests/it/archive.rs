//! Archiving on every backend and every target kind: archive → query (hot and archived, every
//! filter, paging across the boundary) → restore round trip, and crash safety between writing a
//! segment's file and committing its manifest row; on a local directory (`file://`) and on a
//! real S3-compatible server (`s3://`, see [`TestBucket`]).

use std::collections::HashSet;
use std::sync::Arc;

use eventbus::core::filter::EventFilter;
use eventbus::core::time::Timestamp;
use eventbus::store::EventQuery;
use eventbus::store::archive::{
    Archive, ArchiveError, ArchiveStore, ArchiveTarget, FileTarget, S3Target, Segment,
};
use eventbus::store::postgres::PgStore;
use eventbus::store::sqlite::{SqliteOptions, SqliteStore};
use eventbus::{Event, Pattern};

use crate::common::s3::TestBucket;
use crate::common::{TestDb, event, test_pg_options};

const DAY: i64 = 86_400 * 1_000_000;
/// Old (archivable) events, published first.
const OLD: usize = 23;
/// Recent events, published after.
const RECENT: usize = 9;

macro_rules! both {
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

both!(
    archive_query_restore_round_trip_on_files,
    archive_query_restore_round_trip_on_s3,
    an_orphan_of_an_interrupted_run_is_replaced_and_nothing_is_lost_or_duplicated_on_files,
    an_orphan_of_an_interrupted_run_is_replaced_and_nothing_is_lost_or_duplicated_on_s3,
    publishes_go_on_during_a_run_and_every_event_is_hot_or_archived_once,
);

async fn archive_query_restore_round_trip_on_files(db: TestDb) {
    archive_query_restore_round_trip(db, TestTarget::files()).await;
}

async fn archive_query_restore_round_trip_on_s3(db: TestDb) {
    if let Some(target) = TestTarget::s3().await {
        archive_query_restore_round_trip(db, target).await;
    }
}

async fn an_orphan_of_an_interrupted_run_is_replaced_and_nothing_is_lost_or_duplicated_on_files(
    db: TestDb,
) {
    an_orphan_of_an_interrupted_run_is_replaced(db, TestTarget::files()).await;
}

async fn an_orphan_of_an_interrupted_run_is_replaced_and_nothing_is_lost_or_duplicated_on_s3(
    db: TestDb,
) {
    if let Some(target) = TestTarget::s3().await {
        an_orphan_of_an_interrupted_run_is_replaced(db, target).await;
    }
}

/// Where a test's archive files go.
enum TestTarget {
    /// A temporary directory.
    Files(tempfile::TempDir),
    /// A fresh bucket, under the prefix [`S3_PREFIX`].
    S3(TestBucket),
}

const S3_PREFIX: &str = "archive/segments";

impl TestTarget {
    fn files() -> TestTarget {
        TestTarget::Files(tempfile::tempdir().unwrap())
    }

    async fn s3() -> Option<TestTarget> {
        TestBucket::create().await.map(TestTarget::S3)
    }

    fn open(&self) -> Box<dyn ArchiveTarget> {
        match self {
            TestTarget::Files(dir) => Box::new(FileTarget::new(dir.path().to_owned())),
            TestTarget::S3(bucket) => Box::new(bucket.target(S3_PREFIX)),
        }
    }

    /// The names of the stored objects, read without the target under test.
    async fn names(&self) -> HashSet<String> {
        match self {
            TestTarget::Files(dir) => files(dir.path()),
            TestTarget::S3(bucket) => bucket
                .keys()
                .await
                .into_iter()
                .map(|key| {
                    key.strip_prefix(&format!("{S3_PREFIX}/"))
                        .unwrap_or_else(|| panic!("{key} is under the prefix"))
                        .to_owned()
                })
                .collect(),
        }
    }
}

/// What every target must do, checked against what is really stored.
async fn target_contract(kind: &TestTarget) {
    let target = kind.open();
    assert!(target.list().await.unwrap().is_empty(), "starts empty");
    target.put("b.zst", b"one".to_vec()).await.unwrap();
    target.put("b.zst", b"two".to_vec()).await.unwrap();
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    target.put("a.zst", big.clone()).await.unwrap();
    assert_eq!(target.get("b.zst").await.unwrap(), b"two", "put replaces");
    assert_eq!(target.get("a.zst").await.unwrap(), big);
    assert_eq!(target.list().await.unwrap(), ["a.zst", "b.zst"], "sorted");
    assert_eq!(
        kind.names().await,
        HashSet::from(["a.zst".into(), "b.zst".into()])
    );
    let missing = target.get("missing.zst").await.unwrap_err().to_string();
    assert!(missing.contains("missing.zst"), "{missing}");
    for bad in ["", ".x", "a/b"] {
        assert!(target.put(bad, Vec::new()).await.is_err(), "{bad:?}");
    }
    target.remove_temporary().await.unwrap();
    target.remove("b.zst").await.unwrap();
    target.remove("b.zst").await.unwrap();
    assert_eq!(target.list().await.unwrap(), ["a.zst"]);
    target.remove("a.zst").await.unwrap();
    assert!(target.list().await.unwrap().is_empty());
    assert!(kind.names().await.is_empty());
}

#[tokio::test]
async fn the_file_target_keeps_the_target_contract() {
    target_contract(&TestTarget::files()).await;
}

#[tokio::test]
async fn the_s3_target_keeps_the_target_contract() {
    if let Some(target) = TestTarget::s3().await {
        target_contract(&target).await;
        // Objects elsewhere in the bucket (another prefix, or deeper) are not the target's.
        let TestTarget::S3(bucket) = &target else {
            unreachable!()
        };
        bucket
            .target("archive")
            .put("x.zst", b"x".to_vec())
            .await
            .unwrap();
        assert!(target.open().list().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_unreachable_s3_server_is_a_clear_error_not_a_hang() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let settings = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let target = S3Target::with_settings("s3://nowhere/archive", settings).unwrap();
    let error = target.put("a.zst", b"a".to_vec()).await.unwrap_err();
    assert!(matches!(error, ArchiveError::Target(_)), "{error:?}");
    assert!(
        error.to_string().contains("s3://nowhere/archive"),
        "{error}"
    );
}

async fn open(db: &TestDb) -> Arc<dyn ArchiveStore> {
    match db {
        TestDb::Sqlite(dir) => {
            let path = dir.path().join("events.db");
            let store = tokio::task::spawn_blocking(move || {
                SqliteStore::open(&path, SqliteOptions::default())
            })
            .await
            .unwrap()
            .expect("open SQLite store");
            Arc::new(store)
        }
        TestDb::Postgres(schema) => Arc::new(
            PgStore::open_with(schema.connect_options(), test_pg_options())
                .await
                .expect("open PostgreSQL store"),
        ),
    }
}

/// Publishes `OLD` events dated ten days back (a minute apart), then `RECENT` current ones, with
/// varied types and scopes; returns them as stored.
async fn publish(store: &Arc<dyn ArchiveStore>) -> Vec<Event> {
    let now = Timestamp::now();
    let types = [
        "order.created",
        "order.paid",
        "user.signed_up",
        "order.item.added",
    ];
    let mut events = Vec::new();
    for i in 0..OLD + RECENT {
        let mut e = event::raw(
            types[i % types.len()],
            &format!(r#"{{"i": {i}, "text": "x"}}"#),
        );
        e.project_id = Some(format!("p{}", i % 3));
        e.tenant_id = (i % 2 == 0).then(|| "t1".to_owned());
        e.user_id = (i % 5 == 0).then(|| format!("u{}", i % 10));
        e.metadata.insert("source".into(), format!("s{i}"));
        e.timestamp = if i < OLD {
            now.plus_micros(-10 * DAY + i as i64 * 60_000_000)
        } else {
            now
        };
        events.push(e);
    }
    let mut stored = Vec::new();
    // Several batches, so the SQLite and PostgreSQL group commits both number them.
    for chunk in events.chunks(8) {
        for a in store.append(chunk.to_vec()).await.unwrap() {
            stored.push((*a.event).clone());
        }
    }
    stored
}

fn filters(events: &[Event]) -> Vec<EventFilter> {
    let mid = events[OLD / 2].timestamp;
    let late = events[OLD - 3].timestamp;
    vec![
        EventFilter::default(),
        EventFilter::types(vec![Pattern::parse("order.*").unwrap()]),
        EventFilter::types(vec![
            Pattern::parse("order.>").unwrap(),
            Pattern::parse("user.signed_up").unwrap(),
        ]),
        EventFilter {
            project_id: Some("p1".into()),
            ..EventFilter::default()
        },
        EventFilter {
            tenant_id: Some("t1".into()),
            ..EventFilter::default()
        },
        EventFilter {
            user_id: Some("u0".into()),
            ..EventFilter::default()
        },
        EventFilter {
            from: Some(mid),
            ..EventFilter::default()
        },
        EventFilter {
            from: Some(mid),
            to: Some(late),
            ..EventFilter::default()
        },
        EventFilter {
            types: vec![Pattern::parse("order.>").unwrap()],
            project_id: Some("p0".into()),
            tenant_id: Some("t1".into()),
            ..EventFilter::default()
        },
    ]
}

/// Every page of `filter` through `archive.query`, with `limit` events per page.
async fn all_pages(archive: &Archive, filter: &EventFilter, limit: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = archive
            .query(&EventQuery {
                filter: filter.clone(),
                after,
                limit,
            })
            .await
            .unwrap();
        assert!(page.events.len() <= limit);
        out.extend(page.events.iter().map(|e| (**e).clone()));
        match page.next_after {
            Some(next) => {
                assert!(next > after, "the cursor moves forward");
                after = next;
            }
            None => return out,
        }
    }
}

fn same(a: &[Event], b: &[Event]) {
    let key = |e: &Event| (e.seq, e.id.clone(), e.to_json());
    assert_eq!(
        a.iter().map(key).collect::<Vec<_>>(),
        b.iter().map(key).collect::<Vec<_>>()
    );
}

fn files(dir: &std::path::Path) -> HashSet<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => HashSet::new(),
    }
}

fn locations(segments: &[Segment]) -> HashSet<String> {
    segments.iter().map(|s| s.location.clone()).collect()
}

async fn hot(store: &Arc<dyn ArchiveStore>) -> Vec<Event> {
    let page = store
        .query(&EventQuery {
            filter: EventFilter::default(),
            after: 0,
            limit: 1000,
        })
        .await
        .unwrap();
    page.events.iter().map(|e| (**e).clone()).collect()
}

async fn archive_query_restore_round_trip(db: TestDb, target: TestTarget) {
    let store = open(&db).await;
    let archive = Archive::new(store.clone(), target.open()).with_batch_size(7);
    let events = publish(&store).await;
    let cutoff = Archive::cutoff(1, Timestamp::now());

    let report = archive.run(cutoff).await.unwrap();
    assert_eq!(report.events, OLD as u64);
    assert_eq!(report.segments, OLD.div_ceil(7));
    let segments = archive.list().await.unwrap();
    assert_eq!(segments.len(), report.segments);
    assert_eq!(segments.iter().map(|s| s.count).sum::<u64>(), OLD as u64);
    assert_eq!(segments[0].first_seq, events[0].seq);
    assert_eq!(segments.last().unwrap().last_seq, events[OLD - 1].seq);
    assert_eq!(target.names().await, locations(&segments));
    same(&hot(&store).await, &events[OLD..]);

    // A second run finds nothing more to archive.
    assert_eq!(archive.run(cutoff).await.unwrap().events, 0);

    // Every filter, paged across the archive/hot boundary, answers what the reference filter does.
    for filter in filters(&events) {
        let expected: Vec<Event> = events
            .iter()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{filter:?} selects something");
        for limit in [1, 4, 1000] {
            same(&all_pages(&archive, &filter, limit).await, &expected);
        }
    }
    // A page that ends exactly at the last archived event continues into the hot table.
    let page = archive
        .query(&EventQuery {
            filter: EventFilter::default(),
            after: 0,
            limit: OLD,
        })
        .await
        .unwrap();
    assert_eq!(page.next_after, Some(events[OLD - 1].seq));
    let next = archive
        .query(&EventQuery {
            filter: EventFilter::default(),
            after: events[OLD - 1].seq,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(next.events[0].seq, events[OLD].seq);

    // Restoring a middle segment first: queries still merge both sources in seq order.
    let middle = segments[1].clone();
    archive.restore(middle.id).await.unwrap();
    assert!(!target.names().await.contains(&middle.location));
    for filter in filters(&events) {
        let expected: Vec<Event> = events
            .iter()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        same(&all_pages(&archive, &filter, 3).await, &expected);
    }

    // Then the rest: every event is hot again with its original seq, id and content.
    let restored = archive.restore_all().await.unwrap();
    assert_eq!(restored.len(), segments.len() - 1);
    assert!(archive.list().await.unwrap().is_empty());
    assert!(target.names().await.is_empty());
    same(&hot(&store).await, &events);
    for e in &events {
        let got = store.get(&e.id).await.unwrap().expect("restored event");
        same(&[(*got).clone()], std::slice::from_ref(e));
    }
    store.close().await;
}

async fn an_orphan_of_an_interrupted_run_is_replaced(db: TestDb, kind: TestTarget) {
    let store = open(&db).await;
    let target = || kind.open();
    let events = publish(&store).await;
    let cutoff = Archive::cutoff(1, Timestamp::now());

    // A run that stops after writing its first file, before the manifest transaction: the file
    // exists, the events are still hot and no manifest row names it.
    let interrupted = Archive::new(store.clone(), target()).with_batch_size(10);
    let pending = interrupted
        .write_next_segment(cutoff)
        .await
        .unwrap()
        .expect("something is due");
    let orphan = pending.segment().location.clone();
    drop(pending);
    assert_eq!(kind.names().await, HashSet::from([orphan.clone()]));
    assert!(interrupted.list().await.unwrap().is_empty());
    same(&hot(&store).await, &events);
    // Queries ignore the orphan.
    same(
        &all_pages(&interrupted, &EventFilter::default(), 5).await,
        &events,
    );

    // The next run (segments of another size, so the orphan's name is not reused) removes it and
    // archives every due event exactly once.
    let archive = Archive::new(store.clone(), target()).with_batch_size(6);
    let report = archive.run(cutoff).await.unwrap();
    assert_eq!(report.orphans_removed, 1);
    assert_eq!(report.events, OLD as u64);
    let segments = archive.list().await.unwrap();
    assert_eq!(kind.names().await, locations(&segments));
    assert!(!kind.names().await.contains(&orphan));
    same(
        &all_pages(&archive, &EventFilter::default(), 4).await,
        &events,
    );

    // The same interruption with the same segment size: the rerun overwrites the orphan.
    archive.restore_all().await.unwrap();
    let pending = archive.write_next_segment(cutoff).await.unwrap().unwrap();
    drop(pending);
    let report = archive.run(cutoff).await.unwrap();
    assert_eq!(report.events, OLD as u64);
    let segments = archive.list().await.unwrap();
    assert_eq!(segments.iter().map(|s| s.count).sum::<u64>(), OLD as u64);
    assert_eq!(kind.names().await, locations(&segments));
    same(
        &all_pages(&archive, &EventFilter::default(), 1000).await,
        &events,
    );
    same(&hot(&store).await, &events[OLD..]);
    store.close().await;
}

async fn publishes_go_on_during_a_run_and_every_event_is_hot_or_archived_once(db: TestDb) {
    let store = open(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = Arc::new(
        Archive::new(
            store.clone(),
            Box::new(FileTarget::new(dir.path().to_owned())),
        )
        .with_batch_size(3),
    );
    let mut events = publish(&store).await;
    let cutoff = Archive::cutoff(1, Timestamp::now());
    let publisher = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut stored = Vec::new();
            for i in 0..100 {
                let batch = vec![
                    event::of("live.one"),
                    event::raw("live.two", &format!("{{\"i\":{i}}}")),
                ];
                for a in store.append(batch).await.unwrap() {
                    stored.push((*a.event).clone());
                }
            }
            stored
        })
    };
    // Queries across both sources run beside the archiver and the publisher.
    let reader = {
        let archive = archive.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let all = all_pages(&archive, &EventFilter::default(), 50).await;
                let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "in seq order, no duplicates"
                );
                assert!(
                    all.len() >= OLD + RECENT,
                    "no event is missed while it moves"
                );
            }
        })
    };
    let report = archive.run(cutoff).await.unwrap();
    events.extend(publisher.await.unwrap());
    reader.await.unwrap();
    assert_eq!(report.events, OLD as u64);
    same(
        &all_pages(&archive, &EventFilter::default(), 37).await,
        &events,
    );
    same(&hot(&store).await, &events[OLD..]);
    store.close().await;
}

/// Two processes on one PostgreSQL schema archive at the same time: they take turns on the
/// archive lock, so each event is archived once and no file is left without its manifest row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_processes_archiving_at_once_archive_each_event_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let first = open(&db).await;
    let second = open(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let events = publish(&first).await;
    let cutoff = Archive::cutoff(1, Timestamp::now());
    let a = Archive::new(
        first.clone(),
        Box::new(FileTarget::new(dir.path().to_owned())),
    )
    .with_batch_size(2);
    let b = Archive::new(
        second.clone(),
        Box::new(FileTarget::new(dir.path().to_owned())),
    )
    .with_batch_size(3);
    let (ra, rb) = tokio::join!(a.run(cutoff), b.run(cutoff));
    let archived: u64 = [ra, rb]
        .into_iter()
        .map(|r| match r {
            Ok(report) => report.events,
            Err(eventbus::store::archive::ArchiveError::Busy) => 0,
            Err(e) => panic!("{e}"),
        })
        .sum();
    assert_eq!(archived, OLD as u64);
    let segments = a.list().await.unwrap();
    assert_eq!(files(dir.path()), locations(&segments));
    same(&all_pages(&b, &EventFilter::default(), 10).await, &events);
    first.close().await;
    second.close().await;
}
