//! The group contract's tests on SQLite.

use std::sync::Arc;

use crate::store::EventStore;
use crate::store::group::contract;
use crate::store::sqlite::testing::store;

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_dir, s) = store();
            contract::$name(&s).await;
            s.close().await;
        }
    )*};
}

contract_tests!(
    creation_update_and_start_at,
    top_up_respects_filters_and_scope,
    fetches_share_the_work,
    unacked_messages_are_redelivered_after_the_ack_wait,
    nacked_messages_come_back_after_their_delay,
    dead_letters_after_max_deliver_and_retry,
    ordered_groups_keep_one_message_per_project,
    max_ack_pending_bounds_leased_messages,
    ack_outcomes_name_what_happened,
    delete_removes_the_group_and_its_messages,
);

#[tokio::test]
async fn messages_of_archived_events_become_dead_letters() {
    let (_dir, s) = store();
    let archive = async |seq: u64| {
        s.write(move |c| c.execute("DELETE FROM events WHERE seq = ?1", [seq as i64]))
            .await
            .unwrap();
    };
    contract::messages_of_archived_events_become_dead_letters(&s, archive).await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetchers_ack_each_event_once() {
    let (_dir, s) = store();
    let s = Arc::new(s);
    contract::concurrent_fetchers_ack_each_event_once(vec![s.clone()]).await;
    s.close().await;
}
