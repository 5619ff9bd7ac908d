//! Transports: how committed events leave the bus.
//!
//! Layout: `internal` (in-process subscribers), `consumer` (durable named consumers), `group`
//! (consumer groups: shared pull consumers with long-poll, behind `/v1/consumers`), `sse` (the
//! fan-out hub behind `GET /v1/stream`), `webhook` (signed, retried webhooks).
//! Every transport reads the log by `seq` from a cursor; the commit log only wakes them and
//! carries hot events, so a transport that falls behind reads the store instead of losing events.

pub mod consumer;
pub mod group;
pub mod internal;
pub mod sse;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::core::event::Event;
use crate::core::filter::EventFilter;
use crate::store::EventStore;

/// Events read per step when tailing the log.
pub(crate) const READ_CHUNK: usize = 512;
/// Pause before retrying a failed store read.
pub(crate) const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Calls `on_event` for every event after `cursor`, in `seq` order, as they commit, until
/// `cancel` fires. Store errors are logged and retried; nothing is skipped.
pub(crate) async fn follow(
    store: &dyn EventStore,
    mut cursor: u64,
    cancel: &CancellationToken,
    mut on_event: impl FnMut(&Arc<Event>),
) {
    let mut heads = store.log().watch();
    let all = EventFilter::default();
    loop {
        heads.borrow_and_update();
        loop {
            match store.tail(cursor, &all, READ_CHUNK).await {
                Ok(read) => {
                    for event in &read.events {
                        on_event(event);
                    }
                    cursor = cursor.max(read.next);
                    if read.at_end {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "delivery cannot read the store; retrying");
                    if sleep_or_cancel(cancel, RETRY_DELAY).await {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = heads.changed() => if changed.is_err() { return },
        }
    }
}

/// Sleeps; `true` when cancelled first.
pub(crate) async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
