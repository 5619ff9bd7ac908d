//! Integration tests of the server: the real `eventbus` binary on an ephemeral port, over HTTP.
//!
//! Layout: `common` (`TestServer` and the typed client), `health`, `publish` (single, batch,
//! idempotency, get by id), `query` (every filter, project route, keyset paging), `event_types`
//! (the catalogue and JSON Schemas), `errors` (every bad input is a problem and stores nothing),
//! `durability` (`kill -9` and SIGTERM while publishing), `stream` (SSE), `webhooks` (delivery
//! to a local receiver), `security` (keys, tenants, tokens and limits), `plugins` (real
//! JavaScript plugins: handling, isolation, middleware, lifecycle, reload), `deploy` (the
//! container image's environment), `cli` (the maintenance commands beside a running server).

mod archive;
mod cli;
mod cluster;
mod common;
mod deploy;
mod durability;
mod errors;
mod event_types;
mod health;
mod logs;
mod metrics;
mod openapi;
mod pgbouncer;
mod plugins;
mod postgres_faults;
mod postgres_tls;
mod publish;
mod query;
mod readiness;
mod security;
mod stream;
mod webhooks;
mod webhooks_pg;
