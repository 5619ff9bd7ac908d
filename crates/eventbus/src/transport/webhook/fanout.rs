//! Fan-out: from the event log to the durable delivery queue.
//!
//! One task tails the log from the cursor stored in the [`WebhookStore`]. For each chunk of
//! events it matches the endpoints snapshot and calls [`WebhookStore::fan_out`], which inserts
//! the delivery rows and advances the cursor in one transaction, and refuses when the cursor or
//! the endpoints moved since (another process, or an endpoint change): the task then goes on
//! from the stored cursor, with the endpoints read again if their version moved. So every
//! committed event is queued for every endpoint that matched it when it committed — exactly
//! once, whatever crashes.
//!
//! A chunk that queues nothing only advances the cursor in memory; it is stored with the next
//! step that writes, or within [`PERSIST_EVERY`], by a step that carries the endpoints version
//! it was matched against — so a bus without endpoints does not pay a transaction per commit.
//! When the endpoints changed meanwhile (the step is refused, or a local change is seen), the
//! cursor goes back to the stored one and the range is matched again with the new endpoints. A
//! crash in between rescans those events likewise.
//!
//! [`WebhookStore`]: crate::store::webhook::WebhookStore
//! [`WebhookStore::fan_out`]: crate::store::webhook::WebhookStore::fan_out

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::cache::Snapshot;
use super::shared::Shared;
use crate::core::filter::EventFilter;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::webhook::{FanOut, FanOutResult, NewDelivery};
use crate::transport::{READ_CHUNK, RETRY_DELAY, sleep_or_cancel};

/// Longest a cursor advanced in memory only waits before it is stored.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Runs until `cancel` fires.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut heads = shared.events.log().watch();
    let mut fan = loop {
        match Fanout::load(&shared).await {
            Ok(f) => break f,
            Err(e) => {
                tracing::warn!(error = %e, "webhook fan-out cannot read its cursor; retrying");
                if sleep_or_cancel(&cancel, RETRY_DELAY).await {
                    return;
                }
            }
        }
    };
    loop {
        heads.borrow_and_update();
        loop {
            match fan.step(&shared).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook fan-out failed; retrying");
                    if sleep_or_cancel(&cancel, RETRY_DELAY).await {
                        return;
                    }
                }
            }
            if cancel.is_cancelled() {
                return;
            }
        }
        let persist = async {
            if fan.stored == fan.cursor {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(PERSIST_EVERY.saturating_sub(fan.since_stored.elapsed())).await;
        };
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = fan.persist(&shared).await;
                return;
            }
            changed = heads.changed() => if changed.is_err() { return },
            _ = persist => {
                if let Err(e) = fan.persist(&shared).await {
                    tracing::warn!(error = %e, "webhook fan-out cannot store its cursor");
                }
            }
        }
    }
}

struct Fanout {
    /// Every event up to here is queued (or matched nothing).
    cursor: u64,
    /// The cursor as stored.
    stored: u64,
    since_stored: Instant,
    snapshot: Arc<Snapshot>,
    /// The endpoint cache's generation the snapshot reflects.
    generation: u64,
}

impl Fanout {
    async fn load(shared: &Shared) -> Result<Self, StoreError> {
        let cursor = shared.store.fanout_cursor().await?;
        let generation = shared.endpoints.generation();
        let snapshot = shared.endpoints.reload(&*shared.store).await?;
        Ok(Fanout {
            cursor,
            stored: cursor,
            since_stored: Instant::now(),
            snapshot,
            generation,
        })
    }

    /// Stores a cursor advanced in memory only. The step carries the endpoints version the
    /// skipped range was matched against: if the endpoints changed since, the range is matched
    /// again instead.
    async fn persist(&mut self, shared: &Shared) -> Result<(), StoreError> {
        if self.stored == self.cursor {
            return Ok(());
        }
        let step = FanOut {
            from: self.stored,
            to: self.cursor,
            endpoints_version: self.snapshot.version,
            deliveries: Vec::new(),
            now: Timestamp::now(),
        };
        match shared.store.fan_out(step).await? {
            FanOutResult::Applied => {
                self.stored = self.cursor;
                self.since_stored = Instant::now();
            }
            FanOutResult::Stale {
                cursor,
                endpoints_version,
            } => self.restart_from(shared, cursor, endpoints_version).await?,
        }
        Ok(())
    }

    /// After a refused step: continue from the stored `cursor`, matching again whatever was only
    /// advanced in memory, with the endpoints re-read when their stored `version` moved. When
    /// only the cursor moved (another process queued the range) the snapshot stands: every
    /// endpoint change bumps the version, and one made here is seen by the next `step`.
    async fn restart_from(
        &mut self,
        shared: &Shared,
        cursor: u64,
        version: u64,
    ) -> Result<(), StoreError> {
        if version != self.snapshot.version {
            self.generation = shared.endpoints.generation();
            self.snapshot = shared.endpoints.reload(&*shared.store).await?;
        }
        self.stored = cursor;
        self.cursor = cursor;
        self.since_stored = Instant::now();
        Ok(())
    }

    /// Handles one chunk; `false` when the log is exhausted.
    async fn step(&mut self, shared: &Shared) -> Result<bool, StoreError> {
        let generation = shared.endpoints.generation();
        if generation != self.generation {
            self.generation = generation;
            let version = self.snapshot.version;
            self.snapshot = shared.endpoints.reload(&*shared.store).await?;
            if self.snapshot.version != version {
                // What was skipped in memory was matched against the old endpoints.
                self.cursor = self.stored;
            }
        }
        let read = shared
            .events
            .tail(self.cursor, &EventFilter::default(), READ_CHUNK)
            .await?;
        if read.next <= self.cursor {
            return Ok(false);
        }
        let mut deliveries = Vec::new();
        for event in &read.events {
            let before = deliveries.len();
            for ep in &self.snapshot.list {
                if !ep.disabled && event.seq > ep.since_seq && ep.matches(event) {
                    deliveries.push(NewDelivery::of(&ep.id, event));
                }
            }
            if deliveries.len() > before {
                shared
                    .bodies
                    .insert(event.seq, Bytes::from(event.to_json()));
            }
        }
        if deliveries.is_empty() {
            // Nothing to queue: advance in memory; the next store of the cursor checks that the
            // endpoints are still the ones matched here.
            self.cursor = read.next;
            if self.since_stored.elapsed() >= PERSIST_EVERY {
                self.persist(shared).await?;
            }
            return Ok(!read.at_end);
        }
        let queued = deliveries.len() as u64;
        let step = FanOut {
            from: self.stored,
            to: read.next,
            endpoints_version: self.snapshot.version,
            deliveries,
            now: Timestamp::now(),
        };
        match shared.store.fan_out(step).await? {
            FanOutResult::Applied => {
                self.cursor = read.next;
                self.stored = read.next;
                self.since_stored = Instant::now();
                shared.stats.queued.fetch_add(queued, Ordering::Relaxed);
                shared.wake.notify_one();
            }
            // Another process moved the cursor, or the endpoints changed: go on from there.
            FanOutResult::Stale {
                cursor,
                endpoints_version,
            } => self.restart_from(shared, cursor, endpoints_version).await?,
        }
        Ok(true)
    }
}
