//! The contract every [`GroupStore`](super::GroupStore) keeps, as test bodies each backend runs
//! on a fresh store.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::core::event::NewEvent;
use crate::store::EventStore;

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

fn t(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros)
}

fn event(ty: &str, project: Option<&str>, tenant: Option<&str>) -> Event {
    let mut e = NewEvent::new(ty, serde_json::json!({"n": 1}))
        .into_event(t(1))
        .unwrap();
    e.project_id = project.map(str::to_owned);
    e.tenant_id = tenant.map(str::to_owned);
    e
}

/// Appends `n` events of type `ty` without project or tenant; returns their seqs.
async fn publish(s: &dyn EventStore, ty: &str, n: usize) -> Vec<u64> {
    let events = (0..n).map(|_| event(ty, None, None)).collect();
    s.append(events)
        .await
        .unwrap()
        .iter()
        .map(|a| a.event.seq)
        .collect()
}

fn settings(name: &str, types: &str) -> GroupSettings {
    let mut s = GroupSettings::new(name, vec![p(types)]);
    s.start_at = StartAt::Earliest;
    s.ack_wait = Duration::from_millis(1_000);
    s
}

fn seqs(ms: &[GroupMessage]) -> Vec<u64> {
    ms.iter().map(|m| m.event.seq).collect()
}

fn ids(ms: &[GroupMessage]) -> Vec<String> {
    ms.iter().map(|m| m.ack_id.clone()).collect()
}

/// Ack wait of the test groups, in µs.
const WAIT: i64 = 1_000_000;

/// Creation resolves `start_at` into the cursor once; an update replaces the settings only.
pub(crate) async fn creation_update_and_start_at<S: EventStore + GroupStore>(s: &S) {
    publish(s, "a.x", 3).await;
    let mut new = settings("new", "a.*");
    new.start_at = StartAt::New;
    new.tenant_id = Some("t1".into());
    let (g, created) = s.put_group(new.clone(), t(10)).await.unwrap();
    let new_id = g.id;
    assert!(created);
    assert_eq!((g.cursor, g.created_at, g.updated_at), (3, t(10), t(10)));
    assert_eq!(g.settings, new);

    let (g, _) = s
        .put_group(settings("earliest", "a.*"), t(10))
        .await
        .unwrap();
    assert_eq!(g.cursor, 0);
    let mut at = settings("at", "a.*");
    at.start_at = StartAt::Seq(2);
    let (g, _) = s.put_group(at, t(10)).await.unwrap();
    assert_eq!(g.cursor, 1);
    let fetched = s.fetch("at", 10, t(20)).await.unwrap().unwrap();
    assert_eq!(seqs(&fetched), [2, 3], "Seq(2) delivers 2 first");

    // An update: new settings, same cursor, messages and id; start_at is not applied again.
    publish(s, "a.x", 2).await;
    let mut changed = new.clone();
    changed.types = vec![p("b.*"), p("a.>")];
    changed.max_deliver = 9;
    changed.start_at = StartAt::Earliest;
    let (g2, created) = s.put_group(changed.clone(), t(30)).await.unwrap();
    assert!(!created);
    assert_eq!((g2.id, g2.cursor), (new_id, 3));
    assert_eq!((g2.created_at, g2.updated_at), (t(10), t(30)));
    assert_eq!(g2.settings.types, changed.types);
    assert_eq!(g2.settings.max_deliver, 9);
    assert_eq!(s.get_group("new").await.unwrap().unwrap(), g2);
    let (g3, _) = s.put_group(settings("at", "a.*"), t(40)).await.unwrap();
    assert_eq!(g3.cursor, 3, "the update kept the moved cursor");
    let state = s.group_state("at", t(40)).await.unwrap().unwrap();
    assert_eq!(state.ack_pending, 2, "and the leased messages");

    let names = |gs: Vec<Group>| gs.into_iter().map(|g| g.settings.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_groups(None).await.unwrap()),
        ["at", "earliest", "new"]
    );
    assert_eq!(names(s.list_groups(Some("t1")).await.unwrap()), ["new"]);
    assert!(s.list_groups(Some("t2")).await.unwrap().is_empty());
    assert!(s.get_group("none").await.unwrap().is_none());
    assert!(s.fetch("none", 1, t(0)).await.unwrap().is_none());
    assert!(s.ack("none", &[], t(0)).await.unwrap().is_none());
    assert!(s.group_state("none", t(0)).await.unwrap().is_none());

    let mut bad = settings("x", "a.*");
    bad.types.clear();
    assert!(s.put_group(bad, t(0)).await.is_err(), "invalid settings");
}

/// The top-up takes only the events the types and the project, tenant and user scope let
/// through, and moves the cursor over the others.
pub(crate) async fn top_up_respects_filters_and_scope<S: EventStore + GroupStore>(s: &S) {
    let mut scoped = settings("scoped", "project.*");
    scoped.tenant_id = Some("t1".into());
    scoped.project_id = Some("p1".into());
    s.put_group(scoped, t(0)).await.unwrap();
    s.put_group(settings("all", ">"), t(0)).await.unwrap();
    let mut by_user = settings("user", ">");
    by_user.user_id = Some("u1".into());
    s.put_group(by_user, t(0)).await.unwrap();
    let mut events = vec![
        event("project.created", Some("p1"), Some("t1")), // 1: scoped
        event("project.created", Some("p2"), Some("t1")), // 2: other project
        event("project.created", Some("p1"), Some("t2")), // 3: other tenant
        event("project.a.b", Some("p1"), Some("t1")),     // 4: `*` is one segment
        event("user.created", Some("p1"), Some("t1")),    // 5: other type
        event("project.deleted", Some("p1"), Some("t1")), // 6: scoped
    ];
    events[1].user_id = Some("u1".into());
    s.append(events).await.unwrap();
    let got = s.fetch("scoped", 10, t(1)).await.unwrap().unwrap();
    assert_eq!(seqs(&got), [1, 6]);
    assert_eq!(s.get_group("scoped").await.unwrap().unwrap().cursor, 6);
    let state = s.group_state("scoped", t(1)).await.unwrap().unwrap();
    assert_eq!((state.pending, state.ack_pending), (0, 2));
    let all = s.group_state("all", t(1)).await.unwrap().unwrap();
    assert_eq!(
        all.pending, 6,
        "nothing fetched yet: every event is pending"
    );
    assert_eq!(
        seqs(&s.fetch("user", 10, t(1)).await.unwrap().unwrap()),
        [2]
    );
    // The top-up stops at `max` and continues from there.
    assert_eq!(
        seqs(&s.fetch("all", 4, t(1)).await.unwrap().unwrap()),
        [1, 2, 3, 4]
    );
    assert_eq!(s.get_group("all").await.unwrap().unwrap().cursor, 4);
    assert_eq!(
        s.group_state("all", t(1)).await.unwrap().unwrap().pending,
        2
    );
    assert_eq!(
        seqs(&s.fetch("all", 4, t(1)).await.unwrap().unwrap()),
        [5, 6]
    );
    assert!(s.fetch("all", 4, t(1)).await.unwrap().unwrap().is_empty());
}

/// Two fetches never get the same message; acks remove them.
pub(crate) async fn fetches_share_the_work<S: EventStore + GroupStore>(s: &S) {
    s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
    publish(s, "a.x", 10).await;
    let first = s.fetch("g", 4, t(1)).await.unwrap().unwrap();
    let second = s.fetch("g", 4, t(2)).await.unwrap().unwrap();
    let third = s.fetch("g", 4, t(3)).await.unwrap().unwrap();
    assert_eq!(seqs(&first), [1, 2, 3, 4]);
    assert_eq!(seqs(&second), [5, 6, 7, 8]);
    assert_eq!(seqs(&third), [9, 10]);
    assert!(first.iter().all(|m| m.delivery_count == 1));
    assert!(s.fetch("g", 4, t(4)).await.unwrap().unwrap().is_empty());
    let mut all = ids(&first);
    all.extend(ids(&second));
    all.extend(ids(&third));
    let outcomes = s.ack("g", &all, t(5)).await.unwrap().unwrap();
    assert!(outcomes.iter().all(|o| *o == AckOutcome::Acked));
    let state = s.group_state("g", t(5)).await.unwrap().unwrap();
    assert_eq!(
        (state.pending, state.ack_pending, state.oldest_unacked),
        (0, 0, None)
    );
    // Long after: nothing comes back.
    assert!(
        s.fetch("g", 4, t(100 * WAIT))
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
}

/// Per project of an ordered group: whether one of its messages is out, and the last `seq`
/// handed out.
type Flight = std::sync::Mutex<HashMap<Option<String>, (bool, u64)>>;

/// Four fetchers on tasks of their own per group, spread over `stores` (processes sharing
/// one database, or one store), while 5,000 events are being published: each is handed out
/// once and acked once, in an unordered group and in an ordered one, where a project never
/// has two messages out and gets them in `seq` order. A top-up that skipped an event
/// committing beside it would leave the fetchers waiting for it until the deadline.
pub(crate) async fn concurrent_fetchers_ack_each_event_once<S: EventStore + GroupStore>(
    stores: Vec<Arc<S>>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const EVENTS: usize = 5_000;
    let s = &stores[0];
    let mut plain = settings("plain", "a.*");
    plain.max_ack_pending = 400;
    s.put_group(plain.clone(), t(0)).await.unwrap();
    let mut ordered = plain;
    ordered.name = "ordered".into();
    ordered.ordered = true;
    s.put_group(ordered, t(0)).await.unwrap();
    let publisher = stores[stores.len() - 1].clone();
    let publishing = tokio::spawn(async move {
        for chunk in 0..EVENTS / 100 {
            // Seven projects and events without one.
            let events = (0..100)
                .map(|i| {
                    let project = format!("p{}", (chunk * 100 + i) % 8);
                    event("a.x", (project != "p7").then_some(&project), None)
                })
                .collect();
            publisher.append(events).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let flight = Arc::new(Flight::default());
    let acked: Arc<[AtomicUsize; 2]> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = stores[i % stores.len()].clone();
        let (group, g) = if i % 2 == 0 {
            ("plain", 0)
        } else {
            ("ordered", 1)
        };
        let (flight, acked) = (flight.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            // No lease runs out: the clock stays within the ack wait.
            while acked[g].load(Ordering::SeqCst) < EVENTS {
                let got = s.fetch(group, 100, t(10)).await.unwrap().unwrap();
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                if group == "ordered" {
                    let mut flight = flight.lock().unwrap();
                    for m in &got {
                        let (out, last) = flight.entry(m.event.project_id.clone()).or_default();
                        assert!(!*out, "one unacked message per project at a time");
                        assert!(*last < m.event.seq, "in seq order per project");
                        (*out, *last) = (true, m.event.seq);
                    }
                }
                // Marked done before the ack commits, so the next one may follow it.
                if group == "ordered" {
                    let mut flight = flight.lock().unwrap();
                    for m in &got {
                        flight.get_mut(&m.event.project_id).unwrap().0 = false;
                    }
                }
                let outcomes = s.ack(group, &ids(&got), t(11)).await.unwrap().unwrap();
                assert!(outcomes.iter().all(|o| *o == AckOutcome::Acked));
                acked[g].fetch_add(got.len(), Ordering::SeqCst);
                mine.extend(seqs(&got));
            }
            (group, mine)
        }));
    }
    let all = async {
        publishing.await.unwrap();
        let mut seen: HashMap<&str, Vec<u64>> = HashMap::new();
        for task in tasks {
            let (group, got) = task.await.unwrap();
            seen.entry(group).or_default().extend(got);
        }
        seen
    };
    let mut seen = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("every event acked within two minutes");
    for group in ["plain", "ordered"] {
        let mut got = seen.remove(group).unwrap_or_default();
        got.sort_unstable();
        let every: Vec<u64> = (1..=EVENTS as u64).collect();
        assert_eq!(got, every, "{group}: every event, once");
        let state = s.group_state(group, t(12)).await.unwrap().unwrap();
        assert_eq!((state.pending, state.ack_pending), (0, 0));
    }
}

/// A lease that runs out makes the message ready again, with a new ack id; the old one is
/// expired.
pub(crate) async fn unacked_messages_are_redelivered_after_the_ack_wait<
    S: EventStore + GroupStore,
>(
    s: &S,
) {
    s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
    publish(s, "a.x", 2).await;
    let first = s.fetch("g", 10, t(0)).await.unwrap().unwrap();
    assert_eq!(seqs(&first), [1, 2]);
    assert!(
        s.fetch("g", 10, t(WAIT - 1))
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.next_ready_at("g", t(1)).await.unwrap(),
        Some(t(WAIT)),
        "the lease end"
    );
    assert_eq!(s.next_ready_at("g", t(WAIT)).await.unwrap(), None);
    let again = s.fetch("g", 10, t(WAIT)).await.unwrap().unwrap();
    assert_eq!(seqs(&again), [1, 2]);
    assert!(again.iter().all(|m| m.delivery_count == 2));
    assert_ne!(ids(&again), ids(&first));
    let outcomes = s
        .ack(
            "g",
            &[first[0].ack_id.clone(), again[1].ack_id.clone()],
            t(WAIT + 1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcomes, [AckOutcome::Expired, AckOutcome::Acked]);
    let state = s.group_state("g", t(WAIT + 1)).await.unwrap().unwrap();
    assert_eq!((state.ack_pending, state.redelivered), (1, 2));
    assert_eq!(
        state.oldest_unacked,
        Some(Duration::from_micros(WAIT as u64 + 1))
    );
}

/// A nack hands the message out again once its delay has passed.
pub(crate) async fn nacked_messages_come_back_after_their_delay<S: EventStore + GroupStore>(s: &S) {
    s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
    publish(s, "a.x", 2).await;
    let first = s.fetch("g", 10, t(0)).await.unwrap().unwrap();
    let outcomes = s
        .nack("g", &ids(&first[..1]), Duration::from_millis(5), t(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcomes, [AckOutcome::Acked]);
    assert_eq!(
        s.ack("g", &ids(&first[..1]), t(101))
            .await
            .unwrap()
            .unwrap(),
        [AckOutcome::Expired],
        "a nacked delivery is over"
    );
    assert_eq!(s.next_ready_at("g", t(100)).await.unwrap(), Some(t(5_100)));
    assert!(
        s.fetch("g", 10, t(5_099))
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    let again = s.fetch("g", 10, t(5_100)).await.unwrap().unwrap();
    assert_eq!(seqs(&again), [1]);
    assert_eq!(again[0].delivery_count, 2);
    // A nack without delay: ready at once.
    s.nack("g", &ids(&again), Duration::ZERO, t(5_200))
        .await
        .unwrap();
    assert_eq!(
        seqs(&s.fetch("g", 10, t(5_200)).await.unwrap().unwrap()),
        [1]
    );
    let state = s.group_state("g", t(5_200)).await.unwrap().unwrap();
    assert_eq!(state.ack_pending, 2);
}

/// After `max_deliver` deliveries a message whose lease runs out, or that is nacked, is a
/// dead letter; the group goes on; a retry makes it a fresh message.
pub(crate) async fn dead_letters_after_max_deliver_and_retry<S: EventStore + GroupStore>(s: &S) {
    let mut g = settings("g", "a.*");
    g.max_deliver = 2;
    s.put_group(g, t(0)).await.unwrap();
    publish(s, "a.x", 3).await;
    assert_eq!(seqs(&s.fetch("g", 2, t(0)).await.unwrap().unwrap()), [1, 2]);
    let second = s.fetch("g", 2, t(WAIT)).await.unwrap().unwrap();
    assert_eq!(seqs(&second), [1, 2]);
    // Seq 2 is nacked at its last delivery: dead at once. Seq 1's lease runs out.
    assert_eq!(
        s.nack("g", &ids(&second[1..]), Duration::ZERO, t(WAIT + 1))
            .await
            .unwrap()
            .unwrap(),
        [AckOutcome::Acked]
    );
    let state = s.group_state("g", t(2 * WAIT)).await.unwrap().unwrap();
    assert_eq!((state.dead_lettered, state.ack_pending), (2, 0));
    // The group goes on with seq 3.
    let third = s.fetch("g", 2, t(2 * WAIT)).await.unwrap().unwrap();
    assert_eq!(seqs(&third), [3]);
    assert_eq!(
        s.ack("g", &ids(&second[..1]), t(2 * WAIT))
            .await
            .unwrap()
            .unwrap(),
        [AckOutcome::Expired]
    );

    let page = s.list_dead_letters("g", None, 10).await.unwrap().unwrap();
    let dead: Vec<(u64, u32, DeadReason)> = page
        .items
        .iter()
        .map(|d| (d.seq, d.delivery_count, d.reason))
        .collect();
    assert_eq!(
        dead,
        [(1, 2, DeadReason::Expired), (2, 2, DeadReason::Nacked)]
    );
    assert_eq!(page.next_after, None);
    assert_eq!(page.items[0].event.as_ref().unwrap().seq, 1);
    assert_eq!(page.items[1].ack_id, second[1].ack_id);
    let first_page = s.list_dead_letters("g", None, 1).await.unwrap().unwrap();
    assert_eq!(first_page.next_after, Some(1));
    let rest = s.list_dead_letters("g", Some(1), 1).await.unwrap().unwrap();
    assert_eq!(rest.items[0].seq, 2);

    // Before seq 3's lease runs out.
    let later = t(3 * WAIT - 10);
    assert!(
        s.retry_dead_letter("g", &page.items[1].ack_id, later)
            .await
            .unwrap()
    );
    assert!(
        !s.retry_dead_letter("g", &page.items[1].ack_id, later)
            .await
            .unwrap(),
        "no longer a dead letter"
    );
    assert!(!s.retry_dead_letter("g", "nonsense", later).await.unwrap());
    let retried = s.fetch("g", 2, later).await.unwrap().unwrap();
    assert_eq!(seqs(&retried), [2]);
    assert_eq!(retried[0].delivery_count, 1, "a fresh delivery budget");
    let state = s.group_state("g", later).await.unwrap().unwrap();
    assert_eq!(state.dead_lettered, 1);
}

/// An ordered group hands out at most one unacked message per project, in `seq` order.
pub(crate) async fn ordered_groups_keep_one_message_per_project<S: EventStore + GroupStore>(s: &S) {
    let mut g = settings("g", "project.*");
    g.ordered = true;
    s.put_group(g, t(0)).await.unwrap();
    let events = [
        ("a", 1),
        ("a", 2),
        ("b", 3),
        ("-", 4),
        ("a", 5),
        ("b", 6),
        ("-", 7),
    ]
    .map(|(project, _)| event("project.updated", (project != "-").then_some(project), None));
    s.append(events.to_vec()).await.unwrap();
    let first = s.fetch("g", 10, t(0)).await.unwrap().unwrap();
    assert_eq!(seqs(&first), [1, 3, 4], "each project's oldest");
    assert!(s.fetch("g", 10, t(1)).await.unwrap().unwrap().is_empty());
    let state = s.group_state("g", t(1)).await.unwrap().unwrap();
    assert_eq!((state.pending, state.ack_pending), (4, 3));
    // Acking a's head frees a's next; b's head is nacked: b's next still waits for it.
    s.ack("g", &ids(&first[..1]), t(2)).await.unwrap();
    s.nack("g", &ids(&first[1..2]), Duration::from_millis(1), t(2))
        .await
        .unwrap();
    assert_eq!(seqs(&s.fetch("g", 10, t(3)).await.unwrap().unwrap()), [2]);
    assert_eq!(s.next_ready_at("g", t(3)).await.unwrap(), Some(t(1_002)));
    let b = s.fetch("g", 10, t(1_002)).await.unwrap().unwrap();
    assert_eq!(seqs(&b), [3]);
    assert_eq!(b[0].delivery_count, 2);
    // A lease that runs out redelivers the head, still before the rest of its project.
    let late = s.fetch("g", 10, t(WAIT + 10)).await.unwrap().unwrap();
    assert_eq!(seqs(&late), [2, 4]);
    s.ack("g", &ids(&late), t(WAIT + 11)).await.unwrap();
    s.ack("g", &ids(&b), t(WAIT + 11)).await.unwrap();
    assert_eq!(
        s.ack("g", &ids(&b), t(WAIT + 11)).await.unwrap().unwrap(),
        [AckOutcome::Expired],
        "acked already"
    );
}

/// `max_ack_pending` bounds the messages handed out and not acked.
pub(crate) async fn max_ack_pending_bounds_leased_messages<S: EventStore + GroupStore>(s: &S) {
    let mut g = settings("g", "a.*");
    g.max_ack_pending = 3;
    s.put_group(g.clone(), t(0)).await.unwrap();
    publish(s, "a.x", 10).await;
    let first = s.fetch("g", 2, t(0)).await.unwrap().unwrap();
    assert_eq!(seqs(&first), [1, 2]);
    assert_eq!(seqs(&s.fetch("g", 10, t(0)).await.unwrap().unwrap()), [3]);
    assert!(s.fetch("g", 10, t(0)).await.unwrap().unwrap().is_empty());
    let state = s.group_state("g", t(0)).await.unwrap().unwrap();
    assert_eq!((state.ack_pending, state.pending), (3, 7));
    s.ack("g", &ids(&first), t(1)).await.unwrap();
    assert_eq!(
        seqs(&s.fetch("g", 10, t(1)).await.unwrap().unwrap()),
        [4, 5]
    );
    // A larger window applies to the next fetch.
    g.max_ack_pending = 10;
    s.put_group(g, t(2)).await.unwrap();
    assert_eq!(
        seqs(&s.fetch("g", 10, t(2)).await.unwrap().unwrap()),
        [6, 7, 8, 9, 10]
    );
}

/// Ack outcomes: acked, unknown (garbage, another group's, a deleted group's), expired.
pub(crate) async fn ack_outcomes_name_what_happened<S: EventStore + GroupStore>(s: &S) {
    s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
    s.put_group(settings("h", "a.*"), t(0)).await.unwrap();
    publish(s, "a.x", 2).await;
    let g = s.fetch("g", 1, t(0)).await.unwrap().unwrap();
    let h = s.fetch("h", 1, t(0)).await.unwrap().unwrap();
    let mut forged = AckId::parse(&g[0].ack_id).unwrap();
    forged.token ^= 1;
    let beyond = AckId { seq: 99, ..forged };
    let outcomes = s
        .ack(
            "g",
            &[
                "garbage".into(),
                h[0].ack_id.clone(),
                forged.to_string(),
                beyond.to_string(),
                g[0].ack_id.clone(),
                g[0].ack_id.clone(),
            ],
            t(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcomes,
        [
            AckOutcome::Unknown,
            AckOutcome::Unknown,
            AckOutcome::Expired,
            AckOutcome::Unknown,
            AckOutcome::Acked,
            AckOutcome::Expired
        ]
    );
    // After the lease ran out, before anyone fetched again: expired, and nack too.
    assert_eq!(
        s.ack("h", &ids(&h), t(WAIT)).await.unwrap().unwrap(),
        [AckOutcome::Expired]
    );
    assert_eq!(
        s.nack("h", &ids(&h), Duration::ZERO, t(WAIT))
            .await
            .unwrap()
            .unwrap(),
        [AckOutcome::Expired]
    );
    // A group deleted and created again does not know the old ack ids.
    let again = s.fetch("h", 1, t(WAIT)).await.unwrap().unwrap();
    assert!(s.delete_group("h").await.unwrap());
    s.put_group(settings("h", "a.*"), t(WAIT)).await.unwrap();
    assert_eq!(
        s.ack("h", &ids(&again), t(WAIT)).await.unwrap().unwrap(),
        [AckOutcome::Unknown]
    );
}

/// A message whose event left the hot table (`archive` removes it, as the archiver does)
/// before it was handed out again becomes a dead letter without an event; the rest go on.
pub(crate) async fn messages_of_archived_events_become_dead_letters<S: EventStore + GroupStore>(
    s: &S,
    archive: impl AsyncFnOnce(u64),
) {
    s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
    publish(s, "a.x", 3).await;
    assert_eq!(
        seqs(&s.fetch("g", 10, t(0)).await.unwrap().unwrap()),
        [1, 2, 3]
    );
    archive(2).await;
    let again = s.fetch("g", 10, t(WAIT)).await.unwrap().unwrap();
    assert_eq!(seqs(&again), [1, 3]);
    let dead = s.list_dead_letters("g", None, 10).await.unwrap().unwrap();
    assert_eq!(dead.items.len(), 1);
    let d = &dead.items[0];
    assert_eq!(
        (d.seq, d.reason, d.event.is_none(), d.dead_lettered_at),
        (2, DeadReason::Archived, true, t(WAIT))
    );
}

/// Deleting a group removes its messages; another group is untouched.
pub(crate) async fn delete_removes_the_group_and_its_messages<S: EventStore + GroupStore>(s: &S) {
    s.put_group(settings("g", "a.*"), t(0)).await.unwrap();
    s.put_group(settings("keep", "a.*"), t(0)).await.unwrap();
    publish(s, "a.x", 3).await;
    s.fetch("g", 10, t(0)).await.unwrap().unwrap();
    let kept = s.fetch("keep", 10, t(0)).await.unwrap().unwrap();
    assert!(s.delete_group("g").await.unwrap());
    assert!(!s.delete_group("g").await.unwrap());
    assert!(s.get_group("g").await.unwrap().is_none());
    assert!(s.list_dead_letters("g", None, 10).await.unwrap().is_none());
    // Created again from the start: every event is new to it.
    let (g, created) = s.put_group(settings("g", "a.*"), t(1)).await.unwrap();
    assert!(created && g.cursor == 0);
    assert_eq!(
        s.group_state("g", t(1)).await.unwrap().unwrap().ack_pending,
        0
    );
    assert_eq!(
        seqs(&s.fetch("g", 10, t(1)).await.unwrap().unwrap()),
        [1, 2, 3]
    );
    let outcomes = s.ack("keep", &ids(&kept), t(1)).await.unwrap().unwrap();
    assert!(outcomes.iter().all(|o| *o == AckOutcome::Acked));
    let names: HashSet<String> = s
        .list_groups(None)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.settings.name)
        .collect();
    assert_eq!(names, HashSet::from(["g".to_owned(), "keep".to_owned()]));
}
