//! [`AppState`], what every handler can reach (the bus, the settings, the webhook service, the
//! archive, keys, limits and the stats sampler), and [`Limits`], the abuse limits of this
//! process. It sits apart from `mod.rs` so that the resource modules, which all take it, import
//! nothing that imports them.

use std::sync::Arc;

use eventbus::EventBus;

use crate::config::Config;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The bus.
    pub bus: EventBus,
    /// The plugin host running beside the bus (`None`: plugins are not enabled).
    pub plugins: Option<eventbus::plugin::PluginHost>,
    /// The server's settings.
    pub config: Arc<Config>,
    /// Archived events, for queries with `includeArchived=true`.
    pub archive: Arc<eventbus::store::archive::Archive>,
    /// API keys and browser tokens.
    pub keys: Arc<eventbus::security::Keys>,
    /// Publish rates and stream counts.
    pub limits: Arc<Limits>,
    /// The outbox relays of this process (none without `OUTBOX_SOURCES`).
    pub outboxes: Arc<eventbus::outbox::Outboxes>,
    /// The samples of this process's figures behind `GET /v1/stats`.
    pub sampler: Arc<eventbus::sample::Sampler>,
}

impl AppState {
    /// The webhook transport (`None` when the store backend has no webhook support).
    pub fn webhooks(&self) -> Option<&eventbus::transport::webhook::WebhookService> {
        self.bus.webhooks()
    }
}

/// The abuse limits of this process.
#[derive(Debug, Default)]
pub struct Limits {
    /// Publish rates per key.
    pub rates: eventbus::security::limit::RateLimiter,
    /// Open streams per key and tenant.
    pub connections: Arc<eventbus::security::limit::ConnectionLimiter>,
}
