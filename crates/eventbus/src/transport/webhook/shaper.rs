//! [`PayloadShaper`]: what the transport asks its host for a webhook body other than the
//! event's JSON (the plugin host implements it with JavaScript plugins' `webhookPayload`).

use bytes::Bytes;

use crate::core::event::Event;
use crate::store::webhook::Endpoint;

/// Shapes webhook bodies (JavaScript plugins' `webhookPayload(event, endpoint)`).
///
/// A shaped body is signed and sent instead of the event's JSON; `Ok(None)` keeps the event's
/// JSON. An `Err` fails the attempt (no request is sent), which is retried like any failed
/// attempt: a body meant to hide fields is never replaced by the unshaped event.
#[async_trait::async_trait]
pub trait PayloadShaper: Send + Sync + 'static {
    /// Whether any shaper applies to `event_type` (cheap; checked before every attempt).
    fn shapes(&self, event_type: &str) -> bool;

    /// The body for `event` sent to `endpoint`.
    async fn shape(&self, event: &Event, endpoint: &Endpoint) -> Result<Option<Bytes>, ShapeError>;
}

/// Why a shaper produced no body: which shaper, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shaper}: {reason}")]
pub struct ShapeError {
    /// The shaper that failed (e.g. ``plugin `redact` webhookPayload``).
    pub shaper: String,
    /// What went wrong.
    pub reason: String,
}
