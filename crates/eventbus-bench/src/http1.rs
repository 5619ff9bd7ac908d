//! A minimal HTTP/1.1 keep-alive client for the load generator. Each request is written as
//! pre-serialised bytes and the answer is read by its `Content-Length`, so the client spends a few
//! microseconds per request and leaves the cores it shares with the server to the server.
//! Enough for the bus's own answers (always sized, never chunked); not a general client.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of an `http://host:port[/…]` URL.
pub fn authority(url: &str) -> io::Result<&str> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{url}` is not an http:// URL"),
        )
    })?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

/// A complete `POST` request of a JSON `body` to `path`, authenticated with `key`.
pub fn post_request(authority: &str, key: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// One keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects to `authority` (`host:port`).
    pub async fn connect(authority: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends `request` and reads the whole answer; returns its status and body.
    pub async fn roundtrip(&mut self, request: &[u8]) -> io::Result<(u16, &[u8])> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let (status, length) = parse_head(&self.buf[..head_end])?;
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        if self.buf.len() > head_end + length {
            return Err(invalid("the server sent more than the announced body"));
        }
        Ok((status, &self.buf[head_end..]))
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

/// The status code and `Content-Length` of a response head.
fn parse_head(head: &[u8]) -> io::Result<(u16, usize)> {
    let head = std::str::from_utf8(head).map_err(|_| invalid("the response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP/1.1 status line"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked answers are not supported"));
        }
    }
    Ok((
        status,
        length.ok_or_else(|| invalid("the answer has no Content-Length"))?,
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() {
        let head =
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (201, 42));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn builds_a_request() {
        assert_eq!(
            authority("http://127.0.0.1:3002").unwrap(),
            "127.0.0.1:3002"
        );
        assert_eq!(
            authority("http://127.0.0.1:3002/x").unwrap(),
            "127.0.0.1:3002"
        );
        let r = post_request("127.0.0.1:1", "k", "/v1/events", b"{}");
        assert!(r.starts_with(b"POST /v1/events HTTP/1.1\r\n"));
        assert!(r.ends_with(b"content-length: 2\r\n\r\n{}"));
    }

    #[tokio::test]
    async fn roundtrips_over_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 1024];
            for _ in 0..2 {
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            }
        });
        let mut c = Connection::connect(&addr).await.unwrap();
        let req = post_request(&addr, "k", "/v1/events", b"{}");
        for _ in 0..2 {
            let (status, body) = c.roundtrip(&req).await.unwrap();
            assert_eq!((status, body), (201, &b"ok"[..]));
        }
    }
}
