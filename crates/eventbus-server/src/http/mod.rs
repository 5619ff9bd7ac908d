//! The HTTP API (DESIGN.md §3). Each resource module exposes `router()` and verb_noun handlers.
//!
//! Layout: `events` (publish, query, get), `event_types` (the catalogue), `health`
//! (liveness and readiness), `stream` (SSE), `problem` (the error table), `body` (JSON bodies), `params`
//! (query strings).

mod body;
mod event_types;
mod events;
mod health;
mod params;
pub mod problem;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use eventbus::EventBus;

use crate::config::Config;
use problem::ApiError;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The bus.
    pub bus: EventBus,
    /// The server's settings.
    pub config: Arc<Config>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(events::router())
        .merge(event_types::router())
        .merge(health::router())
        .merge(stream::router())
        .fallback(not_found)
        // Bodies are read by `body::read_json` with the configured limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
