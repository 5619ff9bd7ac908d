//! A bucket of its own on the test S3 server, for the `s3://` archive target.
//!
//! The server is the S3-compatible one at `EVENTBUS_TEST_S3_ENDPOINT`; [`TlsServer`] is a second
//! one serving HTTPS (`scripts/test` starts both, see `scripts/s3-server`). Without them the S3
//! tests print why and pass, unless `CI=true`, where they fail. Each test creates a bucket (or,
//! on the HTTPS server, a prefix) with a fresh name, so tests run in parallel.
//!
//! The server's integration tests include this file too (`#[path]`), so both crates share it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use eventbus::store::archive::S3Target;

/// A fresh bucket on the test S3 server.
#[derive(Debug)]
pub struct TestBucket {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket's name.
    pub name: String,
}

/// The value of the setting `name`, or `None` (after saying why) when it is unset outside CI.
fn required(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(_) => {
            eventbus::testing::skip(&format!(
                "{name} is not set (scripts/s3-server starts the test S3 servers)"
            ));
            None
        }
    }
}

/// A name no other test of any run uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{nanos}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The HTTPS test server: its certificate is signed by a CA of its own, which a client trusts
/// only when told to (`SSL_CERT_FILE`). Its bucket `eventbus-tls-test` exists already.
#[derive(Debug)]
pub struct TlsServer {
    /// `https://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The CA certificate (PEM).
    pub ca_file: String,
    /// The bucket.
    pub bucket: &'static str,
}

impl TlsServer {
    /// The server of `EVENTBUS_TEST_S3_TLS_ENDPOINT` and `EVENTBUS_TEST_S3_TLS_CA`, or `None`
    /// when they are not set (outside CI).
    pub fn from_env() -> Option<TlsServer> {
        Some(TlsServer {
            endpoint: required("EVENTBUS_TEST_S3_TLS_ENDPOINT")?,
            ca_file: required("EVENTBUS_TEST_S3_TLS_CA")?,
            bucket: "eventbus-tls-test",
        })
    }
}

impl TestBucket {
    /// Creates a bucket, or `None` when no test S3 server is configured (outside CI).
    pub async fn create() -> Option<TestBucket> {
        let endpoint = required("EVENTBUS_TEST_S3_ENDPOINT")?;
        let name = unique_name("eventbus-test");
        let reply = reqwest::Client::new()
            .put(format!("{endpoint}/{name}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {name} on {endpoint}: {e}"));
        assert!(
            reply.status().is_success(),
            "creating bucket {name}: {reply:?}"
        );
        Some(TestBucket { endpoint, name })
    }

    /// The `AWS_*` settings that reach the test server.
    pub fn settings(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.name)
    }

    /// A target under `prefix` of this bucket.
    pub fn target(&self, prefix: &str) -> S3Target {
        S3Target::with_settings(&self.url(prefix), self.settings()).expect("S3 target")
    }

    /// Every object key of the bucket, read with a plain ListObjectsV2 request (not through the
    /// code under test).
    pub async fn keys(&self) -> Vec<String> {
        let url = format!("{}/{}?list-type=2&max-keys=1000", self.endpoint, self.name);
        let body = reqwest::get(&url)
            .await
            .and_then(|r| r.error_for_status())
            .expect("listing the bucket")
            .text()
            .await
            .expect("listing body");
        assert!(
            body.contains("<IsTruncated>false</IsTruncated>"),
            "one page: {body}"
        );
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .map(|rest| rest.split("</Key>").next().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    }
}
