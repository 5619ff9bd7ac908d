//! Requests to the server this configuration describes (`HOST`:`PORT`, plain HTTP on loopback),
//! for commands that must go through a running server rather than open its store.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The address the server of `config` answers on (an unspecified listen address is reached
/// through loopback).
pub fn address(config: &Config) -> SocketAddr {
    let mut addr = config.listen_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Sends `method path` with an optional JSON body and the bearer `key`; returns the status and
/// the body parsed as JSON (`Null` when empty).
pub async fn request(
    config: &Config,
    key: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(StatusCode, serde_json::Value)> {
    let addr = address(config);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"));
    let body = match body {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Full::new(Bytes::from(serde_json::to_vec(&json)?))
        }
        None => Full::new(Bytes::new()),
    };
    let call = async {
        let response = client.request(builder.body(body)?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        };
        anyhow::Ok((status, json))
    };
    tokio::time::timeout(TIMEOUT, call)
        .await
        .with_context(|| format!("no answer from the server at {addr} within {TIMEOUT:?}"))?
        .with_context(|| format!("asking the server at {addr}"))
}

/// The `detail` of a problem body, or the body itself.
pub fn problem_detail(body: &serde_json::Value) -> String {
    body.get("detail")
        .and_then(|d| d.as_str())
        .map_or_else(|| body.to_string(), str::to_owned)
}
