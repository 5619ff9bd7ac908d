//! `/v1/outboxes`: the outbox sources this process relays (`OUTBOX_SOURCES`), their state, and
//! their dead letters, which can be retried once their cause is fixed (see docs/outbox.md).
//! [`OutboxesApi`] is their part of the API description.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use eventbus::core::principal::{Denied, Permission};
use eventbus::outbox::{OutboxDeadLetter, OutboxError, OutboxInfo, Outboxes};
use serde::Serialize;
use std::collections::HashMap;

use super::auth::Caller;
use super::body::json;
use super::params::{paging, reject_unknown};
use super::problem::ApiError;
use super::state::AppState;

/// The most dead letters on one page.
const MAX_PAGE: usize = 1000;

/// The routes below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_outboxes, get_outbox, list_dead_letters, retry_dead_letter))]
pub(super) struct OutboxesApi;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/outboxes", get(list_outboxes))
        .route("/v1/outboxes/{name}", get(get_outbox))
        .route("/v1/outboxes/{name}/dead-letters", get(list_dead_letters))
        .route(
            "/v1/outboxes/{name}/dead-letters/{seq}/retry",
            post(retry_dead_letter),
        )
}

/// The relays, for a caller allowed to see them: outboxes hold every tenant's rows of their
/// application, so only an `admin` key bound to no tenant or project may.
fn outboxes<'a>(state: &'a AppState, caller: &Caller) -> Result<&'a Outboxes, ApiError> {
    caller.require(Permission::Admin)?;
    if !caller.principal.is_unscoped() {
        return Err(caller.deny(Denied(
            "outboxes hold rows of every tenant of their application: only an admin key bound \
             to no tenant or project may see them"
                .into(),
        )));
    }
    Ok(&state.outboxes)
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        match e {
            e @ (OutboxError::UnknownSource(_) | OutboxError::NoSuchDeadLetter(..)) => {
                ApiError::NotFound(e.to_string())
            }
            e @ OutboxError::AlreadyQueued(..) => ApiError::OutboxRowQueued(e.to_string()),
            OutboxError::Unavailable(name, detail) => {
                // The driver's text names hosts and users: it goes to the log only.
                tracing::warn!(source = %name, error = %detail, "outbox database unavailable");
                ApiError::Unavailable(format!(
                    "the application database of outbox `{name}` cannot be reached; try again"
                ))
            }
        }
    }
}

/// `GET /v1/outboxes` answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OutboxList)]
struct ListBody {
    /// Every configured source.
    outboxes: Vec<OutboxInfo>,
}

/// `GET /v1/outboxes`.
#[utoipa::path(
    get,
    path = "/v1/outboxes",
    tag = "outboxes",
    responses((status = 200, description = "Every configured source and its state", body = ListBody))
)]
pub(super) async fn list_outboxes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let outboxes = outboxes(&state, &caller)?.list();
    Ok(json(StatusCode::OK, &ListBody { outboxes }))
}

/// `GET /v1/outboxes/{name}`.
#[utoipa::path(
    get,
    path = "/v1/outboxes/{name}",
    tag = "outboxes",
    params(("name" = String, Path, description = "The source's name", pattern = r"^[a-z_][a-z0-9_]{0,62}$")),
    responses(
        (status = 200, description = "The source and its state", body = OutboxInfo),
        (status = 404, description = "No such source"),
    )
)]
pub(super) async fn get_outbox(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let info = outboxes(&state, &caller)?.get(&name)?;
    Ok(json(StatusCode::OK, &info))
}

/// One page of dead letters.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OutboxDeadLetterPage)]
#[serde(rename_all = "camelCase")]
struct DeadLetterPage {
    /// Oldest first.
    dead_letters: Vec<OutboxDeadLetter>,
    /// Pass as `after` for the next page; null on the last.
    next_after: Option<i64>,
}

/// `GET /v1/outboxes/{name}/dead-letters`.
#[utoipa::path(
    get,
    path = "/v1/outboxes/{name}/dead-letters",
    tag = "outboxes",
    params(
        ("name" = String, Path, description = "The source's name", pattern = r"^[a-z_][a-z0-9_]{0,62}$"),
        ("after" = Option<i64>, Query, description = "Dead letters with a greater seq", minimum = 0),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "Rows the bus refused, with their reasons", body = DeadLetterPage),
        (status = 400, description = "A bad parameter"),
        (status = 404, description = "No such source"),
        (status = 503, description = "The application database cannot be reached"),
    )
)]
pub(super) async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let outboxes = outboxes(&state, &caller)?;
    reject_unknown(&params, &["after", "limit"])?;
    let (after, limit) = paging(&params, MAX_PAGE)?;
    let dead_letters = outboxes.dead_letters(&name, after, limit).await?;
    let next_after = (dead_letters.len() == limit)
        .then(|| dead_letters.last().map(|d| d.seq))
        .flatten();
    Ok(json(
        StatusCode::OK,
        &DeadLetterPage {
            dead_letters,
            next_after,
        },
    ))
}

/// `POST /v1/outboxes/{name}/dead-letters/{seq}/retry`: puts the row back at the end of the
/// outbox; the relay appends it (or refuses it again, with the new reason).
#[utoipa::path(
    post,
    path = "/v1/outboxes/{name}/dead-letters/{seq}/retry",
    tag = "outboxes",
    params(
        ("name" = String, Path, description = "The source's name", pattern = r"^[a-z_][a-z0-9_]{0,62}$"),
        ("seq" = i64, Path, description = "The dead letter's seq", minimum = 1),
    ),
    responses(
        (status = 202, description = "Back in the outbox"),
        (status = 404, description = "No such source or dead letter"),
        (status = 409, description = "The outbox already holds a row with this event id"),
        (status = 503, description = "The application database cannot be reached"),
    )
)]
pub(super) async fn retry_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, seq)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let outboxes = outboxes(&state, &caller)?;
    let seq: i64 = seq.parse().map_err(|_| {
        ApiError::parameter(
            "seq",
            "must be the integer seq of a dead letter (see …/dead-letters)",
        )
    })?;
    outboxes.retry(&name, seq).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"retried": seq}),
    ))
}
