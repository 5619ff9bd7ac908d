//! `/health/live` and `/health/ready`, in the shape NestJS Terminus users know:
//! `{"status":"ok"|"error","info":{…},"error":{…},"details":{…}}`; 503 when not ready.
//! [`HealthApi`] is their part of the API description.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::auth::require_observer;
use super::body::json as json_response;
use super::problem::ApiError;
use super::state::AppState;

/// The routes below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_live, get_ready))]
pub(super) struct HealthApi;

/// Health in the NestJS Terminus shape; liveness answers `status` only.
// The handlers build the body as JSON; this type only describes it.
#[derive(utoipa::ToSchema)]
#[schema(as = Health)]
#[allow(dead_code, reason = "described in the API document, never built")]
struct HealthBody {
    /// `ok` or `error`.
    status: String,
    /// The dependencies that are up.
    info: Option<BTreeMap<String, Value>>,
    /// The dependencies that are down.
    error: Option<BTreeMap<String, Value>>,
    /// Every dependency.
    details: Option<BTreeMap<String, Value>>,
}

/// How long the store's round trip may take before it counts as down.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What readiness says of a store that failed its round trip; the cause is logged, not shown
/// (the driver's text names hosts, users and settings, and readiness needs no key).
const STORE_DOWN: &str = "the event store did not answer the round trip; the cause has been logged";

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(get_live))
        .route("/health/ready", get(get_ready))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = HealthBody))
)]
pub(super) async fn get_live() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// Readiness: one entry per dependency.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Every dependency is up", body = HealthBody),
        (status = 503, description = "A dependency is down", body = HealthBody),
    )
)]
pub(super) async fn get_ready(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_observer(&state, &headers).await?;
    let store = state.bus.store();
    let backend = store.backend();
    let store_entry = match tokio::time::timeout(STORE_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => {
            let mut entry = json!({"status": "up", "backend": backend, "head": store.log().head()});
            if let Some(link) = store.link() {
                entry["connection"] = json!(link);
            }
            (true, entry)
        }
        Ok(Err(e)) => {
            // The driver's text names hosts, users and settings: it goes to the log only.
            tracing::warn!(error = %e, "readiness: the store's ping failed");
            (
                false,
                json!({"status": "down", "backend": backend, "message": STORE_DOWN}),
            )
        }
        Err(_) => (
            false,
            json!({"status": "down", "backend": backend, "message": "no answer within 2 s"}),
        ),
    };
    let mut checks = vec![("store", store_entry)];
    // Never takes the node out of service: it tells operators whether a 201 survives a power
    // cut with the database's present settings (see docs/operations.md, "Durability").
    let durability = store.durability();
    checks.push((
        "durability",
        (
            true,
            json!({
                "status": "up",
                "backend": backend,
                "acks": durability.describe(),
            }),
        ),
    ));
    if let Some(webhooks) = state.webhooks() {
        let stats = async {
            Ok::<_, eventbus::transport::webhook::WebhookError>((
                webhooks.queue_depth().await?,
                webhooks.overdue().await?,
            ))
        };
        let entry = match tokio::time::timeout(STORE_TIMEOUT, stats).await {
            Ok(Ok((pending, overdue))) => {
                let (max_pending, max_overdue) = (
                    state.config.webhook_ready_max_pending,
                    state.config.webhook_ready_max_overdue,
                );
                let up = pending <= max_pending && overdue <= max_overdue;
                let mut entry = json!({
                    "status": if up { "up" } else { "down" },
                    "pending": pending,
                    "maxPending": max_pending,
                    "overdueMs": overdue.as_millis() as u64,
                    "maxOverdueMs": max_overdue.as_millis() as u64,
                });
                if !up {
                    entry["message"] = json!("the webhook queue is behind its thresholds");
                }
                (up, entry)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the webhook queue could not be read");
                (false, json!({"status": "down", "message": STORE_DOWN}))
            }
            Err(_) => (
                false,
                json!({"status": "down", "message": "no answer within 2 s"}),
            ),
        };
        checks.push(("webhooks", entry));
    }
    if let Some(up) = store.notification_link() {
        let entry = if up {
            json!({"status": "up", "kind": "postgres LISTEN/NOTIFY"})
        } else {
            json!({"status": "down", "kind": "postgres LISTEN/NOTIFY",
                   "message": "not listening: commits of other processes reach this one late"})
        };
        checks.push(("notifications", (up, entry)));
    }
    if let Some(plugins) = &state.plugins {
        // Plugins never take the node out of service: a suspended or broken plugin is reported
        // for operators, and the bus carries on without it.
        checks.push((
            "plugins",
            (
                true,
                json!({
                    "status": "up",
                    "loaded": plugins.names().len(),
                    "suspended": plugins.suspended(),
                    "failed": plugins.failed(),
                }),
            ),
        ));
    }
    if let Some(days) = state.config.event_retention_days.0 {
        // Like plugins, a failing archiver never takes the node out of service: the events stay
        // hot and the next run tries again. The entry tells operators how the last runs went.
        let status = state.archive.status();
        let mut entry = json!({
            "status": "up",
            "retentionDays": days,
            "lastSuccess": status.last_success.map(|t| t.to_string()),
            "lastFailure": status.last_failure.map(|t| t.to_string()),
        });
        if let Some(e) = status.last_error {
            entry["lastError"] = json!(e);
        }
        checks.push(("archive", (true, entry)));
    }
    if !state.outboxes.is_empty() {
        // Never takes the node out of service: an application database that cannot be reached
        // is that source's outage (its rows wait in their outbox), reported as degraded.
        let sources: serde_json::Map<String, serde_json::Value> = state
            .outboxes
            .list()
            .into_iter()
            .map(|o| {
                let mut entry = json!({"status": o.state, "backlog": o.backlog,
                                       "oldestRowAgeMs": o.oldest_row_age_ms});
                if o.state == "degraded" {
                    entry["message"] =
                        json!("the application database or the store cannot be reached; retrying");
                }
                (o.name, entry)
            })
            .collect();
        checks.push((
            "outboxes",
            (true, json!({"status": "up", "sources": sources})),
        ));
    }
    if let Some(groups) = state.bus.groups() {
        // Never takes the node out of service: a consumer that lags or piles up dead letters is
        // its consumers' problem, not the bus's. The entry reports the totals.
        let entry = match tokio::time::timeout(STORE_TIMEOUT, groups.record_metrics()).await {
            Ok(Ok(t)) => json!({
                "status": "up",
                "groups": t.groups,
                "counted": t.counted,
                "pending": t.pending,
                "ackPending": t.ack_pending,
                "deadLettered": t.dead_lettered,
            }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the consumer groups could not be read");
                json!({"status": "up", "message": "the consumer groups could not be read; the cause has been logged"})
            }
            Err(_) => {
                json!({"status": "up", "message": "the consumer groups did not answer within 2 s"})
            }
        };
        checks.push(("consumers", (true, entry)));
    }
    let sse = state.bus.sse();
    let open = sse
        .stats()
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    checks.push((
        "streams",
        (
            true,
            json!({"status": "up", "open": open, "max": sse.options().max_connections}),
        ),
    ));
    Ok(terminus(checks))
}

/// The Terminus body and status of a set of `(name, (up, entry))` checks.
fn terminus(checks: Vec<(&str, (bool, Value))>) -> Response {
    let (mut info, mut error, mut details) = (Map::new(), Map::new(), Map::new());
    let mut ok = true;
    for (name, (up, entry)) in checks {
        ok &= up;
        if up { &mut info } else { &mut error }.insert(name.into(), entry.clone());
        details.insert(name.into(), entry);
    }
    let body = json!({
        "status": if ok { "ok" } else { "error" },
        "info": Value::Object(info),
        "error": Value::Object(error),
        "details": Value::Object(details),
    });
    json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}
