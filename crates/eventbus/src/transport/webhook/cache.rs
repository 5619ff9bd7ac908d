//! The transport's two caches: the endpoints as last read ([`EndpointCache`], reloaded on a
//! local change or after [`ENDPOINT_TTL`] for changes made by other processes), and the
//! serialised event bodies shared by every delivery of an event ([`BodyCache`], bounded in
//! entries and bytes).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::store::webhook::{Endpoint, WebhookStore};
use crate::store::{EventStore, StoreError};

/// The endpoints as last read, with the version they were read at.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) version: u64,
    pub(super) list: Vec<Arc<Endpoint>>,
    pub(super) by_id: HashMap<String, Arc<Endpoint>>,
}

/// Endpoints in memory, reloaded when changed here or when older than [`ENDPOINT_TTL`] (changes
/// made by other processes).
#[derive(Debug, Default)]
pub(super) struct EndpointCache {
    snapshot: Mutex<Option<(Arc<Snapshot>, Instant)>>,
    dirty: AtomicBool,
    /// Counts local changes, so each reader can tell on its own that one happened.
    generation: AtomicU64,
}

/// How long a snapshot serves before it is read again.
pub(super) const ENDPOINT_TTL: Duration = Duration::from_secs(2);

impl EndpointCache {
    pub(super) async fn current(
        &self,
        store: &dyn WebhookStore,
    ) -> Result<Arc<Snapshot>, StoreError> {
        if !self.dirty.load(Ordering::Acquire)
            && let Some((snap, at)) = &*self.snapshot.lock().expect("endpoint cache")
            && at.elapsed() < ENDPOINT_TTL
        {
            return Ok(snap.clone());
        }
        self.reload(store).await
    }

    pub(super) async fn reload(
        &self,
        store: &dyn WebhookStore,
    ) -> Result<Arc<Snapshot>, StoreError> {
        self.dirty.store(false, Ordering::Release);
        let (list, version) = store.list_endpoints().await?;
        let list: Vec<Arc<Endpoint>> = list.into_iter().map(Arc::new).collect();
        let by_id = list.iter().map(|e| (e.id.clone(), e.clone())).collect();
        let snap = Arc::new(Snapshot {
            version,
            list,
            by_id,
        });
        *self.snapshot.lock().expect("endpoint cache") = Some((snap.clone(), Instant::now()));
        Ok(snap)
    }

    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.dirty.store(true, Ordering::Release);
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Serialised event bodies by `seq`, shared by every delivery of an event: the JSON is built
/// once. Bounded in entries and bytes; a miss reads the event from the store.
#[derive(Debug, Default)]
pub(super) struct BodyCache {
    inner: Mutex<(HashMap<u64, Bytes>, VecDeque<u64>, usize)>,
}

const BODY_CACHE_ENTRIES: usize = 16_384;
const BODY_CACHE_BYTES: usize = 64 * 1024 * 1024;

impl BodyCache {
    fn get(&self, seq: u64) -> Option<Bytes> {
        self.inner.lock().expect("body cache").0.get(&seq).cloned()
    }

    pub(super) fn insert(&self, seq: u64, body: Bytes) {
        let mut guard = self.inner.lock().expect("body cache");
        let (map, order, bytes) = &mut *guard;
        if map.contains_key(&seq) {
            return;
        }
        *bytes += body.len();
        map.insert(seq, body);
        order.push_back(seq);
        while map.len() > BODY_CACHE_ENTRIES || (*bytes > BODY_CACHE_BYTES && map.len() > 1) {
            let Some(old) = order.pop_front() else { break };
            if let Some(b) = map.remove(&old) {
                *bytes -= b.len();
            }
        }
    }

    /// The JSON body of the event `seq` (from the cache, else from `events`); `None` when the
    /// event is no longer stored.
    pub(super) async fn body(
        &self,
        events: &dyn EventStore,
        seq: u64,
        event_id: &str,
    ) -> Result<Option<Bytes>, StoreError> {
        if let Some(b) = self.get(seq) {
            return Ok(Some(b));
        }
        let Some(event) = events.get(event_id).await? else {
            return Ok(None);
        };
        let body = Bytes::from(event.to_json());
        self.insert(seq, body.clone());
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_cache_is_bounded() {
        let cache = BodyCache::default();
        for seq in 0..(BODY_CACHE_ENTRIES as u64 + 10) {
            cache.insert(seq, Bytes::from_static(b"{}"));
        }
        assert!(cache.get(0).is_none());
        assert!(cache.get(BODY_CACHE_ENTRIES as u64 + 9).is_some());
    }
}
