//! The publish middleware chain (DESIGN.md §1, step 1).
//!
//! Order: validation → security → enrichment → logging → custom and plugin middleware. Each
//! middleware sees the complete [`Event`] (id and timestamp are filled when it is decoded) and
//! may change it, reject it with a reason the publisher can act on (→ 4xx), or fail (→ 5xx).
//! The first middleware that does not pass stops the chain; nothing is stored.

use std::sync::Arc;

use async_trait::async_trait;

use super::catalogue::TypeRegistry;
use super::event::{Event, FieldError};
use super::payload;
use super::principal::Principal;

/// What a publish carries besides the event: who publishes, and the request's trace context.
#[derive(Debug, Clone, Default)]
pub struct PublishContext {
    /// The authenticated caller; `None` for trusted in-process publishers.
    pub principal: Option<Arc<Principal>>,
    /// W3C `traceparent` of the request, copied into events that carry none.
    pub traceparent: Option<String>,
}

/// Why a middleware refused an event; maps to a 4xx.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectKind {
    /// A field is invalid (400).
    Invalid,
    /// The payload is over the size limit (413).
    TooLarge,
    /// The type is not registered and the bus is strict (422).
    UnknownType,
    /// The payload does not match the type's JSON Schema (422).
    SchemaViolation,
    /// The caller may not publish this event (403).
    Forbidden,
    /// A middleware plugin's `transform` refused the event (422).
    Plugin,
}

/// A refusal: the kind, the message, and the fields at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// The kind of refusal.
    pub kind: RejectKind,
    /// What is wrong, for the publisher.
    pub message: String,
    /// The offending fields, if known.
    pub errors: Vec<FieldError>,
}

impl Rejection {
    /// A refusal about one field.
    pub fn field(kind: RejectKind, error: FieldError) -> Self {
        Rejection {
            kind,
            message: error.to_string(),
            errors: vec![error],
        }
    }
}

/// What a middleware returns when it does not pass the event.
#[derive(Debug, thiserror::Error)]
pub enum MiddlewareError {
    /// The event is refused (4xx).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The middleware itself failed (5xx).
    #[error("middleware `{middleware}` failed: {message}")]
    Failed {
        /// The middleware's name.
        middleware: String,
        /// What happened (logged; not shown to publishers).
        message: String,
    },
}

/// One step of the publish chain.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// A short, stable name for logs and metrics.
    fn name(&self) -> &str;

    /// Checks or changes `event`; an error stops the publish.
    async fn handle(&self, event: &mut Event, ctx: &PublishContext) -> Result<(), MiddlewareError>;
}

/// The ordered chain.
#[derive(Clone, Default)]
pub struct MiddlewareChain {
    steps: Vec<Arc<dyn Middleware>>,
}

impl std::fmt::Debug for MiddlewareChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|m| m.name()))
            .finish()
    }
}

impl MiddlewareChain {
    /// The chain of `steps`, run in order.
    pub fn new(steps: Vec<Arc<dyn Middleware>>) -> Self {
        MiddlewareChain { steps }
    }

    /// The names of the steps, in order.
    pub fn names(&self) -> Vec<&str> {
        self.steps.iter().map(|m| m.name()).collect()
    }

    /// Runs every step on `event`.
    pub async fn run(
        &self,
        event: &mut Event,
        ctx: &PublishContext,
    ) -> Result<(), MiddlewareError> {
        for step in &self.steps {
            step.handle(event, ctx).await?;
        }
        Ok(())
    }
}

/// Checks the payload's size and what it may hold ([`payload::check`]: nesting, `\u0000`, lone
/// surrogates, number range), the type against the catalogue in strict mode, and the payload
/// against the type's JSON Schema.
#[derive(Debug)]
pub struct ValidationMiddleware {
    registry: Arc<TypeRegistry>,
    max_payload_bytes: usize,
    max_json_depth: usize,
    strict: bool,
}

impl ValidationMiddleware {
    /// Validation against `registry`, payloads nested at most [`payload::DEFAULT_MAX_JSON_DEPTH`].
    pub fn new(registry: Arc<TypeRegistry>, max_payload_bytes: usize, strict: bool) -> Self {
        ValidationMiddleware {
            registry,
            max_payload_bytes,
            max_json_depth: payload::DEFAULT_MAX_JSON_DEPTH,
            strict,
        }
    }

    /// The deepest nesting of arrays and objects a payload may have.
    pub fn max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth;
        self
    }
}

/// Most schema violations reported for one event.
const MAX_REPORTED_VIOLATIONS: usize = 20;

#[async_trait]
impl Middleware for ValidationMiddleware {
    fn name(&self) -> &str {
        "validation"
    }

    async fn handle(
        &self,
        event: &mut Event,
        _ctx: &PublishContext,
    ) -> Result<(), MiddlewareError> {
        let size = event.payload.get().len();
        if size > self.max_payload_bytes {
            return Err(Rejection::field(
                RejectKind::TooLarge,
                FieldError::new(
                    "payload",
                    format!(
                        "is {size} bytes; the limit is {} bytes",
                        self.max_payload_bytes
                    ),
                ),
            )
            .into());
        }
        // Before anything parses the payload (the schema validator, plugins) or stores it.
        payload::check("payload", event.payload.get(), self.max_json_depth)
            .map_err(|e| Rejection::field(RejectKind::Invalid, e))?;
        let entry = self.registry.get(&event.event_type);
        let Some(entry) = entry else {
            if self.strict {
                return Err(Rejection::field(
                    RejectKind::UnknownType,
                    FieldError::new(
                        "type",
                        format!(
                            "`{}` is not a registered event type; register it with PUT \
                             /v1/event-types/{} first",
                            event.event_type, event.event_type
                        ),
                    ),
                )
                .into());
            }
            return Ok(());
        };
        let Some(validator) = &entry.validator else {
            return Ok(());
        };
        let payload: serde_json::Value =
            serde_json::from_str(event.payload.get()).map_err(|e| MiddlewareError::Failed {
                middleware: "validation".into(),
                message: e.to_string(),
            })?;
        let errors: Vec<FieldError> = validator
            .iter_errors(&payload)
            .take(MAX_REPORTED_VIOLATIONS)
            .map(|e| FieldError::new(format!("payload{}", e.instance_path()), e.to_string()))
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        Err(Rejection {
            kind: RejectKind::SchemaViolation,
            message: format!(
                "the payload does not match the JSON Schema of `{}`: {}",
                event.event_type, errors[0]
            ),
            errors,
        }
        .into())
    }
}

/// Ids the bus gives its own announcements (a webhook endpoint disabled for failing). They are
/// predictable, so that an announcement made again is recognised; a caller who took one first
/// would silence it, so no authenticated caller may publish one.
pub const RESERVED_ID_PREFIX: &str = "webhook-disabled-";

/// The security step: an event published by an authenticated caller must be within its key
/// (the `publish` permission, its type patterns, its projects), is bound to its tenant
/// ([`Principal::may_publish`]) and may not take an id of the bus's own
/// ([`RESERVED_ID_PREFIX`]). Trusted in-process publishers (no principal) pass.
#[derive(Debug, Default)]
pub struct SecurityMiddleware;

#[async_trait]
impl Middleware for SecurityMiddleware {
    fn name(&self) -> &str {
        "security"
    }

    async fn handle(&self, event: &mut Event, ctx: &PublishContext) -> Result<(), MiddlewareError> {
        let Some(principal) = &ctx.principal else {
            return Ok(());
        };
        let allowed = if event.id.starts_with(RESERVED_ID_PREFIX) {
            Err(super::principal::Denied(format!(
                "ids starting with `{RESERVED_ID_PREFIX}` are reserved for the bus's own \
                 announcements; choose another `id`, or leave it out to get a generated one"
            )))
        } else {
            principal.may_publish(event)
        };
        allowed.map_err(|denied| {
            tracing::warn!(
                target: "audit",
                key = %principal.key_id,
                event.id = %event.id,
                event.r#type = %event.event_type,
                traceparent = event.traceparent(),
                reason = %denied,
                "publish refused"
            );
            Rejection {
                kind: RejectKind::Forbidden,
                message: denied.0,
                errors: Vec::new(),
            }
            .into()
        })
    }
}

/// Adds trace context: the request's `traceparent` goes into events that carry none.
#[derive(Debug, Default)]
pub struct EnrichmentMiddleware;

#[async_trait]
impl Middleware for EnrichmentMiddleware {
    fn name(&self) -> &str {
        "enrichment"
    }

    async fn handle(&self, event: &mut Event, ctx: &PublishContext) -> Result<(), MiddlewareError> {
        if let Some(tp) = &ctx.traceparent {
            event
                .metadata
                .entry("traceparent".to_owned())
                .or_insert_with(|| tp.clone());
        }
        Ok(())
    }
}

/// Logs every accepted event at `debug` with its id, type and trace context.
#[derive(Debug, Default)]
pub struct LoggingMiddleware;

#[async_trait]
impl Middleware for LoggingMiddleware {
    fn name(&self) -> &str {
        "logging"
    }

    async fn handle(&self, event: &mut Event, ctx: &PublishContext) -> Result<(), MiddlewareError> {
        tracing::debug!(
            event.id = %event.id,
            event.r#type = %event.event_type,
            traceparent = event.traceparent(),
            key = ctx.principal.as_ref().map(|p| p.key_id.as_str()),
            "event accepted by the chain"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalogue::{EventTypeDef, TypeEntry};
    use crate::core::event::NewEvent;
    use crate::core::time::Timestamp;

    fn registry() -> Arc<TypeRegistry> {
        let r = TypeRegistry::new();
        r.insert(
            TypeEntry::compile(EventTypeDef {
                name: "order.placed".into(),
                description: None,
                schema: Some(serde_json::json!({
                    "type": "object", "required": ["total"],
                    "properties": {"total": {"type": "number"}}
                })),
                builtin: false,
                updated_at: Timestamp::from_micros(0),
            })
            .unwrap(),
        );
        Arc::new(r)
    }

    fn event(ty: &str, payload: serde_json::Value) -> Event {
        NewEvent::new(ty, payload)
            .into_event(Timestamp::from_micros(0))
            .unwrap()
    }

    async fn check(v: &ValidationMiddleware, mut e: Event) -> Result<(), MiddlewareError> {
        v.handle(&mut e, &PublishContext::default()).await
    }

    #[tokio::test]
    async fn schema_violations_name_the_field() {
        let v = ValidationMiddleware::new(registry(), 1024, false);
        check(&v, event("order.placed", serde_json::json!({"total": 3})))
            .await
            .unwrap();
        let Err(MiddlewareError::Rejected(r)) =
            check(&v, event("order.placed", serde_json::json!({"total": "3"}))).await
        else {
            panic!("expected a rejection")
        };
        assert_eq!(r.kind, RejectKind::SchemaViolation);
        assert_eq!(r.errors[0].field, "payload/total");
    }

    #[tokio::test]
    async fn strict_mode_refuses_unknown_types_and_size_is_limited() {
        let lax = ValidationMiddleware::new(registry(), 16, false);
        check(&lax, event("other.thing", serde_json::json!(1)))
            .await
            .unwrap();
        let strict = ValidationMiddleware::new(registry(), 16, true);
        let Err(MiddlewareError::Rejected(r)) =
            check(&strict, event("other.thing", serde_json::json!(1))).await
        else {
            panic!("expected a rejection")
        };
        assert_eq!(r.kind, RejectKind::UnknownType);
        let Err(MiddlewareError::Rejected(r)) = check(
            &lax,
            event("other.thing", serde_json::json!("0123456789abcdef")),
        )
        .await
        else {
            panic!("expected a rejection")
        };
        assert_eq!(r.kind, RejectKind::TooLarge);
    }

    #[tokio::test]
    async fn chain_runs_in_order_and_stops_at_the_first_refusal() {
        struct Tag(&'static str, bool);
        #[async_trait]
        impl Middleware for Tag {
            fn name(&self) -> &str {
                self.0
            }
            async fn handle(
                &self,
                e: &mut Event,
                _: &PublishContext,
            ) -> Result<(), MiddlewareError> {
                let seen = e.metadata.entry("seen".into()).or_default();
                seen.push_str(self.0);
                if self.1 {
                    return Err(Rejection::field(
                        RejectKind::Forbidden,
                        FieldError::new("type", "no"),
                    )
                    .into());
                }
                Ok(())
            }
        }
        let chain =
            MiddlewareChain::new(vec![Arc::new(Tag("a", false)), Arc::new(Tag("b", false))]);
        let mut e = event("x.y", serde_json::Value::Null);
        chain.run(&mut e, &PublishContext::default()).await.unwrap();
        assert_eq!(e.metadata["seen"], "ab");
        let chain = MiddlewareChain::new(vec![Arc::new(Tag("a", true)), Arc::new(Tag("b", false))]);
        let mut e = event("x.y", serde_json::Value::Null);
        assert!(chain.run(&mut e, &PublishContext::default()).await.is_err());
        assert_eq!(e.metadata["seen"], "a");
    }
    #[tokio::test]
    async fn reserved_ids_are_the_buss_own() {
        let mut e = event("integration.status_changed", serde_json::Value::Null);
        e.id = format!("{RESERVED_ID_PREFIX}ep_1-1");
        let caller = PublishContext {
            principal: Some(Arc::new(Principal::root("admin"))),
            traceparent: None,
        };
        let Err(MiddlewareError::Rejected(r)) = SecurityMiddleware.handle(&mut e, &caller).await
        else {
            panic!("an authenticated caller took a reserved id")
        };
        assert_eq!(r.kind, RejectKind::Forbidden);
        assert!(r.message.contains("reserved"), "{}", r.message);
        SecurityMiddleware
            .handle(&mut e, &PublishContext::default())
            .await
            .expect("the bus itself publishes its announcements");
    }
}
