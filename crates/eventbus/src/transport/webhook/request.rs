//! Request building: the body and the signed headers of one attempt, which the caller hands
//! to the [`client`](super::client).
//!
//! An attempt's body is the event's JSON (built once per event: [`BodyCache`]), or the body a
//! [`PayloadShaper`] returns for the event and the endpoint when one applies to the event's
//! type. Its headers are the endpoint's own, then `content-type` and the Standard Webhooks
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
use crate::core::event::Event;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::webhook::{Delivery, Endpoint};

/// One request: the body and its signed headers.
pub(super) struct Request {
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
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
    let Some(body) = attempt_body(shared, d, ep).await? else {
        return Ok(None);
    };
    Ok(Some(Request {
        headers: headers(ep, &d.event_id, &body),
        body,
    }))
}

/// The request of a test send of `event` to `ep`: the event's JSON, never shaped.
pub(super) fn for_test(ep: &Endpoint, event: &Event) -> Request {
    let body = Bytes::from(event.to_json());
    Request {
        headers: headers(ep, &event.id, &body),
        body,
    }
}

/// The body of one attempt: shaped when a shaper applies to the event's type, else the
/// event's JSON. `None`: the event is no longer stored.
async fn attempt_body(
    shared: &Shared,
    d: &Delivery,
    ep: &Endpoint,
) -> Result<Option<Bytes>, BodyError> {
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
            Ok(Some(body)) => return Ok(Some(body)),
            Ok(None) => {}
            Err(e) => return Err(BodyError::Shaper(e)),
        }
    }
    shared
        .bodies
        .body(&*shared.events, d.event_seq, &d.event_id)
        .await
        .map_err(BodyError::Store)
}

/// The request headers of one attempt of `event_id` to `ep`, signed over `body`.
fn headers(ep: &Endpoint, event_id: &str, body: &[u8]) -> HeaderMap {
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
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(event_id) {
        headers.insert(HEADER_ID, v);
    }
    headers.insert(HEADER_TIMESTAMP, HeaderValue::from(ts));
    if let Ok(v) = HeaderValue::from_str(&signature_header(&keys, event_id, ts, body)) {
        headers.insert(HEADER_SIGNATURE, v);
    }
    headers
}
