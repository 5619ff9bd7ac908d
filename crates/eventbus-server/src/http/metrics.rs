//! `GET /metrics`: Prometheus text format.
//!
//! Counters and histograms are recorded where things happen (see `eventbus::metric`); gauges of
//! state (queue depths, open streams, webhook totals, consumer groups, process resources, the
//! runtime's alive tasks) are read here, at scrape time, so they cost nothing between scrapes.
//! The queue depths are `EventBus::queue_depths`, the one reading of them.
//! [`MetricsApi`] is its part of the API description.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventbus::metric as m;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::auth::require_observer;
use super::problem::ApiError;
use super::state::AppState;

/// The route below in the API description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_metrics))]
pub(super) struct MetricsApi;

/// Longest a scrape waits for the consumer groups' state.
const GROUP_METRICS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), m::DURATION_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), m::SIZE_BUCKETS)
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics shows only this one's"
                );
            }
            // Every metric gets its `# HELP`, and the documented series exist at zero from now.
            m::describe();
            handle
        })
        .clone()
}

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(get_metrics))
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub(super) async fn get_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_observer(&state, &headers).await?;
    let handle = install();
    let bus = &state.bus;
    let gauge = |queue: &'static str, v: u64| {
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => queue).set(v as f64)
    };
    let depths = bus.queue_depths().await;
    gauge("store_writer", depths.store_writer as u64);
    gauge("subscribers", depths.subscribers as u64);
    gauge("sse", depths.sse as u64);
    if let Some(depth) = depths.webhooks {
        gauge("webhooks", depth);
    }
    metrics::counter!(m::STORE_TAIL_MISSES).absolute(bus.store().log().misses());
    let sse = bus.sse().stats();
    metrics::gauge!(m::SSE_CONNECTIONS)
        .set(sse.connections.load(std::sync::atomic::Ordering::Relaxed) as f64);
    metrics::counter!(m::SSE_LAGGED)
        .absolute(sse.lagged.load(std::sync::atomic::Ordering::Relaxed));
    if let Some(webhooks) = state.webhooks() {
        let s = webhooks.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = (load(&s.succeeded), load(&s.failed_attempts));
        metrics::counter!(m::WEBHOOK_ATTEMPTS, "outcome" => "succeeded").absolute(ok);
        metrics::counter!(m::WEBHOOK_ATTEMPTS, "outcome" => "failed").absolute(failed);
        metrics::counter!(m::WEBHOOK_DEAD_LETTERS).absolute(load(&s.dead_lettered));
        metrics::counter!(m::WEBHOOK_AUTO_DISABLED).absolute(load(&s.auto_disabled));
        let ratio = if ok + failed == 0 {
            1.0
        } else {
            ok as f64 / (ok + failed) as f64
        };
        metrics::gauge!(m::WEBHOOK_SUCCESS_RATIO).set(ratio);
    }
    if let Some(groups) = bus.groups() {
        // At most `MAX_LABELLED_GROUPS` state reads, bounded in time so a slow store does not
        // hold the scrape.
        match tokio::time::timeout(GROUP_METRICS_TIMEOUT, groups.record_metrics()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics: consumer groups unreadable"),
            Err(_) => tracing::warn!("metrics: consumer group state took over 2 s; skipped"),
        }
    }
    process_metrics();
    metrics::gauge!(m::RUNTIME_TASKS).set(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as f64,
    );
    handle.run_upkeep();
    let mut response = (StatusCode::OK, handle.render()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// RSS, CPU time and open descriptors from `/proc/self` (Linux; absent elsewhere).
fn process_metrics() {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    {
        metrics::gauge!(m::PROCESS_RSS).set(kib * 1024.0);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces): utime is the 14th, stime 15th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if let (Some(u), Some(s)) = (fields.get(11), fields.get(12))
            && let (Ok(u), Ok(s)) = (u.parse::<u64>(), s.parse::<u64>())
        {
            // Clock ticks; Linux reports them at 100 Hz to user space.
            metrics::counter!(m::PROCESS_CPU).absolute((u + s) / 100);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!(m::PROCESS_FDS).set(fds.count() as f64);
    }
}
