//! [`Shared`]: what the stages (fan-out, worker) and the API's calls share: the stores, the
//! client, the caches, the counters ([`WebhookStats`]), the worker's wake-up, and the two
//! handles the host gave: where status events go ([`StatusSink`]) and who shapes bodies
//! ([`PayloadShaper`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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
