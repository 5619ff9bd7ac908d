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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::js::{CallError, Export, JsPlugin};
use super::manifest::{
    FailurePolicy, Limits, MAX_MANIFEST_BYTES, MAX_SOURCE_BYTES, Manifest, ManifestError,
    check_name,
};
use super::{Plugin, PluginContext};
use crate::bus::{EventBus, Extension, ExtensionError, PublishError};
use crate::core::event::{Event, NewEvent};
use crate::core::middleware::{Middleware, MiddlewareError, PublishContext, RejectKind, Rejection};
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::metric;
use crate::store::StoreError;
use crate::store::plugin::{DeadLetter, PluginState, PluginStore, consumer_name};
use crate::store::webhook::Endpoint;
use crate::transport::consumer::{Consumer, ConsumerOptions};

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
    Io(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus is not running.
    #[error("the bus is shut down")]
    Stopped,
}

/// Counters of one plugin since it was (re)loaded.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: AtomicU64,
    handled: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    memory_errors: AtomicU64,
    retries: AtomicU64,
    dead_letters: AtomicU64,
    refused_publishes: AtomicU64,
    published: AtomicU64,
    transformed: AtomicU64,
    rejected: AtomicU64,
    dead_letters_in_a_row: AtomicU64,
    cursor: AtomicU64,
}

/// The counters as the API shows them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Calls into the plugin (every kind, every attempt).
    pub calls: u64,
    /// Events its handler finished.
    pub handled: u64,
    /// Failed calls (of any cause).
    pub errors: u64,
    /// Calls interrupted at their time budget.
    pub timeouts: u64,
    /// Calls that hit the memory limit.
    pub memory_errors: u64,
    /// Retried events.
    pub retries: u64,
    /// Dead-lettered events.
    pub dead_letters: u64,
    /// `ctx.publish` calls refused by the manifest.
    pub refused_publishes: u64,
    /// Events it published.
    pub published: u64,
    /// Events its `transform` passed (changed or not).
    pub transformed: u64,
    /// Events its `transform` rejected.
    pub rejected: u64,
}

/// The last error of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// What happened.
    pub message: String,
    /// When.
    pub at: Timestamp,
}

/// One plugin as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Plugin))]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its version (`null` when it failed to load before its manifest was read).
    pub version: Option<String>,
    /// `js` or `rust`.
    pub kind: &'static str,
    /// `running`, `suspended` or `failed` (did not load).
    pub status: &'static str,
    /// Patterns it receives.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub subscribe: Vec<Pattern>,
    /// Patterns it may publish (JS plugins).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub publish: Vec<Pattern>,
    /// Whether it runs in the publish chain.
    pub middleware: bool,
    /// What its failing `transform` does (JS middleware).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub failure_policy: Option<FailurePolicy>,
    /// Its limits (JS plugins).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub limits: Option<Limits>,
    /// The functions `index.js` exports.
    pub exports: Vec<&'static str>,
    /// The last `seq` its handler finished.
    pub cursor: u64,
    /// Whether this process runs its event handler: with several processes on one database,
    /// one at a time does (it holds the lease of the plugin's consumer) and the others stand
    /// by. `None` for a plugin without a handler, or while its consumer is being swapped.
    pub runs_handler: Option<bool>,
    /// Counters since it was (re)loaded.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, u64>))]
    pub counters: Counters,
    /// Its last error.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub last_error: Option<LastError>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReloadReport {
    /// Plugins installed.
    pub installed: Vec<String>,
    /// Plugins whose code changed.
    pub updated: Vec<String>,
    /// Plugins removed.
    pub uninstalled: Vec<String>,
    /// Suspended plugins started again.
    pub resumed: Vec<String>,
    /// Plugins that did not load, with why.
    pub failed: BTreeMap<String, String>,
}

enum Code {
    Js(JsPlugin),
    Rust(Arc<dyn Plugin>),
}

/// A loaded plugin.
struct Slot {
    name: String,
    version: String,
    subscribe: Vec<Pattern>,
    manifest: Option<Manifest>,
    hash: String,
    code: Code,
    stats: PluginStats,
    last_error: Mutex<Option<LastError>>,
    suspended: watch::Sender<bool>,
    consumer: tokio::sync::Mutex<Option<Consumer>>,
    /// Cancels backoff waits and parked handlers when the slot is unloaded.
    cancel: CancellationToken,
    calls_ok: metrics::Counter,
}

impl Slot {
    fn kind(&self) -> &'static str {
        match self.code {
            Code::Js(_) => "js",
            Code::Rust(_) => "rust",
        }
    }

    fn js(&self) -> Option<&JsPlugin> {
        match &self.code {
            Code::Js(js) => Some(js),
            Code::Rust(_) => None,
        }
    }

    fn receives(&self, event_type: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(event_type))
    }

    fn is_suspended(&self) -> bool {
        *self.suspended.borrow()
    }

    fn has_handler(&self) -> bool {
        match &self.code {
            Code::Js(js) => js.exports(Export::OnEvent) && !self.subscribe.is_empty(),
            Code::Rust(_) => !self.subscribe.is_empty(),
        }
    }

    fn failed(&self, message: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("last error") = Some(LastError {
            message: message.to_owned(),
            at: Timestamp::now(),
        });
    }

    fn call_failed(&self, e: &CallError) {
        match e {
            CallError::Timeout(_) => self.stats.timeouts.fetch_add(1, Ordering::Relaxed),
            CallError::OutOfMemory(_) => self.stats.memory_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        metrics::counter!(metric::PLUGIN_CALLS, "plugin" => self.name.clone(), "outcome" => e.outcome())
            .increment(1);
        self.failed(&e.to_string());
    }

    fn info(&self) -> PluginInfo {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PluginInfo {
            name: self.name.clone(),
            version: Some(self.version.clone()),
            kind: self.kind(),
            status: if self.is_suspended() {
                "suspended"
            } else {
                "running"
            },
            subscribe: self.subscribe.clone(),
            publish: self
                .manifest
                .as_ref()
                .map(|m| m.publish.clone())
                .unwrap_or_default(),
            middleware: match &self.code {
                Code::Js(_) => self.manifest.as_ref().is_some_and(|m| m.middleware),
                Code::Rust(p) => p.middleware().is_some(),
            },
            failure_policy: self
                .manifest
                .as_ref()
                .filter(|m| m.middleware)
                .map(|m| m.failure_policy),
            limits: self.manifest.as_ref().map(|m| m.limits),
            exports: self.js().map(|j| j.export_names()).unwrap_or_default(),
            cursor: get(&s.cursor),
            runs_handler: self
                .consumer
                .try_lock()
                .ok()
                .and_then(|c| c.as_ref().map(|c| c.stats().leased.load(Ordering::Relaxed))),
            counters: Counters {
                calls: get(&s.calls),
                handled: get(&s.handled),
                errors: get(&s.errors),
                timeouts: get(&s.timeouts),
                memory_errors: get(&s.memory_errors),
                retries: get(&s.retries),
                dead_letters: get(&s.dead_letters),
                refused_publishes: get(&s.refused_publishes),
                published: get(&s.published),
                transformed: get(&s.transformed),
                rejected: get(&s.rejected),
            },
            last_error: self.last_error.lock().expect("last error").clone(),
        }
    }
}

/// A plugin folder that did not load.
#[derive(Debug, Clone)]
struct Broken {
    version: Option<String>,
    error: String,
    at: Timestamp,
}

struct Inner {
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

/// The content hash of a JS plugin.
fn js_hash(manifest: &[u8], source: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(manifest);
    h.update([0u8]);
    h.update(source);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the `index`th event a plugin publishes while handling `source_id`: the same on
/// every retry, so a retried call does not publish twice.
fn follow_up_id(plugin: &str, source_id: &str, index: usize) -> String {
    let mut h = Sha256::new();
    h.update(plugin.as_bytes());
    h.update([0u8]);
    h.update(source_id.as_bytes());
    h.update([0u8]);
    h.update(index.to_le_bytes());
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("plg_{hex}")
}

/// A plugin folder read from disk.
struct Folder {
    manifest: Manifest,
    source: String,
    hash: String,
}

fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > limit as u64 {
        return Err(format!(
            "{} is {len} bytes; the limit is {limit}",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_folder(dir: &Path, name: &str) -> FolderRead {
    check_name(name).map_err(|e| (None, format!("folder name: {e}")))?;
    let manifest_bytes =
        read_limited(&dir.join("plugin.json"), MAX_MANIFEST_BYTES).map_err(|e| (None, e))?;
    let manifest =
        Manifest::parse(&manifest_bytes).map_err(|e| (None, format!("plugin.json: {e}")))?;
    if manifest.name != name {
        return Err((
            Some(manifest.version),
            format!(
                "plugin.json names `{}`, but the folder is `{name}`; they must match",
                manifest.name
            ),
        ));
    }
    let source = read_limited(&dir.join("index.js"), MAX_SOURCE_BYTES)
        .map_err(|e| (Some(manifest.version.clone()), e))?;
    let hash = js_hash(&manifest_bytes, &source);
    let source = String::from_utf8(source).map_err(|_| {
        (
            Some(manifest.version.clone()),
            "index.js is not UTF-8".into(),
        )
    })?;
    Ok(Folder {
        manifest,
        source,
        hash,
    })
}

/// A folder's content, or its version (when known) and why it does not load.
type FolderRead = Result<Folder, (Option<String>, String)>;

/// Every plugin folder under `dir` (hidden entries are skipped); a missing `dir` is empty.
fn scan(dir: &Path) -> Result<BTreeMap<String, FolderRead>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut found = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        found.insert(name.clone(), read_folder(&entry.path(), &name));
    }
    Ok(found)
}

impl PluginHost {
    /// A host for the Rust plugins `rust` and the JS plugins in `options.dir`. Pass a clone to
    /// [`EventBusBuilder::extension`](crate::EventBusBuilder::extension): the bus starts it
    /// (and shuts it down), and this handle lists and manages the plugins.
    pub fn new(options: HostOptions, rust: Vec<Arc<dyn Plugin>>) -> Self {
        PluginHost {
            inner: Arc::new(Inner {
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

    /// The middleware steps of the Rust plugins, for the chain's custom slot.
    fn rust_middleware(&self) -> Vec<Arc<dyn Middleware>> {
        self.inner
            .rust
            .iter()
            .filter_map(|p| p.middleware())
            .collect()
    }

    fn bus(&self) -> Result<EventBus, HostError> {
        self.inner
            .bus
            .read()
            .expect("bus lock")
            .clone()
            .ok_or(HostError::Stopped)
    }

    fn store(bus: &EventBus) -> Result<&dyn PluginStore, HostError> {
        bus.store().plugin_store().ok_or_else(|| {
            HostError::Store(StoreError::Internal(
                "this store backend has no plugin tables".into(),
            ))
        })
    }

    /// Starts the Rust plugins and loads the JS plugins (suspended ones stay suspended).
    async fn start_plugins(&self, bus: EventBus) -> Result<(), HostError> {
        *self.inner.bus.write().expect("bus lock") = Some(bus.clone());
        let _guard = self.inner.lifecycle.lock().await;
        let store = Self::store(&bus)?;
        let states: BTreeMap<String, PluginState> = store
            .plugin_states()
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        for plugin in self.inner.rust.clone() {
            let name = plugin.name().to_owned();
            if let Err(e) = check_name(&name) {
                tracing::error!(plugin = %name, error = %e, "Rust plugin has an invalid name; not started");
                continue;
            }
            let version = plugin.version().to_owned();
            let ctx = PluginContext::new(&name, bus.clone());
            if let Err(e) = plugin.start(&ctx).await {
                tracing::error!(plugin = %name, error = %e, "Rust plugin failed to start");
                self.set_broken(&name, Some(version), e.to_string());
                continue;
            }
            let state = states.get(&name);
            let suspended = state.is_some_and(|s| s.suspended && s.hash == version);
            let slot = self.new_slot(
                name.clone(),
                version.clone(),
                plugin.subscribe(),
                None,
                version.clone(),
                Code::Rust(plugin),
                suspended,
            );
            self.activate(&bus, slot, state, "rust").await?;
        }
        self.reload_locked(&bus, false).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn new_slot(
        &self,
        name: String,
        version: String,
        subscribe: Vec<Pattern>,
        manifest: Option<Manifest>,
        hash: String,
        code: Code,
        suspended: bool,
    ) -> Arc<Slot> {
        Arc::new(Slot {
            calls_ok: metrics::counter!(metric::PLUGIN_CALLS, "plugin" => name.clone(), "outcome" => "ok"),
            name,
            version,
            subscribe,
            manifest,
            hash,
            code,
            stats: PluginStats::default(),
            last_error: Mutex::new(None),
            suspended: watch::Sender::new(suspended),
            consumer: tokio::sync::Mutex::new(None),
            cancel: self.inner.cancel.child_token(),
        })
    }

    /// Records the slot, publishes its lifecycle event against the stored `state`, saves the
    /// state, and starts its consumer.
    async fn activate(
        &self,
        bus: &EventBus,
        slot: Arc<Slot>,
        state: Option<&PluginState>,
        kind: &str,
    ) -> Result<Option<&'static str>, HostError> {
        let store = Self::store(bus)?;
        let event = match state {
            None => Some("plugin.installed"),
            Some(s) if s.hash != slot.hash => Some("plugin.updated"),
            Some(_) => None,
        };
        store
            .save_plugin_state(PluginState {
                name: slot.name.clone(),
                kind: kind.to_owned(),
                version: slot.version.clone(),
                hash: slot.hash.clone(),
                suspended: slot.is_suspended(),
                updated_at: Timestamp::now(),
            })
            .await?;
        if let Some(ty) = event {
            self.announce(
                bus,
                ty,
                &slot.name,
                Some(&slot.version),
                state.map(|s| s.version.as_str()),
                kind,
            )
            .await;
        }
        self.inner
            .broken
            .write()
            .expect("broken lock")
            .remove(&slot.name);
        self.inner
            .slots
            .write()
            .expect("slots lock")
            .insert(slot.name.clone(), slot.clone());
        self.start_consumer(bus, &slot).await;
        Ok(event)
    }

    async fn announce(
        &self,
        bus: &EventBus,
        ty: &str,
        name: &str,
        version: Option<&str>,
        previous: Option<&str>,
        kind: &str,
    ) {
        let mut payload = serde_json::json!({ "name": name, "kind": kind });
        if let Some(v) = version {
            payload["version"] = v.into();
        }
        if let Some(p) = previous {
            payload["previousVersion"] = p.into();
        }
        let mut event = NewEvent::new(ty, payload);
        event.metadata = Some(BTreeMap::from([("source".into(), "plugin-host".into())]));
        if let Err(e) = bus.publish(event).await {
            tracing::error!(plugin = %name, r#type = ty, error = %e, "cannot publish a plugin lifecycle event");
        }
    }

    async fn start_consumer(&self, bus: &EventBus, slot: &Arc<Slot>) {
        if !slot.has_handler() {
            return;
        }
        let host = self.clone();
        let s = slot.clone();
        let consumer = bus.consumer_with_patterns(
            consumer_name(&slot.name),
            slot.subscribe.clone(),
            ConsumerOptions::default(),
            move |event| {
                let host = host.clone();
                let slot = s.clone();
                async move { host.deliver(&slot, event).await }
            },
        );
        *slot.consumer.lock().await = Some(consumer);
    }

    /// Stops a slot: its waits end, its consumer saves its cursor, its JS thread ends.
    async fn stop_slot(slot: &Slot) {
        slot.cancel.cancel();
        if let Some(consumer) = slot.consumer.lock().await.take() {
            consumer.stop().await;
        }
        if let Code::Rust(p) = &slot.code {
            p.stop().await;
        }
    }

    /// One event through a slot's handler, with retries, dead letter and suspension.
    async fn deliver(&self, slot: &Arc<Slot>, event: Arc<Event>) -> Result<(), String> {
        let mut parked = slot.suspended.subscribe();
        tokio::select! {
            _ = parked.wait_for(|s| !*s) => {}
            _ = slot.cancel.cancelled() => return Err("the plugin is stopping".into()),
        }
        let options = &self.inner.options;
        let mut backoff = options.min_backoff;
        let mut attempts = 0u32;
        let error = loop {
            attempts += 1;
            match self.handle_once(slot, &event).await {
                Ok(()) => {
                    slot.stats.handled.fetch_add(1, Ordering::Relaxed);
                    slot.stats.dead_letters_in_a_row.store(0, Ordering::Relaxed);
                    slot.stats.cursor.store(event.seq, Ordering::Relaxed);
                    if let Ok(bus) = self.bus() {
                        metrics::gauge!(metric::PLUGIN_QUEUE_DEPTH, "plugin" => slot.name.clone())
                            .set(bus.store().log().head().saturating_sub(event.seq) as f64);
                    }
                    return Ok(());
                }
                Err(e) if attempts > options.retries => break e,
                Err(e) => {
                    slot.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        plugin = %slot.name, event.id = %event.id, event.seq = event.seq, error = %e,
                        retry_in_ms = backoff.as_millis() as u64, "plugin failed on an event; retrying"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = slot.cancel.cancelled() => return Err("the plugin is stopping".into()),
                    }
                    backoff = (backoff * 2).min(options.max_backoff);
                }
            }
        };
        let bus = self.bus().map_err(|e| e.to_string())?;
        let store = Self::store(&bus).map_err(|e| e.to_string())?;
        store
            .add_dead_letter(DeadLetter {
                id: 0,
                plugin: slot.name.clone(),
                event_id: event.id.clone(),
                event_seq: event.seq,
                event_type: event.event_type.clone(),
                error: error.clone(),
                attempts,
                created_at: Timestamp::now(),
            })
            .await
            .map_err(|e| format!("cannot record the dead letter: {e}"))?;
        slot.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        slot.stats.cursor.store(event.seq, Ordering::Relaxed);
        metrics::counter!(metric::PLUGIN_DEAD_LETTERS, "plugin" => slot.name.clone()).increment(1);
        tracing::error!(
            plugin = %slot.name, event.id = %event.id, event.seq = event.seq, attempts, error = %error,
            "plugin failed on an event after its retries; dead-lettered"
        );
        let in_a_row = slot
            .stats
            .dead_letters_in_a_row
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if in_a_row >= u64::from(options.suspend_after) {
            self.suspend(&bus, slot).await;
        }
        Ok(())
    }

    async fn suspend(&self, bus: &EventBus, slot: &Slot) {
        slot.suspended.send_replace(true);
        metrics::counter!(metric::PLUGIN_SUSPENSIONS, "plugin" => slot.name.clone()).increment(1);
        tracing::error!(plugin = %slot.name, "plugin suspended after repeated failures; reload it to resume");
        if let Ok(store) = Self::store(bus) {
            let state = PluginState {
                name: slot.name.clone(),
                kind: slot.kind().to_owned(),
                version: slot.version.clone(),
                hash: slot.hash.clone(),
                suspended: true,
                updated_at: Timestamp::now(),
            };
            if let Err(e) = store.save_plugin_state(state).await {
                tracing::warn!(plugin = %slot.name, error = %e, "cannot record the suspension");
            }
        }
    }

    /// One call of the handler and, for JS, its effects.
    async fn handle_once(&self, slot: &Arc<Slot>, event: &Arc<Event>) -> Result<(), String> {
        slot.stats.calls.fetch_add(1, Ordering::Relaxed);
        let bus = self.bus().map_err(|e| e.to_string())?;
        match &slot.code {
            Code::Rust(plugin) => {
                let ctx = PluginContext::new(&slot.name, bus);
                let call = std::panic::AssertUnwindSafe(plugin.on_event(event.clone(), &ctx))
                    .catch_unwind()
                    .await;
                let error = match call {
                    Ok(Ok(())) => {
                        slot.calls_ok.increment(1);
                        return Ok(());
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "the handler panicked".to_owned(),
                };
                metrics::counter!(metric::PLUGIN_CALLS, "plugin" => slot.name.clone(), "outcome" => "error")
                    .increment(1);
                slot.failed(&error);
                Err(error)
            }
            Code::Js(js) => {
                let out = match js.call(Export::OnEvent, vec![event.to_json()]).await {
                    Ok(out) => out,
                    Err(e) => {
                        slot.call_failed(&e);
                        return Err(e.to_string());
                    }
                };
                slot.calls_ok.increment(1);
                slot.stats
                    .refused_publishes
                    .fetch_add(out.refused, Ordering::Relaxed);
                if let Err(e) = self
                    .apply(&bus, slot, event, out.publishes, out.kv_writes)
                    .await
                {
                    slot.failed(&e);
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    /// Publishes a successful call's events and persists its key-value writes.
    async fn apply(
        &self,
        bus: &EventBus,
        slot: &Slot,
        source: &Event,
        publishes: Vec<(String, String)>,
        kv_writes: Vec<(String, Option<String>)>,
    ) -> Result<(), String> {
        if !publishes.is_empty() {
            let n = publishes.len();
            let mut events = Vec::with_capacity(n);
            for (index, (ty, payload)) in publishes.into_iter().enumerate() {
                let payload = serde_json::value::RawValue::from_string(payload)
                    .map_err(|e| format!("ctx.publish: the payload is not JSON: {e}"))?;
                let mut metadata = BTreeMap::from([
                    ("source".to_owned(), format!("plugin:{}", slot.name)),
                    ("causationId".to_owned(), source.id.clone()),
                ]);
                metadata.insert(
                    "correlationId".to_owned(),
                    source
                        .metadata
                        .get("correlationId")
                        .cloned()
                        .unwrap_or_else(|| source.id.clone()),
                );
                events.push(NewEvent {
                    id: Some(follow_up_id(&slot.name, &source.id, index)),
                    event_type: ty,
                    payload: Some(payload),
                    project_id: source.project_id.clone(),
                    tenant_id: source.tenant_id.clone(),
                    user_id: source.user_id.clone(),
                    metadata: Some(metadata),
                    ..NewEvent::default()
                });
            }
            match bus.publish_batch(events).await {
                // A conflict means a previous attempt published these ids already.
                Ok(_) | Err(PublishError::Store(StoreError::Conflict { .. })) => {
                    slot.stats.published.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => return Err(format!("ctx.publish: {e}")),
            }
        }
        if !kv_writes.is_empty() {
            let store = Self::store(bus).map_err(|e| e.to_string())?;
            store
                .write_kv(&slot.name, kv_writes)
                .await
                .map_err(|e| format!("ctx.kv: {e}"))?;
        }
        Ok(())
    }

    fn set_broken(&self, name: &str, version: Option<String>, error: String) {
        self.inner.broken.write().expect("broken lock").insert(
            name.to_owned(),
            Broken {
                version,
                error,
                at: Timestamp::now(),
            },
        );
    }

    /// Reads `PLUGINS_DIR` again: installs new folders, swaps changed ones (keeping their
    /// cursors), uninstalls removed ones, and resumes suspended plugins.
    pub async fn reload(&self) -> Result<ReloadReport, HostError> {
        let bus = self.bus()?;
        let _guard = self.inner.lifecycle.lock().await;
        self.reload_locked(&bus, true).await
    }

    async fn reload_locked(&self, bus: &EventBus, resume: bool) -> Result<ReloadReport, HostError> {
        let mut report = ReloadReport::default();
        let store = Self::store(bus)?;
        let states: BTreeMap<String, PluginState> = store
            .plugin_states()
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        if resume {
            for slot in self.slots().into_iter().filter(|s| s.is_suspended()) {
                if matches!(slot.code, Code::Rust(_)) {
                    slot.stats.dead_letters_in_a_row.store(0, Ordering::Relaxed);
                    slot.suspended.send_replace(false);
                    self.save_state(store, &slot).await?;
                    report.resumed.push(slot.name.clone());
                }
            }
        }
        let Some(dir) = self.inner.options.dir.clone() else {
            return Ok(report);
        };
        let found = tokio::task::spawn_blocking(move || scan(&dir))
            .await
            .map_err(|e| HostError::Io(e.to_string()))?
            .map_err(HostError::Io)?;
        self.inner.broken.write().expect("broken lock").clear();
        for (name, folder) in &found {
            let folder = match folder {
                Ok(f) => f,
                Err((version, error)) => {
                    tracing::error!(plugin = %name, error = %error, "plugin folder is invalid");
                    self.set_broken(name, version.clone(), error.clone());
                    report.failed.insert(name.clone(), error.clone());
                    continue;
                }
            };
            let current = self.slot(name);
            if let Some(slot) = &current {
                if let Code::Rust(_) = slot.code {
                    let error = "a Rust plugin has this name".to_owned();
                    self.set_broken(name, Some(folder.manifest.version.clone()), error.clone());
                    report.failed.insert(name.clone(), error);
                    continue;
                }
                if slot.hash == folder.hash && !(resume && slot.is_suspended()) {
                    continue;
                }
            }
            let kv = store.load_kv(name).await?;
            let js = match JsPlugin::load(&folder.manifest, folder.source.clone(), kv).await {
                Ok(js) => js,
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "plugin does not load");
                    self.set_broken(name, Some(folder.manifest.version.clone()), e.0.clone());
                    report.failed.insert(name.clone(), e.0);
                    continue;
                }
            };
            let state = states.get(name);
            let suspended = !resume && state.is_some_and(|s| s.suspended && s.hash == folder.hash);
            let slot = self.new_slot(
                name.clone(),
                folder.manifest.version.clone(),
                folder.manifest.subscribe.clone(),
                Some(folder.manifest.clone()),
                folder.hash.clone(),
                Code::Js(js),
                suspended,
            );
            if let Some(old) = current {
                Self::stop_slot(&old).await;
            }
            match self.activate(bus, slot, state, "js").await? {
                Some("plugin.installed") => report.installed.push(name.clone()),
                Some(_) => report.updated.push(name.clone()),
                None => {
                    if state.is_some_and(|s| s.suspended) {
                        report.resumed.push(name.clone())
                    }
                }
            }
        }
        // Loaded JS plugins whose folder is gone, and installed ones never loaded since.
        let mut gone: Vec<String> = self
            .slots()
            .iter()
            .filter(|s| matches!(s.code, Code::Js(_)) && !found.contains_key(&s.name))
            .map(|s| s.name.clone())
            .collect();
        gone.extend(
            states
                .values()
                .filter(|s| s.kind == "js" && !found.contains_key(&s.name))
                .map(|s| s.name.clone()),
        );
        gone.sort();
        gone.dedup();
        for name in gone {
            let slot = self.inner.slots.write().expect("slots lock").remove(&name);
            let version = match &slot {
                Some(s) => {
                    Self::stop_slot(s).await;
                    Some(s.version.clone())
                }
                None => states.get(&name).map(|s| s.version.clone()),
            };
            store.forget_plugin(&name).await?;
            self.announce(
                bus,
                "plugin.uninstalled",
                &name,
                version.as_deref(),
                None,
                "js",
            )
            .await;
            report.uninstalled.push(name);
        }
        Ok(report)
    }

    async fn save_state(&self, store: &dyn PluginStore, slot: &Slot) -> Result<(), HostError> {
        store
            .save_plugin_state(PluginState {
                name: slot.name.clone(),
                kind: slot.kind().to_owned(),
                version: slot.version.clone(),
                hash: slot.hash.clone(),
                suspended: slot.is_suspended(),
                updated_at: Timestamp::now(),
            })
            .await?;
        Ok(())
    }

    /// Installs (or updates) a JS plugin from a bundle: checks that it loads, writes its folder
    /// into `PLUGINS_DIR`, and reloads. Returns whether it was new, and the reload's report.
    pub async fn install(
        &self,
        manifest: serde_json::Value,
        source: String,
    ) -> Result<(bool, ReloadReport), HostError> {
        let dir = self
            .inner
            .options
            .dir
            .clone()
            .ok_or(HostError::NoDirectory)?;
        let manifest_bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ManifestError::new("manifest", e.to_string()))?;
        let parsed = Manifest::parse(&manifest_bytes)?;
        if source.len() > MAX_SOURCE_BYTES {
            return Err(HostError::Load(format!(
                "index.js is {} bytes; the limit is {MAX_SOURCE_BYTES}",
                source.len()
            )));
        }
        if let Some(slot) = self.slot(&parsed.name)
            && matches!(slot.code, Code::Rust(_))
        {
            return Err(HostError::Compiled(parsed.name));
        }
        // Loading it once checks syntax, imports and exports before anything is written.
        drop(
            JsPlugin::load(&parsed, source.clone(), BTreeMap::new())
                .await
                .map_err(|e| HostError::Load(e.0))?,
        );
        let bus = self.bus()?;
        let _guard = self.inner.lifecycle.lock().await;
        let name = parsed.name.clone();
        let is_new = self.slot(&name).is_none();
        let write_dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            write_folder(&write_dir, &name, &manifest_bytes, source.as_bytes())
        })
        .await
        .map_err(|e| HostError::Io(e.to_string()))?
        .map_err(HostError::Io)?;
        let report = self.reload_locked(&bus, false).await?;
        if let Some(error) = report.failed.get(&parsed.name) {
            return Err(HostError::Load(error.clone()));
        }
        Ok((is_new, report))
    }

    /// Uninstalls the JS plugin `name`: removes its folder and reloads.
    pub async fn uninstall(&self, name: &str) -> Result<ReloadReport, HostError> {
        let dir = self
            .inner
            .options
            .dir
            .clone()
            .ok_or(HostError::NoDirectory)?;
        let bus = self.bus()?;
        let _guard = self.inner.lifecycle.lock().await;
        if let Some(slot) = self.slot(name)
            && matches!(slot.code, Code::Rust(_))
        {
            return Err(HostError::Compiled(name.to_owned()));
        }
        let known = self.slot(name).is_some()
            || self
                .inner
                .broken
                .read()
                .expect("broken lock")
                .contains_key(name);
        if check_name(name).is_err() || !known {
            return Err(HostError::NotFound(format!("no plugin is named `{name}`")));
        }
        let folder = dir.join(name);
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&folder) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", folder.display()))
            }
            _ => Ok(()),
        })
        .await
        .map_err(|e| HostError::Io(e.to_string()))?
        .map_err(HostError::Io)?;
        self.inner.broken.write().expect("broken lock").remove(name);
        self.reload_locked(&bus, false).await
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.inner
            .slots
            .read()
            .expect("slots lock")
            .get(name)
            .cloned()
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.inner
            .slots
            .read()
            .expect("slots lock")
            .values()
            .cloned()
            .collect()
    }

    /// The names of the loaded plugins.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .slots
            .read()
            .expect("slots lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Every plugin, loaded or failed, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let mut all: BTreeMap<String, PluginInfo> = self
            .slots()
            .iter()
            .map(|s| (s.name.clone(), s.info()))
            .collect();
        for (name, broken) in self.inner.broken.read().expect("broken lock").iter() {
            if all.contains_key(name) {
                // A broken update beside the running version: show the error on it.
                if let Some(info) = all.get_mut(name) {
                    info.last_error = Some(LastError {
                        message: format!("update not loaded: {}", broken.error),
                        at: broken.at,
                    });
                }
                continue;
            }
            all.insert(
                name.clone(),
                PluginInfo {
                    name: name.clone(),
                    version: broken.version.clone(),
                    kind: "js",
                    status: "failed",
                    subscribe: Vec::new(),
                    publish: Vec::new(),
                    middleware: false,
                    failure_policy: None,
                    limits: None,
                    exports: Vec::new(),
                    cursor: 0,
                    runs_handler: None,
                    counters: Slot::empty_counters(),
                    last_error: Some(LastError {
                        message: broken.error.clone(),
                        at: broken.at,
                    }),
                },
            );
        }
        all.into_values().collect()
    }

    /// One plugin.
    pub fn get(&self, name: &str) -> Option<PluginInfo> {
        self.list().into_iter().find(|p| p.name == name)
    }

    /// The names of suspended plugins.
    pub fn suspended(&self) -> Vec<String> {
        self.slots()
            .iter()
            .filter(|s| s.is_suspended())
            .map(|s| s.name.clone())
            .collect()
    }

    /// The names of plugins that failed to load.
    pub fn failed(&self) -> Vec<String> {
        self.inner
            .broken
            .read()
            .expect("broken lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Dead letters of `name`, oldest first.
    pub async fn dead_letters(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, HostError> {
        if self.slot(name).is_none() {
            return Err(HostError::NotFound(format!("no plugin is named `{name}`")));
        }
        let bus = self.bus()?;
        Ok(Self::store(&bus)?.dead_letters(name, after, limit).await?)
    }

    /// Runs dead letter `id` of `name` through the plugin once more; on success the dead
    /// letter is removed (`Ok(None)`), else the error is returned (`Ok(Some(error))`).
    pub async fn retry_dead_letter(
        &self,
        name: &str,
        id: u64,
    ) -> Result<Option<String>, HostError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| HostError::NotFound(format!("no plugin is named `{name}`")))?;
        let bus = self.bus()?;
        let store = Self::store(&bus)?;
        let letter = store
            .dead_letters(name, id.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| {
                HostError::NotFound(format!("plugin `{name}` has no dead letter {id}"))
            })?;
        let event = bus.get(&letter.event_id).await?.ok_or_else(|| {
            HostError::NotFound(format!("event `{}` is no longer stored", letter.event_id))
        })?;
        match self.handle_once(&slot, &event).await {
            Ok(()) => {
                store.delete_dead_letter(name, id).await?;
                Ok(None)
            }
            Err(e) => Ok(Some(e)),
        }
    }

    /// Stops every plugin (cursors saved) and lets go of the bus.
    async fn stop_plugins(&self) {
        self.inner.cancel.cancel();
        for slot in self.slots() {
            Self::stop_slot(&slot).await;
        }
        self.inner.slots.write().expect("slots lock").clear();
        *self.inner.bus.write().expect("bus lock") = None;
    }

    /// The publish-chain step that runs JS middleware plugins' `transform`.
    fn transform_step(&self) -> Arc<dyn Middleware> {
        Arc::new(TransformStep { host: self.clone() })
    }

    fn js_with(&self, export: Export, event_type: &str) -> Vec<Arc<Slot>> {
        self.slots()
            .into_iter()
            .filter(|s| {
                s.js().is_some_and(|j| j.exports(export))
                    && s.receives(event_type)
                    && !s.is_suspended()
                    && (export != Export::Transform
                        || s.manifest.as_ref().is_some_and(|m| m.middleware))
            })
            .collect()
    }
}

impl Slot {
    fn empty_counters() -> Counters {
        PluginStats::default().counters()
    }
}

impl PluginStats {
    fn counters(&self) -> Counters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            calls: get(&self.calls),
            handled: get(&self.handled),
            errors: get(&self.errors),
            timeouts: get(&self.timeouts),
            memory_errors: get(&self.memory_errors),
            retries: get(&self.retries),
            dead_letters: get(&self.dead_letters),
            refused_publishes: get(&self.refused_publishes),
            published: get(&self.published),
            transformed: get(&self.transformed),
            rejected: get(&self.rejected),
        }
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

/// Writes a plugin folder atomically: into a hidden sibling, then renamed into place.
fn write_folder(dir: &Path, name: &str, manifest: &[u8], source: &[u8]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let staging = dir.join(format!(".{name}.new-{unique}"));
    std::fs::create_dir(&staging).map_err(io)?;
    std::fs::write(staging.join("plugin.json"), manifest).map_err(io)?;
    std::fs::write(staging.join("index.js"), source).map_err(io)?;
    let target = dir.join(name);
    if target.exists() {
        let old = dir.join(format!(".{name}.old-{unique}"));
        std::fs::rename(&target, &old).map_err(io)?;
        std::fs::rename(&staging, &target).map_err(io)?;
        std::fs::remove_dir_all(&old).map_err(io)?;
    } else {
        std::fs::rename(&staging, &target).map_err(io)?;
    }
    Ok(())
}

/// The chain step of JS middleware plugins (the custom slot, after validation, security,
/// enrichment and logging). Plugins run in name order; each sees the previous one's output.
struct TransformStep {
    host: PluginHost,
}

#[async_trait]
impl Middleware for TransformStep {
    fn name(&self) -> &str {
        "plugins"
    }

    async fn handle(
        &self,
        event: &mut Event,
        _ctx: &PublishContext,
    ) -> Result<(), MiddlewareError> {
        for slot in self.host.js_with(Export::Transform, &event.event_type) {
            let Some(js) = slot.js() else { continue };
            let Some(manifest) = &slot.manifest else {
                continue;
            };
            slot.stats.calls.fetch_add(1, Ordering::Relaxed);
            let error = match js.call(Export::Transform, vec![event.to_json()]).await {
                Ok(out) => {
                    slot.calls_ok.increment(1);
                    match apply_transform(event, out.value.as_deref()) {
                        Ok(true) => {
                            slot.stats.transformed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Ok(false) => {
                            slot.stats.rejected.fetch_add(1, Ordering::Relaxed);
                            return Err(Rejection {
                                kind: RejectKind::Plugin,
                                message: format!("plugin `{}` rejected the event", slot.name),
                                errors: Vec::new(),
                            }
                            .into());
                        }
                        Err(e) => {
                            slot.failed(&e);
                            e
                        }
                    }
                }
                Err(e) => {
                    slot.call_failed(&e);
                    e.to_string()
                }
            };
            tracing::warn!(plugin = %slot.name, error = %error, policy = ?manifest.failure_policy, "middleware plugin failed");
            match manifest.failure_policy {
                FailurePolicy::Pass => continue,
                FailurePolicy::Reject => {
                    return Err(MiddlewareError::Failed {
                        middleware: format!("plugin:{}", slot.name),
                        message: error,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Applies a `transform` result: `null`/`false` rejects (`Ok(false)`); an object may replace
/// `payload` and `metadata` (other fields are ignored); `undefined` keeps the event.
fn apply_transform(event: &mut Event, value: Option<&str>) -> Result<bool, String> {
    let Some(value) = value else { return Ok(true) };
    let parsed: serde_json::Value =
        serde_json::from_str(value).map_err(|e| format!("transform returned bad JSON: {e}"))?;
    let serde_json::Value::Object(mut object) = parsed else {
        return match parsed {
            serde_json::Value::Null | serde_json::Value::Bool(false) => Ok(false),
            _ => Err("transform must return the event, null/false (reject) or nothing".into()),
        };
    };
    if let Some(payload) = object.remove("payload") {
        event.payload = serde_json::value::to_raw_value(&payload).map_err(|e| e.to_string())?;
    }
    if let Some(metadata) = object.remove("metadata") {
        event.metadata = serde_json::from_value(metadata)
            .map_err(|e| format!("transform returned invalid metadata: {e}"))?;
    }
    Ok(true)
}

/// Shapes webhook bodies with the first plugin (by name) that exports `webhookPayload` and
/// subscribes to the event's type.
#[async_trait]
impl crate::transport::webhook::PayloadShaper for PluginHost {
    fn shapes(&self, event_type: &str) -> bool {
        !self.js_with(Export::WebhookPayload, event_type).is_empty()
    }

    async fn shape(&self, event: &Event, endpoint: &Endpoint) -> Result<Option<Bytes>, String> {
        let endpoint_json = serde_json::json!({
            "id": endpoint.id,
            "url": endpoint.url,
            "description": endpoint.description,
            "eventTypes": endpoint.event_types,
            "projectId": endpoint.project_id,
            "tenantId": endpoint.tenant_id,
        })
        .to_string();
        for slot in self.js_with(Export::WebhookPayload, &event.event_type) {
            let Some(js) = slot.js() else { continue };
            slot.stats.calls.fetch_add(1, Ordering::Relaxed);
            match js
                .call(
                    Export::WebhookPayload,
                    vec![event.to_json(), endpoint_json.clone()],
                )
                .await
            {
                Ok(out) => {
                    slot.calls_ok.increment(1);
                    return Ok(out
                        .value
                        .filter(|v| v != "null")
                        .map(|v| Bytes::from(v.into_bytes())));
                }
                Err(e) => {
                    slot.call_failed(&e);
                    return Err(format!("plugin `{}` webhookPayload: {e}", slot.name));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_ids_are_stable_and_distinct() {
        let a = follow_up_id("audit", "e1", 0);
        assert_eq!(a, follow_up_id("audit", "e1", 0));
        assert_ne!(a, follow_up_id("audit", "e1", 1));
        assert_ne!(a, follow_up_id("other", "e1", 0));
        assert!(a.len() <= crate::core::event::MAX_ID_LEN);
    }

    #[test]
    fn transform_results() {
        let mut e = NewEvent::new("a.b", serde_json::json!({"secret": 1}))
            .into_event(Timestamp::now())
            .unwrap();
        assert!(
            apply_transform(&mut e, Some(r#"{"payload":{"secret":"***"},"type":"x.y"}"#)).unwrap()
        );
        assert_eq!(e.payload.get(), r#"{"secret":"***"}"#);
        assert_eq!(e.event_type, "a.b");
        assert!(!apply_transform(&mut e, Some("null")).unwrap());
        assert!(!apply_transform(&mut e, Some("false")).unwrap());
        assert!(apply_transform(&mut e, None).unwrap());
        assert!(apply_transform(&mut e, Some("3")).is_err());
    }
}
