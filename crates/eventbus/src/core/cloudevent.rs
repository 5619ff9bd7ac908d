//! Our event as a CloudEvent 1.0 (the JSON event format and the HTTP binding's binary mode),
//! for the edges that send events out: the HTTP API (`GET`, query, SSE) and webhooks. Pure: no
//! IO. Reading CloudEvents in is the HTTP layer's (`eventbus-server`'s `http::cloudevent`).
//!
//! The mapping (docs/api.md "CloudEvents"): `id`, `type`, `time` (`timestamp`), `data`
//! (`payload`), `source` (`metadata.source`, [`DEFAULT_SOURCE`] when absent),
//! `projectid`/`tenantid`/`userid`, `correlationid`/`causationid` (`metadata.correlationId`/
//! `causationId`), every other metadata key that is an attribute name as an extension of that
//! name (others are left out), and `seq` as an integer extension.

use serde_json::{Map, Value};

use crate::core::event::Event;

/// The media type of one structured event.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// The media type of a batch of structured events.
pub const BATCH: &str = "application/cloudevents-batch+json";
/// The `source` of an event that has no `metadata.source`.
pub const DEFAULT_SOURCE: &str = "urn:situs:eventbus";

/// Context attribute names an extension may not take.
const RESERVED: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "data",
    "data_base64",
    "projectid",
    "tenantid",
    "userid",
    "seq",
];

/// CloudEvents attribute names: 1 to 20 lowercase letters and digits.
pub fn is_attribute_name(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The context attributes of `event` (everything but `data` and `datacontenttype`), in the
/// order they are written.
fn attributes(event: &Event) -> Map<String, Value> {
    let mut ce = Map::new();
    ce.insert("specversion".into(), "1.0".into());
    ce.insert("id".into(), event.id.clone().into());
    ce.insert(
        "source".into(),
        event
            .metadata
            .get("source")
            .map_or(DEFAULT_SOURCE, String::as_str)
            .into(),
    );
    ce.insert("type".into(), event.event_type.clone().into());
    ce.insert("time".into(), event.timestamp.to_string().into());
    for (name, value) in [
        ("projectid", &event.project_id),
        ("tenantid", &event.tenant_id),
        ("userid", &event.user_id),
    ] {
        if let Some(v) = value {
            ce.insert(name.into(), v.clone().into());
        }
    }
    for (key, value) in &event.metadata {
        let name = match key.as_str() {
            "source" => continue,
            "correlationId" => "correlationid",
            "causationId" => "causationid",
            // Keys that are no attribute name, or would overwrite a context attribute, are left
            // out.
            k if !is_attribute_name(k) || RESERVED.contains(&k) => continue,
            k => k,
        };
        ce.insert(name.to_owned(), value.clone().into());
    }
    if event.seq > 0 {
        ce.insert("seq".into(), event.seq.into());
    }
    ce
}

/// The structured CloudEvent (JSON event format) of `event`.
pub fn encode(event: &Event) -> Value {
    let mut ce = attributes(event);
    let data: Value = serde_json::from_str(event.payload.get()).unwrap_or(Value::Null);
    if !data.is_null() {
        ce.insert("datacontenttype".into(), "application/json".into());
        ce.insert("data".into(), data);
    }
    Value::Object(ce)
}

/// Binary mode of the HTTP binding: one `ce-<name>` header per context attribute (values
/// percent-encoded where the binding says so); the body is the payload's JSON with
/// `Content-Type: application/json`, or nothing when the payload is `null`.
pub fn binary_headers(event: &Event) -> Vec<(String, String)> {
    attributes(event)
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (format!("ce-{name}"), percent_encode(&text))
        })
        .collect()
}

/// Percent-encodes what a header value may not carry as is (HTTP binding §3.1.3.2): space,
/// `"`, `%` and anything outside printable ASCII, as UTF-8 bytes.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b == b' ' || b == b'"' || b == b'%' || !(0x21..=0x7e).contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::NewEvent;
    use crate::core::time::Timestamp;

    #[test]
    fn binary_headers_hold_every_attribute_and_encode_what_a_header_cannot_carry() {
        let mut event = NewEvent::new("project.created", serde_json::json!({"a": 1}))
            .project("p 1")
            .into_event(Timestamp::now())
            .unwrap();
        event.seq = 7;
        event
            .metadata
            .insert("subject".into(), "café \"x\" 100%".into());
        event.metadata.insert("Not-An-Attribute".into(), "x".into());
        let headers: std::collections::BTreeMap<String, String> =
            binary_headers(&event).into_iter().collect();
        assert_eq!(headers["ce-projectid"], "p%201");
        assert_eq!(headers["ce-subject"], "caf%C3%A9%20%22x%22%20100%25");
        assert_eq!(headers["ce-seq"], "7");
        assert_eq!(headers["ce-source"], DEFAULT_SOURCE);
        assert!(!headers.contains_key("ce-data"));
        assert!(!headers.keys().any(|k| k.contains("not-an")));
        assert_eq!(encode(&event)["subject"], "café \"x\" 100%");
    }
}
