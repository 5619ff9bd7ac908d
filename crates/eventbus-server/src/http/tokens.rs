//! `POST /v1/tokens`: a short-lived browser token for `GET /v1/stream?token=`, never wider than
//! the calling key (which needs `subscribe`). See `eventbus::security::token` for the claims, so
//! a backend can mint the same tokens itself with `EVENT_BUS_TOKEN_SECRET`. [`TokensApi`] is its
//! part of the API description.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use eventbus::Pattern;
use eventbus::core::event::FieldError;
use eventbus::core::principal::Permission;
use eventbus::core::time::Timestamp;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::body::{BodyProblems, decode, json, read_json};
use super::problem::ApiError;
use super::state::AppState;

/// The route below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_token))]
pub(super) struct TokensApi;

/// Lifetime of a token when `ttlSeconds` is not given.
const DEFAULT_TTL_SECS: u64 = 300;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tokens", post(create_token))
}

/// The body of `POST /v1/tokens` (every field optional).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = TokenInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenInput {
    /// Projects (within the key's; the key's own when absent).
    #[serde(default)]
    #[schema(min_items = 1)]
    project_ids: Option<Vec<String>>,
    /// Type patterns (within the key's subscribe patterns; those when absent).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, min_items = 1)]
    types: Option<Vec<Pattern>>,
    /// Lifetime in seconds (default 300, at most `TOKEN_MAX_TTL`).
    #[serde(default)]
    #[schema(minimum = 1)]
    ttl_seconds: Option<u64>,
}

/// A browser token.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    /// Pass it as `GET /v1/stream?token=`.
    token: String,
    /// When it expires.
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
}

/// `POST /v1/tokens`: 201 with `{"token", "expiresAt"}`.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body(content = TokenInput, description = "All fields optional: the key's own projects and subscribe types, 300 s"),
    responses(
        (status = 201, description = "The token and its expiry", body = TokenBody),
        (status = 400, description = "Malformed JSON or an invalid field"),
        BodyProblems,
    )
)]
pub(super) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Permission::Subscribe)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let input: TokenInput = if bytes.iter().all(u8::is_ascii_whitespace) {
        TokenInput::default()
    } else {
        decode(&bytes)?
    };
    let ttl = input.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > state.config.token_max_ttl {
        return Err(ApiError::InvalidField(FieldError::new(
            "ttlSeconds",
            format!("must be 1 to {} seconds", state.config.token_max_ttl),
        )));
    }
    let (token, expires_at) = state
        .keys
        .mint(
            &caller.principal,
            input.project_ids,
            input.types,
            Duration::from_secs(ttl),
        )
        .map_err(|e| caller.grant_error(e))?;
    tracing::debug!(target: "audit", key = %caller.principal.key_id, ttl, "stream token minted");
    Ok(json(StatusCode::CREATED, &TokenBody { token, expires_at }))
}
