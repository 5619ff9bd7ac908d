//! Unit tests of the backend-neutral parts of consumer groups.

use super::*;

#[test]
fn names_follow_the_grammar() {
    for ok in [
        "billing",
        "a",
        "0x",
        "plugin-handler",
        "a.b_c",
        &"a".repeat(64),
    ] {
        assert!(valid_name(ok), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "_a",
        ".a",
        "A",
        "a b",
        "a/b",
        "é",
        &"a".repeat(65),
    ] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn settings_are_validated() {
    let p = Pattern::parse("project.*").unwrap();
    let ok = GroupSettings::new("billing", vec![p.clone()]);
    assert_eq!(ok.validate(), Ok(()));
    let mut s = ok.clone();
    s.types.clear();
    assert_eq!(s.validate(), Err(GroupSettingsError::NoTypes));
    let mut s = ok.clone();
    s.max_deliver = 0;
    assert_eq!(s.validate(), Err(GroupSettingsError::MaxDeliver));
    let mut s = ok.clone();
    s.max_ack_pending = 0;
    assert_eq!(s.validate(), Err(GroupSettingsError::MaxAckPending));
    let mut s = ok.clone();
    s.ack_wait = Duration::from_micros(10);
    assert_eq!(s.validate(), Err(GroupSettingsError::AckWait));
    let mut s = ok;
    s.name = "Billing".into();
    assert!(matches!(s.validate(), Err(GroupSettingsError::Name(_))));
}

#[test]
fn start_at_resolves_into_the_cursor() {
    assert_eq!(StartAt::New.cursor(42), 42);
    assert_eq!(StartAt::Earliest.cursor(42), 0);
    assert_eq!(StartAt::Seq(10).cursor(42), 9);
    assert_eq!(StartAt::Seq(0).cursor(42), 0);
    for s in [StartAt::New, StartAt::Earliest, StartAt::Seq(7)] {
        assert_eq!(StartAt::parse(&s.to_string()), Some(s));
    }
    assert_eq!(StartAt::parse("later"), None);
}

#[test]
fn ack_ids_round_trip_and_reject_garbage() {
    let id = AckId {
        group_id: 3,
        seq: 1234,
        delivery_count: 2,
        token: u64::MAX - 5,
    };
    assert_eq!(AckId::parse(&id.to_string()), Some(id));
    for bad in ["", "1.2.3", "1.2.3.4.5", "x.2.3.4", "1.2.100000000.4"] {
        assert_eq!(AckId::parse(bad), None, "{bad}");
    }
}

fn row(seq: u64, project: Option<&str>, state: i64, visible_at: i64) -> Outstanding {
    Outstanding {
        seq,
        project_id: project.map(str::to_owned),
        state,
        visible_at,
    }
}

#[test]
fn ordered_plans_take_each_free_projects_oldest_message() {
    let rows = [
        row(1, Some("a"), LEASED, 100), // a is busy until 100
        row(2, Some("a"), READY, 0),
        row(3, Some("b"), READY, 50), // b's head is delayed until 50
        row(4, Some("b"), READY, 0),
        row(5, None, READY, 0),
        row(6, None, READY, 0),
        row(7, Some("c"), LEASED, 10), // c's lease ran out at 10: redelivered
    ];
    let plan = plan_ordered(&rows, 20, 10);
    assert_eq!(plan.candidates, [5, 7]);
    assert_eq!(plan.leased, 1);
    assert_eq!(plan.blocked.len(), 4);
    assert_eq!(plan_ordered(&rows, 20, 1).candidates, [5]);
    assert_eq!(plan_ordered(&rows, 200, 10).candidates, [1, 3, 5, 7]);
    assert_eq!(
        ordered_next_ready(&rows, 20),
        Some(50),
        "a's lease ends at 100"
    );
    assert_eq!(ordered_next_ready(&rows, 50), Some(100));
    assert_eq!(ordered_next_ready(&rows, 100), None);
    assert_eq!(ordered_next_ready(&[], 0), None);
}
