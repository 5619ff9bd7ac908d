//! The run loop: each plugin with a handler runs as the durable consumer `plugin:<name>`; the
//! host wraps every event in retries with backoff, dead-letters it after the last retry, and
//! suspends the plugin after repeated dead letters. A JS call's effects (`ctx.publish`,
//! `ctx.kv`) are applied only after the call succeeded, the events with ids derived from the
//! source event so a retry publishes the same ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;
use sha2::{Digest, Sha256};

use super::slot::{Code, Slot};
use super::{HostError, PluginHost};
use crate::bus::{EventBus, PublishError};
use crate::core::event::{Event, NewEvent};
use crate::core::time::Timestamp;
use crate::metric;
use crate::plugin::js::{CallError, Export};
use crate::plugin::{PluginContext, PluginError};
use crate::store::StoreError;
use crate::store::plugin::{DeadLetter, consumer_name};
use crate::transport::consumer::ConsumerOptions;

/// Why one call of a plugin's handler failed. The text is the plugin's last error, the retry's
/// log line, the dead letter's `error` and the answer of a dead letter's retry.
#[derive(Debug, thiserror::Error)]
enum HandleError {
    /// The host is not running, or the store has no plugin tables.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The Rust handler returned an error.
    #[error(transparent)]
    Plugin(PluginError),
    /// The Rust handler panicked.
    #[error("the handler panicked")]
    Panicked,
    /// The JavaScript call failed (exception, time, memory, thread).
    #[error(transparent)]
    Call(CallError),
    /// A `ctx.publish` payload is not JSON.
    #[error("ctx.publish: the payload is not JSON: {0}")]
    PayloadNotJson(serde_json::Error),
    /// Publishing the call's events failed.
    #[error("ctx.publish: {0}")]
    Publish(PublishError),
    /// Saving the call's key-value writes failed.
    #[error("ctx.kv: {0}")]
    Kv(StoreError),
}

/// Why an event did not get through a plugin's consumer (which then tries it again).
#[derive(Debug, thiserror::Error)]
enum DeliverError {
    /// The plugin is being unloaded.
    #[error("the plugin is stopping")]
    Stopping,
    /// The host is not running, or the store has no plugin tables.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The event failed its retries, but its dead letter could not be stored.
    #[error("cannot record the dead letter: {0}")]
    DeadLetter(StoreError),
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

impl PluginHost {
    pub(super) async fn start_consumer(&self, bus: &EventBus, slot: &Arc<Slot>) {
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
                async move { host.deliver(&slot, event).await.map_err(|e| e.to_string()) }
            },
        );
        *slot.consumer.lock().await = Some(consumer);
    }

    /// Stops a slot: its waits end, its consumer saves its cursor, its JS thread ends.
    pub(super) async fn stop_slot(slot: &Slot) {
        slot.cancel.cancel();
        if let Some(consumer) = slot.consumer.lock().await.take() {
            consumer.stop().await;
        }
        if let Code::Rust(p) = &slot.code {
            p.stop().await;
        }
    }

    /// Stops every plugin (cursors saved) and lets go of the bus.
    pub(super) async fn stop_plugins(&self) {
        self.inner.cancel.cancel();
        for slot in self.slots() {
            Self::stop_slot(&slot).await;
        }
        self.inner.slots.write().expect("slots lock").clear();
        *self.inner.bus.write().expect("bus lock") = None;
    }

    /// One event through a slot's handler, with retries, dead letter and suspension.
    async fn deliver(&self, slot: &Arc<Slot>, event: Arc<Event>) -> Result<(), DeliverError> {
        let mut parked = slot.suspended.subscribe();
        tokio::select! {
            _ = parked.wait_for(|s| !*s) => {}
            _ = slot.cancel.cancelled() => return Err(DeliverError::Stopping),
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
                        _ = slot.cancel.cancelled() => return Err(DeliverError::Stopping),
                    }
                    backoff = (backoff * 2).min(options.max_backoff);
                }
            }
        };
        // A host that has stopped dead-letters nothing: the event is retried after a restart.
        self.bus()?;
        let store = self.store();
        store
            .add_dead_letter(DeadLetter {
                id: 0,
                plugin: slot.name.clone(),
                event_id: event.id.clone(),
                event_seq: event.seq,
                event_type: event.event_type.clone(),
                error: error.to_string(),
                attempts,
                created_at: Timestamp::now(),
            })
            .await
            .map_err(DeliverError::DeadLetter)?;
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
            self.suspend(slot).await;
        }
        Ok(())
    }

    /// One call of the handler and, for JS, its effects.
    async fn handle_once(&self, slot: &Arc<Slot>, event: &Arc<Event>) -> Result<(), HandleError> {
        slot.stats.calls.fetch_add(1, Ordering::Relaxed);
        let bus = self.bus()?;
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
                    Ok(Err(e)) => HandleError::Plugin(e),
                    Err(_) => HandleError::Panicked,
                };
                metrics::counter!(metric::PLUGIN_CALLS, "plugin" => slot.name.clone(), "outcome" => "error")
                    .increment(1);
                slot.failed(&error.to_string());
                Err(error)
            }
            Code::Js(js) => {
                let out = match js.call(Export::OnEvent, vec![event.to_json()]).await {
                    Ok(out) => out,
                    Err(e) => {
                        slot.call_failed(&e);
                        return Err(HandleError::Call(e));
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
                    slot.failed(&e.to_string());
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
    ) -> Result<(), HandleError> {
        if !publishes.is_empty() {
            let n = publishes.len();
            let mut events = Vec::with_capacity(n);
            for (index, (ty, payload)) in publishes.into_iter().enumerate() {
                let payload = serde_json::value::RawValue::from_string(payload)
                    .map_err(HandleError::PayloadNotJson)?;
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
                Err(e) => return Err(HandleError::Publish(e)),
            }
        }
        if !kv_writes.is_empty() {
            let store = self.store();
            store
                .write_kv(&slot.name, kv_writes)
                .await
                .map_err(HandleError::Kv)?;
        }
        Ok(())
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
        // Refused once the host has stopped, like every other call.
        self.bus()?;
        Ok(self.store().dead_letters(name, after, limit).await?)
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
        let store = self.store();
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
            Err(e) => Ok(Some(e.to_string())),
        }
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
}
