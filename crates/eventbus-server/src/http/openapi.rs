//! `GET /openapi.json`: the OpenAPI 3.1 description of every route.
//!
//! The document is generated from the code: each handler carries a `#[utoipa::path]` annotation
//! next to its definition, and [`ApiDoc`] lists them all. The integration test
//! `tests/it/openapi.rs` checks that every route the router serves is described here.
//!
//! The schemas below describe the JSON bodies as they go over the wire (DESIGN.md §2–§3); they
//! live here rather than on the library's types so the core crate stays free of HTTP concerns.
//! Their field names and types follow the serialised forms of `eventbus::Event`,
//! `eventbus::store::webhook::Endpoint` and the others they name.

use std::collections::BTreeMap;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::events::json;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(get_openapi))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Value))
)]
pub(super) async fn get_openapi() -> Response {
    json(StatusCode::OK, &ApiDoc::openapi())
}

/// The whole API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Situs Event Bus",
        description = "Publish, query and stream events; deliver them to webhooks. Errors are RFC 9457 \
                       `application/problem+json`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        super::events::create_events,
        super::events::list_events,
        super::events::get_event,
        super::events::list_project_events,
        super::event_types::list_event_types,
        super::event_types::get_event_type,
        super::event_types::put_event_type,
        super::stream::get_stream,
        super::webhooks::list_endpoints,
        super::webhooks::create_endpoint,
        super::webhooks::get_endpoint,
        super::webhooks::update_endpoint,
        super::webhooks::delete_endpoint,
        super::webhooks::enable_endpoint,
        super::webhooks::disable_endpoint,
        super::webhooks::rotate_secret,
        super::webhooks::test_endpoint,
        super::webhooks::replay_events,
        super::webhooks::list_deliveries,
        super::webhooks::list_attempts,
        super::webhooks::get_delivery,
        super::webhooks::retry_delivery,
        super::keys::create_key,
        super::keys::list_keys,
        super::keys::get_key,
        super::keys::revoke_key,
        super::tokens::create_token,
        super::plugins::list_plugins,
        super::plugins::get_plugin,
        super::plugins::reload_plugins,
        super::plugins::install_plugin,
        super::plugins::uninstall_plugin,
        super::plugins::list_dead_letters,
        super::plugins::retry_dead_letter,
        super::health::get_live,
        super::health::get_ready,
        super::metrics::get_metrics,
        get_openapi,
    ),
    // Schemas only parameters name, which are not collected from the paths.
    components(schemas(AttemptStatusSchema, DeliveryStatusSchema)),
    modifiers(&Secured),
    tags(
        (name = "events", description = "Publish and query events"),
        (name = "event-types", description = "The event type catalogue"),
        (name = "stream", description = "Server-Sent Events"),
        (name = "webhooks", description = "Webhook endpoints, deliveries and attempts"),
        (name = "keys", description = "API keys (admin)"),
        (name = "tokens", description = "Browser tokens for streams"),
        (name = "plugins", description = "Rust and JavaScript plugins: status, reload, install, dead letters"),
        (name = "operations", description = "Health and metrics"),
        (name = "meta", description = "This description"),
    )
)]
pub struct ApiDoc;

/// Adds the authentication every `/v1` route requires: the `bearer` scheme (an API key), and
/// the 401 and 403 answers; `/v1/stream` also takes a browser token as `?token=`. `/health/ready`
/// and `/metrics` answer 401/403 only when `HEALTH_METRICS_PUBLIC=false`.
struct Secured;

impl utoipa::Modify for Secured {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{Ref, RefOr, ResponseBuilder, content::ContentBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`ebk_…`) or the EVENT_BUS_ADMIN_KEY"))
                    .build(),
            ),
        );
        let problem = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let guarded = path.starts_with("/v1/") || path == "/health/ready" || path == "/metrics";
            if !guarded {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut op.responses.responses;
                responses
                    .entry("401".into())
                    .or_insert_with(|| problem("No valid API key (or stream token)"));
                if path.starts_with("/v1/") {
                    responses
                        .entry("403".into())
                        .or_insert_with(|| problem("The key does not allow this"));
                    op.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                }
            }
        }
        if let Some(post) = doc
            .paths
            .paths
            .get_mut("/v1/events")
            .and_then(|i| i.post.as_mut())
        {
            post.responses
                .responses
                .entry("429".into())
                .or_insert_with(|| problem("The key is over its publish rate; see Retry-After"));
        }
    }
}

/// A stored event (DESIGN.md §2).
#[derive(Deserialize, ToSchema)]
#[schema(as = Event)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventSchema {
    /// Unique id, the idempotency key.
    id: String,
    /// Dotted lowercase type name, e.g. `project.created`.
    #[serde(rename = "type")]
    event_type: String,
    /// Any JSON.
    payload: Value,
    /// When the event happened (RFC 3339).
    #[schema(format = DateTime)]
    timestamp: String,
    /// The project the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    project_id: Option<String>,
    /// The tenant the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    /// The user the event is about or was caused by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    /// Correlation, causation, source and trace context.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Global, strictly increasing position assigned by the store.
    seq: u64,
}

/// An event as a publisher sends it: everything but `type` is optional; unknown fields are
/// refused.
#[derive(Deserialize, ToSchema)]
#[schema(as = NewEvent)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NewEventSchema {
    /// Idempotency key; a UUIDv7 is generated when absent.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    id: Option<String>,
    /// Dotted lowercase type name: at least two segments, each `[a-z][a-z0-9_]*`.
    #[serde(rename = "type")]
    #[schema(max_length = 255, pattern = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
    event_type: String,
    /// Any JSON; `null` when absent.
    #[serde(default)]
    payload: Option<Value>,
    /// RFC 3339 time; now when absent.
    #[serde(default)]
    #[schema(format = DateTime)]
    timestamp: Option<String>,
    /// Optional project scope.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    project_id: Option<String>,
    /// Optional tenant scope.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    tenant_id: Option<String>,
    /// Optional user.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    user_id: Option<String>,
    /// Optional string metadata: at most 32 entries, keys of 1 to 64 bytes, values of at most
    /// 2048 bytes.
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// Accepted so that a stored event can be sent back as is; ignored.
    #[serde(default)]
    seq: Option<Value>,
}

/// `POST /v1/events` body: one event or an atomic batch.
#[derive(Deserialize, ToSchema)]
#[schema(as = PublishBody)]
#[allow(dead_code)]
#[serde(untagged)]
pub(super) enum PublishBodySchema {
    /// One event.
    One(Box<NewEventSchema>),
    /// A batch, stored atomically.
    Batch(Vec<NewEventSchema>),
}

/// `POST /v1/events` answer: the stored event, or the stored batch.
#[derive(Deserialize, ToSchema)]
#[schema(as = Published)]
#[allow(dead_code)]
#[serde(untagged)]
pub(super) enum PublishedSchema {
    /// One event.
    One(Box<EventSchema>),
    /// A batch.
    Batch(Vec<EventSchema>),
}

/// One page of events.
#[derive(Deserialize, ToSchema)]
#[schema(as = EventPage)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventPageSchema {
    /// The events, by `seq`.
    events: Vec<EventSchema>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// One catalogue entry.
#[derive(Deserialize, ToSchema)]
#[schema(as = EventType)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventTypeSchema {
    /// The type name.
    #[serde(rename = "type")]
    name: String,
    /// What the event means.
    description: Option<String>,
    /// JSON Schema for the payload, if any.
    schema: Option<Value>,
    /// Whether the type is part of the built-in catalogue.
    builtin: bool,
    /// When the definition last changed.
    #[schema(format = DateTime)]
    updated_at: String,
}

/// The catalogue.
#[derive(Deserialize, ToSchema)]
#[schema(as = EventTypeList)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventTypeListSchema {
    /// Every registered type.
    event_types: Vec<EventTypeSchema>,
}

/// `PUT /v1/event-types/{type}` body.
#[derive(Deserialize, ToSchema)]
#[schema(as = EventTypeInput)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(super) struct EventTypeInputSchema {
    /// What the event means (at most 1024 bytes).
    #[serde(default)]
    description: Option<String>,
    /// A JSON Schema for the payload.
    #[serde(default)]
    schema: Option<Value>,
}

/// A webhook endpoint; `secret` only when just created or rotated.
#[derive(Deserialize, ToSchema)]
#[schema(as = Endpoint)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct EndpointSchema {
    /// Unique id.
    id: String,
    /// Where events are POSTed.
    url: String,
    /// Free text.
    description: Option<String>,
    /// Type patterns (every type when empty).
    event_types: Vec<String>,
    /// Only events of this project.
    project_id: Option<String>,
    /// Only events of this tenant.
    tenant_id: Option<String>,
    /// Extra request headers.
    headers: BTreeMap<String, String>,
    /// Most requests per second.
    rate_limit: Option<u32>,
    /// Strict per-endpoint ordering.
    ordered: bool,
    /// Disabled endpoints receive nothing.
    disabled: bool,
    /// `manual` or `failing`.
    disabled_reason: Option<String>,
    /// The signing secret; only in the answers to create and rotate.
    #[serde(default)]
    secret: Option<String>,
    /// End of the rotation's grace period.
    #[serde(default)]
    #[schema(format = DateTime)]
    previous_secret_expires_at: Option<String>,
    /// It receives events with a larger `seq`.
    since_seq: u64,
    /// Creation time.
    #[schema(format = DateTime)]
    created_at: String,
    /// Last change.
    #[schema(format = DateTime)]
    updated_at: String,
    /// Start of the current failure streak.
    #[schema(format = DateTime)]
    failing_since: Option<String>,
    /// Failed attempts in the current streak.
    failure_count: u32,
}

/// `POST /v1/webhooks` and `PATCH /v1/webhooks/{id}` body; `url` is required on create.
#[derive(Deserialize, ToSchema)]
#[schema(as = EndpointInput)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct EndpointInputSchema {
    /// Target URL (`http://` or `https://`).
    #[serde(default)]
    url: Option<String>,
    /// Free text; `null` clears it.
    #[serde(default)]
    description: Option<String>,
    /// Type patterns (every type when absent).
    #[serde(default)]
    event_types: Option<Vec<String>>,
    /// Project scope; `null` clears it.
    #[serde(default)]
    project_id: Option<String>,
    /// Tenant scope; `null` clears it.
    #[serde(default)]
    tenant_id: Option<String>,
    /// Extra headers.
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// Requests per second; `null` clears it.
    #[serde(default)]
    rate_limit: Option<u32>,
    /// Strict ordering.
    #[serde(default)]
    ordered: Option<bool>,
    /// Disabled.
    #[serde(default)]
    disabled: Option<bool>,
    /// Signing secret (create only; generated when absent).
    #[serde(default)]
    secret: Option<String>,
}

/// The endpoints.
#[derive(Deserialize, ToSchema)]
#[schema(as = EndpointList)]
#[allow(dead_code)]
pub(super) struct EndpointListSchema {
    /// Every endpoint.
    webhooks: Vec<EndpointSchema>,
}

/// `POST /v1/webhooks/{id}/rotate-secret` body (optional).
#[derive(Deserialize, ToSchema)]
#[schema(as = RotateSecretInput)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateSecretInputSchema {
    /// The new secret; generated when absent.
    #[serde(default)]
    secret: Option<String>,
}

/// What a test send produced.
#[derive(Deserialize, ToSchema)]
#[schema(as = TestResult)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct TestResultSchema {
    /// Whether the endpoint answered 2xx.
    success: bool,
    /// The status code.
    status_code: Option<u16>,
    /// Duration in milliseconds.
    duration_ms: u64,
    /// The answer, truncated.
    response_body: Option<String>,
    /// The error.
    error: Option<String>,
    /// The test event sent.
    event: EventSchema,
}

/// `POST /v1/webhooks/{id}/replay` answer.
#[derive(Deserialize, ToSchema)]
#[schema(as = Replay)]
#[allow(dead_code)]
pub(super) struct ReplaySchema {
    /// How many deliveries were queued.
    queued: u64,
}

/// Where a delivery stands.
#[derive(Deserialize, ToSchema)]
#[schema(as = DeliveryStatus)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub(super) enum DeliveryStatusSchema {
    /// Waiting for an attempt.
    Pending,
    /// Delivered.
    Succeeded,
    /// Dead-lettered.
    Failed,
}

/// The outcome of an attempt, as a filter.
#[derive(Deserialize, ToSchema)]
#[schema(as = AttemptStatus)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub(super) enum AttemptStatusSchema {
    /// The endpoint answered 2xx.
    Succeeded,
    /// Anything else.
    Failed,
}

/// One event to one endpoint.
#[derive(Deserialize, ToSchema)]
#[schema(as = Delivery)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeliverySchema {
    /// Delivery id.
    id: u64,
    /// The endpoint.
    endpoint_id: String,
    /// The event's `seq`.
    event_seq: u64,
    /// The event's id.
    event_id: String,
    /// The event's type.
    event_type: String,
    /// Where it stands.
    status: DeliveryStatusSchema,
    /// Attempts so far.
    attempts: u32,
    /// When the next attempt is due.
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    /// Creation time.
    #[schema(format = DateTime)]
    created_at: String,
    /// Last change.
    #[schema(format = DateTime)]
    updated_at: String,
    /// Status of the last answer.
    last_status_code: Option<u16>,
    /// Error of the last attempt.
    last_error: Option<String>,
}

/// One HTTP attempt of a delivery.
#[derive(Deserialize, ToSchema)]
#[schema(as = Attempt)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct AttemptSchema {
    /// Attempt id.
    id: u64,
    /// The delivery.
    delivery_id: u64,
    /// The endpoint.
    endpoint_id: String,
    /// The event's id.
    event_id: String,
    /// Its number within the delivery, from 1.
    attempt: u32,
    /// When it started.
    #[schema(format = DateTime)]
    started_at: String,
    /// How long it took.
    duration_ms: u64,
    /// The answer's status.
    status_code: Option<u16>,
    /// The answer, truncated.
    response_body: Option<String>,
    /// The error.
    error: Option<String>,
    /// Whether the endpoint answered 2xx.
    success: bool,
}

/// One page of deliveries.
#[derive(Deserialize, ToSchema)]
#[schema(as = DeliveryPage)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeliveryPageSchema {
    /// The deliveries.
    deliveries: Vec<DeliverySchema>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// One page of attempts.
#[derive(Deserialize, ToSchema)]
#[schema(as = AttemptPage)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct AttemptPageSchema {
    /// The attempts.
    attempts: Vec<AttemptSchema>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// Health in the NestJS Terminus shape; liveness answers `status` only.
#[derive(Deserialize, ToSchema)]
#[schema(as = Health)]
#[allow(dead_code)]
pub(super) struct HealthSchema {
    /// `ok` or `error`.
    status: String,
    /// The dependencies that are up.
    #[serde(default)]
    info: Option<BTreeMap<String, Value>>,
    /// The dependencies that are down.
    #[serde(default)]
    error: Option<BTreeMap<String, Value>>,
    /// Every dependency.
    #[serde(default)]
    details: Option<BTreeMap<String, Value>>,
}

/// The body of `POST /v1/keys`.
#[derive(Deserialize, ToSchema)]
#[schema(as = ApiKeyInput)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ApiKeyInputSchema {
    /// A name for people (1 to 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Bind the key to a tenant (a tenant-bound caller's tenant by default).
    #[serde(default)]
    tenant_id: Option<String>,
    /// Limit the key to these projects (non-empty; every project when absent).
    #[serde(default)]
    #[schema(min_items = 1)]
    project_ids: Option<Vec<String>>,
    /// What the key may do.
    #[schema(min_items = 1)]
    permissions: Vec<PermissionSchema>,
    /// Type patterns for every permission (default `[">"]`: every type).
    #[serde(default)]
    #[schema(min_items = 1)]
    types: Option<Vec<String>>,
    /// Type patterns of single permissions, overriding `types` for them.
    #[serde(default)]
    types_by_permission: Option<BTreeMap<String, Vec<String>>>,
    /// Publish requests per second (the server's `KEY_RATE_LIMIT` when absent).
    #[serde(default)]
    rate_limit: Option<u32>,
    /// Open streams at once (the server's `KEY_MAX_CONNECTIONS` when absent).
    #[serde(default)]
    max_connections: Option<u32>,
    /// When the key stops working (RFC 3339, in the future).
    #[serde(default)]
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// A permission.
#[derive(Deserialize, ToSchema)]
#[schema(as = Permission)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub(super) enum PermissionSchema {
    /// `POST /v1/events`.
    Publish,
    /// `GET /v1/stream`, `POST /v1/tokens`.
    Subscribe,
    /// Queries, the catalogue, webhook logs.
    Read,
    /// Keys, webhook endpoints, event types.
    Admin,
}

/// An API key (never its secret).
#[derive(Deserialize, ToSchema)]
#[schema(as = ApiKey)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiKeySchema {
    /// The key's id (the part after `ebk_` of its key string).
    id: String,
    /// Its name.
    name: String,
    /// Its tenant, if bound.
    tenant_id: Option<String>,
    /// Its projects, if limited.
    project_ids: Option<Vec<String>>,
    /// Its permissions.
    permissions: Vec<PermissionSchema>,
    /// The type patterns of each permission.
    types_by_permission: BTreeMap<String, Vec<String>>,
    /// Publish requests per second.
    rate_limit: Option<u32>,
    /// Open streams at once.
    max_connections: Option<u32>,
    /// When it was made.
    #[schema(format = DateTime)]
    created_at: String,
    /// The id of the key that made it (`admin`: the bootstrap key).
    created_by: String,
    /// When it stops working.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// When it was revoked.
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
}

/// A new API key with its key string, shown only once.
#[derive(Deserialize, ToSchema)]
#[schema(as = ApiKeyCreated)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiKeyCreatedSchema {
    #[serde(flatten)]
    key_fields: ApiKeySchema,
    /// The key string to send as `Authorization: Bearer <key>`; not retrievable later.
    key: String,
}

/// `GET /v1/keys` answer.
#[derive(Deserialize, ToSchema)]
#[schema(as = ApiKeyList)]
#[allow(dead_code)]
pub(super) struct ApiKeyListSchema {
    /// Newest first.
    keys: Vec<ApiKeySchema>,
}

/// The body of `POST /v1/tokens` (every field optional).
#[derive(Deserialize, ToSchema)]
#[schema(as = TokenInput)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TokenInputSchema {
    /// Projects (within the key's; the key's own when absent).
    #[serde(default)]
    #[schema(min_items = 1)]
    project_ids: Option<Vec<String>>,
    /// Type patterns (within the key's subscribe patterns; those when absent).
    #[serde(default)]
    #[schema(min_items = 1)]
    types: Option<Vec<String>>,
    /// Lifetime in seconds (default 300, at most `TOKEN_MAX_TTL`).
    #[serde(default)]
    #[schema(minimum = 1)]
    ttl_seconds: Option<u64>,
}

/// A browser token.
#[derive(Deserialize, ToSchema)]
#[schema(as = Token)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenSchema {
    /// Pass it as `GET /v1/stream?token=`.
    token: String,
    /// When it expires.
    #[schema(format = DateTime)]
    expires_at: String,
}

/// An RFC 9457 problem.
#[derive(Deserialize, ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub(super) struct ProblemSchema {
    /// Stable problem type, e.g. `/problems/invalid-field`.
    #[serde(rename = "type")]
    problem_type: String,
    /// Short summary of the problem type.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What went wrong in this case.
    detail: String,
    /// The fields or parameters at fault.
    #[serde(default)]
    errors: Option<Vec<ProblemFieldSchema>>,
}

/// One field or parameter at fault.
#[derive(Deserialize, ToSchema)]
#[schema(as = ProblemField)]
#[allow(dead_code)]
pub(super) struct ProblemFieldSchema {
    /// Its path, e.g. `3/projectId`.
    field: String,
    /// What is wrong with it.
    message: String,
}

#[cfg(test)]
mod tests {
    //! The schemas above are written by hand for the library's types; these tests serialise the
    //! real types and check the answers against the generated document, so a field added,
    //! renamed or retyped in the library fails here.

    use std::collections::BTreeMap;

    use axum::response::IntoResponse;
    use eventbus::core::catalogue::EventTypeDef;
    use eventbus::core::event::FieldError;
    use eventbus::core::time::Timestamp;
    use eventbus::store::webhook::{Attempt, Delivery, DeliveryStatus, Endpoint};
    use eventbus::transport::webhook::TestResult;
    use eventbus::{NewEvent, Pattern};
    use serde_json::{Value, json};
    use utoipa::OpenApi;

    use super::ApiDoc;
    use crate::http::problem::ApiError;
    use crate::http::webhooks::endpoint_body;

    /// Checks `value` against the document's schema `name`: valid, and no property the schema
    /// does not name.
    fn conforms(name: &str, value: &Value) {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schema = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": doc["components"].clone(),
        });
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?} in {value}");
        if let (Some(properties), Some(object)) = (
            doc["components"]["schemas"][name]["properties"].as_object(),
            value.as_object(),
        ) {
            for key in object.keys() {
                assert!(
                    properties.contains_key(key),
                    "{name} does not describe `{key}` of {value}"
                );
            }
        }
    }

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-27T05:00:00.123Z").unwrap()
    }

    fn event() -> eventbus::Event {
        let mut event = NewEvent::new("project.created", json!({"name": "x"}))
            .project("p1")
            .tenant("t1")
            .into_event(now())
            .unwrap();
        event.user_id = Some("u1".into());
        event.metadata.insert("source".into(), "test".into());
        event.seq = 7;
        event
    }

    #[test]
    fn events_and_pages_match_their_schemas() {
        let full = serde_json::to_value(event()).unwrap();
        conforms("Event", &full);
        let bare =
            serde_json::to_value(NewEvent::new("a.b", Value::Null).into_event(now()).unwrap())
                .unwrap();
        conforms("Event", &bare);
        conforms(
            "EventPage",
            &json!({"events": [full.clone()], "nextAfter": 7}),
        );
        conforms("EventPage", &json!({"events": [], "nextAfter": null}));
        conforms("Published", &full);
        conforms("Published", &json!([full, bare]));
    }

    #[test]
    fn a_stored_event_is_a_valid_new_event() {
        // A stored event may be sent back as is (DESIGN.md §2).
        conforms("NewEvent", &serde_json::to_value(event()).unwrap());
        conforms("PublishBody", &json!({"type": "a.b"}));
        conforms("PublishBody", &json!([{"type": "a.b", "payload": [1, 2]}]));
    }

    #[test]
    fn the_check_sees_a_bad_timestamp() {
        let mut bad = serde_json::to_value(event()).unwrap();
        bad["timestamp"] = json!("253402387139000000us");
        let caught = std::panic::catch_unwind(|| conforms("Event", &bad));
        assert!(caught.is_err(), "a timestamp that is not RFC 3339 passed");
    }

    #[test]
    fn catalogue_entries_match_their_schema() {
        let def = EventTypeDef {
            name: "project.created".into(),
            description: Some("A project was created".into()),
            schema: Some(json!({"type": "object"})),
            builtin: true,
            updated_at: now(),
        };
        conforms("EventType", &serde_json::to_value(&def).unwrap());
        let bare = EventTypeDef {
            description: None,
            schema: None,
            builtin: false,
            ..def
        };
        conforms("EventType", &serde_json::to_value(&bare).unwrap());
        conforms(
            "EventTypeList",
            &json!({"eventTypes": [serde_json::to_value(&bare).unwrap()]}),
        );
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            id: "01a21c42-fcba-741d-8f9a-a8dd333298fd".into(),
            url: "https://example.com/hook".into(),
            description: Some("d".into()),
            event_types: vec![Pattern::parse("project.*").unwrap()],
            project_id: Some("p1".into()),
            tenant_id: None,
            headers: BTreeMap::from([("x-a".into(), "b".into())]),
            rate_limit: Some(5),
            ordered: true,
            disabled: true,
            disabled_reason: Some("manual".into()),
            secret: "whsec_x".into(),
            previous_secret: Some("whsec_y".into()),
            previous_secret_expires_at: Some(now()),
            since_seq: 3,
            created_at: now(),
            updated_at: now(),
            failing_since: Some(now()),
            failure_count: 2,
        }
    }

    #[test]
    fn webhook_bodies_match_their_schemas() {
        let ep = endpoint();
        conforms("Endpoint", &endpoint_body(&ep, true));
        conforms("Endpoint", &endpoint_body(&ep, false));
        conforms(
            "EndpointList",
            &json!({"webhooks": [endpoint_body(&ep, false)]}),
        );
        let delivery = Delivery {
            id: 1,
            endpoint_id: ep.id.clone(),
            event_seq: 7,
            event_id: "e1".into(),
            event_type: "project.created".into(),
            status: DeliveryStatus::Pending,
            attempts: 1,
            cycle_attempts: 1,
            next_attempt_at: Some(now()),
            created_at: now(),
            updated_at: now(),
            last_status_code: Some(500),
            last_error: Some("boom".into()),
        };
        let delivery = serde_json::to_value(&delivery).unwrap();
        conforms("Delivery", &delivery);
        conforms(
            "DeliveryPage",
            &json!({"deliveries": [delivery], "nextAfter": null}),
        );
        let attempt = Attempt {
            id: 1,
            delivery_id: 1,
            endpoint_id: ep.id.clone(),
            event_id: "e1".into(),
            attempt: 1,
            started_at: now(),
            duration_ms: 12,
            status_code: None,
            response_body: None,
            error: Some("connection refused".into()),
            success: false,
        };
        let attempt = serde_json::to_value(&attempt).unwrap();
        conforms("Attempt", &attempt);
        conforms(
            "AttemptPage",
            &json!({"attempts": [attempt], "nextAfter": 1}),
        );
        let result = TestResult {
            success: true,
            status_code: Some(200),
            duration_ms: 3,
            response_body: Some("ok".into()),
            error: None,
            event: event(),
        };
        conforms("TestResult", &serde_json::to_value(&result).unwrap());
    }

    #[tokio::test]
    async fn problems_match_their_schema() {
        for error in [
            ApiError::parameter("limit", "out of range"),
            ApiError::NotFound("no route for /x".into()),
            ApiError::Internal("secret detail".into()),
            ApiError::InvalidField(FieldError::new("0/type", "bad")),
        ] {
            let body = axum::body::to_bytes(error.into_response().into_body(), usize::MAX)
                .await
                .unwrap();
            conforms("Problem", &serde_json::from_slice(&body).unwrap());
        }
    }
}

/// A plugin as `GET /v1/plugins` shows it (see docs/plugins.md).
#[derive(Deserialize, ToSchema)]
#[schema(as = Plugin)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct PluginSchema {
    /// Its name.
    name: String,
    /// Its version; `null` when its manifest could not be read.
    version: Option<String>,
    /// `js` or `rust`.
    kind: String,
    /// `running`, `suspended` or `failed` (did not load).
    status: String,
    /// Patterns it receives.
    subscribe: Vec<String>,
    /// Patterns `ctx.publish` may emit.
    publish: Vec<String>,
    /// Whether it runs in the publish chain.
    middleware: bool,
    /// `reject` or `pass` (middleware only).
    #[serde(default)]
    failure_policy: Option<String>,
    /// `{"memoryMb", "timeoutMs"}` (JavaScript plugins).
    #[serde(default)]
    limits: Option<Value>,
    /// The functions `index.js` exports.
    exports: Vec<String>,
    /// The last `seq` its handler finished.
    cursor: u64,
    /// Whether this process runs its event handler: with several processes on one database,
    /// one at a time does and the others stand by. `null` without a handler.
    runs_handler: Option<bool>,
    /// Counters since it was (re)loaded: `calls`, `handled`, `errors`, `timeouts`,
    /// `memoryErrors`, `retries`, `deadLetters`, `refusedPublishes`, `published`,
    /// `transformed`, `rejected`.
    counters: BTreeMap<String, u64>,
    /// `{"message", "at"}` of its last error.
    last_error: Option<Value>,
}

/// `GET /v1/plugins` answer.
#[derive(Deserialize, ToSchema)]
#[schema(as = PluginList)]
#[allow(dead_code)]
pub(super) struct PluginListSchema {
    /// Every plugin, by name.
    plugins: Vec<PluginSchema>,
}

/// What a reload changed.
#[derive(Deserialize, ToSchema)]
#[schema(as = ReloadReport)]
#[allow(dead_code)]
pub(super) struct ReloadReportSchema {
    /// Plugins installed.
    installed: Vec<String>,
    /// Plugins whose code changed.
    updated: Vec<String>,
    /// Plugins removed.
    uninstalled: Vec<String>,
    /// Suspended plugins started again.
    resumed: Vec<String>,
    /// Plugins that did not load, with why.
    failed: BTreeMap<String, String>,
}

/// `POST /v1/plugins` body: a plugin bundle.
#[derive(Deserialize, ToSchema)]
#[schema(as = InstallBundle)]
#[allow(dead_code)]
pub(super) struct InstallBundleSchema {
    /// The `plugin.json` object.
    manifest: Value,
    /// The `index.js` ES module.
    source: String,
}

/// `POST /v1/plugins` answer.
#[derive(Deserialize, ToSchema)]
#[schema(as = Installed)]
#[allow(dead_code)]
pub(super) struct InstalledSchema {
    /// The plugin as installed.
    plugin: PluginSchema,
    /// What the reload changed.
    reload: ReloadReportSchema,
}

/// An event a plugin failed on after its retries.
#[derive(Deserialize, ToSchema)]
#[schema(as = DeadLetter)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeadLetterSchema {
    /// Unique id.
    id: u64,
    /// The plugin.
    plugin: String,
    /// The event's id.
    event_id: String,
    /// The event's `seq`.
    event_seq: u64,
    /// The event's type.
    event_type: String,
    /// The last error.
    error: String,
    /// Calls made.
    attempts: u32,
    /// When it was dead-lettered.
    #[schema(format = DateTime)]
    created_at: String,
}

/// One page of dead letters.
#[derive(Deserialize, ToSchema)]
#[schema(as = DeadLetterPage)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeadLetterPageSchema {
    /// The dead letters, oldest first.
    dead_letters: Vec<DeadLetterSchema>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<u64>,
}

/// The outcome of retrying a dead letter.
#[derive(Deserialize, ToSchema)]
#[schema(as = RetryOutcome)]
#[allow(dead_code)]
pub(super) struct RetryOutcomeSchema {
    /// Whether the plugin handled the event (the dead letter is removed).
    succeeded: bool,
    /// The plugin's error otherwise.
    error: Option<String>,
}
