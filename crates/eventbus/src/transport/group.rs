//! Consumer groups as a transport (issue 15): [`GroupService`] puts the long-poll, the limits
//! and the metrics over a [`GroupStore`], which keeps everything durable (settings, cursor,
//! leases, dead letters; see `store::group` for the contract and its guarantees).
//!
//! A fetch ([`GroupService::fetch`]) asks the store ([`GroupStore::fetch`]); when that hands out
//! nothing it waits, bounded by the caller's `wait` (at most [`MAX_WAIT`]), for the first of:
//! - the commit log's head moving ([`CommitLog::watch`](crate::core::log::CommitLog::watch)):
//!   a commit of this process, or of another one on PostgreSQL through LISTEN;
//! - [`GroupStore::next_ready_at`]: a lease running out or a nack's delay ending;
//! - an ack, nack, retry or settings change through this service (it frees room under
//!   `maxAckPending` or unblocks a project of an ordered group);
//! - [`POLL_INTERVAL`], the backstop for what nothing here signals: acks and nacks made on
//!   another process;
//! - the bus shutting down (the fetch then answers with nothing at once, so a server's graceful
//!   shutdown is not held by long-polls),
//!
//! and then asks the store again. It answers as soon as one message is handed out.
//!
//! Guarantees are the store's: at least once; one fetcher at a time per message (fetches of a
//! group are serialised in the store, across processes); per-project order in ordered groups.
//! This module neither buffers nor caches messages, so a process that dies loses nothing: its
//! leases run out and the messages are handed out again.
//!
//! Metrics: [`GroupService::record_metrics`] reads the state of at most [`MAX_LABELLED_GROUPS`]
//! groups (the first by name) into gauges labelled `group` (group names are chosen by users, so
//! the number of series is capped); the server calls it at scrape time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::time::Timestamp;
use crate::metric;
use crate::store::group::{
    AckOutcome, DeadLetter, Group, GroupMessage, GroupSettings, GroupState, GroupStore, Page,
};
use crate::store::{EventStore, StoreError};

/// Most messages one fetch hands out.
pub const MAX_FETCH: usize = 1000;
/// Longest a fetch waits for a message.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Longest a waiting fetch goes without asking the store again (acks and nacks of other
/// processes signal nothing here).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Most groups whose metrics carry their name as a label; the others have no series.
pub const MAX_LABELLED_GROUPS: usize = 100;

/// What every group's metrics and the readiness entry add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupTotals {
    /// Groups in the store.
    pub groups: usize,
    /// Groups whose state is in the sums (at most [`MAX_LABELLED_GROUPS`]).
    pub counted: usize,
    /// Matching events not delivered yet.
    pub pending: u64,
    /// Messages handed out and not acked.
    pub ack_pending: u64,
    /// Dead letters.
    pub dead_lettered: u64,
}

/// The consumer group transport; cheap to share (`Arc`). Built by the bus builder
/// (`EventBusBuilder::groups`), reached with `EventBus::groups`.
pub struct GroupService {
    store: Arc<dyn GroupStore>,
    events: Arc<dyn EventStore>,
    cancel: CancellationToken,
    /// Woken by acks, nacks, retries and settings changes of this process.
    changed: Notify,
    /// Groups that have metric series, so a deleted group's gauges go to zero.
    labelled: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for GroupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupService").finish_non_exhaustive()
    }
}

impl GroupService {
    /// A service over `store`, woken by the commit log of `events` (the same database); waiting
    /// fetches end when `cancel` fires.
    pub fn new(
        store: Arc<dyn GroupStore>,
        events: Arc<dyn EventStore>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(GroupService {
            store,
            events,
            cancel,
            changed: Notify::new(),
            labelled: Mutex::new(BTreeSet::new()),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn GroupStore> {
        &self.store
    }

    /// Creates or updates a group (see [`GroupStore::put_group`]); `true` when created.
    /// Settings must pass [`GroupSettings::validate`].
    pub async fn put(&self, settings: GroupSettings) -> Result<(Group, bool), StoreError> {
        let out = self.store.put_group(settings, Timestamp::now()).await?;
        self.changed.notify_waiters();
        Ok(out)
    }

    /// The group of that name.
    pub async fn get(&self, name: &str) -> Result<Option<Group>, StoreError> {
        self.store.get_group(name).await
    }

    /// The groups of `tenant` (every group for `None`), by name.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<Group>, StoreError> {
        self.store.list_groups(tenant).await
    }

    /// Deletes the group with its messages; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = self.store.delete_group(name).await?;
        self.changed.notify_waiters();
        Ok(deleted)
    }

    /// Where the group stands now.
    pub async fn state(&self, name: &str) -> Result<Option<GroupState>, StoreError> {
        self.store.group_state(name, Timestamp::now()).await
    }

    /// Hands out up to `max` messages (clamped to 1..=[`MAX_FETCH`]), waiting up to `wait`
    /// (clamped to [`MAX_WAIT`]) for one when none is ready (see the module docs). `Ok(None)`
    /// when the group does not exist (or was deleted while waiting); an empty list when `wait`
    /// passed, or the bus shuts down, with nothing to hand out.
    pub async fn fetch(
        &self,
        name: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Option<Vec<GroupMessage>>, StoreError> {
        let max = max.clamp(1, MAX_FETCH);
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        let mut heads = self.events.log().watch();
        loop {
            heads.borrow_and_update();
            // Registered before the store is asked, so an ack between the two is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Timestamp::now();
            match self.store.fetch(name, max, now).await? {
                None => return Ok(None),
                Some(messages) if !messages.is_empty() => {
                    for m in &messages {
                        delivered_span(name, m);
                    }
                    return Ok(Some(messages));
                }
                Some(_) => {}
            }
            let started = Instant::now();
            if started >= deadline || self.cancel.is_cancelled() {
                return Ok(Some(Vec::new()));
            }
            let mut until = deadline.min(started + POLL_INTERVAL);
            if let Some(at) = self.store.next_ready_at(name, now).await? {
                let micros = at.as_micros().saturating_sub(now.as_micros()).max(0);
                until = until.min(started + Duration::from_micros(micros as u64));
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(Some(Vec::new())),
                _ = heads.changed() => {}
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Acks deliveries: one outcome per ack id, in order; `None` when the group does not exist.
    pub async fn ack(
        &self,
        name: &str,
        ack_ids: &[String],
    ) -> Result<Option<Vec<AckOutcome>>, StoreError> {
        let out = self.store.ack(name, ack_ids, Timestamp::now()).await?;
        self.changed.notify_waiters();
        Ok(out)
    }

    /// Gives deliveries back, to be handed out again after `delay` (or dead-lettered at their
    /// last delivery); outcomes as for [`GroupService::ack`].
    pub async fn nack(
        &self,
        name: &str,
        ack_ids: &[String],
        delay: Duration,
    ) -> Result<Option<Vec<AckOutcome>>, StoreError> {
        let out = self
            .store
            .nack(name, ack_ids, delay, Timestamp::now())
            .await?;
        self.changed.notify_waiters();
        Ok(out)
    }

    /// Dead letters with `seq` above `after`, at most `limit`; `None` when the group does not
    /// exist.
    pub async fn dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<Page<DeadLetter>>, StoreError> {
        self.store.list_dead_letters(name, after, limit).await
    }

    /// Makes a dead letter a fresh message; `false` when the group has no such dead letter.
    pub async fn retry_dead_letter(&self, name: &str, ack_id: &str) -> Result<bool, StoreError> {
        let retried = self
            .store
            .retry_dead_letter(name, ack_id, Timestamp::now())
            .await?;
        self.changed.notify_waiters();
        Ok(retried)
    }

    /// Reads the state of the first [`MAX_LABELLED_GROUPS`] groups by name into the per-group
    /// gauges (a group deleted since the last call has its gauges set to zero) and returns the
    /// totals. A group that cannot be read is left out (and logged).
    pub async fn record_metrics(&self) -> Result<GroupTotals, StoreError> {
        let groups = self.store.list_groups(None).await?;
        let now = Timestamp::now();
        let mut totals = GroupTotals {
            groups: groups.len(),
            ..GroupTotals::default()
        };
        let mut seen = BTreeSet::new();
        for group in groups.iter().take(MAX_LABELLED_GROUPS) {
            let name = &group.settings.name;
            let state = match self.store.group_state(name, now).await {
                Ok(Some(state)) => state,
                Ok(None) => continue, // deleted meanwhile
                Err(e) => {
                    tracing::warn!(group = %name, error = %e, "consumer group metrics: state unreadable");
                    continue;
                }
            };
            totals.counted += 1;
            totals.pending += state.pending;
            totals.ack_pending += state.ack_pending;
            totals.dead_lettered += state.dead_lettered;
            metric::group_state(
                name,
                state.pending,
                state.ack_pending,
                state.redelivered,
                state.dead_lettered,
                state.oldest_unacked.unwrap_or_default(),
            );
            seen.insert(name.clone());
        }
        let mut labelled = self.labelled.lock().expect("not poisoned");
        for gone in labelled.difference(&seen) {
            metric::group_state(gone, 0, 0, 0, 0, Duration::ZERO);
        }
        *labelled = seen;
        Ok(totals)
    }
}

/// The span of one message handed out by consumer group `name`, in the trace of its event.
fn delivered_span(name: &str, m: &GroupMessage) {
    let span = tracing::info_span!(
        "consumer.deliver",
        consumer = %name,
        event.id = %m.event.id,
        event.seq = m.event.seq,
        delivery = m.delivery_count,
    );
    crate::telemetry::continue_trace(&span, m.event.traceparent());
    drop(span.entered());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Event, NewEvent};
    use crate::core::pattern::Pattern;
    use crate::store::sqlite::SqliteStore;
    use crate::store::sqlite::testing::store;

    async fn service() -> (Arc<SqliteStore>, Arc<GroupService>, tempfile::TempDir) {
        let (dir, store) = store();
        let store = Arc::new(store);
        let svc = GroupService::new(store.clone(), store.clone(), CancellationToken::new());
        (store, svc, dir)
    }

    fn event(ty: &str) -> Event {
        NewEvent::new(ty, serde_json::json!({}))
            .into_event(Timestamp::now())
            .unwrap()
    }

    #[tokio::test]
    async fn a_waiting_fetch_answers_when_an_event_commits() {
        let (store, svc, _dir) = service().await;
        svc.put(GroupSettings::new(
            "g",
            vec![Pattern::parse("a.*").unwrap()],
        ))
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let publisher = {
            let store = store.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                store.append(vec![event("a.b")]).await.unwrap();
            })
        };
        let got = svc
            .fetch("g", 10, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        publisher.await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_empty_fetch_waits_no_longer_than_asked_and_missing_groups_are_none() {
        let (_store, svc, _dir) = service().await;
        assert!(
            svc.fetch("nope", 10, Duration::ZERO)
                .await
                .unwrap()
                .is_none()
        );
        svc.put(GroupSettings::new("g", vec![Pattern::all()]))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let got = svc
            .fetch("g", 10, Duration::from_millis(400))
            .await
            .unwrap()
            .unwrap();
        assert!(got.is_empty());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_nack_delay_ending_wakes_a_waiting_fetch() {
        let (store, svc, _dir) = service().await;
        let mut settings = GroupSettings::new("g", vec![Pattern::all()]);
        settings.start_at = crate::store::group::StartAt::Earliest;
        svc.put(settings).await.unwrap();
        store.append(vec![event("a.b")]).await.unwrap();
        let first = svc.fetch("g", 1, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(first.len(), 1);
        let outcomes = svc
            .nack("g", &[first[0].ack_id.clone()], Duration::from_millis(600))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcomes, vec![AckOutcome::Acked]);
        let started = std::time::Instant::now();
        let again = svc
            .fetch("g", 1, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].delivery_count, 2);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn shutdown_ends_a_waiting_fetch() {
        let (_store, svc, _dir) = service().await;
        svc.put(GroupSettings::new("g", vec![Pattern::all()]))
            .await
            .unwrap();
        let cancel = svc.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel.cancel();
        });
        let started = std::time::Instant::now();
        let got = svc
            .fetch("g", 1, Duration::from_secs(20))
            .await
            .unwrap()
            .unwrap();
        assert!(got.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
