//! Problem bodies for requests that never reach the router.
//!
//! hyper answers a request head it cannot parse (a request target with a character HTTP forbids
//! unencoded, such as the raw `>` that `curl 'localhost:3002/v1/events?type=project.>'` sends; a
//! head over `MAX_HEADER_BYTES`; a malformed request line) by itself, with a bodyless `400`, `414`
//! or `431`, and closes the connection. [`ProblemIo`] wraps a connection's byte stream and
//! replaces exactly those answers with an RFC 9457 problem saying what to fix.
//!
//! How it knows: it remembers the first line of the request being read (the bytes read since the
//! last response began, up to the first line feed, at most [`MAX_LINE`] bytes), and when hyper
//! writes a `400`, `414` or `431` head with `content-length: 0` — which no handler of the API does:
//! every error of the router carries a problem body — it explains the request line it saw and
//! writes that response instead. Everything else passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::problem::ApiError;

/// The longest request line kept for the explanation.
const MAX_LINE: usize = 8 * 1024;

/// A connection whose bare head-error answers from hyper become problem+json responses.
#[derive(Debug)]
pub struct ProblemIo<S> {
    inner: S,
    /// The current request's first line, as far as it has been read.
    line: Vec<u8>,
    /// The first line is complete (or over [`MAX_LINE`]): stop collecting until the next answer.
    line_done: bool,
    /// A replacement answer being written, and how much of it is out.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<S> ProblemIo<S> {
    /// Wraps one accepted connection.
    pub fn new(inner: S) -> Self {
        ProblemIo {
            inner,
            line: Vec::new(),
            line_done: false,
            replacing: None,
        }
    }

    fn observe_read(&mut self, bytes: &[u8]) {
        if self.line_done {
            return;
        }
        let room = MAX_LINE - self.line.len();
        match bytes.iter().position(|&b| b == b'\n') {
            Some(end) if end <= room => {
                self.line.extend_from_slice(&bytes[..end]);
                self.line_done = true;
            }
            _ => {
                self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
                self.line_done = self.line.len() >= MAX_LINE;
            }
        }
    }

    /// Called with the first buffer of each write: when it starts hyper's own bare error answer,
    /// the replacement is prepared; any answer starts a new request line.
    fn observe_write(&mut self, first: &[u8]) {
        if first.starts_with(b"HTTP/1.1 ") {
            if let Some(status) = bare_error_status(first) {
                let error = explain(status, &self.line);
                self.replacing = Some((response_bytes(error), 0));
            }
            self.line.clear();
            self.line_done = false;
        }
    }
}

/// The status of a head hyper writes for a request it could not parse: `400`, `414` or `431`
/// with `content-length: 0`.
fn bare_error_status(head: &[u8]) -> Option<StatusCode> {
    let status = match head.get(9..12)? {
        b"400" => StatusCode::BAD_REQUEST,
        b"414" => StatusCode::URI_TOO_LONG,
        b"431" => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    let lower = head[..end].to_ascii_lowercase();
    lower
        .windows(19)
        .any(|w| w == b"\r\ncontent-length: 0")
        .then_some(status)
}

/// What went wrong with the request whose first line is `line`, as the API's error.
fn explain(status: StatusCode, line: &[u8]) -> ApiError {
    match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadTooLarge,
        StatusCode::URI_TOO_LONG => ApiError::UriTooLong,
        _ => match forbidden_in_target(line).as_slice() {
            [] => ApiError::MalformedRequest(
                "the request is not valid HTTP/1.1: its request line or a header could not be \
                 parsed"
                    .to_owned(),
            ),
            found => {
                let named: Vec<String> = found
                    .iter()
                    .map(|&c| format!("`{c}` as `{}`", percent_encoded(c)))
                    .collect();
                ApiError::InvalidRequestTarget(format!(
                    "the request target contains characters that HTTP requires percent-encoded: \
                     send {} (for example `?type=project.%3E` for the pattern `project.>`; curl \
                     encodes a query for you with `-G --data-urlencode 'type=project.>'`)",
                    named.join(", ")
                ))
            }
        },
    }
}

/// `c` percent-encoded, byte by byte of its UTF-8 form.
fn percent_encoded(c: char) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

/// The characters of the request target (the second word of `line`) that RFC 3986 does not
/// allow unencoded, each once, in order, at most five.
pub(crate) fn forbidden_in_target(line: &[u8]) -> Vec<char> {
    let line = String::from_utf8_lossy(line);
    let Some((_, rest)) = line.trim_end_matches('\r').split_once(' ') else {
        return Vec::new();
    };
    // The target ends before " HTTP/"; whatever precedes it, spaces included, is the target.
    let target = rest.rsplit_once(" HTTP/").map_or(rest, |(t, _)| t);
    let mut found = Vec::new();
    for c in target.chars().filter(|&c| !allowed_in_target(c)) {
        if !found.contains(&c) && found.len() < 5 {
            found.push(c);
        }
    }
    found
}

/// RFC 3986 `pchar`, `/`, `?` and `%` (of percent-encodings).
fn allowed_in_target(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c)
}

/// A whole HTTP/1.1 response carrying `error`'s problem body, closing the connection.
fn response_bytes(error: ApiError) -> Vec<u8> {
    let (status, body) = error.to_problem();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        super::problem::PROBLEM_JSON,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        this.observe_read(read);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> ProblemIo<S> {
    /// Writes the pending replacement in full; `Ready(Ok(()))` once it is out (or none is pending).
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.replacing {
            if *sent == bytes.len() {
                self.replacing = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            this.observe_write(buf);
        }
        if this.replacing.is_some() {
            // hyper's own answer is swallowed whole, once the replacement is out.
            ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none()
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            this.observe_write(first);
        }
        if this.replacing.is_some() {
            ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_character_that_needs_encoding() {
        let line = b"GET /v1/events?type=project.> HTTP/1.1\r";
        assert_eq!(forbidden_in_target(line), vec!['>']);
        assert_eq!(
            forbidden_in_target(b"GET /a?b={c}|> HTTP/1.1"),
            vec!['{', '}', '|', '>']
        );
        assert_eq!(forbidden_in_target(b"GET /a b HTTP/1.1"), vec![' ']);
        assert!(
            forbidden_in_target(b"GET /v1/events?type=project.%3E&x=a:b@c HTTP/1.1").is_empty()
        );
        assert_eq!(percent_encoded('>'), "%3E");
        assert_eq!(percent_encoded('é'), "%C3%A9");
    }

    #[test]
    fn only_bare_400_414_431_heads_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(bare_error_status(bare), Some(StatusCode::BAD_REQUEST));
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            bare_error_status(big),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\n\r\n";
        assert_eq!(bare_error_status(with_body), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_status(ok), None);
    }

    #[test]
    fn a_split_request_line_is_joined() {
        let mut io = ProblemIo::new(());
        io.observe_read(b"GET /v1/events?ty");
        io.observe_read(b"pe=project.> HTTP/1.1\r\nhost: x\r\n");
        io.observe_read(b"accept: */*\r\n");
        assert_eq!(io.line, b"GET /v1/events?type=project.> HTTP/1.1\r");
        io.observe_write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        let (bytes, _) = io.replacing.expect("a replacement");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("application/problem+json"), "{text}");
        assert!(text.contains("`>`") && text.contains("%3E"), "{text}");
        // The next request starts collecting afresh.
        assert!(io.line.is_empty());
    }
}
