//! Errors as RFC 9457 `application/problem+json`.
//!
//! [`ApiError`] is the one error type of the HTTP layer; [`ApiError::kind`] maps each variant
//! to its status, stable problem `type` and title in one table. 5xx bodies never carry internal
//! details; every error is logged once, here, when it becomes a response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eventbus::core::event::FieldError;
use eventbus::core::middleware::{RejectKind, Rejection};
use eventbus::{PublishError, RegisterError, StoreError};
use serde::Serialize;

/// Media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not of the expected shape at a known place.
    #[error("{0}")]
    MalformedJson(String),
    /// A field of the body is invalid.
    #[error(transparent)]
    InvalidField(FieldError),
    /// A query or path parameter is invalid.
    #[error("{0}")]
    InvalidParameter(FieldError),
    /// The body is not `application/json`.
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// The body did not arrive within the read timeout (milliseconds).
    #[error("the request body did not arrive within {0} ms; send it at once")]
    RequestTimeout(u64),
    /// The body is over the limit.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A batch is empty or too large.
    #[error("{0}")]
    BatchSize(String),
    /// A middleware refused the event.
    #[error(transparent)]
    Rejected(Rejection),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The id is taken by an event with other content.
    #[error(transparent)]
    Conflict(StoreError),
    /// `Expected-Last-Seq` does not hold: the project's last stored event has another seq.
    #[error(
        "the last stored event of project `{project_id}` has seq {actual}, not {expected} as \
         Expected-Last-Seq says; nothing was stored. Read the project's events after seq \
         {expected}, then publish again with Expected-Last-Seq: {actual}"
    )]
    WrongExpectedSeq {
        /// The project.
        project_id: String,
        /// What the request expected.
        expected: u64,
        /// The seq of the project's last stored event (`0`: none).
        actual: u64,
    },
    /// The store cannot be reached; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The store has no space left; nothing was stored.
    #[error("{0}")]
    StoreFull(String),
    /// Too much is queued; retry shortly.
    #[error("the server is overloaded; retry shortly")]
    Overloaded,
    /// A webhook URL is malformed or points where webhooks may not go.
    #[error(transparent)]
    InvalidWebhookUrl(FieldError),
    /// This store backend does not serve webhooks.
    #[error("{0}")]
    WebhooksUnavailable(String),
    /// No key or token, or one that is unknown, wrong, revoked or expired (one answer for all).
    #[error("{0}")]
    Unauthorized(String),
    /// The key does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The key is over its publish rate; retry after the given seconds.
    #[error("{detail}")]
    RateLimited {
        /// What limit was hit.
        detail: String,
        /// Seconds until a retry can pass.
        retry_after: u32,
    },
    /// The key or tenant has as many streams open as it may.
    #[error("{0}")]
    TooManyStreams(String),
    /// A middleware (a plugin) failed; the event was not stored; retry later.
    #[error("{0}")]
    MiddlewareFailed(String),
    /// A plugin bundle does not load.
    #[error("{0}")]
    InvalidPlugin(String),
    /// The plugin cannot be changed (a Rust plugin).
    #[error("{0}")]
    PluginConflict(String),
    /// A retried outbox dead letter's id is in the outbox already.
    #[error("{0}")]
    OutboxRowQueued(String),
    /// Plugins are not enabled, or have no folder.
    #[error("{0}")]
    PluginsUnavailable(String),
    /// The request target has a character HTTP requires percent-encoded.
    #[error("{0}")]
    InvalidRequestTarget(String),
    /// The request line or a header cannot be parsed.
    #[error("{0}")]
    MalformedRequest(String),
    /// The request head is larger than `MAX_HEADER_BYTES`.
    #[error(
        "the request head (request line and headers) is larger than MAX_HEADER_BYTES allows; send fewer or shorter headers"
    )]
    HeadTooLarge,
    /// The request target is too long.
    #[error("the request target is too long; send long filters in fewer or shorter parameters")]
    UriTooLong,
    /// Ack ids that name no message of the consumer (each in `errors`).
    #[error("{detail}")]
    UnknownAckIds {
        /// What to do.
        detail: String,
        /// One entry per ack id at fault (`ackIds/<index>`).
        errors: Vec<FieldError>,
    },
    /// Ack ids whose delivery is over: lease ran out, redelivered, acked already (each in
    /// `errors`).
    #[error("{detail}")]
    ExpiredAckIds {
        /// What to do.
        detail: String,
        /// One entry per ack id at fault (`ackIds/<index>`).
        errors: Vec<FieldError>,
    },
    /// A consumer of that name exists and belongs to a scope the key cannot reach.
    #[error("{0}")]
    ConsumerNameTaken(String),
    /// This server runs without consumer groups.
    #[error("{0}")]
    ConsumersUnavailable(String),
    /// Anything else; details are logged, not shown.
    #[error("{0}")]
    Internal(String),
}

/// Status, problem type and title of one kind of error.
struct Kind {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
}

const fn kind(status: StatusCode, slug: &'static str, title: &'static str) -> Kind {
    Kind {
        status,
        slug,
        title,
    }
}

impl ApiError {
    /// The table: every error's status, stable problem type and title.
    fn kind(&self) -> Kind {
        use StatusCode as S;
        match self {
            ApiError::MalformedJson(_) => kind(
                S::BAD_REQUEST,
                "malformed-json",
                "The body is not valid JSON of the expected shape",
            ),
            ApiError::InvalidField(_) => {
                kind(S::BAD_REQUEST, "invalid-field", "A field is invalid")
            }
            ApiError::InvalidParameter(_) => kind(
                S::BAD_REQUEST,
                "invalid-parameter",
                "A parameter is invalid",
            ),
            ApiError::UnsupportedMediaType => kind(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The body must be JSON",
            ),
            ApiError::RequestTimeout(_) => kind(
                S::REQUEST_TIMEOUT,
                "request-timeout",
                "The request was not received in time",
            ),
            ApiError::BodyTooLarge(_) => kind(
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "The request body is too large",
            ),
            ApiError::BatchSize(_) => kind(
                S::PAYLOAD_TOO_LARGE,
                "batch-size",
                "The batch size is out of range",
            ),
            ApiError::Rejected(r) => match r.kind {
                RejectKind::TooLarge => kind(
                    S::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "The payload is too large",
                ),
                RejectKind::UnknownType => kind(
                    S::UNPROCESSABLE_ENTITY,
                    "unknown-event-type",
                    "The event type is not registered",
                ),
                RejectKind::SchemaViolation => kind(
                    S::UNPROCESSABLE_ENTITY,
                    "schema-violation",
                    "The payload does not match the event type's schema",
                ),
                RejectKind::Forbidden => kind(S::FORBIDDEN, "forbidden", "Not allowed"),
                RejectKind::Plugin => kind(
                    S::UNPROCESSABLE_ENTITY,
                    "rejected-by-plugin",
                    "A middleware plugin rejected the event",
                ),
                // A field of the event breaks a rule of the bus (`errors[].field` names it).
                _ => kind(S::BAD_REQUEST, "invalid-field", "A field is invalid"),
            },
            ApiError::NotFound(_) => kind(S::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => kind(
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Conflict(_) => kind(
                S::CONFLICT,
                "id-conflict",
                "The id is already used by another event",
            ),
            ApiError::WrongExpectedSeq { .. } => kind(
                S::CONFLICT,
                "wrong-expected-seq",
                "The project's last event is not the expected one",
            ),
            ApiError::Unavailable(_) => kind(
                S::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The event store is unavailable",
            ),
            ApiError::StoreFull(_) => kind(
                S::INSUFFICIENT_STORAGE,
                "store-full",
                "The event store has no space left",
            ),
            ApiError::Overloaded => kind(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "The server is overloaded",
            ),
            ApiError::InvalidWebhookUrl(_) => kind(
                S::BAD_REQUEST,
                "invalid-webhook-url",
                "The webhook URL is not allowed",
            ),
            ApiError::WebhooksUnavailable(_) => kind(
                S::NOT_IMPLEMENTED,
                "webhooks-unavailable",
                "Webhooks are not available on this store",
            ),
            ApiError::Unauthorized(_) => kind(
                S::UNAUTHORIZED,
                "unauthorized",
                "A valid API key or token is required",
            ),
            ApiError::Forbidden(_) => kind(S::FORBIDDEN, "forbidden", "Not allowed"),
            ApiError::RateLimited { .. } => kind(
                S::TOO_MANY_REQUESTS,
                "rate-limited",
                "The key is over its publish rate",
            ),
            ApiError::TooManyStreams(_) => kind(
                S::TOO_MANY_REQUESTS,
                "too-many-streams",
                "Too many open streams",
            ),
            ApiError::MiddlewareFailed(_) => kind(
                S::SERVICE_UNAVAILABLE,
                "middleware-failed",
                "A middleware failed; the event was not stored",
            ),
            ApiError::InvalidPlugin(_) => kind(
                S::UNPROCESSABLE_ENTITY,
                "invalid-plugin",
                "The plugin does not load",
            ),
            ApiError::PluginConflict(_) => kind(
                S::CONFLICT,
                "plugin-conflict",
                "The plugin cannot be changed",
            ),
            ApiError::OutboxRowQueued(_) => kind(
                S::CONFLICT,
                "outbox-row-queued",
                "The outbox already holds a row with this event id",
            ),
            ApiError::PluginsUnavailable(_) => kind(
                S::NOT_IMPLEMENTED,
                "plugins-unavailable",
                "Plugins are not available",
            ),
            ApiError::InvalidRequestTarget(_) => kind(
                S::BAD_REQUEST,
                "invalid-request-target",
                "The request target has a character that must be percent-encoded",
            ),
            ApiError::MalformedRequest(_) => kind(
                S::BAD_REQUEST,
                "malformed-request",
                "The request is not valid HTTP/1.1",
            ),
            ApiError::HeadTooLarge => kind(
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "The request head is too large",
            ),
            ApiError::UriTooLong => kind(
                S::URI_TOO_LONG,
                "uri-too-long",
                "The request target is too long",
            ),
            ApiError::UnknownAckIds { .. } => kind(
                S::NOT_FOUND,
                "unknown-ack-id",
                "An ack id names no message of this consumer",
            ),
            ApiError::ExpiredAckIds { .. } => kind(
                S::CONFLICT,
                "expired-ack-id",
                "The delivery an ack id names is over",
            ),
            ApiError::ConsumerNameTaken(_) => kind(
                S::CONFLICT,
                "consumer-name-taken",
                "The consumer name is taken",
            ),
            ApiError::ConsumersUnavailable(_) => kind(
                S::NOT_IMPLEMENTED,
                "consumers-unavailable",
                "Consumer groups are not available",
            ),
            ApiError::Internal(_) => kind(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    /// Seconds after which a retry makes sense, for 429s and 503s.
    fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            ApiError::Unavailable(_) | ApiError::Overloaded | ApiError::MiddlewareFailed(_) => {
                Some(1)
            }
            ApiError::TooManyStreams(_) => Some(5),
            ApiError::StoreFull(_) => Some(30),
            _ => None,
        }
    }

    fn fields(&self) -> Vec<FieldError> {
        match self {
            ApiError::InvalidField(f)
            | ApiError::InvalidParameter(f)
            | ApiError::InvalidWebhookUrl(f) => vec![f.clone()],
            ApiError::Rejected(r) => r.errors.clone(),
            ApiError::UnknownAckIds { errors, .. } | ApiError::ExpiredAckIds { errors, .. } => {
                errors.clone()
            }
            ApiError::Conflict(StoreError::Conflict { index, .. }) => {
                vec![FieldError::new(
                    format!("{index}/id"),
                    "already stored with different content",
                )]
            }
            _ => Vec::new(),
        }
    }

    /// A parameter error.
    pub fn parameter(name: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter(FieldError::new(name, message))
    }
}

/// An RFC 9457 problem.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
struct Body<'a> {
    /// Stable problem type, e.g. `/problems/invalid-field`.
    #[serde(rename = "type")]
    problem_type: String,
    /// Short summary of the problem type.
    title: &'a str,
    /// The HTTP status.
    status: u16,
    /// What went wrong in this case.
    detail: String,
    /// The fields or parameters at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<FieldError2>>)]
    errors: Vec<FieldError2>,
    /// `/problems/wrong-expected-seq` only: the seq of the project's last stored event (`0`:
    /// none), to read from and publish again with.
    #[serde(rename = "lastSeq", skip_serializing_if = "Option::is_none")]
    last_seq: Option<u64>,
}

/// One field or parameter at fault.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ProblemField)]
struct FieldError2 {
    /// Its path, e.g. `3/projectId`.
    field: String,
    /// What is wrong with it.
    message: String,
}

/// The body of every error answer in the API description: an `application/problem+json`
/// [`Problem`](Body). The document's assembly gives it to each 4xx and 5xx answer that names no
/// body of its own, so routes list their problems by status and description only.
pub(super) fn problem_content() -> (&'static str, utoipa::openapi::content::Content) {
    use utoipa::ToSchema;
    (
        PROBLEM_JSON,
        utoipa::openapi::content::ContentBuilder::new()
            .schema(Some(utoipa::openapi::Ref::from_schema_name(Body::name())))
            .build(),
    )
}

/// The problem schemas, for the document's components.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(Body, FieldError2)))]
pub(super) struct ProblemApi;

/// The answer of any route that reaches the store when the store fails or is overloaded (each
/// an `application/problem+json` body, see [`problem_content`]).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "described in the API document, never built")]
pub(super) enum StoreProblems {
    /// Store unavailable or overloaded
    #[response(status = 503)]
    Unavailable,
}

/// What a client is told when the store fails; the cause is logged with the request.
const UNAVAILABLE_DETAIL: &str = "The event store did not complete the operation (it could not be \
     reached or did not answer in time); the cause has been logged. Retry shortly: publishing \
     again with the same event ids is safe.";

/// The detail of `507 store-full`.
const STORE_FULL_DETAIL: &str = "The event store has no space left on its disk, so nothing was \
     stored; the server keeps running and serves what is stored. Retry once an operator has \
     freed space: publishing again with the same event ids is safe.";

impl ApiError {
    /// The status and the problem+json body of this error (logged here, once).
    pub(crate) fn to_problem(&self) -> (StatusCode, Vec<u8>) {
        let kind = self.kind();
        let detail = if kind.status.is_server_error() {
            tracing::error!(error = %self, status = kind.status.as_u16(), "request failed");
            match self {
                ApiError::Internal(_) => {
                    "An internal error occurred; it has been logged.".to_owned()
                }
                // The driver's text names hosts, tables and settings: it goes to the log only.
                ApiError::Unavailable(_) => UNAVAILABLE_DETAIL.to_owned(),
                ApiError::StoreFull(_) => STORE_FULL_DETAIL.to_owned(),
                other => other.to_string(),
            }
        } else {
            tracing::debug!(error = %self, status = kind.status.as_u16(), "request refused");
            self.to_string()
        };
        let body = Body {
            problem_type: format!("/problems/{}", kind.slug),
            title: kind.title,
            status: kind.status.as_u16(),
            detail,
            errors: self
                .fields()
                .into_iter()
                .map(|f| FieldError2 {
                    field: f.field,
                    message: f.message,
                })
                .collect(),
            last_seq: match self {
                ApiError::WrongExpectedSeq { actual, .. } => Some(*actual),
                _ => None,
            },
        };
        (kind.status, serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.to_problem();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ApiError::Unauthorized(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"eventbus\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            e @ StoreError::Conflict { .. } => ApiError::Conflict(e),
            StoreError::WrongExpectedSeq {
                project_id,
                expected,
                actual,
            } => ApiError::WrongExpectedSeq {
                project_id,
                expected,
                actual,
            },
            StoreError::Overloaded => ApiError::Overloaded,
            e @ (StoreError::Unavailable(_) | StoreError::Closed) => {
                ApiError::Unavailable(e.to_string())
            }
            e @ StoreError::Full(_) => ApiError::StoreFull(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Invalid(f) => ApiError::InvalidField(f),
            PublishError::Rejected(r) => ApiError::Rejected(r),
            e @ PublishError::BatchSize { .. } => ApiError::BatchSize(e.to_string()),
            PublishError::Store(s) => s.into(),
            PublishError::MiddlewareFailed {
                middleware,
                message,
            } => {
                tracing::warn!(%middleware, %message, "a middleware failed; the publish is refused");
                ApiError::MiddlewareFailed(format!(
                    "the middleware `{middleware}` failed; the event was not stored"
                ))
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Definition(d) => ApiError::InvalidField(FieldError::new(
                match d {
                    eventbus::core::catalogue::DefinitionError::InvalidName(_) => "type",
                    _ => "schema",
                },
                d.to_string(),
            )),
            RegisterError::Store(s) => s.into(),
            e => ApiError::Internal(e.to_string()),
        }
    }
}
