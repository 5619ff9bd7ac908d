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
//!
//! Layout: this file (routes, limits, who sees which consumer), `settings` (create, list, read,
//! delete), `delivery` (fetch, ack, nack), `dead_letter` (the dead letters and their retry).

mod dead_letter;
mod delivery;
mod settings;

use axum::Router;
use axum::routing::{get, post};
use eventbus::core::event::FieldError;
use eventbus::store::group::{Group, valid_name};
use eventbus::transport::group::GroupService;

use dead_letter::{list_dead_letters, retry_dead_letter};
use delivery::{ack_messages, fetch_messages, nack_messages};
use settings::{delete_consumer, get_consumer, list_consumers, put_consumer};

use super::auth::Caller;
use super::problem::ApiError;
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
    settings::list_consumers,
    settings::put_consumer,
    settings::get_consumer,
    settings::delete_consumer,
    delivery::fetch_messages,
    delivery::ack_messages,
    delivery::nack_messages,
    dead_letter::list_dead_letters,
    dead_letter::retry_dead_letter,
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

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField(FieldError::new(field, message))
}
