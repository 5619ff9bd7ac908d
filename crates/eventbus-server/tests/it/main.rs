//! Integration tests of the server, over HTTP, on two kinds of server (`common`):
//!
//! - **In process** ([`common::InProcessServer`]): the real router started in this test process
//!   with `eventbus_server::run` on port 0, on a thread and runtime of its own. For HTTP
//!   semantics, where a process adds only start-up time: `errors`, `payloads`, `publish`, `query`,
//!   `consumers` except its tests of `kill -9` and of two processes, and
//!   `event_types`, `security`, `stats`, `stream` except the tests named below.
//! - **The binary** ([`common::TestServer`]): the real `eventbus` executable on port 0. For the
//!   promises about the process, and for what is process-global: signals, restarts and
//!   `kill -9` (`durability`, `disk_full`, `cluster`, the restart test of `event_types`, the shutdown test of
//!   `stream`, `webhooks`' crash tests), the process's memory (`stream`'s lagging client), its
//!   log lines (`logs`, `security`'s audit test: the tracing subscriber is per process), `/metrics`
//!   (`metrics`: the Prometheus recorder is per process), the command line (`cli`, `deploy`,
//!   `security`'s key commands), several processes on one store (`security`'s revocation test,
//!   `cluster`), and the suites not yet moved (`archive`, `health`, `openapi`, `plugins`,
//!   `readiness`, `webhooks`, the PostgreSQL suites).
//!
//! Suites: `health`, `publish` (single, batch, idempotency, get by id), `query` (every filter,
//! project route, keyset paging), `event_types` (the catalogue and JSON Schemas), `errors` (every
//! bad input is a problem and stores nothing), `durability` (`kill -9` and SIGTERM while
//! publishing), `stream` (SSE), `webhooks` (delivery to a local receiver), `webhook_stats` (an
//! endpoint's figures, in process on both backends), `security` (keys,
//! tenants, tokens and limits), `plugins` (real JavaScript plugins: handling, isolation,
//! middleware, lifecycle, reload), `deploy` (the container image's environment), `cli` (the
//! maintenance commands beside a running server), `regression` (one test per fixed bug, named
//! after it), `consumers` (consumer groups over HTTP on both backends), `payloads` (what a payload
//! may hold, on both backends), `outbox` (the transactional outbox relay, with the binary),
//! `cloudevents` (content negotiation; the SDK suite is `tests/cloudevents`), `concurrency`
//! (`Expected-Last-Seq`: in process, and racing writers on the binary over SQLite
//! and two processes on PostgreSQL), `stats` (the figures of the last hour, sampled every
//! second, and who may read them).

mod archive;
mod cli;
mod cloudevents;
mod cluster;
mod common;
mod concurrency;
mod console;
mod consumers;
mod deploy;
mod disk_full;
mod durability;
mod errors;
mod event_types;
mod health;
mod logs;
mod metrics;
mod openapi;
mod outbox;
mod payloads;
mod pgbouncer;
mod plugins;
mod postgres_faults;
mod postgres_tls;
mod publish;
mod query;
mod readiness;
mod regression;
mod security;
mod stats;
mod stream;
mod telemetry;
mod webhook_stats;
mod webhooks;
mod webhooks_pg;
