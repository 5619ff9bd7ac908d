//! The plugin host: loads, runs, isolates and swaps plugins.
//!
//! Each plugin with an event handler runs as the durable consumer `plugin:<name>` (see
//! [`crate::transport::consumer`]): at least once, in `seq` order, from its saved cursor. Around
//! each event the host keeps these promises:
//! - **isolation**: a failing call (exception, timeout, memory, panic) is counted, logged and
//!   retried with exponential backoff ([`HostOptions::retries`]); after the last retry the event
//!   is **dead-lettered** ([`crate::store::plugin::PluginStore`]) and the consumer moves on.
//!   After [`HostOptions::suspend_after`] dead letters in a row the plugin is **suspended**: its
//!   consumer parks (cursor kept) until the plugin is reloaded. Nothing of this touches the
//!   publishers or the other plugins, each of which has its own consumer and JS thread;
//! - **effects after success**: a JS call's `ctx.publish` events (ids derived from the plugin,
//!   the source event and the index, so a retried call publishes the same events) and key-value
//!   writes are applied only when the call succeeded;
//! - **swaps keep the cursor**: [`PluginHost::reload`] loads the new code first (a broken
//!   update leaves the old one running), then stops the old consumer (its cursor saved) and
//!   starts the new one under the same name, so no event is skipped;
//! - **lifecycle events**: installing, updating and uninstalling publish `plugin.installed`,
//!   `plugin.updated`, `plugin.uninstalled` through the bus's normal publish path. The store's
//!   `plugin_states` table tells an update made while the bus was down from a first install.
//!
//! Layout (one room per job, each adding its own `impl PluginHost` block):
//! - this file: [`HostOptions`], [`HostError`], the [`PluginHost`] handle and what the bus sees
//!   of it (its [`Extension`] implementation);
//! - `slot`: a loaded plugin (its code, counters, last error, suspension flag and consumer);
//! - `folder`: `PLUGINS_DIR` on disk: scanning, reading and writing plugin folders;
//! - `load`: the lifecycle: starting with the bus, reload, install and uninstall, and the
//!   lifecycle events;
//! - `run`: the run loop: each plugin's consumer, retries, dead letters, effects of JS calls;
//! - `info`: what the host shows and stores of each plugin: [`PluginInfo`], suspension, load
//!   failures;
//! - `hooks`: the host in the publish chain (middleware, JS `transform`) and in webhook
//!   delivery (`webhookPayload`).

mod folder;
mod hooks;
mod info;
mod load;
mod run;
mod slot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use self::folder::FolderError;
use self::info::Broken;
pub use self::info::{Counters, PluginInfo};
pub use self::load::ReloadReport;
use self::slot::Slot;
pub use self::slot::{LastError, PluginStats};
use super::Plugin;
use super::manifest::ManifestError;
use crate::bus::{EventBus, Extension, ExtensionError};
use crate::core::middleware::Middleware;
use crate::store::StoreError;
use crate::store::plugin::PluginStore;

/// Tunables of the host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The JavaScript plugins' folder (`PLUGINS_DIR`); `None`: Rust plugins only.
    pub dir: Option<PathBuf>,
    /// Retries of a failed event before it is dead-lettered.
    pub retries: u32,
    /// First retry delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Dead letters in a row after which a plugin is suspended.
    pub suspend_after: u32,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            dir: None,
            retries: 3,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            suspend_after: 3,
        }
    }
}

/// Why a host operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No such plugin or dead letter (the message says which).
    #[error("{0}")]
    NotFound(String),
    /// The manifest is invalid.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// The code does not load (syntax error, forbidden import, no export).
    #[error("the plugin does not load: {0}")]
    Load(String),
    /// Rust plugins are compiled in; they cannot be installed or removed at run time.
    #[error("`{0}` is a Rust plugin, compiled into the server; it cannot be changed at run time")]
    Compiled(String),
    /// No plugins folder is configured.
    #[error("no plugins folder is configured (PLUGINS_DIR)")]
    NoDirectory,
    /// Reading or writing the plugins folder failed.
    #[error("plugins folder: {0}")]
    Io(#[from] FolderError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus is not running.
    #[error("the bus is shut down")]
    Stopped,
}

/// What the host's clones share.
struct Inner {
    /// The plugin tables (installed plugins, key-value data, dead letters).
    store: Arc<dyn PluginStore>,
    options: HostOptions,
    rust: Vec<Arc<dyn Plugin>>,
    bus: RwLock<Option<EventBus>>,
    /// Serialises reloads, installs and uninstalls.
    lifecycle: tokio::sync::Mutex<()>,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    broken: RwLock<BTreeMap<String, Broken>>,
    cancel: CancellationToken,
}

/// The plugin host; cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("options", &self.inner.options)
            .field("plugins", &self.names())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host for the Rust plugins `rust` and the JS plugins in `options.dir`. Pass a clone to
    /// [`EventBusBuilder::extension`](crate::EventBusBuilder::extension): the bus starts it
    /// (and shuts it down), and this handle lists and manages the plugins.
    pub fn new(
        store: Arc<dyn PluginStore>,
        options: HostOptions,
        rust: Vec<Arc<dyn Plugin>>,
    ) -> Self {
        PluginHost {
            inner: Arc::new(Inner {
                store,
                options,
                rust,
                bus: RwLock::new(None),
                lifecycle: tokio::sync::Mutex::new(()),
                slots: RwLock::new(BTreeMap::new()),
                broken: RwLock::new(BTreeMap::new()),
                cancel: CancellationToken::new(),
            }),
        }
    }

    /// The options.
    pub fn options(&self) -> &HostOptions {
        &self.inner.options
    }

    /// The bus, while the host runs.
    fn bus(&self) -> Result<EventBus, HostError> {
        self.inner
            .bus
            .read()
            .expect("bus lock")
            .clone()
            .ok_or(HostError::Stopped)
    }

    /// The plugin tables of the bus's store.
    fn store(&self) -> &dyn PluginStore {
        self.inner.store.as_ref()
    }

    /// The loaded plugin `name`.
    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.inner
            .slots
            .read()
            .expect("slots lock")
            .get(name)
            .cloned()
    }

    /// The loaded plugins, by name.
    fn slots(&self) -> Vec<Arc<Slot>> {
        self.inner
            .slots
            .read()
            .expect("slots lock")
            .values()
            .cloned()
            .collect()
    }
}

impl From<HostError> for ExtensionError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Store(s) => ExtensionError::Store(s),
            other => ExtensionError::Other(Box::new(other)),
        }
    }
}

/// The host as the bus sees it: Rust plugins' middleware then the JS `transform` step in the
/// chain's custom slot, every plugin started with the bus and stopped with it.
#[async_trait]
impl Extension for PluginHost {
    fn middleware(&self) -> Vec<Arc<dyn Middleware>> {
        let mut steps = self.rust_middleware();
        steps.push(self.transform_step());
        steps
    }

    async fn start(&self, bus: EventBus) -> Result<(), ExtensionError> {
        Ok(self.start_plugins(bus).await?)
    }

    async fn shutdown(&self) {
        self.stop_plugins().await;
    }
}
