//! Any bytes as what a client sends on one connection to the real server: the whole router
//! (`eventbus_server::http::router`) on a SQLite store in a temporary directory, served by
//! `serve_connection` exactly as the server serves each accepted TCP connection (its HTTP/1.1
//! settings, its read limits, its problem bodies for unparsable heads), over an in-memory pipe.
//!
//! The first byte picks the size of the pipe's buffer (16 to 4096 bytes), so reads and writes
//! split at every size; the rest is sent, then the client's side is closed for writing. No key
//! is valid (no admin key is set and none is stored): `/v1` routes answer 401 once the head is
//! read, and the open routes (`/health/*`, `/metrics`, `/openapi.json`) answer. The handlers
//! behind a key are the other targets' business.
//!
//! Never panics, and within 5 seconds the exchange is over: the server read what it wanted,
//! answered, and closed the connection. What it wrote, if anything, starts with an HTTP/1.x
//! response, and when that response's head is whole, an error (4xx, 5xx) is a problem+json,
//! hyper's own answers to unparsable heads included.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use eventbus::outbox::Outboxes;
use eventbus::security::Keys;
use eventbus_server::fuzzing::{ReadLimits, serve_connection};
use eventbus_server::http::{AppState, router};
use eventbus_server::{Config, build_bus};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one exchange may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(5);

struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
    limits: ReadLimits,
    _dir: tempfile::TempDir,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path();
    let store = format!("sqlite://{}", path.join("eventbus.db").display());
    let plugins = path.join("plugins").display().to_string();
    let archive = format!("file://{}", path.join("archive").display());
    let config = Config::from_pairs([
        ("EVENT_STORE_URL", store.as_str()),
        ("PLUGINS_DIR", plugins.as_str()),
        ("EVENT_ARCHIVE_URL", archive.as_str()),
    ])
    .expect("the settings are valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let limits = ReadLimits {
        header_timeout: Duration::from_millis(config.request_read_timeout),
        max_header_bytes: config.max_header_bytes as usize,
    };
    let router = runtime.block_on(async {
        let bus = build_bus(&config).await.expect("the bus starts");
        let keys = Keys::open(bus.store().clone(), None, config.token_secret())
            .await
            .expect("the keys open");
        let outboxes = Arc::new(Outboxes::start(&bus, Vec::new()));
        router(AppState {
            bus: (*bus).clone(),
            plugins: bus.plugins().cloned(),
            config: Arc::new(config),
            archive: bus.archive().clone(),
            keys: Arc::new(keys),
            limits: Default::default(),
            outboxes,
        })
    });
    Server {
        runtime,
        router,
        limits,
        _dir: dir,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&size, request)) = data.split_first() else {
        return;
    };
    let server = &*SERVER;
    let answer = server.runtime.block_on(async {
        let (client, end) = tokio::io::duplex(16 * (usize::from(size) + 1));
        let connection = tokio::spawn(serve_connection(end, server.router.clone(), server.limits));
        let exchange = async {
            let (mut rx, mut tx) = tokio::io::split(client);
            let send = async {
                // The server may close before it has read everything.
                let _ = tx.write_all(request).await;
                let _ = tx.shutdown().await;
            };
            let mut answer = Vec::new();
            let receive = rx.read_to_end(&mut answer);
            let ((), received) = tokio::join!(send, receive);
            received.expect("reading from an in-memory pipe");
            if let Err(e) = connection.await {
                std::panic::resume_unwind(e.into_panic());
            }
            answer
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| {
                panic!("the server did not answer and close the connection within {DEADLINE:?}")
            })
    });
    check(&answer);
});

/// The first response the server wrote is HTTP/1.x, and a problem when it is an error.
fn check(answer: &[u8]) {
    if answer.is_empty() {
        return;
    }
    assert!(
        answer.starts_with(b"HTTP/1."),
        "the server wrote something else than a response: {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
    let Some(head_end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        // hyper ends a connection whose request turns out malformed after its answer was queued
        // (a bad chunk or trailer in the body) without writing the rest of that answer: a client
        // that has not read it yet gets it cut short, then the end of the connection (as in
        // `corpus/http_request/cut-short-by-a-bad-trailer`, with a 128-byte pipe). The
        // connection ended, as it may on bad input.
        return;
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line with a status: {head}"));
    if status >= 400 {
        assert!(
            head.contains("\r\ncontent-type: application/problem+json"),
            "an error answered without a problem body: {head}"
        );
    }
}
