//! The HTTP client of the webhook transport (hyper with rustls on the ring provider), safe
//! against server-side request forgery.
//!
//! Invariants:
//! - a request never reaches a loopback, private, link-local (cloud metadata), shared,
//!   multicast or unspecified address unless that address is inside an allowed network
//!   ([`NetworkPolicy`]). IP-literal URLs are checked before sending; host names are checked by
//!   the client's own DNS resolver *after* resolution, at connect time, so a name that later
//!   resolves elsewhere (DNS rebinding) is caught too;
//! - redirects are never followed (a 3xx is a failed attempt);
//! - every attempt ends within its timeout, and at most `body_limit` bytes of the answer are read.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER,
};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::NotACidr(s.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| CidrError::Prefix {
                        cidr: s.to_owned(),
                        max,
                    })?
            }
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Why a network does not parse as a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("`{0}` is not a CIDR such as 127.0.0.0/8")]
    NotACidr(String),
    /// The prefix length is not a number up to the address's bits.
    #[error("`{cidr}`: the prefix length must be 0 to {max}")]
    Prefix {
        /// The text given.
        cidr: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses a webhook may not reach by default: loopback, private, link-local (including the
/// cloud metadata address 169.254.169.254), shared (CGNAT), unspecified, broadcast, multicast,
/// documentation and reserved ranges, and their IPv6 counterparts.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 (may embed internal IPv4)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6].iter().all(|&x| x == 0) // ::/96, IPv4-compatible (deprecated)
        }
    }
}

/// Which addresses webhooks may reach.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Networks allowed although [`is_internal`] (e.g. `127.0.0.0/8` in tests).
    pub allowed: Vec<Cidr>,
}

impl NetworkPolicy {
    /// Whether a request may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|c| c.contains(ip))
    }
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

/// Checks a webhook URL: `http` or `https`, a host, no credentials, and — for an IP literal —
/// an address the policy permits. Host names are checked at connect time.
pub fn validate_url(url: &str, policy: &NetworkPolicy) -> Result<Uri, UrlError> {
    if url.len() > 2048 {
        return Err(UrlError("the URL is longer than 2048 bytes".into()));
    }
    let parsed: Uri = url
        .parse()
        .map_err(|e| UrlError(format!("`{url}` is not a URL: {e}")))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(UrlError(format!(
                "the scheme must be http or https, not `{other}`"
            )));
        }
        None => {
            return Err(UrlError(format!(
                "`{url}` is not an absolute http or https URL"
            )));
        }
    }
    let authority = parsed
        .authority()
        .ok_or_else(|| UrlError("the URL has no host".into()))?;
    if authority.as_str().contains('@') {
        return Err(UrlError(
            "credentials in the URL are not allowed; use `headers`".into(),
        ));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(UrlError("the URL has no host".into()));
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        check_ip(ip, policy)?;
    }
    Ok(parsed)
}

/// How long the check of a host name at creation may wait for DNS.
const CREATE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// At creation or change of an endpoint: a host name whose every address the policy refuses is
/// refused now, instead of failing every delivery later. It is checked
/// again at each connect (the name may re-resolve: DNS rebinding), so a name that does not
/// resolve yet, or not within 2 s, is accepted here.
pub async fn check_resolved_host(uri: &Uri, policy: &NetworkPolicy) -> Result<(), UrlError> {
    let Some(host) = uri.host() else {
        return Ok(());
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(()); // checked by `validate_url`
    }
    let port = uri.port_u16().unwrap_or(80);
    let lookup =
        tokio::time::timeout(CREATE_LOOKUP_TIMEOUT, tokio::net::lookup_host((bare, port))).await;
    let Ok(Ok(addrs)) = lookup else {
        return Ok(());
    };
    let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
    if !ips.is_empty() && ips.iter().all(|ip| !policy.permits(*ip)) {
        // The addresses are not named: a caller must not learn the bus's internal DNS answers.
        return Err(UrlError(format!(
            "`{host}` resolves only to loopback, private, link-local or reserved addresses; \
             webhooks may not reach them (allow their network with WEBHOOK_ALLOWED_NETWORKS)"
        )));
    }
    Ok(())
}

fn check_ip(ip: IpAddr, policy: &NetworkPolicy) -> Result<(), UrlError> {
    if policy.permits(ip) {
        Ok(())
    } else {
        Err(UrlError(format!(
            "{ip} is a loopback, private, link-local or reserved address; webhooks may not reach it \
             (allow its network with WEBHOOK_ALLOWED_NETWORKS)"
        )))
    }
}

/// Resolves names with the system resolver and drops every address the policy refuses: the
/// check happens on the addresses actually connected to.
#[derive(Debug, Clone)]
struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                return Err(std::io::Error::other(format!(
                    "`{host}` resolves only to addresses webhooks may not reach ({}); see WEBHOOK_ALLOWED_NETWORKS",
                    shown.join(", ")
                )));
            }
            Ok(permitted.into_iter())
        })
    }
}

/// What one request produced.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, when an answer came.
    pub status: Option<u16>,
    /// The answer's body, up to the limit, lossily decoded.
    pub body: Option<String>,
    /// `Retry-After`, when present and parseable.
    pub retry_after: Option<Duration>,
    /// The failure without an answer (timeout, refused address, connection).
    pub error: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

impl Response {
    /// Whether the answer is a 2xx.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Why the client could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TLS connector could not be built.
    #[error("webhooks: {0}")]
    Connector(String),
}

/// The shared client: one connection pool for every endpoint.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    policy: Arc<NetworkPolicy>,
    timeout: Duration,
    body_limit: usize,
}

/// The `User-Agent` of webhook requests.
pub const USER_AGENT: &str = concat!("Situs-Event-Bus-Webhooks/", env!("CARGO_PKG_VERSION"));

impl WebhookClient {
    /// A client with `policy`, a per-attempt `timeout` and a response `body_limit`.
    pub fn new(
        policy: NetworkPolicy,
        timeout: Duration,
        body_limit: usize,
    ) -> Result<Self, ClientError> {
        let policy = Arc::new(policy);
        let tcp = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        let https = crate::net::https(tcp, timeout, true)
            .map_err(|e| ClientError::Connector(e.to_string()))?;
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(32)
            .build(https);
        Ok(WebhookClient {
            http,
            policy,
            timeout,
            body_limit,
        })
    }

    /// The policy.
    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// POSTs `body` to `url` with `headers`; never fails, the outcome is in the [`Response`].
    /// Redirects are not followed.
    pub async fn post(&self, url: &str, headers: HeaderMap, body: Bytes) -> Response {
        let started = Instant::now();
        let failed = |error: String| Response {
            status: None,
            body: None,
            retry_after: None,
            error: Some(error),
            duration: started.elapsed(),
        };
        let uri = match validate_url(url, &self.policy) {
            Ok(u) => u,
            Err(e) => return failed(e.0),
        };
        let mut request = Request::builder().method(Method::POST).uri(uri);
        if let Some(h) = request.headers_mut() {
            *h = headers;
            h.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return failed(format!("cannot build the request: {e}")),
        };
        let attempt = async {
            let resp = self.http.request(request).await.map_err(describe)?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let mut incoming = resp.into_body();
            let mut body = Vec::new();
            while body.len() < self.body_limit {
                match incoming.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(chunk) = frame.into_data() {
                            body.extend_from_slice(
                                &chunk[..chunk.len().min(self.body_limit - body.len())],
                            );
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
            Ok::<_, String>((status, retry_after, body))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok((status, retry_after, body))) => Response {
                status: Some(status),
                body: Some(String::from_utf8_lossy(&body).into_owned()),
                retry_after,
                error: (!(200..300).contains(&status))
                    .then(|| format!("the endpoint answered {status}")),
                duration: started.elapsed(),
            },
            Ok(Err(e)) => failed(e),
            Err(_) => failed(format!("timed out after {} ms", self.timeout.as_millis())),
        }
    }
}

fn describe(e: hyper_util::client::legacy::Error) -> String {
    // The chain carries the resolver's refusal or the connection error.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// `Retry-After`: delay-seconds, or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &format)
        .ok()?
        .assume_utc();
    let secs = (at - time::OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// Why a header cannot be sent as an endpoint's custom header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The bus sets this header itself.
    #[error("`{0}` is set by the bus and cannot be overridden")]
    Reserved(String),
    /// Not a valid header name.
    #[error("`{0}` is not a valid header name")]
    Name(String),
    /// The value of the named header is not a valid header value.
    #[error("the value of `{0}` is not a valid header value")]
    Value(String),
}

/// A header name and value, or why it cannot be sent as a custom header.
pub fn custom_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "user-agent",
    ];
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str())
        || lower.starts_with("webhook-")
        || lower.starts_with("proxy-")
    {
        return Err(HeaderError::Reserved(name.to_owned()));
    }
    let n =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::Name(name.to_owned()))?;
    let v = HeaderValue::from_str(value).map_err(|_| HeaderError::Value(name.to_owned()))?;
    Ok((n, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let deny = NetworkPolicy::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!deny.permits(ip(bad)), "{bad}");
        }
        for good in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(deny.permits(ip(good)), "{good}");
        }
        let allow = NetworkPolicy {
            allowed: vec![Cidr::parse("127.0.0.0/8").unwrap()],
        };
        assert!(allow.permits(ip("127.0.0.1")) && allow.permits(ip("::ffff:127.0.0.2")));
        assert!(!allow.permits(ip("10.0.0.1")) && !allow.permits(ip("::1")));
    }

    #[test]
    fn urls_are_validated() {
        let deny = NetworkPolicy::default();
        assert!(validate_url("https://example.com/hook", &deny).is_ok());
        assert!(
            validate_url("http://localhost:9/x", &deny).is_ok(),
            "names are checked at connect time"
        );
        for bad in [
            "ftp://example.com",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://u:p@example.com/",
            "nope",
        ] {
            assert!(validate_url(bad, &deny).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_parse() {
        assert!(
            Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains(ip("10.255.0.1"))
        );
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("x/8").is_err());
    }

    #[test]
    fn error_messages_name_the_input() {
        assert_eq!(
            Cidr::parse("x/8").unwrap_err().to_string(),
            "`x/8` is not a CIDR such as 127.0.0.0/8"
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/33").unwrap_err().to_string(),
            "`10.0.0.0/33`: the prefix length must be 0 to 32"
        );
        assert_eq!(
            custom_header("Host", "v").unwrap_err().to_string(),
            "`Host` is set by the bus and cannot be overridden"
        );
        assert_eq!(
            custom_header("bad header", "v").unwrap_err().to_string(),
            "`bad header` is not a valid header name"
        );
        assert_eq!(
            custom_header("X-Team", "a\nb").unwrap_err().to_string(),
            "the value of `X-Team` is not a valid header value"
        );
    }

    #[test]
    fn retry_after_and_headers() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert!(custom_header("X-Team", "a").is_ok());
        for bad in ["Host", "webhook-signature", "Content-Type", "bad header"] {
            assert!(custom_header(bad, "v").is_err(), "{bad}");
        }
    }
}
