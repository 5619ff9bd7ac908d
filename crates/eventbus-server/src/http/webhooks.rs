//! `/v1/webhooks` and `/v1/deliveries`: endpoints, secret rotation, test sends, the delivery and
//! attempt log, retry and replay (see docs/webhooks.md).
//!
//! Changing endpoints needs `admin`; reading them and their logs `read` or `admin`. A caller
//! bound to a tenant or projects sees only endpoints of its scope (others answer 404, like
//! missing ones), and the endpoints it makes are bound to its tenant and projects, with types
//! within its `admin` patterns, so they never receive another tenant's events.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use eventbus::Pattern;
use eventbus::core::event::FieldError;
use eventbus::core::principal::{Denied, Permission};
use eventbus::core::time::Timestamp;
use eventbus::store::webhook::{
    AttemptQuery, DeliveryQuery, DeliveryStatus, Endpoint, MAX_LOG_PAGE, Page,
};
use eventbus::transport::webhook::{EndpointInput, ReplayFrom, WebhookError, WebhookService};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::Caller;
use super::body::{decode, read_json};
use super::events::json;
use super::openapi::{
    AttemptPageSchema, AttemptStatusSchema, DeliveryPageSchema, DeliverySchema,
    DeliveryStatusSchema, EndpointInputSchema, EndpointListSchema, EndpointSchema, ProblemSchema,
    ReplaySchema, RotateSecretInputSchema, TestResultSchema,
};
use super::params::{DEFAULT_PAGE, reject_unknown};
use super::problem::ApiError;

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
        .route("/v1/deliveries/{id}", get(get_delivery))
        .route("/v1/deliveries/{id}/retry", post(retry_delivery))
}

fn service(state: &AppState) -> Result<&Arc<WebhookService>, ApiError> {
    state.webhooks.as_ref().ok_or_else(|| {
        ApiError::WebhooksUnavailable(format!(
            "webhooks are not available on the {} store yet",
            state.bus.store().backend()
        ))
    })
}

/// Whether `caller` may see `ep`: an unscoped caller sees every endpoint, a tenant-bound one
/// its tenant's, a project-bound one its projects'.
fn visible(caller: &Caller, ep: &Endpoint) -> bool {
    let p = &caller.principal;
    p.tenant_id
        .as_ref()
        .is_none_or(|t| ep.tenant_id.as_ref() == Some(t))
        && p.project_ids
            .as_ref()
            .is_none_or(|ps| ep.project_id.as_ref().is_some_and(|x| ps.contains(x)))
}

/// The endpoint `id` if it exists and `caller` may see it; 404 otherwise, the same answer either
/// way.
async fn visible_endpoint(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Endpoint, ApiError> {
    let missing = || ApiError::NotFound(format!("no webhook endpoint has id `{id}`"));
    match service(state)?.get_endpoint(id).await {
        Ok(ep) if visible(caller, &ep) => Ok(ep),
        Ok(_) | Err(WebhookError::NotFound(_)) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// The delivery `id` if its endpoint is visible to `caller`; 404 otherwise.
async fn visible_delivery(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<eventbus::store::webhook::Delivery, ApiError> {
    let d = service(state)?.get_delivery(delivery_id(id)?).await?;
    visible_endpoint(state, caller, &d.endpoint_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => ApiError::NotFound(format!("no delivery has id `{id}`")),
            e => e,
        })?;
    Ok(d)
}

/// Binds an endpoint being created (`existing` = `None`) or changed to the caller's scope: its
/// tenant (filled in when absent), one of its projects, and types within its `admin` patterns.
fn scope_input(
    caller: &Caller,
    input: &mut EndpointInput,
    existing: Option<&Endpoint>,
) -> Result<(), ApiError> {
    let p = &caller.principal;
    if let Some(tenant) = &p.tenant_id {
        match &input.tenant_id {
            None if existing.is_none() => input.tenant_id = Some(Some(tenant.clone())),
            None => {}
            Some(Some(t)) if t == tenant => {}
            Some(_) => {
                return Err(caller.deny(Denied(format!(
                    "this key manages endpoints of tenant `{tenant}` only; omit `tenantId` or set \
                     it to `{tenant}`"
                ))));
            }
        }
    }
    if let Some(projects) = &p.project_ids {
        let ok = match &input.project_id {
            None => existing.is_some(),
            Some(Some(x)) => projects.contains(x),
            Some(None) => false,
        };
        if !ok {
            return Err(caller.deny(Denied(format!(
                "this key manages endpoints of its projects only; set `projectId` to one of `{}`",
                projects.join("`, `")
            ))));
        }
    }
    let asked: Vec<Pattern> = match &input.event_types {
        Some(types) => types
            .iter()
            .filter_map(|t| Pattern::parse(t).ok())
            .collect(),
        None => existing.map_or_else(|| vec![Pattern::all()], |ep| ep.event_types.clone()),
    };
    if let Some(outside) = asked.iter().find(|t| !p.covers(Permission::Admin, t)) {
        return Err(caller.deny(Denied(format!(
            "`{outside}` is outside this key's types; set `eventTypes` within `{}`",
            p.patterns(Permission::Admin)
                .iter()
                .map(Pattern::as_str)
                .collect::<Vec<_>>()
                .join("`, `")
        ))));
    }
    Ok(())
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(f) if f.field == "url" => ApiError::InvalidWebhookUrl(f),
            WebhookError::Invalid(f) => ApiError::InvalidField(f),
            WebhookError::NotFound(m) => ApiError::NotFound(m),
            WebhookError::Store(s) => s.into(),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// An endpoint as the API shows it; `secret` only when just created or rotated.
pub(super) fn endpoint_body(ep: &Endpoint, with_secret: bool) -> Value {
    let mut v = serde_json::to_value(ep).expect("an endpoint serialises");
    if with_secret {
        v["secret"] = Value::String(ep.secret.clone());
    }
    v
}

/// `POST /v1/webhooks`: 201 with the endpoint, its `id` and its `secret`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body(content = EndpointInputSchema, description = "`url` is required"),
    responses(
        (status = 201, description = "Created, with its `id` and `secret`", body = EndpointSchema),
        (status = 400, description = "Malformed JSON or an invalid field", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let svc = service(&state)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let mut input: EndpointInput = decode(&bytes)?;
    scope_input(&caller, &mut input, None)?;
    let ep = svc.create_endpoint(input).await?;
    Ok(json(StatusCode::CREATED, &endpoint_body(&ep, true)))
}

#[derive(Serialize)]
struct ListBody {
    webhooks: Vec<Value>,
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint", body = EndpointListSchema),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Read, Permission::Admin])?;
    let mut list = service(&state)?.list_endpoints().await?;
    list.retain(|ep| visible(&caller, ep));
    Ok(json(
        StatusCode::OK,
        &ListBody {
            webhooks: list.iter().map(|e| endpoint_body(e, false)).collect(),
        },
    ))
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointSchema),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Read, Permission::Admin])?;
    let ep = visible_endpoint(&state, &caller, &id).await?;
    Ok(json(StatusCode::OK, &endpoint_body(&ep, false)))
}

/// `PATCH /v1/webhooks/{id}`: changes the given fields; `null` clears an optional one.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    request_body(content = EndpointInputSchema, description = "The fields to change; `null` clears an optional one"),
    responses(
        (status = 200, description = "The changed endpoint", body = EndpointSchema),
        (status = 400, description = "Malformed JSON or an invalid field", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn update_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let existing = visible_endpoint(&state, &caller, &id).await?;
    let svc = service(&state)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let mut input: EndpointInput = decode(&bytes)?;
    scope_input(&caller, &mut input, Some(&existing))?;
    let ep = svc.update_endpoint(&id, input).await?;
    Ok(json(StatusCode::OK, &endpoint_body(&ep, false)))
}

/// `DELETE /v1/webhooks/{id}`: 204; its deliveries and attempts go with it.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    responses(
        (status = 204, description = "Deleted with its deliveries and attempts"),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::Admin)?;
    visible_endpoint(&state, &caller, &id).await?;
    service(&state)?.delete_endpoint(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{id}/enable`: also clears the failure streak.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/enable",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    responses(
        (status = 200, description = "Enabled; the failure streak is cleared", body = EndpointSchema),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn enable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    visible_endpoint(&state, &caller, &id).await?;
    let ep = service(&state)?.set_disabled(&id, false).await?;
    Ok(json(StatusCode::OK, &endpoint_body(&ep, false)))
}

/// `POST /v1/webhooks/{id}/disable`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/disable",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    responses(
        (status = 200, description = "Disabled", body = EndpointSchema),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn disable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    visible_endpoint(&state, &caller, &id).await?;
    let ep = service(&state)?.set_disabled(&id, true).await?;
    Ok(json(StatusCode::OK, &endpoint_body(&ep, false)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    secret: Option<String>,
}

/// `POST /v1/webhooks/{id}/rotate-secret`: optional body `{"secret"}`; answers with the new
/// secret and `previousSecretExpiresAt`, until which both secrets sign.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    request_body(content = RotateSecretInputSchema, description = "`{}` or no body generates the secret"),
    responses(
        (status = 200, description = "The endpoint with the new `secret` and `previousSecretExpiresAt`", body = EndpointSchema),
        (status = 400, description = "Malformed JSON or an invalid field", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    visible_endpoint(&state, &caller, &id).await?;
    let svc = service(&state)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let body: RotateBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        decode(&bytes)?
    };
    let ep = svc.rotate_secret(&id, body.secret).await?;
    Ok(json(StatusCode::OK, &endpoint_body(&ep, true)))
}

/// `POST /v1/webhooks/{id}/test`: sends a `webhook.test` event now and reports the answer.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id")),
    responses(
        (status = 200, description = "What the endpoint answered", body = TestResultSchema),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn test_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    visible_endpoint(&state, &caller, &id).await?;
    let result = service(&state)?.test_endpoint(&id).await?;
    Ok(json(StatusCode::OK, &result))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplayBody {
    queued: u64,
}

/// `POST /v1/webhooks/{id}/replay?since=<RFC 3339 time | seq>`: queues the matching stored
/// events from there on again; 202 with how many.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/replay",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("since" = String, Query, description = "An RFC 3339 time or a `seq`"),
    ),
    responses(
        (status = 202, description = "Queued again; how many", body = ReplaySchema),
        (status = 400, description = "An invalid or unknown parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
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
    reject_unknown(&params, &["since"])?;
    let since = params
        .get("since")
        .ok_or_else(|| ApiError::parameter("since", "required: an RFC 3339 time or a seq"))?;
    let from = match since.parse::<u64>() {
        Ok(seq) => ReplayFrom::Seq(seq),
        Err(_) => ReplayFrom::Time(Timestamp::parse_rfc3339(since).map_err(|m| {
            ApiError::parameter("since", format!("neither a seq nor an RFC 3339 time: {m}"))
        })?),
    };
    let queued = service(&state)?.replay(&id, from).await?;
    Ok(json(StatusCode::ACCEPTED, &ReplayBody { queued }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody<T: Serialize> {
    #[serde(flatten)]
    items: HashMap<&'static str, Vec<T>>,
    next_after: Option<u64>,
}

/// The start of a log listing of endpoint `id` (deliveries, attempts): the caller's rights, the
/// endpoint's visibility to it, no parameter but `known`, and the paging parameters.
async fn log_listing(
    state: &AppState,
    caller: &Caller,
    id: &str,
    params: &HashMap<String, String>,
    known: &[&str],
) -> Result<(u64, usize), ApiError> {
    caller.require_any(&[Permission::Read, Permission::Admin])?;
    visible_endpoint(state, caller, id).await?;
    reject_unknown(params, known)?;
    paging(params)
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

fn paging(params: &HashMap<String, String>) -> Result<(u64, usize), ApiError> {
    let after = match params.get("after") {
        None => 0,
        Some(a) => a.parse().map_err(|_| {
            ApiError::parameter("after", "pass the `nextAfter` of the previous page")
        })?,
    };
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LOG_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::parameter(
                    "limit",
                    format!("`{l}` is out of range; use 1 to {MAX_LOG_PAGE}"),
                ));
            }
        },
    };
    Ok((after, limit))
}

/// `GET /v1/webhooks/{id}/deliveries?status=&eventId=&after=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("status" = Option<DeliveryStatusSchema>, Query, description = "Only deliveries in this state"),
        ("eventId" = Option<String>, Query, description = "Only this event's deliveries"),
        ("after" = Option<u64>, Query, description = "The `nextAfter` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
    ),
    responses(
        (status = 200, description = "One page", body = DeliveryPageSchema),
        (status = 400, description = "An invalid or unknown parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
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
        ("status" = Option<AttemptStatusSchema>, Query, description = "Only successful or only failed attempts"),
        ("after" = Option<u64>, Query, description = "The `nextAfter` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
    ),
    responses(
        (status = 200, description = "One page", body = AttemptPageSchema),
        (status = 400, description = "An invalid or unknown parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
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
        (status = 200, description = "The delivery", body = DeliverySchema),
        (status = 400, description = "Not a delivery id", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
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
        (status = 202, description = "Queued for an attempt now", body = DeliverySchema),
        (status = 400, description = "Not a delivery id", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 501, description = "Webhooks are not available on this store", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
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
