//! [`StatusSink`]: where the transport publishes its status events (an endpoint disabled for
//! failing is announced as `integration.status_changed`). The bus implements it; the
//! transport knows nothing else of the bus.

use crate::core::event::NewEvent;

/// Publishes the transport's status events.
#[async_trait::async_trait]
pub trait StatusSink: Send + Sync + 'static {
    /// Publishes `event` as a trusted in-process publisher; `Ok` once it is stored, or was
    /// already (an event with its id and content: the transport publishes an announcement again
    /// after a restart and relies on this to store it once). An event with its id and other
    /// content is [`StatusError::Exists`]; one that can never be stored as it is,
    /// [`StatusError::Refused`]; any other error is retried.
    async fn publish_status(&self, event: NewEvent) -> Result<(), StatusError>;
}

/// Why a status event was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The bus is gone.
    #[error("the bus has shut down")]
    Closed,
    /// An event with the same id but other content is stored already.
    #[error("an event with this id is stored already, with other content")]
    Exists,
    /// Refused for good (invalid, or rejected by a middleware); what is wrong.
    #[error("refused: {0}")]
    Refused(String),
    /// The publish failed.
    #[error(transparent)]
    Publish(Box<dyn std::error::Error + Send + Sync>),
}
