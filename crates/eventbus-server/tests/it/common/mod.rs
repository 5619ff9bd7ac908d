//! The two test servers and their typed client.
//!
//! - [`InProcessServer`] (`in_process`): the real router started in this process with
//!   `eventbus_server::run` on port 0; for HTTP semantics.
//! - [`TestServer`] (here): the real `eventbus` binary on port 0; for what is about the
//!   process (signals, restarts, `kill -9`, its log, `/metrics`, the command line).
//! - [`ApiClient`] (`client`): the typed client both dereference to.
//!
//! Every server owns a fresh temporary directory holding its SQLite database, so tests run in
//! parallel without sharing state. The binary's log (its stdout) is kept in memory and shown
//! when the server fails to start.

#![allow(dead_code)]

pub mod client;
pub mod in_process;
pub mod own_pg;
pub mod pg;
pub mod receiver;
/// A fresh bucket on the test S3 server (shared with the library's tests).
#[path = "../../../../eventbus/tests/it/common/s3.rs"]
pub mod s3;
pub mod sse;

pub use client::ApiClient;
// Unused by the `wal` tests, which include this module too.
#[allow(unused_imports)]
pub use in_process::InProcessServer;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long a server may take to print its address, or to exit after SIGTERM.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// The bootstrap admin key every test server starts with; the typed client sends it.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

/// A client builder that sends `Authorization: Bearer <ADMIN_KEY>` on every request.
pub fn admin_client() -> reqwest::ClientBuilder {
    client_with_key(ADMIN_KEY)
}

/// A client builder that sends `Authorization: Bearer <key>` on every request.
pub fn client_with_key(key: &str) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}")
            .parse()
            .expect("a valid header value"),
    );
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
}

/// What the server prints on stdout once it listens.
const LISTENING: &str = "eventbus listening on http://";

/// Settings a test server never inherits from the environment of the test run.
const OWN_VARS: &[&str] = &[
    "PORT",
    "HOST",
    "EVENT_STORE_URL",
    "EVENT_STORE_DIRECT_URL",
    "EVENT_STORE_MAX_CONNECTIONS",
    "EVENT_STORE_POOL_SIZE",
    "EVENT_STORE_TIMEOUT",
    "MAX_PAYLOAD_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_BATCH_EVENTS",
    "STRICT_EVENT_TYPES",
    "SQLITE_SYNCHRONOUS",
    "LOG_FORMAT",
    "RUST_LOG",
    "SSE_HEARTBEAT_INTERVAL",
    "SSE_MAX_CONNECTIONS",
    "SSE_QUEUE",
    "EVENT_BUS_ADMIN_KEY",
    "PLUGINS_DIR",
];

/// The `eventbus` binary running on an ephemeral loopback port over its own data directory.
pub struct TestServer {
    dir: TempDir,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    api: ApiClient,
}

impl TestServer {
    /// Starts the server with the defaults plus `env` (which wins over the defaults).
    pub async fn start(env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let client = admin_client()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("building the HTTP client");
        let mut server = TestServer {
            dir,
            env,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            api: ApiClient::new(String::new(), client),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let db = self.dir.path().join("eventbus.db");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
        for var in OWN_VARS {
            cmd.env_remove(var);
        }
        cmd.env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("EVENT_STORE_URL", format!("sqlite://{}", db.display()))
            .env("RUST_LOG", "warn")
            .env("EVENT_BUS_ADMIN_KEY", ADMIN_KEY);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // The data directory is also the working directory, so no stray `.env` is read.
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning the eventbus binary");

        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = self.log.clone();
        // Keep draining stdout for the life of the process, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(LISTENING)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                log.lock().unwrap().push(line);
            }
        });
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        match tokio::time::timeout(PROCESS_TIMEOUT, rx).await {
            Ok(Ok(addr)) => {
                assert!(
                    addr.starts_with("127.0.0.1:"),
                    "the server listens on {addr}, not on loopback"
                );
                self.api.set_base(format!("http://{addr}"));
            }
            Ok(Err(_)) => {
                let status = self.child.as_mut().unwrap().wait().ok();
                panic!(
                    "the server exited ({status:?}) before listening; its output:\n{}",
                    self.log_text()
                );
            }
            Err(_) => {
                self.kill();
                panic!(
                    "the server did not print its address in time; its output:\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// The server's output so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The data directory (holding `eventbus.db`).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// `kill -9`: the process dies at once, without any chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (a graceful shutdown) and returns without waiting.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits (up to [`PROCESS_TIMEOUT`]) for the process to exit and returns its status.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the server was started");
        for _ in 0..(PROCESS_TIMEOUT.as_millis() / 20) {
            if let Some(status) = child.try_wait().expect("waiting for the server") {
                self.child = None;
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        panic!(
            "the server did not exit within {PROCESS_TIMEOUT:?}; its output:\n{}",
            self.log_text()
        );
    }

    /// Starts a new process on the same data directory and settings. A process still running
    /// is killed (`kill -9`) first.
    pub async fn restart(&mut self) {
        self.kill();
        self.log.lock().unwrap().push("---- restart ----".into());
        self.spawn().await;
    }

    /// Like [`TestServer::restart`], with `env` set (or changed) for the new process.
    pub async fn restart_with(&mut self, env: &[(&str, &str)]) {
        for (k, v) in env {
            self.env.retain(|(name, _)| name != k);
            self.env.push(((*k).to_owned(), (*v).to_owned()));
        }
        self.restart().await;
    }
}

impl std::ops::Deref for TestServer {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A response: status, content type and body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The `content-type` header, empty when absent.
    pub content_type: String,
    /// The body as JSON, or as a JSON string holding the text when it is not JSON.
    pub body: Value,
}

impl Reply {
    /// Reads the whole response.
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.expect("reading the response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            content_type,
            body,
        }
    }

    /// Asserts an RFC 9457 problem with `status`, whose `errors[0].field` is `field`.
    pub fn assert_problem_field(&self, status: StatusCode, field: &str) {
        self.assert_problem(status);
        assert_eq!(
            self.body["errors"][0]["field"],
            json!(field),
            "the problem names another field: {}",
            self.body
        );
    }

    /// Asserts an RFC 9457 problem with `status`, whose `detail` mentions `word`.
    pub fn assert_problem_detail(&self, status: StatusCode, word: &str) {
        self.assert_problem(status);
        let detail = self.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.to_lowercase().contains(&word.to_lowercase()),
            "the problem's detail does not mention `{word}`: {}",
            self.body
        );
    }

    /// Asserts an RFC 9457 problem with `status`.
    pub fn assert_problem(&self, status: StatusCode) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.body
        );
        assert_eq!(
            self.body["status"],
            json!(status.as_u16()),
            "problem status: {}",
            self.body
        );
        assert!(
            self.body["type"].is_string(),
            "a problem has a type: {}",
            self.body
        );
        assert!(
            self.body["title"].is_string(),
            "a problem has a title: {}",
            self.body
        );
    }
}

/// The `id`s of an array of events, in order.
pub fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("an array of events")
        .iter()
        .map(|e| e["id"].as_str().expect("an event has an id").to_owned())
        .collect()
}

/// The `seq` of an event.
pub fn seq(event: &Value) -> u64 {
    event["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {event}"))
}

/// `id → seq` of a list of events.
pub fn seqs_by_id(events: &[Value]) -> HashMap<String, u64> {
    events
        .iter()
        .map(|e| (e["id"].as_str().expect("an id").to_owned(), seq(e)))
        .collect()
}

/// The `(id, key)` that `eventbus keys create` printed.
pub fn printed_key(out: &str) -> (String, String) {
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {out}"))
            .trim()
            .to_owned()
    };
    (line("id:"), line("key:"))
}

/// The first column of `sql`'s rows, run by `psql` on `url`.
pub fn psql_rows(url: &str, sql: &str) -> Vec<String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-qAtX", "-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
