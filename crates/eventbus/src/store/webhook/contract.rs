//! The contract every [`WebhookStore`](super::WebhookStore) keeps, as test bodies each backend
//! runs on a fresh store.

use std::collections::BTreeMap;

use super::*;

pub(crate) fn endpoint(id: &str, ordered: bool) -> Endpoint {
    let now = Timestamp::from_micros(1_000);
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

pub(crate) fn delivery(ep: &str, seq: u64) -> NewDelivery {
    NewDelivery {
        endpoint_id: ep.into(),
        event_seq: seq,
        event_id: format!("e{seq}"),
        event_type: "a.b".into(),
    }
}

pub(crate) fn claim(now: i64, lease: i64) -> Claim {
    Claim {
        now: Timestamp::from_micros(now),
        lease_until: Timestamp::from_micros(now + lease),
        limit: 100,
        per_endpoint: 10,
        held: HashMap::new(),
    }
}

fn outcome(d: &Delivery, success: bool, retry_at: Option<i64>) -> AttemptRecord {
    AttemptRecord {
        delivery_id: d.id,
        endpoint_id: d.endpoint_id.clone(),
        event_id: d.event_id.clone(),
        started_at: Timestamp::from_micros(10_000),
        duration_ms: 1,
        status_code: Some(if success { 200 } else { 500 }),
        response_body: None,
        error: None,
        success,
        retry_at: retry_at.map(Timestamp::from_micros),
    }
}

const HEALTH: HealthPolicy = HealthPolicy {
    window_micros: 0,
    failures: 1_000,
};

/// An endpoint's request format is kept, and changed by a patch.
pub(crate) async fn the_request_format_is_kept(s: &dyn WebhookStore) {
    let mut ep = endpoint("f", false);
    ep.format = WebhookFormat::CloudEvents;
    s.create_endpoint(ep).await.unwrap();
    let got = s.get_endpoint("f").await.unwrap().unwrap();
    assert_eq!(got.format, WebhookFormat::CloudEvents);
    let patch = EndpointPatch {
        format: Some(WebhookFormat::CloudEventsBinary),
        ..Default::default()
    };
    s.update_endpoint("f", patch, Timestamp::from_micros(2_000))
        .await
        .unwrap();
    let got = s.get_endpoint("f").await.unwrap().unwrap();
    assert_eq!(got.format, WebhookFormat::CloudEventsBinary);
    let other = s.create_endpoint(endpoint("g", false)).await.unwrap();
    assert_eq!(other.format, WebhookFormat::Json, "the default");
}

/// Fan-out steps apply once and are refused when stale.
pub(crate) async fn fan_out_applies_once_and_refuses_stale_steps(s: &dyn WebhookStore) {
    let ep = s.create_endpoint(endpoint("a", false)).await.unwrap();
    let (_, version) = s.list_endpoints().await.unwrap();
    let step = |from, to, v| FanOut {
        from,
        to,
        endpoints_version: v,
        deliveries: vec![delivery(&ep.id, to)],
        now: Timestamp::from_micros(0),
    };
    assert_eq!(
        s.fan_out(step(0, 5, version)).await.unwrap(),
        FanOutResult::Applied
    );
    assert_eq!(s.fanout_cursor().await.unwrap(), 5);
    // The same step again (a second process, or a retry after a lost answer): refused.
    assert_eq!(
        s.fan_out(step(0, 5, version)).await.unwrap(),
        FanOutResult::Stale {
            cursor: 5,
            endpoints_version: version
        }
    );
    // The endpoints changed since they were matched: refused.
    s.create_endpoint(endpoint("b", false)).await.unwrap();
    assert!(matches!(
        s.fan_out(step(5, 6, version)).await.unwrap(),
        FanOutResult::Stale { cursor: 5, .. }
    ));
    assert_eq!(s.pending_count().await.unwrap(), 1);
    assert!(
        s.oldest_due().await.unwrap().is_some(),
        "a pending delivery has a due time"
    );
}

/// Claims lease; ordered endpoints yield only their head.
pub(crate) async fn claims_are_leased_and_ordered_endpoints_yield_their_head_only(
    s: &dyn WebhookStore,
) {
    s.create_endpoint(endpoint("p", false)).await.unwrap();
    s.create_endpoint(endpoint("o", true)).await.unwrap();
    let rows = (1..=3)
        .flat_map(|seq| [delivery("p", seq), delivery("o", seq)])
        .collect();
    s.enqueue(rows, Timestamp::from_micros(0)).await.unwrap();

    let first = s.claim_due(claim(100, 1_000)).await.unwrap();
    let seqs = |ep: &str, ds: &[Delivery]| {
        ds.iter()
            .filter(|d| d.endpoint_id == ep)
            .map(|d| d.event_seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs("p", &first), [1, 2, 3]);
    assert_eq!(seqs("o", &first), [1]);
    assert!(
        s.claim_due(claim(200, 1_000)).await.unwrap().is_empty(),
        "leased rows are not claimed again"
    );

    // The ordered head fails and is retried later: nothing behind it goes first.
    let head = first.iter().find(|d| d.endpoint_id == "o").unwrap();
    s.complete(vec![outcome(head, false, Some(5_000))], HEALTH)
        .await
        .unwrap();
    assert!(s.claim_due(claim(300, 1_000)).await.unwrap().is_empty());
    let again = s.claim_due(claim(5_000, 1_000)).await.unwrap();
    assert_eq!(seqs("o", &again), [1]);
    s.complete(vec![outcome(&again[0], true, None)], HEALTH)
        .await
        .unwrap();
    assert_eq!(
        seqs("o", &s.claim_due(claim(5_001, 1_000)).await.unwrap()),
        [2]
    );
}

/// A claim sees endpoint changes at once, whoever made them: `a` claims, `b` changes the
/// endpoints (another process on PostgreSQL, whose claims keep the endpoints they last read;
/// the same store on SQLite). Each step changes the endpoints between two claims of `a`.
pub(crate) async fn claims_see_endpoint_changes_at_once(
    a: &dyn WebhookStore,
    b: &dyn WebhookStore,
) {
    let seqs = |ep: &str, ds: &[Delivery]| {
        let mut s: Vec<u64> = ds
            .iter()
            .filter(|d| d.endpoint_id == ep)
            .map(|d| d.event_seq)
            .collect();
        s.sort_unstable();
        s
    };
    let enqueue = |rows: Vec<NewDelivery>| async move {
        b.enqueue(rows, Timestamp::from_micros(0)).await.unwrap();
    };
    let change = |id: &'static str, patch: EndpointPatch| async move {
        b.update_endpoint(id, patch, Timestamp::from_micros(2_000))
            .await
            .unwrap()
            .expect("the endpoint exists");
    };
    b.create_endpoint(endpoint("p", false)).await.unwrap();
    enqueue(vec![delivery("p", 1), delivery("p", 2)]).await;
    assert_eq!(
        seqs("p", &a.claim_due(claim(100, 1_000)).await.unwrap()),
        [1, 2]
    );

    // A new endpoint: its deliveries come with the next claim.
    b.create_endpoint(endpoint("q", false)).await.unwrap();
    enqueue(vec![delivery("q", 1), delivery("p", 3)]).await;
    let next = a.claim_due(claim(200, 1_000)).await.unwrap();
    assert_eq!((seqs("p", &next), seqs("q", &next)), (vec![3], vec![1]));
    let q1 = next.iter().find(|d| d.endpoint_id == "q").unwrap();
    a.complete(vec![outcome(q1, true, None)], HEALTH)
        .await
        .unwrap();

    // Another new endpoint, found after part of the claim's room is used (the leases above have
    // run out; `q` has nothing pending): the rest of the claim keeps both the limit (3) and each endpoint's room (2). At
    // this time the rotation starts at `p`, so a claim that forgot what it took of `p` would take
    // a third one.
    b.create_endpoint(endpoint("r", false)).await.unwrap();
    enqueue(
        (4..=6)
            .map(|n| delivery("p", n))
            .chain((1..=3).map(|n| delivery("r", n)))
            .collect(),
    )
    .await;
    let small = Claim {
        limit: 3,
        per_endpoint: 2,
        ..claim(6_000, 1_000)
    };
    let some = a.claim_due(small).await.unwrap();
    assert_eq!((seqs("p", &some), seqs("r", &some)), (vec![1, 2], vec![1]));

    // `p` becomes ordered: the next claim (all leases run out) takes its head only.
    let ordered = EndpointPatch {
        ordered: Some(true),
        ..Default::default()
    };
    change("p", ordered).await;
    let later = a.claim_due(claim(9_000, 1_000)).await.unwrap();
    assert_eq!(
        (seqs("p", &later), seqs("q", &later), seqs("r", &later)),
        (vec![1], vec![], vec![1, 2, 3])
    );

    // `q` is disabled: it gets nothing more. `p`, the ordered one, has no room in this claim, so
    // the claim starts with the endpoints it knows.
    let disabled = EndpointPatch {
        disabled: Some(true),
        ..Default::default()
    };
    change("q", disabled).await;
    enqueue(vec![delivery("q", 2)]).await;
    let mut without_p = claim(20_000, 1_000);
    without_p.held.insert("p".into(), without_p.per_endpoint);
    let last = a.claim_due(without_p).await.unwrap();
    assert_eq!(
        (seqs("p", &last), seqs("q", &last), seqs("r", &last)),
        (vec![], vec![], vec![1, 2, 3])
    );
}

/// A renewal moves a lease only while it is still the one the caller took (same end) of a
/// pending delivery; moving it to 0 releases it, so the next claim takes it at once.
pub(crate) async fn leases_move_only_while_still_the_callers(s: &dyn WebhookStore) {
    s.create_endpoint(endpoint("p", false)).await.unwrap();
    s.enqueue(
        vec![delivery("p", 1), delivery("p", 2), delivery("p", 3)],
        Timestamp::from_micros(0),
    )
    .await
    .unwrap();
    let claimed = s.claim_due(claim(100, 1_000)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let (a, b, c) = (claimed[0].id, claimed[1].id, claimed[2].id);
    let taken = Timestamp::from_micros(1_100);
    // `b`'s lease is not the caller's any more (another end), and `c` was recorded meanwhile.
    s.complete(vec![outcome(&claimed[2], true, None)], HEALTH)
        .await
        .unwrap();
    let mut moved = s
        .renew_leases(
            &[(a, taken), (b, Timestamp::from_micros(999)), (c, taken)],
            Timestamp::from_micros(9_000),
        )
        .await
        .unwrap();
    moved.sort_unstable();
    assert_eq!(moved, [a]);
    // `a` is leased until 9,000 now, `b` still until 1,100.
    let at_2000 = s.claim_due(claim(2_000, 1_000)).await.unwrap();
    assert_eq!(at_2000.iter().map(|d| d.id).collect::<Vec<_>>(), [b]);
    // Released: claimable at once, long before its lease would have ended.
    let released = s
        .renew_leases(
            &[(a, Timestamp::from_micros(9_000))],
            Timestamp::from_micros(0),
        )
        .await
        .unwrap();
    assert_eq!(released, [a]);
    let at_2001 = s.claim_due(claim(2_001, 1_000)).await.unwrap();
    assert_eq!(at_2001.iter().map(|d| d.id).collect::<Vec<_>>(), [a]);
}

/// A claim returns each endpoint's due deliveries oldest due first (then by `seq`), and no
/// more of an endpoint than the room the caller's held deliveries leave.
pub(crate) async fn claims_take_the_oldest_due_within_each_endpoints_room(s: &dyn WebhookStore) {
    s.create_endpoint(endpoint("p", false)).await.unwrap();
    s.create_endpoint(endpoint("q", false)).await.unwrap();
    // p's seq 9 has been due longest; the others became due later, in seq order.
    s.enqueue(vec![delivery("p", 9)], Timestamp::from_micros(0))
        .await
        .unwrap();
    let rest = (1..=4)
        .flat_map(|seq| [delivery("p", seq), delivery("q", seq)])
        .collect();
    s.enqueue(rest, Timestamp::from_micros(10)).await.unwrap();
    let seqs = |ep: &str, ds: &[Delivery]| {
        ds.iter()
            .filter(|d| d.endpoint_id == ep)
            .map(|d| d.event_seq)
            .collect::<Vec<_>>()
    };
    let mut c = claim(100, 1_000);
    c.per_endpoint = 3;
    c.held = HashMap::from([("p".to_owned(), 1), ("q".to_owned(), 3)]);
    let first = s.claim_due(c.clone()).await.unwrap();
    assert_eq!(seqs("p", &first), [9, 1], "p had room for two");
    assert_eq!(seqs("q", &first), [] as [u64; 0], "q had no room");
    c.held.clear();
    let second = s.claim_due(c).await.unwrap();
    assert_eq!(seqs("p", &second), [2, 3, 4]);
    assert_eq!(seqs("q", &second), [1, 2, 3]);
}

/// Dead letters, manual retry, the attempt log and auto-disable.
pub(crate) async fn the_last_failure_dead_letters_and_failing_endpoints_are_disabled(
    s: &dyn WebhookStore,
) {
    s.create_endpoint(endpoint("a", false)).await.unwrap();
    s.enqueue(
        vec![
            delivery("a", 1),
            delivery("a", 2),
            delivery("a", 3),
            delivery("a", 4),
        ],
        Timestamp::from_micros(0),
    )
    .await
    .unwrap();
    let ds = s.claim_due(claim(100, 1_000)).await.unwrap();
    assert_eq!(ds.len(), 4);
    let health = HealthPolicy {
        window_micros: 0,
        failures: 2,
    };
    assert!(
        s.complete(vec![outcome(&ds[0], false, None)], health)
            .await
            .unwrap()
            .is_empty()
    );
    let dead = s.get_delivery(ds[0].id).await.unwrap().unwrap();
    assert_eq!(
        (dead.status, dead.attempts, dead.next_attempt_at),
        (DeliveryStatus::Failed, 1, None)
    );
    let disabled = s
        .complete(vec![outcome(&ds[1], false, Some(9_000))], health)
        .await
        .unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].disabled_reason.as_deref(), Some("failing"));
    assert!(
        s.claim_due(claim(10_000, 1_000)).await.unwrap().is_empty(),
        "a disabled endpoint is not served"
    );
    // Attempts under way at the disabling end later, one failing, one succeeding: the endpoint
    // keeps the streak it was disabled with (its announcement is made of it).
    let streak = |e: &Endpoint| (e.failing_since, e.failure_count);
    let at_disabling = streak(&disabled[0]);
    assert_eq!(at_disabling.1, 2);
    for (d, success) in [(&ds[2], false), (&ds[3], true)] {
        s.complete(vec![outcome(d, success, None)], health)
            .await
            .unwrap();
        let ep = s.get_endpoint("a").await.unwrap().unwrap();
        assert_eq!(streak(&ep), at_disabling);
    }

    let retried = s
        .retry_delivery(ds[0].id, Timestamp::from_micros(11_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (retried.status, retried.cycle_attempts),
        (DeliveryStatus::Pending, 0)
    );
    let attempts = s
        .list_attempts(AttemptQuery {
            endpoint_id: "a".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(attempts.items.len(), 4);
}

/// An endpoint's figures: its attempts that started at or after `since` (sums, the newest
/// failure) and its deliveries by status of all time; another endpoint's rows never count.
pub(crate) async fn endpoint_stats_count_the_window_and_the_unfinished_deliveries(
    s: &dyn WebhookStore,
) {
    let at = Timestamp::from_micros;
    s.create_endpoint(endpoint("a", false)).await.unwrap();
    s.create_endpoint(endpoint("b", false)).await.unwrap();
    let none = s.endpoint_stats("a", at(0)).await.unwrap();
    assert_eq!(
        none,
        EndpointStats {
            since: at(0),
            attempts: 0,
            succeeded: 0,
            failed: 0,
            success_rate: None,
            mean_duration_ms: None,
            max_duration_ms: None,
            last_attempt_at: None,
            last_failure: None,
            deliveries: DeliveryCounts::default(),
        }
    );

    let rows = (1..=4)
        .map(|seq| delivery("a", seq))
        .chain([delivery("b", 1)]);
    s.enqueue(rows.collect(), at(0)).await.unwrap();
    let claimed = s.claim_due(claim(100, 1_000_000)).await.unwrap();
    let of = |ep: &str, seq: u64| {
        claimed
            .iter()
            .find(|d| d.endpoint_id == ep && d.event_seq == seq)
            .unwrap()
    };
    // a1 succeeds, a2 fails with a 500 and waits for a retry, a3 times out and is dead-lettered,
    // a4 is still in flight; b1's failure is another endpoint's.
    let record =
        |d: &Delivery, start: i64, ms: u64, success: bool, retry: Option<i64>| AttemptRecord {
            started_at: at(start),
            duration_ms: ms,
            ..outcome(d, success, retry)
        };
    let timed_out = AttemptRecord {
        status_code: None,
        error: Some("timed out".into()),
        ..record(of("a", 3), 3_000, 5, false, None)
    };
    let records = vec![
        record(of("a", 1), 1_000, 10, true, None),
        record(of("a", 2), 2_000, 30, false, Some(90_000_000)),
        timed_out,
        record(of("b", 1), 4_000, 99, false, None),
    ];
    s.complete(records, HEALTH).await.unwrap();

    let all = s.endpoint_stats("a", at(0)).await.unwrap();
    assert_eq!(
        (all.attempts, all.succeeded, all.failed),
        (3, 1, 2),
        "{all:?}"
    );
    assert_eq!(all.success_rate, Some(1.0 / 3.0));
    assert_eq!(all.mean_duration_ms, Some(15.0));
    assert_eq!(all.max_duration_ms, Some(30));
    assert_eq!(all.last_attempt_at, Some(at(3_000)));
    assert_eq!(
        all.last_failure,
        Some(LastFailure {
            at: at(3_000),
            status_code: None,
            error: Some("timed out".into()),
            delivery_id: of("a", 3).id,
        })
    );
    let deliveries = DeliveryCounts {
        pending: 2,
        failed: 1,
    };
    assert_eq!(all.deliveries, deliveries);

    // The window starts at a2's attempt, inclusive.
    let recent = s.endpoint_stats("a", at(2_000)).await.unwrap();
    assert_eq!(recent.since, at(2_000));
    assert_eq!(
        (recent.attempts, recent.succeeded, recent.failed),
        (2, 0, 2)
    );
    assert_eq!(recent.success_rate, Some(0.0));
    assert_eq!(recent.mean_duration_ms, Some(17.5));
    // After the last attempt: nothing in the window, the deliveries as before.
    let later = s.endpoint_stats("a", at(3_001)).await.unwrap();
    assert_eq!(
        later,
        EndpointStats {
            since: at(3_001),
            deliveries,
            ..none
        }
    );
    let b = s.endpoint_stats("b", at(0)).await.unwrap();
    assert_eq!((b.attempts, b.failed, b.deliveries.failed), (1, 1, 1));
    assert_eq!(b.last_failure.unwrap().status_code, Some(500));
}

/// A record names its delivery by id, endpoint and event: one whose id now names a delivery of
/// another endpoint or event (an id handed out again after the database lost the end of its
/// log) changes nothing and logs nothing; the delivery it names stays pending.
pub(crate) async fn a_record_applies_only_to_its_own_endpoint_and_event(s: &dyn WebhookStore) {
    s.create_endpoint(endpoint("a", false)).await.unwrap();
    s.enqueue(vec![delivery("a", 1)], Timestamp::from_micros(0))
        .await
        .unwrap();
    let ds = s.claim_due(claim(100, 1_000)).await.unwrap();
    assert_eq!(ds.len(), 1);
    for (endpoint_id, event_id) in [("b", "e1"), ("a", "e2")] {
        let mut stale = outcome(&ds[0], true, None);
        stale.endpoint_id = endpoint_id.into();
        stale.event_id = event_id.into();
        s.complete(vec![stale], HEALTH).await.unwrap();
        let kept = s.get_delivery(ds[0].id).await.unwrap().unwrap();
        assert_eq!(
            (kept.status, kept.attempts),
            (DeliveryStatus::Pending, 0),
            "a record for {endpoint_id}/{event_id} moved delivery {}",
            ds[0].id
        );
    }
    let logged = |endpoint_id: &str| AttemptQuery {
        endpoint_id: endpoint_id.into(),
        limit: 10,
        ..Default::default()
    };
    assert!(s.list_attempts(logged("a")).await.unwrap().items.is_empty());
    assert!(s.list_attempts(logged("b")).await.unwrap().items.is_empty());
    // Its own record applies.
    s.complete(vec![outcome(&ds[0], true, None)], HEALTH)
        .await
        .unwrap();
    let done = s.get_delivery(ds[0].id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (DeliveryStatus::Succeeded, 1));
    assert_eq!(s.list_attempts(logged("a")).await.unwrap().items.len(), 1);
}
