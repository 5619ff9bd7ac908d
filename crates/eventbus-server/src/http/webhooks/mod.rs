//! `/v1/webhooks` and `/v1/deliveries`: endpoints, secret rotation, test sends, the delivery and
//! attempt log and its figures, retry and replay (see docs/webhooks.md).
//!
//! Changing endpoints needs `admin`; reading them and their logs `read` or `admin`. A caller
//! bound to a tenant or projects sees only endpoints of its scope (others answer 404, like
//! missing ones), and the endpoints it makes are bound to its tenant and projects, with types
//! within its `admin` patterns, so they never receive another tenant's events.
//!
//! Layout: `access` (the webhook service and what a caller may see of it), `endpoint` (the
//! endpoints and their secrets), `log` (deliveries, attempts, retry and replay), `stats` (an
//! endpoint's figures over a recent window); [`WebhooksApi`] is their part of the API
//! description.

mod access;
mod endpoint;
mod log;
mod stats;

use axum::Router;
use axum::routing::{get, post};

use endpoint::{
    create_endpoint, delete_endpoint, disable_endpoint, enable_endpoint, get_endpoint,
    list_endpoints, rotate_secret, test_endpoint, update_endpoint,
};
use log::{get_delivery, list_attempts, list_deliveries, replay_events, retry_delivery};
use stats::get_endpoint_stats;

use super::state::AppState;
#[cfg(test)]
pub(super) use endpoint::endpoint_body;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", get(list_endpoints).post(create_endpoint))
        .route(
            "/v1/webhooks/{id}",
            get(get_endpoint)
                .patch(update_endpoint)
                .delete(delete_endpoint),
        )
        .route("/v1/webhooks/{id}/enable", post(enable_endpoint))
        .route("/v1/webhooks/{id}/disable", post(disable_endpoint))
        .route("/v1/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/v1/webhooks/{id}/test", post(test_endpoint))
        .route("/v1/webhooks/{id}/replay", post(replay_events))
        .route("/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/v1/webhooks/{id}/attempts", get(list_attempts))
        .route("/v1/webhooks/{id}/stats", get(get_endpoint_stats))
        .route("/v1/deliveries/{id}", get(get_delivery))
        .route("/v1/deliveries/{id}/retry", post(retry_delivery))
}

/// The routes of this resource in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        endpoint::list_endpoints,
        endpoint::create_endpoint,
        endpoint::get_endpoint,
        endpoint::update_endpoint,
        endpoint::delete_endpoint,
        endpoint::enable_endpoint,
        endpoint::disable_endpoint,
        endpoint::rotate_secret,
        endpoint::test_endpoint,
        log::replay_events,
        log::list_deliveries,
        log::list_attempts,
        stats::get_endpoint_stats,
        log::get_delivery,
        log::retry_delivery,
    ),
    // Schemas only parameters name, which are not collected from the paths.
    components(schemas(eventbus::store::webhook::DeliveryStatus, log::AttemptStatus))
)]
pub(super) struct WebhooksApi;
