//! The HTTP API (DESIGN.md §3). Each resource module exposes `router()` and verb_noun handlers.
//!
//! Layout: `events` (publish, query, get), `event_types` (the catalogue), `health`
//! (liveness and readiness), `keys` (API keys), `tokens` (browser stream tokens), `stream` (SSE),
//! `webhooks` (endpoints, and the delivery and attempt log), `plugins` (status, reload, install,
//! dead letters), `consumers` (consumer groups: fetch, ack, nack, dead letters), `outboxes` (the
//! outbox relays and their dead letters), `metrics`, `stats` (the figures of the last hour, for
//! the console), `console` (the embedded web console); `openapi` (the OpenAPI document,
//! assembled from the `XxxApi` part each resource module describes); `state` (what every handler can reach), `auth` (who is
//! calling), `problem` (the error table), `body` (JSON bodies), `cloudevent` (the CloudEvents
//! codec of publishes, answers and streams), `params` (query strings),
//! `server` (the HTTP/1 connection loop with its header limits and read timeouts), `head_error`
//! (problem bodies for request heads hyper cannot parse), `stream_conn` (connections that open
//! with a stream request, served without hyper's buffers).
//!
//! Imports go one way: resource modules use `state`, `auth`, `problem`, `body`, `cloudevent` and
//! `params`,
//! never each other, `openapi` or this module; `openapi` and this module use the resources.
//!
//! Every `/v1` route takes a [`auth::Caller`] (401 without a valid key) and checks its
//! permission and scope (403); `/health/live` and `/openapi.json` are open, `/health/ready` and
//! `/metrics` too unless `HEALTH_METRICS_PUBLIC=false`.

pub mod auth;
pub(crate) mod body;
pub(crate) mod cloudevent;
mod console;
mod consumers;
mod event_types;
mod events;
mod head_error;
mod health;
mod keys;
pub mod metrics;
mod openapi;
mod outboxes;
pub(crate) mod params;
mod plugins;
pub mod problem;
pub mod server;
mod state;
mod stats;
pub(crate) mod stream;
mod stream_conn;
mod tokens;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use problem::ApiError;
pub use state::{AppState, Limits};

/// The whole API.
pub fn router(state: AppState) -> Router {
    let cors = cors(&state.config.cors_allowed_origins);
    Router::new()
        .merge(events::router())
        .merge(event_types::router())
        .merge(health::router())
        .merge(keys::router())
        .merge(metrics::router())
        .merge(stats::router())
        .merge(openapi::router())
        .merge(stream::router())
        .merge(tokens::router())
        .merge(webhooks::router())
        .merge(plugins::router())
        .merge(outboxes::router())
        .merge(consumers::router())
        .merge(console::router())
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
            HeaderName::from_static(events::EXPECTED_LAST_SEQ),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not served at {}", uri.path()))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
