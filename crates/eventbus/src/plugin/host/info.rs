//! What the host knows and shows of each plugin: [`PluginInfo`] for the API (loaded plugins and
//! folders that did not load), and the state transitions it records: suspension after repeated
//! dead letters, a plugin's stored state, and load failures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::slot::{Code, LastError, PluginStats, Slot};
use super::{HostError, PluginHost};
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::metric;
use crate::plugin::manifest::{FailurePolicy, Limits};
use crate::store::plugin::{PluginState, PluginStore};

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

/// A plugin folder that did not load.
#[derive(Debug, Clone)]
pub(super) struct Broken {
    pub(super) version: Option<String>,
    pub(super) error: String,
    pub(super) at: Timestamp,
}

impl Slot {
    /// The plugin as the API shows it.
    fn info(&self) -> PluginInfo {
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
            cursor: self.stats.cursor.load(Ordering::Relaxed),
            runs_handler: self
                .consumer
                .try_lock()
                .ok()
                .and_then(|c| c.as_ref().map(|c| c.stats().leased.load(Ordering::Relaxed))),
            counters: self.stats.counters(),
            last_error: self.last_error.lock().expect("last error").clone(),
        }
    }

    /// The counters of a plugin that never ran.
    fn empty_counters() -> Counters {
        PluginStats::default().counters()
    }
}

impl PluginStats {
    /// The counters as the API shows them.
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

impl PluginHost {
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

    pub(super) async fn suspend(&self, slot: &Slot) {
        slot.suspended.send_replace(true);
        metrics::counter!(metric::PLUGIN_SUSPENSIONS, "plugin" => slot.name.clone()).increment(1);
        tracing::error!(plugin = %slot.name, "plugin suspended after repeated failures; reload it to resume");
        {
            let store = self.store();
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

    pub(super) async fn save_state(
        &self,
        store: &dyn PluginStore,
        slot: &Slot,
    ) -> Result<(), HostError> {
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

    pub(super) fn set_broken(&self, name: &str, version: Option<String>, error: String) {
        self.inner.broken.write().expect("broken lock").insert(
            name.to_owned(),
            Broken {
                version,
                error,
                at: Timestamp::now(),
            },
        );
    }
}
