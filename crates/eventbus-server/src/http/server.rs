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
//! - **Streams:** a connection that opens with `GET /v1/stream` is served without hyper's
//!   buffers (`stream_conn`); every other one, and a stream connection after an error answer,
//!   by hyper.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::head_error::ProblemIo;
use super::stream_conn::{self, Rewind, Served, Sniffed};

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
    // Connections still reading their first request head stop at once on shutdown.
    let stopping = CancellationToken::new();
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
        let conn = accepted(
            stream,
            router.clone(),
            builder.clone(),
            limits,
            stopping.clone(),
            Some(graceful.watcher()),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.cancel();
    // Waits for every connection task, stream connections included (the caller ends the
    // streams when `shutdown` fires).
    graceful.shutdown().await;
    Ok(())
}

/// Serves one accepted connection: as a stream connection when it opens with a stream request
/// (`stream_conn`), with hyper otherwise or once that request was answered with an error.
/// `watcher` (held until the connection ends) makes the graceful shutdown wait for it.
async fn accepted<I>(
    mut io: I,
    router: Router,
    builder: http1::Builder,
    limits: ReadLimits,
    stopping: CancellationToken,
    watcher: Option<Watcher>,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let prefix = match stream_conn::sniff(&mut io, limits.header_timeout, &stopping).await {
        Sniffed::Closed => return Ok(()),
        Sniffed::Other(prefix) => prefix,
        Sniffed::Stream(request) => {
            match stream_conn::serve_stream(&mut io, *request, router.clone()).await {
                Served::Closed => return Ok(()),
                Served::KeepAlive => Bytes::new(),
            }
        }
    };
    let conn = connection(&builder, Rewind::new(prefix, io), router);
    match watcher {
        Some(watcher) => watcher.watch(conn).await,
        None => conn.await,
    }
}

/// The HTTP/1.1 settings of every connection: the head timeout, the buffer cap, keep-alive, and
/// one write buffer in order.
///
/// Writes are flattened (`writev(false)`), never queued: with queued writes, hyper (1.x) puts the
/// answer to a malformed pipelined request before the body of the answer ahead of it when that
/// body is still waiting for the client to read, splicing one response into the other (and a
/// debug build panics on the assertion that forbids it). Flattened, every byte goes out in the
/// order it was written.
fn builder(limits: ReadLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .writev(false)
        .keep_alive(true);
    builder
}

/// `router` served by hyper on one connection's byte stream, its bare head errors made problems.
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
    accepted(
        io,
        router,
        builder(limits),
        limits,
        CancellationToken::new(),
        None,
    )
    .await
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A request answered while the client was not reading, then a malformed one on the same
    /// connection: hyper wrote the error answer in the middle of the first answer's body (and
    /// panicked in debug builds). The first answer must arrive whole, then the error.
    #[tokio::test]
    async fn an_error_answer_was_spliced_into_the_unread_body_of_the_answer_before_it() {
        let body = "x".repeat(92);
        let router = Router::new().fallback({
            let body = body.clone();
            move || async move { (StatusCode::NOT_FOUND, body) }
        });
        let limits = ReadLimits {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        };
        // A pipe of 128 bytes: the first answer cannot be written at once.
        let (client, end) = tokio::io::duplex(128);
        let served = tokio::spawn(serve_connection(end, router, limits));
        let (mut rx, mut tx) = tokio::io::split(client);
        let send = async {
            tx.write_all(
                b"GET /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n0\r\n\r\n\
                  GET /b HTTP/1.1\r\nhost: \0x\r\n\r\n",
            )
            .await
            .unwrap();
            tx.shutdown().await.unwrap();
        };
        let mut answer = Vec::new();
        let (_, read) = tokio::join!(send, rx.read_to_end(&mut answer));
        read.unwrap();
        assert!(served.await.is_ok(), "the connection task panicked");
        let answer = String::from_utf8(answer).unwrap();
        let (first, error) = answer
            .split_once("\r\n\r\n")
            .and_then(|(head, rest)| Some((head, rest.strip_prefix(body.as_str())?)))
            .unwrap_or_else(|| panic!("the first answer is not whole: {answer:?}"));
        assert!(first.starts_with("HTTP/1.1 404 "), "{answer:?}");
        assert!(
            error.starts_with("HTTP/1.1 400 "),
            "the error follows the first answer: {answer:?}"
        );
    }
}
