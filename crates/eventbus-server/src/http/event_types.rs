//! `/v1/event-types`: the catalogue and its JSON Schemas, and how many stored events each type
//! has; [`EventTypesApi`] is their part of the API description.
//!
//! `/v1/event-types/counts` is a route of its own, not a type: a type name has at least two
//! dotted segments, and the router matches the literal path before `{type}`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use eventbus::core::catalogue::EventTypeDef;
use eventbus::core::event::{FieldError, validate_type};
use eventbus::core::filter::EventFilter;
use eventbus::core::principal::{Denied, Permission};
use eventbus::store::TypeCount;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::body::{BodyProblems, decode, json, read_json};
use super::params::{PathParam, reject_unknown};
use super::problem::{ApiError, StoreProblems};
use super::state::AppState;

/// The routes below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_event_types, count_event_types, get_event_type, put_event_type))]
pub(super) struct EventTypesApi;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/event-types", get(list_event_types))
        .route("/v1/event-types/counts", get(count_event_types))
        .route(
            "/v1/event-types/{type}",
            get(get_event_type).put(put_event_type),
        )
}

/// The catalogue.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EventTypeList)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    /// Every registered type.
    event_types: Vec<EventTypeDef>,
}

/// `GET /v1/event-types`.
#[utoipa::path(
    get,
    path = "/v1/event-types",
    tag = "event-types",
    responses((status = 200, description = "The catalogue", body = ListBody))
)]
pub(super) async fn list_event_types(State(state): State<AppState>, _caller: Caller) -> Response {
    json(
        StatusCode::OK,
        &ListBody {
            event_types: state.bus.event_types(),
        },
    )
}

/// Stored events per type.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EventTypeCounts)]
struct CountsBody {
    /// The types with at least one stored event the caller may read, sorted by name.
    counts: Vec<TypeCount>,
}

/// `GET /v1/event-types/counts`: how many stored events of each type the caller may read,
/// within exactly the scope `GET /v1/events` gives its key (tenant, projects, `read` type
/// patterns). Archived events are not counted; types without a stored event are left out.
#[utoipa::path(
    get,
    path = "/v1/event-types/counts",
    tag = "event-types",
    responses(
        (status = 200, description = "Stored events per type, by type name", body = CountsBody),
        (status = 400, description = "A query parameter (none is known)"),
        StoreProblems,
    )
)]
pub(super) async fn count_event_types(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    reject_unknown(&params, &[])?;
    let filter = caller.readable(&EventFilter::default())?;
    let counts = state.bus.store().count_by_type(&filter).await?;
    Ok(json(StatusCode::OK, &CountsBody { counts }))
}

/// `GET /v1/event-types/{type}`.
#[utoipa::path(
    get,
    path = "/v1/event-types/{type}",
    tag = "event-types",
    params(("type" = String, Path, description = "The type name")),
    responses(
        (status = 200, description = "The definition", body = EventTypeDef),
        (status = 400, description = "Not a valid type name"),
        (status = 404, description = "Not registered"),
    )
)]
pub(super) async fn get_event_type(
    State(state): State<AppState>,
    _caller: Caller,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    validate_type(&name)
        .map_err(|e| ApiError::InvalidParameter(FieldError::new("type", e.to_string())))?;
    match state.bus.event_type(&name) {
        Some(def) => Ok(json(StatusCode::OK, &def)),
        None => Err(ApiError::NotFound(format!(
            "`{name}` is not a registered event type"
        ))),
    }
}

/// `PUT /v1/event-types/{type}` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = EventTypeInput)]
#[serde(deny_unknown_fields)]
struct PutBody {
    /// What the event means (at most 1024 bytes).
    #[serde(default)]
    description: Option<String>,
    /// A JSON Schema for the payload.
    #[serde(default)]
    schema: Option<serde_json::Value>,
}

/// `PUT /v1/event-types/{type}`: registers or replaces a type; 201 when new, 200 otherwise.
#[utoipa::path(
    put,
    path = "/v1/event-types/{type}",
    tag = "event-types",
    params(("type" = String, Path, description = "The type name")),
    request_body(content = PutBody),
    responses(
        (status = 201, description = "Registered", body = EventTypeDef),
        (status = 200, description = "Replaced", body = EventTypeDef),
        (status = 400, description = "Malformed JSON, an invalid name, description or schema"),
        BodyProblems,
        StoreProblems,
    )
)]
pub(super) async fn put_event_type(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    validate_type(&name)
        .map_err(|e| ApiError::InvalidParameter(FieldError::new("type", e.to_string())))?;
    if !caller.principal.is_unscoped() || !caller.principal.allows_type(Permission::Admin, &name) {
        return Err(caller.deny(Denied(
            "the catalogue is shared by every tenant: only an admin key bound to no tenant or \
             project, whose types cover this type, may change it"
                .into(),
        )));
    }
    let bytes = read_json(&headers, body, &state.config).await?;
    let body: PutBody = decode(&bytes)?;
    if let Some(d) = &body.description
        && d.len() > 1024
    {
        return Err(ApiError::InvalidField(FieldError::new(
            "description",
            "must be at most 1024 bytes",
        )));
    }
    let (def, created) = state
        .bus
        .register_event_type(&name, body.description, body.schema)
        .await?;
    Ok(json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &def,
    ))
}
