//! The group contract's tests on PostgreSQL, and its own: two stores on one schema.

use std::str::FromStr;
use std::sync::Arc;

use super::*;
use crate::store::EventStore;
use crate::store::group::contract;
use crate::store::postgres::testing::store;
use crate::store::postgres::{PgConnectOptions, PgOptions};

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some((_schema, s)) = store().await else {
                return;
            };
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
    let Some((_schema, s)) = store().await else {
        return;
    };
    let archive = async |seq: u64| {
        sqlx::query("DELETE FROM events WHERE seq = $1")
            .bind(seq as i64)
            .execute(s.pool().pool())
            .await
            .unwrap();
    };
    contract::messages_of_archived_events_become_dead_letters(&s, archive).await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetchers_ack_each_event_once() {
    let Some((_schema, s)) = store().await else {
        return;
    };
    let s = Arc::new(s);
    contract::concurrent_fetchers_ack_each_event_once(vec![s.clone()]).await;
    s.close().await;
}

/// Two stores on one schema (two processes) fetching from one group: no message is handed
/// to both, each is acked once, ordered projects keep one unacked message at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_group_without_double_hand_out() {
    let Some((_schema, a)) = store().await else {
        return;
    };
    let url = std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let connect = PgConnectOptions::from_str(&url)
        .expect("a PostgreSQL URL")
        .options([("search_path", a.schema())]);
    let options = PgOptions {
        pool_size: 4,
        ..PgOptions::default()
    };
    let b = PgStore::open_with(connect, options).await.expect("open");
    let (a, b) = (Arc::new(a), Arc::new(b));
    contract::concurrent_fetchers_ack_each_event_once(vec![a.clone(), b.clone()]).await;
    b.close().await;
    a.close().await;
}
