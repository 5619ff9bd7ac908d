//! `POST /v1/tokens`: a short-lived browser token for `GET /v1/stream?token=`, never wider than
//! the calling key (which needs `subscribe`). See `eventbus::security::token` for the claims, so
//! a backend can mint the same tokens itself with `EVENT_BUS_TOKEN_SECRET`.

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

use super::AppState;
use super::auth::Caller;
use super::body::{decode, read_json};
use super::events::json;
use super::openapi::{ProblemSchema, TokenInputSchema, TokenSchema};
use super::problem::ApiError;

/// Lifetime of a token when `ttlSeconds` is not given.
const DEFAULT_TTL_SECS: u64 = 300;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tokens", post(create_token))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenInput {
    #[serde(default)]
    project_ids: Option<Vec<String>>,
    #[serde(default)]
    types: Option<Vec<Pattern>>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    token: String,
    expires_at: Timestamp,
}

/// `POST /v1/tokens`: 201 with `{"token", "expiresAt"}`.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body(content = TokenInputSchema, description = "All fields optional: the key's own projects and subscribe types, 300 s"),
    responses(
        (status = 201, description = "The token and its expiry", body = TokenSchema),
        (status = 400, description = "Malformed JSON or an invalid field", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemSchema, content_type = "application/problem+json"),
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
