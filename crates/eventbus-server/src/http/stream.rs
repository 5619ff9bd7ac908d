//! `GET /v1/stream`: Server-Sent Events with gap-free resume (see `eventbus::transport::sse`).
//!
//! Filters: `types` (comma-separated patterns), `projectId`, `tenantId`, `userId`. Resume with
//! the `Last-Event-ID` header or the `lastEventId` parameter (for clients that cannot set
//! headers; the header wins). Each message carries `id: <seq>`, `event: <type>` and `data: <the
//! event as JSON>`; comment lines are heartbeats.
//!
//! Authentication: a key with `subscribe` (header) or a browser token (`?token=`). The filter is
//! narrowed to the caller's tenant, projects and patterns; streams count against the key's and
//! the tenant's limits; a token's stream ends with a `token_expired` event when it expires.
//! [`StreamApi`] is its part of the API description.

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
use eventbus::core::principal::Permission;
use eventbus::security::limit::ConnectionGuard;
use eventbus::transport::sse::{ConnectError, Connection, control_frame};

use super::auth::Caller;
use super::cloudevent;
use super::params::reject_unknown;
use super::problem::ApiError;
use super::state::AppState;

/// The route below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_stream))]
pub(super) struct StreamApi;

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
        ("format" = Option<String>, Query, description = "`json` (default): `data` is the event; `cloudevents`: `data` is the event as a structured CloudEvent (JSON event format, `application/cloudevents+json`)"),
        ("token" = Option<String>, Query, description = "A browser token from `POST /v1/tokens`, for clients that cannot send `Authorization`; the stream ends with a `token_expired` event when it expires"),
    ),
    responses(
        (status = 200, description = "Messages `id: <seq>`, `event: <type>`, `data: <event JSON>`; comment lines are heartbeats", content_type = "text/event-stream", body = String),
        (status = 400, description = "An invalid or unknown parameter"),
        (status = 429, description = "The key or tenant has too many open streams"),
        (status = 503, description = "Too many open streams on this server"),
    )
)]
pub(super) async fn get_stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (filter, resume) = stream_request(&params, &headers)?;
    let cloudevents = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("cloudevents") => true,
        Some(_) => {
            return Err(ApiError::parameter(
                "format",
                "must be `json` (the default) or `cloudevents`",
            ));
        }
    };
    let filter = caller
        .principal
        .narrow(Permission::Subscribe, &filter)
        .map_err(|d| caller.deny(d))?;
    // A key's own streams count against the key; every stream counts against its tenant.
    let counted_key = if caller.token_expires.is_some() {
        String::new()
    } else {
        caller.principal.key_id.clone()
    };
    let guard = state
        .limits
        .connections
        .acquire(
            &counted_key,
            if counted_key.is_empty() { 0 } else { caller.max_connections },
            caller.principal.tenant_id.as_deref(),
            state.config.tenant_max_connections,
        )
        .map_err(|limit| {
            tracing::warn!(target: "audit", key = %caller.principal.key_id, %limit, "stream refused");
            ApiError::TooManyStreams(format!("{limit}; close a stream or retry later"))
        })?;
    let conn = state
        .bus
        .sse()
        .connect(filter, resume)
        .map_err(|e| match e {
            ConnectError::TooManyConnections(_) => ApiError::Overloaded,
            other => ApiError::Internal(other.to_string()),
        })?;
    let expires = caller.token_expires.map(token_deadline);
    let preface = match resume {
        Some(cursor) => archived_notice(&state, cursor).await,
        None => None,
    };
    let open = Open {
        conn,
        expires,
        _guard: guard,
        preface,
        done: false,
        cloudevents,
    };
    let stream = futures_util::stream::unfold(open, |mut open| async move {
        open.next()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), open))
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

/// An open stream: the hub connection, the token's expiry, and the stream's place in the
/// connection limits (released when the response body is dropped).
struct Open {
    conn: Connection,
    expires: Option<tokio::time::Instant>,
    _guard: ConnectionGuard,
    /// A control event sent before anything else (events after the cursor were archived).
    preface: Option<Bytes>,
    done: bool,
    /// `format=cloudevents`: event frames carry structured CloudEvents.
    cloudevents: bool,
}

impl Open {
    /// The next chunk; when the token expires, a final `token_expired` event, then the end.
    async fn next(&mut self) -> Option<Bytes> {
        let chunk = self.next_frame().await?;
        Some(if self.cloudevents {
            cloudevent::sse_frame(chunk)
        } else {
            chunk
        })
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(preface) = self.preface.take() {
            return Some(preface);
        }
        if self.done {
            return None;
        }
        let Some(expires) = self.expires else {
            return self.conn.next_chunk().await;
        };
        tokio::select! {
            chunk = self.conn.next_chunk() => chunk,
            _ = tokio::time::sleep_until(expires) => {
                self.done = true;
                Some(control_frame(
                    "token_expired",
                    &serde_json::json!({
                        "lastEventId": self.conn.cursor().to_string(),
                        "message": "the stream token expired; get a new token and reconnect with Last-Event-ID to resume",
                    }),
                ))
            }
        }
    }
}

/// When events after `cursor` were moved to the archive (older than the retention), the control
/// event that says which: `event: error` with `code: "cursor_archived"`, the archived `seq`
/// range, and how to fetch it. The stream then goes on with the hot events after the cursor, so
/// the client knows exactly what it did not receive live.
async fn archived_notice(state: &AppState, cursor: u64) -> Option<Bytes> {
    let segments = match state.archive.list().await {
        Ok(segments) => segments,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list archive segments for a resuming stream");
            return None;
        }
    };
    let lost: Vec<_> = segments.iter().filter(|s| s.last_seq > cursor).collect();
    let first = lost.iter().map(|s| s.first_seq.max(cursor + 1)).min()?;
    let last = lost.iter().map(|s| s.last_seq).max()?;
    Some(control_frame(
        "error",
        &serde_json::json!({
            "code": "cursor_archived",
            "lastEventId": cursor.to_string(),
            "archivedFrom": first.to_string(),
            "archivedTo": last.to_string(),
            "message": format!(
                "events with seq {first} to {last} (some may match this stream) are older than the \
                 retention and were archived; they are not replayed here. Read them with \
                 GET /v1/events?includeArchived=true&after={cursor}; this stream goes on with the \
                 stored events after them"
            ),
        }),
    ))
}

/// The instant a token expiring at `exp` (seconds since the epoch) runs out. Any `exp` is
/// taken, as backends mint tokens too: one past what microseconds since the epoch can hold
/// (year 294,000 and later; or a time in milliseconds or microseconds by mistake) runs out in
/// about 292,000 years, not at once.
pub fn token_deadline(exp: i64) -> tokio::time::Instant {
    let now = eventbus::core::time::Timestamp::now().as_micros();
    let left = exp.saturating_mul(1_000_000).saturating_sub(now).max(0) as u64;
    let start = tokio::time::Instant::now();
    start
        .checked_add(std::time::Duration::from_micros(left))
        .unwrap_or(start + FAR_FUTURE)
}

/// A deadline that never comes in practice (about 30 years).
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 86_400);

/// The filter and the resume cursor a stream request asks for: its query parameters (unknown
/// ones refused) and its `Last-Event-ID` header, which wins over `lastEventId`.
pub fn stream_request(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(EventFilter, Option<u64>), ApiError> {
    reject_unknown(
        params,
        &[
            "types",
            "projectId",
            "tenantId",
            "userId",
            "lastEventId",
            "token",
            "format",
        ],
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
    Ok((filter, resume))
}

fn parse_cursor(name: &str, value: &str) -> Result<u64, ApiError> {
    value.trim().parse::<u64>().map_err(|_| {
        ApiError::parameter(name, format!("`{value}` is not an event id; pass the `id:` of the last message received (a non-negative integer)"))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A token whose `exp` was past the range of microseconds (`exp * 1_000_000` overflowed)
    /// panicked the handler in debug builds and ended its stream at once in release builds.
    #[test]
    fn a_token_expiring_past_the_range_of_microseconds_overflowed_its_stream_deadline() {
        let year = Duration::from_secs(365 * 86_400);
        let start = tokio::time::Instant::now();
        let now = eventbus::core::time::Timestamp::now().as_micros() / 1_000_000;
        // Microseconds by mistake, the largest exp, the first exp that overflowed.
        for exp in [now * 1_000_000, i64::MAX, i64::MAX / 1_000_000 + 1] {
            assert!(token_deadline(exp) > start + 20 * year, "exp {exp}");
        }
        let in_a_minute = token_deadline(now + 60);
        assert!(in_a_minute > start + Duration::from_secs(50) && in_a_minute < start + 2 * year);
        for exp in [now - 1, 0, i64::MIN] {
            assert!(
                token_deadline(exp) <= tokio::time::Instant::now(),
                "exp {exp}"
            );
        }
    }
}
