//! `/v1/events` and `/v1/projects/{projectId}/events`: publish, query, get; [`EventsApi`] is
//! their part of the API description.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use eventbus::core::middleware::PublishContext;
use eventbus::core::principal::Permission;
use eventbus::store::{Appended, EventPage};
use eventbus::{Event, NewEvent};
use serde::Serialize;
use tracing::Instrument;

use super::auth::Caller;
use super::body::{decode, json, read_json};
use super::cloudevent::{self, CloudEventDoc, PublishMode};
use super::params::{PathParam, event_query};
use super::problem::{ApiError, StoreProblems};
use super::state::AppState;

/// The routes below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create_events, list_events, get_event, list_project_events))]
pub(super) struct EventsApi;

/// The request header of an optimistic publish: store only if the project's last event has
/// this seq.
pub const EXPECTED_LAST_SEQ: &str = "expected-last-seq";

/// Response header of a CloudEvents batch page: the `after` of the next page.
pub const NEXT_AFTER: &str = "next-after";
/// Response header of a CloudEvents batch page of a project: the project's last seq.
pub const LAST_SEQ: &str = "last-seq";

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
    request_body(
        description = "One event (object) or an atomic batch (array); or CloudEvents 1.0: one structured event, a batch (stored atomically), or binary mode (attributes in `ce-*` headers, the body is the JSON data, `Content-Type` its `datacontenttype`)",
        content(
            (PublishBody = "application/json"),
            (CloudEventDoc = "application/cloudevents+json"),
            (Vec<CloudEventDoc> = "application/cloudevents-batch+json"),
        ),
    ),
    params(
        ("ce-specversion" = Option<String>, Header, description = "CloudEvents binary mode: `1.0` (its presence selects binary mode)"),
        ("ce-id" = Option<String>, Header, description = "CloudEvents binary mode: the event `id`"),
        ("ce-source" = Option<String>, Header, description = "CloudEvents binary mode: kept as `metadata.source`"),
        ("ce-type" = Option<String>, Header, description = "CloudEvents binary mode: the event `type`"),
        ("ce-time" = Option<String>, Header, description = "CloudEvents binary mode: the event `timestamp`"),
        ("ce-subject" = Option<String>, Header, description = "CloudEvents binary mode: kept as `metadata.subject`; any other `ce-<name>` header is an extension attribute (`ce-projectid`, `ce-tenantid`, `ce-userid`, `ce-traceparent`, … see docs/api.md)"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, copied into `metadata.traceparent`"),
        ("Expected-Last-Seq" = Option<u64>, Header, description = "Optimistic concurrency: store only if the last stored event of the event's `projectId` (a batch: its first event's) has this `seq`; `0`: the project has no events. Otherwise `409` `/problems/wrong-expected-seq` with the actual `lastSeq`. The (first) event must have a `projectId`"),
    ),
    responses(
        (status = 201, description = "Stored; the event or the batch with `seq` (as CloudEvents when the publish was CloudEvents: one structured event, or a batch for a batch)", content(
            (Published = "application/json"),
            (CloudEventDoc = "application/cloudevents+json"),
            (Vec<CloudEventDoc> = "application/cloudevents-batch+json"),
        )),
        (status = 200, description = "Already stored with the same content", content(
            (Event = "application/json"),
            (CloudEventDoc = "application/cloudevents+json"),
        )),
        (status = 400, description = "Malformed JSON or an invalid field"),
        (status = 403, description = "Refused by a policy"),
        (status = 409, description = "The id is stored with other content (`/problems/id-conflict`), or `Expected-Last-Seq` does not hold (`/problems/wrong-expected-seq`, with the project's actual `lastSeq`)"),
        (status = 413, description = "Body, payload or batch too large"),
        (status = 415, description = "The body is not JSON"),
        (status = 422, description = "Unknown type or schema violation"),
        StoreProblems,
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
    let expected = expected_last_seq(&headers)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    // The publish continues the caller's trace; events without trace context of their own get
    // this span's (when OpenTelemetry is on), so their deliveries join the same trace.
    let incoming = traceparent(&headers);
    let span = tracing::info_span!("publish", otel.kind = "server", http.route = "/v1/events");
    eventbus::telemetry::continue_trace(&span, incoming.as_deref());
    let ctx = PublishContext {
        principal: Some(caller.principal.clone()),
        traceparent: incoming.or_else(|| eventbus::telemetry::traceparent_of(&span)),
    };
    publish(&state, &headers, &bytes, &ctx, expected)
        .instrument(span)
        .await
}

/// The publish of a read body: decoded by its mode, published, answered in its format.
async fn publish(
    state: &AppState,
    headers: &HeaderMap,
    bytes: &[u8],
    ctx: &PublishContext,
    expected: Option<u64>,
) -> Result<Response, ApiError> {
    let mode = cloudevent::publish_mode(headers);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let one = match (mode, first) {
        (PublishMode::Structured, _) => Some(cloudevent::decode_structured(bytes)?),
        (PublishMode::Binary, _) => Some(cloudevent::decode_binary(headers, bytes)?),
        (PublishMode::Plain, Some(b'{')) => Some(decode(bytes)?),
        _ => None,
    };
    if let Some(event) = one {
        let Appended { event, created } = match expected {
            Some(n) => state.bus.publish_expecting(event, ctx, n).await?,
            None => state.bus.publish_with(event, ctx).await?,
        };
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok(published(mode, status, &[&*event], false));
    }
    let events: Vec<NewEvent> = match (mode, first) {
        (PublishMode::Batch, _) => cloudevent::decode_batch(bytes)?,
        (_, Some(b'[')) => decode(bytes)?,
        _ => {
            return Err(ApiError::MalformedJson(
                "the body must be a JSON object (one event) or an array (a batch)".into(),
            ));
        }
    };
    let stored = match expected {
        Some(n) => state.bus.publish_batch_expecting(events, ctx, n).await?,
        None => state.bus.publish_batch_with(events, ctx).await?,
    };
    let events: Vec<&Event> = stored.iter().map(|a| &*a.event).collect();
    Ok(published(mode, StatusCode::CREATED, &events, true))
}

/// The answer to a publish: our JSON, or CloudEvents when the publish was CloudEvents (a single
/// event as one structured event, a batch as a batch). A batch is answered as an array whatever
/// its length, one event as an object.
fn published(mode: PublishMode, status: StatusCode, events: &[&Event], batch: bool) -> Response {
    match (mode, events) {
        (PublishMode::Plain, [one]) if !batch => json(status, one),
        (PublishMode::Plain, _) => json(status, events),
        (PublishMode::Batch, _) => cloudevents_batch(status, events),
        (_, [one, ..]) => cloudevents_one(status, one),
        (_, []) => json(status, events),
    }
}

/// One event as `application/cloudevents+json`.
fn cloudevents_one(status: StatusCode, event: &Event) -> Response {
    with_type(
        json(status, &cloudevent::encode(event)),
        cloudevent::STRUCTURED,
    )
}

/// Events as `application/cloudevents-batch+json`.
fn cloudevents_batch(status: StatusCode, events: &[&Event]) -> Response {
    let batch: Vec<serde_json::Value> = events.iter().map(|e| cloudevent::encode(e)).collect();
    with_type(json(status, &batch), cloudevent::BATCH)
}

fn with_type(mut response: Response, media_type: &'static str) -> Response {
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(media_type),
    );
    response
}

/// `POST /v1/events` body: one event or an atomic batch.
// The handler tells them apart by the body's first character and decodes a `NewEvent` or a list
// of them; this type only describes that shape.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "described in the API document, never built")]
enum PublishBody {
    /// One event.
    One(Box<NewEvent>),
    /// A batch, stored atomically.
    Batch(Vec<NewEvent>),
}

/// `POST /v1/events` answer: the stored event, or the stored batch.
// The handler writes the `Event` or the list itself; this type only describes that shape.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "described in the API document, never built")]
enum Published {
    /// One event.
    One(Box<Event>),
    /// A batch.
    Batch(Vec<Event>),
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
        (status = 200, description = "One page; with `Accept: application/cloudevents-batch+json` the page's events as a CloudEvents batch, the next page's cursor in the `Next-After` header", content(
            (PageBody = "application/json"),
            (Vec<CloudEventDoc> = "application/cloudevents-batch+json"),
        ), headers(("Next-After" = u64, description = "CloudEvents batch answers: `after` of the next page; absent on the last page"))),
        (status = 400, description = "An invalid or unknown parameter"),
        StoreProblems,
    )
)]
pub(super) async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = event_query(&params, None)?;
    let events = query_page(&state, &caller, &params, query).await?;
    if cloudevent::accepts(&headers, cloudevent::BATCH) {
        return Ok(cloudevents_page(&events, None));
    }
    Ok(page(events))
}

/// A page as `application/cloudevents-batch+json`: the events; the cursor of the next page in
/// the `Next-After` header (absent on the last page), the project's last seq in `Last-Seq`.
fn cloudevents_page(page: &EventPage, last_seq: Option<u64>) -> Response {
    let events: Vec<&Event> = page.events.iter().map(Arc::as_ref).collect();
    let mut response = cloudevents_batch(StatusCode::OK, &events);
    let headers = response.headers_mut();
    if let Some(next) = page.next_after {
        headers.insert(NEXT_AFTER, next.into());
    }
    if let Some(last) = last_seq {
        headers.insert(LAST_SEQ, last.into());
    }
    response
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
        (status = 200, description = "One page, with the project's `lastSeq`; with `Accept: application/cloudevents-batch+json` the page's events as a CloudEvents batch, the next page's cursor in `Next-After` and the project's last seq in `Last-Seq`", content(
            (ProjectPageBody = "application/json"),
            (Vec<CloudEventDoc> = "application/cloudevents-batch+json"),
        ), headers(
            ("Next-After" = u64, description = "CloudEvents batch answers: `after` of the next page; absent on the last page"),
            ("Last-Seq" = u64, description = "CloudEvents batch answers: the project's last seq"),
        )),
        (status = 400, description = "An invalid or unknown parameter"),
        StoreProblems,
    )
)]
pub(super) async fn list_project_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(project_id): PathParam<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = event_query(&params, Some(&project_id))?;
    let events = query_page(&state, &caller, &params, query).await?;
    // Read after the page: a publish between the two shows as a `lastSeq` past the page.
    let last_seq = state.bus.store().last_seq_of_project(&project_id).await?;
    if cloudevent::accepts(&headers, cloudevent::BATCH) {
        return Ok(cloudevents_page(&events, Some(last_seq)));
    }
    let page_events: Vec<&Event> = events.events.iter().map(Arc::as_ref).collect();
    Ok(json(
        StatusCode::OK,
        &ProjectPageBody {
            events: page_events,
            next_after: events.next_after,
            last_seq,
        },
    ))
}

/// `GET /v1/events/{id}`.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event; a structured CloudEvent with `Accept: application/cloudevents+json`", content(
            (Event = "application/json"),
            (CloudEventDoc = "application/cloudevents+json"),
        )),
        (status = 400, description = "An invalid parameter"),
        (status = 404, description = "No event has this id"),
        StoreProblems,
    )
)]
pub(super) async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    // An event outside the caller's scope is answered exactly like a missing one.
    match state.bus.get(&id).await? {
        Some(event) if caller.principal.sees(Permission::Read, &event) => {
            if cloudevent::accepts(&headers, cloudevent::STRUCTURED) {
                return Ok(cloudevents_one(StatusCode::OK, &event));
            }
            Ok(json(StatusCode::OK, &*event))
        }
        _ => Err(ApiError::NotFound(format!("no event has id `{id}`"))),
    }
}

/// One page of events.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = EventPage)]
#[serde(rename_all = "camelCase")]
struct PageBody<'a> {
    /// The events, by `seq`.
    #[schema(value_type = Vec<Event>)]
    events: Vec<&'a Event>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// One page of a project's events, with the project's last seq.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ProjectEventPage)]
#[serde(rename_all = "camelCase")]
struct ProjectPageBody<'a> {
    /// The events, by `seq`.
    #[schema(value_type = Vec<Event>)]
    events: Vec<&'a Event>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
    /// The `seq` of the project's last stored event, whatever the filters (`0`: none): the
    /// value for `Expected-Last-Seq`.
    last_seq: u64,
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

/// The `Expected-Last-Seq` header: a decimal seq, `0` for "no events yet".
fn expected_last_seq(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(EXPECTED_LAST_SEQ) else {
        return Ok(None);
    };
    let parsed = value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n <= i64::MAX as u64);
    match parsed {
        Some(n) => Ok(Some(n)),
        None => Err(ApiError::parameter(
            "Expected-Last-Seq",
            "must be the seq of the project's last event as a decimal number (0: the project \
             has no events yet)",
        )),
    }
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
    query.filter = caller.readable(&query.filter)?;
    if super::params::include_archived(params)? {
        return Ok(state
            .archive
            .query(&query)
            .await
            .map_err(eventbus::StoreError::from)?);
    }
    Ok(state.bus.query(&query).await?)
}
