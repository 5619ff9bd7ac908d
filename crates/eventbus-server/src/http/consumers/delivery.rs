//! Fetching, acking and nacking: the long-poll fetch (`eventbus::transport::group` waits) and
//! the per-id answer of acks and nacks (see the module docs of `consumers`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use eventbus::core::event::FieldError;
use eventbus::core::principal::{Denied, Permission};
use eventbus::store::group::AckOutcome;
use eventbus::transport::group::{GroupService, MAX_FETCH, MAX_WAIT};
use serde::{Deserialize, Serialize};

use super::{MAX_ACK_WAIT_MS, invalid, not_found, service, visible_group};
use crate::http::auth::Caller;
use crate::http::body::{BodyProblems, decode, json, read_json};
use crate::http::params::PathParam;
use crate::http::problem::{ApiError, StoreProblems};
use crate::http::state::AppState;

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
    params(("name" = String, Path, description = "The consumer", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$")),
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
    params(("name" = String, Path, description = "The consumer", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$")),
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
    params(("name" = String, Path, description = "The consumer", pattern = r"^[a-z0-9][a-z0-9_.-]{0,63}$")),
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
