//! Outbound HTTP connections, shared by the webhook client and the `s3://` archive target: one
//! TCP and TLS setup (rustls over ring, the provider passed explicitly so nothing process-wide
//! is installed, the system's trusted roots).

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// HTTPS (and plain HTTP when `allow_http`) over `tcp`, which gets `connect_timeout` and
/// `TCP_NODELAY`; HTTP/1 only.
pub(crate) fn https<R>(
    mut tcp: HttpConnector<R>,
    connect_timeout: Duration,
    allow_http: bool,
) -> Result<HttpsConnector<HttpConnector<R>>, String> {
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("setting up TLS: {e}"))?;
    let tls = if allow_http {
        tls.https_or_http()
    } else {
        tls.https_only()
    };
    Ok(tls.enable_http1().wrap_connector(tcp))
}
