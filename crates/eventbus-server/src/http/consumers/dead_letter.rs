//! A consumer's dead letters: listed by `seq` in pages, and retried one by one (a dead letter
//! becomes a fresh message, its delivery count reset).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eventbus::core::principal::Permission;
use eventbus::store::group::MAX_DEAD_LETTER_PAGE;

use super::{not_found, service, visible_group};
use crate::http::auth::Caller;
use crate::http::body::json;
use crate::http::params::{DEFAULT_PAGE, PathParam, reject_unknown};
use crate::http::problem::{ApiError, StoreProblems};
use crate::http::state::AppState;

/// One page of dead letters.
// `Page<DeadLetter>` as written below; only described, never built.
#[derive(utoipa::ToSchema)]
#[schema(as = ConsumerDeadLetterPage)]
#[allow(dead_code, reason = "described in the API document, never built")]
#[serde(rename_all = "camelCase")]
struct DeadLetterPage {
    /// By `seq`.
    dead_letters: Vec<DeadLetterBody>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// A message the consumer gave up on.
#[derive(utoipa::ToSchema)]
#[schema(as = ConsumerDeadLetter)]
#[allow(dead_code, reason = "described in the API document, never built")]
#[serde(rename_all = "camelCase")]
struct DeadLetterBody {
    /// The ack id of its last delivery; retry with it.
    ack_id: String,
    /// The event's seq.
    seq: u64,
    /// Deliveries made.
    delivery_count: u32,
    /// `expired` (lease ran out at the last delivery), `nacked` or `archived` (the event left
    /// the hot table first).
    reason: String,
    /// When it became a dead letter.
    #[schema(format = DateTime)]
    dead_lettered_at: String,
    /// The event; `null` when it was archived.
    event: Option<eventbus::Event>,
}

/// `GET /v1/consumers/{name}/dead-letters`: by `seq`, paged with `after` and `limit`.
#[utoipa::path(
    get,
    path = "/v1/consumers/{name}/dead-letters",
    tag = "consumers",
    params(
        ("name" = String, Path, description = "The consumer", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$"),
        ("after" = Option<u64>, Query, description = "The `nextAfter` of the previous page"),
        ("limit" = Option<usize>, Query, description = "1 to 1,000; default 100"),
    ),
    responses(
        (status = 200, description = "One page", body = DeadLetterPage),
        (status = 400, description = "An invalid or unknown parameter"),
        (status = 404, description = "No such consumer in the key's scope"),
        StoreProblems,
    )
)]
pub(super) async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Subscribe, Permission::Read, Permission::Admin])?;
    let svc = service(&state)?;
    visible_group(svc, &caller, &name).await?;
    reject_unknown(&params, &["after", "limit"])?;
    let after = params
        .get("after")
        .map(|a| {
            a.parse::<u64>().map_err(|_| {
                ApiError::parameter("after", "pass the `nextAfter` of the previous page")
            })
        })
        .transpose()?;
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_DEAD_LETTER_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::parameter(
                    "limit",
                    format!("`{l}` is out of range; use 1 to {MAX_DEAD_LETTER_PAGE}"),
                ));
            }
        },
    };
    let page = svc
        .dead_letters(&name, after, limit)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "deadLetters": page.items, "nextAfter": page.next_after }),
    ))
}

/// `POST /v1/consumers/{name}/dead-letters/{ackId}/retry`: the dead letter becomes a fresh
/// message, ready now, its delivery count reset (204).
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/dead-letters/{ackId}/retry",
    tag = "consumers",
    params(
        ("name" = String, Path, description = "The consumer", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$"),
        ("ackId" = String, Path, description = "The dead letter's `ackId`"),
    ),
    responses(
        (status = 204, description = "Ready to be fetched again"),
        (status = 404, description = "No such consumer, or no such dead letter"),
        StoreProblems,
    )
)]
pub(super) async fn retry_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((name, ack_id)): PathParam<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Subscribe, Permission::Admin])?;
    let svc = service(&state)?;
    visible_group(svc, &caller, &name).await?;
    if !svc.retry_dead_letter(&name, &ack_id).await? {
        return Err(ApiError::NotFound(format!(
            "consumer `{name}` has no dead letter `{ack_id}`; list them at /v1/consumers/{name}/dead-letters"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
