//! `/v1/keys`: API keys (admin only). A key string is shown once, in the answer to `POST`; only
//! its hash is stored. A tenant-bound admin manages its tenant's keys only, and no key is made
//! wider than the key that makes it. Revocation (`DELETE`) keeps the row for the audit trail.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use eventbus::Pattern;
use eventbus::core::principal::Permission;
use eventbus::core::time::Timestamp;
use eventbus::security::{GrantError, KeySpec};
use eventbus::store::key::ApiKey;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::body::{decode, read_json};
use super::events::json;
use super::openapi::{
    ApiKeyCreatedSchema, ApiKeyInputSchema, ApiKeyListSchema, ApiKeySchema, ProblemSchema,
};
use super::params::PathParam;
use super::problem::ApiError;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", get(get_key).delete(revoke_key))
}

/// The body of `POST /v1/keys`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyInput {
    name: String,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    project_ids: Option<Vec<String>>,
    permissions: Vec<Permission>,
    #[serde(default)]
    types: Option<Vec<Pattern>>,
    #[serde(default)]
    types_by_permission: BTreeMap<Permission, Vec<Pattern>>,
    #[serde(default)]
    rate_limit: Option<u32>,
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    expires_at: Option<Timestamp>,
}

/// A key as the API shows it (never its secret).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    tenant_id: Option<&'a str>,
    project_ids: Option<&'a [String]>,
    permissions: Vec<Permission>,
    types_by_permission: &'a BTreeMap<Permission, Vec<Pattern>>,
    rate_limit: Option<u32>,
    max_connections: Option<u32>,
    created_at: Timestamp,
    created_by: &'a str,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

fn view<'a>(k: &'a ApiKey, key: Option<&'a str>) -> KeyView<'a> {
    KeyView {
        id: &k.id,
        name: &k.name,
        tenant_id: k.tenant_id.as_deref(),
        project_ids: k.project_ids.as_deref(),
        permissions: k.grants.keys().copied().collect(),
        types_by_permission: &k.grants,
        rate_limit: k.rate_limit,
        max_connections: k.max_connections,
        created_at: k.created_at,
        created_by: &k.created_by,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
        key,
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Invalid(m) => ApiError::MalformedJson(m),
            GrantError::Wider(m) => ApiError::Forbidden(m),
            GrantError::Store(s) => s.into(),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// `POST /v1/keys`: 201 with the key and its `key` string, shown only now.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    request_body(content = ApiKeyInputSchema),
    responses(
        (status = 201, description = "Created; `key` is shown only in this answer", body = ApiKeyCreatedSchema),
        (status = 400, description = "Malformed JSON or an invalid field", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let input: KeyInput = decode(&bytes)?;
    let spec = KeySpec {
        name: input.name,
        tenant_id: input.tenant_id,
        project_ids: input.project_ids,
        permissions: input.permissions,
        types: input.types,
        types_by_permission: input.types_by_permission,
        rate_limit: input.rate_limit,
        max_connections: input.max_connections,
        expires_at: input.expires_at,
    };
    let (key, secret) = state
        .keys
        .create(&caller.principal, spec)
        .await
        .map_err(|e| caller.grant_error(e))?;
    Ok(json(StatusCode::CREATED, &view(&key, Some(&secret))))
}

#[derive(Serialize)]
struct ListBody<'a> {
    keys: Vec<KeyView<'a>>,
}

/// `GET /v1/keys`: every key the caller may manage, newest first.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    responses(
        (status = 200, description = "The keys (never their secrets)", body = ApiKeyListSchema),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let keys = state.keys.list(&caller.principal).await?;
    Ok(json(
        StatusCode::OK,
        &ListBody {
            keys: keys.iter().map(|k| view(k, None)).collect(),
        },
    ))
}

/// `GET /v1/keys/{id}`.
#[utoipa::path(
    get,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key id")),
    responses(
        (status = 200, description = "The key (never its secret)", body = ApiKeySchema),
        (status = 404, description = "No such key", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    match state.keys.get(&caller.principal, &id).await? {
        Some(key) => Ok(json(StatusCode::OK, &view(&key, None))),
        None => Err(ApiError::NotFound(format!("no key has id `{id}`"))),
    }
}

/// `DELETE /v1/keys/{id}`: revokes the key (204); it stops working at once on this process and
/// within seconds on the others.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::Admin)?;
    if state.keys.revoke(&caller.principal, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no key has id `{id}`")))
    }
}
