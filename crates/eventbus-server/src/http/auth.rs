//! Authentication of requests: `Authorization: Bearer <key>` on every `/v1` route, and a
//! browser token (`?token=`) on `GET /v1/stream` as well.
//!
//! [`Caller`] is the extractor handlers take; it answers 401 (problem+json, `WWW-Authenticate`)
//! for a missing, malformed, unknown, wrong, revoked or expired key, all with one message, so a
//! caller learns nothing about which keys exist. What the caller may then do is checked by the
//! handler against [`Principal`] (403). Failures are logged to the `audit` target with the key
//! id when the key string has one, never the secret.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use eventbus::core::filter::EventFilter;
use eventbus::core::principal::{Denied, Permission, Principal};
use eventbus::security::{AuthError, GrantError, parse_key};

use super::problem::ApiError;
use super::state::AppState;

/// The answer to every failed authentication.
const UNAUTHORIZED: &str =
    "send a valid API key as `Authorization: Bearer <key>` (streams also take `?token=`)";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What it may do.
    pub principal: Arc<Principal>,
    /// Its publish rate (requests per second; 0: none).
    pub rate_limit: u32,
    /// Its stream limit (0: none).
    pub max_connections: usize,
    /// When it authenticated with a browser token: the token's expiry (seconds since the
    /// epoch).
    pub token_expires: Option<i64>,
}

impl Caller {
    /// Refuses (403) unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        self.principal.require(permission).map_err(|d| self.deny(d))
    }

    /// Refuses (403) unless the caller holds one of `permissions`.
    pub fn require_any(&self, permissions: &[Permission]) -> Result<(), ApiError> {
        if permissions.iter().any(|p| self.principal.has(*p)) {
            return Ok(());
        }
        let names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
        Err(self.deny(Denied(format!(
            "this key needs one of the permissions `{}`",
            names.join("`, `")
        ))))
    }

    /// `filter` narrowed to the events this caller may read (its tenant, projects and `read`
    /// type patterns); 403 when it asks only outside them. Every read of stored events goes
    /// through it, so a listing and a count of the same key see the same events.
    pub fn readable(&self, filter: &EventFilter) -> Result<EventFilter, ApiError> {
        self.principal
            .narrow(Permission::Read, filter)
            .map_err(|d| self.deny(d))
    }

    /// The answer to a key or token this caller may not make: 403 (audited) when it would be
    /// wider than the caller, the usual mapping otherwise.
    pub fn grant_error(&self, e: GrantError) -> ApiError {
        match e {
            GrantError::Wider(m) => self.deny(Denied(m)),
            e => e.into(),
        }
    }

    /// The 403 for `denied`, logged to the audit target.
    pub fn deny(&self, denied: Denied) -> ApiError {
        tracing::warn!(target: "audit", key = %self.principal.key_id, reason = %denied, "request refused");
        ApiError::Forbidden(denied.0)
    }

    /// Takes one publish from the caller's rate (429 with `Retry-After` when it is spent).
    pub fn check_rate(&self, state: &AppState) -> Result<(), ApiError> {
        state
            .limits
            .rates
            .check(&self.principal.key_id, self.rate_limit, Instant::now())
            .map_err(|wait| {
                tracing::warn!(target: "audit", key = %self.principal.key_id, limit = self.rate_limit, "publish rate exceeded");
                ApiError::RateLimited {
                    detail: format!(
                        "this key may publish {} requests per second; retry after the \
                         Retry-After seconds",
                        self.rate_limit
                    ),
                    retry_after: wait.as_secs_f64().ceil().max(1.0) as u32,
                }
            })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(key) = bearer(&parts.headers)? {
            return authenticate_key(state, key).await;
        }
        if parts.uri.path() == "/v1/stream"
            && let Some(token) = query_token(&parts.uri)
        {
            return match state.keys.verify_token(&token) {
                Ok((principal, exp)) => Ok(Caller {
                    principal,
                    rate_limit: 0,
                    max_connections: 0,
                    token_expires: Some(exp),
                }),
                Err(e) => Err(fail(&format!("stream token refused: {e}"))),
            };
        }
        Err(fail("no credentials"))
    }
}

/// Gate of `/health/ready` and `/metrics`: open when `HEALTH_METRICS_PUBLIC` (the default),
/// otherwise a key with `admin`.
pub async fn require_observer(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.config.health_metrics_public {
        return Ok(());
    }
    let key = bearer(headers)?.ok_or_else(|| fail("no credentials"))?;
    authenticate_key(state, key)
        .await?
        .require(Permission::Admin)
}

/// The key of the `Authorization: Bearer <key>` header; `None` without the header, 401 when it
/// has another form.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default();
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(Some)
        .ok_or_else(|| fail("the Authorization header is not `Bearer <key>`"))
}

/// Authenticates a key string.
async fn authenticate_key(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    match state.keys.authenticate(key).await {
        Ok(auth) => Ok(Caller {
            principal: auth.principal,
            rate_limit: auth.rate_limit.unwrap_or(state.config.key_rate_limit),
            max_connections: auth
                .max_connections
                .map_or(state.config.key_max_connections, |m| m as usize),
            token_expires: None,
        }),
        Err(AuthError::Store(e)) => Err(e.into()),
        Err(e) => {
            let id = parse_key(key).map(|(id, _)| id);
            tracing::warn!(target: "audit", key = id, reason = %e, "authentication failed");
            Err(ApiError::Unauthorized(UNAUTHORIZED.to_owned()))
        }
    }
}

fn fail(reason: &str) -> ApiError {
    tracing::warn!(target: "audit", reason, "authentication failed");
    ApiError::Unauthorized(UNAUTHORIZED.to_owned())
}

/// The `token` parameter of the request's query string, percent-decoded.
fn query_token(uri: &axum::http::Uri) -> Option<String> {
    let Query(mut params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.remove("token")
}
