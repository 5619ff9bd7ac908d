//! A loaded plugin: its code (JavaScript or Rust), its counters, its suspension flag and its
//! consumer. The other rooms read and update slots; the host's map holds one per plugin name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::PluginHost;
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::metric;
use crate::plugin::Plugin;
use crate::plugin::js::{CallError, Export, JsPlugin};
use crate::plugin::manifest::Manifest;
use crate::transport::consumer::Consumer;

/// Counters of one plugin since it was (re)loaded.
#[derive(Debug, Default)]
pub struct PluginStats {
    pub(super) calls: AtomicU64,
    pub(super) handled: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) memory_errors: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) dead_letters: AtomicU64,
    pub(super) refused_publishes: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) transformed: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) dead_letters_in_a_row: AtomicU64,
    pub(super) cursor: AtomicU64,
}

/// The last error of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// What happened.
    pub message: String,
    /// When.
    pub at: Timestamp,
}

/// A plugin's code.
pub(super) enum Code {
    Js(JsPlugin),
    Rust(Arc<dyn Plugin>),
}

/// A loaded plugin.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) subscribe: Vec<Pattern>,
    pub(super) manifest: Option<Manifest>,
    pub(super) hash: String,
    pub(super) code: Code,
    pub(super) stats: PluginStats,
    pub(super) last_error: Mutex<Option<LastError>>,
    pub(super) suspended: watch::Sender<bool>,
    pub(super) consumer: tokio::sync::Mutex<Option<Consumer>>,
    /// Cancels backoff waits and parked handlers when the slot is unloaded.
    pub(super) cancel: CancellationToken,
    pub(super) calls_ok: metrics::Counter,
}

impl Slot {
    pub(super) fn kind(&self) -> &'static str {
        match self.code {
            Code::Js(_) => "js",
            Code::Rust(_) => "rust",
        }
    }

    pub(super) fn js(&self) -> Option<&JsPlugin> {
        match &self.code {
            Code::Js(js) => Some(js),
            Code::Rust(_) => None,
        }
    }

    pub(super) fn receives(&self, event_type: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(event_type))
    }

    pub(super) fn is_suspended(&self) -> bool {
        *self.suspended.borrow()
    }

    pub(super) fn has_handler(&self) -> bool {
        match &self.code {
            Code::Js(js) => js.exports(Export::OnEvent) && !self.subscribe.is_empty(),
            Code::Rust(_) => !self.subscribe.is_empty(),
        }
    }

    pub(super) fn failed(&self, message: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("last error") = Some(LastError {
            message: message.to_owned(),
            at: Timestamp::now(),
        });
    }

    pub(super) fn call_failed(&self, e: &CallError) {
        match e {
            CallError::Timeout(_) => self.stats.timeouts.fetch_add(1, Ordering::Relaxed),
            CallError::OutOfMemory(_) => self.stats.memory_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        metrics::counter!(metric::PLUGIN_CALLS, "plugin" => self.name.clone(), "outcome" => e.outcome())
            .increment(1);
        self.failed(&e.to_string());
    }
}

impl PluginHost {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_slot(
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
}
