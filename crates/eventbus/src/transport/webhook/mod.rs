//! The webhook transport: signed, retried, logged, crash-safe delivery of committed events to
//! external HTTP endpoints (issue 5; DESIGN.md §1, §5).
//!
//! It is log-driven, in two stages joined by the durable queue of the [`WebhookStore`]:
//! - [`fanout`] tails the event log from a cursor kept in the store. For each range of events it
//!   matches the endpoints (type patterns, project and tenant scope, enabled, created before the
//!   event: [`Endpoint::since_seq`](crate::store::webhook::Endpoint::since_seq)) and, in **one** transaction, queues a delivery row per match and advances the cursor.
//!   A crash therefore loses no event and queues none twice.
//! - [`worker`] claims due deliveries (leased, so several processes can share a queue), sends
//!   each as a signed POST (`request`, [`client`]), and records every attempt; failures are
//!   retried on the configured schedule (honouring `Retry-After`) and dead-lettered after the
//!   last attempt. Per-endpoint lanes (concurrency, rate limit, strict order when asked) keep a
//!   slow or dead endpoint from delaying any other.
//!
//! Guarantees: at-least-once per (event, endpoint) — a crash between a receiver's 2xx and the
//! record of it resends, with the same `webhook-id` (the event id), which receivers use to
//! de-duplicate; ordered endpoints receive events in `seq` order, each next event only after the
//! previous one succeeded or was dead-lettered.
//!
//! [`WebhookService`] ties the stages together and is what the HTTP API calls: endpoint CRUD with
//! validation, secret rotation, test sends, the delivery and attempt log, retry and replay.
//!
//! # Layout
//! - `options`: [`WebhookOptions`] and the duration parsers of its settings.
//! - `input`: the API's types: [`EndpointInput`] and its validation, [`ReplayFrom`], [`ReplayUntil`],
//!   [`TestResult`].
//! - `error`: how the API's calls fail ([`WebhookError`]).
//! - `service`: [`WebhookService`]: start, shutdown, the API's calls.
//! - `shared`: what the stages share, with the counters ([`WebhookStats`]).
//! - `cache`: the endpoint and event body caches.
//! - `fanout`, `worker`: the two stages.
//! - `request`: an attempt's body (shaped by a [`PayloadShaper`] when one applies) and signed
//!   headers; [`signing`]: Standard Webhooks signatures; [`client`]: the SSRF-safe HTTP client.
//! - `shaper`, `status`: the two narrow handles the host gives the transport: [`PayloadShaper`]
//!   (shaped bodies) and [`StatusSink`] (where status events go). The transport imports nothing
//!   of the bus or the plugin host.
//!
//! [`WebhookStore`]: crate::store::webhook::WebhookStore

mod announce;
mod cache;
pub mod client;
mod error;
mod fanout;
mod input;
mod leases;
mod options;
mod request;
mod service;
mod shaper;
mod shared;
pub mod signing;
mod status;
mod worker;

pub use self::error::WebhookError;
pub use self::input::{EndpointInput, ReplayFrom, ReplayUntil, TestResult};
pub use self::options::{DurationError, WebhookOptions, parse_duration, parse_schedule};
pub use self::service::WebhookService;
pub use self::shaper::{PayloadShaper, ShapeError};
pub use self::shared::WebhookStats;
pub use self::status::{StatusError, StatusSink};

/// Header names of the Standard Webhooks specification.
pub const HEADER_ID: &str = "webhook-id";
/// Unix seconds of the send.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64>` signatures, space-separated.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
