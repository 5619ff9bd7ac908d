//! An endpoint's figures for a console: its attempts over a recent window (counts, success
//! rate, durations, the newest failure) and its deliveries by status, in one cheap read instead
//! of paging the whole log. The same rights and visibility as the log listings (`log`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use eventbus::core::time::Timestamp;
use eventbus::store::webhook::EndpointStats;

use super::access::{WebhooksProblems, service};
use super::log::log_access;
use crate::http::auth::Caller;
use crate::http::body::json;
use crate::http::params::time;
use crate::http::problem::{ApiError, StoreProblems};
use crate::http::state::AppState;

/// The window when `since` is not given: the last 24 hours.
const DEFAULT_WINDOW_MICROS: i64 = 24 * 3600 * 1_000_000;

/// `GET /v1/webhooks/{id}/stats?since=<RFC 3339>`: the attempts that started at or after
/// `since` (default 24 hours ago) and the deliveries by status (of all time).
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/stats",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("since" = Option<String>, Query, format = DateTime,
         description = "Start of the window (RFC 3339); default 24 hours ago"),
    ),
    responses(
        (status = 200, description = "The endpoint's figures", body = EndpointStats),
        (status = 400, description = "An invalid or unknown parameter"),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
    )
)]
pub(super) async fn get_endpoint_stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    log_access(&state, &caller, &id, &params, &["since"]).await?;
    let since = time(&params, "since")?
        .unwrap_or_else(|| Timestamp::now().plus_micros(-DEFAULT_WINDOW_MICROS));
    let stats = service(&state)?.endpoint_stats(&id, since).await?;
    Ok(json(StatusCode::OK, &stats))
}
