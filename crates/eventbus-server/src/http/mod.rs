//! The HTTP API (DESIGN.md §3). Each resource module exposes `router()` and verb_noun handlers.
//!
//! Layout: `events` (publish, query, get), `event_types` (the catalogue), `health`
//! (liveness and readiness), `openapi` (the OpenAPI document), `stream` (SSE), `webhooks`,
//! `plugins` (status, reload, install, dead letters), `problem` (the error table), `body` (JSON
//! bodies), `params` (query strings).

mod body;
mod event_types;
mod events;
mod health;
pub mod metrics;
mod openapi;
mod params;
mod plugins;
pub mod problem;
mod stream;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use eventbus::EventBus;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use problem::ApiError;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The bus.
    pub bus: EventBus,
    /// The server's settings.
    pub config: Arc<Config>,
    /// The webhook transport (`None` when the store backend has no webhook support).
    pub webhooks: Option<Arc<eventbus::transport::webhook::WebhookService>>,
    /// Archived events, for queries with `includeArchived=true`.
    pub archive: Arc<eventbus::store::archive::Archive>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let cors = cors(&state.config.cors_allowed_origins);
    Router::new()
        .merge(events::router())
        .merge(event_types::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(openapi::router())
        .merge(stream::router())
        .merge(webhooks::router())
        .merge(plugins::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read by `body::read_json` with the configured limit.
        .layer(DefaultBodyLimit::disable())
        .layer(cors)
        .with_state(state)
}

/// Browsers on other origins (the Situs frontend) may call the API and open streams; keys and
/// tokens travel in headers or the query string, never in cookies, so credentials stay off.
fn cors(origins: &str) -> CorsLayer {
    let origin = if origins.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .split(',')
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("traceparent"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not served at {}", uri.path()))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
