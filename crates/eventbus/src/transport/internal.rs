//! The internal transport: in-process subscribers, fed in `seq` order from the commit log.
//!
//! One dispatcher task tails the log and hands each event to the subscribers whose patterns
//! match it (a [`PatternIndex`] lookup, not a scan). Every subscriber has its own bounded queue
//! and task, so a slow or panicking handler holds up nothing but itself:
//! - the dispatcher never waits: when a queue is full it marks the subscriber *lagged* and stops
//!   filling its queue;
//! - the subscriber drains what it has, then reads what it missed from the store by its cursor,
//!   and goes back to its queue, skipping what it already saw.
//!
//! So a live subscriber receives every event committed after it subscribed, exactly once and in
//! `seq` order, while the store keeps them; a panicking handler is counted, logged and skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::core::pattern::Pattern;
use crate::core::router::PatternIndex;
use crate::store::EventStore;

/// A subscriber's handler.
pub type Handler = Arc<dyn Fn(Arc<Event>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Counters of one subscriber.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Events handed to the handler.
    pub delivered: AtomicU64,
    /// Handler calls that panicked.
    pub panics: AtomicU64,
    /// Times the queue overflowed and the subscriber caught up from the store.
    pub lags: AtomicU64,
}

struct Shared {
    queue: mpsc::Sender<Arc<Event>>,
    /// The log's head when the subscriber registered; the dispatcher may still be behind it,
    /// and what it hands out up to here is not the subscriber's, so it is never queued.
    floor: u64,
    lagged: AtomicBool,
    wake: Notify,
    stats: Arc<SubscriberStats>,
}

#[derive(Default)]
struct Registry {
    index: PatternIndex<u64>,
    subscribers: HashMap<u64, Arc<Shared>>,
}

/// The in-process subscribers of one bus.
pub struct Subscribers {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    store: Arc<dyn EventStore>,
    queue_capacity: usize,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribers")
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl Subscribers {
    /// Subscribers reading `store`, each with a queue of `queue_capacity` events. Their tasks run
    /// on `tasks` and stop with `cancel`.
    pub fn new(
        store: Arc<dyn EventStore>,
        queue_capacity: usize,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Subscribers {
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            store,
            queue_capacity: queue_capacity.max(1),
            tasks,
            cancel,
        })
    }

    /// Starts the dispatcher task, from the head as it is now: events committed before the task
    /// first runs are dispatched too.
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        let start = self.store.log().head();
        self.tasks
            .spawn(async move { this.dispatch_loop(start).await });
    }

    /// Number of live subscribers.
    pub fn len(&self) -> usize {
        self.registry
            .lock()
            .expect("registry lock")
            .subscribers
            .len()
    }

    /// Events waiting in subscriber queues.
    pub fn buffered(&self) -> usize {
        let reg = self.registry.lock().expect("registry lock");
        reg.subscribers
            .values()
            .map(|s| s.queue.max_capacity() - s.queue.capacity())
            .sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers `handler` for events whose type matches `pattern`, committed from now on.
    pub fn subscribe(self: &Arc<Self>, pattern: Pattern, handler: Handler) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, rx) = mpsc::channel(self.queue_capacity);
        let stats = Arc::new(SubscriberStats::default());
        // The cursor is taken under the registry lock, which the dispatcher holds while it
        // hands out an event: every event after it reaches the queue or the catch-up.
        let shared = {
            let mut reg = self.registry.lock().expect("registry lock");
            let shared = Arc::new(Shared {
                queue,
                floor: self.store.log().head(),
                lagged: AtomicBool::new(false),
                wake: Notify::new(),
                stats: stats.clone(),
            });
            reg.index.insert(&pattern, id);
            reg.subscribers.insert(id, shared.clone());
            shared
        };
        let cursor = shared.floor;
        let cancel = self.cancel.child_token();
        let worker = Worker {
            metrics: crate::metric::HandlerMetrics::new(format!("subscriber:{pattern}")),
            shared,
            queue: rx,
            store: self.store.clone(),
            filter: EventFilter::types(vec![pattern.clone()]),
            handler,
            cursor,
            pattern: pattern.clone(),
        };
        self.tasks.spawn(worker.run(cancel.clone()));
        Subscription {
            id,
            pattern,
            stats,
            cancel,
            owner: Arc::downgrade(self),
        }
    }

    fn remove(&self, id: u64, pattern: &Pattern) {
        let mut reg = self.registry.lock().expect("registry lock");
        reg.index.remove(pattern, id);
        reg.subscribers.remove(&id);
    }

    /// Hands `event` to every matching subscriber without waiting.
    fn dispatch(&self, event: &Arc<Event>) {
        let mut reg = self.registry.lock().expect("registry lock");
        let keys = reg.index.matches(&event.event_type);
        for id in keys.iter() {
            let Some(sub) = reg.subscribers.get(id) else {
                continue;
            };
            if event.seq <= sub.floor || sub.lagged.load(Ordering::Acquire) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = sub.queue.try_send(event.clone()) {
                sub.lagged.store(true, Ordering::Release);
                sub.stats.lags.fetch_add(1, Ordering::Relaxed);
                sub.wake.notify_one();
            }
        }
    }

    async fn dispatch_loop(self: Arc<Self>, start: u64) {
        let store = self.store.clone();
        super::follow(&*store, start, &self.cancel, |event| self.dispatch(event)).await;
    }
}

struct Worker {
    metrics: crate::metric::HandlerMetrics,
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Arc<Event>>,
    store: Arc<dyn EventStore>,
    filter: EventFilter,
    handler: Handler,
    cursor: u64,
    pattern: Pattern,
}

impl Worker {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            match self.queue.try_recv() {
                Ok(event) => self.deliver(event).await,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if self.shared.lagged.swap(false, Ordering::AcqRel) {
                        if self.catch_up(&cancel).await {
                            return;
                        }
                        continue;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = self.shared.wake.notified() => {}
                        event = self.queue.recv() => match event {
                            Some(event) => self.deliver(event).await,
                            None => return,
                        },
                    }
                }
            }
            if cancel.is_cancelled() {
                return;
            }
        }
    }

    /// Reads from the store what the queue dropped; `true` when cancelled.
    async fn catch_up(&mut self, cancel: &CancellationToken) -> bool {
        loop {
            match self
                .store
                .tail(self.cursor, &self.filter, super::READ_CHUNK)
                .await
            {
                Ok(read) => {
                    for event in read.events {
                        self.deliver(event).await;
                        if cancel.is_cancelled() {
                            return true;
                        }
                    }
                    self.cursor = self.cursor.max(read.next);
                    if read.at_end {
                        return false;
                    }
                }
                Err(e) => {
                    tracing::warn!(pattern = %self.pattern, error = %e, "subscriber cannot catch up; retrying");
                    if super::sleep_or_cancel(cancel, super::RETRY_DELAY).await {
                        return true;
                    }
                }
            }
        }
    }

    async fn deliver(&mut self, event: Arc<Event>) {
        if event.seq <= self.cursor {
            return;
        }
        self.cursor = event.seq;
        let call = std::panic::AssertUnwindSafe((self.handler)(event.clone()));
        let started = std::time::Instant::now();
        let outcome = call.catch_unwind().await;
        self.metrics.record(started.elapsed(), outcome.is_ok());
        match outcome {
            Ok(()) => {
                self.shared.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(panic) => {
                self.shared.stats.panics.fetch_add(1, Ordering::Relaxed);
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(
                    pattern = %self.pattern,
                    event.id = %event.id,
                    event.seq = event.seq,
                    traceparent = event.traceparent(),
                    panic = %message,
                    "subscriber handler panicked; the event is skipped for this subscriber"
                );
            }
        }
    }
}

/// A live subscription; dropping it (or calling [`Subscription::unsubscribe`]) ends it.
pub struct Subscription {
    id: u64,
    pattern: Pattern,
    stats: Arc<SubscriberStats>,
    cancel: CancellationToken,
    owner: Weak<Subscribers>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl Subscription {
    /// The subscription's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pattern it selects.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Its counters.
    pub fn stats(&self) -> &SubscriberStats {
        &self.stats
    }

    /// Ends the subscription.
    pub fn unsubscribe(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(owner) = self.owner.upgrade() {
            owner.remove(self.id, &self.pattern);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::NewEvent;
    use crate::core::time::Timestamp;

    fn event(n: u64) -> Event {
        NewEvent::new("a.b", serde_json::json!({ "n": n }))
            .into_event(Timestamp::now())
            .unwrap()
    }

    /// Events committed before a subscriber registered, which the dispatcher hands out only
    /// after it, are not queued for it: they neither fill its queue (a lag and a read of the
    /// store for nothing) nor reach its handler.
    #[tokio::test]
    async fn what_the_dispatcher_is_behind_on_at_subscribe_is_not_queued() {
        let (_dir, store) = crate::store::sqlite::testing::store();
        let store: Arc<dyn EventStore> = Arc::new(store);
        // Not started: this test plays the dispatcher, behind on what was committed.
        let subs = Subscribers::new(
            store.clone(),
            1,
            TaskTracker::new(),
            CancellationToken::new(),
        );
        let before = store.append((0..3).map(event).collect()).await.unwrap();
        let (seen, mut rx) = mpsc::unbounded_channel();
        let handler: Handler = Arc::new(move |e: Arc<Event>| {
            let _ = seen.send(e.seq);
            Box::pin(async {})
        });
        let sub = subs.subscribe(Pattern::parse("a.*").unwrap(), handler);
        for appended in &before {
            subs.dispatch(&appended.event);
        }
        let after = store.append(vec![event(3)]).await.unwrap();
        subs.dispatch(&after[0].event);
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("the event after the subscribe is handled");
        assert_eq!(first, Some(after[0].event.seq));
        assert_eq!(sub.stats().lags.load(Ordering::Relaxed), 0, "no lag");
    }
}
