//! `GET /v1/stats`: the figures of the last hour of this process, rolled up for a console's
//! charts (events per second, webhook success rate and latency, open streams, queue depths), so
//! a browser never scrapes `/metrics`. The samples are taken by the server's
//! [`eventbus::sample::Sampler`]; [`StatsApi`] is this route's part of the API description.
//!
//! The figures cover every tenant and type, so only a key bound to no tenant and no project,
//! whose `read` or `admin` types cover every type, reads them.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use eventbus::core::pattern::Pattern;
use eventbus::core::principal::{Denied, Permission};
use eventbus::core::time::Timestamp;
use eventbus::sample::Sample;
use serde::Serialize;

use super::auth::Caller;
use super::body::json;
use super::params::reject_unknown;
use super::problem::ApiError;
use super::state::AppState;

/// The route below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_stats))]
pub(super) struct StatsApi;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/stats", get(get_stats))
}

/// `GET /v1/stats` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Stats)]
#[serde(rename_all = "camelCase")]
struct StatsBody {
    /// Seconds between samples (`STATS_SAMPLE_INTERVAL`).
    interval_seconds: u64,
    /// The samples of the last hour (the last 360), oldest first; with `since`, those taken
    /// after it.
    samples: Vec<Sample>,
    /// The interval in progress, from the last sample to now.
    current: Sample,
}

/// `GET /v1/stats?since=`.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "operations",
    params(
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339: only the samples taken after it (poll with the last `at` seen)"),
    ),
    responses(
        (status = 200, description = "The samples, oldest first, and the interval in progress", body = StatsBody),
        (status = 400, description = "`since` is not an RFC 3339 time, or an unknown parameter"),
        (status = 403, description = "The key is bound to a tenant or projects, or its types do not cover every type"),
    )
)]
pub(super) async fn get_stats(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    require_whole_bus(&caller)?;
    reject_unknown(&params, &["since"])?;
    let since = params
        .get("since")
        .map(|v| {
            Timestamp::parse_rfc3339(v).map_err(|e| {
                ApiError::parameter("since", format!("{e}; pass the `at` of a sample"))
            })
        })
        .transpose()?;
    let sampler = &state.sampler;
    Ok(json(
        StatusCode::OK,
        &StatsBody {
            interval_seconds: sampler.interval().as_secs(),
            samples: sampler.since(since),
            current: sampler.current().await,
        },
    ))
}

/// Refuses (403) a caller that may not see figures of the whole process: it needs `admin` or
/// `read` over every type (`>`), on a key bound to no tenant and no project.
fn require_whole_bus(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[Permission::Admin, Permission::Read])?;
    let every_type = Pattern::parse(">").expect("`>` is a pattern");
    let sees_every_type = [Permission::Admin, Permission::Read]
        .into_iter()
        .any(|p| caller.principal.covers(p, &every_type));
    if !caller.principal.is_unscoped() || !sees_every_type {
        return Err(caller.deny(Denied(
            "these figures count the events, webhooks and streams of every tenant and type: \
             only a key bound to no tenant or project, whose `read` or `admin` types cover every \
             type (`>`), may read them"
                .into(),
        )));
    }
    Ok(())
}
