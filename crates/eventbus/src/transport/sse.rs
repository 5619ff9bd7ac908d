//! The SSE fan-out hub: every `GET /v1/stream` connection is a [`Connection`] here.
//!
//! One dispatcher task follows the log. For each event it builds the SSE frame **once**
//! (`id: <seq>`, `event: <type>`, `data: <event JSON>`) and hands the same bytes to every
//! matching connection. Matching is indexed: connections are grouped by their `projectId` filter
//! (or none), and each group has a [`PatternIndex`] over type patterns, so an event only visits
//! the connections of its project and of no project whose patterns match its type.
//!
//! Each connection has a bounded queue. A connection first **replays** the stored events after
//! its resume cursor, then goes **live** on its queue, skipping what it already sent: it is
//! registered before the replay starts, so nothing committed meanwhile is missed, and the `seq`
//! check means nothing is sent twice. If its queue overflows during the replay the dispatcher
//! stops filling it and the replay simply reads further from the store. If it overflows while
//! live (the client does not keep up), the connection sends a final `lagged` event naming the
//! last `seq` it delivered and closes: the client resumes from the store with `Last-Event-ID`.
//! Memory per connection is bounded by its queue, whatever the client does; an idle
//! connection's queue holds no memory at all (it is allocated on its first frame).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::core::router::PatternIndex;
use crate::store::EventStore;

/// Settings of the hub.
#[derive(Debug, Clone)]
pub struct SseOptions {
    /// Interval between heartbeat comments.
    pub heartbeat: Duration,
    /// Frames a connection may have queued before it counts as lagging.
    pub queue: usize,
    /// Most open connections.
    pub max_connections: usize,
    /// The `retry:` hint sent at connect, in milliseconds.
    pub retry_ms: u64,
}

impl Default for SseOptions {
    fn default() -> Self {
        SseOptions {
            heartbeat: Duration::from_secs(30),
            queue: 256,
            max_connections: 10_000,
            retry_ms: 2_000,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The hub holds `max_connections` already.
    #[error("too many open streams ({0}); retry later")]
    TooManyConnections(usize),
}

/// Counters of the hub.
#[derive(Debug, Default)]
pub struct SseStats {
    /// Open connections.
    pub connections: AtomicUsize,
    /// Frames handed to connection queues.
    pub frames: AtomicU64,
    /// Connections closed because they lagged.
    pub lagged: AtomicU64,
}

/// A connection's place in the hub: its filter and its queue, shared by the dispatcher (which
/// pushes) and the connection (which pops).
struct Slot {
    /// Frames not yet taken by the connection, with their `seq`; at most `capacity`.
    queue: Mutex<VecDeque<(u64, Bytes)>>,
    capacity: usize,
    filter: EventFilter,
    /// What the connection has, or does not want, up to here: at first the log's head when it
    /// registered (or its resume point, if later), raised by its replay as it reads. The
    /// dispatcher may still be behind it; what it hands out up to here is never queued, so it
    /// cannot fill the queue.
    floor: AtomicU64,
    /// The queue overflowed: the dispatcher skips the connection until it is cleared.
    lagged: AtomicBool,
    /// Woken when a frame is queued or the connection lagged.
    wake: Notify,
}

/// A queue emptied after holding more than this many frames gives its memory back.
const KEEP_QUEUE: usize = 64;

impl Slot {
    /// Queues a frame; `false` when the queue is full.
    fn push(&self, seq: u64, frame: Bytes) -> bool {
        let mut queue = self.queue.lock().expect("sse queue lock");
        if queue.len() >= self.capacity {
            return false;
        }
        queue.push_back((seq, frame));
        true
    }

    /// The oldest queued frame.
    fn pop(&self) -> Option<(u64, Bytes)> {
        let mut queue = self.queue.lock().expect("sse queue lock");
        let item = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP_QUEUE {
            *queue = VecDeque::new();
        }
        item
    }

    fn len(&self) -> usize {
        self.queue.lock().expect("sse queue lock").len()
    }
}

#[derive(Default)]
struct Registry {
    /// Connections by project filter (`None`: any project), then by type pattern.
    by_project: HashMap<Option<String>, PatternIndex<u64>>,
    slots: HashMap<u64, Arc<Slot>>,
}

/// The hub of all SSE connections of one process.
pub struct SseHub {
    store: Arc<dyn EventStore>,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    options: SseOptions,
    stats: SseStats,
    cancel: CancellationToken,
}

impl std::fmt::Debug for SseHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseHub")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SseHub {
    /// A hub over `store`; its dispatcher runs on `tasks` and every stream ends with `cancel`.
    pub fn start(
        store: Arc<dyn EventStore>,
        options: SseOptions,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let hub = Arc::new(SseHub {
            store,
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            options,
            stats: SseStats::default(),
            cancel,
        });
        let dispatcher = hub.clone();
        // The start position is read now, not when the task first runs, so that nothing
        // committed in between escapes the dispatcher.
        let start = hub.store.log().head();
        tasks.spawn(async move {
            let store = dispatcher.store.clone();
            super::follow(&*store, start, &dispatcher.cancel, |e| {
                dispatcher.dispatch(e)
            })
            .await;
        });
        hub
    }

    /// Ends every stream (each sends nothing more and closes) and stops the dispatcher; used
    /// at shutdown so that clients reconnect to another node.
    pub fn close(&self) {
        self.cancel.cancel();
    }

    /// Frames waiting in connection queues.
    pub fn buffered(&self) -> usize {
        let reg = self.registry.lock().expect("sse registry lock");
        reg.slots.values().map(|s| s.len()).sum()
    }

    /// The counters.
    pub fn stats(&self) -> &SseStats {
        &self.stats
    }

    /// The settings.
    pub fn options(&self) -> &SseOptions {
        &self.options
    }

    /// Opens a connection for `filter` that first replays stored events after `resume` (when
    /// given), then streams live ones. `filter.from`/`to` are ignored.
    pub fn connect(
        self: &Arc<Self>,
        filter: EventFilter,
        resume: Option<u64>,
    ) -> Result<Connection, ConnectError> {
        let open = self.stats.connections.fetch_add(1, Ordering::AcqRel);
        if open >= self.options.max_connections {
            self.stats.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectError::TooManyConnections(
                self.options.max_connections,
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let filter = EventFilter {
            from: None,
            to: None,
            ..filter
        };
        // Registered under the lock the dispatcher holds, with the cursor read there too, so
        // every later event reaches the queue or the replay.
        let slot = {
            let mut reg = self.registry.lock().expect("sse registry lock");
            let slot = Arc::new(Slot {
                queue: Mutex::new(VecDeque::new()),
                capacity: self.options.queue.max(1),
                filter: filter.clone(),
                floor: AtomicU64::new(self.store.log().head().max(resume.unwrap_or(0))),
                lagged: AtomicBool::new(false),
                wake: Notify::new(),
            });
            let index = reg.by_project.entry(filter.project_id.clone()).or_default();
            for pattern in patterns(&filter) {
                index.insert(&pattern, id);
            }
            reg.slots.insert(id, slot.clone());
            slot
        };
        let head = slot.floor.load(Ordering::Acquire);
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + self.options.heartbeat,
            self.options.heartbeat,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Connection {
            id,
            hub: Arc::downgrade(self),
            store: self.store.clone(),
            slot,
            cursor: resume.unwrap_or(head),
            replaying: resume.is_some(),
            pending: std::collections::VecDeque::new(),
            heartbeat,
            cancel: self.cancel.clone(),
            state: State::Hello,
            retry_ms: self.options.retry_ms,
        })
    }

    fn disconnect(&self, id: u64, filter: &EventFilter) {
        let mut reg = self.registry.lock().expect("sse registry lock");
        if let Some(index) = reg.by_project.get_mut(&filter.project_id) {
            for pattern in patterns(filter) {
                index.remove(&pattern, id);
            }
            if index.is_empty() {
                reg.by_project.remove(&filter.project_id);
            }
        }
        reg.slots.remove(&id);
        self.stats.connections.fetch_sub(1, Ordering::AcqRel);
    }

    fn dispatch(&self, event: &Arc<Event>) {
        let mut reg = self.registry.lock().expect("sse registry lock");
        if reg.slots.is_empty() {
            return;
        }
        let mut frame: Option<Bytes> = None;
        let Registry { by_project, slots } = &mut *reg;
        let groups = [Some(None), event.project_id.clone().map(Some)];
        for group in groups.into_iter().flatten() {
            let Some(index) = by_project.get_mut(&group) else {
                continue;
            };
            let ids = index.matches(&event.event_type);
            for id in ids.iter() {
                let Some(slot) = slots.get(id) else { continue };
                if event.seq <= slot.floor.load(Ordering::Acquire)
                    || slot.lagged.load(Ordering::Acquire)
                    || !slot.filter.matches(event)
                {
                    continue;
                }
                let bytes = frame.get_or_insert_with(|| event_frame(event)).clone();
                if slot.push(event.seq, bytes) {
                    self.stats.frames.fetch_add(1, Ordering::Relaxed);
                } else {
                    slot.lagged.store(true, Ordering::Release);
                }
                slot.wake.notify_one();
            }
        }
    }
}

fn patterns(filter: &EventFilter) -> Vec<crate::core::pattern::Pattern> {
    if filter.all_types() {
        vec![crate::core::pattern::Pattern::all()]
    } else {
        filter.types.clone()
    }
}

/// The SSE frame of an event.
pub fn event_frame(event: &Event) -> Bytes {
    let json = serde_json::to_vec(event).expect("events serialise");
    let mut b = BytesMut::with_capacity(json.len() + event.event_type.len() + 40);
    b.put_slice(b"id: ");
    b.put_slice(event.seq.to_string().as_bytes());
    b.put_slice(b"\nevent: ");
    b.put_slice(event.event_type.as_bytes());
    b.put_slice(b"\ndata: ");
    b.put_slice(&json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// A named control event (`lagged`, `error`): JSON `data`, no `id`, so the client's resume
/// cursor stays at the last event it received.
pub fn control_frame(name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

enum State {
    Hello,
    Streaming,
    Done,
}

/// One SSE stream: yields the bytes to write, in order, until the stream ends.
pub struct Connection {
    id: u64,
    hub: Weak<SseHub>,
    store: Arc<dyn EventStore>,
    slot: Arc<Slot>,
    cursor: u64,
    replaying: bool,
    pending: std::collections::VecDeque<Bytes>,
    heartbeat: Interval,
    cancel: CancellationToken,
    state: State,
    retry_ms: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The `seq` of the last event this connection delivered (or its start cursor).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next chunk to write, or `None` when the stream is over.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            match self.state {
                State::Done => return None,
                State::Hello => {
                    self.state = State::Streaming;
                    return Some(Bytes::from(format!("retry: {}\n\n", self.retry_ms)));
                }
                State::Streaming => {}
            }
            if self.replaying {
                self.replay_step().await;
                continue;
            }
            if self.cancel.is_cancelled() {
                self.state = State::Done;
                return None;
            }
            // Lagged: deliver what was queued before the overflow, then say so and end.
            if self.slot.lagged.load(Ordering::Acquire) {
                while let Some((seq, frame)) = self.slot.pop() {
                    if seq > self.cursor {
                        self.cursor = seq;
                        self.pending.push_back(frame);
                    }
                }
                if let Some(hub) = self.hub.upgrade() {
                    hub.stats.lagged.fetch_add(1, Ordering::Relaxed);
                }
                self.pending.push_back(control_frame(
                    "lagged",
                    &serde_json::json!({
                        "lastEventId": self.cursor.to_string(),
                        "message": "the stream fell behind and was closed; reconnect with Last-Event-ID to resume",
                    }),
                ));
                self.state = State::Done;
                continue;
            }
            if let Some((seq, frame)) = self.slot.pop() {
                if seq > self.cursor {
                    self.cursor = seq;
                    return Some(frame);
                }
                continue;
            }
            // A frame queued after the `pop` above leaves a permit: `notified` returns at once.
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    self.state = State::Done;
                    return None;
                }
                _ = self.slot.wake.notified() => {}
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": heartbeat\n\n")),
            }
        }
    }

    /// One step of the replay from the store; ends the replay when it reached the end of the
    /// log with the lag flag clear.
    async fn replay_step(&mut self) {
        // Cleared before reading: whatever the dispatcher skipped from here on, this read sees.
        self.slot.lagged.store(false, Ordering::Release);
        let read = tokio::select! {
            _ = self.cancel.cancelled() => {
                self.state = State::Done;
                return;
            }
            read = self.store.tail(self.cursor, &self.slot.filter, super::READ_CHUNK) => read,
        };
        match read {
            Ok(read) => {
                for event in &read.events {
                    if event.seq > self.cursor {
                        self.cursor = event.seq;
                        self.pending.push_back(event_frame(event));
                    }
                }
                self.cursor = self.cursor.max(read.next);
                self.slot.floor.fetch_max(self.cursor, Ordering::AcqRel);
                if read.at_end && !self.slot.lagged.load(Ordering::Acquire) {
                    self.replaying = false;
                    // Frames queued before the floor rose are the replay's: they go, and leave
                    // the room to what comes live.
                    let cursor = self.cursor;
                    self.slot
                        .queue
                        .lock()
                        .expect("sse queue lock")
                        .retain(|(seq, _)| *seq > cursor);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "stream replay cannot read the store");
                self.pending.push_back(control_frame(
                    "error",
                    &serde_json::json!({
                        "lastEventId": self.cursor.to_string(),
                        "message": "the event store is unavailable; reconnect with Last-Event-ID to resume",
                    }),
                ));
                self.state = State::Done;
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.disconnect(self.id, &self.slot.filter);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Heartbeat timing, in paused time: the documented 30 s interval without waiting for it.

    use super::*;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};

    const HEARTBEAT: &[u8] = b": heartbeat\n\n";

    /// `took` is `want`, give or take the timer's rounding of each deadline up to its next
    /// millisecond (`ticks` deadlines).
    fn on_time(took: Duration, want: Duration, ticks: u32) -> bool {
        want <= took && took <= want + Duration::from_millis(u64::from(ticks))
    }

    /// A hub with the default settings over a fresh SQLite store; time is paused once it runs.
    fn hub(dir: &tempfile::TempDir) -> Arc<SseHub> {
        let store = SqliteStore::open(&dir.path().join("sse.db"), SqliteOptions::default())
            .expect("opening the store");
        let hub = SseHub::start(
            Arc::new(store),
            SseOptions::default(),
            &TaskTracker::new(),
            CancellationToken::new(),
        );
        tokio::time::pause();
        hub
    }

    /// A live connection, past its `retry:` hint.
    async fn connect(hub: &Arc<SseHub>) -> Connection {
        let mut conn = hub.connect(EventFilter::default(), None).unwrap();
        let hello = conn.next_chunk().await.unwrap();
        assert!(hello.starts_with(b"retry: "), "{hello:?}");
        conn
    }

    #[tokio::test]
    async fn an_idle_stream_gets_a_heartbeat_every_interval_and_none_sooner() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(&dir);
        let every = hub.options().heartbeat;
        assert_eq!(every, Duration::from_secs(30), "the documented default");
        let mut conn = connect(&hub).await;
        let start = Instant::now();
        for n in 1..=3u32 {
            let early = tokio::time::timeout_at(
                start + every * n - Duration::from_millis(1),
                conn.next_chunk(),
            )
            .await;
            assert!(early.is_err(), "heartbeat {n} came early: {early:?}");
            let chunk = conn.next_chunk().await.unwrap();
            assert_eq!(&chunk[..], HEARTBEAT);
            let took = start.elapsed();
            assert!(on_time(took, every * n, n), "heartbeat {n} after {took:?}");
        }
    }

    #[tokio::test]
    async fn a_reader_that_was_away_gets_one_heartbeat_not_a_burst() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(&dir);
        let every = hub.options().heartbeat;
        let mut conn = connect(&hub).await;
        // Three intervals and a half pass without the stream being read.
        tokio::time::advance(every * 3 + every / 2).await;
        let back = Instant::now();
        assert_eq!(&conn.next_chunk().await.unwrap()[..], HEARTBEAT);
        assert_eq!(
            back.elapsed(),
            Duration::ZERO,
            "the missed one comes at once"
        );
        assert_eq!(&conn.next_chunk().await.unwrap()[..], HEARTBEAT);
        let took = back.elapsed();
        assert!(
            on_time(took, every, 1),
            "the next one a full interval later, not the other missed ones: {took:?}"
        );
    }

    /// A hub whose connections queue two frames, over a fresh SQLite store; time runs.
    fn hub_with_queue_of_two() -> (tempfile::TempDir, Arc<dyn EventStore>, Arc<SseHub>) {
        let (dir, store) = crate::store::sqlite::testing::store();
        let store: Arc<dyn EventStore> = Arc::new(store);
        let options = SseOptions {
            queue: 2,
            ..SseOptions::default()
        };
        let hub = SseHub::start(
            store.clone(),
            options,
            &TaskTracker::new(),
            CancellationToken::new(),
        );
        (dir, store, hub)
    }

    /// Asserts that the next frame of `conn`, within 10 s, is the event `seq` (`what`), not a
    /// `lagged`.
    async fn next_frame_is(conn: &mut Connection, seq: u64, what: &str) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), conn.next_chunk())
            .await
            .unwrap_or_else(|_| panic!("{what} did not arrive"))
            .unwrap();
        let text = String::from_utf8_lossy(&chunk);
        assert!(
            text.starts_with(&format!("id: {seq}\n")),
            "the next frame is {what}, not a `lagged`: {text}"
        );
    }

    fn event(payload: serde_json::Value) -> Event {
        crate::core::event::NewEvent::new("a.b", payload)
            .into_event(crate::core::time::Timestamp::now())
            .unwrap()
    }

    /// Events committed before a connection opened, which the dispatcher hands out only after
    /// it, are not queued for it: a burst the dispatcher is behind on does not fill a new
    /// connection's queue and close it as lagged before it was sent anything.
    #[tokio::test]
    async fn what_the_dispatcher_is_behind_on_at_connect_does_not_fill_the_queue() {
        let (_dir, store, hub) = hub_with_queue_of_two();
        let before = (0..5).map(|_| event(serde_json::json!({}))).collect();
        let before = store.append(before).await.unwrap();
        let mut conn = hub.connect(EventFilter::default(), None).unwrap();
        assert_eq!(&conn.next_chunk().await.unwrap()[..5], b"retry");
        // The dispatcher hands the five out only now, as it does when it is behind.
        for appended in &before {
            hub.dispatch(&appended.event);
        }
        let after = store
            .append(vec![event(serde_json::json!({"n": 6}))])
            .await
            .unwrap();
        next_frame_is(&mut conn, after[0].event.seq, "the event after the connect").await;
        assert_eq!(hub.stats().lagged.load(Ordering::Relaxed), 0);
    }

    /// A resumed connection whose replay read past the head it registered at: what the
    /// dispatcher hands out late of that range, and what it queued during the replay, neither
    /// fills the queue once the stream is live.
    #[tokio::test]
    async fn what_a_replay_read_does_not_fill_the_queue_once_live() {
        let (_dir, store, hub) = hub_with_queue_of_two();
        let early = (0..5).map(|_| event(serde_json::json!({}))).collect();
        store.append(early).await.unwrap();
        let mut conn = hub.connect(EventFilter::default(), Some(0)).unwrap();
        // Committed after the connect, before the replay reads: the replay gets them too.
        let late = (0..3).map(|_| event(serde_json::json!({}))).collect();
        let late = store.append(late).await.unwrap();
        let mut seqs = Vec::new();
        while seqs.len() < 8 {
            let chunk = conn.next_chunk().await.unwrap();
            let text = String::from_utf8_lossy(&chunk).into_owned();
            if let Some(id) = text.strip_prefix("id: ") {
                seqs.push(id.split('\n').next().unwrap().parse::<u64>().unwrap());
            }
        }
        assert_eq!(seqs, (1..=8).collect::<Vec<u64>>(), "the replay");
        // The dispatcher hands the late ones out only now, as it does when it is behind.
        for appended in &late {
            hub.dispatch(&appended.event);
        }
        let live = store
            .append(vec![event(serde_json::json!({"live": true}))])
            .await
            .unwrap();
        hub.dispatch(&live[0].event);
        next_frame_is(
            &mut conn,
            live[0].event.seq,
            "the live event after the replay",
        )
        .await;
        assert_eq!(hub.stats().lagged.load(Ordering::Relaxed), 0);
    }
}
