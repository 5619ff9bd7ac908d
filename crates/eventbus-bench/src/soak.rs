//! The soak test: every kind of load at once for a long time, the server's resources sampled each
//! second, and a judgement of whether they stay flat once warmed up.
//!
//! The load, all against one spawned server on loopback, all bounded in rate and count:
//! - publishes, open loop: `rate` events per second on a fixed schedule, one event per request
//!   and every [`BATCH_EVERY`]th request a batch of [`BATCH`]; one event in ten is
//!   `project.deployed` (the webhooks' type), the rest `project.updated`, over 100 projects;
//! - queries: `GET /v1/events?type=project.updated&projectId=…&limit=20`, one after another at
//!   `queries` per second;
//! - `streams` SSE streams, each filtered to one project, each open 1–10 s, then dropped and
//!   reopened with `Last-Event-ID` (a resume that replays what it missed);
//! - webhooks: [`ENDPOINTS`] endpoints of a local receiver that answers most attempts `200` at
//!   once, some after a second, some `500`, and some never (it holds the connection until the
//!   server's timeout gives up) — the server retries with a short schedule, then dead-letters;
//! - a JavaScript plugin whose `onEvent` handles every `project.updated` event.
//!
//! Each second the sampler reads the server's RSS, open descriptors and threads from
//! `/proc/<pid>`, and its alive tasks and queue depths from `/metrics`, beside the load done in
//! that second. [`judge`] compares the first and last thirds of the run after its warm-up: RSS,
//! descriptors, tasks and queue depths must stay within a ratio and a slack of where they were
//! ([`RULES`]). A leak grows with the load done, so it shows over minutes; noise does not.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::header::CONTENT_TYPE;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::server::SpawnedServer;
use crate::webhook::read_request;

/// Webhook endpoints on the receiver.
pub const ENDPOINTS: usize = 4;
/// Every this many publish requests, one carries a batch.
pub const BATCH_EVERY: u64 = 50;
/// Events in such a batch.
pub const BATCH: u64 = 10;
/// The most publish requests in flight; past it a due publish is skipped and counted.
const MAX_IN_FLIGHT: usize = 512;
/// Projects the events, streams and queries are spread over.
const PROJECTS: u64 = 100;
/// The receiver's mix, in percent of attempts: `200` at once, `200` after [`SLOW`], `500`;
/// the rest hang.
const MIX_OK: u64 = 82;
const MIX_SLOW: u64 = 6;
const MIX_ERROR: u64 = 7;
/// How long a slow answer takes.
const SLOW: Duration = Duration::from_secs(1);
/// The longest the receiver holds a hanging connection (the server gives up far sooner).
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// One soak run.
#[derive(Debug, Clone)]
pub struct SoakLoad {
    /// Server base URL.
    pub url: String,
    /// Events published per second.
    pub rate: u64,
    /// Queries per second.
    pub queries: u64,
    /// SSE streams open at once (each reconnecting).
    pub streams: usize,
    /// How long the load runs.
    pub duration: Duration,
    /// Seconds of the table's rows (the CSV has every second).
    pub every: u64,
    /// JSON payload size in bytes.
    pub payload_bytes: usize,
    /// Where each second's sample is appended as it is taken (CSV with a header line), so an
    /// interrupted run keeps what it measured.
    pub csv: Option<std::path::PathBuf>,
}

/// The server settings a soak run needs beside the spawned server's defaults.
pub fn server_env(streams: usize) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8".into()),
        ("WEBHOOK_TIMEOUT", "2000".into()),
        ("WEBHOOK_RETRY_ATTEMPTS", "2".into()),
        ("WEBHOOK_RETRY_SCHEDULE", "1s,2s".into()),
        ("SSE_MAX_CONNECTIONS", (streams + 100).to_string()),
        ("TENANT_MAX_CONNECTIONS", "0".into()),
    ]
}

/// Load done since the start, counted by the load's tasks.
#[derive(Default)]
struct Counters {
    events: AtomicU64,
    publish_errors: AtomicU64,
    publish_skipped: AtomicU64,
    queries: AtomicU64,
    query_errors: AtomicU64,
    connects: AtomicU64,
    resumes: AtomicU64,
    stream_errors: AtomicU64,
    sse_events: AtomicU64,
    hook_ok: AtomicU64,
    hook_slow: AtomicU64,
    hook_error: AtomicU64,
    hook_hang: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .expect("error lock")
            .get_or_insert(what);
    }
}

/// The columns of a sample, in CSV order: gauges read at the second's end, then the load done in
/// that second.
pub const COLUMNS: &[&str] = &[
    "t_s",
    "rss_mib",
    "fds",
    "tasks",
    "threads",
    "sse_connections",
    "q_store_writer",
    "q_subscribers",
    "q_sse",
    "q_webhooks",
    "q_plugin",
    "events",
    "publish_errors",
    "publish_skipped",
    "queries",
    "query_errors",
    "stream_connects",
    "stream_errors",
    "sse_events",
    "hook_ok",
    "hook_slow",
    "hook_500",
    "hook_hang",
    "attempts_ok",
    "attempts_failed",
    "dead_letters",
    "plugin_handled",
];

/// One second of the run: a value per [`COLUMNS`] entry (NaN when unread).
#[derive(Debug, Clone)]
pub struct Sample(pub Vec<f64>);

impl Sample {
    /// The value of `column`.
    pub fn get(&self, column: &str) -> f64 {
        COLUMNS
            .iter()
            .position(|c| *c == column)
            .map_or(f64::NAN, |i| self.0[i])
    }
}

/// The gauges of one column and how far they may move between the windows: the last window's
/// median at most `ratio` × the first window's median + `slack`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The column.
    pub column: &'static str,
    /// Relative growth allowed.
    pub ratio: f64,
    /// Absolute growth allowed (in the column's unit).
    pub slack: f64,
}

/// What must stay flat. RSS, descriptors and tasks: +10 % and a small slack (a leak of one
/// descriptor or task per stream, or of a few KiB per event, passes it within minutes); queues:
/// +50 % and a slack, as they swing with the receiver's mix and the streams.
pub const RULES: &[Rule] = &[
    Rule {
        column: "rss_mib",
        ratio: 1.10,
        slack: 8.0,
    },
    Rule {
        column: "fds",
        ratio: 1.10,
        slack: 25.0,
    },
    Rule {
        column: "tasks",
        ratio: 1.10,
        slack: 50.0,
    },
    Rule {
        column: "q_store_writer",
        ratio: 1.5,
        slack: 200.0,
    },
    Rule {
        column: "q_subscribers",
        ratio: 1.5,
        slack: 200.0,
    },
    Rule {
        column: "q_sse",
        ratio: 1.5,
        slack: 1000.0,
    },
    Rule {
        column: "q_webhooks",
        ratio: 1.5,
        slack: 250.0,
    },
    Rule {
        column: "q_plugin",
        ratio: 1.5,
        slack: 500.0,
    },
];

/// One verdict of [`judge`].
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What was judged.
    pub what: String,
    /// The first window's median (or the measured figure).
    pub before: f64,
    /// The last window's median.
    pub after: f64,
    /// The most `after` may be.
    pub limit: f64,
    /// Whether it held.
    pub passed: bool,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<16} {:>10.1} -> {:>10.1} (limit {:>10.1}) {}",
            self.what,
            self.before,
            self.after,
            self.limit,
            if self.passed { "flat" } else { "GREW" }
        )
    }
}

/// The warm-up: the first quarter of the run, at least 20 s (all of a run shorter than that).
pub fn warmup(duration: Duration) -> Duration {
    (duration / 4).max(Duration::from_secs(20)).min(duration)
}

/// The two windows compared: the first and the last third of the samples after `warmup`
/// (for a run whose warm-up is its first quarter: its second and its fourth quarter).
pub fn windows(
    samples: &[Sample],
    warmup: Duration,
) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let start = samples
        .iter()
        .position(|s| s.get("t_s") >= warmup.as_secs_f64())?;
    let third = (samples.len() - start) / 3;
    if third < 3 {
        return None;
    }
    Some((start..start + third, samples.len() - third..samples.len()))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Judges each of [`RULES`] on `samples`; empty when the run is too short to have windows.
/// A column never read (NaN throughout, e.g. no webhook queue) passes.
pub fn judge(samples: &[Sample], warmup: Duration) -> Vec<Verdict> {
    let Some((first, last)) = windows(samples, warmup) else {
        return Vec::new();
    };
    RULES
        .iter()
        .map(|rule| {
            let before = median(samples[first.clone()].iter().map(|s| s.get(rule.column)));
            let after = median(samples[last.clone()].iter().map(|s| s.get(rule.column)));
            let limit = before * rule.ratio + rule.slack;
            Verdict {
                what: rule.column.to_owned(),
                before,
                after,
                limit,
                passed: !after.is_finite() || !limit.is_finite() || after <= limit,
            }
        })
        .collect()
}

/// What a soak run measured.
pub struct SoakResult {
    /// One per second of load.
    pub samples: Vec<Sample>,
    /// Totals of the load over the run, by column of [`COLUMNS`] (counts only).
    pub totals: Vec<(&'static str, f64)>,
    /// The first failed request, if any.
    pub first_error: Option<String>,
    /// Set when the server exited during the run.
    pub server_exit: Option<String>,
    /// Samples whose `/metrics` scrape failed.
    pub failed_scrapes: u64,
    /// Set when SIGTERM or Ctrl-C ended the run early.
    pub interrupted: Option<String>,
}

/// Runs the soak against `server` and prints the table's rows as they complete.
pub async fn run(load: &SoakLoad, server: &mut SpawnedServer) -> Result<SoakResult> {
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop) = watch::channel(false);
    let receiver = start_receiver(counters.clone(), stop.clone()).await?;
    let client = crate::server::client_builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    for e in 0..ENDPOINTS {
        crate::webhook::create_endpoint(&client, &load.url, receiver, e, "project.deployed")
            .await?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(publish(
        load.clone(),
        client.clone(),
        counters.clone(),
        stop.clone(),
    ));
    tasks.spawn(query(
        load.clone(),
        client.clone(),
        counters.clone(),
        stop.clone(),
    ));
    let stream_client = crate::server::client_builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()?;
    for i in 0..load.streams {
        tasks.spawn(stream(
            i,
            load.url.clone(),
            stream_client.clone(),
            counters.clone(),
            stop.clone(),
        ));
    }

    let pid = server.pid();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut failed_scrapes = 0;
    let mut server_exit = None;
    let mut previous = Totals::default();
    let mut rows = Vec::new();
    let mut csv_file = match &load.csv {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            std::io::Write::write_all(&mut f, csv(&[]).as_bytes())?;
            Some(f)
        }
        None => None,
    };
    let mut interrupted = None;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    println!("{}", header());
    while started.elapsed() < load.duration {
        tokio::select! {
            _ = tick.tick() => {}
            _ = terminate.recv() => {
                interrupted = Some(format!("SIGTERM after {:.0} s", started.elapsed().as_secs_f64()));
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                interrupted = Some(format!("Ctrl-C after {:.0} s", started.elapsed().as_secs_f64()));
                break;
            }
        }
        if let Some(status) = server.exit_status() {
            server_exit = Some(format!(
                "the server exited after {:.0} s: {status}",
                started.elapsed().as_secs_f64()
            ));
            break;
        }
        let mut metrics = match scrape(&client, &load.url).await {
            Ok(m) => m,
            Err(_) => {
                failed_scrapes += 1;
                HashMap::new()
            }
        };
        if let Ok(handled) = plugin_handled(&client, &load.url).await {
            metrics.insert(PLUGIN_HANDLED.to_owned(), handled);
        }
        let now = Totals::read(&counters, &metrics).or(&previous);
        let sample = sample(started.elapsed(), pid, &metrics, &now, &previous);
        previous = now;
        if let Some(f) = &mut csv_file {
            let line = csv(std::slice::from_ref(&sample));
            let body = line.split_once('\n').map_or("", |(_, rest)| rest);
            std::io::Write::write_all(f, body.as_bytes())?;
        }
        rows.push(sample.clone());
        samples.push(sample);
        if rows.len() as u64 >= load.every {
            println!("{}", row(&rows));
            rows.clear();
        }
    }
    if !rows.is_empty() {
        println!("{}", row(&rows));
    }
    stop_tx.send_replace(true);
    // Every task watches `stop`; the bound is for one stuck in a request.
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let totals = COLUMNS
        .iter()
        .skip(11)
        .map(|&c| {
            let values = samples.iter().map(|s| s.get(c)).filter(|v| v.is_finite());
            (c, values.fold(0.0, |a, b| a + b))
        })
        .collect();
    let first_error = counters.first_error.lock().expect("error lock").take();
    Ok(SoakResult {
        samples,
        totals,
        first_error,
        server_exit,
        failed_scrapes,
        interrupted,
    })
}

/// Counters at one moment: the load's, then the server's own from `/metrics`.
#[derive(Default, Clone)]
struct Totals(Vec<f64>);

impl Totals {
    /// Keeps `before`'s value where this one is unread (a failed scrape), so that second counts
    /// nothing and the next one counts both.
    fn or(mut self, before: &Totals) -> Self {
        for (i, v) in self.0.iter_mut().enumerate() {
            if v.is_nan() {
                *v = before.0.get(i).copied().unwrap_or(f64::NAN);
            }
        }
        self
    }

    fn read(c: &Counters, metrics: &HashMap<String, f64>) -> Self {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let m = |k: &str| metrics.get(k).copied().unwrap_or(f64::NAN);
        Totals(vec![
            l(&c.events),
            l(&c.publish_errors),
            l(&c.publish_skipped),
            l(&c.queries),
            l(&c.query_errors),
            l(&c.connects),
            l(&c.stream_errors),
            l(&c.sse_events),
            l(&c.hook_ok),
            l(&c.hook_slow),
            l(&c.hook_error),
            l(&c.hook_hang),
            m(r#"eventbus_webhook_attempts_total{outcome="succeeded"}"#),
            m(r#"eventbus_webhook_attempts_total{outcome="failed"}"#),
            m("eventbus_webhook_dead_letters_total"),
            m(PLUGIN_HANDLED),
        ])
    }
}

fn sample(
    t: Duration,
    pid: u32,
    metrics: &HashMap<String, f64>,
    now: &Totals,
    before: &Totals,
) -> Sample {
    let m = |k: &str| metrics.get(k).copied().unwrap_or(f64::NAN);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(f64::NAN, |d| d.count() as f64);
    let mut values = vec![
        t.as_secs_f64().round(),
        field("VmRSS:") / 1024.0,
        fds,
        m("eventbus_runtime_tasks"),
        field("Threads:"),
        m("eventbus_sse_connections"),
        m(r#"eventbus_queue_depth{queue="store_writer"}"#),
        m(r#"eventbus_queue_depth{queue="subscribers"}"#),
        m(r#"eventbus_queue_depth{queue="sse"}"#),
        m(r#"eventbus_queue_depth{queue="webhooks"}"#),
        m(r#"eventbus_plugin_queue_depth{plugin="bench"}"#),
    ];
    values.extend(
        now.0
            .iter()
            .zip(before.0.iter().chain(std::iter::repeat(&0.0)))
            .map(|(n, b)| {
                // A server counter first read this second counts from zero.
                if b.is_nan() { *n } else { n - b }
            }),
    );
    Sample(values)
}

/// `GET /metrics`, as series → value (the series as written, labels included).
async fn scrape(client: &reqwest::Client, url: &str) -> Result<HashMap<String, f64>> {
    Ok(crate::server::parse_metrics(
        &crate::server::metrics_text(client, url).await?,
    ))
}

/// The key under which the plugin's `counters.handled` joins the scraped series.
const PLUGIN_HANDLED: &str = "plugin handled";

/// Events the plugin `bench` has handled (`GET /v1/plugins/bench`).
async fn plugin_handled(client: &reqwest::Client, url: &str) -> Result<f64> {
    let body: serde_json::Value = client
        .get(format!("{url}/v1/plugins/bench"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    body["counters"]["handled"]
        .as_f64()
        .context("no counters.handled")
}

fn header() -> String {
    format!(
        "{:>6} {:>8} {:>6} {:>6} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7}",
        "t s",
        "RSS MiB",
        "fds",
        "tasks",
        "thr",
        "sse",
        "q_wr",
        "q_sub",
        "q_sse",
        "q_hook",
        "q_plugin",
        "events",
        "queries",
        "connect",
        "hook ok",
        "slow",
        "500",
        "hang",
        "att ok",
        "att err",
        "errors"
    )
}

/// One row of the table: the gauges at the end of `rows`, the load summed over them.
fn row(rows: &[Sample]) -> String {
    let last = rows.last().expect("a row has samples");
    let sum = |c: &str| -> f64 {
        rows.iter()
            .map(|s| s.get(c))
            .filter(|v| v.is_finite())
            .fold(0.0, |a, b| a + b)
    };
    let g = |c: &str| {
        let v = last.get(c);
        if v.is_finite() {
            format!("{v:.0}")
        } else {
            "-".into()
        }
    };
    let errors = sum("publish_errors") + sum("query_errors") + sum("stream_errors");
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>6.0} {:>8.1} {:>6} {:>6} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>7.0} {:>8.0} {:>7.0} {:>7.0} {:>6.0} {:>6.0} {:>6.0} {:>7.0} {:>7.0} {:>7.0}",
        last.get("t_s"),
        last.get("rss_mib"),
        g("fds"),
        g("tasks"),
        g("threads"),
        g("sse_connections"),
        g("q_store_writer"),
        g("q_subscribers"),
        g("q_sse"),
        g("q_webhooks"),
        g("q_plugin"),
        sum("events"),
        sum("queries"),
        sum("stream_connects"),
        sum("hook_ok"),
        sum("hook_slow"),
        sum("hook_500"),
        sum("hook_hang"),
        sum("attempts_ok"),
        sum("attempts_failed"),
        errors
    );
    out
}

/// The samples as CSV, a header line first.
pub fn csv(samples: &[Sample]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for s in samples {
        let line: Vec<String> =
            s.0.iter()
                .map(|v| {
                    if v.is_finite() {
                        format!("{}", (v * 10.0).round() / 10.0)
                    } else {
                        String::new()
                    }
                })
                .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// A small deterministic generator (splitmix64), so runs need no randomness crate.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Open-loop publishes: request `k` due at `start + events before it / rate`.
async fn publish(
    load: SoakLoad,
    client: reqwest::Client,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let payload = crate::workload::payload(load.payload_bytes);
    let url = format!("{}/v1/events", load.url);
    let body = |i: u64| {
        let kind = if i.is_multiple_of(10) {
            "deployed"
        } else {
            "updated"
        };
        format!(
            r#"{{"type":"project.{kind}","projectId":"p_{}","payload":{payload}}}"#,
            i % PROJECTS
        )
    };
    let start = tokio::time::Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    let (mut scheduled, mut request) = (0u64, 0u64);
    loop {
        let n = if request % BATCH_EVERY == BATCH_EVERY - 1 {
            BATCH
        } else {
            1
        };
        let due = start + Duration::from_secs_f64(scheduled as f64 / load.rate as f64);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            counters.publish_skipped.fetch_add(n, Ordering::Relaxed);
        } else {
            let text = if n == 1 {
                body(scheduled)
            } else {
                let events: Vec<String> = (scheduled..scheduled + n).map(body).collect();
                format!("[{}]", events.join(","))
            };
            let (client, url, counters) = (client.clone(), url.clone(), counters.clone());
            in_flight.spawn(async move {
                let sent = client
                    .post(url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(text)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        let _ = r.bytes().await;
                        counters.events.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(r) => counters.error(
                        &counters.publish_errors,
                        format!("publish answered {}", r.status()),
                    ),
                    Err(e) => counters.error(&counters.publish_errors, format!("publish: {e}")),
                }
            });
        }
        scheduled += n;
        request += 1;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
}

/// Queries one after another, `load.queries` per second.
async fn query(
    load: SoakLoad,
    client: reqwest::Client,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / load.queries.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for k in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let url = format!(
            "{}/v1/events?type=project.updated&projectId=p_{}&limit=20",
            load.url,
            mix(k) % PROJECTS
        );
        match client
            .get(url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {
                let _ = r.bytes().await;
                counters.queries.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => counters.error(
                &counters.query_errors,
                format!("query answered {}", r.status()),
            ),
            Err(e) => counters.error(&counters.query_errors, format!("query: {e}")),
        }
    }
}

/// Stream `i`: open, read for 1–10 s, drop, reopen with `Last-Event-ID`, until `stop`.
async fn stream(
    i: usize,
    url: String,
    client: reqwest::Client,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let url = format!(
        "{url}/v1/stream?types=project.%3E&projectId=p_{}",
        i as u64 % PROJECTS
    );
    // Spread the first connections over two seconds.
    let first = Duration::from_millis((i % 1000) as u64 * 2);
    tokio::select! {
        _ = tokio::time::sleep(first) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let mut last_id: Option<String> = None;
    for round in 0u64.. {
        let life = Duration::from_millis(1000 + mix((i as u64) << 32 | round) % 9000);
        let mut request = client.get(&url);
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let until = tokio::time::Instant::now() + life;
        let opened = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), request.send()) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut response = match opened {
            Ok(Ok(r)) if r.status() == 200 => r,
            failed => {
                let what = match failed {
                    Ok(Ok(r)) => format!("stream answered {}", r.status()),
                    Ok(Err(e)) => format!("stream: {e}"),
                    Err(_) => "stream: no answer in 10 s".into(),
                };
                counters.error(&counters.stream_errors, what);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        counters.connects.fetch_add(1, Ordering::Relaxed);
        if last_id.is_some() {
            counters.resumes.fetch_add(1, Ordering::Relaxed);
        }
        let mut buf = Vec::<u8>::new();
        loop {
            let chunk = tokio::select! {
                c = response.chunk() => c,
                _ = tokio::time::sleep_until(until) => break,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Ok(Some(chunk)) = chunk else { break };
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                for line in buf[..end].split(|b| *b == b'\n') {
                    if let Some(id) = line.strip_prefix(b"id: ") {
                        last_id = Some(String::from_utf8_lossy(id).into_owned());
                        counters.sse_events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                buf.drain(..end + 2);
            }
        }
    }
}

/// Starts the receiver on a loopback port; returns the port. Each attempt is answered by the
/// mix: `200`, `200` after [`SLOW`], `500`, or never (the connection is held until the server
/// closes it, at most [`HANG_LIMIT`]).
async fn start_receiver(counters: Arc<Counters>, stop: watch::Receiver<bool>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the receiver")?;
    let port = listener.local_addr()?.port();
    let next = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        let mut stop_accepting = stop.clone();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop_accepting.wait_for(|s| *s) => return,
            };
            let Ok((socket, _)) = accepted else { continue };
            let _ = socket.set_nodelay(true);
            let (counters, next, mut stop) = (counters.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = answer(socket, &counters, &next) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
    });
    Ok(port)
}

async fn answer(
    socket: tokio::net::TcpStream,
    counters: &Counters,
    next: &AtomicU64,
) -> std::io::Result<()> {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    const ERROR: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n";
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    while read_request(&mut read).await?.is_some() {
        let roll = mix(next.fetch_add(1, Ordering::Relaxed)) % 100;
        if roll < MIX_OK {
            counters.hook_ok.fetch_add(1, Ordering::Relaxed);
            write.write_all(OK).await?;
        } else if roll < MIX_OK + MIX_SLOW {
            counters.hook_slow.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(SLOW).await;
            write.write_all(OK).await?;
        } else if roll < MIX_OK + MIX_SLOW + MIX_ERROR {
            counters.hook_error.fetch_add(1, Ordering::Relaxed);
            write.write_all(ERROR).await?;
        } else {
            counters.hook_hang.fetch_add(1, Ordering::Relaxed);
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(HANG_LIMIT, async {
                while read.read(&mut sink).await.unwrap_or(0) > 0 {}
            })
            .await;
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `n` seconds whose column `column` is `f(t)` and every other column 0.
    fn run_of(n: usize, column: &str, f: impl Fn(f64) -> f64) -> Vec<Sample> {
        let at = COLUMNS.iter().position(|c| *c == column).unwrap();
        (1..=n)
            .map(|t| {
                let mut v = vec![0.0; COLUMNS.len()];
                v[0] = t as f64;
                v[at] = f(t as f64);
                Sample(v)
            })
            .collect()
    }

    fn verdict<'a>(verdicts: &'a [Verdict], what: &str) -> &'a Verdict {
        verdicts.iter().find(|v| v.what == what).unwrap()
    }

    #[test]
    fn the_windows_follow_the_warm_up() {
        let samples = run_of(120, "tasks", |_| 1.0);
        assert_eq!(warmup(Duration::from_secs(120)), Duration::from_secs(30));
        assert_eq!(warmup(Duration::from_secs(40)), Duration::from_secs(20));
        assert_eq!(warmup(Duration::from_secs(1800)), Duration::from_secs(450));
        // 91 samples from t = 30 s: thirds of 30.
        assert_eq!(
            windows(&samples, Duration::from_secs(30)),
            Some((29..59, 90..120))
        );
        assert_eq!(windows(&samples[..25], Duration::from_secs(20)), None);
    }

    #[test]
    fn a_flat_run_passes() {
        // Noisy but flat: tasks swing ±100 around 1,200 as streams reconnect, RSS ±3 MiB.
        let mut samples = run_of(120, "tasks", |t| 1200.0 + 100.0 * (t * 0.7).sin());
        let rss = run_of(120, "rss_mib", |t| 60.0 + 3.0 * (t * 1.3).cos());
        for (s, r) in samples.iter_mut().zip(&rss) {
            s.0[1] = r.0[1];
        }
        let verdicts = judge(&samples, warmup(Duration::from_secs(120)));
        assert_eq!(verdicts.len(), RULES.len());
        assert!(verdicts.iter().all(|v| v.passed), "{verdicts:?}");
    }

    #[test]
    fn a_warm_up_climb_is_forgiven() {
        // RSS climbs from 20 to 80 MiB in the first 25 s (caches filling), then stays.
        let samples = run_of(
            120,
            "rss_mib",
            |t| if t < 25.0 { 20.0 + 2.4 * t } else { 80.0 },
        );
        let verdicts = judge(&samples, warmup(Duration::from_secs(120)));
        assert!(verdict(&verdicts, "rss_mib").passed);
    }

    #[test]
    fn a_growing_run_fails() {
        // One task leaked per stream reconnect: ~36 per second with 200 streams.
        let samples = run_of(120, "tasks", |t| 400.0 + 36.0 * t);
        let verdicts = judge(&samples, warmup(Duration::from_secs(120)));
        assert!(!verdict(&verdicts, "tasks").passed);
        // One descriptor per reconnect.
        let samples = run_of(120, "fds", |t| 300.0 + 36.0 * t);
        assert!(!verdict(&judge(&samples, warmup(Duration::from_secs(120))), "fds").passed);
        // 512 KiB per second of memory.
        let samples = run_of(120, "rss_mib", |t| 50.0 + 0.5 * t);
        assert!(
            !verdict(
                &judge(&samples, warmup(Duration::from_secs(120))),
                "rss_mib"
            )
            .passed
        );
        // A queue that never drains.
        let samples = run_of(120, "q_webhooks", |t| 20.0 * t);
        assert!(
            !verdict(
                &judge(&samples, warmup(Duration::from_secs(120))),
                "q_webhooks"
            )
            .passed
        );
    }

    #[test]
    fn unread_columns_pass() {
        let samples = run_of(120, "q_plugin", |_| f64::NAN);
        assert!(verdict(&judge(&samples, Duration::from_secs(30)), "q_plugin").passed);
    }

    #[test]
    fn parses_the_metrics_text() {
        let m = crate::server::parse_metrics(
            "# HELP x y\n# TYPE x gauge\neventbus_queue_depth{queue=\"sse\"} 12\neventbus_runtime_tasks 345\n",
        );
        assert_eq!(m[r#"eventbus_queue_depth{queue="sse"}"#], 12.0);
        assert_eq!(m["eventbus_runtime_tasks"], 345.0);
        assert_eq!(m.len(), 2);
    }
}
