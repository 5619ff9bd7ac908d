//! `/v1/keys`: API keys (admin only). A key string is shown once, in the answer to `POST`; only
//! its hash is stored. A tenant-bound admin manages its tenant's keys only, and no key is made
//! wider than the key that makes it. Revocation (`DELETE`) keeps the row for the audit trail.
//! [`KeysApi`] is their part of the API description.

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

use super::auth::Caller;
use super::body::{BodyProblems, decode, json, read_json};
use super::params::PathParam;
use super::problem::{ApiError, StoreProblems};
use super::state::AppState;

/// The routes below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_key, list_keys, get_key, revoke_key))]
pub(super) struct KeysApi;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", get(get_key).delete(revoke_key))
}

/// The body of `POST /v1/keys`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ApiKeyInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyInput {
    /// A name for people (1 to 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Bind the key to a tenant (a tenant-bound caller's tenant by default).
    #[serde(default)]
    tenant_id: Option<String>,
    /// Limit the key to these projects (non-empty; every project when absent).
    #[serde(default)]
    #[schema(min_items = 1)]
    project_ids: Option<Vec<String>>,
    /// What the key may do.
    #[schema(min_items = 1)]
    permissions: Vec<Permission>,
    /// Type patterns for every permission (default `[">"]`: every type).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, min_items = 1)]
    types: Option<Vec<Pattern>>,
    /// Type patterns of single permissions, overriding `types` for them.
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, Vec<String>>>)]
    types_by_permission: BTreeMap<Permission, Vec<Pattern>>,
    /// Publish requests per second (the server's `KEY_RATE_LIMIT` when absent).
    #[serde(default)]
    rate_limit: Option<u32>,
    /// Open streams at once (the server's `KEY_MAX_CONNECTIONS` when absent).
    #[serde(default)]
    max_connections: Option<u32>,
    /// When the key stops working (RFC 3339, in the future).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
}

/// An API key (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
#[serde(rename_all = "camelCase")]
struct KeyView<'a> {
    /// The key's id (the part after `ebk_` of its key string).
    #[schema(value_type = String)]
    id: &'a str,
    /// Its name.
    #[schema(value_type = String)]
    name: &'a str,
    /// Its tenant, if bound.
    #[schema(value_type = Option<String>)]
    tenant_id: Option<&'a str>,
    /// Its projects, if limited.
    #[schema(value_type = Option<Vec<String>>)]
    project_ids: Option<&'a [String]>,
    /// Its permissions.
    permissions: Vec<Permission>,
    /// The type patterns of each permission.
    #[schema(value_type = BTreeMap<String, Vec<String>>)]
    types_by_permission: &'a BTreeMap<Permission, Vec<Pattern>>,
    /// Publish requests per second.
    rate_limit: Option<u32>,
    /// Open streams at once.
    max_connections: Option<u32>,
    /// When it was made.
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// The id of the key that made it (`admin`: the bootstrap key).
    #[schema(value_type = String)]
    created_by: &'a str,
    /// When it stops working.
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
    /// When it was revoked.
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<Timestamp>,
}

/// A new API key with its key string, shown only once.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKeyCreated)]
struct Created<'a> {
    #[serde(flatten)]
    view: KeyView<'a>,
    /// The key string to send as `Authorization: Bearer <key>`; not retrievable later.
    #[schema(value_type = String)]
    key: &'a str,
}

fn view(k: &ApiKey) -> KeyView<'_> {
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
    request_body(content = KeyInput),
    responses(
        (status = 201, description = "Created; `key` is shown only in this answer", body = Created),
        (status = 400, description = "Malformed JSON or an invalid field"),
        BodyProblems,
        StoreProblems,
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
    Ok(json(
        StatusCode::CREATED,
        &Created {
            view: view(&key),
            key: &secret,
        },
    ))
}

/// `GET /v1/keys` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKeyList)]
struct ListBody<'a> {
    /// Newest first.
    keys: Vec<KeyView<'a>>,
}

/// `GET /v1/keys`: every key the caller may manage, newest first.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    responses(
        (status = 200, description = "The keys (never their secrets)", body = ListBody),
        StoreProblems,
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
            keys: keys.iter().map(view).collect(),
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
        (status = 200, description = "The key (never its secret)", body = KeyView),
        (status = 404, description = "No such key"),
        StoreProblems,
    )
)]
pub(super) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    match state.keys.get(&caller.principal, &id).await? {
        Some(key) => Ok(json(StatusCode::OK, &view(&key))),
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
        (status = 404, description = "No such key"),
        StoreProblems,
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
