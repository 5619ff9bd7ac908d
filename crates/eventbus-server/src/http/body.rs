//! JSON bodies: reading and decoding requests with errors that name the field at fault, writing
//! answers with [`json`], and [`BodyProblems`], the problems every route that reads a body can
//! answer (for the API description).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eventbus::core::event::FieldError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::config::Config;

/// Reads the whole body, refusing non-JSON media types, bodies over `MAX_REQUEST_BYTES` and
/// bodies not received within `REQUEST_READ_TIMEOUT` (a client trickling its body holds no
/// handler forever).
pub async fn read_json(
    headers: &HeaderMap,
    body: Body,
    config: &Config,
) -> Result<Bytes, ApiError> {
    let limit = config.max_request_bytes;
    let timeout = Duration::from_millis(config.request_read_timeout);
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout(timeout.as_millis() as u64))?;
    read.map_err(|e| {
        let e = e.into_inner();
        if e.is::<http_body_util::LengthLimitError>() {
            ApiError::BodyTooLarge(limit)
        } else {
            ApiError::MalformedJson(format!("the request body could not be read: {e}"))
        }
    })
}

/// Serialises `value` once into an `application/json` response body.
pub(super) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("API bodies serialise");
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The problems [`read_json`] answers, for the API description of the routes that read a body
/// (each an `application/problem+json` body, added where the document is assembled).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "described in the API document, never built")]
pub(super) enum BodyProblems {
    /// The body is too large
    #[response(status = 413)]
    TooLarge,
    /// The body is not JSON
    #[response(status = 415)]
    NotJson,
}

/// Decodes `bytes` as `T`; a wrong type or unknown field is reported with its path
/// (`3/projectId`), broken JSON with its line and column.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Fast path: plain serde_json (which also refuses trailing characters). Tracking the path costs
    // a few percent of a publish, so only a body that fails is decoded again, to name the field.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = json_path(e.path());
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::MalformedJson(format!("the body is not valid JSON: {inner}"));
        }
        let message = inner.to_string();
        let field = missing_field(&message).map_or(path.clone(), |f| join(&path, f));
        ApiError::InvalidField(FieldError::new(
            if field.is_empty() {
                "body".into()
            } else {
                field
            },
            strip_position(&message),
        ))
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = Vec::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push(index.to_string()),
            Segment::Map { key } => out.push(key.clone()),
            Segment::Enum { variant } => out.push(variant.clone()),
            Segment::Unknown => {}
        }
    }
    out.join("/")
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}/{field}")
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventbus::NewEvent;

    fn field_of(body: &str) -> String {
        match decode::<Vec<NewEvent>>(body.as_bytes()) {
            Err(ApiError::InvalidField(f)) => f.field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        assert_eq!(
            field_of(r#"[{"type":"a.b"},{"type":"a.b","projectId":5}]"#),
            "1/projectId"
        );
        assert_eq!(field_of(r#"[{"payload":{}}]"#), "0/type");
        assert_eq!(field_of(r#"[{"type":"a.b","bogus":1}]"#), "0/bogus");
    }

    #[test]
    fn broken_json_is_malformed() {
        assert!(matches!(
            decode::<NewEvent>(b"{\"type\":"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            decode::<NewEvent>(b"{\"type\":\"a.b\"} x"),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
