//! The host's lifecycle: starting the plugins with the bus, reloading `PLUGINS_DIR`, installing
//! and uninstalling JavaScript plugins, and announcing each change with a lifecycle event.
//!
//! Reloads, installs and uninstalls hold the host's lifecycle lock, so they run one at a time.
//! A changed plugin is loaded before the old one is stopped (a broken update leaves the old code
//! running); the stored plugin states tell an update made while the bus was down from a first
//! install, and keep a suspended plugin suspended across restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::folder::{FolderError, remove_folder, scan, write_folder};
use super::slot::{Code, Slot};
use super::{HostError, PluginHost};
use crate::bus::EventBus;
use crate::core::event::NewEvent;
use crate::core::time::Timestamp;
use crate::plugin::PluginContext;
use crate::plugin::js::JsPlugin;
use crate::plugin::manifest::{MAX_SOURCE_BYTES, Manifest, ManifestError, check_name};
use crate::store::plugin::PluginState;

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

impl PluginHost {
    /// Starts the Rust plugins and loads the JS plugins (suspended ones stay suspended).
    pub(super) async fn start_plugins(&self, bus: EventBus) -> Result<(), HostError> {
        *self.inner.bus.write().expect("bus lock") = Some(bus.clone());
        let _guard = self.inner.lifecycle.lock().await;
        let store = self.store();
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

    /// Records the slot, publishes its lifecycle event against the stored `state`, saves the
    /// state, and starts its consumer.
    async fn activate(
        &self,
        bus: &EventBus,
        slot: Arc<Slot>,
        state: Option<&PluginState>,
        kind: &str,
    ) -> Result<Option<&'static str>, HostError> {
        let store = self.store();
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

    /// Reads `PLUGINS_DIR` again: installs new folders, swaps changed ones (keeping their
    /// cursors), uninstalls removed ones, and resumes suspended plugins.
    pub async fn reload(&self) -> Result<ReloadReport, HostError> {
        let bus = self.bus()?;
        let _guard = self.inner.lifecycle.lock().await;
        self.reload_locked(&bus, true).await
    }

    async fn reload_locked(&self, bus: &EventBus, resume: bool) -> Result<ReloadReport, HostError> {
        let mut report = ReloadReport::default();
        let store = self.store();
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
            .map_err(FolderError::Task)??;
        self.inner.broken.write().expect("broken lock").clear();
        for (name, folder) in &found {
            let folder = match folder {
                Ok(f) => f,
                Err(bad) => {
                    let error = bad.error.to_string();
                    tracing::error!(plugin = %name, error = %error, "plugin folder is invalid");
                    self.set_broken(name, bad.version.clone(), error.clone());
                    report.failed.insert(name.clone(), error);
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
        .map_err(FolderError::Task)??;
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
        tokio::task::spawn_blocking(move || remove_folder(&folder))
            .await
            .map_err(FolderError::Task)??;
        self.inner.broken.write().expect("broken lock").remove(name);
        self.reload_locked(&bus, false).await
    }
}
