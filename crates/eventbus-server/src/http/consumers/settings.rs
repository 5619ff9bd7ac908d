//! Creating, changing, listing, reading and deleting consumers: the `PUT` body checked into
//! [`GroupSettings`] and narrowed to the key's scope, and [`ConsumerBody`], a consumer's
//! settings with its state, the answer of every route here.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use eventbus::Pattern;
use eventbus::core::filter::EventFilter;
use eventbus::core::principal::{Denied, Permission};
use eventbus::core::time::Timestamp;
use eventbus::store::group::{Group, GroupSettings, GroupState, StartAt};
use eventbus::transport::group::GroupService;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    MAX_ACK_PENDING, MAX_ACK_WAIT_MS, MAX_DELIVER, MIN_ACK_WAIT_MS, check_name, invalid, not_found,
    service, visible, visible_group,
};
use crate::http::auth::Caller;
use crate::http::body::{BodyProblems, decode, json, read_json};
use crate::http::params::PathParam;
use crate::http::problem::{ApiError, StoreProblems};
use crate::http::state::AppState;

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
    params(("name" = String, Path, description = "`[a-z0-9][a-z0-9_.-]{0,63}`", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$")),
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
    params(("name" = String, Path, description = "The consumer", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$")),
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
    params(("name" = String, Path, description = "The consumer", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$")),
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
