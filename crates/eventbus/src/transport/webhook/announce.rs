//! Announcements of endpoints disabled for failing: an `integration.status_changed` event each,
//! published through the [`StatusSink`] after the disabling committed.
//!
//! One task per worker. It first announces every endpoint it finds disabled for failing (a
//! previous run may have stopped between the disabling and its announcement), then each endpoint
//! the recorder disables, until the recorder has ended (so disablings recorded while the worker
//! drains are announced too) or the drain is cut short. An announcement's id is made of the
//! endpoint's id and the start of the failure streak that disabled it, so announcing again
//! publishes a duplicate the store recognises: **at least once, under one id**, and a crash at any
//! point loses none (the next start announces it). Records of attempts that end after the
//! disabling leave the streak as it was, so the id and the payload stay those of the first
//! announcement.
//!
//! A publish that fails (the store unavailable) is tried [`TRIES`] times, the waits doubling
//! from [`RETRY_DELAY`], then left to the next start, so one endpoint cannot hold back the
//! others; one refused for good (the type's schema or a plugin rejects it) is logged and dropped,
//! and so is one whose id is stored with other content (the endpoint changed since it was
//! announced). Neither the claims nor the records wait for an announcement.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::status::{StatusError, StatusSink};
use crate::core::event::NewEvent;
use crate::store::webhook::{Endpoint, WebhookStore};
use crate::transport::{RETRY_DELAY, sleep_or_cancel};

/// The `disabled_reason` of an endpoint the worker disabled.
const FAILING: &str = "failing";

/// Tries of one announcement before it is left to the next start (about 25 s of waits).
const TRIES: u32 = 8;

/// Starts the task. The startup scan stops at `cancel`; the task ends when every sender of the
/// channel is gone, or at `abort`. Endpoints sent to it are announced.
pub(super) fn start(
    store: Arc<dyn WebhookStore>,
    status: Arc<dyn StatusSink>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
    abort: CancellationToken,
) -> mpsc::UnboundedSender<Endpoint> {
    let (tx, rx) = mpsc::unbounded_channel();
    tasks.spawn(run(store, status, rx, cancel, abort));
    tx
}

async fn run(
    store: Arc<dyn WebhookStore>,
    status: Arc<dyn StatusSink>,
    mut rx: mpsc::UnboundedReceiver<Endpoint>,
    cancel: CancellationToken,
    abort: CancellationToken,
) {
    scan(&*store, &*status, &cancel, &abort).await;
    loop {
        let ep = tokio::select! {
            _ = abort.cancelled() => return,
            ep = rx.recv() => match ep {
                Some(ep) => ep,
                None => return,
            },
        };
        if !announce(&*status, &ep, &abort).await {
            return;
        }
    }
}

/// Announces every endpoint found disabled for failing.
async fn scan(
    store: &dyn WebhookStore,
    status: &dyn StatusSink,
    cancel: &CancellationToken,
    abort: &CancellationToken,
) {
    let list = loop {
        match store.list_endpoints().await {
            Ok((list, _)) => break list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the webhook endpoints to announce; retrying");
                if sleep_or_cancel(cancel, RETRY_DELAY).await {
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
        if cancel.is_cancelled() || !announce(status, ep, abort).await {
            return;
        }
    }
    tracing::info!(
        endpoints = found.len(),
        "webhook endpoints found disabled for failing are announced"
    );
}

/// The id of the announcement that `ep` was disabled for failing: one per endpoint and failure
/// streak. `None` without a streak (an endpoint disabled by an earlier version, whose streak
/// attempts ending later could clear).
fn announcement_id(ep: &Endpoint) -> Option<String> {
    let streak = ep.failing_since?.as_micros();
    Some(format!(
        "{}{}-{streak}",
        crate::core::middleware::RESERVED_ID_PREFIX,
        ep.id
    ))
}

/// Publishes the announcement of `ep`; `false` when the task is to stop (`abort`, or the bus is
/// gone): the next start announces it.
async fn announce(status: &dyn StatusSink, ep: &Endpoint, abort: &CancellationToken) -> bool {
    let Some(id) = announcement_id(ep) else {
        tracing::debug!(endpoint = %ep.id, "webhook endpoint disabled for failing without a failure streak; not announced");
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
    for tried in 1..=TRIES {
        match status.publish_status(event.clone()).await {
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
            Err(e) if tried < TRIES => {
                tracing::warn!(error = %e, endpoint = %ep.id, retry_in = ?delay, "cannot announce a disabled webhook endpoint; retrying");
                if sleep_or_cancel(abort, delay).await {
                    return false;
                }
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, endpoint = %ep.id, "cannot announce a disabled webhook endpoint; the next start announces it");
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::time::Timestamp;
    use crate::store::webhook::contract::endpoint;

    /// Answers from a script, in order (then `Ok`), and keeps what it was given.
    #[derive(Default)]
    struct Script {
        answers: Mutex<Vec<Result<(), StatusError>>>,
        published: Mutex<Vec<NewEvent>>,
    }

    #[async_trait::async_trait]
    impl StatusSink for Script {
        async fn publish_status(&self, event: NewEvent) -> Result<(), StatusError> {
            self.published.lock().unwrap().push(event);
            let mut answers = self.answers.lock().unwrap();
            if answers.is_empty() {
                Ok(())
            } else {
                answers.remove(0)
            }
        }
    }

    fn failed() -> Result<(), StatusError> {
        Err(StatusError::Publish("the store is unavailable".into()))
    }

    fn disabled() -> Endpoint {
        let mut ep = endpoint("ep_1", false);
        ep.disabled = true;
        ep.disabled_reason = Some(FAILING.into());
        ep.failing_since = Some(Timestamp::from_micros(1_700_000_000_000_000));
        ep.failure_count = 20;
        ep
    }

    fn script(answers: Vec<Result<(), StatusError>>) -> Script {
        Script {
            answers: Mutex::new(answers),
            ..Script::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_publish_is_tried_again_under_the_same_id() {
        let sink = script(vec![failed(), failed()]);
        assert!(announce(&sink, &disabled(), &CancellationToken::new()).await);
        let published = sink.published.lock().unwrap();
        assert_eq!(published.len(), 3);
        for event in published.iter() {
            assert_eq!(
                event.id.as_deref(),
                Some("webhook-disabled-ep_1-1700000000000000")
            );
            let payload: serde_json::Value =
                serde_json::from_str(event.payload.as_ref().expect("a payload").get()).unwrap();
            assert_eq!(payload["failures"], 20);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_failing_every_time_is_left_to_the_next_start() {
        let sink = script((0..TRIES + 5).map(|_| failed()).collect());
        let started = tokio::time::Instant::now();
        assert!(announce(&sink, &disabled(), &CancellationToken::new()).await);
        assert_eq!(sink.published.lock().unwrap().len(), TRIES as usize);
        // The waits double: 0.2 s, 0.4 s, … (paused clock: no real time passes).
        assert_eq!(started.elapsed(), RETRY_DELAY * (2u32.pow(TRIES - 1) - 1));
    }

    #[tokio::test(start_paused = true)]
    async fn refused_or_stored_with_other_content_is_not_tried_again() {
        for answer in [
            Err(StatusError::Refused("invalid".into())),
            Err(StatusError::Exists),
        ] {
            let sink = script(vec![answer]);
            assert!(announce(&sink, &disabled(), &CancellationToken::new()).await);
            assert_eq!(sink.published.lock().unwrap().len(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn abort_ends_the_waits() {
        let sink = script((0..TRIES).map(|_| failed()).collect());
        let abort = CancellationToken::new();
        let stop = abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RETRY_DELAY / 2).await;
            stop.cancel();
        });
        assert!(!announce(&sink, &disabled(), &abort).await);
        assert_eq!(sink.published.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_endpoint_without_a_streak_is_not_announced() {
        let sink = script(Vec::new());
        let mut ep = disabled();
        ep.failing_since = None;
        assert!(announce(&sink, &ep, &CancellationToken::new()).await);
        assert!(sink.published.lock().unwrap().is_empty());
    }
}
