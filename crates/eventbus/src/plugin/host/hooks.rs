//! The host's hooks into the pipeline: Rust plugins' middleware and the `plugins` step (JS
//! `transform`) in the publish chain's custom slot, and webhook bodies shaped by JS
//! `webhookPayload` (the host is the webhook transport's [`PayloadShaper`]). Suspended plugins
//! take no part.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;

use super::PluginHost;
use super::slot::Slot;
use crate::core::event::Event;
use crate::core::middleware::{Middleware, MiddlewareError, PublishContext, RejectKind, Rejection};
use crate::plugin::js::Export;
use crate::plugin::manifest::FailurePolicy;
use crate::store::webhook::Endpoint;
use crate::transport::webhook::{PayloadShaper, ShapeError};

impl PluginHost {
    /// The middleware steps of the Rust plugins, for the chain's custom slot.
    pub(super) fn rust_middleware(&self) -> Vec<Arc<dyn Middleware>> {
        self.inner
            .rust
            .iter()
            .filter_map(|p| p.middleware())
            .collect()
    }

    /// The publish-chain step that runs JS middleware plugins' `transform`.
    pub(super) fn transform_step(&self) -> Arc<dyn Middleware> {
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
                            let e = e.to_string();
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
fn apply_transform(event: &mut Event, value: Option<&str>) -> Result<bool, TransformError> {
    let Some(value) = value else { return Ok(true) };
    let parsed: serde_json::Value = serde_json::from_str(value).map_err(TransformError::BadJson)?;
    let serde_json::Value::Object(mut object) = parsed else {
        return match parsed {
            serde_json::Value::Null | serde_json::Value::Bool(false) => Ok(false),
            _ => Err(TransformError::NotAnEvent),
        };
    };
    if let Some(payload) = object.remove("payload") {
        event.payload =
            serde_json::value::to_raw_value(&payload).map_err(TransformError::Payload)?;
    }
    if let Some(metadata) = object.remove("metadata") {
        event.metadata = serde_json::from_value(metadata).map_err(TransformError::Metadata)?;
    }
    Ok(true)
}

/// Why a `transform` result cannot be applied; the text is the plugin's last error and, under
/// `failurePolicy: reject`, the publisher's error message.
#[derive(Debug, thiserror::Error)]
enum TransformError {
    /// The result is not JSON.
    #[error("transform returned bad JSON: {0}")]
    BadJson(serde_json::Error),
    /// The result is neither an event, `null`/`false` nor `undefined`.
    #[error("transform must return the event, null/false (reject) or nothing")]
    NotAnEvent,
    /// The new payload cannot be stored.
    #[error(transparent)]
    Payload(serde_json::Error),
    /// The new metadata is not a map of strings.
    #[error("transform returned invalid metadata: {0}")]
    Metadata(serde_json::Error),
}

/// Shapes webhook bodies with the first plugin (by name) that exports `webhookPayload` and
/// subscribes to the event's type.
#[async_trait]
impl PayloadShaper for PluginHost {
    fn shapes(&self, event_type: &str) -> bool {
        !self.js_with(Export::WebhookPayload, event_type).is_empty()
    }

    async fn shape(&self, event: &Event, endpoint: &Endpoint) -> Result<Option<Bytes>, ShapeError> {
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
                    return Err(ShapeError {
                        shaper: format!("plugin `{}` webhookPayload", slot.name),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::NewEvent;
    use crate::core::time::Timestamp;

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
