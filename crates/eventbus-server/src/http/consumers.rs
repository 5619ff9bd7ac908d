//! `/v1/consumers`: consumer groups over HTTP (issue 15), shared pull consumers the way NATS
//! JetStream pull consumers or SQS queues work (see `eventbus::transport::group` and
//! `eventbus::store::group` for the guarantees: at least once, one fetcher at a time per
//! message, per-project order when `ordered`).
//!
//! Routes: `PUT /v1/consumers/{name}` (201 created, 200 updated), `GET /v1/consumers`,
//! `GET`/`DELETE /v1/consumers/{name}`, `POST …/fetch` (long-poll), `POST …/ack`,
//! `POST …/nack`, `GET …/dead-letters`, `POST …/dead-letters/{ackId}/retry`.
//!
//! Permissions: creating, changing and deleting a consumer and retrying its dead letters take
//! `subscribe` or `admin`; reading consumers and dead letters `subscribe`, `read` or `admin`;
//! fetching, acking and nacking `subscribe`. A consumer belongs to the key's tenant: a key bound
//! to a tenant (or to projects) sees only the consumers of its tenant (and projects); others
//! answer 404 like missing ones. A new consumer's filter is narrowed to the key's scope the way
//! a stream's is (`Principal::narrow`): its tenant, one of its projects, types within its
//! patterns; fetching needs every type of the consumer within the key's `subscribe` patterns.
//!
//! Ack and nack answer per id: 200 with one outcome per ack id when at least one was done; when
//! none was, 404 (`unknown-ack-id`) if one of them is not an ack id of this consumer, otherwise
//! 409 (`expired-ack-id`), each failing id named in `errors` as `ackIds/<index>`. Never a silent
//! success. [`ConsumersApi`] is this module's part of the API description.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eventbus::Pattern;
use eventbus::core::event::FieldError;
use eventbus::core::filter::EventFilter;
use eventbus::core::principal::{Denied, Permission};
use eventbus::core::time::Timestamp;
use eventbus::store::group::{
    AckOutcome, Group, GroupSettings, GroupState, MAX_DEAD_LETTER_PAGE, StartAt, valid_name,
};
use eventbus::transport::group::{GroupService, MAX_FETCH, MAX_WAIT};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::body::{BodyProblems, decode, json, read_json};
use super::params::{DEFAULT_PAGE, PathParam, reject_unknown};
use super::problem::{ApiError, StoreProblems};
use super::state::AppState;

/// Shortest `ackWaitMs`.
pub const MIN_ACK_WAIT_MS: u64 = 10;
/// Longest `ackWaitMs` and `delayMs` (12 hours).
pub const MAX_ACK_WAIT_MS: u64 = 12 * 3600 * 1000;
/// Largest `maxDeliver`.
pub const MAX_DELIVER: u32 = 1000;
/// Largest `maxAckPending`.
pub const MAX_ACK_PENDING: u32 = 10_000;

/// The routes below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_consumers,
    put_consumer,
    get_consumer,
    delete_consumer,
    fetch_messages,
    ack_messages,
    nack_messages,
    list_dead_letters,
    retry_dead_letter,
))]
pub(super) struct ConsumersApi;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/consumers", get(list_consumers))
        .route(
            "/v1/consumers/{name}",
            get(get_consumer).put(put_consumer).delete(delete_consumer),
        )
        .route("/v1/consumers/{name}/fetch", post(fetch_messages))
        .route("/v1/consumers/{name}/ack", post(ack_messages))
        .route("/v1/consumers/{name}/nack", post(nack_messages))
        .route("/v1/consumers/{name}/dead-letters", get(list_dead_letters))
        .route(
            "/v1/consumers/{name}/dead-letters/{ackId}/retry",
            post(retry_dead_letter),
        )
}

/// The consumer group transport (501 when the bus runs without it).
fn service(state: &AppState) -> Result<&GroupService, ApiError> {
    state.bus.groups().map(|g| &**g).ok_or_else(|| {
        ApiError::ConsumersUnavailable("this server runs without consumer groups".into())
    })
}

/// Refuses (400) a name outside the grammar.
fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::parameter(
            "name",
            format!(
                "`{name}` is not a consumer name: use 1 to 64 of a-z, 0-9, `_`, `.`, `-`, \
                 starting with a letter or digit"
            ),
        ))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no consumer named `{name}`"))
}

/// Whether the caller's tenant and projects reach `group`.
fn visible(caller: &Caller, group: &Group) -> bool {
    let p = &caller.principal;
    let s = &group.settings;
    p.tenant_id
        .as_ref()
        .is_none_or(|t| s.tenant_id.as_ref() == Some(t))
        && p.project_ids
            .as_ref()
            .is_none_or(|ps| s.project_id.as_ref().is_some_and(|x| ps.contains(x)))
}

/// The group `name` when the caller may see it (404 otherwise, like a missing one).
async fn visible_group(svc: &GroupService, caller: &Caller, name: &str) -> Result<Group, ApiError> {
    check_name(name)?;
    match svc.get(name).await? {
        Some(g) if visible(caller, &g) => Ok(g),
        _ => Err(not_found(name)),
    }
}

/// `PUT /v1/consumers/{name}` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ConsumerInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutBody {
    /// Type patterns (at least one); an event is taken when its type matches one.
    types: Vec<String>,
    /// Only events of this project.
    #[serde(default)]
    project_id: Option<String>,
    /// Only events of this user.
    #[serde(default)]
    user_id: Option<String>,
    /// Where a new consumer starts: `new` (the default: events published from now on),
    /// `earliest` (the start of the log) or a `seq`. Ignored on update.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!("new"))]
    start_at: Option<Value>,
    /// Lease of a delivery before it is handed out again (10 to 43,200,000; default 30,000).
    #[serde(default)]
    ack_wait_ms: Option<u64>,
    /// Deliveries before a message becomes a dead letter (1 to 1,000; default 5).
    #[serde(default)]
    max_deliver: Option<u32>,
    /// Most messages outstanding at once (1 to 10,000; default 1,000).
    #[serde(default)]
    max_ack_pending: Option<u32>,
    /// At most one unacked message per project at a time, in order (default false).
    #[serde(default)]
    ordered: Option<bool>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField(FieldError::new(field, message))
}

/// Checks `body` and turns it into settings (scope not applied yet).
fn settings_of(name: &str, body: PutBody) -> Result<GroupSettings, ApiError> {
    if body.types.is_empty() {
        return Err(invalid(
            "types",
            "a consumer needs at least one type pattern, e.g. [\"project.*\"]",
        ));
    }
    let mut types = Vec::with_capacity(body.types.len());
    for (i, t) in body.types.iter().enumerate() {
        types.push(Pattern::parse(t).map_err(|e| invalid(&format!("types/{i}"), e.to_string()))?);
    }
    let mut s = GroupSettings::new(name, types);
    for (field, value) in [("projectId", &body.project_id), ("userId", &body.user_id)] {
        if value.as_deref() == Some("") {
            return Err(invalid(field, "must not be empty; omit it instead"));
        }
    }
    s.project_id = body.project_id;
    s.user_id = body.user_id;
    s.start_at = match &body.start_at {
        None => StartAt::New,
        Some(Value::String(w)) if w == "new" => StartAt::New,
        Some(Value::String(w)) if w == "earliest" => StartAt::Earliest,
        Some(v) => match v.as_u64() {
            Some(seq) => StartAt::Seq(seq),
            None => {
                return Err(invalid(
                    "startAt",
                    format!(
                        "`{v}` is not a start: use \"new\", \"earliest\" or a seq (a non-negative integer)"
                    ),
                ));
            }
        },
    };
    let ack_wait = body.ack_wait_ms.unwrap_or(30_000);
    if !(MIN_ACK_WAIT_MS..=MAX_ACK_WAIT_MS).contains(&ack_wait) {
        return Err(invalid(
            "ackWaitMs",
            format!("{ack_wait} is out of range; use {MIN_ACK_WAIT_MS} to {MAX_ACK_WAIT_MS}"),
        ));
    }
    s.ack_wait = Duration::from_millis(ack_wait);
    s.max_deliver = body.max_deliver.unwrap_or(5);
    if !(1..=MAX_DELIVER).contains(&s.max_deliver) {
        return Err(invalid(
            "maxDeliver",
            format!("{} is out of range; use 1 to {MAX_DELIVER}", s.max_deliver),
        ));
    }
    s.max_ack_pending = body.max_ack_pending.unwrap_or(1000);
    if !(1..=MAX_ACK_PENDING).contains(&s.max_ack_pending) {
        return Err(invalid(
            "maxAckPending",
            format!(
                "{} is out of range; use 1 to {MAX_ACK_PENDING}",
                s.max_ack_pending
            ),
        ));
    }
    s.ordered = body.ordered.unwrap_or(false);
    Ok(s)
}

/// Narrows `s` to the caller's scope: its tenant, one of its projects (a key with several must
/// name one), types within its patterns of `subscribe` (or `admin` when it lacks `subscribe`).
fn scope(caller: &Caller, s: &mut GroupSettings) -> Result<(), ApiError> {
    let p = &caller.principal;
    let permission = if p.has(Permission::Subscribe) {
        Permission::Subscribe
    } else {
        Permission::Admin
    };
    let asked = EventFilter {
        types: s.types.clone(),
        project_id: s.project_id.clone(),
        user_id: s.user_id.clone(),
        ..EventFilter::default()
    };
    let narrowed = p.narrow(permission, &asked).map_err(|d| caller.deny(d))?;
    match narrowed.project_ids.as_slice() {
        [] => {}
        [one] => s.project_id = Some(one.clone()),
        several => {
            return Err(caller.deny(Denied(format!(
                "this key reads several projects; set `projectId` to one of `{}`",
                several.join("`, `")
            ))));
        }
    }
    s.tenant_id = narrowed.tenant_id;
    s.types = narrowed.types;
    Ok(())
}

/// A consumer: its settings and where it stands.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Consumer)]
#[serde(rename_all = "camelCase")]
struct ConsumerBody {
    /// Its name.
    name: String,
    /// Type patterns (narrowed to the creating key's scope).
    types: Vec<String>,
    /// Its tenant (the creating key's); `null` for a consumer of an unrestricted key.
    tenant_id: Option<String>,
    /// Only events of this project.
    project_id: Option<String>,
    /// Only events of this user.
    user_id: Option<String>,
    /// The start it was created with: `new`, `earliest` or a seq.
    #[schema(value_type = Object)]
    start_at: Value,
    /// Lease of a delivery.
    ack_wait_ms: u64,
    /// Deliveries before a dead letter.
    max_deliver: u32,
    /// Most messages outstanding at once.
    max_ack_pending: u32,
    /// One unacked message per project at a time.
    ordered: bool,
    /// Creation time.
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// Last settings change.
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
    /// Every event up to this seq has been considered.
    cursor: u64,
    /// Matching events not delivered yet.
    pending: u64,
    /// Messages handed out and not acked.
    ack_pending: u64,
    /// Deliveries after the first, since creation.
    redelivered: u64,
    /// Dead letters held.
    dead_lettered: u64,
    /// Age of the oldest message not acked, in ms; `null` when none.
    oldest_unacked_ms: Option<u64>,
}

fn consumer_body(g: &Group, st: &GroupState) -> ConsumerBody {
    let s = &g.settings;
    ConsumerBody {
        name: s.name.clone(),
        types: s.types.iter().map(|t| t.as_str().to_owned()).collect(),
        tenant_id: s.tenant_id.clone(),
        project_id: s.project_id.clone(),
        user_id: s.user_id.clone(),
        start_at: match s.start_at {
            StartAt::Seq(n) => Value::from(n),
            other => Value::from(other.to_string()),
        },
        ack_wait_ms: s.ack_wait_ms() as u64,
        max_deliver: s.max_deliver,
        max_ack_pending: s.max_ack_pending,
        ordered: s.ordered,
        created_at: g.created_at,
        updated_at: g.updated_at,
        cursor: st.cursor,
        pending: st.pending,
        ack_pending: st.ack_pending,
        redelivered: st.redelivered,
        dead_lettered: st.dead_lettered,
        oldest_unacked_ms: st.oldest_unacked.map(|d| d.as_millis() as u64),
    }
}

/// The body of `group` with its state now (404 when it was deleted meanwhile).
async fn with_state(svc: &GroupService, g: &Group) -> Result<ConsumerBody, ApiError> {
    let st = svc
        .state(&g.settings.name)
        .await?
        .ok_or_else(|| not_found(&g.settings.name))?;
    Ok(consumer_body(g, &st))
}

/// `PUT /v1/consumers/{name}`: creates the consumer (201) or replaces its settings (200; its
/// position, messages and dead letters stay).
#[utoipa::path(
    put,
    path = "/v1/consumers/{name}",
    tag = "consumers",
    params(("name" = String, Path, description = "`[a-z0-9][a-z0-9_.-]{0,63}`")),
    request_body(content = PutBody, description = "`types` is required"),
    responses(
        (status = 201, description = "Created", body = ConsumerBody),
        (status = 200, description = "Updated", body = ConsumerBody),
        (status = 400, description = "Malformed JSON, an invalid field or name"),
        (status = 409, description = "The name is taken by a consumer outside this key's scope"),
        BodyProblems,
        StoreProblems,
    )
)]
pub(super) async fn put_consumer(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Subscribe, Permission::Admin])?;
    check_name(&name)?;
    let svc = service(&state)?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let mut settings = settings_of(&name, decode(&bytes)?)?;
    scope(&caller, &mut settings)?;
    if let Some(existing) = svc.get(&name).await? {
        if !visible(&caller, &existing) {
            return Err(ApiError::ConsumerNameTaken(format!(
                "the name `{name}` is taken by a consumer this key cannot reach; choose another"
            )));
        }
        // A consumer stays in its tenant when an unrestricted key changes it.
        if caller.principal.tenant_id.is_none() {
            settings.tenant_id = existing.settings.tenant_id;
        }
    }
    settings
        .validate()
        .map_err(|e| invalid("body", e.to_string()))?;
    let (group, created) = svc.put(settings).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &with_state(svc, &group).await?))
}

/// The consumers.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ConsumerList)]
struct ListBody {
    /// Every consumer the key can see, by name.
    consumers: Vec<ConsumerBody>,
}

/// `GET /v1/consumers`: the consumers of the key's scope, with their state.
#[utoipa::path(
    get,
    path = "/v1/consumers",
    tag = "consumers",
    responses(
        (status = 200, description = "Every consumer the key can see", body = ListBody),
        StoreProblems,
    )
)]
pub(super) async fn list_consumers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Subscribe, Permission::Read, Permission::Admin])?;
    let svc = service(&state)?;
    let groups = svc.list(caller.principal.tenant_id.as_deref()).await?;
    let mut consumers = Vec::new();
    for g in groups.iter().filter(|g| visible(&caller, g)) {
        if let Some(st) = svc.state(&g.settings.name).await? {
            consumers.push(consumer_body(g, &st));
        }
    }
    Ok(json(StatusCode::OK, &ListBody { consumers }))
}

/// `GET /v1/consumers/{name}`: its settings and state.
#[utoipa::path(
    get,
    path = "/v1/consumers/{name}",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer")),
    responses(
        (status = 200, description = "Settings and state", body = ConsumerBody),
        (status = 400, description = "Not a consumer name"),
        (status = 404, description = "No such consumer in the key's scope"),
        StoreProblems,
    )
)]
pub(super) async fn get_consumer(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Subscribe, Permission::Read, Permission::Admin])?;
    let svc = service(&state)?;
    let g = visible_group(svc, &caller, &name).await?;
    Ok(json(StatusCode::OK, &with_state(svc, &g).await?))
}

/// `DELETE /v1/consumers/{name}`: the consumer, its messages and dead letters (204).
#[utoipa::path(
    delete,
    path = "/v1/consumers/{name}",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a consumer name"),
        (status = 404, description = "No such consumer in the key's scope"),
        StoreProblems,
    )
)]
pub(super) async fn delete_consumer(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Permission::Subscribe, Permission::Admin])?;
    let svc = service(&state)?;
    visible_group(svc, &caller, &name).await?;
    if !svc.delete(&name).await? {
        return Err(not_found(&name));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/consumers/{name}/fetch` body; an empty body takes the defaults.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = FetchInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FetchBody {
    /// Most messages to hand out (1 to 1,000; default 100).
    #[serde(default)]
    max: Option<u64>,
    /// How long to wait for a message when none is ready (0 to 30,000; default 0: answer at
    /// once).
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// Messages handed out.
// `GroupMessage` serialised; only described, never built.
#[derive(utoipa::ToSchema)]
#[schema(as = FetchedMessages)]
#[allow(dead_code, reason = "described in the API document, never built")]
struct FetchedBody {
    /// In `seq` order; empty when `waitMs` passed with nothing ready.
    messages: Vec<MessageBody>,
}

/// One delivery of one message.
#[derive(utoipa::ToSchema)]
#[schema(as = ConsumerMessage)]
#[allow(dead_code, reason = "described in the API document, never built")]
#[serde(rename_all = "camelCase")]
struct MessageBody {
    /// Names this delivery; ack or nack with it while its lease runs.
    ack_id: String,
    /// 1 on the first delivery.
    delivery_count: u32,
    /// The event.
    event: eventbus::Event,
}

/// Reads a JSON body that may be empty (then `T::default()`).
async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_json(headers, body, &state.config).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode(&bytes)
}

/// The group `name` for fetching: visible to the caller, its types within the key's
/// `subscribe` patterns.
async fn fetchable_group(svc: &GroupService, caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.require(Permission::Subscribe)?;
    let g = visible_group(svc, caller, name).await?;
    if let Some(t) = g
        .settings
        .types
        .iter()
        .find(|t| !caller.principal.covers(Permission::Subscribe, t))
    {
        return Err(caller.deny(Denied(format!(
            "the consumer's type `{t}` is outside this key's `subscribe` patterns"
        ))));
    }
    Ok(())
}

/// `POST /v1/consumers/{name}/fetch`: leases up to `max` messages, waiting up to `waitMs` for
/// one; callers fetching at once share the work.
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/fetch",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer")),
    request_body(content = FetchBody, description = "`{\"max\":100,\"waitMs\":5000}`; may be empty"),
    responses(
        (status = 200, description = "The messages handed out (possibly none)", body = FetchedBody),
        (status = 400, description = "Malformed JSON or a field out of range"),
        (status = 404, description = "No such consumer in the key's scope"),
        BodyProblems,
        StoreProblems,
    )
)]
pub(super) async fn fetch_messages(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = service(&state)?;
    fetchable_group(svc, &caller, &name).await?;
    let input: FetchBody = optional_body(&state, &headers, body).await?;
    let max = input.max.unwrap_or(100);
    if !(1..=MAX_FETCH as u64).contains(&max) {
        return Err(invalid(
            "max",
            format!("{max} is out of range; use 1 to {MAX_FETCH}"),
        ));
    }
    let wait_ms = input.wait_ms.unwrap_or(0);
    let max_wait = MAX_WAIT.as_millis() as u64;
    if wait_ms > max_wait {
        return Err(invalid(
            "waitMs",
            format!("{wait_ms} is out of range; use 0 to {max_wait}"),
        ));
    }
    let messages = svc
        .fetch(&name, max as usize, Duration::from_millis(wait_ms))
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "messages": messages }),
    ))
}

/// `POST /v1/consumers/{name}/ack` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AckInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AckBody {
    /// Ack ids from fetched messages (1 to 1,000).
    ack_ids: Vec<String>,
}

/// `POST /v1/consumers/{name}/nack` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NackInput)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NackBody {
    /// Ack ids from fetched messages (1 to 1,000).
    ack_ids: Vec<String>,
    /// Hand the messages out again after this long (0 to 43,200,000; default 0).
    #[serde(default)]
    delay_ms: Option<u64>,
}

/// What an ack or nack did, per ack id.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AckResults)]
#[serde(rename_all = "camelCase")]
struct AckResultsBody {
    /// Ack ids done.
    done: usize,
    /// Ack ids that failed (unknown or expired); 0 unless the batch was mixed.
    failed: usize,
    /// One entry per ack id, in the request's order.
    results: Vec<AckResult>,
}

/// What happened to one ack id.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AckResult {
    /// The ack id.
    ack_id: String,
    /// `acked` (done), `unknown` (not an ack id of this consumer) or `expired` (its delivery
    /// is over: lease ran out, redelivered, acked already).
    #[schema(value_type = String)]
    outcome: AckOutcome,
}

fn check_ack_ids(ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() || ids.len() > MAX_FETCH {
        return Err(invalid(
            "ackIds",
            format!(
                "send 1 to {MAX_FETCH} ack ids; this request has {}",
                ids.len()
            ),
        ));
    }
    Ok(())
}

/// The answer to an ack or nack (see the module docs).
fn ack_answer(
    name: &str,
    ids: Vec<String>,
    outcomes: Vec<AckOutcome>,
) -> Result<Response, ApiError> {
    let done = outcomes.iter().filter(|o| **o == AckOutcome::Acked).count();
    if done == 0 {
        let errors: Vec<FieldError> = ids
            .iter()
            .zip(&outcomes)
            .enumerate()
            .map(|(i, (id, o))| {
                let why = if *o == AckOutcome::Unknown {
                    format!("`{id}` is not an ack id of consumer `{name}`; use the ackId of a message it handed out")
                } else {
                    format!("the delivery `{id}` is over (its lease ran out, or it was redelivered or acked already); fetch again")
                };
                FieldError::new(format!("ackIds/{i}"), why)
            })
            .collect();
        return Err(if outcomes.contains(&AckOutcome::Unknown) {
            ApiError::UnknownAckIds {
                detail: format!(
                    "no ack id was done: each names no message of consumer `{name}` or a delivery that is over"
                ),
                errors,
            }
        } else {
            ApiError::ExpiredAckIds {
                detail: "no ack id was done: their deliveries are over (leases ran out, or redelivered or acked already); the messages are or will be handed out again".into(),
                errors,
            }
        });
    }
    let results = ids
        .into_iter()
        .zip(outcomes)
        .map(|(ack_id, outcome)| AckResult { ack_id, outcome })
        .collect::<Vec<_>>();
    Ok(json(
        StatusCode::OK,
        &AckResultsBody {
            done,
            failed: results.len() - done,
            results,
        },
    ))
}

/// `POST /v1/consumers/{name}/ack`: the messages are done.
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/ack",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer")),
    request_body(content = AckBody),
    responses(
        (status = 200, description = "At least one ack id was acked; the outcome of each", body = AckResultsBody),
        (status = 400, description = "Malformed JSON, or no or too many ack ids"),
        (status = 404, description = "No such consumer, or none acked and one is not an ack id of it"),
        (status = 409, description = "None acked: every delivery named is over"),
        BodyProblems,
        StoreProblems,
    )
)]
pub(super) async fn ack_messages(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = service(&state)?;
    fetchable_group(svc, &caller, &name).await?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let input: AckBody = decode(&bytes)?;
    check_ack_ids(&input.ack_ids)?;
    let outcomes = svc
        .ack(&name, &input.ack_ids)
        .await?
        .ok_or_else(|| not_found(&name))?;
    ack_answer(&name, input.ack_ids, outcomes)
}

/// `POST /v1/consumers/{name}/nack`: hands the messages out again after `delayMs` (or makes
/// them dead letters at their last delivery).
#[utoipa::path(
    post,
    path = "/v1/consumers/{name}/nack",
    tag = "consumers",
    params(("name" = String, Path, description = "The consumer")),
    request_body(content = NackBody),
    responses(
        (status = 200, description = "At least one ack id was nacked; the outcome of each", body = AckResultsBody),
        (status = 400, description = "Malformed JSON, no or too many ack ids, or `delayMs` out of range"),
        (status = 404, description = "No such consumer, or none nacked and one is not an ack id of it"),
        (status = 409, description = "None nacked: every delivery named is over"),
        BodyProblems,
        StoreProblems,
    )
)]
pub(super) async fn nack_messages(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = service(&state)?;
    fetchable_group(svc, &caller, &name).await?;
    let bytes = read_json(&headers, body, &state.config).await?;
    let input: NackBody = decode(&bytes)?;
    check_ack_ids(&input.ack_ids)?;
    let delay = input.delay_ms.unwrap_or(0);
    if delay > MAX_ACK_WAIT_MS {
        return Err(invalid(
            "delayMs",
            format!("{delay} is out of range; use 0 to {MAX_ACK_WAIT_MS}"),
        ));
    }
    let outcomes = svc
        .nack(&name, &input.ack_ids, Duration::from_millis(delay))
        .await?
        .ok_or_else(|| not_found(&name))?;
    ack_answer(&name, input.ack_ids, outcomes)
}

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
        ("name" = String, Path, description = "The consumer"),
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
        ("name" = String, Path, description = "The consumer"),
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
