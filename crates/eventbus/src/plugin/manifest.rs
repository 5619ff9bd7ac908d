//! `plugin.json`: what a JavaScript plugin is, receives, may publish, and may use (DESIGN.md §8).
//!
//! [`Manifest::parse`] is the only way from the untrusted file to a [`Manifest`]; it refuses
//! unknown fields and names the offending field in every error, so a broken manifest is reported
//! (in `GET /v1/plugins` and by `POST /v1/plugins`) instead of half-loaded.

use serde::{Deserialize, Serialize};

use crate::core::pattern::Pattern;

/// Largest accepted `plugin.json`, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Largest accepted `index.js`, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;
/// Longest plugin name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Memory limit when the manifest gives none, in MiB.
pub const DEFAULT_MEMORY_MB: u32 = 32;
/// Time budget of one call when the manifest gives none, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u32 = 100;
/// Accepted memory limits, in MiB.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u32> = 4..=1024;
/// Accepted time budgets, in milliseconds.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u32> = 1..=60_000;

/// What a middleware plugin's failure (exception, timeout, memory) does to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// The publish fails; nothing is stored (default).
    #[default]
    Reject,
    /// The event continues unchanged, as if the plugin were absent.
    Pass,
}

/// Resource limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Most memory its JavaScript runtime may allocate, in MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// Most time one call (`onEvent`, `transform`, `webhookPayload`) may run, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
}

fn default_memory() -> u32 {
    DEFAULT_MEMORY_MB
}

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_MS
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: DEFAULT_MEMORY_MB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

/// A parsed and validated `plugin.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// Unique name: `[a-z][a-z0-9_-]*`, at most [`MAX_NAME_LEN`] bytes; also its folder's name.
    pub name: String,
    /// Free-form version, shown in the API and the lifecycle events.
    pub version: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Patterns of the events it receives (`onEvent`, `transform`, `webhookPayload`).
    #[serde(default)]
    pub subscribe: Vec<Pattern>,
    /// Patterns of the types `ctx.publish` may emit; anything else is refused.
    #[serde(default)]
    pub publish: Vec<Pattern>,
    /// Whether `transform(event)` runs in the publish chain.
    #[serde(default)]
    pub middleware: bool,
    /// What a failing `transform` does to the event.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Memory and time limits.
    #[serde(default)]
    pub limits: Limits,
    /// Free-form settings, given to the plugin as `ctx.config`.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// Why a manifest (or a plugin folder) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ManifestError {
    /// The field at fault (`name`, `limits.memoryMb`, …), or `plugin.json` for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ManifestError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Manifest {
    /// Parses and validates `plugin.json`.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::new(
                "plugin.json",
                format!(
                    "is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::new("plugin.json", e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the fields serde cannot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_name(&self.name)?;
        if self.version.trim().is_empty() || self.version.len() > 64 {
            return Err(ManifestError::new(
                "version",
                "must hold 1 to 64 characters",
            ));
        }
        if self.subscribe.is_empty() && !self.middleware {
            return Err(ManifestError::new(
                "subscribe",
                "name at least one pattern (e.g. \"project.*\"), or the plugin receives nothing",
            ));
        }
        if !MEMORY_MB_RANGE.contains(&self.limits.memory_mb) {
            return Err(ManifestError::new(
                "limits.memoryMb",
                format!(
                    "must be between {} and {}",
                    MEMORY_MB_RANGE.start(),
                    MEMORY_MB_RANGE.end()
                ),
            ));
        }
        if !TIMEOUT_MS_RANGE.contains(&self.limits.timeout_ms) {
            return Err(ManifestError::new(
                "limits.timeoutMs",
                format!(
                    "must be between {} and {}",
                    TIMEOUT_MS_RANGE.start(),
                    TIMEOUT_MS_RANGE.end()
                ),
            ));
        }
        if !(self.config.is_null() || self.config.is_object()) {
            return Err(ManifestError::new("config", "must be an object"));
        }
        Ok(())
    }

    /// Whether `ctx.publish` may emit `event_type`.
    pub fn may_publish(&self, event_type: &str) -> bool {
        self.publish.iter().any(|p| p.matches(event_type))
    }

    /// Whether the plugin receives `event_type`.
    pub fn receives(&self, event_type: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(event_type))
    }
}

/// Checks a plugin name: `[a-z][a-z0-9_-]*`, at most [`MAX_NAME_LEN`] bytes.
pub fn check_name(name: &str) -> Result<(), ManifestError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::new(
            "name",
            format!(
                "`{name}` is not a plugin name: use [a-z][a-z0-9_-]*, at most {MAX_NAME_LEN} bytes"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_design_example_with_defaults() {
        let m = Manifest::parse(
            br#"{"name":"audit","version":"1.0.0","subscribe":["project.*"],"publish":["audit.*"]}"#,
        )
        .unwrap();
        assert_eq!(m.limits, Limits::default());
        assert_eq!(m.failure_policy, FailurePolicy::Reject);
        assert!(m.may_publish("audit.summary"));
        assert!(!m.may_publish("billing.charged"));
        assert!(m.receives("project.created"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"name":"Audit","version":"1"}"#, "name"),
            (r#"{"name":"a","version":"","subscribe":[">"]}"#, "version"),
            (r#"{"name":"a","version":"1"}"#, "subscribe"),
            (
                r#"{"name":"a","version":"1","subscribe":[">"],"limits":{"memoryMb":1}}"#,
                "limits.memoryMb",
            ),
            (
                r#"{"name":"a","version":"1","subscribe":[">"],"limits":{"timeoutMs":0}}"#,
                "limits.timeoutMs",
            ),
            (
                r#"{"name":"a","version":"1","subscribe":["Bad"]}"#,
                "plugin.json",
            ),
            (
                r#"{"name":"a","version":"1","subscribe":[">"],"extra":1}"#,
                "plugin.json",
            ),
            (
                r#"{"name":"a","version":"1","subscribe":[">"],"config":[1]}"#,
                "config",
            ),
        ];
        for (json, field) in cases {
            let e = Manifest::parse(json.as_bytes()).unwrap_err();
            assert_eq!(&e.field, field, "{json}: {e}");
        }
    }
}
