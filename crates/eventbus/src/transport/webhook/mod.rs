//! The webhook transport: signed, retried, logged, crash-safe delivery of committed events to
//! external HTTP endpoints (issue 5; DESIGN.md §1, §5).
//!
//! It is log-driven, in two stages joined by the durable queue of the [`WebhookStore`]:
//! - [`fanout`] tails the event log from a cursor kept in the store. For each range of events it
//!   matches the endpoints (type patterns, project and tenant scope, enabled, created before the
//!   event: [`Endpoint::since_seq`](crate::store::webhook::Endpoint::since_seq)) and, in **one** transaction, queues a delivery row per match and advances the cursor.
//!   A crash therefore loses no event and queues none twice.
//! - [`worker`] claims due deliveries (leased, so several processes can share a queue), sends
//!   each as a signed POST ([`signing`], [`client`]), and records every attempt; failures are
//!   retried on the configured schedule (honouring `Retry-After`) and dead-lettered after the
//!   last attempt. Per-endpoint lanes (concurrency, rate limit, strict order when asked) keep a
//!   slow or dead endpoint from delaying any other.
//!
//! Guarantees: at-least-once per (event, endpoint) — a crash between a receiver's 2xx and the
//! record of it resends, with the same `webhook-id` (the event id), which receivers use to
//! de-duplicate; ordered endpoints receive events in `seq` order, each next event only after the
//! previous one succeeded or was dead-lettered.
//!
//! [`WebhookService`] ties the stages together and is what the HTTP API calls: endpoint CRUD with
//! validation, secret rotation, test sends, the delivery and attempt log, retry and replay.

pub mod client;
mod fanout;
pub mod signing;
mod worker;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::client::{
    Cidr, NetworkPolicy, WebhookClient, check_resolved_host, custom_header, validate_url,
};
use self::signing::{SigningKey, generate_secret, signature_header};
use crate::bus::EventBus;
use crate::core::event::{Event, FieldError, NewEvent};
use crate::core::filter::EventFilter;
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::store::webhook::{
    Attempt, AttemptQuery, Delivery, DeliveryQuery, Endpoint, EndpointPatch, NewDelivery, Page,
    WebhookStore,
};
use crate::store::{EventStore, StoreError};

/// Header names of the Standard Webhooks specification.
pub const HEADER_ID: &str = "webhook-id";
/// Unix seconds of the send.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64>` signatures, space-separated.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Most patterns, headers and description bytes an endpoint may have.
const MAX_PATTERNS: usize = 64;
const MAX_HEADERS: usize = 32;
const MAX_DESCRIPTION: usize = 1024;

/// Settings of the transport.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retry_attempts: u32,
    /// Delays before each retry (the last repeats when there are more retries); jittered ±10 %.
    pub retry_schedule: Vec<Duration>,
    /// Networks reachable although internal.
    pub allowed_networks: Vec<Cidr>,
    /// Most attempts in flight in this process.
    pub max_in_flight: usize,
    /// Most attempts in flight to one endpoint.
    pub endpoint_concurrency: usize,
    /// How often due retries are looked for when nothing wakes the worker.
    pub poll_interval: Duration,
    /// Most bytes of an answer read and logged.
    pub response_body_limit: usize,
    /// How long the old secret stays valid after a rotation.
    pub secret_grace: Duration,
    /// An endpoint failing for this long…
    pub disable_after: Duration,
    /// …and at least this many attempts in a row is disabled.
    pub disable_failures: u32,
    /// How long shutdown waits for attempts in flight.
    pub drain_timeout: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            timeout: Duration::from_millis(5000),
            retry_attempts: 3,
            retry_schedule: parse_schedule("5s,5m,30m,2h,5h,10h")
                .expect("the default schedule parses"),
            allowed_networks: Vec::new(),
            max_in_flight: 256,
            endpoint_concurrency: 8,
            poll_interval: Duration::from_millis(250),
            response_body_limit: 4096,
            secret_grace: Duration::from_secs(24 * 3600),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            disable_failures: 20,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Parses a duration: `250ms`, `5s`, `5m`, `2h`, `5d` (a bare number is milliseconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 250ms, 5s, 5m, 2h or 1d"))?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(format!("`{s}`: the unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_millis(ms))
}

/// Parses a comma-separated retry schedule such as `5s,5m,30m,2h,5h,10h`.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let schedule = s
        .split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()?;
    if schedule.is_empty() {
        return Err("the schedule needs at least one delay".into());
    }
    Ok(schedule)
}

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

fn invalid(field: &str, message: impl Into<String>) -> WebhookError {
    WebhookError::Invalid(FieldError::new(field, message))
}

/// Distinguishes an absent field from an explicit `null`.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An endpoint as the API receives it (create: `url` required; update: every field optional,
/// `null` clears).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointInput {
    /// Target URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Free text.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub description: Option<Option<String>>,
    /// Type patterns (every type when absent).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Project scope.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub project_id: Option<Option<String>>,
    /// Tenant scope.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub tenant_id: Option<Option<String>>,
    /// Extra headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Requests per second.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub rate_limit: Option<Option<u32>>,
    /// Strict ordering.
    #[serde(default)]
    pub ordered: Option<bool>,
    /// Disabled.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Signing secret (create only; generated when absent).
    #[serde(default)]
    pub secret: Option<String>,
}

/// What a test send produced.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// Whether the endpoint answered 2xx.
    pub success: bool,
    /// The status code.
    pub status_code: Option<u16>,
    /// Duration.
    pub duration_ms: u64,
    /// The answer, truncated.
    pub response_body: Option<String>,
    /// The error.
    pub error: Option<String>,
    /// The test event sent.
    pub event: Event,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum ReplayFrom {
    /// Events with this `seq` and later.
    Seq(u64),
    /// Events whose timestamp is at or after this.
    Time(Timestamp),
}

/// Counters of the transport (exported as metrics).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Deliveries that succeeded.
    pub succeeded: AtomicU64,
    /// Attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Deliveries dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Endpoints disabled for failing.
    pub auto_disabled: AtomicU64,
    /// Deliveries queued by the fan-out.
    pub queued: AtomicU64,
}

/// The endpoints as last read, with the version they were read at.
#[derive(Debug, Default)]
struct Snapshot {
    version: u64,
    list: Vec<Arc<Endpoint>>,
    by_id: HashMap<String, Arc<Endpoint>>,
}

/// Endpoints in memory, reloaded when changed here or when older than [`ENDPOINT_TTL`] (changes
/// made by other processes).
#[derive(Debug, Default)]
struct EndpointCache {
    snapshot: Mutex<Option<(Arc<Snapshot>, Instant)>>,
    dirty: AtomicBool,
    /// Counts local changes, so each reader can tell on its own that one happened.
    generation: AtomicU64,
}

const ENDPOINT_TTL: Duration = Duration::from_secs(2);

impl EndpointCache {
    async fn current(&self, store: &dyn WebhookStore) -> Result<Arc<Snapshot>, StoreError> {
        if !self.dirty.load(Ordering::Acquire)
            && let Some((snap, at)) = &*self.snapshot.lock().expect("endpoint cache")
            && at.elapsed() < ENDPOINT_TTL
        {
            return Ok(snap.clone());
        }
        self.reload(store).await
    }

    async fn reload(&self, store: &dyn WebhookStore) -> Result<Arc<Snapshot>, StoreError> {
        self.dirty.store(false, Ordering::Release);
        let (list, version) = store.list_endpoints().await?;
        let list: Vec<Arc<Endpoint>> = list.into_iter().map(Arc::new).collect();
        let by_id = list.iter().map(|e| (e.id.clone(), e.clone())).collect();
        let snap = Arc::new(Snapshot {
            version,
            list,
            by_id,
        });
        *self.snapshot.lock().expect("endpoint cache") = Some((snap.clone(), Instant::now()));
        Ok(snap)
    }

    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.dirty.store(true, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Serialised event bodies by `seq`, shared by every delivery of an event: the JSON is built
/// once. Bounded in entries and bytes; a miss reads the event from the store.
#[derive(Debug, Default)]
struct BodyCache {
    inner: Mutex<(HashMap<u64, Bytes>, VecDeque<u64>, usize)>,
}

const BODY_CACHE_ENTRIES: usize = 16_384;
const BODY_CACHE_BYTES: usize = 64 * 1024 * 1024;

impl BodyCache {
    fn get(&self, seq: u64) -> Option<Bytes> {
        self.inner.lock().expect("body cache").0.get(&seq).cloned()
    }

    fn insert(&self, seq: u64, body: Bytes) {
        let mut guard = self.inner.lock().expect("body cache");
        let (map, order, bytes) = &mut *guard;
        if map.contains_key(&seq) {
            return;
        }
        *bytes += body.len();
        map.insert(seq, body);
        order.push_back(seq);
        while map.len() > BODY_CACHE_ENTRIES || (*bytes > BODY_CACHE_BYTES && map.len() > 1) {
            let Some(old) = order.pop_front() else { break };
            if let Some(b) = map.remove(&old) {
                *bytes -= b.len();
            }
        }
    }
}

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
    async fn shape(&self, event: &Event, endpoint: &Endpoint) -> Result<Option<Bytes>, String>;
}

/// What the stages share.
struct Shared {
    bus: EventBus,
    events: Arc<dyn EventStore>,
    store: Arc<dyn WebhookStore>,
    options: WebhookOptions,
    client: WebhookClient,
    endpoints: EndpointCache,
    bodies: BodyCache,
    stats: WebhookStats,
    /// Wakes the worker: deliveries were queued, or a lane has room.
    wake: Notify,
    /// Plugins that shape bodies, when the bus has plugins.
    shaper: Option<Arc<dyn PayloadShaper>>,
}

impl Shared {
    /// The request headers of one attempt of `event_id` to `ep`.
    fn headers(&self, ep: &Endpoint, event_id: &str, body: &[u8]) -> HeaderMap {
        let now = Timestamp::now();
        let ts = now.as_micros().div_euclid(1_000_000);
        let keys: Vec<SigningKey> = ep
            .signing_secrets(now)
            .into_iter()
            .filter_map(|s| SigningKey::parse(s).ok())
            .collect();
        let mut headers = HeaderMap::new();
        for (name, value) in &ep.headers {
            if let Ok((n, v)) = custom_header(name, value) {
                headers.insert(n, v);
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(event_id) {
            headers.insert(HEADER_ID, v);
        }
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from(ts));
        if let Ok(v) = HeaderValue::from_str(&signature_header(&keys, event_id, ts, body)) {
            headers.insert(HEADER_SIGNATURE, v);
        }
        headers
    }

    /// The body of one attempt: shaped by a plugin when one applies to the event's type, else
    /// the event's JSON. `Ok(None)`: the event is no longer stored; `Err(Some)`: the shaper
    /// failed; `Err(None)`: the store failed.
    async fn attempt_body(
        &self,
        d: &Delivery,
        ep: &Endpoint,
    ) -> Result<Option<Bytes>, Result<String, StoreError>> {
        if let Some(shaper) = self.shaper.as_ref().filter(|s| s.shapes(&d.event_type)) {
            let Some(event) = self.events.get(&d.event_id).await.map_err(Err)? else {
                return Ok(None);
            };
            match shaper.shape(&event, ep).await {
                Ok(Some(body)) => return Ok(Some(body)),
                Ok(None) => {}
                Err(e) => return Err(Ok(e)),
            }
        }
        self.body(d.event_seq, &d.event_id).await.map_err(Err)
    }

    /// The JSON body of the event `seq` (from the cache, else the store); `None` when the event
    /// is no longer stored.
    async fn body(&self, seq: u64, event_id: &str) -> Result<Option<Bytes>, StoreError> {
        if let Some(b) = self.bodies.get(seq) {
            return Ok(Some(b));
        }
        let Some(event) = self.events.get(event_id).await? else {
            return Ok(None);
        };
        let body = Bytes::from(event.to_json());
        self.bodies.insert(seq, body.clone());
        Ok(Some(body))
    }
}

/// The running transport of one process.
pub struct WebhookService {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    abort: CancellationToken,
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
    /// Starts the fan-out and the worker over `store`; they publish status events through `bus`.
    /// `shaper` (the plugin host, when plugins are enabled) may shape the bodies.
    pub fn start(
        bus: EventBus,
        store: Arc<dyn WebhookStore>,
        options: WebhookOptions,
        shaper: Option<Arc<dyn PayloadShaper>>,
    ) -> Result<Arc<Self>, String> {
        let policy = NetworkPolicy {
            allowed: options.allowed_networks.clone(),
        };
        let client = WebhookClient::new(policy, options.timeout, options.response_body_limit)?;
        let shared = Arc::new(Shared {
            events: bus.store().clone(),
            bus,
            store,
            options,
            client,
            endpoints: EndpointCache::default(),
            bodies: BodyCache::default(),
            stats: WebhookStats::default(),
            wake: Notify::new(),
            shaper,
        });
        let service = Arc::new(WebhookService {
            shared: shared.clone(),
            cancel: CancellationToken::new(),
            abort: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
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
    /// the drain timeout, then abandons the rest (their leases are released at the next start).
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
        let patch = self.validate(input, true)?;
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

    /// Validates an input into a patch; every error names its field.
    fn validate(
        &self,
        input: EndpointInput,
        creating: bool,
    ) -> Result<EndpointPatch, WebhookError> {
        if !creating && input.secret.is_some() {
            return Err(invalid(
                "secret",
                "rotate the secret with POST /v1/webhooks/{id}/rotate-secret",
            ));
        }
        if let Some(url) = &input.url {
            validate_url(url, self.shared.client.policy()).map_err(|e| invalid("url", e.0))?;
        }
        if let Some(Some(d)) = &input.description
            && d.len() > MAX_DESCRIPTION
        {
            return Err(invalid(
                "description",
                format!("at most {MAX_DESCRIPTION} bytes"),
            ));
        }
        let event_types = match input.event_types {
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "eventTypes",
                    "give at least one pattern, e.g. `>` for every type",
                ));
            }
            Some(list) if list.len() > MAX_PATTERNS => {
                return Err(invalid(
                    "eventTypes",
                    format!("at most {MAX_PATTERNS} patterns"),
                ));
            }
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| {
                        Pattern::parse(p)
                            .map_err(|e| invalid(&format!("eventTypes/{i}"), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        for (name, value) in [
            ("projectId", &input.project_id),
            ("tenantId", &input.tenant_id),
        ] {
            if let Some(Some(v)) = value
                && (v.is_empty() || v.len() > 128)
            {
                return Err(invalid(name, "1 to 128 characters"));
            }
        }
        if let Some(headers) = &input.headers {
            if headers.len() > MAX_HEADERS {
                return Err(invalid("headers", format!("at most {MAX_HEADERS} headers")));
            }
            for (name, value) in headers {
                custom_header(name, value).map_err(|m| invalid(&format!("headers/{name}"), m))?;
            }
        }
        if let Some(Some(0)) = input.rate_limit {
            return Err(invalid(
                "rateLimit",
                "requests per second must be at least 1 (null for no limit)",
            ));
        }
        Ok(EndpointPatch {
            url: input.url,
            description: input.description,
            event_types,
            project_id: input.project_id,
            tenant_id: input.tenant_id,
            headers: input.headers,
            rate_limit: input.rate_limit,
            ordered: input.ordered,
            disabled: input.disabled,
            rotate: None,
        })
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
        let patch = self.validate(input, false)?;
        if let Some(url) = &url {
            self.check_host(url).await?;
        }
        self.patch(id, patch).await
    }

    /// Refuses a URL whose host name resolves to addresses webhooks may not reach (after
    /// [`validate_url`] accepted its form).
    async fn check_host(&self, url: &str) -> Result<(), WebhookError> {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return Ok(()); // `validate` names the problem
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
        let body = Bytes::from(event.to_json());
        let headers = self.shared.headers(&ep, &event.id, &body);
        let r = self.shared.client.post(&ep.url, headers, body).await;
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

    /// Queues the stored events from `from` up to the current head that match the endpoint
    /// again; returns how many deliveries were queued.
    pub async fn replay(&self, id: &str, from: ReplayFrom) -> Result<u64, WebhookError> {
        let ep = self.get_endpoint(id).await?;
        let head = self.shared.events.log().head();
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

fn no_endpoint(id: &str) -> WebhookError {
    WebhookError::NotFound(format!("no webhook endpoint has id `{id}`"))
}

fn no_delivery(id: u64) -> WebhookError {
    WebhookError::NotFound(format!("no delivery has id `{id}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_schedules_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("100").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("5x").is_err() && parse_duration("m").is_err());
        let s = parse_schedule("5s,5m,30m,2h,5h,10h").unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[5], Duration::from_secs(36_000));
    }

    #[test]
    fn body_cache_is_bounded() {
        let cache = BodyCache::default();
        for seq in 0..(BODY_CACHE_ENTRIES as u64 + 10) {
            cache.insert(seq, Bytes::from_static(b"{}"));
        }
        assert!(cache.get(0).is_none());
        assert!(cache.get(BODY_CACHE_ENTRIES as u64 + 9).is_some());
    }
}
