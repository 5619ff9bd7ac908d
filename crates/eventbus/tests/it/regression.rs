//! Regression tests: one per fixed bug, named after the bug, with a line saying what broke
//! (as ripgrep's `tests/regression.rs`).

use eventbus::NewEvent;
use serde_json::json;

use crate::subscriber::{Received, pattern, unstarted_bus, wait_for};

/// The dispatcher started where the log was when its task first ran: earlier commits were lost.
#[test]
fn events_committed_before_the_dispatcher_first_ran_never_reached_subscribers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // On a current-thread runtime the spawned dispatcher cannot run before this task yields.
        let bus = unstarted_bus(&dir, 1024).await;
        let got = Received::default();
        let _sub = bus.subscribe(pattern(">"), {
            let got = got.clone();
            move |e| {
                let got = got.clone();
                async move { got.push(e) }
            }
        });
        // Commit an event from another thread while this runtime is blocked: a scheduling delay
        // of the dispatcher, as happens on a loaded machine.
        let publisher = bus.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(
                publisher.publish(NewEvent::new("project.created", json!({})).with_id("early")),
            )
            .expect("publish");
        })
        .join()
        .unwrap();
        bus.publish(NewEvent::new("project.created", json!({})).with_id("late"))
            .await
            .unwrap();
        // Delivery is in seq order: once the later event is in, the earlier one must be too.
        wait_for("the later event", || got.has_id("late")).await;
        assert_eq!(
            got.ids(),
            ["early", "late"],
            "the early event was never delivered"
        );
        bus.shutdown().await;
    });
}
