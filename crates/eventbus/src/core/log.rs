//! The commit log in memory: the hot tail of the store that wakes readers and feeds them
//! without a disk read.
//!
//! Every store pushes each committed batch here, in `seq` order, together with the `seq` that
//! preceded it. The ring stays *contiguous*: it covers every event in `(base, last]`. A batch
//! that does not follow on (another process committed in between) resets it, so a reader is
//! either served the complete range from memory or told to read the store. [`CommitLog::head`]
//! is the highest `seq` known committed, published on a watch channel that readers await.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::event::Event;

/// What a read from memory found.
#[derive(Debug)]
pub struct HotRead {
    /// Matching events after the cursor, in `seq` order.
    pub events: Vec<Arc<Event>>,
    /// The cursor to continue from: every event up to it was looked at.
    pub next: u64,
    /// Whether the read reached the newest committed event.
    pub at_end: bool,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Every event with `base < seq <= last` is in `events`.
    base: u64,
    /// Payload bytes held.
    bytes: usize,
}

impl Ring {
    fn last(&self) -> u64 {
        self.events.back().map_or(self.base, |e| e.seq)
    }
}

/// The bounded in-memory tail of the event log.
#[derive(Debug)]
pub struct CommitLog {
    ring: Mutex<Ring>,
    head: watch::Sender<u64>,
    capacity: usize,
    max_bytes: usize,
    /// Reads it could not serve (the reader goes to the store).
    misses: AtomicU64,
}

/// Payload bytes the ring may hold by default.
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;

impl CommitLog {
    /// A log holding at most `capacity` recent events and [`DEFAULT_MAX_BYTES`] of payload,
    /// starting at `head`.
    pub fn new(head: u64, capacity: usize) -> Self {
        Self::with_limits(head, capacity, DEFAULT_MAX_BYTES)
    }

    /// A log holding at most `capacity` recent events and `max_bytes` of payload.
    pub fn with_limits(head: u64, capacity: usize, max_bytes: usize) -> Self {
        CommitLog {
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(65_536)),
                base: head,
                bytes: 0,
            }),
            head: watch::Sender::new(head),
            capacity: capacity.max(1),
            max_bytes,
            misses: AtomicU64::new(0),
        }
    }

    /// Records a committed batch. `prev` is the highest `seq` committed before it; `events` are
    /// in increasing `seq` order. Wakes every reader.
    pub fn push(&self, prev: u64, events: &[Arc<Event>]) {
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        let mut ring = self.ring.lock().expect("commit log lock");
        if ring.last() != prev {
            ring.events.clear();
            ring.base = prev;
            ring.bytes = 0;
        }
        for e in events {
            ring.bytes += e.payload.get().len();
            ring.events.push_back(e.clone());
        }
        while ring.events.len() > self.capacity
            || (ring.bytes > self.max_bytes && ring.events.len() > 1)
        {
            let dropped = ring.events.pop_front().expect("non-empty");
            ring.bytes -= dropped.payload.get().len();
            ring.base = dropped.seq;
        }
        // Under the ring's lock: whoever reads an event from the ring then sees a head >= it.
        self.advance(last);
    }

    /// Raises the head to `seq` (a commit seen by other means, e.g. another process).
    pub fn advance(&self, seq: u64) {
        self.head.send_if_modified(|h| {
            if seq > *h {
                *h = seq;
                true
            } else {
                false
            }
        });
    }

    /// How many reads it could not serve, since it was made: the cursor was older than the
    /// ring, or the head was ahead of it (commits of another process, or a commit not pushed
    /// yet). Each such read went to the store.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The highest committed `seq` known.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that wakes on every new head.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Events after `after` that pass `keep`, looking at no more than `limit` of them; `None`
    /// when memory does not cover the range, or when the head is past the ring's newest event
    /// (committed elsewhere): the caller reads the store.
    pub fn read_after(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&Event) -> bool,
    ) -> Option<HotRead> {
        let ring = self.ring.lock().expect("commit log lock");
        let start = ring.events.partition_point(|e| e.seq <= after);
        let at_end = ring.events.len() - start <= limit;
        if after < ring.base || (at_end && ring.last() < self.head()) {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut next = after.max(ring.base);
        let mut events = Vec::new();
        for e in ring.events.range(start..).take(limit) {
            next = e.seq;
            if keep(e) {
                events.push(e.clone());
            }
        }
        Some(HotRead {
            events,
            next,
            at_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::NewEvent;
    use crate::core::time::Timestamp;

    fn ev(seq: u64, ty: &str) -> Arc<Event> {
        let mut e = NewEvent::new(ty, serde_json::Value::Null)
            .into_event(Timestamp::from_micros(0))
            .unwrap();
        e.seq = seq;
        Arc::new(e)
    }

    #[test]
    fn serves_contiguous_ranges_and_filters() {
        let log = CommitLog::new(0, 10);
        log.push(0, &[ev(1, "a.b"), ev(2, "c.d")]);
        log.push(2, &[ev(3, "a.b")]);
        assert_eq!(log.head(), 3);
        let r = log.read_after(0, 100, |e| e.event_type == "a.b").unwrap();
        assert_eq!(r.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(r.next, 3);
        assert!(r.at_end);
        let r = log.read_after(1, 1, |_| true).unwrap();
        assert_eq!((r.events.len(), r.next, r.at_end), (1, 2, false));
        let r = log.read_after(3, 100, |_| true).unwrap();
        assert!(r.events.is_empty());
        assert_eq!(r.next, 3);
        assert_eq!(log.misses(), 0);
    }

    #[test]
    fn payload_bytes_are_bounded() {
        let log = CommitLog::with_limits(0, 100, 10);
        let big = |seq| {
            let mut e = NewEvent::new("a.b", serde_json::json!("0123456"))
                .into_event(Timestamp::from_micros(0))
                .unwrap();
            e.seq = seq;
            Arc::new(e)
        };
        log.push(0, &[big(1), big(2), big(3)]);
        let r = log.read_after(2, 10, |_| true).unwrap();
        assert_eq!(r.events.len(), 1, "9-byte payloads: one fits in 10 bytes");
        assert!(log.read_after(1, 10, |_| true).is_none());
    }

    #[test]
    fn a_gap_resets_and_old_cursors_go_to_the_store() {
        let log = CommitLog::new(0, 2);
        log.push(0, &[ev(1, "a.b"), ev(2, "a.b"), ev(3, "a.b")]);
        assert!(
            log.read_after(0, 10, |_| true).is_none(),
            "seq 1 was evicted"
        );
        assert_eq!(log.read_after(1, 10, |_| true).unwrap().events.len(), 2);
        // Another process committed 4..=9: this batch does not follow on.
        log.push(9, &[ev(10, "a.b")]);
        assert!(log.read_after(3, 10, |_| true).is_none());
        assert_eq!(log.read_after(9, 10, |_| true).unwrap().events.len(), 1);
        assert_eq!(log.head(), 10);
        // A commit known only by its seq (another process): memory cannot serve the tail.
        log.advance(11);
        assert!(log.read_after(10, 10, |_| true).is_none());
        assert!(!log.read_after(9, 0, |_| true).unwrap().at_end);
        assert_eq!(log.misses(), 3, "each read sent to the store is counted");
    }
}
