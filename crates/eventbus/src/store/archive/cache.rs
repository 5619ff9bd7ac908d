//! Decoded archive segments kept in memory for queries: least recently used out first, bounded
//! by an estimate of their size. Keyed by the segment file's sha256, which names its content.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::core::event::Event;

/// The most decoded events kept, by [`size_of`]: a few segments of typical events.
pub const CACHE_BYTES: usize = 64 << 20;

/// Bookkeeping per event besides its payload (ids, type, scope fields, allocations).
const EVENT_OVERHEAD: usize = 256;

/// Decoded segments, most recently used last.
#[derive(Debug)]
pub struct SegmentCache {
    budget: usize,
    inner: Mutex<Entries>,
}

/// A decoded segment's events.
pub type Events = Arc<[Arc<Event>]>;

#[derive(Debug, Default)]
struct Entries {
    list: VecDeque<Entry>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    checksum: String,
    events: Events,
    size: usize,
}

/// An estimate of the memory the decoded `events` take.
pub fn size_of(events: &[Arc<Event>]) -> usize {
    events
        .iter()
        .map(|e| e.payload.get().len() + EVENT_OVERHEAD)
        .sum()
}

impl SegmentCache {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        SegmentCache {
            budget,
            inner: Mutex::default(),
        }
    }

    /// The events of the segment with this checksum, if cached (and marks them recently used).
    pub fn get(&self, checksum: &str) -> Option<Events> {
        let mut entries = self.inner.lock().expect("segment cache");
        let at = entries.list.iter().position(|e| e.checksum == checksum)?;
        let entry = entries.list.remove(at).expect("a found entry");
        let events = entry.events.clone();
        entries.list.push_back(entry);
        Some(events)
    }

    /// Keeps `events` under `checksum`, dropping the least recently used segments to stay
    /// within the budget; a segment larger than the whole budget is not kept.
    pub fn insert(&self, checksum: &str, events: Events) {
        let size = size_of(&events);
        if size > self.budget {
            return;
        }
        let mut entries = self.inner.lock().expect("segment cache");
        if entries.list.iter().any(|e| e.checksum == checksum) {
            return;
        }
        while entries.bytes + size > self.budget {
            let Some(oldest) = entries.list.pop_front() else {
                break;
            };
            entries.bytes -= oldest.size;
        }
        entries.bytes += size;
        entries.list.push_back(Entry {
            checksum: checksum.to_owned(),
            events,
            size,
        });
    }

    /// Drops the segment with this checksum.
    pub fn remove(&self, checksum: &str) {
        let mut entries = self.inner.lock().expect("segment cache");
        if let Some(at) = entries.list.iter().position(|e| e.checksum == checksum) {
            let removed = entries.list.remove(at).expect("a found entry");
            entries.bytes -= removed.size;
        }
    }

    /// Bytes held, by [`size_of`].
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().expect("segment cache").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::NewEvent;
    use crate::core::time::Timestamp;

    fn segment(n: usize) -> Events {
        (0..n)
            .map(|i| {
                Arc::new(
                    NewEvent::new("a.b", serde_json::json!({ "i": i }))
                        .into_event(Timestamp::now())
                        .unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn keeps_the_most_recently_used_within_the_budget() {
        let one = size_of(&segment(10));
        let cache = SegmentCache::new(2 * one);
        cache.insert("a", segment(10));
        cache.insert("b", segment(10));
        assert!(cache.get("a").is_some(), "a is now the most recent");
        cache.insert("c", segment(10));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        assert_eq!(cache.bytes(), 2 * one);
        cache.remove("a");
        assert!(cache.get("a").is_none());
        assert_eq!(cache.bytes(), one);
        // Larger than the whole budget: not kept, nothing evicted for it.
        cache.insert("huge", segment(30));
        assert!(cache.get("huge").is_none());
        assert!(cache.get("c").is_some());
    }
}
