//! Situs Event Bus: publish once, store durably, deliver everywhere.
//!
//! An event published through [`EventBus::publish`] passes the middleware chain, is appended to
//! the [`EventStore`] (durable before the call returns), and is then delivered, in `seq` order,
//! to in-process subscribers and the transports, all of which read the log by cursor.
//!
//! # Layout
//! - [`core`]: the pure core: [`core::event`] (the wire format and its validation),
//!   [`core::pattern`] (type patterns), [`core::filter`], [`core::catalogue`] (event types and
//!   schemas), [`core::middleware`] (the chain and its built-in steps), [`core::router`] (the
//!   pattern index), [`core::log`] (the in-memory commit log), [`core::time`],
//!   [`core::cloudevent`] (an event as a CloudEvent, for the edges that send events out).
//! - [`store`]: the [`EventStore`] contract and its backends ([`store::sqlite`],
//!   [`store::postgres`]); [`store::open`] opens the backend a URL names and returns its
//!   [`store::Stores`]: the event log and the contracts of its side tables, the archive
//!   ([`store::archive`], moving old events into files), webhooks ([`store::webhook`]) and
//!   plugins ([`store::plugin`]).
//! - [`transport`]: delivery: [`transport::internal`] (in-process subscribers),
//!   [`transport::consumer`] (durable named consumers), [`transport::group`] (consumer groups:
//!   shared pull consumers with long-poll), [`transport::sse`] (the stream hub),
//!   [`transport::webhook`] (signed, retried webhooks). Transports import neither the bus nor
//!   the plugins: what they need of them comes in as narrow traits
//!   ([`transport::webhook::StatusSink`], [`transport::webhook::PayloadShaper`]).
//! - [`bus`]: [`EventBus`], tying the three together; its builder starts every transport, and
//!   what runs beside it joins as a [`bus::Extension`].
//! - [`plugin`]: Rust and JavaScript plugins under one [`plugin::PluginHost`] (an extension of
//!   the bus, and the webhook transport's payload shaper).
//! - [`security`]: API keys, browser tokens and abuse limits; what a caller may do is decided
//!   by [`core::principal`].
//! - [`sample`]: the figures of the last hour for a console: a [`sample::Sampler`] takes a
//!   sample of the bus's counters and gauges every interval into a ring.
//! - [`metric`]: metric names and recording helpers.
//! - [`telemetry`]: W3C trace context: continuing a `traceparent` into the bus's spans and
//!   sending it onwards (OpenTelemetry, exported by the binary when configured).
//! - [`testing`]: how the project's test suites report a test skipped for a missing service.

pub mod bus;
pub mod core;
pub mod metric;
mod net;
pub mod outbox;
pub mod plugin;
pub mod sample;
pub mod security;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod transport;

pub use crate::bus::{BusOptions, EventBus, EventBusBuilder, PublishError, RegisterError};
pub use crate::core::event::{Event, FieldError, NewEvent};
pub use crate::core::pattern::Pattern;
pub use crate::store::{EventStore, StoreError};
pub use crate::transport::consumer::{Consumer, ConsumerOptions};
pub use crate::transport::internal::Subscription;
