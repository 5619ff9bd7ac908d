//! Announcements of endpoints disabled for failing: an `integration.status_changed` event each,
//! published through the [`StatusSink`](super::StatusSink) after the disabling committed.
//!
//! One task per worker. It first announces every endpoint it finds disabled for failing (a
//! previous run may have stopped between the disabling and its announcement), then each endpoint
//! the recorder disables. An announcement's id is made of the endpoint's id and the start of the
//! failure streak that disabled it, so announcing again publishes a duplicate the store
//! recognises: **at least once, under one id**, and a crash at any point loses none. (Records of
//! attempts that end after the disabling leave the streak as it was, so the id and the payload
//! stay those of the first announcement.)
//!
//! A publish that fails for a while (the store unavailable) is retried with a growing delay until
//! it succeeds or the worker stops; one refused for good (the type's schema or a plugin rejects
//! it) is logged and dropped, and so is one whose id is stored with other content (the endpoint's
//! URL changed since it was announced). Neither the claims nor the records wait for it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::shared::Shared;
use super::status::StatusError;
use crate::core::event::NewEvent;
use crate::store::webhook::Endpoint;
use crate::transport::{RETRY_DELAY, sleep_or_cancel};

/// The `disabled_reason` of an endpoint the worker disabled.
const FAILING: &str = "failing";

/// Longest wait between two tries of a failing publish.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Starts the task; it stops when `cancel` fires. Endpoints sent to it are announced.
pub(super) fn start(
    shared: Arc<Shared>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> mpsc::UnboundedSender<Endpoint> {
    let (tx, rx) = mpsc::unbounded_channel();
    tasks.spawn(run(shared, rx, cancel));
    tx
}

async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Endpoint>,
    cancel: CancellationToken,
) {
    let list = loop {
        match shared.store.list_endpoints().await {
            Ok((list, _)) => break list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the webhook endpoints to announce; retrying");
                if sleep_or_cancel(&cancel, RETRY_DELAY).await {
                    return;
                }
            }
        }
    };
    let found: Vec<Endpoint> = list
        .into_iter()
        .filter(|ep| ep.disabled && ep.disabled_reason.as_deref() == Some(FAILING))
        .collect();
    for ep in &found {
        if !announce(&shared, ep, &cancel).await {
            return;
        }
    }
    tracing::info!(
        endpoints = found.len(),
        "webhook endpoints found disabled for failing are announced"
    );
    loop {
        let ep = tokio::select! {
            _ = cancel.cancelled() => return,
            ep = rx.recv() => match ep {
                Some(ep) => ep,
                None => return,
            },
        };
        if !announce(&shared, &ep, &cancel).await {
            return;
        }
    }
}

/// The id of the announcement that `ep` was disabled for failing: one per endpoint and failure
/// streak. `None` without a streak (an endpoint disabled before streaks were kept as they were
/// at the disabling).
fn announcement_id(ep: &Endpoint) -> Option<String> {
    let streak = ep.failing_since?.as_micros();
    Some(format!("webhook-disabled-{}-{streak}", ep.id))
}

/// Publishes the announcement of `ep`; `false` when the worker stopped first (the next start
/// announces it).
async fn announce(shared: &Shared, ep: &Endpoint, cancel: &CancellationToken) -> bool {
    let Some(id) = announcement_id(ep) else {
        tracing::warn!(endpoint = %ep.id, "webhook endpoint disabled for failing without a failure streak; not announced");
        return true;
    };
    let mut event = NewEvent::new(
        "integration.status_changed",
        serde_json::json!({
            "integration": "webhook",
            "endpointId": ep.id,
            "url": ep.url,
            "status": "disabled",
            "reason": FAILING,
            "failingSince": ep.failing_since,
            "failures": ep.failure_count,
        }),
    );
    event.id = Some(id);
    event.project_id = ep.project_id.clone();
    event.tenant_id = ep.tenant_id.clone();
    let mut delay = RETRY_DELAY;
    loop {
        match shared.status.publish_status(event.clone()).await {
            Ok(()) => return true,
            Err(StatusError::Exists) => {
                tracing::info!(endpoint = %ep.id, "the webhook endpoint's announcement is stored already, with other content (the endpoint changed since)");
                return true;
            }
            Err(StatusError::Refused(why)) => {
                tracing::error!(endpoint = %ep.id, reason = %why, "the announcement of a disabled webhook endpoint was refused; not announced");
                return true;
            }
            Err(StatusError::Closed) => return false,
            Err(e) => {
                tracing::warn!(error = %e, endpoint = %ep.id, retry_in = ?delay, "cannot announce a disabled webhook endpoint; retrying");
                if sleep_or_cancel(cancel, delay).await {
                    return false;
                }
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}
