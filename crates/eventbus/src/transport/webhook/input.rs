//! The webhook API's types: [`EndpointInput`] as a request carries it, and its validation into
//! the store's patch (every error names its field); where a replay starts ([`ReplayFrom`]); what
//! a test send produced ([`TestResult`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::WebhookError;
use super::client::{NetworkPolicy, custom_header, validate_url};
use super::error::invalid;
use crate::core::event::Event;
use crate::core::pattern::Pattern;
use crate::core::time::Timestamp;
use crate::store::webhook::{EndpointPatch, WebhookFormat};

/// Most patterns, headers and description bytes an endpoint may have.
const MAX_PATTERNS: usize = 64;
const MAX_HEADERS: usize = 32;
const MAX_DESCRIPTION: usize = 1024;

/// Distinguishes an absent field from an explicit `null`.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An endpoint as the API receives it (create: `url` required; update: every field optional,
/// `null` clears).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointInput {
    /// Target URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Free text.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub description: Option<Option<String>>,
    /// Type patterns (every type when absent).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Project scope.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub project_id: Option<Option<String>>,
    /// Tenant scope.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub tenant_id: Option<Option<String>>,
    /// Extra headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Requests per second.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub rate_limit: Option<Option<u32>>,
    /// Strict ordering.
    #[serde(default)]
    pub ordered: Option<bool>,
    /// What each request carries: `json` (the event, the default), `cloudevents` (a
    /// structured CloudEvent) or `cloudevents-binary` (CloudEvents binary mode).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^(json|cloudevents|cloudevents-binary)$"))]
    pub format: Option<String>,
    /// Disabled.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Signing secret (create only; generated when absent).
    #[serde(default)]
    pub secret: Option<String>,
}

impl EndpointInput {
    /// Validates the input into a patch (`creating`: for a new endpoint, else for a change);
    /// every error names its field. A URL's form is checked against `policy` here, its host
    /// name's addresses by the caller.
    pub(super) fn validate(
        self,
        creating: bool,
        policy: &NetworkPolicy,
    ) -> Result<EndpointPatch, WebhookError> {
        let input = self;
        if !creating && input.secret.is_some() {
            return Err(invalid(
                "secret",
                "rotate the secret with POST /v1/webhooks/{id}/rotate-secret",
            ));
        }
        if let Some(url) = &input.url {
            validate_url(url, policy).map_err(|e| invalid("url", e.0))?;
        }
        if let Some(Some(d)) = &input.description
            && d.len() > MAX_DESCRIPTION
        {
            return Err(invalid(
                "description",
                format!("at most {MAX_DESCRIPTION} bytes"),
            ));
        }
        let event_types = match input.event_types {
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "eventTypes",
                    "give at least one pattern, e.g. `>` for every type",
                ));
            }
            Some(list) if list.len() > MAX_PATTERNS => {
                return Err(invalid(
                    "eventTypes",
                    format!("at most {MAX_PATTERNS} patterns"),
                ));
            }
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| {
                        Pattern::parse(p)
                            .map_err(|e| invalid(&format!("eventTypes/{i}"), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        for (name, value) in [
            ("projectId", &input.project_id),
            ("tenantId", &input.tenant_id),
        ] {
            if let Some(Some(v)) = value
                && (v.is_empty() || v.len() > 128)
            {
                return Err(invalid(name, "1 to 128 characters"));
            }
        }
        if let Some(headers) = &input.headers {
            if headers.len() > MAX_HEADERS {
                return Err(invalid("headers", format!("at most {MAX_HEADERS} headers")));
            }
            for (name, value) in headers {
                custom_header(name, value)
                    .map_err(|e| invalid(&format!("headers/{name}"), e.to_string()))?;
            }
        }
        if let Some(Some(0)) = input.rate_limit {
            return Err(invalid(
                "rateLimit",
                "requests per second must be at least 1 (null for no limit)",
            ));
        }
        let format = match input.format.as_deref() {
            None => None,
            Some(name) => Some(WebhookFormat::parse(name).ok_or_else(|| {
                invalid(
                    "format",
                    "`json` (the event), `cloudevents` (a structured CloudEvent) or \
                     `cloudevents-binary` (CloudEvents binary mode)",
                )
            })?),
        };
        Ok(EndpointPatch {
            url: input.url,
            description: input.description,
            event_types,
            project_id: input.project_id,
            tenant_id: input.tenant_id,
            headers: input.headers,
            rate_limit: input.rate_limit,
            ordered: input.ordered,
            format,
            disabled: input.disabled,
            rotate: None,
        })
    }
}

/// What a test send produced.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// Whether the endpoint answered 2xx.
    pub success: bool,
    /// The status code.
    pub status_code: Option<u16>,
    /// Duration.
    pub duration_ms: u64,
    /// The answer, truncated.
    pub response_body: Option<String>,
    /// The error.
    pub error: Option<String>,
    /// The test event sent.
    pub event: Event,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum ReplayFrom {
    /// Events with this `seq` and later.
    Seq(u64),
    /// Events whose timestamp is at or after this.
    Time(Timestamp),
}

/// Where a replay ends (the end of the log when none is given).
#[derive(Debug, Clone, Copy)]
pub enum ReplayUntil {
    /// Events up to this `seq`, inclusive.
    Seq(u64),
    /// Events whose timestamp is before this.
    Time(Timestamp),
}
