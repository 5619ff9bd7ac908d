//! The archive load: N events dated three days back are published to a fresh server, read page
//! by page with `GET /v1/events?includeArchived=true` while they are hot (the baseline), moved
//! out by `eventbus archive run`, and read the same way again, now from the archive target.
//! Reported: the archive run's events/s, and for each read shape the events/s and page
//! latency of both reads with their ratio.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::server::SpawnedServer;
use eventbus::core::time::Timestamp;

use crate::stats::{Latencies, Summary};
use crate::workload::{EVENT_TYPE, PROJECTS, event_json, payload, project_id};

/// One archive benchmark.
#[derive(Debug, Clone)]
pub struct ArchiveLoad {
    /// The `eventbus` binary.
    pub binary: PathBuf,
    /// Where the run's database and `file://` archive go.
    pub data_dir: PathBuf,
    /// Events published (all old enough to archive).
    pub events: usize,
    /// Events per page read.
    pub page: usize,
    /// JSON payload size in bytes.
    pub payload_bytes: usize,
    /// `EVENT_ARCHIVE_URL`; a `file://` folder of the run by default. `AWS_*` settings are
    /// taken from the environment.
    pub archive_url: Option<String>,
}

/// How one read went.
#[derive(Debug, Clone)]
pub struct Read {
    /// What was read.
    pub label: String,
    /// Events read.
    pub events: usize,
    /// Pages read.
    pub pages: usize,
    /// Wall time of the whole read.
    pub elapsed: Duration,
    /// Time per page.
    pub latency: Summary,
}

impl Read {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct ArchiveReport {
    /// Reads of the hot events, one per shape.
    pub hot: Vec<Read>,
    /// The same reads from the archive.
    pub archived: Vec<Read>,
    /// Events the archive run moved.
    pub archived_events: u64,
    /// Wall time of `eventbus archive run` (process start included).
    pub archive_run: Duration,
}

/// The read shapes: every event, and one project's (1 event in [`PROJECTS`]).
fn shapes() -> Vec<(String, Vec<(&'static str, String)>)> {
    vec![
        ("every event".to_owned(), Vec::new()),
        (
            format!("one project of {PROJECTS}"),
            vec![("projectId", project_id(1))],
        ),
    ]
}

/// Runs the benchmark.
pub async fn run(load: &ArchiveLoad) -> Result<ArchiveReport> {
    let dir = tempfile::Builder::new()
        .prefix("eventbus-bench-archive-")
        .tempdir_in(&load.data_dir)?;
    let archive_url = load
        .archive_url
        .clone()
        .unwrap_or_else(|| format!("file://{}", dir.path().join("archive").display()));
    let env = vec![
        (
            "EVENT_STORE_URL",
            format!("sqlite://{}", dir.path().join("eventbus.db").display()),
        ),
        ("EVENT_ARCHIVE_URL", archive_url),
    ];
    let server = SpawnedServer::start_with(&load.binary, &load.data_dir, "normal", &env)?;
    publish_old(server.url(), load).await?;
    let mut hot = Vec::new();
    for (label, filter) in shapes() {
        hot.push(read_all(server.url(), &format!("hot: {label}"), &filter, load.page).await?);
    }
    server.stop()?;

    let started = Instant::now();
    let out = Command::new(&load.binary)
        .args(["archive", "run"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("EVENT_RETENTION_DAYS", "1")
        .env("EVENT_BUS_ADMIN_KEY", crate::server::ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .output()
        .context("running eventbus archive run")?;
    let archive_run = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "eventbus archive run failed: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let archived_events: u64 = said
        .strip_prefix("archived ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected output of eventbus archive run: {said}"))?;

    let server = SpawnedServer::start_with(&load.binary, &load.data_dir, "normal", &env)?;
    let mut archived = Vec::new();
    for (label, filter) in shapes() {
        archived.push(
            read_all(
                server.url(),
                &format!("archived: {label}"),
                &filter,
                load.page,
            )
            .await?,
        );
    }
    server.stop()?;
    for (h, a) in hot.iter().zip(&archived) {
        if h.events != a.events {
            bail!(
                "{} read {} events, {} read {}",
                h.label,
                h.events,
                a.label,
                a.events
            );
        }
    }
    Ok(ArchiveReport {
        hot,
        archived,
        archived_events,
        archive_run,
    })
}

/// Publishes the events, dated three days back, in batches of 1,000, and one current event (the
/// newest stored event is never archived).
async fn publish_old(url: &str, load: &ArchiveLoad) -> Result<()> {
    let client = crate::server::client_builder().build()?;
    let payload = payload(load.payload_bytes);
    let old = Timestamp::now().plus_micros(-3 * 86_400 * 1_000_000);
    let mut i = 0;
    while i < load.events {
        let n = (load.events - i).min(1000);
        let events: Vec<String> = (i..i + n)
            .map(|k| {
                let ts = old.plus_micros(k as i64 * 1000).to_string();
                event_json(k, &payload, Some(&ts))
            })
            .collect();
        let reply = client
            .post(format!("{url}/v1/events"))
            .header("content-type", "application/json")
            .body(format!("[{}]", events.join(",")))
            .send()
            .await?;
        if !reply.status().is_success() {
            bail!(
                "publishing failed: {} {}",
                reply.status(),
                reply.text().await?
            );
        }
        i += n;
    }
    let reply = client
        .post(format!("{url}/v1/events"))
        .json(&serde_json::json!({"type": "bench.marker", "payload": {}}))
        .send()
        .await?;
    if !reply.status().is_success() {
        bail!("publishing the marker failed: {}", reply.status());
    }
    Ok(())
}

/// Reads every `project.updated` event matching `filter` with `includeArchived=true`, `page`
/// events per request.
async fn read_all(
    url: &str,
    label: &str,
    filter: &[(&'static str, String)],
    page: usize,
) -> Result<Read> {
    let client = crate::server::client_builder().build()?;
    let mut after = 0u64;
    let (mut events, mut samples) = (0, Latencies::default());
    let started = Instant::now();
    loop {
        let sent = Instant::now();
        let mut query: Vec<(&str, String)> = vec![
            ("includeArchived", "true".into()),
            ("type", EVENT_TYPE.into()),
            ("limit", page.to_string()),
            ("after", after.to_string()),
        ];
        query.extend(filter.iter().cloned());
        // Every value is URL-safe as it is (a type, digits, `p_<n>`).
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let reply = client
            .get(format!("{url}/v1/events?{}", query.join("&")))
            .send()
            .await?;
        if !reply.status().is_success() {
            bail!("{label}: {} {}", reply.status(), reply.text().await?);
        }
        let body: Value = reply.json().await?;
        samples.record(sent.elapsed());
        events += body["events"].as_array().map_or(0, Vec::len);
        match body["nextAfter"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(Read {
        label: label.to_owned(),
        events,
        pages: samples.len(),
        elapsed: started.elapsed(),
        latency: samples.summary(),
    })
}
