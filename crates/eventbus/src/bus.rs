//! The bus: publish runs the middleware chain, appends to the store and returns once the events
//! are durable; delivery to subscribers and transports is driven by the store's commit log.
//!
//! [`EventBusBuilder::build`] starts every transport: in-process subscribers, the SSE hub, the
//! consumer groups when given a group store ([`EventBusBuilder::groups`]) and, when given a
//! webhook store ([`EventBusBuilder::webhooks`]), the webhook transport, after the extensions
//! (the plugin host, whose plugins may shape webhook bodies through the [`PayloadShaper`] given
//! to [`EventBusBuilder::payload_shaper`]). The transports know nothing of the bus: the webhook
//! transport publishes its status events through a [`StatusSink`] that holds the
//! bus weakly, so the bus, which owns the transport, is not kept alive by it.
//! [`EventBus::shutdown`] stops them in the reverse order: webhook attempts in flight drain
//! first, then the extensions stop, then the delivery tasks, then the store closes.
//!
//! Guarantees of the Rust API:
//! - `publish` returns `Ok` only after the event is durable in the store (invariant 1);
//! - a batch is atomic: every event is stored, or none;
//! - in-process subscribers see each event committed after they subscribed exactly once, in
//!   `seq` order (see [`crate::transport::internal`]).
//!
//! What runs beside the bus (the plugin host) joins it as an [`Extension`]: the bus knows the
//! trait, never the code behind it, so the bus depends on no plugin module (they depend on it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::core::catalogue::{DefinitionError, EventTypeDef, TypeEntry, TypeRegistry};
use crate::core::event::{Event, FieldError, NewEvent};
use crate::core::middleware::{
    EnrichmentMiddleware, LoggingMiddleware, Middleware, MiddlewareChain, MiddlewareError,
    PublishContext, Rejection, SecurityMiddleware, ValidationMiddleware,
};
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::metric;
use crate::store::group::GroupStore;
use crate::store::webhook::WebhookStore;
use crate::store::{Appended, EventPage, EventQuery, EventStore, ExpectedSeq, StoreError};
use crate::transport::consumer::{Consumer, ConsumerOptions};
use crate::transport::group::GroupService;
use crate::transport::internal::{Subscribers, Subscription};
use crate::transport::sse::{SseHub, SseOptions};
use crate::transport::webhook::client::ClientError;
use crate::transport::webhook::{
    PayloadShaper, StatusError, StatusSink, WebhookOptions, WebhookService,
};

/// Default limit on a payload's size.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Default limit on the events of one batch.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// Tunables of the bus.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Largest accepted payload, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// Deepest nesting of arrays and objects in a payload ([`crate::core::payload`]).
    pub max_json_depth: usize,
    /// Refuse types that are not in the catalogue.
    pub strict_types: bool,
    /// Most events in one batch.
    pub max_batch: usize,
    /// Queue length of each in-process subscriber.
    pub subscriber_queue: usize,
    /// The SSE hub's settings.
    pub sse: SseOptions,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_json_depth: crate::core::payload::DEFAULT_MAX_JSON_DEPTH,
            strict_types: false,
            max_batch: DEFAULT_MAX_BATCH,
            subscriber_queue: 1024,
            sse: SseOptions::default(),
        }
    }
}

/// Why a publish failed. Nothing of the publish was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A field is malformed.
    #[error(transparent)]
    Invalid(FieldError),
    /// A middleware refused the event.
    #[error(transparent)]
    Rejected(Rejection),
    /// A middleware failed.
    #[error("middleware `{middleware}` failed: {message}")]
    MiddlewareFailed {
        /// Which one.
        middleware: String,
        /// What happened.
        message: String,
    },
    /// The batch is empty or larger than allowed.
    #[error("a batch holds 1 to {max} events; this one holds {len}")]
    BatchSize {
        /// Events in the batch.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of one event of [`EventBus::publish_relayed`].
#[derive(Debug, Clone)]
pub enum Relayed {
    /// Stored now, or before with the same content (`created: false`).
    Appended(Appended),
    /// Refused for good; what is wrong, for a dead letter.
    Refused(String),
}

/// Why registering an event type failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The definition is invalid.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an [`Extension`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The store failed; [`EventBusBuilder::build`] returns this error as it is.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else; `build` returns it as [`StoreError::Internal`] with this text.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Something that runs beside the bus and takes part in it: it adds steps to the publish chain,
/// starts once the bus is built and stops early when the bus shuts down. The plugin host
/// (`PluginHost`) is one; whoever builds the bus creates it and keeps a handle on it.
#[async_trait]
pub trait Extension: Send + Sync + 'static {
    /// Steps for the chain's custom slot, after the builder's own custom middleware. Called
    /// once, while the bus is built.
    fn middleware(&self) -> Vec<Arc<dyn Middleware>>;

    /// Starts the extension on the built bus, before [`EventBusBuilder::build`] returns. An
    /// error shuts the bus down (calling [`Extension::shutdown`]) and fails the build.
    async fn start(&self, bus: EventBus) -> Result<(), ExtensionError>;

    /// Stops the extension; run by [`EventBus::shutdown`] after webhook attempts drained, while
    /// delivery still runs.
    async fn shutdown(&self);
}

/// Why building the bus failed. Nothing was left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The store failed (or an extension could not start).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The webhook transport could not start.
    #[error("cannot start the webhook transport: {0}")]
    Webhooks(ClientError),
}

/// Builds an [`EventBus`].
pub struct EventBusBuilder {
    store: Arc<dyn EventStore>,
    options: BusOptions,
    security: Option<Arc<dyn Middleware>>,
    custom: Vec<Arc<dyn Middleware>>,
    extensions: Vec<Arc<dyn Extension>>,
    webhooks: Option<(Arc<dyn WebhookStore>, WebhookOptions)>,
    payload_shaper: Option<Arc<dyn PayloadShaper>>,
    groups: Option<Arc<dyn GroupStore>>,
}

impl EventBusBuilder {
    /// Adds an extension (such as the plugin host): its middleware joins the chain's custom
    /// slot, after the custom middleware and the extensions added before it; it starts with the
    /// bus, in the order added, and stops with it.
    pub fn extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Sets the options.
    pub fn options(mut self, options: BusOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the security step of the chain (after validation, before enrichment; by
    /// default [`SecurityMiddleware`], which checks authenticated publishers against their key).
    pub fn security(mut self, middleware: Arc<dyn Middleware>) -> Self {
        self.security = Some(middleware);
        self
    }

    /// Appends a custom middleware to the end of the chain.
    pub fn middleware(mut self, middleware: Arc<dyn Middleware>) -> Self {
        self.custom.push(middleware);
        self
    }

    /// Delivers webhooks: [`build`](Self::build) starts the webhook transport over `store` (the
    /// webhook tables of the bus's store backend) with `options`.
    pub fn webhooks(mut self, store: Arc<dyn WebhookStore>, options: WebhookOptions) -> Self {
        self.webhooks = Some((store, options));
        self
    }

    /// Shapes webhook bodies with `shaper` (the plugin host, in the server); without it, every
    /// body is the event as it was stored.
    pub fn payload_shaper(mut self, shaper: Arc<dyn PayloadShaper>) -> Self {
        self.payload_shaper = Some(shaper);
        self
    }

    /// Serves consumer groups: [`build`](Self::build) starts the consumer group transport over
    /// `store` (the group tables of the bus's store backend); [`EventBus::groups`] reaches it.
    pub fn groups(mut self, store: Arc<dyn GroupStore>) -> Self {
        self.groups = Some(store);
        self
    }

    /// Loads the catalogue (adding the built-in types) and starts delivery: subscribers, the
    /// SSE hub, the consumer groups, the extensions, then the webhook transport when one was
    /// asked for.
    pub async fn build(self) -> Result<EventBus, BuildError> {
        self.store
            .ensure_event_types(EventTypeDef::builtins(Timestamp::now()))
            .await?;
        let registry = Arc::new(TypeRegistry::new());
        for def in self.store.list_event_types().await? {
            let name = def.name.clone();
            match TypeEntry::compile(def) {
                Ok(entry) => registry.insert(entry),
                Err(e) => {
                    tracing::error!(r#type = %name, error = %e, "stored event type is invalid; ignored")
                }
            }
        }
        let mut steps: Vec<Arc<dyn Middleware>> = vec![Arc::new(
            ValidationMiddleware::new(
                registry.clone(),
                self.options.max_payload_bytes,
                self.options.strict_types,
            )
            .max_json_depth(self.options.max_json_depth),
        )];
        steps.push(
            self.security
                .unwrap_or_else(|| Arc::new(SecurityMiddleware)),
        );
        steps.push(Arc::new(EnrichmentMiddleware));
        steps.push(Arc::new(LoggingMiddleware));
        steps.extend(self.custom);
        for extension in &self.extensions {
            steps.extend(extension.middleware());
        }

        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let subscribers = Subscribers::new(
            self.store.clone(),
            self.options.subscriber_queue,
            tasks.clone(),
            cancel.clone(),
        );
        subscribers.start();
        let sse = SseHub::start(
            self.store.clone(),
            self.options.sse.clone(),
            &tasks,
            cancel.child_token(),
        );
        let groups = self
            .groups
            .map(|g| GroupService::new(g, self.store.clone(), cancel.child_token()));
        let bus = EventBus {
            inner: Arc::new(Inner {
                store: self.store,
                groups,
                chain: MiddlewareChain::new(steps),
                registry,
                subscribers,
                sse,
                options: self.options,
                tasks,
                cancel,
                extensions: self.extensions,
                webhooks: OnceLock::new(),
                published: AtomicU64::new(0),
            }),
        };
        for extension in &bus.inner.extensions {
            if let Err(e) = extension.start(bus.clone()).await {
                bus.shutdown().await;
                return Err(BuildError::Store(match e {
                    ExtensionError::Store(s) => s,
                    other => StoreError::Internal(other.to_string()),
                }));
            }
        }
        // After the extensions: a shaping plugin is loaded before the first attempt is sent,
        // so no body meant to be shaped goes out as the bare event.
        if let Some((store, options)) = self.webhooks {
            let status = Arc::new(BusStatus(Arc::downgrade(&bus.inner)));
            match WebhookService::start(
                bus.inner.store.clone(),
                store,
                options,
                status,
                self.payload_shaper,
            ) {
                Ok(service) => {
                    let _ = bus.inner.webhooks.set(service);
                }
                Err(e) => {
                    bus.shutdown().await;
                    return Err(BuildError::Webhooks(e));
                }
            }
        }
        Ok(bus)
    }
}

/// The bus as the webhook transport's [`StatusSink`]. It holds the bus weakly: the bus owns the
/// transport, and a strong handle would keep both alive forever.
struct BusStatus(Weak<Inner>);

#[async_trait::async_trait]
impl StatusSink for BusStatus {
    async fn publish_status(&self, event: NewEvent) -> Result<(), StatusError> {
        let inner = self.0.upgrade().ok_or(StatusError::Closed)?;
        match (EventBus { inner }).publish(event).await {
            Ok(_) => Ok(()),
            Err(PublishError::Store(StoreError::Conflict { .. })) => Err(StatusError::Exists),
            Err(e) if refused(&e) => Err(StatusError::Refused(e.to_string())),
            Err(e) => Err(StatusError::Publish(Box::new(e))),
        }
    }
}

struct Inner {
    store: Arc<dyn EventStore>,
    groups: Option<Arc<GroupService>>,
    chain: MiddlewareChain,
    registry: Arc<TypeRegistry>,
    subscribers: Arc<Subscribers>,
    sse: Arc<SseHub>,
    options: BusOptions,
    tasks: TaskTracker,
    cancel: CancellationToken,
    extensions: Vec<Arc<dyn Extension>>,
    /// Set once by the builder, after the extensions started.
    webhooks: OnceLock<Arc<WebhookService>>,
    /// Events this bus stored (duplicates of stored events not counted).
    published: AtomicU64,
}

/// What waits in each queue of one process, the figures behind `eventbus_queue_depth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct QueueDepths {
    /// Appends waiting for the store's group commit.
    pub store_writer: usize,
    /// Events waiting in in-process subscriber queues.
    pub subscribers: usize,
    /// Frames buffered for SSE streams.
    pub sse: usize,
    /// Pending webhook deliveries in the store; `None` without a webhook transport, or when the
    /// store could not be read.
    pub webhooks: Option<u64>,
}

/// The event bus; cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("store", &self.inner.store.backend())
            .field("chain", &self.inner.chain)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A builder over `store`.
    pub fn builder(store: Arc<dyn EventStore>) -> EventBusBuilder {
        EventBusBuilder {
            store,
            options: BusOptions::default(),
            security: None,
            custom: Vec::new(),
            extensions: Vec::new(),
            webhooks: None,
            payload_shaper: None,
            groups: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// The options.
    pub fn options(&self) -> &BusOptions {
        &self.inner.options
    }

    /// The chain's step names, in order.
    pub fn middleware_names(&self) -> Vec<&str> {
        self.inner.chain.names()
    }

    /// Publishes one event as a trusted in-process publisher.
    pub async fn publish(&self, event: NewEvent) -> Result<Appended, PublishError> {
        self.publish_with(event, &PublishContext::default()).await
    }

    /// Publishes one event on behalf of `ctx`.
    pub async fn publish_with(
        &self,
        event: NewEvent,
        ctx: &PublishContext,
    ) -> Result<Appended, PublishError> {
        self.publish_one(event, ctx, None).await
    }

    /// Publishes one event on behalf of `ctx`, stored only if the last stored event of its
    /// project has `seq` `expected_last_seq` (`0`: none); see
    /// [`EventBus::publish_batch_expecting`].
    pub async fn publish_expecting(
        &self,
        event: NewEvent,
        ctx: &PublishContext,
        expected_last_seq: u64,
    ) -> Result<Appended, PublishError> {
        self.publish_one(event, ctx, Some(expected_last_seq)).await
    }

    async fn publish_one(
        &self,
        event: NewEvent,
        ctx: &PublishContext,
        expected_last_seq: Option<u64>,
    ) -> Result<Appended, PublishError> {
        let started = Instant::now();
        let label = self.type_label(&event.event_type);
        let result = async {
            let mut event = event
                .into_event(Timestamp::now())
                .map_err(PublishError::Invalid)?;
            self.run_chain(&mut event, ctx).await?;
            let expected = expectation(&event, expected_last_seq, "projectId")?;
            let mut stored = self
                .inner
                .store
                .append_expecting(vec![event], expected)
                .instrument(tracing::info_span!("store.append", events = 1))
                .await?;
            Ok(stored.pop().expect("one event in, one out"))
        }
        .await;
        metrics::histogram!(metric::PUBLISH_DURATION).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(a) => self.stored(label, a),
            Err(e) => metric::published(label, outcome(e), 1),
        }
        result
    }

    /// Counts one event a publish answered as stored: in its metric, and in the bus's count of
    /// events stored ([`EventBus::published_total`]) when it was new.
    fn stored(&self, label: &str, appended: &Appended) {
        let how = if appended.created {
            self.inner.published.fetch_add(1, Ordering::Relaxed);
            "created"
        } else {
            "duplicate"
        };
        metric::published(label, how, 1);
    }

    /// The event type as a metric label: catalogue types by name, any other as `other`.
    fn type_label(&self, event_type: &str) -> &'static str {
        match self.inner.registry.get(event_type) {
            Some(entry) => entry.label(),
            None => "other",
        }
    }

    /// Publishes a batch atomically as a trusted in-process publisher.
    pub async fn publish_batch(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, PublishError> {
        self.publish_batch_with(events, &PublishContext::default())
            .await
    }

    /// Publishes a batch atomically on behalf of `ctx`; errors name fields as `index/field`.
    pub async fn publish_batch_with(
        &self,
        events: Vec<NewEvent>,
        ctx: &PublishContext,
    ) -> Result<Vec<Appended>, PublishError> {
        self.publish_batch_measured(events, ctx, None).await
    }

    /// Publishes a batch atomically on behalf of `ctx`, stored only if the last stored event of
    /// the first event's project has `seq` `expected_last_seq` (`0`: the project has none yet);
    /// otherwise [`StoreError::WrongExpectedSeq`] with the actual one, and nothing is stored.
    /// Checked and written atomically, also against other processes on one PostgreSQL. The first
    /// event needs a `projectId`. A batch that was stored before as a whole (same ids, same
    /// content: a retry) is answered as stored, whatever the expectation.
    pub async fn publish_batch_expecting(
        &self,
        events: Vec<NewEvent>,
        ctx: &PublishContext,
        expected_last_seq: u64,
    ) -> Result<Vec<Appended>, PublishError> {
        self.publish_batch_measured(events, ctx, Some(expected_last_seq))
            .await
    }

    async fn publish_batch_measured(
        &self,
        events: Vec<NewEvent>,
        ctx: &PublishContext,
        expected_last_seq: Option<u64>,
    ) -> Result<Vec<Appended>, PublishError> {
        let started = Instant::now();
        let labels: Vec<&'static str> = events
            .iter()
            .map(|e| self.type_label(&e.event_type))
            .collect();
        let result = self
            .publish_batch_inner(events, ctx, expected_last_seq)
            .await;
        metrics::histogram!(metric::PUBLISH_DURATION).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(stored) => {
                for (a, label) in stored.iter().zip(&labels) {
                    self.stored(label, a);
                }
            }
            Err(e) => {
                for label in &labels {
                    metric::published(label, outcome(e), 1);
                }
            }
        }
        result
    }

    async fn publish_batch_inner(
        &self,
        events: Vec<NewEvent>,
        ctx: &PublishContext,
        expected_last_seq: Option<u64>,
    ) -> Result<Vec<Appended>, PublishError> {
        let max = self.inner.options.max_batch;
        if events.is_empty() || events.len() > max {
            return Err(PublishError::BatchSize {
                len: events.len(),
                max,
            });
        }
        let now = Timestamp::now();
        let mut ready = Vec::with_capacity(events.len());
        for (index, new) in events.into_iter().enumerate() {
            let mut event = new
                .into_event(now)
                .map_err(|e| PublishError::Invalid(e.at_index(index)))?;
            self.run_chain(&mut event, ctx).await.map_err(|e| match e {
                PublishError::Rejected(mut r) => {
                    r.errors = r.errors.into_iter().map(|f| f.at_index(index)).collect();
                    r.message = format!("event {index}: {}", r.message);
                    PublishError::Rejected(r)
                }
                other => other,
            })?;
            ready.push(event);
        }
        let expected = expectation(&ready[0], expected_last_seq, "0/projectId")?;
        let span = tracing::info_span!("store.append", events = ready.len());
        Ok(self
            .inner
            .store
            .append_expecting(ready, expected)
            .instrument(span)
            .await?)
    }

    /// Publishes `events` on behalf of `ctx` as a relay does: each event passes the chain on its
    /// own, and those it accepts are appended together, in order, in one store append (one
    /// commit). The answer has one outcome per event, in order: its [`Appended`], or why the bus
    /// refuses it for good ([`Relayed::Refused`]: a field, the chain, an id stored with other
    /// content). An event stored before with the same id and content is [`Appended`] with
    /// `created: false`, so relaying a row twice stores it once. The error is for what retrying
    /// may fix (the store unavailable, a middleware that failed), and then nothing was stored.
    pub async fn publish_relayed(
        &self,
        events: Vec<NewEvent>,
        ctx: &PublishContext,
    ) -> Result<Vec<Relayed>, PublishError> {
        let started = Instant::now();
        let now = Timestamp::now();
        let mut outcomes: Vec<Option<Relayed>> = Vec::with_capacity(events.len());
        let mut accepted: Vec<(usize, Event)> = Vec::new();
        for new in events {
            let label = self.type_label(&new.event_type);
            let index = outcomes.len();
            let checked = match new.into_event(now) {
                Ok(mut event) => self.run_chain(&mut event, ctx).await.map(|()| event),
                Err(e) => Err(PublishError::Invalid(e)),
            };
            match checked {
                Ok(event) => {
                    accepted.push((index, event));
                    outcomes.push(None);
                }
                Err(e @ PublishError::MiddlewareFailed { .. }) => return Err(e),
                Err(e) => {
                    metric::published(label, outcome(&e), 1);
                    outcomes.push(Some(Relayed::Refused(e.to_string())));
                }
            }
        }
        // One append for the batch; an id conflict refuses that event alone, so the rest are
        // appended again without it.
        while !accepted.is_empty() {
            let batch: Vec<Event> = accepted.iter().map(|(_, e)| e.clone()).collect();
            match self.inner.store.append(batch).await {
                Ok(stored) => {
                    for ((index, _), appended) in accepted.drain(..).zip(stored) {
                        self.stored(self.type_label(&appended.event.event_type), &appended);
                        outcomes[index] = Some(Relayed::Appended(appended));
                    }
                }
                Err(StoreError::Conflict { index, id }) if index < accepted.len() => {
                    let (at, _) = accepted.remove(index);
                    metric::published("other", "rejected", 1);
                    outcomes[at] = Some(Relayed::Refused(format!(
                        "id `{id}` is already stored with different content"
                    )));
                }
                Err(e) => return Err(PublishError::Store(e)),
            }
        }
        metrics::histogram!(metric::PUBLISH_DURATION).record(started.elapsed().as_secs_f64());
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every event has an outcome"))
            .collect())
    }

    async fn run_chain(&self, event: &mut Event, ctx: &PublishContext) -> Result<(), PublishError> {
        self.inner.chain.run(event, ctx).await.map_err(|e| match e {
            MiddlewareError::Rejected(r) => PublishError::Rejected(r),
            MiddlewareError::Failed {
                middleware,
                message,
            } => PublishError::MiddlewareFailed {
                middleware,
                message,
            },
        })
    }

    /// Calls `handler` for every event matching `pattern` committed from now on, in `seq` order,
    /// on the subscriber's own task.
    pub fn subscribe<F, Fut>(&self, pattern: Pattern, handler: F) -> Subscription
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner
            .subscribers
            .subscribe(pattern, Arc::new(move |e| handler(e).boxed()))
    }

    /// The consumer group transport, when the bus was built with [`EventBusBuilder::groups`].
    pub fn groups(&self) -> Option<&Arc<GroupService>> {
        self.inner.groups.as_ref()
    }

    /// The SSE fan-out hub.
    pub fn sse(&self) -> &Arc<SseHub> {
        &self.inner.sse
    }

    /// The webhook transport, when the bus was built with [`EventBusBuilder::webhooks`].
    pub fn webhooks(&self) -> Option<&WebhookService> {
        self.inner.webhooks.get().map(|s| &**s)
    }

    /// Starts the durable consumer `name`: `handler` gets every event matching `pattern`, at
    /// least once, in `seq` order, from the consumer's saved cursor (see
    /// [`crate::transport::consumer`]). Handler errors and panics are retried with backoff.
    pub fn consumer<F, Fut>(
        &self,
        name: impl Into<String>,
        pattern: Pattern,
        options: ConsumerOptions,
        handler: F,
    ) -> Consumer
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.consumer_with_patterns(name.into(), vec![pattern], options, handler)
    }

    /// Like [`EventBus::consumer`], for events matching any of `patterns`.
    pub(crate) fn consumer_with_patterns<F, Fut>(
        &self,
        name: String,
        patterns: Vec<Pattern>,
        options: ConsumerOptions,
        handler: F,
    ) -> Consumer
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        Consumer::start(
            name,
            crate::core::filter::EventFilter::types(patterns),
            Arc::new(move |e| handler(e).boxed()),
            self.inner.store.clone(),
            options,
            &self.inner.tasks,
            self.inner.cancel.child_token(),
        )
    }

    /// Events waiting in in-process subscriber queues.
    pub fn subscriber_backlog(&self) -> usize {
        self.inner.subscribers.buffered()
    }

    /// Events this bus has stored since it was built, by every path into it (HTTP, the Rust
    /// API, relays, plugins, status events); a publish answered with an event already stored
    /// (same id and content) does not count. The events of other processes on one PostgreSQL
    /// are theirs.
    pub fn published_total(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }

    /// What waits in each queue of this process now. The webhook figure is a store read.
    pub async fn queue_depths(&self) -> QueueDepths {
        let webhooks = match self.webhooks() {
            Some(w) => match w.queue_depth().await {
                Ok(depth) => Some(depth),
                Err(e) => {
                    tracing::debug!(error = %e, "the webhook queue depth could not be read");
                    None
                }
            },
            None => None,
        };
        QueueDepths {
            store_writer: self.inner.store.write_queue_depth(),
            subscribers: self.subscriber_backlog(),
            sse: self.inner.sse.buffered(),
            webhooks,
        }
    }

    /// Number of live in-process subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.len()
    }

    /// The event with this id.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<Event>>, StoreError> {
        self.inner.store.get(id).await
    }

    /// A page of events.
    pub async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.inner.store.query(query).await
    }

    /// The catalogue.
    pub fn event_types(&self) -> Vec<EventTypeDef> {
        self.inner.registry.list()
    }

    /// One catalogue entry.
    pub fn event_type(&self, name: &str) -> Option<EventTypeDef> {
        self.inner.registry.get(name).map(|e| e.def.clone())
    }

    /// Registers or updates a type; returns the definition and whether it was new.
    pub async fn register_event_type(
        &self,
        name: &str,
        description: Option<String>,
        schema: Option<serde_json::Value>,
    ) -> Result<(EventTypeDef, bool), RegisterError> {
        let builtin = self.inner.registry.get(name).is_some_and(|e| e.def.builtin);
        let def = EventTypeDef {
            name: name.to_owned(),
            description,
            schema,
            builtin,
            updated_at: Timestamp::now(),
        };
        let entry = TypeEntry::compile(def.clone())?;
        let created = self.inner.store.put_event_type(def.clone()).await?;
        self.inner.registry.insert(entry);
        Ok((def, created))
    }

    /// Lets webhook attempts in flight finish and be recorded (under their drain timeout),
    /// stops the extensions and the delivery tasks, then closes the store after its queued
    /// writes.
    pub async fn shutdown(&self) {
        if let Some(webhooks) = self.inner.webhooks.get() {
            webhooks.shutdown().await;
        }
        for extension in &self.inner.extensions {
            extension.shutdown().await;
        }
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.store.close().await;
    }
}

/// The store's condition for an expected last seq, on the project of `event` (which must have
/// one; `field` names it in the error).
fn expectation(
    event: &Event,
    expected_last_seq: Option<u64>,
    field: &str,
) -> Result<Option<ExpectedSeq>, PublishError> {
    let Some(last_seq) = expected_last_seq else {
        return Ok(None);
    };
    match &event.project_id {
        Some(project_id) => Ok(Some(ExpectedSeq {
            project_id: project_id.clone(),
            last_seq,
        })),
        None => Err(PublishError::Invalid(FieldError::new(
            field,
            "an expected last seq applies to the project of the (first) event: set its projectId",
        ))),
    }
}

/// Whether `e` refuses the publish for good (a 4xx): the same publish gets the same answer.
fn refused(e: &PublishError) -> bool {
    matches!(
        e,
        PublishError::Invalid(_)
            | PublishError::Rejected(_)
            | PublishError::BatchSize { .. }
            | PublishError::Store(StoreError::Conflict { .. })
            | PublishError::Store(StoreError::WrongExpectedSeq { .. })
    )
}

/// The metric outcome of a failed publish: refused (4xx) or failed (5xx).
fn outcome(e: &PublishError) -> &'static str {
    if refused(e) { "rejected" } else { "failed" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_webhook_transport_does_not_keep_the_bus_alive() {
        let (_dir, store) = crate::store::sqlite::testing::store();
        let store = Arc::new(store);
        let bus = EventBus::builder(store.clone())
            .webhooks(store, WebhookOptions::default())
            .build()
            .await
            .expect("building the bus");
        assert!(
            bus.webhooks().is_some(),
            "the builder started the transport"
        );
        let inner = Arc::downgrade(&bus.inner);
        bus.shutdown().await;
        drop(bus);
        assert!(
            inner.upgrade().is_none(),
            "nothing of the transport holds the bus"
        );
    }
}
