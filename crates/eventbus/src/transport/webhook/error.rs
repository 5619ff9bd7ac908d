//! [`WebhookError`]: how the webhook API's calls fail (an invalid field, an unknown endpoint or
//! delivery, the store), with the constructors the rest of the transport uses.

use crate::core::event::FieldError;
use crate::store::StoreError;

/// Webhook API failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A field of the request is invalid.
    #[error("{0}")]
    Invalid(FieldError),
    /// No such endpoint or delivery.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The field `field` is invalid for `message`.
pub(super) fn invalid(field: &str, message: impl Into<String>) -> WebhookError {
    WebhookError::Invalid(FieldError::new(field, message))
}

/// No endpoint has `id`.
pub(super) fn no_endpoint(id: &str) -> WebhookError {
    WebhookError::NotFound(format!("no webhook endpoint has id `{id}`"))
}

/// No delivery has `id`.
pub(super) fn no_delivery(id: u64) -> WebhookError {
    WebhookError::NotFound(format!("no delivery has id `{id}`"))
}
