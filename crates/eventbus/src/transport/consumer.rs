//! Durable named consumers: in-process handlers that keep their position in the store.
//!
//! A consumer (`bus.consumer("billing-sync", pattern, handler)`) reads the log from its saved
//! cursor, in `seq` order, and hands each matching event to its handler. The cursor is saved
//! after handled events (at most every [`ConsumerOptions::save_every`], and when the consumer
//! stops), so after a crash or restart the consumer resumes where it was: every event is handled
//! **at least once, in order** (those handled since the last save are handled again; the event
//! `id` is the de-duplication key). A handler that fails or panics is retried on the same event
//! with exponential backoff; the consumer never skips an event.
//!
//! **One instance at a time.** A consumer runs only while its instance holds the consumer's
//! lease in the store ([`crate::store::ConsumerStore::lease`]), renewed every third of
//! [`ConsumerOptions::lease_ttl`]. So with several processes on one PostgreSQL database (or two
//! instances of one name in a process), one instance handles the events and the others stand
//! by; when the holder stops it saves its cursor and releases the lease, and another instance
//! takes over within [`standby_poll`]; when the holder dies, within `lease_ttl` and a poll. The
//! new holder reads the saved cursor, so at most the events handled since the last save are
//! handled again (still at least once, in order). An instance that cannot renew (the database
//! is away) stops handling before its lease can have expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::store::EventStore;

/// A consumer's handler: `Err` (or a panic) means "retry this event".
pub type ConsumerHandler =
    Arc<dyn Fn(Arc<Event>) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Where a consumer without a saved cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// Events committed from its first start on.
    #[default]
    Now,
    /// Every stored event.
    Beginning,
}

/// Tunables of a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Where a new consumer starts.
    pub start: StartFrom,
    /// Longest time between cursor saves while events flow.
    pub save_every: Duration,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long a lease lasts without renewal: after a holder dies, another instance takes over
    /// once this has passed.
    pub lease_ttl: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            start: StartFrom::Now,
            save_every: Duration::from_millis(200),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(15),
        }
    }
}

/// Counters of a consumer.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Events handled successfully.
    pub handled: AtomicU64,
    /// Failed or panicked handler calls (each retried).
    pub failures: AtomicU64,
    /// The last handled `seq`.
    pub cursor: AtomicU64,
    /// Whether this instance holds the consumer's lease (runs it) or stands by.
    pub leased: AtomicBool,
}

/// A running consumer; [`Consumer::stop`] (or dropping it) ends it after saving its cursor.
#[derive(Debug)]
pub struct Consumer {
    name: String,
    stats: Arc<ConsumerStats>,
    cancel: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Consumer {
    /// Starts consumer `name` on `tasks`; its cursor is kept in `store`.
    pub fn start(
        name: String,
        filter: EventFilter,
        handler: ConsumerHandler,
        store: Arc<dyn EventStore>,
        options: ConsumerOptions,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Consumer {
        let stats = Arc::new(ConsumerStats::default());
        let run = Runner {
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple()),
            head_at_start: store.log().head(),
            metrics: crate::metric::HandlerMetrics::new(format!("consumer:{name}")),
            name: name.clone(),
            filter,
            handler,
            store,
            options,
            stats: stats.clone(),
        };
        let done = tasks.spawn(run.run(cancel.clone()));
        Consumer {
            name,
            stats,
            cancel,
            done: Some(done),
        }
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &ConsumerStats {
        &self.stats
    }

    /// Stops the consumer and waits until its cursor is saved.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How often an instance without the lease asks for it.
pub fn standby_poll(lease_ttl: Duration) -> Duration {
    (lease_ttl / 5).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

struct Runner {
    /// This instance, in the lease table.
    holder: String,
    metrics: crate::metric::HandlerMetrics,
    name: String,
    filter: EventFilter,
    handler: ConsumerHandler,
    store: Arc<dyn EventStore>,
    options: ConsumerOptions,
    stats: Arc<ConsumerStats>,
    /// The log's head when the consumer was started: where a new consumer with
    /// [`StartFrom::Now`] begins, so an event published after `start` returns is never skipped
    /// (reading the head later, when the task first runs, could pass over it).
    head_at_start: u64,
}

impl Runner {
    async fn run(self, cancel: CancellationToken) {
        while self.acquire(&cancel).await {
            self.stats.leased.store(true, Ordering::Relaxed);
            let lost = cancel.child_token();
            let keeper = tokio::spawn(keep_lease(
                self.store.clone(),
                self.name.clone(),
                self.holder.clone(),
                self.options.lease_ttl,
                lost.clone(),
            ));
            self.consume(&lost).await;
            lost.cancel();
            let _ = keeper.await;
            self.stats.leased.store(false, Ordering::Relaxed);
            if cancel.is_cancelled() {
                if let Err(e) = self.store.release(&self.name, &self.holder).await {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot release the consumer's lease; it expires by itself");
                }
                return;
            }
            tracing::warn!(consumer = %self.name, "the consumer lost its lease; standing by");
        }
    }

    /// Waits until this instance holds the lease; `false` when cancelled first.
    async fn acquire(&self, cancel: &CancellationToken) -> bool {
        let mut said = false;
        loop {
            match self
                .store
                .lease(&self.name, &self.holder, self.options.lease_ttl)
                .await
            {
                Ok(true) => {
                    if said {
                        tracing::info!(consumer = %self.name, "the consumer took over the lease");
                    }
                    return true;
                }
                Ok(false) if !said => {
                    tracing::info!(consumer = %self.name, "another instance runs the consumer; standing by");
                    said = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot take the consumer's lease; retrying")
                }
            }
            if super::sleep_or_cancel(cancel, standby_poll(self.options.lease_ttl)).await {
                return false;
            }
        }
    }

    /// Runs the consumer from its saved cursor until `cancel` fires (a stop or a lost lease),
    /// then saves its cursor.
    async fn consume(&self, cancel: &CancellationToken) {
        let Some(mut cursor) = self.initial_cursor(cancel).await else {
            return;
        };
        self.stats.cursor.store(cursor, Ordering::Relaxed);
        let mut saved = cursor;
        let mut last_save = Instant::now();
        let mut heads = self.store.log().watch();
        'outer: loop {
            heads.borrow_and_update();
            loop {
                let read = match self
                    .store
                    .tail(cursor, &self.filter, super::READ_CHUNK)
                    .await
                {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::warn!(consumer = %self.name, error = %e, "consumer cannot read the store; retrying");
                        if super::sleep_or_cancel(cancel, super::RETRY_DELAY).await {
                            break 'outer;
                        }
                        continue;
                    }
                };
                for event in read.events {
                    if !self.handle(&event, cancel).await {
                        break 'outer;
                    }
                    cursor = event.seq;
                    self.stats.cursor.store(cursor, Ordering::Relaxed);
                    if last_save.elapsed() >= self.options.save_every {
                        saved = self.save(cursor, saved).await;
                        last_save = Instant::now();
                    }
                }
                cursor = cursor.max(read.next);
                if read.at_end {
                    break;
                }
            }
            saved = self.save(cursor, saved).await;
            last_save = Instant::now();
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = heads.changed() => if changed.is_err() { break },
            }
        }
        self.save(self.stats.cursor.load(Ordering::Relaxed).max(saved), saved)
            .await;
    }

    async fn initial_cursor(&self, cancel: &CancellationToken) -> Option<u64> {
        loop {
            match self.store.load_cursor(&self.name).await {
                Ok(Some(c)) => return Some(c),
                Ok(None) => {
                    let start = match self.options.start {
                        StartFrom::Now => self.head_at_start,
                        StartFrom::Beginning => 0,
                    };
                    if self.store.save_cursor(&self.name, start).await.is_ok() {
                        return Some(start);
                    }
                }
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot load the consumer's cursor")
                }
            }
            if super::sleep_or_cancel(cancel, super::RETRY_DELAY).await {
                return None;
            }
        }
    }

    /// Saves `cursor` if it moved; returns the saved position.
    async fn save(&self, cursor: u64, saved: u64) -> u64 {
        if cursor == saved {
            return saved;
        }
        match self.store.save_cursor(&self.name, cursor).await {
            Ok(()) => cursor,
            Err(e) => {
                tracing::warn!(consumer = %self.name, error = %e, "cannot save the consumer's cursor");
                saved
            }
        }
    }

    /// Calls the handler until it succeeds; `false` when cancelled first.
    async fn handle(&self, event: &Arc<Event>, cancel: &CancellationToken) -> bool {
        let mut backoff = self.options.min_backoff;
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            let started = Instant::now();
            let call = std::panic::AssertUnwindSafe((self.handler)(event.clone()))
                .catch_unwind()
                .await;
            self.metrics
                .record(started.elapsed(), matches!(call, Ok(Ok(()))));
            let error = match call {
                Ok(Ok(())) => {
                    self.stats.handled.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Ok(Err(e)) => e,
                Err(_) => "the handler panicked".to_owned(),
            };
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                consumer = %self.name, event.id = %event.id, event.seq = event.seq,
                traceparent = event.traceparent(), error = %error,
                retry_in_ms = backoff.as_millis() as u64, "consumer handler failed; retrying"
            );
            if super::sleep_or_cancel(cancel, backoff).await {
                return false;
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
    }
}

/// Renews `holder`'s lease of `name` every third of `ttl` until `lost` fires; fires `lost` when
/// the lease is taken by another instance, or when renewing has failed for so long that the
/// lease may have expired (a margin of one renewal period is kept).
async fn keep_lease(
    store: Arc<dyn EventStore>,
    name: String,
    holder: String,
    ttl: Duration,
    lost: CancellationToken,
) {
    let every = ttl / 3;
    let mut renewed = Instant::now();
    while !super::sleep_or_cancel(&lost, every).await {
        // A renewal that hangs counts as failed: the lease may run out meanwhile.
        let renewal = tokio::time::timeout(every, store.lease(&name, &holder, ttl))
            .await
            .unwrap_or_else(|_| {
                Err(crate::store::StoreError::Unavailable(
                    "renewing timed out".into(),
                ))
            });
        match renewal {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::warn!(consumer = %name, "another instance took the consumer's lease");
                lost.cancel();
            }
            Err(e) if renewed.elapsed() + every >= ttl => {
                tracing::warn!(consumer = %name, error = %e, "cannot renew the consumer's lease before it expires; stopping");
                lost.cancel();
            }
            Err(e) => {
                tracing::warn!(consumer = %name, error = %e, "cannot renew the consumer's lease; retrying")
            }
        }
    }
}
