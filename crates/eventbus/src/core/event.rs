//! The event: the unit the bus carries, its wire format (DESIGN.md §2) and its validation.
//!
//! Invariants kept here:
//! - an [`Event`] is always complete: `id`, `type` and `timestamp` are set and valid; `seq` is `0`
//!   until the store assigns it;
//! - [`NewEvent::into_event`] is the only way from untrusted input to an [`Event`], and it names
//!   the offending field in every error it returns.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::time::Timestamp;

/// Longest accepted `id`, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted `projectId`, `tenantId` or `userId`, in characters.
pub const MAX_SCOPE_LEN: usize = 128;
/// Longest accepted event type name, in bytes.
pub const MAX_TYPE_LEN: usize = 255;
/// Most metadata entries an event may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_LEN: usize = 2048;

/// Free-form string metadata: `correlationId`, `causationId`, `source`, `traceparent`, ….
pub type Metadata = BTreeMap<String, String>;

/// A stored or about-to-be-stored event, exactly the wire format of DESIGN.md §2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique id, the idempotency key (UUIDv7 when the publisher gave none).
    pub id: String,
    /// Dotted lowercase type name, e.g. `project.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Any JSON, kept as the publisher's bytes.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub payload: Box<RawValue>,
    /// When the event happened (set by the bus when absent).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
    /// The project the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// The tenant the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The user the event is about or was caused by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Correlation, causation, source and trace context.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub metadata: Metadata,
    /// Global, strictly increasing position assigned by the store; `0` before it is stored.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub seq: u64,
}

impl Event {
    /// Whether `other` carries the same content: the idempotency test.
    ///
    /// Compared are the id, type, payload (as JSON values, so formatting does not count) and the
    /// project, tenant and user. The timestamp and metadata are not: a retry that leaves the
    /// timestamp to the bus, or carries a new trace context, is still the same event.
    pub fn same_content(&self, other: &Event) -> bool {
        self.id == other.id
            && self.event_type == other.event_type
            && self.project_id == other.project_id
            && self.tenant_id == other.tenant_id
            && self.user_id == other.user_id
            && same_json(self.payload.get(), other.payload.get())
    }

    /// The W3C `traceparent` the event carries in its metadata, for log lines about it.
    pub fn traceparent(&self) -> Option<&str> {
        self.metadata.get("traceparent").map(String::as_str)
    }

    /// The event as JSON bytes (the SSE `data:` and webhook body form).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }
}

fn same_json(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// An event as a publisher sends it: everything but `type` is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewEvent {
    /// Idempotency key; a UUIDv7 is generated when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub id: Option<String>,
    /// Dotted lowercase type name.
    #[serde(rename = "type")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 255, pattern = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    )]
    pub event_type: String,
    /// Any JSON; `null` when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub payload: Option<Box<RawValue>>,
    /// RFC 3339 time; now when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub timestamp: Option<String>,
    /// Optional project scope.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub project_id: Option<String>,
    /// Optional tenant scope.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub tenant_id: Option<String>,
    /// Optional user.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub user_id: Option<String>,
    /// Optional string metadata.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, String>>))]
    pub metadata: Option<Metadata>,
    /// Accepted so that a stored event can be sent back as is; always ignored.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub seq: Option<serde::de::IgnoredAny>,
}

impl NewEvent {
    /// A new event of `event_type` with `payload`.
    pub fn new(event_type: impl Into<String>, payload: serde_json::Value) -> Self {
        NewEvent {
            event_type: event_type.into(),
            payload: Some(serde_json::value::to_raw_value(&payload).expect("a Value serialises")),
            ..NewEvent::default()
        }
    }

    /// Sets the project.
    pub fn project(mut self, project_id: impl Into<String>) -> Self {
        self.project_id = Some(project_id.into());
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Validates every field and fills `id` and `timestamp` when absent.
    pub fn into_event(self, now: Timestamp) -> Result<Event, FieldError> {
        let id = match self.id {
            Some(id) => {
                check_text("id", &id, MAX_ID_LEN)?;
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        validate_type(&self.event_type).map_err(|e| FieldError::new("type", e.to_string()))?;
        let timestamp = match self.timestamp {
            Some(t) => Timestamp::parse_rfc3339(&t)
                .map_err(|e| FieldError::new("timestamp", e.to_string()))?,
            None => now,
        };
        for (name, value) in [
            ("projectId", &self.project_id),
            ("tenantId", &self.tenant_id),
            ("userId", &self.user_id),
        ] {
            if let Some(v) = value {
                check_text(name, v, MAX_SCOPE_LEN)?;
            }
        }
        let metadata = self.metadata.unwrap_or_default();
        check_metadata(&metadata)?;
        Ok(Event {
            id,
            event_type: self.event_type,
            payload: self.payload.unwrap_or_else(null_payload),
            timestamp,
            project_id: self.project_id,
            tenant_id: self.tenant_id,
            user_id: self.user_id,
            metadata,
            seq: 0,
        })
    }
}

/// The JSON `null` payload.
pub fn null_payload() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_metadata(metadata: &Metadata) -> Result<(), FieldError> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(FieldError::new(
            "metadata",
            format!("must have at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.len() > MAX_METADATA_KEY_LEN {
            return Err(FieldError::new(
                "metadata",
                format!("keys must be 1 to {MAX_METADATA_KEY_LEN} bytes"),
            ));
        }
        if k.contains('\0') || v.contains('\0') {
            return Err(FieldError::new(
                format!("metadata.{}", k.replace('\0', "\\u0000")),
                "must not contain \\u0000, which the bus does not store",
            ));
        }
        if v.len() > MAX_METADATA_VALUE_LEN {
            return Err(FieldError::new(
                format!("metadata.{k}"),
                format!("must be at most {MAX_METADATA_VALUE_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

/// Why a name is not an event type; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeNameError {
    /// Longer than [`MAX_TYPE_LEN`].
    #[error("must be at most {MAX_TYPE_LEN} bytes")]
    TooLong,
    /// A segment breaks `[a-z][a-z0-9_]*`.
    #[error(
        "`{0}` is not a valid event type: use dotted lowercase segments such as \
         `project.created` (each segment starts with a-z and continues with a-z, 0-9 or _)"
    )]
    BadSegment(String),
    /// One segment only.
    #[error(
        "`{0}` is not a valid event type: it needs at least two segments, such as \
         `project.created`"
    )]
    OneSegment(String),
}

/// Checks an event type name against `^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`.
pub fn validate_type(name: &str) -> Result<(), TypeNameError> {
    if name.len() > MAX_TYPE_LEN {
        return Err(TypeNameError::TooLong);
    }
    let mut segments = 0;
    for segment in name.split('.') {
        if !is_segment(segment) {
            return Err(TypeNameError::BadSegment(name.to_owned()));
        }
        segments += 1;
    }
    if segments < 2 {
        return Err(TypeNameError::OneSegment(name.to_owned()));
    }
    Ok(())
}

/// Whether `s` is one type segment: `[a-z][a-z0-9_]*`.
pub(crate) fn is_segment(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// A field that failed validation, with a message saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, as a JSON name or path (`type`, `metadata.source`, `payload/name`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A new error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, with its field prefixed by a batch index (`3/type`).
    pub fn at_index(self, index: usize) -> Self {
        FieldError {
            field: format!("{index}/{}", self.field),
            message: self.message,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (seq {})", self.event_type, self.id, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000)
    }

    #[test]
    fn type_grammar() {
        for ok in ["project.created", "menu.item_updated", "a.b.c", "x1.y_2"] {
            assert!(validate_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "project",
            "Project.created",
            "project.",
            ".x",
            "project..x",
            "1a.b",
            "a.B",
            "a.b-c",
            "a. b",
        ] {
            assert!(validate_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fills_id_and_timestamp() {
        let e = NewEvent::new("project.created", serde_json::json!({"n": 1}))
            .into_event(now())
            .unwrap();
        assert_eq!(e.id.len(), 36);
        assert_eq!(uuid::Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
        assert_eq!(e.timestamp, now());
        assert_eq!(e.seq, 0);
    }

    #[test]
    fn rejects_bad_fields_naming_them() {
        let long = "x".repeat(129);
        let cases = [
            (
                NewEvent::new("project.created", serde_json::Value::Null).with_id(""),
                "id",
            ),
            (
                NewEvent::new("project.created", serde_json::Value::Null).with_id(long.clone()),
                "id",
            ),
            (NewEvent::new("Project", serde_json::Value::Null), "type"),
            (
                NewEvent::new("project.created", serde_json::Value::Null).project(long),
                "projectId",
            ),
            (
                NewEvent::new("project.created", serde_json::Value::Null).tenant("a\nb"),
                "tenantId",
            ),
            (
                NewEvent {
                    timestamp: Some("yesterday".into()),
                    ..NewEvent::new("a.b", serde_json::Value::Null)
                },
                "timestamp",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(input.into_event(now()).unwrap_err().field, field);
        }
    }

    #[test]
    fn wire_format_round_trip() {
        let json = r#"{"id":"e1","type":"project.created","payload":{"name":"x"},"timestamp":"2026-11-27T05:00:00.123Z","projectId":"p1","metadata":{"source":"api"}}"#;
        let new: NewEvent = serde_json::from_str(json).unwrap();
        let mut e = new.into_event(now()).unwrap();
        e.seq = 42;
        let out = e.to_json();
        assert_eq!(
            out,
            r#"{"id":"e1","type":"project.created","payload":{"name":"x"},"timestamp":"2026-11-27T05:00:00.123Z","projectId":"p1","metadata":{"source":"api"},"seq":42}"#
        );
        let back: Event = serde_json::from_str(&out).unwrap();
        assert!(back.same_content(&e));
    }

    #[test]
    fn same_content_ignores_payload_formatting_but_not_values() {
        let a = NewEvent {
            payload: Some(RawValue::from_string(r#"{"a":1,"b":2}"#.into()).unwrap()),
            ..NewEvent::new("a.b", serde_json::Value::Null).with_id("x")
        }
        .into_event(now())
        .unwrap();
        let mut b = a.clone();
        b.payload = RawValue::from_string(r#"{ "b": 2, "a": 1 }"#.into()).unwrap();
        assert!(a.same_content(&b));
        b.payload = RawValue::from_string(r#"{"a":1,"b":3}"#.into()).unwrap();
        assert!(!a.same_content(&b));
    }

    #[test]
    fn unknown_fields_are_refused_and_seq_is_ignored() {
        let err =
            serde_json::from_str::<NewEvent>(r#"{"type":"a.b","projectID":"p"}"#).unwrap_err();
        assert!(err.to_string().contains("projectID"), "{err}");
        assert!(serde_json::from_str::<NewEvent>(r#"{"type":"a.b","seq":7}"#).is_ok());
    }
}
