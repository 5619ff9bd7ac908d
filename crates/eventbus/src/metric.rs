//! Metric names and the helpers that record them, in one place (names `eventbus_<noun>_<unit>`).
//!
//! The library records through the `metrics` facade: without an installed recorder every call
//! is a no-op; the server installs a Prometheus recorder and renders `GET /metrics`. Labels are
//! bounded: event types outside the catalogue are counted as `other`, subscribers by pattern,
//! consumers by name, consumer groups by name (at most
//! `transport::group::MAX_LABELLED_GROUPS` of them), never an event id or a URL.

use std::time::Duration;

/// Events through `publish`, by `type` and `outcome` (`created`, `duplicate`, `rejected`, `failed`).
pub const EVENTS_PUBLISHED: &str = "eventbus_events_published_total";
/// Seconds from a publish call to its answer (one call may carry a batch).
pub const PUBLISH_DURATION: &str = "eventbus_publish_duration_seconds";
/// Reads of the newest events the in-memory commit log could not serve, sent to the store.
pub const STORE_TAIL_MISSES: &str = "eventbus_store_tail_misses_total";
/// Events per group commit of the store.
pub const STORE_BATCH_SIZE: &str = "eventbus_store_append_batch_size";
/// Seconds one group commit takes (write and fsync).
pub const STORE_APPEND_DURATION: &str = "eventbus_store_append_duration_seconds";
/// Seconds a handler takes, by `handler` (`subscriber:<pattern>` or `consumer:<name>`).
pub const HANDLER_DURATION: &str = "eventbus_handler_duration_seconds";
/// Handler failures and panics, by `handler`.
pub const HANDLER_ERRORS: &str = "eventbus_handler_errors_total";
/// Items waiting in a queue, by `queue` (`store_writer`, `subscribers`, `sse`, `webhooks`).
pub const QUEUE_DEPTH: &str = "eventbus_queue_depth";
/// Open SSE streams.
pub const SSE_CONNECTIONS: &str = "eventbus_sse_connections";
/// SSE streams closed because they lagged.
pub const SSE_LAGGED: &str = "eventbus_sse_lagged_total";
/// Webhook attempts, by `outcome` (`succeeded`, `failed`).
pub const WEBHOOK_ATTEMPTS: &str = "eventbus_webhook_attempts_total";
/// Webhook deliveries that exhausted their retries.
pub const WEBHOOK_DEAD_LETTERS: &str = "eventbus_webhook_dead_letters_total";
/// Seconds one webhook attempt takes.
pub const WEBHOOK_ATTEMPT_DURATION: &str = "eventbus_webhook_attempt_duration_seconds";
/// Share of webhook attempts that succeeded since the start (1 when none ran).
pub const WEBHOOK_SUCCESS_RATIO: &str = "eventbus_webhook_success_ratio";
/// Endpoints disabled after failing continuously.
pub const WEBHOOK_AUTO_DISABLED: &str = "eventbus_webhook_endpoints_disabled_total";
/// Calls into plugins, by `plugin` and `outcome` (`ok`, `error`, `timeout`, `memory`,
/// `unavailable`).
pub const PLUGIN_CALLS: &str = "eventbus_plugin_calls_total";
/// Events a plugin failed on after its retries, by `plugin`.
pub const PLUGIN_DEAD_LETTERS: &str = "eventbus_plugin_dead_letters_total";
/// Plugins suspended after repeated failures, by `plugin`.
pub const PLUGIN_SUSPENSIONS: &str = "eventbus_plugin_suspensions_total";
/// Events committed after the last one a plugin handled, by `plugin`.
pub const PLUGIN_QUEUE_DEPTH: &str = "eventbus_plugin_queue_depth";
/// Archive runs, by `outcome` (`ok`, `failed`, `busy`: another archiver held the lock).
pub const ARCHIVE_RUNS: &str = "eventbus_archive_runs_total";
/// Events moved out of the hot table by archive runs.
pub const ARCHIVED_EVENTS: &str = "eventbus_archived_events_total";
/// When an archive run last succeeded (seconds since the epoch).
pub const ARCHIVE_LAST_SUCCESS: &str = "eventbus_archive_last_success_timestamp_seconds";
/// 1 when acknowledged appends survive a power cut with the store's settings, 0 when not.
pub const STORE_DURABLE_ACKS: &str = "eventbus_store_durable_acks";
/// Matching events a consumer group has not delivered yet, by `group`.
pub const GROUP_PENDING: &str = "eventbus_group_pending_events";
/// Messages of a consumer group handed out and not acked, by `group`.
pub const GROUP_ACK_PENDING: &str = "eventbus_group_ack_pending_messages";
/// Deliveries after the first, since a consumer group was created, by `group`.
pub const GROUP_REDELIVERIES: &str = "eventbus_group_redeliveries_total";
/// Dead letters a consumer group holds, by `group`.
pub const GROUP_DEAD_LETTERS: &str = "eventbus_group_dead_letters";
/// Age of a consumer group's oldest message not acked (0 when none), by `group`.
pub const GROUP_OLDEST_UNACKED: &str = "eventbus_group_oldest_unacked_seconds";
/// Outbox rows appended to the log, by `source`.
pub const OUTBOX_RELAYED: &str = "eventbus_outbox_relayed_total";
/// Outbox rows the bus refused and set aside, by `source`.
pub const OUTBOX_DEAD_LETTERED: &str = "eventbus_outbox_dead_lettered_total";
/// Failed relay attempts (database or store unavailable), by `source`.
pub const OUTBOX_ERRORS: &str = "eventbus_outbox_errors_total";
/// Rows waiting in an outbox, by `source`.
pub const OUTBOX_BACKLOG: &str = "eventbus_outbox_backlog_rows";
/// Age of an outbox's oldest waiting row (0 when none), by `source`.
pub const OUTBOX_OLDEST_AGE: &str = "eventbus_outbox_oldest_row_age_seconds";
/// Dead letters an outbox holds, by `source`.
pub const OUTBOX_DEAD_LETTERS: &str = "eventbus_outbox_dead_letters";
/// 1 while this process relays the source, 0 while it stands by or cannot reach it, by `source`.
pub const OUTBOX_RELAYING: &str = "eventbus_outbox_relaying";
/// Resident memory of the process.
pub const PROCESS_RSS: &str = "eventbus_process_resident_memory_bytes";
/// CPU time of the process.
pub const PROCESS_CPU: &str = "eventbus_process_cpu_seconds_total";
/// Open file descriptors of the process.
pub const PROCESS_FDS: &str = "eventbus_process_open_fds";
/// Tasks alive on the process's async runtime (streams, connections, workers).
pub const RUNTIME_TASKS: &str = "eventbus_runtime_tasks";

/// The kind of a metric, as Prometheus declares it (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// Every metric of the bus: name, kind, the `# HELP` text, and the label values its series
/// exist with from start-up (each inner slice one series; empty: one unlabelled series; `None`:
/// its series appear with the thing they count, such as a plugin or a handler).
#[allow(clippy::type_complexity)]
pub const CATALOGUE: &[(&str, Kind, &str, Option<&[&[(&str, &str)]]>)] = &[
    (
        EVENTS_PUBLISHED,
        Kind::Counter,
        "Events through publish, by type (catalogue types; others as `other`) and outcome (created, duplicate, rejected, failed).",
        None,
    ),
    (
        PUBLISH_DURATION,
        Kind::Histogram,
        "Seconds from a publish call to its answer (one call may carry a batch).",
        Some(&[&[]]),
    ),
    (
        STORE_BATCH_SIZE,
        Kind::Histogram,
        "Events per group commit of the store.",
        Some(&[&[]]),
    ),
    (
        STORE_APPEND_DURATION,
        Kind::Histogram,
        "Seconds one group commit of the store takes, write and fsync.",
        Some(&[&[]]),
    ),
    (
        STORE_TAIL_MISSES,
        Kind::Counter,
        "Reads of the newest events that the in-memory commit log could not serve and sent to the store (a cursor older than the log, or commits of another process).",
        Some(&[&[]]),
    ),
    (
        HANDLER_DURATION,
        Kind::Histogram,
        "Seconds an in-process handler takes, by handler (subscriber:<pattern> or consumer:<name>).",
        None,
    ),
    (
        HANDLER_ERRORS,
        Kind::Counter,
        "In-process handler failures and panics, by handler.",
        None,
    ),
    (
        QUEUE_DEPTH,
        Kind::Gauge,
        "Items waiting in a queue, by queue (store_writer, subscribers, sse, webhooks).",
        Some(&[
            &[("queue", "store_writer")],
            &[("queue", "subscribers")],
            &[("queue", "sse")],
        ]),
    ),
    (
        SSE_CONNECTIONS,
        Kind::Gauge,
        "Open SSE streams.",
        Some(&[&[]]),
    ),
    (
        SSE_LAGGED,
        Kind::Counter,
        "SSE streams closed because their client read too slowly.",
        Some(&[&[]]),
    ),
    (
        WEBHOOK_ATTEMPTS,
        Kind::Counter,
        "Webhook delivery attempts, by outcome (succeeded, failed).",
        None,
    ),
    (
        WEBHOOK_DEAD_LETTERS,
        Kind::Counter,
        "Webhook deliveries that exhausted their retries.",
        None,
    ),
    (
        WEBHOOK_ATTEMPT_DURATION,
        Kind::Histogram,
        "Seconds one webhook attempt takes.",
        None,
    ),
    (
        WEBHOOK_SUCCESS_RATIO,
        Kind::Gauge,
        "Share of webhook attempts that succeeded since the start (1 when none ran).",
        None,
    ),
    (
        WEBHOOK_AUTO_DISABLED,
        Kind::Counter,
        "Webhook endpoints disabled after failing continuously.",
        None,
    ),
    (
        PLUGIN_CALLS,
        Kind::Counter,
        "Calls into plugins, by plugin and outcome (ok, error, timeout, memory, unavailable).",
        None,
    ),
    (
        PLUGIN_DEAD_LETTERS,
        Kind::Counter,
        "Events a plugin failed on after its retries, by plugin.",
        None,
    ),
    (
        PLUGIN_SUSPENSIONS,
        Kind::Counter,
        "Plugins suspended after repeated failures, by plugin.",
        None,
    ),
    (
        PLUGIN_QUEUE_DEPTH,
        Kind::Gauge,
        "Events committed after the last one a plugin handled, by plugin.",
        None,
    ),
    (
        ARCHIVE_RUNS,
        Kind::Counter,
        "Archive runs, by outcome (ok, failed, busy: another archiver held the lock).",
        Some(&[
            &[("outcome", "ok")],
            &[("outcome", "failed")],
            &[("outcome", "busy")],
        ]),
    ),
    (
        ARCHIVED_EVENTS,
        Kind::Counter,
        "Events moved out of the hot table by archive runs.",
        Some(&[&[]]),
    ),
    (
        ARCHIVE_LAST_SUCCESS,
        Kind::Gauge,
        "When an archive run last succeeded, in seconds since the epoch (0: never).",
        Some(&[&[]]),
    ),
    (
        STORE_DURABLE_ACKS,
        Kind::Gauge,
        "1 when an acknowledged publish survives a power cut with the store's present settings (PostgreSQL fsync, full_page_writes, synchronous_commit; SQLite synchronous), 0 when not.",
        None,
    ),
    (
        GROUP_PENDING,
        Kind::Gauge,
        "Matching events a consumer group has not delivered yet, by group (the first 100 groups by name).",
        None,
    ),
    (
        GROUP_ACK_PENDING,
        Kind::Gauge,
        "Messages of a consumer group handed out and not acked, by group.",
        None,
    ),
    (
        GROUP_REDELIVERIES,
        Kind::Counter,
        "Deliveries after the first since a consumer group was created, by group.",
        None,
    ),
    (
        GROUP_DEAD_LETTERS,
        Kind::Gauge,
        "Dead letters a consumer group holds, by group.",
        None,
    ),
    (
        GROUP_OLDEST_UNACKED,
        Kind::Gauge,
        "Age of a consumer group's oldest message not acked, in seconds (0: none), by group.",
        None,
    ),
    (
        OUTBOX_RELAYED,
        Kind::Counter,
        "Outbox rows appended to the log by this process, by source.",
        None,
    ),
    (
        OUTBOX_DEAD_LETTERED,
        Kind::Counter,
        "Outbox rows the bus refused and moved to the dead letters, by source.",
        None,
    ),
    (
        OUTBOX_ERRORS,
        Kind::Counter,
        "Failed relay attempts (application database or event store unavailable), by source.",
        None,
    ),
    (
        OUTBOX_BACKLOG,
        Kind::Gauge,
        "Rows waiting in an outbox, by source (measured by the relaying process, about every second).",
        None,
    ),
    (
        OUTBOX_OLDEST_AGE,
        Kind::Gauge,
        "Age of the oldest row waiting in an outbox, in seconds (0: none), by source.",
        None,
    ),
    (
        OUTBOX_DEAD_LETTERS,
        Kind::Gauge,
        "Dead letters an outbox holds, by source.",
        None,
    ),
    (
        OUTBOX_RELAYING,
        Kind::Gauge,
        "1 while this process relays the source, 0 while another does or the database is unreachable, by source.",
        None,
    ),
    (
        PROCESS_RSS,
        Kind::Gauge,
        "Resident memory of the process, in bytes.",
        Some(&[&[]]),
    ),
    (
        PROCESS_CPU,
        Kind::Counter,
        "CPU time of the process, user and system, in seconds.",
        Some(&[&[]]),
    ),
    (
        PROCESS_FDS,
        Kind::Gauge,
        "Open file descriptors of the process.",
        Some(&[&[]]),
    ),
    (
        RUNTIME_TASKS,
        Kind::Gauge,
        "Tasks alive on the process's async runtime: one or more per open connection, stream and worker; flat under steady load.",
        Some(&[&[]]),
    ),
];

/// Describes every metric of [`CATALOGUE`] to the installed recorder (its `# HELP` line) and
/// creates the series that exist from start-up, at zero. Call once, after installing the
/// recorder; the webhook transport's series are created with it (see [`describe_webhooks`]).
pub fn describe() {
    for &(name, kind, help, series) in CATALOGUE {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
        for labels in series.unwrap_or_default() {
            let labels: Vec<metrics::Label> = labels
                .iter()
                .map(|&(k, v)| metrics::Label::new(k, v))
                .collect();
            match kind {
                Kind::Counter => metrics::counter!(name, labels).absolute(0),
                Kind::Gauge => metrics::gauge!(name, labels).set(0.0),
                Kind::Histogram => {
                    let _ = metrics::histogram!(name, labels);
                }
            }
        }
    }
}

/// Creates the webhook transport's series at zero, for a store that has webhooks.
pub fn describe_webhooks() {
    for outcome in ["succeeded", "failed"] {
        metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).absolute(0);
    }
    metrics::counter!(WEBHOOK_DEAD_LETTERS).absolute(0);
    metrics::counter!(WEBHOOK_AUTO_DISABLED).absolute(0);
    metrics::gauge!(WEBHOOK_SUCCESS_RATIO).set(1.0);
    metrics::gauge!(QUEUE_DEPTH, "queue" => "webhooks").set(0.0);
    let _ = metrics::histogram!(WEBHOOK_ATTEMPT_DURATION);
}

/// Histogram buckets for durations, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Histogram buckets for batch sizes.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Counts `n` events of `event_type` (already reduced to a bounded label) with `outcome`.
pub fn published(event_type: &str, outcome: &'static str, n: u64) {
    metrics::counter!(EVENTS_PUBLISHED, "type" => event_type.to_owned(), "outcome" => outcome)
        .increment(n);
}

/// Records one group commit.
pub fn store_group(events: usize, took: Duration) {
    metrics::histogram!(STORE_BATCH_SIZE).record(events as f64);
    metrics::histogram!(STORE_APPEND_DURATION).record(took.as_secs_f64());
}

/// Sets the gauges of consumer group `group` (read from the store at scrape time).
pub fn group_state(
    group: &str,
    pending: u64,
    ack_pending: u64,
    redelivered: u64,
    dead_lettered: u64,
    oldest_unacked: Duration,
) {
    let label = || group.to_owned();
    metrics::gauge!(GROUP_PENDING, "group" => label()).set(pending as f64);
    metrics::gauge!(GROUP_ACK_PENDING, "group" => label()).set(ack_pending as f64);
    metrics::counter!(GROUP_REDELIVERIES, "group" => label()).absolute(redelivered);
    metrics::gauge!(GROUP_DEAD_LETTERS, "group" => label()).set(dead_lettered as f64);
    metrics::gauge!(GROUP_OLDEST_UNACKED, "group" => label()).set(oldest_unacked.as_secs_f64());
}

/// The duration histogram and error counter of one handler, registered once.
#[derive(Clone)]
pub struct HandlerMetrics {
    duration: metrics::Histogram,
    errors: metrics::Counter,
}

impl HandlerMetrics {
    /// The metrics of handler `name` (`subscriber:<pattern>`, `consumer:<name>`).
    pub fn new(name: String) -> Self {
        HandlerMetrics {
            duration: metrics::histogram!(HANDLER_DURATION, "handler" => name.clone()),
            errors: metrics::counter!(HANDLER_ERRORS, "handler" => name),
        }
    }

    /// Records one call.
    pub fn record(&self, took: Duration, ok: bool) {
        self.duration.record(took.as_secs_f64());
        if !ok {
            self.errors.increment(1);
        }
    }
}
