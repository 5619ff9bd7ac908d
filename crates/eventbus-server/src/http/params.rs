//! Query-string parameters: parsed by hand so each error names the parameter and says what to
//! send instead, and unknown parameters are refused rather than silently ignored.

use std::collections::HashMap;

use eventbus::Pattern;
use eventbus::core::filter::EventFilter;
use eventbus::core::time::Timestamp;
use eventbus::store::{EventQuery, MAX_PAGE};

use axum::extract::FromRequestParts;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::problem::ApiError;

/// `axum::extract::Path` whose rejections are problems naming the parameter.
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let name = match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    _ => "path".to_owned(),
                };
                Err(ApiError::parameter(
                    &name,
                    format!("{}; percent-encode UTF-8 text", e.body_text()),
                ))
            }
            Err(e) => Err(ApiError::Internal(e.to_string())),
        }
    }
}

/// Page size when `limit` is absent.
pub const DEFAULT_PAGE: usize = 100;

/// The parameters of `GET /v1/events`, as an [`EventQuery`].
pub fn event_query(
    params: &HashMap<String, String>,
    path_project: Option<&str>,
) -> Result<EventQuery, ApiError> {
    const KNOWN: &[&str] = &[
        "type",
        "projectId",
        "tenantId",
        "userId",
        "from",
        "to",
        "after",
        "limit",
        "includeArchived",
    ];
    reject_unknown(params, KNOWN)?;
    let mut filter = EventFilter::default();
    if let Some(t) = params.get("type") {
        filter.types =
            Pattern::parse_list(t).map_err(|e| ApiError::parameter("type", e.to_string()))?;
    }
    filter.project_id = match path_project {
        Some(p) => Some(p.to_owned()),
        None => non_empty(params, "projectId")?,
    };
    filter.tenant_id = non_empty(params, "tenantId")?;
    filter.user_id = non_empty(params, "userId")?;
    filter.from = time(params, "from")?;
    filter.to = time(params, "to")?;
    let after = match params.get("after") {
        None => 0,
        Some(a) => a.parse::<u64>().map_err(|_| {
            ApiError::parameter("after", format!("`{a}` is not a cursor; pass the `nextAfter` of the previous page (a non-negative integer)"))
        })?,
    };
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::parameter(
                    "limit",
                    format!("`{l}` is out of range; use 1 to {MAX_PAGE}"),
                ));
            }
        },
    };
    Ok(EventQuery {
        filter,
        after,
        limit,
    })
}

/// `includeArchived`: `true` answers across archived and hot events, `false` (the default) hot only.
pub fn include_archived(params: &HashMap<String, String>) -> Result<bool, ApiError> {
    match params.get("includeArchived").map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(ApiError::parameter(
            "includeArchived",
            format!("`{v}` is not a boolean; use true or false"),
        )),
    }
}

/// The paging parameters of a listing: `after` (the `nextAfter` of the previous page, 0 by
/// default) and `limit` (1 to `max`, [`DEFAULT_PAGE`] by default).
pub fn paging(params: &HashMap<String, String>, max: usize) -> Result<(u64, usize), ApiError> {
    let after = match params.get("after") {
        None => 0,
        Some(a) => a.parse().map_err(|_| {
            ApiError::parameter("after", "pass the `nextAfter` of the previous page")
        })?,
    };
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::parameter(
                    "limit",
                    format!("`{l}` is out of range; use 1 to {max}"),
                ));
            }
        },
    };
    Ok((after, limit))
}

/// Refuses parameters not in `known`.
pub fn reject_unknown(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) if known.is_empty() => Err(ApiError::parameter(
            k,
            "unknown parameter; this route takes none",
        )),
        Some(k) => Err(ApiError::parameter(
            k,
            format!("unknown parameter; known are: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn non_empty(params: &HashMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.is_empty() => Err(ApiError::parameter(name, "must not be empty")),
        other => Ok(other.cloned()),
    }
}

/// The RFC 3339 time of parameter `name`, if given; a bad one is a 400 naming it.
pub fn time(params: &HashMap<String, String>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    params
        .get(name)
        .map(|v| Timestamp::parse_rfc3339(v).map_err(|e| ApiError::parameter(name, e.to_string())))
        .transpose()
}
