//! Connections that open with `GET /v1/stream`, served without hyper's connection buffers.
//!
//! hyper keeps a read buffer and a write buffer of 8 KiB each for as long as a connection lives.
//! An SSE stream lives for hours and writes a few hundred bytes now and then, so those buffers
//! were most of its memory (15 KiB of the server's RSS per idle stream). So [`sniff`] reads a
//! connection's first bytes itself, and when they are one whole request head that is
//! `GET /v1/stream…` over HTTP/1.1, with no body and nothing after it, [`serve_stream`] answers
//! it: the request goes through the same router (authentication, limits, CORS, the handler),
//! and its response is written straight to the socket, in chunks when it streams.
//!
//! Everything else goes to hyper with the bytes read so far put back in front ([`Rewind`]), so
//! hyper sees exactly what the client sent: another route, a head split over several reads, a
//! head larger than [`SNIFF_BYTES`], a body, pipelined requests, an `Expect` or `Upgrade`
//! header, HTTP/1.0, anything `httparse` refuses (hyper then answers it as before).
//!
//! After a response of known length (an error: `400`, `401`, `429`, …) the connection goes on
//! with hyper, keep-alive as usual, unless the client asked for `Connection: close`. After a
//! streamed response ends (its token expired, it lagged, the server is shutting down) the
//! connection is closed, as bytes the client sent meanwhile were not read as requests.
//!
//! The head's read timeout: the first read is bounded by the same `REQUEST_READ_TIMEOUT` as
//! hyper's head read, and a connection that sends nothing in that time is closed without an
//! answer, as hyper does. A head that arrives in pieces goes to hyper after its first piece,
//! and hyper's own timeout starts then.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version, header};
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

/// The largest first read looked at; a larger head goes to hyper.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// Most headers a stream request may carry here (more go to hyper, which has its own limit).
const MAX_HEADERS: usize = 64;

/// What the first read of a connection found.
pub enum Sniffed {
    /// A stream request to serve with [`serve_stream`].
    Stream(Box<Request<Body>>),
    /// Anything else: serve the connection with hyper, these bytes first.
    Other(Bytes),
    /// Nothing came within the head timeout, the client closed, or the server is stopping.
    Closed,
}

/// Reads the first bytes of `io` (one read, within `timeout`, or until `stop`) and tells
/// whether they are a stream request this module serves.
pub async fn sniff<I>(io: &mut I, timeout: Duration, stop: &CancellationToken) -> Sniffed
where
    I: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(SNIFF_BYTES);
    let read = tokio::select! {
        read = tokio::time::timeout(timeout, io.read_buf(&mut buf)) => read,
        () = stop.cancelled() => return Sniffed::Closed,
    };
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        return Sniffed::Closed;
    }
    match stream_request(&buf) {
        Some(request) => Sniffed::Stream(Box::new(request)),
        None => Sniffed::Other(buf.freeze()),
    }
}

/// `bytes` as a stream request, when they are exactly one whole `GET /v1/stream` HTTP/1.1 head
/// without a body.
fn stream_request(bytes: &[u8]) -> Option<Request<Body>> {
    if !bytes.starts_with(b"GET /v1/stream") {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len == bytes.len() => {}
        _ => return None,
    }
    let path = parsed.path?;
    if parsed.method != Some("GET")
        || parsed.version != Some(1)
        || !(path == "/v1/stream" || path.starts_with("/v1/stream?"))
    {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
            header::UPGRADE,
        ]
        .contains(&name)
        {
            return None;
        }
        request = request.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    request.body(Body::empty()).ok()
}

/// What became of a connection [`serve_stream`] answered.
pub enum Served {
    /// A response of known length went out: the connection goes on (with hyper).
    KeepAlive,
    /// The connection is over.
    Closed,
}

/// Answers `request` through `router` on `io` and writes the response itself (see the module
/// docs).
pub async fn serve_stream<I>(io: &mut I, request: Request<Body>, router: Router) -> Served
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let close_asked = wants_close(request.headers());
    let Ok(response) = TowerToHyperService::new(router).call(request).await;
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_u16(),
            parts.status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match length {
        Some(length) => {
            head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
            if close_asked {
                head.extend_from_slice(b"connection: close\r\n");
            }
            head.extend_from_slice(b"\r\n");
            let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
                return Served::Closed;
            };
            head.extend_from_slice(&body);
            if io.write_all(&head).await.is_err() || close_asked {
                return Served::Closed;
            }
            Served::KeepAlive
        }
        None => {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            if io.write_all(&head).await.is_ok() {
                drop(head);
                stream_body(io, body).await;
            }
            Served::Closed
        }
    }
}

/// Writes `body` in chunks until it ends (then the last chunk) or the client goes away.
async fn stream_body<I>(io: &mut I, body: Body)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut body = body.into_data_stream();
    // Reads only tell whether the client is gone; what it sends meanwhile is not a request
    // that will be answered (the connection closes after the stream).
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) if bytes.is_empty() => {}
                Some(Ok(bytes)) => {
                    let size = format!("{:x}\r\n", bytes.len());
                    let mut chunk = Buf::chain(Buf::chain(size.as_bytes(), &bytes[..]), &b"\r\n"[..]);
                    if io.write_all_buf(&mut chunk).await.is_err() {
                        return;
                    }
                }
                // A body that fails ends the connection without the last chunk, so the client
                // sees the response cut short rather than complete.
                Some(Err(_)) => return,
                None => {
                    let _ = io.write_all(b"0\r\n\r\n").await;
                    return;
                }
            },
            read = io.read(&mut probe) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// Whether the request asked for the connection to close after the response.
fn wants_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// A byte stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Rewind<I> {
    /// `inner`, whose next reads return `prefix` first.
    pub fn new(prefix: Bytes, inner: I) -> Self {
        Rewind { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            if this.prefix.is_empty() {
                // The allocation goes now, not when the connection ends.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::http::server::{ReadLimits, serve_connection};

    const LIMITS: ReadLimits = ReadLimits {
        header_timeout: Duration::from_secs(10),
        max_header_bytes: 16 * 1024,
    };

    /// Sends the `Drop` of a stream's body, so a test sees the stream end.
    struct Dropped(Option<tokio::sync::oneshot::Sender<()>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    /// `/v1/stream` streams `hello`, `world` and ends (or, with `?open`, stays open and reports
    /// its end on `dropped`); `?bad` answers a 400 of known length. `/other` answers `ok`.
    fn router(dropped: Option<tokio::sync::oneshot::Sender<()>>) -> Router {
        let dropped = std::sync::Arc::new(std::sync::Mutex::new(dropped));
        Router::new()
            .route(
                "/v1/stream",
                get(move |uri: axum::http::Uri| {
                    let dropped = dropped.clone();
                    async move {
                        match uri.query() {
                            Some("bad") => (StatusCode::BAD_REQUEST, "bad").into_response(),
                            Some("open") => {
                                let guard = Dropped(dropped.lock().unwrap().take());
                                let chunks = futures_util::stream::unfold(guard, |g| async move {
                                    if g.0.is_some() {
                                        std::future::pending::<()>().await;
                                    }
                                    None::<(Result<Bytes, io::Error>, Dropped)>
                                });
                                let first = futures_util::stream::iter([Ok(Bytes::from("open"))]);
                                Body::from_stream(first.chain(chunks)).into_response()
                            }
                            _ => Body::from_stream(futures_util::stream::iter([
                                Ok::<_, io::Error>(Bytes::from("hello")),
                                Ok(Bytes::from("world")),
                            ]))
                            .into_response(),
                        }
                    }
                }),
            )
            .route("/other", get(|| async { "ok" }))
    }

    use axum::response::IntoResponse;

    fn serve(router: Router) -> DuplexStream {
        let (client, end) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve_connection(end, router, LIMITS));
        client
    }

    /// Reads one response of known length (`content-length`) from `io`.
    async fn read_sized(io: &mut DuplexStream) -> String {
        let mut got = Vec::new();
        loop {
            let mut buf = [0u8; 1024];
            let n = io.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection ended within a response: {got:?}");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    return text;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_stream_request_is_written_in_chunks_and_its_connection_closes_at_its_end() {
        let mut client = serve(router(None));
        client
            .write_all(b"GET /v1/stream?x=1 HTTP/1.1\r\nhost: bus\r\n\r\n")
            .await
            .unwrap();
        // The client never closes its side: the server ends the connection after the stream
        // (hyper would keep it open for the next request).
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut answer))
            .await
            .expect("the connection ends after the stream")
            .unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
        assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(body, "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn an_error_answer_to_a_stream_request_leaves_the_connection_to_hyper() {
        let mut client = serve(router(None));
        client
            .write_all(b"GET /v1/stream?bad HTTP/1.1\r\nhost: bus\r\n\r\n")
            .await
            .unwrap();
        let first = read_sized(&mut client).await;
        assert!(first.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{first}");
        assert!(first.ends_with("\r\n\r\nbad"), "{first}");
        // The same connection serves the next request.
        client
            .write_all(b"GET /other HTTP/1.1\r\nhost: bus\r\n\r\n")
            .await
            .unwrap();
        let second = read_sized(&mut client).await;
        assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");
        assert!(second.ends_with("\r\n\r\nok"), "{second}");
    }

    #[tokio::test]
    async fn connection_close_is_honoured_after_an_error_answer() {
        let mut client = serve(router(None));
        client
            .write_all(b"GET /v1/stream?bad HTTP/1.1\r\nhost: bus\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_string(&mut answer))
            .await
            .expect("the connection closes")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    }

    #[tokio::test]
    async fn heads_this_path_does_not_take_reach_hyper_whole() {
        for (request, status) in [
            // A body.
            (&b"GET /v1/stream?bad HTTP/1.1\r\nhost: bus\r\ncontent-length: 2\r\n\r\nhi"[..], "400"),
            // Another route.
            (b"GET /other HTTP/1.1\r\nhost: bus\r\n\r\n", "200"),
            // Another method.
            (b"POST /v1/stream HTTP/1.1\r\nhost: bus\r\ncontent-length: 0\r\n\r\n", "405"),
            // A pipelined second request.
            (
                b"GET /v1/stream?bad HTTP/1.1\r\nhost: bus\r\n\r\nGET /other HTTP/1.1\r\nhost: bus\r\n\r\n",
                "400",
            ),
        ] {
            let mut client = serve(router(None));
            client.write_all(request).await.unwrap();
            let answer = read_sized(&mut client).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{:?}: {answer}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[tokio::test]
    async fn a_head_split_over_two_reads_goes_to_hyper_with_its_first_part() {
        let mut client = serve(router(None));
        client.write_all(b"GET /v1/str").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client
            .write_all(b"eam?bad HTTP/1.1\r\nhost: bus\r\n\r\n")
            .await
            .unwrap();
        let answer = read_sized(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.ends_with("\r\n\r\nbad"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_goes_away_ends_its_stream() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut client = serve(router(Some(tx)));
        client
            .write_all(b"GET /v1/stream?open HTTP/1.1\r\nhost: bus\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("4\r\nopen\r\n") {
            let mut buf = [0u8; 256];
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended early: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the stream's body is dropped when its client goes away")
            .unwrap();
    }
}
