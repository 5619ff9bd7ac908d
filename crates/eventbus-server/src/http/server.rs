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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::head_error::ProblemIo;

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
    let builder = builder(limits);
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
        let conn = graceful.watch(connection(&builder, stream, router.clone()));
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

/// The HTTP/1.1 settings of every connection: the head timeout, the buffer cap, keep-alive.
fn builder(limits: ReadLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
}

/// `router` served on one connection's byte stream, its bare head errors made problems.
fn connection<I>(
    builder: &http1::Builder,
    io: I,
    router: Router,
) -> http1::Connection<TokioIo<ProblemIo<I>>, TowerToHyperService<Router>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    builder.serve_connection(
        TokioIo::new(ProblemIo::new(io)),
        TowerToHyperService::new(router),
    )
}

/// Serves `router` on one connection, `io`, exactly as [`serve`] serves each accepted
/// connection, until the connection ends. The entry point of the `http_request` fuzz target
/// (`fuzz/`), which feeds it arbitrary bytes over an in-memory pipe.
#[doc(hidden)]
pub async fn serve_connection<I>(io: I, router: Router, limits: ReadLimits) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connection(&builder(limits), io, router).await
}
