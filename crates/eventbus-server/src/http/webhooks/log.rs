//! The delivery and attempt log of an endpoint, retrying a delivery and replaying stored events
//! to an endpoint. Every route checks the endpoint's visibility first (see `access`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use eventbus::core::event::FieldError;
use eventbus::core::principal::Permission;
use eventbus::core::time::Timestamp;
use eventbus::store::webhook::{
    Attempt, AttemptQuery, Delivery, DeliveryQuery, DeliveryStatus, MAX_LOG_PAGE, Page,
};
use eventbus::transport::webhook::{ReplayFrom, ReplayUntil};
use serde::Serialize;

use super::access::{WebhooksProblems, service, visible_endpoint};
use crate::http::auth::Caller;
use crate::http::body::json;
use crate::http::params::{paging, reject_unknown};
use crate::http::problem::{ApiError, StoreProblems};
use crate::http::state::AppState;

/// The delivery `id` if its endpoint is visible to `caller`; 404 otherwise.
async fn visible_delivery(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Delivery, ApiError> {
    let d = service(state)?.get_delivery(delivery_id(id)?).await?;
    visible_endpoint(state, caller, &d.endpoint_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound(format!("no delivery has id `{id}`")),
            e => e,
        })?;
    Ok(d)
}

/// `POST /v1/webhooks/{id}/replay` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Replay)]
#[serde(rename_all = "camelCase")]
struct ReplayBody {
    /// How many deliveries were queued.
    queued: u64,
}

/// `POST /v1/webhooks/{id}/replay?since=<RFC 3339 time | seq>&until=<RFC 3339 time | seq>`:
/// queues the matching stored events of that range again (from `since` inclusive; up to the
/// `until` seq inclusive, or before the `until` time; to the end of the log without it); 202
/// with how many.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/replay",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("since" = String, Query, description = "Where the range starts: an RFC 3339 time (inclusive) or a `seq` (inclusive)"),
        ("until" = Option<String>, Query, description = "Where it ends: an RFC 3339 time (exclusive) or a `seq` (inclusive); the end of the log without it"),
    ),
    responses(
        (status = 202, description = "Queued again; how many", body = ReplayBody),
        (status = 400, description = "An invalid or unknown parameter"),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
    )
)]
pub(super) async fn replay_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    visible_endpoint(&state, &caller, &id).await?;
    reject_unknown(&params, &["since", "until"])?;
    let since = params
        .get("since")
        .ok_or_else(|| ApiError::parameter("since", "required: an RFC 3339 time or a seq"))?;
    let from = match seq_or_time("since", since)? {
        Ok(seq) => ReplayFrom::Seq(seq),
        Err(time) => ReplayFrom::Time(time),
    };
    let until = match params
        .get("until")
        .map(|u| seq_or_time("until", u))
        .transpose()?
    {
        None => None,
        Some(Ok(seq)) => Some(ReplayUntil::Seq(seq)),
        Some(Err(time)) => Some(ReplayUntil::Time(time)),
    };
    let queued = service(&state)?.replay(&id, from, until).await?;
    Ok(json(StatusCode::ACCEPTED, &ReplayBody { queued }))
}

/// A replay bound: a `seq` (`Ok`) or an RFC 3339 time (`Err`); anything else is a 400 naming
/// `name`.
fn seq_or_time(name: &str, value: &str) -> Result<Result<u64, Timestamp>, ApiError> {
    match value.parse::<u64>() {
        Ok(seq) => Ok(Ok(seq)),
        Err(_) => Timestamp::parse_rfc3339(value).map(Err).map_err(|m| {
            ApiError::parameter(name, format!("neither a seq nor an RFC 3339 time: {m}"))
        }),
    }
}

/// One page of a log listing: its rows under their name (`deliveries`, `attempts`), and
/// `nextAfter`. [`DeliveryPage`] and [`AttemptPage`] describe its two forms.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody<T: Serialize> {
    #[serde(flatten)]
    items: HashMap<&'static str, Vec<T>>,
    next_after: Option<u64>,
}

/// The start of every read of endpoint `id`'s log (deliveries, attempts, figures): the caller's
/// rights, the endpoint's visibility to it, and no parameter but `known`.
pub(super) async fn log_access(
    state: &AppState,
    caller: &Caller,
    id: &str,
    params: &HashMap<String, String>,
    known: &[&str],
) -> Result<(), ApiError> {
    caller.require_any(&[Permission::Read, Permission::Admin])?;
    visible_endpoint(state, caller, id).await?;
    reject_unknown(params, known)
}

/// The start of a log listing of endpoint `id` (deliveries, attempts): [`log_access`], then the
/// paging parameters.
async fn log_listing(
    state: &AppState,
    caller: &Caller,
    id: &str,
    params: &HashMap<String, String>,
    known: &[&str],
) -> Result<(u64, usize), ApiError> {
    log_access(state, caller, id, params, known).await?;
    paging(params, MAX_LOG_PAGE)
}

/// One page of a log listing, its rows under `name`.
fn log_page<T: Serialize>(name: &'static str, page: Page<T>) -> Response {
    json(
        StatusCode::OK,
        &PageBody {
            items: HashMap::from([(name, page.items)]),
            next_after: page.next_after,
        },
    )
}

/// One page of deliveries.
// The shape `log_page` writes; only described, never built.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "described in the API document, never built")]
#[serde(rename_all = "camelCase")]
struct DeliveryPage {
    /// The deliveries.
    deliveries: Vec<Delivery>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// One page of attempts.
// The shape `log_page` writes; only described, never built.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "described in the API document, never built")]
#[serde(rename_all = "camelCase")]
struct AttemptPage {
    /// The attempts.
    attempts: Vec<Attempt>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// The outcome of an attempt, as a filter.
// The values of the `status` parameter of `list_attempts`; only described, never built.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "described in the API document, never built")]
#[serde(rename_all = "lowercase")]
pub(super) enum AttemptStatus {
    /// The endpoint answered 2xx.
    Succeeded,
    /// Anything else.
    Failed,
}

/// `GET /v1/webhooks/{id}/deliveries?status=&eventId=&after=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("status" = Option<DeliveryStatus>, Query, description = "Only deliveries in this state"),
        ("eventId" = Option<String>, Query, description = "Only this event's deliveries"),
        ("after" = Option<u64>, Query, description = "The `nextAfter` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
    ),
    responses(
        (status = 200, description = "One page", body = DeliveryPage),
        (status = 400, description = "An invalid or unknown parameter"),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
    )
)]
pub(super) async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let known = ["status", "eventId", "after", "limit"];
    let (after, limit) = log_listing(&state, &caller, &id, &params, &known).await?;
    let status = params
        .get("status")
        .map(|s| {
            DeliveryStatus::parse(s)
                .ok_or_else(|| ApiError::parameter("status", "one of pending, succeeded, failed"))
        })
        .transpose()?;
    let query = DeliveryQuery {
        endpoint_id: id,
        status,
        event_id: params.get("eventId").cloned(),
        after,
        limit,
    };
    let page = service(&state)?.list_deliveries(query).await?;
    Ok(log_page("deliveries", page))
}

/// `GET /v1/webhooks/{id}/attempts?deliveryId=&status=succeeded|failed&after=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/attempts",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("deliveryId" = Option<u64>, Query, description = "Only this delivery's attempts"),
        ("status" = Option<AttemptStatus>, Query, description = "Only successful or only failed attempts"),
        ("after" = Option<u64>, Query, description = "The `nextAfter` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
    ),
    responses(
        (status = 200, description = "One page", body = AttemptPage),
        (status = 400, description = "An invalid or unknown parameter"),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
    )
)]
pub(super) async fn list_attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let known = ["deliveryId", "status", "after", "limit"];
    let (after, limit) = log_listing(&state, &caller, &id, &params, &known).await?;
    let delivery_id = params
        .get("deliveryId")
        .map(|d| {
            d.parse::<u64>()
                .map_err(|_| ApiError::parameter("deliveryId", "a delivery id (an integer)"))
        })
        .transpose()?;
    let success = match params.get("status").map(String::as_str) {
        None => None,
        Some("succeeded") => Some(true),
        Some("failed") => Some(false),
        Some(_) => return Err(ApiError::parameter("status", "one of succeeded, failed")),
    };
    let query = AttemptQuery {
        endpoint_id: id,
        delivery_id,
        success,
        after,
        limit,
    };
    let page = service(&state)?.list_attempts(query).await?;
    Ok(log_page("attempts", page))
}

fn delivery_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::InvalidParameter(FieldError::new("id", "a delivery id is an integer"))
    })
}

/// `GET /v1/deliveries/{id}`.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}",
    tag = "webhooks",
    params(("id" = u64, Path, description = "The delivery id")),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 400, description = "Not a delivery id"),
        (status = 404, description = "No such delivery"),
        WebhooksProblems,
        StoreProblems,
    )
)]
pub(super) async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Read, Permission::Admin])?;
    let d = visible_delivery(&state, &caller, &id).await?;
    Ok(json(StatusCode::OK, &d))
}

/// `POST /v1/deliveries/{id}/retry`: requeues it (a dead letter, typically) for an attempt now.
#[utoipa::path(
    post,
    path = "/v1/deliveries/{id}/retry",
    tag = "webhooks",
    params(("id" = u64, Path, description = "The delivery id")),
    responses(
        (status = 202, description = "Queued for an attempt now", body = Delivery),
        (status = 400, description = "Not a delivery id"),
        (status = 404, description = "No such delivery"),
        WebhooksProblems,
        StoreProblems,
    )
)]
pub(super) async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    visible_delivery(&state, &caller, &id).await?;
    let d = service(&state)?.retry_delivery(delivery_id(&id)?).await?;
    Ok(json(StatusCode::ACCEPTED, &d))
}
