//! `GET /v1/stream`: Server-Sent Events with gap-free resume (see `eventbus::transport::sse`).
//!
//! Filters: `types` (comma-separated patterns), `projectId`, `tenantId`, `userId`. Resume with
//! the `Last-Event-ID` header or the `lastEventId` parameter (for clients that cannot set
//! headers; the header wins). Each message carries `id: <seq>`, `event: <type>` and `data: <the
//! event as JSON>`; comment lines are heartbeats.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use eventbus::Pattern;
use eventbus::core::filter::EventFilter;
use eventbus::transport::sse::ConnectError;

use super::AppState;
use super::openapi::ProblemSchema;
use super::params::reject_unknown;
use super::problem::ApiError;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/stream", get(get_stream))
}

/// `GET /v1/stream`: an endless `text/event-stream`.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "stream",
    params(
        ("types" = Option<String>, Query, description = "Comma-separated type patterns"),
        ("projectId" = Option<String>, Query, description = "Exact match"),
        ("tenantId" = Option<String>, Query, description = "Exact match"),
        ("userId" = Option<String>, Query, description = "Exact match"),
        ("lastEventId" = Option<u64>, Query, description = "Resume after this `seq` (the header wins)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this `seq`"),
    ),
    responses(
        (status = 200, description = "Messages `id: <seq>`, `event: <type>`, `data: <event JSON>`; comment lines are heartbeats", content_type = "text/event-stream", body = String),
        (status = 400, description = "An invalid or unknown parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Too many open streams", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    reject_unknown(
        &params,
        &["types", "projectId", "tenantId", "userId", "lastEventId"],
    )?;
    let mut filter = EventFilter::default();
    if let Some(t) = params.get("types") {
        filter.types =
            Pattern::parse_list(t).map_err(|e| ApiError::parameter("types", e.to_string()))?;
    }
    for (name, slot) in [
        ("projectId", &mut filter.project_id),
        ("tenantId", &mut filter.tenant_id),
        ("userId", &mut filter.user_id),
    ] {
        if let Some(v) = params.get(name) {
            if v.is_empty() {
                return Err(ApiError::parameter(name, "must not be empty"));
            }
            *slot = Some(v.clone());
        }
    }
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(parse_cursor("Last-Event-ID", v.to_str().unwrap_or("?"))?),
        None => params
            .get("lastEventId")
            .map(|v| parse_cursor("lastEventId", v))
            .transpose()?,
    };
    let conn = state
        .bus
        .sse()
        .connect(filter, resume)
        .map_err(|e| match e {
            ConnectError::TooManyConnections(_) => ApiError::Overloaded,
            other => ApiError::Internal(other.to_string()),
        })?;
    let stream = futures_util::stream::unfold(conn, |mut conn| async move {
        conn.next_chunk()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), conn))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn parse_cursor(name: &str, value: &str) -> Result<u64, ApiError> {
    value.trim().parse::<u64>().map_err(|_| {
        ApiError::parameter(name, format!("`{value}` is not an event id; pass the `id:` of the last message received (a non-negative integer)"))
    })
}
