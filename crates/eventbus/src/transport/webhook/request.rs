//! Request building: the body and the signed headers of one attempt, which the caller hands
//! to the [`client`](super::client).
//!
//! An attempt's body is the event's JSON (built once per event: [`BodyCache`]), or the body a
//! [`PayloadShaper`] returns for the event and the endpoint when one applies to the event's
//! type. An endpoint whose [`WebhookFormat`] is a CloudEvents one gets the event as a structured
//! CloudEvent (`application/cloudevents+json`) or in binary mode (`ce-*` headers, the payload's
//! JSON as the body) instead of the event's JSON; a shaped body is sent as it is
//! (`application/json`). Its headers are the endpoint's own, then `content-type` and the Standard Webhooks
//! headers: `webhook-id` (the event id), `webhook-timestamp` (now) and `webhook-signature` (one
//! signature per valid secret of the endpoint: [`signature_header`]).
//!
//! [`BodyCache`]: super::cache::BodyCache
//! [`PayloadShaper`]: super::PayloadShaper

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::client::custom_header;
use super::shaper::ShapeError;
use super::shared::Shared;
use super::signing::{SigningKey, signature_header};
use super::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::core::cloudevent;
use crate::core::event::Event;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::webhook::{Delivery, Endpoint, WebhookFormat};

/// One request: the body and its signed headers.
pub(super) struct Request {
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The event's `metadata.traceparent`, which the attempt's span continues.
    pub(super) traceparent: Option<String>,
}

/// Why an attempt has no request.
pub(super) enum BodyError {
    /// The shaper failed: the attempt fails without a request (and is retried).
    Shaper(ShapeError),
    /// The store failed reading the event.
    Store(StoreError),
}

/// The request of one attempt of `d` to `ep`; `None` when the event is no longer stored.
pub(super) async fn for_delivery(
    shared: &Shared,
    d: &Delivery,
    ep: &Endpoint,
) -> Result<Option<Request>, BodyError> {
    let Some((body, shaped)) = attempt_body(shared, d, ep).await? else {
        return Ok(None);
    };
    if shaped {
        let traceparent = stored_traceparent(&body);
        return Ok(Some(Request {
            headers: headers(ep, &d.event_id, &body, Some("application/json"), Vec::new()),
            body,
            traceparent,
        }));
    }
    Ok(Some(formatted(ep, &d.event_id, body)))
}

/// The request of a test send of `event` to `ep`: the event in the endpoint's format, never
/// shaped.
pub(super) fn for_test(ep: &Endpoint, event: &Event) -> Request {
    formatted(ep, &event.id, Bytes::from(event.to_json()))
}

/// The request carrying the event whose JSON is `json`, in the endpoint's format.
fn formatted(ep: &Endpoint, event_id: &str, json: Bytes) -> Request {
    let traceparent = stored_traceparent(&json);
    let event = match ep.format {
        WebhookFormat::Json => None,
        _ => serde_json::from_slice::<Event>(&json).ok(),
    };
    let Some(event) = event else {
        return Request {
            headers: headers(ep, event_id, &json, Some("application/json"), Vec::new()),
            body: json,
            traceparent,
        };
    };
    match ep.format {
        WebhookFormat::CloudEventsBinary => {
            let data = event.payload.get();
            let (body, content_type) = if data == "null" {
                (Bytes::new(), None)
            } else {
                (
                    Bytes::copy_from_slice(data.as_bytes()),
                    Some("application/json"),
                )
            };
            let ce = cloudevent::binary_headers(&event);
            Request {
                headers: headers(ep, event_id, &body, content_type, ce),
                body,
                traceparent,
            }
        }
        _ => {
            let body = Bytes::from(
                serde_json::to_vec(&cloudevent::encode(&event)).expect("a Value serialises"),
            );
            Request {
                headers: headers(
                    ep,
                    event_id,
                    &body,
                    Some(cloudevent::STRUCTURED),
                    Vec::new(),
                ),
                body,
                traceparent,
            }
        }
    }
}

/// The `metadata.traceparent` of the event whose JSON is `json` (a shaped body: whatever it
/// carries there).
fn stored_traceparent(json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Traced {
        #[serde(default)]
        metadata: std::collections::BTreeMap<String, serde_json::Value>,
    }
    let traced: Traced = serde_json::from_slice(json).ok()?;
    match traced.metadata.get("traceparent")? {
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The body of one attempt: shaped (`true`) when a shaper applies to the event's type, else
/// the event's JSON. `None`: the event is no longer stored.
async fn attempt_body(
    shared: &Shared,
    d: &Delivery,
    ep: &Endpoint,
) -> Result<Option<(Bytes, bool)>, BodyError> {
    if let Some(shaper) = shared.shaper.as_ref().filter(|s| s.shapes(&d.event_type)) {
        let Some(event) = shared
            .events
            .get(&d.event_id)
            .await
            .map_err(BodyError::Store)?
        else {
            return Ok(None);
        };
        match shaper.shape(&event, ep).await {
            Ok(Some(body)) => return Ok(Some((body, true))),
            Ok(None) => {}
            Err(e) => return Err(BodyError::Shaper(e)),
        }
    }
    shared
        .bodies
        .body(&*shared.events, d.event_seq, &d.event_id)
        .await
        .map(|body| body.map(|b| (b, false)))
        .map_err(BodyError::Store)
}

/// The request headers of one attempt of `event_id` to `ep`, signed over `body`: the
/// endpoint's own, `content-type` (none for an empty body), the CloudEvents binary-mode
/// attributes `ce`, and the Standard Webhooks headers.
fn headers(
    ep: &Endpoint,
    event_id: &str,
    body: &[u8],
    content_type: Option<&'static str>,
    ce: Vec<(String, String)>,
) -> HeaderMap {
    let now = Timestamp::now();
    let ts = now.as_micros().div_euclid(1_000_000);
    let keys: Vec<SigningKey> = ep
        .signing_secrets(now)
        .into_iter()
        .filter_map(|s| SigningKey::parse(s).ok())
        .collect();
    let mut headers = HeaderMap::new();
    for (name, value) in &ep.headers {
        if let Ok((n, v)) = custom_header(name, value) {
            headers.insert(n, v);
        }
    }
    match content_type {
        Some(ct) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        None => {
            headers.remove(CONTENT_TYPE);
        }
    }
    for (name, value) in ce {
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(n, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(event_id) {
        headers.insert(HEADER_ID, v);
    }
    headers.insert(HEADER_TIMESTAMP, HeaderValue::from(ts));
    if let Ok(v) = HeaderValue::from_str(&signature_header(&keys, event_id, ts, body)) {
        headers.insert(HEADER_SIGNATURE, v);
    }
    headers
}
