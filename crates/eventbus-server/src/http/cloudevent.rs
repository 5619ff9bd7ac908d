//! CloudEvents 1.0 at the HTTP edge (the HTTP protocol binding and the JSON event format): a
//! wire format translated here into the one event type, and back. Nothing behind the edge knows
//! of it (DESIGN.md §7).
//!
//! In: [`publish_mode`] tells a structured (`application/cloudevents+json`), batch
//! (`application/cloudevents-batch+json`) or binary (`ce-*` headers, the body is the data)
//! publish from a plain one; [`decode_structured`], [`decode_batch`] and [`decode_binary`] make
//! [`NewEvent`]s of them. Out: [`encode`] (from `eventbus::core::cloudevent`, which webhooks
//! share) makes the structured JSON of a stored [`Event`]; [`sse_frame`] rewrites SSE messages.
//!
//! The mapping (docs/api.md "CloudEvents"): `id`↔`id`, `type`↔`type`, `time`↔`timestamp`,
//! `data`↔`payload`, `projectid`/`tenantid`/`userid`↔`projectId`/`tenantId`/`userId`, `source`,
//! `subject`, `traceparent`, `dataschema`↔`metadata.<same name>`,
//! `correlationid`/`causationid`↔`metadata.correlationId`/`causationId`, any other extension↔
//! `metadata.<name>` (its value as a string); out only: `seq` (integer extension),
//! `datacontenttype: application/json`. Every error names the attribute at fault (`ce-<name>` in
//! binary mode, `<index>/<name>` in a batch).

use axum::http::{HeaderMap, header};
use eventbus::core::event::{FieldError, Metadata};
use eventbus::core::time::Timestamp;
use eventbus::{Event, NewEvent};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::problem::ApiError;

pub use eventbus::core::cloudevent::{BATCH, STRUCTURED, encode, is_attribute_name};
/// The prefix of binary-mode attribute headers.
const HEADER_PREFIX: &str = "ce-";

/// A structured CloudEvent as the bus reads and writes it, for the API description (the codec
/// works on JSON values; this type is never built).
#[derive(utoipa::ToSchema)]
#[schema(as = CloudEvent)]
#[allow(dead_code, reason = "described in the API document, never built")]
pub struct CloudEventDoc {
    /// Always `1.0`.
    specversion: String,
    /// The event `id`.
    id: String,
    /// `metadata.source`; `urn:situs:eventbus` when the event has none.
    source: String,
    /// The event `type` (dotted lowercase).
    #[schema(rename = "type")]
    event_type: String,
    /// The event `timestamp` (RFC 3339).
    time: Option<String>,
    /// `metadata.subject`.
    subject: Option<String>,
    /// `application/json` (or a `+json` type) when there is data.
    datacontenttype: Option<String>,
    /// The event `payload`.
    data: Option<serde_json::Value>,
    /// `projectId`.
    projectid: Option<String>,
    /// `tenantId`.
    tenantid: Option<String>,
    /// `userId`.
    userid: Option<String>,
    /// `metadata.traceparent`.
    traceparent: Option<String>,
    /// `metadata.correlationId`.
    correlationid: Option<String>,
    /// `metadata.causationId`.
    causationid: Option<String>,
    /// The stored event's `seq` (written by the bus, ignored when read).
    seq: Option<u64>,
}

/// How a `POST /v1/events` body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// Our own JSON event or batch.
    Plain,
    /// One structured CloudEvent.
    Structured,
    /// An array of structured CloudEvents.
    Batch,
    /// Attributes in `ce-*` headers, the body is the data.
    Binary,
}

/// The media type's essence (lowercase, without parameters), empty when absent.
fn essence(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The mode of a publish: by its `Content-Type`, or binary when it has a `ce-specversion`
/// header.
pub fn publish_mode(headers: &HeaderMap) -> PublishMode {
    match essence(headers, header::CONTENT_TYPE).as_str() {
        STRUCTURED => PublishMode::Structured,
        BATCH => PublishMode::Batch,
        _ if headers.contains_key("ce-specversion") => PublishMode::Binary,
        _ => PublishMode::Plain,
    }
}

/// Whether the `Accept` header asks for `media_type` (by name; no weights).
pub fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            part.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(media_type))
        })
}

/// One structured event (`application/cloudevents+json`).
pub fn decode_structured(bytes: &[u8]) -> Result<NewEvent, ApiError> {
    let map: Map<String, Value> = parse(bytes, "a CloudEvent must be a JSON object")?;
    from_structured(map, "")
}

/// A batch (`application/cloudevents-batch+json`): a JSON array of structured events.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<NewEvent>, ApiError> {
    let items: Vec<Value> = parse(bytes, "a CloudEvents batch must be a JSON array")?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => from_structured(map, &format!("{i}/")),
            _ => Err(invalid(
                &i.to_string(),
                "each event of a CloudEvents batch must be a JSON object",
            )),
        })
        .collect()
}

/// Binary mode: the attributes from the `ce-*` headers, the data from the body (JSON, as its
/// `Content-Type` says; none when the body is empty).
pub fn decode_binary(headers: &HeaderMap, body: &[u8]) -> Result<NewEvent, ApiError> {
    let mut attrs = Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix(HEADER_PREFIX) else {
            continue;
        };
        let value = value.to_str().map_err(|_| {
            invalid(
                name.as_str(),
                "must be visible ASCII (percent-encode other characters)",
            )
        })?;
        let value = percent_decode(value)
            .ok_or_else(|| invalid(name.as_str(), "holds a malformed percent-encoded sequence"))?;
        attrs.insert(attr.to_owned(), Value::String(value));
    }
    let data = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let raw: Box<RawValue> = serde_json::from_slice(body)
            .map_err(|e| ApiError::MalformedJson(format!("the data is not valid JSON: {e}")))?;
        Some(raw)
    };
    from_attributes(attrs, data, HEADER_PREFIX)
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
    serde_json::from_value(value).map_err(|_| ApiError::MalformedJson(shape.to_owned()))
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::InvalidField(FieldError::new(field, message))
}

/// A structured event's members: `data` (JSON) or `data_base64` (refused: payloads are JSON),
/// and the attributes.
fn from_structured(mut map: Map<String, Value>, prefix: &str) -> Result<NewEvent, ApiError> {
    if map.contains_key("data_base64") {
        return Err(invalid(
            &format!("{prefix}data_base64"),
            "event payloads are JSON: send the data as `data` with a JSON datacontenttype",
        ));
    }
    let data = map
        .remove("data")
        .map(|v| serde_json::value::to_raw_value(&v).expect("a Value serialises"));
    from_attributes(map, data, prefix)
}

/// The attributes (strings in binary mode, JSON values in structured mode) and the data as our
/// event; `prefix` goes before each attribute name in errors.
fn from_attributes(
    attrs: Map<String, Value>,
    data: Option<Box<RawValue>>,
    prefix: &str,
) -> Result<NewEvent, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let mut event = NewEvent {
        payload: data,
        ..NewEvent::default()
    };
    let mut metadata = Metadata::new();
    let mut specversion = None;
    let mut source = None;
    for (name, value) in attrs {
        // A null attribute is an absent one (JSON event format §2.4).
        if value.is_null() {
            continue;
        }
        let text = |what: &str| -> Result<String, ApiError> {
            match &value {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(invalid(&field(&name), &format!("must be {what}"))),
            }
        };
        match name.as_str() {
            "specversion" => specversion = Some(text("the string \"1.0\"")?),
            "id" => event.id = Some(text("a non-empty string")?),
            "type" => event.event_type = text("a non-empty string")?,
            "source" => source = Some(text("a non-empty URI-reference")?),
            "time" => {
                let time = text("an RFC 3339 time")?;
                Timestamp::parse_rfc3339(&time)
                    .map_err(|e| invalid(&field("time"), &e.to_string()))?;
                event.timestamp = Some(time);
            }
            "datacontenttype" => {
                let ct = text("a media type")?;
                if !is_json(&ct) {
                    return Err(invalid(
                        &field(&name),
                        "event payloads are JSON: application/json or a +json type",
                    ));
                }
            }
            "projectid" => event.project_id = Some(text("a non-empty string")?),
            "tenantid" => event.tenant_id = Some(text("a non-empty string")?),
            "userid" => event.user_id = Some(text("a non-empty string")?),
            "correlationid" => {
                metadata.insert("correlationId".into(), text("a non-empty string")?);
            }
            "causationid" => {
                metadata.insert("causationId".into(), text("a non-empty string")?);
            }
            // Assigned by the store; a stored event sent back carries it.
            "seq" => {}
            _ if !is_attribute_name(&name) => {
                return Err(invalid(
                    &field(&name),
                    "is not a CloudEvents attribute name (1 to 20 of a-z and 0-9)",
                ));
            }
            _ => {
                let value = match &value {
                    Value::String(s) => s.clone(),
                    Value::Bool(_) | Value::Number(_) => value.to_string(),
                    _ => {
                        return Err(invalid(
                            &field(&name),
                            "an extension attribute is a string, a number or a boolean",
                        ));
                    }
                };
                metadata.insert(name, value);
            }
        }
    }
    match specversion.as_deref() {
        Some("1.0") => {}
        Some(_) => {
            return Err(invalid(
                &field("specversion"),
                "only CloudEvents 1.0 is accepted: \"1.0\"",
            ));
        }
        None => return Err(invalid(&field("specversion"), "is required")),
    }
    if event.id.is_none() {
        return Err(invalid(&field("id"), "is required"));
    }
    if event.event_type.is_empty() {
        return Err(invalid(&field("type"), "is required"));
    }
    match source {
        Some(source) => {
            metadata.insert("source".into(), source);
        }
        None => return Err(invalid(&field("source"), "is required")),
    }
    event.metadata = Some(metadata);
    Ok(event)
}

fn is_json(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// Decodes `%XX` sequences (the HTTP binding percent-encodes header values).
fn percent_decode(value: &str) -> Option<String> {
    if !value.contains('%') {
        return Some(value.to_owned());
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An SSE chunk with the event in `data` rewritten as a structured CloudEvent
/// (`GET /v1/stream?format=cloudevents`); any other chunk (control events, heartbeats,
/// `retry:`) as it is. The hub builds one frame per event for every stream; a CloudEvents
/// stream re-encodes the frames it sends.
pub fn sse_frame(chunk: bytes::Bytes) -> bytes::Bytes {
    if !chunk.starts_with(b"id: ") {
        return chunk;
    }
    let Some(at) = chunk.windows(7).position(|w| w == b"\ndata: ") else {
        return chunk;
    };
    let json = chunk[at + 7..].trim_ascii_end();
    let Ok(event) = serde_json::from_slice::<Event>(json) else {
        return chunk;
    };
    let mut out = Vec::with_capacity(chunk.len() + 128);
    out.extend_from_slice(&chunk[..at + 7]);
    serde_json::to_writer(&mut out, &encode(&event)).expect("a Value serialises");
    out.extend_from_slice(b"\n\n");
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidField(f) => f.field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_structured_event_maps_to_our_fields_and_back() {
        let body = br#"{"specversion":"1.0","id":"e1","source":"/crm","type":"project.created",
            "time":"2026-01-02T03:04:05.678Z","subject":"p/1","datacontenttype":"application/json",
            "data":{"a":[1,2]},"projectid":"p1","tenantid":"t1","userid":"u1",
            "traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "correlationid":"c1","region":"eu","count":3}"#;
        let new = decode_structured(body).unwrap();
        let event = new.into_event(Timestamp::now()).unwrap();
        assert_eq!(event.id, "e1");
        assert_eq!(event.project_id.as_deref(), Some("p1"));
        assert_eq!(event.metadata["source"], "/crm");
        assert_eq!(event.metadata["subject"], "p/1");
        assert_eq!(event.metadata["correlationId"], "c1");
        assert_eq!(event.metadata["count"], "3");
        let out = encode(&event);
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected["count"] = "3".into();
        assert_eq!(out, expected);
    }

    #[test]
    fn errors_name_the_attribute() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"id":"e","source":"s","type":"a.b"}"#, "specversion"),
            (br#"{"specversion":"0.3","id":"e","source":"s","type":"a.b"}"#, "specversion"),
            (br#"{"specversion":"1.0","source":"s","type":"a.b"}"#, "id"),
            (br#"{"specversion":"1.0","id":"e","type":"a.b"}"#, "source"),
            (br#"{"specversion":"1.0","id":"e","source":"s"}"#, "type"),
            (br#"{"specversion":"1.0","id":"e","source":"s","type":"a.b","time":"x"}"#, "time"),
            (br#"{"specversion":"1.0","id":"e","source":"s","type":"a.b","datacontenttype":"text/plain"}"#, "datacontenttype"),
            (br#"{"specversion":"1.0","id":"e","source":"s","type":"a.b","data_base64":"AA=="}"#, "data_base64"),
            (br#"{"specversion":"1.0","id":"e","source":"s","type":"a.b","Bad-Name":"x"}"#, "Bad-Name"),
            (br#"{"specversion":"1.0","id":5,"source":"s","type":"a.b"}"#, "id"),
        ];
        for (body, field) in cases {
            let got = field_of(decode_structured(body).unwrap_err());
            assert_eq!(&got, field, "{}", String::from_utf8_lossy(body));
        }
        let batch = br#"[{"specversion":"1.0","id":"e","source":"s","type":"a.b"},{"specversion":"1.0","id":"f","type":"a.b"}]"#;
        assert_eq!(field_of(decode_batch(batch).unwrap_err()), "1/source");
    }

    #[test]
    fn binary_headers_are_attributes_and_percent_decoded() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "e1"),
            ("ce-source", "/crm"),
            ("ce-type", "project.created"),
            ("ce-subject", "caf%C3%A9"),
            ("content-type", "application/json"),
        ] {
            headers.insert(
                header::HeaderName::from_static(k),
                header::HeaderValue::from_static(v),
            );
        }
        let new = decode_binary(&headers, br#"{"x":1}"#).unwrap();
        assert_eq!(new.metadata.as_ref().unwrap()["subject"], "café");
        assert_eq!(new.payload.unwrap().get(), r#"{"x":1}"#);
        headers.remove("ce-id");
        assert_eq!(field_of(decode_binary(&headers, b"").unwrap_err()), "ce-id");
        assert_eq!(publish_mode(&headers), PublishMode::Binary);
    }
}
