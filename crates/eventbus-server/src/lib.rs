//! The `eventbus` server: configuration, the HTTP API and the command line around the
//! [`eventbus`] library.
//!
//! # Layout
//! - [`config`]: the one validated [`Config`] (env, `.env`, CLI flags).
//! - [`http`]: the routes of DESIGN.md §3, one module per resource, and the problem+json table.
//! - [`run`]: opens the store, builds the bus, serves until the shutdown token fires, then
//!   drains: in-flight requests finish, queued writes commit, delivery tasks stop.

pub mod config;
pub mod http;

use std::sync::Arc;

use eventbus::store::{self, StoreError};
use eventbus::{BusOptions, EventBus};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store could not be opened or migrated.
    #[error("cannot open the event store: {0}")]
    Store(#[from] StoreError),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store of `config` (applying migrations) and builds the bus on it.
pub async fn build_bus(config: &Config) -> Result<EventBus, ServerError> {
    let store = store::open(&config.event_store_url, config.sqlite_options()).await?;
    let options = BusOptions {
        max_payload_bytes: config.max_payload_bytes,
        strict_types: config.strict_event_types,
        max_batch: config.max_batch_events as usize,
        sse: config.sse_options(),
        ..BusOptions::default()
    };
    match EventBus::builder(store.clone()).options(options).build().await {
        Ok(bus) => Ok(bus),
        Err(e) => {
            store.close().await;
            Err(e.into())
        }
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled, then shuts down cleanly:
/// requests in flight are answered, acknowledged events are durable, the store is closed.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServerError> {
    let bus = build_bus(&config).await?;
    let state = http::AppState { bus: bus.clone(), config: Arc::new(config) };
    let app = http::router(state);
    tracing::info!(addr = %listener.local_addr()?, store = bus.store().backend(), "eventbus listening");
    // On shutdown, SSE streams end first: they never finish by themselves, and the graceful
    // shutdown waits for every open response.
    let sse = bus.sse().clone();
    let signal = async move {
        shutdown.cancelled().await;
        sse.close();
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(signal).await;
    bus.shutdown().await;
    tracing::info!("eventbus stopped");
    Ok(served?)
}
