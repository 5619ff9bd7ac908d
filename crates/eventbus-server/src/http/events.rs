//! `/v1/events` and `/v1/projects/{projectId}/events`: publish, query, get.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventbus::core::middleware::PublishContext;
use eventbus::core::principal::Permission;
use eventbus::store::{Appended, EventPage};
use eventbus::{Event, NewEvent};
use serde::Serialize;

use super::AppState;
use super::auth::Caller;
use super::body::{decode, read_json};
use super::openapi::{
    EventPageSchema, EventSchema, ProblemSchema, PublishBodySchema, PublishedSchema,
};
use super::params::{PathParam, event_query};
use super::problem::ApiError;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list_events).post(create_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/projects/{projectId}/events", get(list_project_events))
}

/// `POST /v1/events`: one event (object) or an atomic batch (array). 201 with the stored
/// event(s); 200 when a single event was already stored with the same content.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(content = PublishBodySchema, description = "One event (object) or an atomic batch (array)"),
    params(("traceparent" = Option<String>, Header, description = "W3C trace context, copied into `metadata.traceparent`")),
    responses(
        (status = 201, description = "Stored; the event or the batch with `seq`", body = PublishedSchema),
        (status = 200, description = "Already stored with the same content", body = EventSchema),
        (status = 400, description = "Malformed JSON or an invalid field", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Refused by a policy", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "The id is stored with other content", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "Body, payload or batch too large", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Unknown type or schema violation", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Permission::Publish)?;
    caller.check_rate(&state)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let ctx = PublishContext {
        principal: Some(caller.principal.clone()),
        traceparent: traceparent(&headers),
    };
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let events: Vec<NewEvent> = decode(&bytes)?;
            let stored = state.bus.publish_batch_with(events, &ctx).await?;
            let events: Vec<&Event> = stored.iter().map(|a| &*a.event).collect();
            Ok(json(StatusCode::CREATED, &events))
        }
        Some(b'{') => {
            let event: NewEvent = decode(&bytes)?;
            let Appended { event, created } = state.bus.publish_with(event, &ctx).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json(status, &*event))
        }
        _ => Err(ApiError::MalformedJson(
            "the body must be a JSON object (one event) or an array (a batch)".into(),
        )),
    }
}

/// The query parameters shared by the event lists, for the API description (they are parsed by
/// `params::event_query`, which names the parameter of any error).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct EventListParams {
    /// A pattern or a comma-separated list of patterns
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Exact match
    #[param(rename = "tenantId")]
    tenant_id: Option<String>,
    /// Exact match
    #[param(rename = "userId")]
    user_id: Option<String>,
    /// RFC 3339; `from` <= timestamp
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; timestamp < `to`
    #[param(format = DateTime)]
    to: Option<String>,
    /// Keyset cursor: the `nextAfter` of the previous page
    after: Option<u64>,
    /// Page size, default 100
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `true`: also archived events; `false` (default): hot events only
    #[param(rename = "includeArchived")]
    include_archived: Option<bool>,
}

/// `GET /v1/events`: keyset-paginated query.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("projectId" = Option<String>, Query, description = "Exact match"),
        EventListParams,
    ),
    responses(
        (status = 200, description = "One page", body = EventPageSchema),
        (status = 400, description = "An invalid or unknown parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = event_query(&params, None)?;
    Ok(page(query_page(&state, &caller, &params, query).await?))
}

/// `GET /v1/projects/{projectId}/events`: the project's events, same paging.
#[utoipa::path(
    get,
    path = "/v1/projects/{projectId}/events",
    tag = "events",
    params(
        ("projectId" = String, Path, description = "The project"),
        EventListParams,
    ),
    responses(
        (status = 200, description = "One page", body = EventPageSchema),
        (status = 400, description = "An invalid or unknown parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_project_events(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(project_id): PathParam<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = event_query(&params, Some(&project_id))?;
    Ok(page(query_page(&state, &caller, &params, query).await?))
}

/// `GET /v1/events/{id}`.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event", body = EventSchema),
        (status = 400, description = "An invalid parameter", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No event has this id", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable or overloaded", body = ProblemSchema, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    // An event outside the caller's scope is answered exactly like a missing one.
    match state.bus.get(&id).await? {
        Some(event) if caller.principal.sees(Permission::Read, &event) => {
            Ok(json(StatusCode::OK, &*event))
        }
        _ => Err(ApiError::NotFound(format!("no event has id `{id}`"))),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody<'a> {
    events: Vec<&'a Event>,
    next_after: Option<u64>,
}

fn page(page: EventPage) -> Response {
    let events: Vec<&Event> = page.events.iter().map(Arc::as_ref).collect();
    json(
        StatusCode::OK,
        &PageBody {
            events,
            next_after: page.next_after,
        },
    )
}

/// Serialises `value` once into the response body.
pub(super) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("API bodies serialise");
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The W3C `traceparent` header, when it has the right shape.
fn traceparent(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    (v.len() == 55 && v.split('-').count() == 4).then(|| v.to_owned())
}

/// A page of `query` narrowed to what the caller may read, across archived and hot events when
/// `includeArchived=true`.
async fn query_page(
    state: &AppState,
    caller: &Caller,
    params: &HashMap<String, String>,
    mut query: eventbus::store::EventQuery,
) -> Result<eventbus::store::EventPage, ApiError> {
    query.filter = caller
        .principal
        .narrow(Permission::Read, &query.filter)
        .map_err(|d| caller.deny(d))?;
    if super::params::include_archived(params)? {
        return Ok(state
            .archive
            .query(&query)
            .await
            .map_err(eventbus::StoreError::from)?);
    }
    Ok(state.bus.query(&query).await?)
}
