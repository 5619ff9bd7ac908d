//! Plugins (DESIGN.md §8): Rust plugins registered on the bus builder and JavaScript plugins
//! loaded from `PLUGINS_DIR`, under one host and one lifecycle.
//!
//! A plugin reacts to events (its handler runs as the durable consumer `plugin:<name>`: at
//! least once, in `seq` order, catching up after a restart), may add a step to the publish
//! chain, and (JavaScript) may shape webhook bodies. Failures stay inside the plugin: they are
//! counted, retried, dead-lettered, and repeated failures suspend the plugin (see [`host`]).
//!
//! Whoever builds the bus creates the [`PluginHost`], hands a clone to
//! [`EventBusBuilder::extension`](crate::EventBusBuilder::extension) (the host is a
//! [`crate::bus::Extension`]: its middleware joins the chain, it starts and stops with the bus)
//! and keeps the handle to list and manage plugins. The dependency runs one way: this module
//! uses the bus, the bus knows only the `Extension` trait.
//!
//! Layout:
//! - [`Plugin`] and [`PluginContext`]: the Rust plugin trait and what its handler can reach.
//! - [`host`]: [`PluginHost`], which loads, runs, isolates, swaps and lists plugins, one room
//!   per job: `slot` (a loaded plugin), `folder` (`PLUGINS_DIR` on disk), `load` (start,
//!   reload, install, uninstall), `run` (consumers, retries, dead letters), `info` (what the
//!   API shows, suspension) and `hooks` (publish chain and webhook bodies).
//! - [`manifest`]: the `plugin.json` format.
//! - [`js`]: the sandboxed QuickJS runtime of one JavaScript plugin, on its own thread, and
//!   (`js::ctx`) the `ctx` object its code sees.
//! - [`kv`]: a plugin's key-value store as its runtime sees it.

pub mod host;
pub mod js;
pub mod kv;
pub mod manifest;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use self::host::{HostError, HostOptions, PluginHost, PluginInfo, ReloadReport};
use crate::bus::{EventBus, PublishError};
use crate::core::event::{Event, NewEvent};
use crate::core::middleware::Middleware;
use crate::core::pattern::Pattern;
use crate::store::Appended;

/// Why a Rust plugin's call failed; the event is retried, then dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

impl PluginError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError(message.into())
    }
}

/// A plugin compiled into the program, handed to [`PluginHost::new`].
///
/// `on_event` gets every event whose type matches [`Plugin::subscribe`], at least once and in
/// `seq` order, from where the plugin stopped (the event `id` is the de-duplication key). An
/// `Err` or a panic retries the event with backoff; after the host's retries it is
/// dead-lettered, and repeated dead letters suspend the plugin.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// Unique name, `[a-z][a-z0-9_-]*`; also names its consumer cursor `plugin:<name>`.
    fn name(&self) -> &str;

    /// Version, shown in the API and the lifecycle events; a change publishes `plugin.updated`.
    fn version(&self) -> &str;

    /// Patterns of the events `on_event` receives; none: no handler runs.
    fn subscribe(&self) -> Vec<Pattern>;

    /// Handles one event.
    async fn on_event(&self, event: Arc<Event>, ctx: &PluginContext) -> Result<(), PluginError>;

    /// A step for the publish chain's custom slot (after validation, security, enrichment and
    /// logging).
    fn middleware(&self) -> Option<Arc<dyn Middleware>> {
        None
    }

    /// Called once when the bus starts, before any event.
    async fn start(&self, _ctx: &PluginContext) -> Result<(), PluginError> {
        Ok(())
    }

    /// Called once when the bus shuts down, after the last event.
    async fn stop(&self) {}
}

/// What a plugin's handler can reach: the bus, and publishing in the plugin's name.
#[derive(Debug, Clone)]
pub struct PluginContext {
    name: String,
    bus: EventBus,
}

impl PluginContext {
    pub(crate) fn new(name: &str, bus: EventBus) -> Self {
        PluginContext {
            name: name.to_owned(),
            bus,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Publishes `event`, marking `metadata.source` as `plugin:<name>` unless it is set.
    pub async fn publish(&self, mut event: NewEvent) -> Result<Appended, PublishError> {
        event
            .metadata
            .get_or_insert_with(BTreeMap::new)
            .entry("source".to_owned())
            .or_insert_with(|| format!("plugin:{}", self.name));
        self.bus.publish(event).await
    }
}
