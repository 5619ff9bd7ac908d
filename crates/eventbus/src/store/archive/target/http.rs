//! The HTTP client `object_store` uses for `s3://`: hyper over the connections of
//! [`crate::net::https`], like the webhook client, so the bus carries one HTTP stack and one TLS
//! stack (no process-wide TLS provider is installed). Each request, body included, must finish within the timeout: a stalled storage
//! service gives an error that `object_store` retries, not a hang.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};

/// Makes [`HttpClient`]s for `object_store` with these timeouts.
#[derive(Debug, Clone, Copy)]
pub(super) struct HyperConnector {
    /// Longest time for one request, from sending it to the end of the response body.
    pub(super) timeout: Duration,
    /// Longest time to open a TCP connection.
    pub(super) connect_timeout: Duration,
}

impl HttpConnector for HyperConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // `AWS_ALLOW_HTTP=true` permits plain-HTTP endpoints; HTTPS only otherwise.
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        let https = crate::net::https(TcpConnector::new(), self.connect_timeout, allow_http)
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: e.into(),
            })?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HttpClient::new(HyperService {
            client,
            timeout: self.timeout,
        }))
    }
}

#[derive(Debug)]
struct HyperService {
    client: Client<HttpsConnector<TcpConnector>, HttpRequestBody>,
    timeout: Duration,
}

#[async_trait]
impl HttpService for HyperService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let response = tokio::time::timeout_at(deadline, self.client.request(request))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Timeout, e))?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, Described::of(&e))
            })?;
        let (parts, body) = response.into_parts();
        let body = DeadlineBody {
            inner: body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e)),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// An error described with all its causes (`object_store` shows only the outermost one, and a
/// refused certificate or a refused connection is a cause of hyper's "client error (Connect)").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Described(String);

impl Described {
    fn of(e: &dyn std::error::Error) -> Self {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        Described(text)
    }
}

/// A response body that fails with a timeout once `deadline` passes.
struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The response body stalled past the request's deadline.
#[derive(Debug, thiserror::Error)]
#[error("the response body did not arrive within the request timeout")]
struct BodyTimeout;

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes, Error = HttpError> + Unpin,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                HttpErrorKind::Timeout,
                BodyTimeout,
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
