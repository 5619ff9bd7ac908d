//! `s3://<bucket>/<prefix>`: archive files as objects of an S3 bucket (AWS or any S3-compatible
//! service), through the `object_store` crate.
//!
//! An S3 `PUT` is atomic (a reader sees the old object, or none, or the whole new one) and
//! durable once answered, so `put` is one `PUT` and there is never a temporary object: an
//! interrupted run leaves at most a complete orphan, which the next run removes. One `PUT`
//! carries at most 5 GiB; a segment is at most its batch of events, compressed.
//!
//! Settings come from the usual `AWS_*` environment variables ([`S3Target::from_env`]):
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`
//! (or `AWS_DEFAULT_REGION`; `us-east-1` without either), `AWS_ENDPOINT` for S3-compatible services, `AWS_ALLOW_HTTP=true`
//! for a plain-HTTP endpoint, web identity and container credentials. Requests go through the
//! bus's own HTTP client ([`super::http`]), time out after [`REQUEST_TIMEOUT`] and are retried at
//! most [`MAX_RETRIES`] times within [`RETRY_TIMEOUT`], so a query over archived events fails
//! with a clear error, rather than hanging, while the storage is down.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig};

use super::http::HyperConnector;
use super::{ArchiveTarget, check_name};
use crate::store::archive::ArchiveError;

/// Longest wait for one request, its response body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most retries of a failed request.
pub const MAX_RETRIES: usize = 3;
/// Longest time spent retrying one request.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Objects under a prefix of an S3 bucket.
#[derive(Clone)]
pub struct S3Target {
    store: Arc<dyn ObjectStore>,
    /// The `s3://` URL, for messages (it holds no secret: credentials come from settings).
    url: String,
    prefix: Path,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Target").field("url", &self.url).finish()
    }
}

impl S3Target {
    /// The target `url` (`s3://<bucket>/<prefix>`) names, with settings from the `AWS_*`
    /// environment variables.
    pub fn from_env(url: &str) -> Result<Self, ArchiveError> {
        let settings = std::env::vars().filter(|(key, _)| key.starts_with("AWS_"));
        Self::with_settings(url, settings)
    }

    /// The target `url` names, with `settings` given as `AWS_*` names and values (the
    /// environment is not read). Unknown names are ignored, as in the environment.
    pub fn with_settings(
        url: &str,
        settings: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ArchiveError> {
        let invalid = |why: &str| {
            ArchiveError::Target(format!(
                "`{url}` is not a valid archive URL ({why}); use s3://<bucket>/<prefix>"
            ))
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("not s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket"));
        }
        let prefix = Path::parse(prefix).map_err(|e| invalid(&e.to_string()))?;

        let mut builder = AmazonS3Builder::new();
        for (key, value) in settings {
            if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        // Said here, at start, rather than as a refused connection at the first request.
        let setting = |key| builder.get_config_value(&key).unwrap_or_default();
        let allow_http = setting(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
        for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
            let endpoint = setting(key);
            if endpoint.starts_with("http://") && allow_http != "true" {
                return Err(ArchiveError::Target(format!(
                    "{url}: the endpoint {endpoint} is plain HTTP; set AWS_ALLOW_HTTP=true to allow it"
                )));
            }
        }
        let retry = RetryConfig {
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_TIMEOUT,
            ..RetryConfig::default()
        };
        // The URL's bucket wins over an `AWS_BUCKET` setting.
        let store = builder
            .with_bucket_name(bucket)
            .with_http_connector(HyperConnector {
                timeout: REQUEST_TIMEOUT,
                connect_timeout: CONNECT_TIMEOUT,
            })
            .with_retry(retry)
            .build()
            .map_err(|e| ArchiveError::Target(format!("{url}: {e}")))?;
        Ok(S3Target {
            store: Arc::new(store),
            url: url.to_owned(),
            prefix,
        })
    }

    fn path(&self, name: &str) -> Result<Path, ArchiveError> {
        check_name(name)?;
        Ok(self.prefix.clone().join(name))
    }

    fn error(&self, what: &str, name: &str, e: object_store::Error) -> ArchiveError {
        ArchiveError::Target(format!("{what} {name} in {}: {e}", self.url))
    }
}

#[async_trait]
impl ArchiveTarget for S3Target {
    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        let path = self.path(name)?;
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|e| self.error("writing", name, e))?;
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let path = self.path(name)?;
        let read = async { self.store.get(&path).await?.bytes().await };
        let bytes = read.await.map_err(|e| self.error("reading", name, e))?;
        Ok(bytes.to_vec())
    }

    async fn remove(&self, name: &str) -> Result<(), ArchiveError> {
        let path = self.path(name)?;
        match self.store.delete(&path).await {
            Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
                Err(self.error("removing", name, e))
            }
            _ => Ok(()),
        }
    }

    async fn list(&self) -> Result<Vec<String>, ArchiveError> {
        // Follows every page of the listing; objects deeper under the prefix are not ours.
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.error("listing", "objects", e))?;
        let mut names: Vec<String> = listed
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn remove_temporary(&self) -> Result<(), ArchiveError> {
        // A PUT is atomic: an interrupted one leaves nothing behind.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn urls_and_settings_are_checked_when_opening() {
        let ok = S3Target::with_settings("s3://bucket/a/b/", settings(&[])).unwrap();
        assert_eq!(ok.path("x.zst").unwrap().as_ref(), "a/b/x.zst");
        let ok = S3Target::with_settings("s3://bucket", settings(&[])).unwrap();
        assert_eq!(ok.path("x.zst").unwrap().as_ref(), "x.zst");
        assert!(format!("{ok:?}").contains("s3://bucket"));

        for bad in ["s3://", "s3:///prefix", "s3://bucket/a//b", "file://x"] {
            let e = S3Target::with_settings(bad, settings(&[])).unwrap_err();
            assert!(
                e.to_string().contains("s3://<bucket>/<prefix>"),
                "{bad}: {e}"
            );
        }
        let plain = settings(&[("AWS_ENDPOINT", "http://127.0.0.1:9000")]);
        let e = S3Target::with_settings("s3://bucket", plain).unwrap_err();
        assert!(e.to_string().contains("AWS_ALLOW_HTTP=true"), "{e}");
        let allowed = settings(&[
            ("AWS_ENDPOINT", "http://127.0.0.1:9000"),
            ("AWS_ALLOW_HTTP", "true"),
        ]);
        assert!(S3Target::with_settings("s3://bucket", allowed).is_ok());
    }
}
