//! The endpoints: create, list, read, change, delete, enable and disable them, rotate their
//! signing secret and send them a test event. An endpoint's answer is [`endpoint_body`]: the
//! stored endpoint, with its `secret` only when just created or rotated.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use eventbus::Pattern;
use eventbus::core::principal::{Denied, Permission};
use eventbus::store::webhook::Endpoint;
use eventbus::transport::webhook::{EndpointInput, TestResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::access::{WebhooksProblems, service, visible, visible_endpoint};
use crate::http::auth::Caller;
use crate::http::body::{BodyProblems, decode, json, read_json};
use crate::http::problem::{ApiError, StoreProblems};
use crate::http::state::AppState;

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

/// An endpoint as the API shows it; `secret` only when just created or rotated.
pub(crate) fn endpoint_body(ep: &Endpoint, with_secret: bool) -> Value {
    let mut v = serde_json::to_value(ep).expect("an endpoint serialises");
    if with_secret {
        v["secret"] = Value::String(ep.secret.clone());
    }
    v
}

/// A webhook endpoint; `secret` only when just created or rotated.
// What `endpoint_body` writes: the fields of `Endpoint` (whose own serialisation skips the
// secret), plus `secret`. Only described, never built; the unit tests of the API description
// check it against real answers.
#[derive(utoipa::ToSchema)]
#[schema(as = Endpoint)]
#[allow(dead_code, reason = "described in the API document, never built")]
#[serde(rename_all = "camelCase")]
struct EndpointBody {
    /// Unique id.
    id: String,
    /// Where events are POSTed.
    url: String,
    /// Free text.
    description: Option<String>,
    /// Type patterns (every type when empty).
    event_types: Vec<String>,
    /// Only events of this project.
    project_id: Option<String>,
    /// Only events of this tenant.
    tenant_id: Option<String>,
    /// Extra request headers.
    headers: BTreeMap<String, String>,
    /// Most requests per second.
    rate_limit: Option<u32>,
    /// Strict per-endpoint ordering.
    ordered: bool,
    /// What each request carries: `json` (the event), `cloudevents` (a structured CloudEvent)
    /// or `cloudevents-binary` (CloudEvents binary mode); signed per Standard Webhooks in each.
    #[schema(pattern = "^(json|cloudevents|cloudevents-binary)$")]
    format: String,
    /// Disabled endpoints receive nothing.
    disabled: bool,
    /// `manual` or `failing`.
    disabled_reason: Option<String>,
    /// The signing secret; only in the answers to create and rotate.
    secret: Option<String>,
    /// End of the rotation's grace period.
    #[schema(format = DateTime)]
    previous_secret_expires_at: Option<String>,
    /// It receives events with a larger `seq`.
    since_seq: u64,
    /// Creation time.
    #[schema(format = DateTime)]
    created_at: String,
    /// Last change.
    #[schema(format = DateTime)]
    updated_at: String,
    /// Start of the current failure streak (of an endpoint disabled for failing: of the streak
    /// that disabled it).
    #[schema(format = DateTime)]
    failing_since: Option<String>,
    /// Failed attempts in the current streak.
    failure_count: u32,
}

/// `POST /v1/webhooks`: 201 with the endpoint, its `id` and its `secret`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body(content = EndpointInput, description = "`url` is required"),
    responses(
        (status = 201, description = "Created, with its `id` and `secret`", body = EndpointBody),
        (status = 400, description = "Malformed JSON or an invalid field"),
        BodyProblems,
        WebhooksProblems,
        StoreProblems,
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

/// The endpoints.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EndpointList)]
struct ListBody {
    /// Every endpoint.
    #[schema(value_type = Vec<EndpointBody>)]
    webhooks: Vec<Value>,
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint", body = ListBody),
        WebhooksProblems,
        StoreProblems,
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
        (status = 200, description = "The endpoint", body = EndpointBody),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
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
    request_body(content = EndpointInput, description = "The fields to change; `null` clears an optional one"),
    responses(
        (status = 200, description = "The changed endpoint", body = EndpointBody),
        (status = 400, description = "Malformed JSON or an invalid field"),
        BodyProblems,
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
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
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
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
        (status = 200, description = "Enabled; the failure streak is cleared", body = EndpointBody),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
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
        (status = 200, description = "Disabled", body = EndpointBody),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
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

/// `POST /v1/webhooks/{id}/rotate-secret` body (optional).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = RotateSecretInput)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// The new secret; generated when absent.
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
    request_body(content = RotateBody, description = "`{}` or no body generates the secret"),
    responses(
        (status = 200, description = "The endpoint with the new `secret` and `previousSecretExpiresAt`", body = EndpointBody),
        (status = 400, description = "Malformed JSON or an invalid field"),
        BodyProblems,
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
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
        (status = 200, description = "What the endpoint answered", body = TestResult),
        (status = 404, description = "No such endpoint"),
        WebhooksProblems,
        StoreProblems,
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
