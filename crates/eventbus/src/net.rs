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
) -> Result<HttpsConnector<HttpConnector<R>>, TlsSetupError> {
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .map_err(TlsSetupError)?;
    let tls = if allow_http {
        tls.https_or_http()
    } else {
        tls.https_only()
    };
    Ok(tls.enable_http1().wrap_connector(tcp))
}

/// The TLS client could not be set up (the platform's certificate verifier failed to load).
#[derive(Debug, thiserror::Error)]
#[error("setting up TLS: {0}")]
pub(crate) struct TlsSetupError(#[source] std::io::Error);
