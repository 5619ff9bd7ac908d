//! [`WebhookService`]: the running transport of one process. It starts the fan-out and the
//! worker, drains them on shutdown, and serves the HTTP API's calls: endpoint CRUD with
//! validation, secret rotation, test sends, the delivery and attempt log and an endpoint's
//! figures, retry and replay.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cache::{BodyCache, EndpointCache};
use super::client::{ClientError, NetworkPolicy, WebhookClient, check_resolved_host};
use super::error::{invalid, no_delivery, no_endpoint};
use super::leases::{self, Leases};
use super::shared::{Shared, WebhookStats};
use super::signing::{SigningKey, generate_secret};
use super::{
    EndpointInput, PayloadShaper, ReplayFrom, ReplayUntil, StatusSink, TestResult, WebhookError,
    WebhookOptions, fanout, request, worker,
};
use crate::core::event::NewEvent;
use crate::core::filter::EventFilter;
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::store::EventStore;
use crate::store::webhook::{
    Attempt, AttemptQuery, Delivery, DeliveryQuery, Endpoint, EndpointPatch, EndpointStats,
    NewDelivery, Page, WebhookStore,
};

/// The running transport of one process.
pub struct WebhookService {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    abort: CancellationToken,
    /// Stops the lease renewals, once the attempts have ended.
    stop_renewals: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookService")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl WebhookService {
    /// Starts the fan-out and the worker: they deliver the events of `events` through the
    /// queue of `store`, publish status events through `status`, and send the bodies `shaper`
    /// returns when it shapes an event's type.
    pub fn start(
        events: Arc<dyn EventStore>,
        store: Arc<dyn WebhookStore>,
        options: WebhookOptions,
        status: Arc<dyn StatusSink>,
        shaper: Option<Arc<dyn PayloadShaper>>,
    ) -> Result<Arc<Self>, ClientError> {
        let policy = NetworkPolicy {
            allowed: options.allowed_networks.clone(),
        };
        let client = WebhookClient::new(policy, options.timeout, options.response_body_limit)?;
        let shared = Arc::new(Shared {
            events,
            store,
            options,
            client,
            endpoints: EndpointCache::default(),
            bodies: BodyCache::default(),
            stats: WebhookStats::default(),
            leases: Leases::default(),
            wake: Notify::new(),
            status,
            shaper,
        });
        let service = Arc::new(WebhookService {
            shared: shared.clone(),
            cancel: CancellationToken::new(),
            abort: CancellationToken::new(),
            stop_renewals: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        tokio::spawn(leases::run_renewals(
            shared.clone(),
            service.stop_renewals.clone(),
        ));
        service
            .tasks
            .spawn(fanout::run(shared.clone(), service.cancel.clone()));
        service.tasks.spawn(worker::run(
            shared,
            service.tasks.clone(),
            service.cancel.clone(),
            service.abort.clone(),
        ));
        Ok(service)
    }

    /// Stops fan-out and claiming, lets attempts in flight finish and be recorded for up to
    /// the drain timeout, then abandons the rest; then releases the leases of every delivery
    /// claimed and not recorded, so another process sends them at once.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.shared.options.drain_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "webhook attempts still in flight after the drain timeout; abandoning them"
            );
            self.abort.cancel();
            self.tasks.wait().await;
        }
        self.stop_renewals.cancel();
        leases::release_all(&self.shared).await;
    }

    /// The counters.
    pub fn stats(&self) -> &WebhookStats {
        &self.shared.stats
    }

    /// The settings.
    pub fn options(&self) -> &WebhookOptions {
        &self.shared.options
    }

    fn store(&self) -> &dyn WebhookStore {
        &*self.shared.store
    }

    fn changed(&self) {
        self.shared.endpoints.invalidate();
        self.shared.wake.notify_one();
    }

    /// Creates an endpoint; the answer carries its secret.
    pub async fn create_endpoint(&self, input: EndpointInput) -> Result<Endpoint, WebhookError> {
        let url = input
            .url
            .clone()
            .ok_or_else(|| invalid("url", "required"))?;
        let secret = match &input.secret {
            Some(s) => {
                SigningKey::parse(s).map_err(|e| invalid("secret", e.0))?;
                s.clone()
            }
            None => generate_secret(),
        };
        let patch = input.validate(true, self.shared.client.policy())?;
        self.check_host(&url).await?;
        let now = Timestamp::now();
        let mut ep = Endpoint {
            id: uuid::Uuid::now_v7().to_string(),
            url,
            description: None,
            event_types: vec![Pattern::all()],
            project_id: None,
            tenant_id: None,
            headers: BTreeMap::new(),
            rate_limit: None,
            ordered: false,
            format: Default::default(),
            disabled: false,
            disabled_reason: None,
            secret,
            previous_secret: None,
            previous_secret_expires_at: None,
            since_seq: 0,
            created_at: now,
            updated_at: now,
            failing_since: None,
            failure_count: 0,
        };
        // The store sets `since_seq` to the log's head when it inserts the endpoint.
        patch.apply(&mut ep, now, 0);
        let ep = self.store().create_endpoint(ep).await?;
        self.changed();
        Ok(ep)
    }

    /// Every endpoint.
    pub async fn list_endpoints(&self) -> Result<Vec<Endpoint>, WebhookError> {
        Ok(self.store().list_endpoints().await?.0)
    }

    /// One endpoint.
    pub async fn get_endpoint(&self, id: &str) -> Result<Endpoint, WebhookError> {
        self.store()
            .get_endpoint(id)
            .await?
            .ok_or_else(|| no_endpoint(id))
    }

    /// Changes an endpoint.
    pub async fn update_endpoint(
        &self,
        id: &str,
        input: EndpointInput,
    ) -> Result<Endpoint, WebhookError> {
        let url = input.url.clone();
        let patch = input.validate(false, self.shared.client.policy())?;
        if let Some(url) = &url {
            self.check_host(url).await?;
        }
        self.patch(id, patch).await
    }

    /// Refuses a URL whose host name resolves to addresses webhooks may not reach (after
    /// [`validate_url`](super::client::validate_url) accepted its form).
    async fn check_host(&self, url: &str) -> Result<(), WebhookError> {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return Ok(()); // `EndpointInput::validate` names the problem
        };
        check_resolved_host(&uri, self.shared.client.policy())
            .await
            .map_err(|e| invalid("url", e.0))
    }

    async fn patch(&self, id: &str, patch: EndpointPatch) -> Result<Endpoint, WebhookError> {
        let ep = self
            .store()
            .update_endpoint(id, patch, Timestamp::now())
            .await?
            .ok_or_else(|| no_endpoint(id))?;
        self.changed();
        Ok(ep)
    }

    /// Enables or disables an endpoint.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<Endpoint, WebhookError> {
        self.patch(
            id,
            EndpointPatch {
                disabled: Some(disabled),
                ..Default::default()
            },
        )
        .await
    }

    /// Rotates the secret (to `secret`, or a generated one); the old one stays valid for the
    /// grace period and both signatures are sent meanwhile.
    pub async fn rotate_secret(
        &self,
        id: &str,
        secret: Option<String>,
    ) -> Result<Endpoint, WebhookError> {
        let secret = match secret {
            Some(s) => {
                SigningKey::parse(&s).map_err(|e| invalid("secret", e.0))?;
                s
            }
            None => generate_secret(),
        };
        let grace =
            Timestamp::now().plus_micros(self.shared.options.secret_grace.as_micros() as i64);
        self.patch(
            id,
            EndpointPatch {
                rotate: Some((secret, grace)),
                ..Default::default()
            },
        )
        .await
    }

    /// Deletes an endpoint with its deliveries and attempts.
    pub async fn delete_endpoint(&self, id: &str) -> Result<(), WebhookError> {
        if !self.store().delete_endpoint(id).await? {
            return Err(no_endpoint(id));
        }
        self.changed();
        Ok(())
    }

    /// Sends a `webhook.test` event to the endpoint now, outside the queue, and reports the result.
    pub async fn test_endpoint(&self, id: &str) -> Result<TestResult, WebhookError> {
        let ep = self.get_endpoint(id).await?;
        let mut event = NewEvent::new(
            "webhook.test",
            serde_json::json!({ "endpointId": ep.id, "message": "This is a test event from Situs Event Bus." }),
        )
        .into_event(Timestamp::now())
        .map_err(WebhookError::Invalid)?;
        event.project_id = ep.project_id.clone();
        event.tenant_id = ep.tenant_id.clone();
        let request = request::for_test(&ep, &event);
        let r = self
            .shared
            .client
            .post(&ep.url, request.headers, request.body)
            .await;
        Ok(TestResult {
            success: r.success(),
            status_code: r.status,
            duration_ms: r.duration.as_millis() as u64,
            response_body: r.body,
            error: r.error,
            event,
        })
    }

    /// Deliveries of an endpoint.
    pub async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Page<Delivery>, WebhookError> {
        self.get_endpoint(&query.endpoint_id).await?;
        Ok(self.store().list_deliveries(query).await?)
    }

    /// Attempts of an endpoint.
    pub async fn list_attempts(&self, query: AttemptQuery) -> Result<Page<Attempt>, WebhookError> {
        self.get_endpoint(&query.endpoint_id).await?;
        Ok(self.store().list_attempts(query).await?)
    }

    /// The figures of endpoint `id`: its attempts that started at or after `since`, and its
    /// deliveries by status.
    pub async fn endpoint_stats(
        &self,
        id: &str,
        since: Timestamp,
    ) -> Result<EndpointStats, WebhookError> {
        self.get_endpoint(id).await?;
        Ok(self.store().endpoint_stats(id, since).await?)
    }

    /// One delivery.
    pub async fn get_delivery(&self, id: u64) -> Result<Delivery, WebhookError> {
        self.store()
            .get_delivery(id)
            .await?
            .ok_or_else(|| no_delivery(id))
    }

    /// Requeues a delivery (typically a dead letter) for an attempt now, with a fresh retry budget.
    pub async fn retry_delivery(&self, id: u64) -> Result<Delivery, WebhookError> {
        let d = self
            .store()
            .retry_delivery(id, Timestamp::now())
            .await?
            .ok_or_else(|| no_delivery(id))?;
        self.shared.wake.notify_one();
        Ok(d)
    }

    /// Queues the stored events from `from` up to `until` (or the current head) that match the
    /// endpoint again; returns how many deliveries were queued.
    pub async fn replay(
        &self,
        id: &str,
        from: ReplayFrom,
        until: Option<ReplayUntil>,
    ) -> Result<u64, WebhookError> {
        let ep = self.get_endpoint(id).await?;
        let mut head = self.shared.events.log().head();
        let mut filter = EventFilter {
            types: ep.event_types.clone(),
            project_id: ep.project_id.clone(),
            tenant_id: ep.tenant_id.clone(),
            ..EventFilter::default()
        };
        let mut after = match from {
            ReplayFrom::Seq(s) => s.saturating_sub(1),
            ReplayFrom::Time(t) => {
                filter.from = Some(t);
                0
            }
        };
        match until {
            Some(ReplayUntil::Seq(last)) => head = head.min(last),
            Some(ReplayUntil::Time(t)) => filter.to = Some(t),
            None => {}
        }
        let mut queued = 0;
        while after < head {
            let read = self.shared.events.read_after(after, &filter, 1000).await?;
            let batch: Vec<NewDelivery> = read
                .events
                .iter()
                .filter(|e| e.seq <= head)
                .map(|e| NewDelivery::of(&ep.id, e))
                .collect();
            if !batch.is_empty() {
                queued += self.store().enqueue(batch, Timestamp::now()).await?;
                self.shared.wake.notify_one();
            }
            if read.at_end || read.next <= after {
                break;
            }
            after = read.next;
        }
        Ok(queued)
    }

    /// Pending deliveries in the store.
    pub async fn queue_depth(&self) -> Result<u64, WebhookError> {
        Ok(self.store().pending_count().await?)
    }

    /// How long the most overdue pending delivery has waited past its due time (zero when none
    /// is overdue): the workers' lag behind the queue, not the retry delays.
    pub async fn overdue(&self) -> Result<std::time::Duration, WebhookError> {
        let due = self.store().oldest_due().await?;
        let now = Timestamp::now().as_micros();
        Ok(due.map_or(std::time::Duration::ZERO, |d| {
            std::time::Duration::from_micros((now - d.as_micros()).max(0) as u64)
        }))
    }
}
