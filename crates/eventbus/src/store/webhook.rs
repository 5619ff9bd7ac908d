//! Webhook persistence: endpoints, the durable delivery queue, the attempt log and the fan-out
//! cursor (issue 5; DESIGN.md §1 and §5).
//!
//! [`WebhookStore`] is a contract of its own beside [`EventStore`], implemented by every backend
//! that serves webhooks. What each implementation keeps:
//! - **Fan-out is exactly-once into the queue.** [`WebhookStore::fan_out`] inserts the delivery
//!   rows of a range of the log and advances the cursor over it in *one* transaction, and only
//!   when the cursor still sits where the caller read it and the endpoints have not changed
//!   since the caller matched them ([`FanOutResult::Stale`] otherwise). So a crash loses no event
//!   and queues none twice, also with several processes on one database.
//! - **An endpoint sees the events committed after it was created** (or last enabled, or its
//!   filter changed): [`WebhookStore::create_endpoint`] and [`WebhookStore::update_endpoint`]
//!   record the log's head inside their own transaction as [`Endpoint::since_seq`]. Matching is
//!   thus a pure function of the endpoint row and the event, and a range matched twice (after a
//!   refused fan-out step) queues the same deliveries.
//! - **Claims are leases.** [`WebhookStore::claim_due`] marks each returned delivery leased until
//!   [`Claim::lease_until`]; a leased delivery is not returned again before the lease ends
//!   (PostgreSQL: `FOR UPDATE SKIP LOCKED` plus a lease column; SQLite: the column alone, since
//!   one process owns the file). For an [`Endpoint::ordered`] endpoint only the oldest pending
//!   delivery (by event `seq`) is ever claimable, and only while nothing else of it is leased.
//! - **Every attempt is logged** by [`WebhookStore::complete`] in the same transaction that moves
//!   the delivery on (succeeded, retry at a time, or failed = dead letter) and updates the
//!   endpoint's failure streak, auto-disabling it per [`HealthPolicy`]. A disabled endpoint's
//!   streak stays as it was when it was disabled (attempts under way then still end and are
//!   logged); enabling it clears the streak.
//!
//! [`EventStore`]: super::EventStore

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
use crate::core::event::Event;
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;

/// Most rows one page of deliveries or attempts holds.
pub const MAX_LOG_PAGE: usize = 1000;

/// What a webhook request carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum WebhookFormat {
    /// The event's JSON (`application/json`).
    #[default]
    #[serde(rename = "json")]
    Json,
    /// A structured CloudEvent (`application/cloudevents+json`).
    #[serde(rename = "cloudevents")]
    CloudEvents,
    /// A CloudEvent in binary mode: `ce-*` headers, the payload's JSON as the body.
    #[serde(rename = "cloudevents-binary")]
    CloudEventsBinary,
}

impl WebhookFormat {
    /// Every format, by name.
    pub const ALL: [WebhookFormat; 3] = [
        WebhookFormat::Json,
        WebhookFormat::CloudEvents,
        WebhookFormat::CloudEventsBinary,
    ];

    /// The name stored and shown: `json`, `cloudevents` or `cloudevents-binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::CloudEvents => "cloudevents",
            WebhookFormat::CloudEventsBinary => "cloudevents-binary",
        }
    }

    /// The format of this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// A webhook endpoint: where events go, which ones, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Unique id (UUIDv7).
    pub id: String,
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// Free text.
    pub description: Option<String>,
    /// Type patterns; an event is sent when its type matches one (every type when empty).
    pub event_types: Vec<Pattern>,
    /// Only events of this project.
    pub project_id: Option<String>,
    /// Only events of this tenant.
    pub tenant_id: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Most requests per second (no limit when `None`).
    pub rate_limit: Option<u32>,
    /// Strict per-endpoint ordering: the next event waits until the previous one succeeded or
    /// was dead-lettered.
    pub ordered: bool,
    /// What each request carries.
    pub format: WebhookFormat,
    /// Disabled endpoints receive nothing and queue nothing.
    pub disabled: bool,
    /// Why it is disabled: `manual` or `failing`.
    pub disabled_reason: Option<String>,
    /// The signing secret (`whsec_…`).
    #[serde(skip)]
    pub secret: String,
    /// The secret before the last rotation, still used to sign until `previous_secret_expires_at`.
    #[serde(skip)]
    pub previous_secret: Option<String>,
    /// End of the rotation's grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<Timestamp>,
    /// The log's head when the endpoint was created, last enabled, or its filter (types,
    /// project, tenant) changed: it receives events with a larger `seq`.
    pub since_seq: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Start of the current streak of failed attempts.
    pub failing_since: Option<Timestamp>,
    /// Failed attempts in the current streak.
    pub failure_count: u32,
}

impl Endpoint {
    /// Whether `event` is for this endpoint (ignoring `disabled` and `since_seq`).
    pub fn matches(&self, event: &Event) -> bool {
        (self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|p| p.matches(&event.event_type)))
            && self
                .project_id
                .as_ref()
                .is_none_or(|p| event.project_id.as_ref() == Some(p))
            && self
                .tenant_id
                .as_ref()
                .is_none_or(|t| event.tenant_id.as_ref() == Some(t))
    }

    /// The secrets to sign with at `now`: the current one, then the previous one in its grace
    /// period.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_expires_at)
            && now < until
        {
            secrets.push(prev);
        }
        secrets
    }
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New patterns.
    pub event_types: Option<Vec<Pattern>>,
    /// New project scope.
    pub project_id: Option<Option<String>>,
    /// New tenant scope.
    pub tenant_id: Option<Option<String>>,
    /// New headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// New rate limit.
    pub rate_limit: Option<Option<u32>>,
    /// New ordering mode.
    pub ordered: Option<bool>,
    /// New request format.
    pub format: Option<WebhookFormat>,
    /// Disable (`true`, reason `manual`) or enable (`false`, which also clears the failure streak).
    pub disabled: Option<bool>,
    /// Rotate the secret: the new secret, and how long the current one stays valid.
    pub rotate: Option<(String, Timestamp)>,
}

impl EndpointPatch {
    /// Applies the patch to `ep` at `now`; `head` is the log's head, read in the same
    /// transaction, which becomes [`Endpoint::since_seq`] when the endpoint is enabled or its
    /// filter changes. Backends call this inside their update transaction.
    pub fn apply(self, ep: &mut Endpoint, now: Timestamp, head: u64) {
        let filter = (
            ep.event_types.clone(),
            ep.project_id.clone(),
            ep.tenant_id.clone(),
        );
        let was_disabled = ep.disabled;
        if let Some(v) = self.url {
            ep.url = v;
        }
        if let Some(v) = self.description {
            ep.description = v;
        }
        if let Some(v) = self.event_types {
            ep.event_types = v;
        }
        if let Some(v) = self.project_id {
            ep.project_id = v;
        }
        if let Some(v) = self.tenant_id {
            ep.tenant_id = v;
        }
        if let Some(v) = self.headers {
            ep.headers = v;
        }
        if let Some(v) = self.rate_limit {
            ep.rate_limit = v;
        }
        if let Some(v) = self.ordered {
            ep.ordered = v;
        }
        if let Some(v) = self.format {
            ep.format = v;
        }
        match self.disabled {
            Some(true) if !ep.disabled => {
                ep.disabled = true;
                ep.disabled_reason = Some("manual".into());
            }
            Some(false) => {
                ep.disabled = false;
                ep.disabled_reason = None;
                ep.failing_since = None;
                ep.failure_count = 0;
            }
            _ => {}
        }
        if let Some((secret, grace_until)) = self.rotate {
            ep.previous_secret = Some(std::mem::replace(&mut ep.secret, secret));
            ep.previous_secret_expires_at = Some(grace_until);
        }
        if (was_disabled && !ep.disabled)
            || filter
                != (
                    ep.event_types.clone(),
                    ep.project_id.clone(),
                    ep.tenant_id.clone(),
                )
        {
            ep.since_seq = head;
        }
        ep.updated_at = now;
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A 2xx answer was received.
    Succeeded,
    /// Dead letter: the last attempt failed; [`WebhookStore::retry_delivery`] revives it.
    Failed,
}

impl DeliveryStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One event to send to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Unique id, increasing in creation order.
    pub id: u64,
    /// The endpoint.
    pub endpoint_id: String,
    /// The event's `seq`.
    pub event_seq: u64,
    /// The event's id (the `webhook-id` header).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts since the delivery was (re)queued; the retry budget counts these.
    #[serde(skip)]
    pub cycle_attempts: u32,
    /// When the next attempt is due (pending only).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub next_attempt_at: Option<Timestamp>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// Last change.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
    /// Status code of the last attempt.
    pub last_status_code: Option<u16>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
}

/// A delivery to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The endpoint.
    pub endpoint_id: String,
    /// The event's `seq`.
    pub event_seq: u64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
}

impl NewDelivery {
    /// The delivery of `event` to `endpoint_id`.
    pub fn of(endpoint_id: &str, event: &Event) -> Self {
        NewDelivery {
            endpoint_id: endpoint_id.to_owned(),
            event_seq: event.seq,
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
        }
    }
}

/// One fan-out step: the deliveries of the events in `(from, to]`.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// The cursor the caller read; the step applies only if it is still the stored one.
    pub from: u64,
    /// The new cursor.
    pub to: u64,
    /// The endpoints version the caller matched against.
    pub endpoints_version: u64,
    /// Deliveries to insert, all created at `now`, due at once.
    pub deliveries: Vec<NewDelivery>,
    /// Creation time.
    pub now: Timestamp,
}

/// What a fan-out step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOutResult {
    /// Rows inserted and the cursor advanced.
    Applied,
    /// Nothing written: the cursor or the endpoints moved; here is where they are now.
    Stale {
        /// The stored cursor.
        cursor: u64,
        /// The stored endpoints version.
        endpoints_version: u64,
    },
}

/// What to claim.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Deliveries due at or before this.
    pub now: Timestamp,
    /// Lease end for the returned deliveries.
    pub lease_until: Timestamp,
    /// Most deliveries returned.
    pub limit: usize,
    /// Most deliveries of one endpoint the caller holds at once (claimed and not completed).
    pub per_endpoint: usize,
    /// Deliveries of each endpoint the caller holds already: they count against
    /// [`Claim::per_endpoint`].
    pub held: HashMap<String, usize>,
}

impl Claim {
    /// How many more deliveries of `endpoint_id` this claim may return.
    pub fn room(&self, endpoint_id: &str) -> usize {
        self.per_endpoint
            .saturating_sub(self.held.get(endpoint_id).copied().unwrap_or(0))
    }
}

/// The result of one attempt, as the worker reports it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Which delivery.
    pub delivery_id: u64,
    /// Its endpoint.
    pub endpoint_id: String,
    /// Its event.
    pub event_id: String,
    /// When the request started.
    pub started_at: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// The answer's status code, when there was one.
    pub status_code: Option<u16>,
    /// The answer's body, truncated.
    pub response_body: Option<String>,
    /// Why it failed without an answer (timeout, connection, refused address).
    pub error: Option<String>,
    /// Whether it counts as delivered (2xx).
    pub success: bool,
    /// What happens next when it failed: `Some(at)` retries then, `None` dead-letters.
    pub retry_at: Option<Timestamp>,
}

/// When an endpoint counts as dead and is disabled.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    /// The streak of failures must have lasted at least this long (µs)…
    pub window_micros: i64,
    /// …and counted at least this many failed attempts.
    pub failures: u32,
}

/// One logged attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Unique id, increasing.
    pub id: u64,
    /// The delivery.
    pub delivery_id: u64,
    /// The endpoint.
    pub endpoint_id: String,
    /// The event.
    pub event_id: String,
    /// 1 for the first attempt of the delivery.
    pub attempt: u32,
    /// Start time.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Timestamp,
    /// Duration.
    pub duration_ms: u64,
    /// Status code, when an answer came.
    pub status_code: Option<u16>,
    /// The answer's body, truncated.
    pub response_body: Option<String>,
    /// The error, when no acceptable answer came.
    pub error: Option<String>,
    /// Whether it was a 2xx.
    pub success: bool,
}

/// A page of deliveries of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// The endpoint.
    pub endpoint_id: String,
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this event.
    pub event_id: Option<String>,
    /// Only ids above this.
    pub after: u64,
    /// Page size.
    pub limit: usize,
}

/// A page of attempts of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    /// The endpoint.
    pub endpoint_id: String,
    /// Only this delivery.
    pub delivery_id: Option<u64>,
    /// Only successes (`true`) or failures (`false`).
    pub success: Option<bool>,
    /// Only ids above this.
    pub after: u64,
    /// Page size.
    pub limit: usize,
}

/// What an endpoint's attempts since a time come to, and where its deliveries stand: the answer
/// of [`WebhookStore::endpoint_stats`], built by [`EndpointStats::new`] from what a backend reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    /// Start of the window: the attempts counted started at or after it.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub since: Timestamp,
    /// Attempts in the window.
    pub attempts: u64,
    /// Of them, answered 2xx.
    pub succeeded: u64,
    /// Of them, not answered 2xx (another status, a timeout, a refused connection).
    pub failed: u64,
    /// `succeeded / attempts`, from 0 to 1; `null` without attempts.
    pub success_rate: Option<f64>,
    /// Mean duration of the attempts; `null` without attempts.
    pub mean_duration_ms: Option<f64>,
    /// Longest duration of an attempt; `null` without attempts.
    pub max_duration_ms: Option<u64>,
    /// Start of the newest attempt in the window; `null` without attempts.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_attempt_at: Option<Timestamp>,
    /// The newest failed attempt in the window; `null` when none failed.
    pub last_failure: Option<LastFailure>,
    /// The endpoint's deliveries by status, of all time (not only the window).
    pub deliveries: DeliveryCounts,
}

impl EndpointStats {
    /// The figures of `totals` (the attempts since `since`), `last_failure` and `deliveries`,
    /// with the rate and the mean worked out (`null` without attempts).
    pub fn new(
        since: Timestamp,
        totals: AttemptTotals,
        last_failure: Option<LastFailure>,
        deliveries: DeliveryCounts,
    ) -> Self {
        let any = totals.attempts > 0;
        let per_attempt = |n: u64| any.then(|| n as f64 / totals.attempts as f64);
        EndpointStats {
            since,
            attempts: totals.attempts,
            succeeded: totals.succeeded,
            failed: totals.attempts.saturating_sub(totals.succeeded),
            success_rate: per_attempt(totals.succeeded),
            mean_duration_ms: per_attempt(totals.duration_ms),
            max_duration_ms: totals.max_duration_ms.filter(|_| any),
            last_attempt_at: totals.last_attempt_at.filter(|_| any),
            last_failure,
            deliveries,
        }
    }
}

/// The sums over an endpoint's attempts in a window, as a backend reads them in one statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptTotals {
    /// How many.
    pub attempts: u64,
    /// How many answered 2xx.
    pub succeeded: u64,
    /// Their durations added up (ms).
    pub duration_ms: u64,
    /// The longest one (ms).
    pub max_duration_ms: Option<u64>,
    /// Start of the newest one.
    pub last_attempt_at: Option<Timestamp>,
}

/// The newest failed attempt of an endpoint in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    /// When the attempt started.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The answer's status code; `null` when no answer came.
    pub status_code: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// Its delivery (`GET /v1/deliveries/{id}`).
    pub delivery_id: u64,
}

/// An endpoint's deliveries that are not done: the two states a delivery leaves (succeeded
/// ones are not counted: they only grow, and counting them would read the endpoint's whole
/// history; the attempts of the window say how many succeeded lately).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryCounts {
    /// Waiting for an attempt, or in flight.
    pub pending: u64,
    /// Dead letters.
    pub failed: u64,
}

/// A keyset page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows, in id order.
    pub items: Vec<T>,
    /// The cursor of the next page, `None` at the end.
    pub next_after: Option<u64>,
}

/// Durable webhook state. See the module docs for what every implementation keeps.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Inserts `endpoint`, setting its `since_seq` to the log's head in the same transaction;
    /// bumps the endpoints version.
    async fn create_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, StoreError>;

    /// One endpoint.
    async fn get_endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError>;

    /// Every endpoint, oldest first, and the endpoints version they were read at.
    async fn list_endpoints(&self) -> Result<(Vec<Endpoint>, u64), StoreError>;

    /// Applies `patch` atomically ([`EndpointPatch::apply`], with the log's head read in the same
    /// transaction); bumps the endpoints version.
    async fn update_endpoint(
        &self,
        id: &str,
        patch: EndpointPatch,
        now: Timestamp,
    ) -> Result<Option<Endpoint>, StoreError>;

    /// Deletes an endpoint with its deliveries and attempts; bumps the endpoints version.
    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError>;

    /// The fan-out cursor: every event up to it has its deliveries queued.
    async fn fanout_cursor(&self) -> Result<u64, StoreError>;

    /// Queues a range's deliveries and advances the cursor, atomically (see the module docs).
    async fn fan_out(&self, step: FanOut) -> Result<FanOutResult, StoreError>;

    /// Queues extra deliveries (replay), due at `now`; returns how many.
    async fn enqueue(
        &self,
        deliveries: Vec<NewDelivery>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Releases leases known to be dead at start: every lease on SQLite (one process owns the
    /// file), none on a shared database (leases expire). Returns how many were released.
    async fn recover(&self) -> Result<u64, StoreError>;

    /// Moves the leases `held` (delivery id, the end this process gave the lease) to end at
    /// `until` (`0` releases them), each only while it is still that lease of a pending
    /// delivery; returns the ids moved.
    async fn renew_leases(
        &self,
        held: &[(u64, Timestamp)],
        until: Timestamp,
    ) -> Result<Vec<u64>, StoreError>;

    /// Leases and returns due deliveries of enabled endpoints (see the module docs).
    async fn claim_due(&self, claim: Claim) -> Result<Vec<Delivery>, StoreError>;

    /// Logs attempts and moves their deliveries on, in one transaction; updates failure
    /// streaks and disables endpoints per `health`. Returns the endpoints disabled now.
    async fn complete(
        &self,
        records: Vec<AttemptRecord>,
        health: HealthPolicy,
    ) -> Result<Vec<Endpoint>, StoreError>;

    /// Requeues a delivery (any status) for an attempt at `now` with a fresh retry budget.
    async fn retry_delivery(&self, id: u64, now: Timestamp)
    -> Result<Option<Delivery>, StoreError>;

    /// One delivery.
    async fn get_delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError>;

    /// Deliveries of an endpoint, by id.
    async fn list_deliveries(&self, query: DeliveryQuery) -> Result<Page<Delivery>, StoreError>;

    /// Attempts of an endpoint, by id.
    async fn list_attempts(&self, query: AttemptQuery) -> Result<Page<Attempt>, StoreError>;

    /// The attempts of endpoint `endpoint_id` that started at or after `since`, and its
    /// deliveries by status, read in one snapshot. An endpoint without any counts zero.
    async fn endpoint_stats(
        &self,
        endpoint_id: &str,
        since: Timestamp,
    ) -> Result<EndpointStats, StoreError>;

    /// Pending deliveries (the queue depth).
    async fn pending_count(&self) -> Result<u64, StoreError>;

    /// The earliest `next_attempt_at` of a pending delivery: how far behind its schedule the
    /// queue is when that time has passed. `None` when nothing is pending.
    async fn oldest_due(&self) -> Result<Option<Timestamp>, StoreError>;
}

/// The contract every [`WebhookStore`] keeps, as test bodies each backend runs on a fresh store.
#[cfg(test)]
pub(crate) mod contract;
