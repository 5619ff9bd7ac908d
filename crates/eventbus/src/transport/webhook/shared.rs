//! [`Shared`]: what the stages (fan-out, worker) and the API's calls share: the stores, the
//! client, the caches, the counters ([`WebhookStats`]), the worker's wake-up, and the two
//! handles the host gave: where status events go ([`StatusSink`]) and who shapes bodies
//! ([`PayloadShaper`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::cache::{BodyCache, EndpointCache};
use super::client::WebhookClient;
use super::leases::Leases;
use super::{PayloadShaper, StatusSink, WebhookOptions};
use crate::store::EventStore;
use crate::store::webhook::WebhookStore;

/// Counters of the transport (exported as metrics).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Deliveries that succeeded.
    pub succeeded: AtomicU64,
    /// Attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Deliveries dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Endpoints disabled for failing.
    pub auto_disabled: AtomicU64,
    /// Deliveries queued by the fan-out.
    pub queued: AtomicU64,
    /// The time of every attempt counted in `attempts` (answered or not), summed, in
    /// microseconds.
    pub attempt_micros: AtomicU64,
    /// The longest of those attempts, in microseconds, since
    /// [`WebhookStats::take_max_attempt_micros`] last took it.
    pub max_attempt_micros: AtomicU64,
}

impl WebhookStats {
    /// Adds the time of one attempt to the sum and the maximum. Called before the attempt is
    /// counted in `succeeded` or `failed_attempts` (with `Release`), so a reader that loads
    /// those counters first (with `Acquire`) and the sum second has the time of every attempt
    /// it counted.
    pub(super) fn record_attempt_time(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.attempt_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_attempt_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// The longest attempt since the last call (0: none), starting the next maximum at 0.
    pub fn take_max_attempt_micros(&self) -> u64 {
        self.max_attempt_micros.swap(0, Ordering::Relaxed)
    }
}

/// What the stages share.
pub(super) struct Shared {
    pub(super) events: Arc<dyn EventStore>,
    pub(super) store: Arc<dyn WebhookStore>,
    pub(super) options: WebhookOptions,
    pub(super) client: WebhookClient,
    pub(super) endpoints: EndpointCache,
    pub(super) bodies: BodyCache,
    pub(super) stats: WebhookStats,
    /// The leases this process holds (renewed until the attempt ends).
    pub(super) leases: Leases,
    /// Wakes the worker: deliveries were queued, or a lane has room.
    pub(super) wake: Notify,
    /// Where status events are published.
    pub(super) status: Arc<dyn StatusSink>,
    /// Shapes bodies (the plugins of the bus, when it has any).
    pub(super) shaper: Option<Arc<dyn PayloadShaper>>,
}
