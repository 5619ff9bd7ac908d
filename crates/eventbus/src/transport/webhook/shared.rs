//! [`Shared`]: what the stages (fan-out, worker) and the API's calls share: the stores, the
//! client, the caches, the counters ([`WebhookStats`]) and the worker's wake-up.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::Notify;

use super::WebhookOptions;
use super::cache::{BodyCache, EndpointCache};
use super::client::WebhookClient;
use crate::bus::EventBus;
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
    pub(super) bus: EventBus,
    pub(super) events: Arc<dyn EventStore>,
    pub(super) store: Arc<dyn WebhookStore>,
    pub(super) options: WebhookOptions,
    pub(super) client: WebhookClient,
    pub(super) endpoints: EndpointCache,
    pub(super) bodies: BodyCache,
    pub(super) stats: WebhookStats,
    /// Wakes the worker: deliveries were queued, or a lane has room.
    pub(super) wake: Notify,
    /// Plugins that shape bodies, when the bus has plugins.
    pub(super) shaper: Option<crate::plugin::PluginHost>,
}
