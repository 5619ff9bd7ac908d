//! `InProcessServer`: the real router, started in this test process with
//! [`eventbus_server::run`] on an ephemeral loopback port (as mini-redis's tests start theirs).
//!
//! The server gets its own thread and multi-threaded runtime, as in the binary: a test that
//! blocks its own thread (a raw `std::net` exchange) or runs on a current-thread runtime never
//! starves the server, and the server's workers never run on the test's runtime. Its settings
//! come from [`Config::from_pairs`] (which reads no environment variable) over the same
//! defaults as the binary's test servers (a SQLite file, plugins and archives in a fresh
//! temporary directory, [`ADMIN_KEY`]).
//!
//! What it cannot do: anything about the process. The Prometheus recorder and the tracing
//! subscriber are process-global (every in-process server shares one recorder, and none has a
//! log), and there is no process to signal, kill or restart: such tests use [`TestServer`].
//!
//! [`TestServer`]: super::TestServer

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventbus_server::Config;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::client::ApiClient;
use super::{ADMIN_KEY, PROCESS_TIMEOUT, admin_client};

/// The real router served by [`eventbus_server::run`] on a thread of this process. Dereferences
/// to the typed [`ApiClient`]. Dropping it cancels the shutdown token and waits (up to
/// [`PROCESS_TIMEOUT`]) for the server to close its store; [`InProcessServer::stop`] does the
/// same asynchronously and returns how `run` ended.
pub struct InProcessServer {
    api: ApiClient,
    shutdown: CancellationToken,
    done: Option<oneshot::Receiver<Result<(), String>>>,
    thread: Option<JoinHandle<()>>,
    /// Dropped last: the server has closed its database by then.
    dir: TempDir,
}

impl InProcessServer {
    /// Starts the server with the defaults plus `env` (`NAME=value` pairs, which win over the
    /// defaults), and returns once it answers `/health/live`.
    pub async fn start(env: &[(&str, &str)]) -> InProcessServer {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let config = config(&dir, env);
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let shutdown = CancellationToken::new();
        let (tx, done) = oneshot::channel();
        let token = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name(format!("eventbus-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .expect("building the server's runtime");
                let ended = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .map_err(|e| format!("registering the listener: {e}"))?;
                    eventbus_server::run(config, listener, token)
                        .await
                        .map_err(|e| e.to_string())
                });
                let _ = tx.send(ended);
            })
            .expect("spawning the server's thread");
        let client = admin_client()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("building the HTTP client");
        let mut server = InProcessServer {
            api: ApiClient::new(format!("http://{addr}"), client),
            shutdown,
            done: Some(done),
            thread: Some(thread),
            dir,
        };
        server.wait_live().await;
        server
    }

    /// Waits until `/health/live` answers; fails the test with `run`'s error when the server
    /// stopped first. Asks with a client of its own, so the suite's client starts without a
    /// kept-alive connection (as with the binary), which a short `REQUEST_READ_TIMEOUT` would
    /// close under it.
    async fn wait_live(&mut self) {
        let done = self.done.as_mut().expect("the server was started");
        let probe = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("building the HTTP client");
        let live = probe.get(self.api.url("/health/live")).send();
        tokio::select! {
            reply = tokio::time::timeout(PROCESS_TIMEOUT, live) => match reply {
                Ok(Ok(reply)) if reply.status().is_success() => {}
                Ok(Ok(reply)) => panic!("/health/live answered {}", reply.status()),
                Ok(Err(e)) => panic!("the in-process server did not answer: {e}"),
                Err(_) => panic!("the in-process server did not answer within {PROCESS_TIMEOUT:?}"),
            },
            ended = done => panic!("the in-process server stopped before serving: {ended:?}"),
        }
    }

    /// The data directory (holding `eventbus.db`).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Cancels the shutdown token and waits for `run` to return: requests in flight are
    /// answered, the store is closed. Returns `run`'s error, if any.
    pub async fn stop(mut self) -> Result<(), String> {
        self.shutdown.cancel();
        let done = self.done.take().expect("the server was started");
        done.await
            .unwrap_or_else(|_| Err("the server's thread ended without a result".into()))
    }
}

impl std::ops::Deref for InProcessServer {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // The server runs on its own thread, so waiting here blocks nothing it needs.
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + PROCESS_TIMEOUT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// The server's settings: the test servers' defaults, then `env` ([`Config::from_pairs`] reads
/// no environment variable, so a developer's `EVENT_STORE_URL` or `MAX_PAYLOAD_BYTES` never
/// leaks in).
fn config(dir: &TempDir, env: &[(&str, &str)]) -> Config {
    let path = dir.path();
    let db = format!("sqlite://{}", path.join("eventbus.db").display());
    let plugins = path.join("plugins").display().to_string();
    let archive = format!("file://{}", path.join("data/archive").display());
    let defaults = [
        ("EVENT_STORE_URL", db.as_str()),
        ("EVENT_BUS_ADMIN_KEY", ADMIN_KEY),
        ("PLUGINS_DIR", plugins.as_str()),
        ("EVENT_ARCHIVE_URL", archive.as_str()),
    ];
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| {
        pairs.retain(|(n, _)| n != name);
        pairs.push((name.to_owned(), value.to_owned()));
    };
    for (name, value) in defaults.iter().chain(env) {
        set(name, value);
    }
    Config::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .unwrap_or_else(|e| panic!("the test server's settings {pairs:?}: {e}"))
}
