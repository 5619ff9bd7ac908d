//! The `eventbus` server: configuration, the HTTP API and the command line around the
//! [`eventbus`] library.
//!
//! # Layout
//! - [`config`]: the one validated [`Config`] (env, `.env`, CLI flags).
//! - [`telemetry`]: OpenTelemetry export over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`cli`]: one module per command (`serve`, `migrate`, `keys`, `archive`, `health`,
//!   `version`); `main.rs` only parses, sets up logging and dispatches.
//! - [`http`]: the routes of DESIGN.md §3, one module per resource (its handlers, its routes and
//!   its part of the OpenAPI document), the modules they share (state, auth, body, params, the
//!   problem+json table) and the document's assembly.
//! - [`build_bus`]: opens the store ([`eventbus::store::open`]), creates the plugin host on its
//!   plugin tables and builds the bus, which starts every transport.
//! - [`run`]: opens the store, builds the bus, serves until the shutdown token fires, then
//!   drains: in-flight requests finish, webhook attempts in flight are recorded, queued writes
//!   commit, delivery tasks stop. With `EVENT_RETENTION_DAYS` set, an archiver task moves old
//!   events into archive files at start and hourly, and stops with the server; a sampler task
//!   takes the figures of `GET /v1/stats` every `STATS_SAMPLE_INTERVAL` and stops with it too.

pub mod cli;
pub mod config;
pub mod http;
pub mod telemetry;

/// Entry points for the fuzz targets in `fuzz/`: the parts of the HTTP layer they exercise
/// that are not public otherwise. Not an API: they change whenever the targets need it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http::body::decode;
    pub use crate::http::params::{event_query, include_archived};
    pub use crate::http::server::{ReadLimits, serve_connection};
    pub use crate::http::stream::{stream_request, token_deadline};
}

use std::sync::Arc;

use eventbus::bus::BuildError;
use eventbus::plugin::{HostOptions, PluginHost};
use eventbus::security::Keys;
use eventbus::store::StoreError;
use eventbus::store::archive::{Archive, open_target};
use eventbus::transport::webhook::PayloadShaper;
use eventbus::{BusOptions, EventBus};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// How often the archiver runs (besides at start) when `EVENT_RETENTION_DAYS` is set.
const ARCHIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store could not be opened or migrated. (The cause is part of the message and not
    /// also a `source`, so an error report prints it once.)
    #[error("cannot open the event store: {0}")]
    Store(StoreError),
    /// The webhook transport could not start.
    #[error("cannot start the webhook transport: {0}")]
    Webhooks(eventbus::transport::webhook::client::ClientError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(std::io::Error),
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::Store(e)
    }
}

impl From<BuildError> for ServerError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Store(e) => ServerError::Store(e),
            BuildError::Webhooks(e) => ServerError::Webhooks(e),
            other => ServerError::Store(StoreError::Internal(other.to_string())),
        }
    }
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        ServerError::Io(e)
    }
}

/// A built bus, its plugin host and the archive of its store. Dereferences to the
/// [`EventBus`].
#[derive(Clone)]
pub struct Bus {
    bus: EventBus,
    plugins: Option<PluginHost>,
    archive: Arc<Archive>,
}

impl Bus {
    /// Archiving of the bus's store into `EVENT_ARCHIVE_URL`.
    pub fn archive(&self) -> &Arc<Archive> {
        &self.archive
    }

    /// The plugin host running beside the bus.
    pub fn plugins(&self) -> Option<&PluginHost> {
        self.plugins.as_ref()
    }
}

impl std::ops::Deref for Bus {
    type Target = EventBus;

    fn deref(&self) -> &EventBus {
        &self.bus
    }
}

/// Opens the store of `config` (applying migrations) and builds the bus on it, with the
/// JavaScript plugins of `PLUGINS_DIR` and, when the store backend has webhook tables, the
/// webhook transport.
pub async fn build_bus(config: &Config) -> Result<Bus, ServerError> {
    build(config, true).await
}

/// Like [`build_bus`] without loading plugins or delivering webhooks: for the maintenance
/// commands (`migrate`, `archive`, `keys`), which must not run plugin code or publish their
/// lifecycle events.
pub async fn build_bus_for_maintenance(config: &Config) -> Result<Bus, ServerError> {
    build(config, false).await
}

async fn build(config: &Config, with_plugins: bool) -> Result<Bus, ServerError> {
    // Before anything takes a metric handle (a plugin loaded now keeps its call counter): a
    // handle taken with no recorder installed counts nowhere.
    http::metrics::install();
    let target = open_target(&config.event_archive_url).map_err(StoreError::from)?;
    let stores = eventbus::store::open(&config.event_store_url, config.store_options()).await?;
    let archive = Arc::new(Archive::new(stores.archive, target));
    let store = stores.events;
    let webhooks = stores.webhooks;
    let groups = stores.groups;
    let options = BusOptions {
        max_payload_bytes: config.max_payload_bytes,
        max_json_depth: config.max_json_depth as usize,
        strict_types: config.strict_event_types,
        max_batch: config.max_batch_events as usize,
        sse: config.sse_options(),
        ..BusOptions::default()
    };
    // The host runs in both cases; only `build_bus` gives it the plugins folder.
    let plugins = PluginHost::new(
        stores.plugins,
        HostOptions {
            dir: with_plugins.then(|| config.plugins_dir.clone()),
            ..config.plugin_options()
        },
        Vec::new(),
    );
    let mut builder = EventBus::builder(store.clone())
        .options(options)
        .extension(Arc::new(plugins.clone()))
        .groups(groups);
    // A server delivers webhooks, their bodies shaped by plugins; the maintenance commands do
    // not deliver.
    if with_plugins {
        builder = builder
            .webhooks(webhooks, config.webhook_options())
            .payload_shaper(Arc::new(plugins.clone()) as Arc<dyn PayloadShaper>);
    }
    match builder.build().await {
        Ok(bus) => Ok(Bus {
            bus,
            plugins: Some(plugins),
            archive,
        }),
        Err(e) => {
            store.close().await;
            Err(e.into())
        }
    }
}

/// Opens the store, builds the bus and [`serve`]s.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let bus = build_bus(&config).await?;
    serve(bus, config, listener, shutdown).await
}

/// Serves the API on `listener` until `shutdown` is cancelled, then shuts down cleanly:
/// requests in flight are answered, webhook attempts in flight are recorded (under the drain
/// deadline), acknowledged events are durable, the store is closed.
pub async fn serve(
    bus: Bus,
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let Bus {
        bus,
        plugins,
        archive,
    } = bus;
    let keys = match Keys::open(
        bus.store().clone(),
        config.admin_key(),
        config.token_secret(),
    )
    .await
    {
        Ok(keys) => Arc::new(keys),
        Err(e) => {
            bus.shutdown().await;
            return Err(e.into());
        }
    };
    if config.admin_key().is_none() {
        tracing::warn!("EVENT_BUS_ADMIN_KEY is not set: only keys already stored can use the API");
    }
    if bus.webhooks().is_none() {
        tracing::warn!(
            store = bus.store().backend(),
            "webhooks are not available on this store backend"
        );
    }
    let config_shutdown_ms = config.shutdown_timeout;
    let stop_archiver = CancellationToken::new();
    let archiver = config.event_retention_days.0.map(|days| {
        tokio::spawn(archive.clone().run_periodically(
            days,
            ARCHIVE_INTERVAL,
            stop_archiver.clone(),
        ))
    });
    let sampler = Arc::new(eventbus::sample::Sampler::new(
        bus.clone(),
        config.stats_interval(),
    ));
    let stop_sampler = CancellationToken::new();
    let sampling = tokio::spawn(sampler.clone().run(stop_sampler.clone()));
    let deadline_token = shutdown.clone();
    http::metrics::install();
    if bus.webhooks().is_some() {
        eventbus::metric::describe_webhooks();
    }
    let durable = matches!(
        bus.store().durability(),
        eventbus::store::Durability::Durable
    );
    metrics::gauge!(eventbus::metric::STORE_DURABLE_ACKS).set(if durable { 1.0 } else { 0.0 });
    let outboxes = Arc::new(eventbus::outbox::Outboxes::start(
        &bus,
        config.outbox_sources.0.clone(),
    ));
    let state = http::AppState {
        bus: bus.clone(),
        plugins,
        config: Arc::new(config.clone()),
        archive,
        keys,
        limits: Default::default(),
        outboxes: outboxes.clone(),
        sampler,
    };
    let app = http::router(state);
    tracing::info!(addr = %listener.local_addr()?, store = bus.store().backend(), "eventbus listening");
    // On shutdown, SSE streams end first: they never finish by themselves, and the graceful
    // shutdown waits for every open response.
    let sse = bus.sse().clone();
    let signal = async move {
        shutdown.cancelled().await;
        sse.close();
    };
    // Requests still open `SHUTDOWN_TIMEOUT` after the signal (a stalled client) are dropped.
    let deadline = std::time::Duration::from_millis(config_shutdown_ms);
    let limits = http::server::ReadLimits {
        header_timeout: std::time::Duration::from_millis(config.request_read_timeout),
        max_header_bytes: config.max_header_bytes as usize,
    };
    let serving = http::server::serve(listener, app, limits, signal);
    let served = tokio::select! {
        served = serving => served,
        _ = async {
            deadline_token.cancelled().await;
            tokio::time::sleep(deadline).await;
        } => {
            tracing::warn!(timeout_ms = deadline.as_millis() as u64, "requests still open at the shutdown deadline were dropped");
            Ok(())
        }
    };
    // An archive run in progress finishes its segment transactions before the store closes;
    // the sampler stops before it too (it reads the webhook queue's depth from the store).
    stop_archiver.cancel();
    if let Some(archiver) = archiver {
        let _ = archiver.await;
    }
    stop_sampler.cancel();
    let _ = sampling.await;
    // The relays stop before the store closes: a batch in flight is appended, or left in its
    // outbox for the next relay.
    outboxes.shutdown().await;
    // Webhook attempts in flight drain (under their deadline) before the store closes.
    bus.shutdown().await;
    tracing::info!("eventbus stopped");
    Ok(served?)
}
