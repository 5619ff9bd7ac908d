//! The HTTP/1.1 connection loop: accepts connections and serves the router on each, with the
//! limits a public server needs against slow or oversized requests.
//!
//! - **Slow-loris:** a client must send its request head (request line and headers) within
//!   `REQUEST_READ_TIMEOUT`, or the connection is closed; bodies get the same budget again in
//!   `body::read_json`. Idle keep-alive connections are held to the same timeout for their next
//!   request head.
//! - **Header size:** a request head larger than `MAX_HEADER_BYTES` is answered `431` and the
//!   connection closed (hyper's read buffer is capped at that size).
//! - **Unparsable heads** (a raw `>` in the target, an oversized head) are answered with a
//!   problem+json body, not hyper's bare status (`head_error`).
//! - **Shutdown:** when `shutdown` fires, the listener closes, idle connections close at once,
//!   and connections with a request in flight finish it (the caller bounds the wait).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Limits on reading requests.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// How long a client may take to send a request head.
    pub header_timeout: Duration,
    /// The largest request head, in bytes (at least 8192).
    pub max_header_bytes: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ReadLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let io = TokioIo::new(super::head_error::ProblemIo::new(stream));
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
