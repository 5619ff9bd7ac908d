//! `eventbus-bench`: the load generator of Situs Event Bus.
//!
//! Every run reports the figure through the bus beside the raw store's figure for the same rows,
//! and the ratio between them, so that results compare across machines and changes.
//!
//! # Layout
//! - `args`: the command line: the modes and their settings.
//! - `publish`: the HTTP publish load (`POST /v1/events`, single events or batches).
//! - `http1`: a minimal HTTP/1.1 keep-alive client, so the load takes little CPU.
//! - `raw`: the same rows inserted straight into SQLite with the store's schema and settings.
//! - `server`: starting a fresh `eventbus` process with an empty database for a run.
//! - `workload`: the benchmark events (DESIGN.md §6: ~400 B JSON payloads).
//! - `stats`: latency samples, percentiles and one run's measurement.
//! - `cpu`: CPU shares of client, server and machine from `/proc`.
//! - `report`: the printed table and the targets.
//! - `webhook`: the webhook load (a local receiver, E endpoints, deliveries/s and latency).
//! - `sse`: the SSE fan-out load (connections over projects, publish→receive latency, memory).
//! - `sse_hub`: the SSE hub alone in this process, for stream counts past the open-file limit.
//! - `consumer`: the consumer group load (N fetchers sharing a consumer, acks/s, publish→ack).
//! - `archive`: reading old events with `includeArchived=true` before and after archiving them.
//! - `outbox`: rows inserted into an application's outbox table, relayed by the server into its
//!   log and watched on an SSE stream (rows/s relayed beside the writers alone, commit→SSE
//!   latency).
//! - `soak`: every load at once for a long time (publishes, queries, reconnecting streams,
//!   webhooks to a slow, failing and hanging receiver, a plugin), the server's RSS, descriptors,
//!   tasks and queue depths sampled each second and judged flat after the warm-up.

mod archive;
mod args;
mod cluster;
mod consumer;
mod cpu;
mod http1;
mod outbox;
mod plugin;
mod publish;
mod raw;
mod raw_pg;
mod report;
mod server;
mod soak;
mod sse;
mod sse_hub;
mod stats;
mod webhook;
mod workload;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::args::*;

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Sse(args) => sse_bench(args),
        Command::SseHub(args) => sse_hub_bench(args),
        Command::Webhook(args) => webhook_bench(args),
        Command::Plugin(args) => plugin_bench(args),
        Command::Archive(args) => archive_bench(args),
        Command::Consumer(args) => consumer_bench(args),
        Command::Outbox(args) => outbox_bench(args),
        Command::Soak(args) => soak_bench(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Publish(args) => publish(args),
        Command::Raw(args) => {
            print_conditions(&args.common.data_dir)?;
            let raw = raw_runs(&args.common, &args.batch)?;
            report::print_table(None, &raw);
            Ok(())
        }
    }
}

fn publish(args: PublishArgs) -> Result<()> {
    let common = &args.common;
    let batch = args.batch as usize;
    let concurrency = args.concurrency as usize;
    println!(
        "eventbus-bench publish: up to {} events in {} s, payload {} B, batch {batch}, concurrency {concurrency}, \
         client {:?} on {} thread(s), synchronous={}",
        common.events,
        common.duration,
        common.payload_bytes,
        args.client,
        args.client_threads,
        common.synchronous.as_env()
    );
    print_conditions(&common.data_dir)?;
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pg_schema = match &args.store_url {
        Some(url) => Some(setup.block_on(raw_pg::Schema::create(url, "eventbus_bench_http"))?),
        None => None,
    };
    let server_env: Vec<(&str, String)> = pg_schema
        .iter()
        .map(|s| ("EVENT_STORE_URL", s.store_url()))
        .collect();
    let server = match &args.spawn {
        Some(binary) => {
            let s = server::SpawnedServer::start_with(
                binary,
                &common.data_dir,
                common.synchronous.as_env(),
                &server_env,
            )?;
            println!(
                "server: {} (pid {}), data in {}",
                s.url(),
                s.pid(),
                s.data_dir().display()
            );
            Some(s)
        }
        None => None,
    };
    let url = match (&server, &args.url) {
        (Some(s), _) => s.url().to_owned(),
        (None, Some(url)) => url.clone(),
        (None, None) => bail!("give --spawn or --url"),
    };
    let run = publish::HttpRun {
        url,
        events: common.events,
        batch,
        concurrency,
        payload_bytes: common.payload_bytes,
        duration: Duration::from_secs_f64(common.duration),
        warmup: args.warmup,
        client: args.client,
    };
    let runtime = match args.client_threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    let server_pid = server.as_ref().map(server::SpawnedServer::pid);
    let (http, usage) = runtime.block_on(async {
        // The CPU window covers the timed part and the short warm-up before it.
        let before = cpu::Snapshot::take(server_pid);
        let start = std::time::Instant::now();
        let mut http = publish::run(&run).await?;
        let usage = before.since(&cpu::Snapshot::take(server_pid), start.elapsed());
        http.others = usage.others();
        anyhow::Ok((http, usage))
    })?;
    drop(runtime);
    if let Some(s) = server {
        s.stop().context("stopping the server")?;
    }
    // The raw runs come after the server has stopped, so they have the machine to themselves.
    let raw_batch = args
        .raw_batch
        .unwrap_or(if batch > 1 { batch } else { 100 });
    if let (Some(schema), Some(url)) = (pg_schema, &args.store_url) {
        setup.block_on(schema.drop_now())?;
        return pg_report(&setup, &args, url, &http, raw_batch, &usage);
    }
    let raw_batches: Vec<usize> = if args.no_raw {
        Vec::new()
    } else if raw_batch == 1 {
        vec![1]
    } else {
        vec![1, raw_batch]
    };
    let raw = raw_runs(common, &raw_batches)?;
    println!();
    report::print_table(Some(&http), &raw);
    println!("{usage}");
    report::print_targets(&http, batch, concurrency, &raw, &raw_batches);
    Ok(())
}

/// The raw PostgreSQL runs beside a PostgreSQL HTTP run, the table and the target against the raw
/// `COPY` rate of the same rows: batched publishes through HTTP at least 0.5 of it, single events
/// at least 0.6 (groups made of concurrent publishes).
fn pg_report(
    runtime: &tokio::runtime::Runtime,
    args: &PublishArgs,
    url: &str,
    http: &stats::Measurement,
    raw_batch: usize,
    usage: &impl std::fmt::Display,
) -> Result<()> {
    let common = &args.common;
    let mut raw = Vec::new();
    if !args.no_raw {
        let runs = [
            (1, raw_pg::Method::Insert),
            (raw_batch, raw_pg::Method::Insert),
            (raw_batch, raw_pg::Method::Copy),
        ];
        for (batch, method) in runs {
            raw.push(runtime.block_on(raw_pg::run(&raw_pg::RawPgRun {
                url: url.to_owned(),
                batch,
                method,
                events: common.events,
                duration: Duration::from_secs_f64(common.duration),
                payload_bytes: common.payload_bytes,
            }))?);
        }
    }
    println!();
    report::print_table(Some(http), &raw);
    println!("{usage}");
    if let Some(copy) = raw.last() {
        let ratio = http.rate() / copy.rate();
        let (goal, shape) = if args.batch > 1 {
            (0.5, "batched publishes")
        } else {
            (0.6, "single events")
        };
        let verdict = if ratio >= goal { "met" } else { "MISSED" };
        println!(
            "target: http / raw COPY {raw_batch} rows/txn: {ratio:.2} (goal >= {goal:.2} for {shape}) {verdict}"
        );
    }
    Ok(())
}

/// Prints how busy the machine and the disk are before a run: figures from a busy machine are
/// not comparable.
fn print_conditions(data_dir: &std::path::Path) -> Result<()> {
    let before = cpu::Snapshot::take(None);
    std::thread::sleep(Duration::from_secs(1));
    let busy = before
        .since(&cpu::Snapshot::take(None), Duration::from_secs(1))
        .machine;
    let probe = raw::fsync_probe(data_dir)?;
    println!(
        "before the run: machine busy {} over 1 s; 4 KiB write + fdatasync in {}: p50 {:.3} ms, p99 {:.3} ms",
        busy.map_or("n/a".to_owned(), |b| format!("{:.0} %", b * 100.0)),
        data_dir.display(),
        probe.p50.as_secs_f64() * 1000.0,
        probe.p99.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn raw_runs(common: &Common, batches: &[usize]) -> Result<Vec<stats::Measurement>> {
    batches
        .iter()
        .map(|&batch| {
            raw::run(
                &common.data_dir,
                &raw::RawRun {
                    batch,
                    events: common.events,
                    duration: Duration::from_secs_f64(common.duration),
                    payload_bytes: common.payload_bytes,
                    synchronous: common.synchronous.store(),
                },
            )
        })
        .collect()
}

/// A fresh SQLite server for `connections` SSE streams, the bench's open-file limit raised first.
fn sse_server(
    binary: &std::path::Path,
    data_dir: &std::path::Path,
    connections: u64,
) -> Result<server::SpawnedServer> {
    // Each stream is a descriptor in this process and one in the server.
    let needed = connections + 1000;
    let limit = sse::raise_fd_limit(needed)?;
    if limit < needed {
        bail!("the open-file limit is {limit}; {connections} streams need about {needed}");
    }
    server::SpawnedServer::start_with(
        binary,
        data_dir,
        "full",
        &[
            ("SSE_MAX_CONNECTIONS", (connections + 100).to_string()),
            ("SSE_QUEUE", "1024".into()),
        ],
    )
}

fn sse_bench(args: SseArgs) -> Result<()> {
    let server = sse_server(&args.spawn, &args.data_dir, args.connections)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let load = sse::SseLoad {
        url: server.url().to_owned(),
        publish_url: None,
        connections: args.connections as usize,
        projects: args.projects as usize,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        payload_bytes: args.payload_bytes,
    };
    let (before, after, per_conn) = runtime.block_on(sse::idle_memory(
        server.url(),
        server.pid(),
        args.connections as usize,
    ))?;
    println!(
        "idle streams: {} — server RSS {:.1} MiB before, {:.1} MiB after: {:.1} KiB per stream",
        args.connections,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per_conn / 1024.0
    );
    let (baseline, fanout) = runtime.block_on(sse::run(&load))?;
    let rss = sse::rss_kib(server.pid())?;
    println!();
    sse::print_results(&[&baseline, &fanout]);
    let ratio = fanout.latency.p99.as_secs_f64() / baseline.latency.p99.as_secs_f64().max(1e-9);
    println!(
        "fan-out p99 / baseline p99: {ratio:.2}; server RSS after the load: {:.1} MiB",
        rss as f64 / 1024.0
    );
    let p99_ms = fanout.latency.p99.as_secs_f64() * 1e3;
    // The targets: p99 < 50 ms at 1,000 streams, < 100 ms at 100,000.
    let p99_target = if args.connections >= 100_000 {
        100.0
    } else {
        50.0
    };
    println!(
        "target: p99 < {p99_target} ms at {} ev/s to {} streams: {:.2} ms {}",
        args.rate,
        args.connections,
        p99_ms,
        if p99_ms < p99_target { "met" } else { "missed" }
    );
    println!(
        "target: < 8 KiB server memory per idle stream: {:.1} KiB {}",
        per_conn / 1024.0,
        if per_conn < 8.0 * 1024.0 {
            "met"
        } else {
            "missed"
        }
    );
    if fanout.deliveries < fanout.expected {
        bail!(
            "{} of {} deliveries arrived",
            fanout.deliveries,
            fanout.expected
        );
    }
    server.stop()
}

fn sse_hub_bench(args: SseHubArgs) -> Result<()> {
    let load = sse_hub::HubLoad {
        connections: args.connections as usize,
        projects: args.projects as usize,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        payload_bytes: args.payload_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(sse_hub::run(&load, &args.data_dir))?;
    let per_stream =
        (result.rss_after.saturating_sub(result.rss_before)) as f64 / load.connections as f64;
    println!(
        "idle hub streams: {} — RSS {:.1} MiB before, {:.1} MiB after: {:.2} KiB per stream",
        load.connections,
        result.rss_before as f64 / 1024.0,
        result.rss_after as f64 / 1024.0,
        per_stream
    );
    println!();
    sse::print_results(&[&result.fanout]);
    Ok(())
}

fn webhook_bench(args: WebhookArgs) -> Result<()> {
    let postgres = args
        .store_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    if args.nodes > 1 && !postgres {
        bail!(
            "--nodes {} needs a shared PostgreSQL store (--store-url postgres://...): SQLite servers cannot share a database",
            args.nodes
        );
    }
    let mut env = vec![("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8".to_owned())];
    if let Some(url) = &args.store_url {
        env.push(("EVENT_STORE_URL", url.clone()));
    }
    // One after another: the first migrates an empty schema, the others find it ready.
    let servers = (0..args.nodes)
        .map(|n| {
            server::SpawnedServer::start_with(&args.spawn, &args.data_dir, "full", &env)
                .with_context(|| format!("starting node {n}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let store = if postgres { "postgres" } else { "sqlite" };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let load = webhook::WebhookLoad {
        urls: servers.iter().map(|s| s.url().to_owned()).collect(),
        endpoints: args.endpoints as usize,
        events: args.events as usize,
        batch: args.batch as usize,
        rate: args.rate,
        payload_bytes: args.payload_bytes,
        warmup: args.warmup as usize,
        latency_csv: args.latency_csv.clone(),
    };
    let r = runtime.block_on(webhook::run(&load))?;
    let nodes = if args.nodes > 1 {
        format!(" x{} nodes", args.nodes)
    } else {
        String::new()
    };
    let rate = args.rate.map(|r| format!(" @{r}/s")).unwrap_or_default();
    println!(
        "{:<58} {:>11} {:>11} {:>10} {:>13} {:>8} {:>8} {:>8}",
        "run", "deliveries", "expected", "duplicates", "deliveries/s", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "{:<58} {:>11} {:>11} {:>10} {:>13.0} {:>8.1} {:>8.1} {:>8.1}",
        format!(
            "webhooks {store}{nodes}: {} endpoints x {} events{rate}",
            args.endpoints, args.events
        ),
        r.deliveries,
        r.expected,
        r.duplicates,
        r.rate(),
        r.latency.p50.as_secs_f64() * 1e3,
        r.latency.p99.as_secs_f64() * 1e3,
        r.latency.max.as_secs_f64() * 1e3
    );
    match args.rate {
        Some(rate) => {
            println!(
                "open loop: publishes sent at most {:.2} ms behind schedule, at most {} in flight",
                r.behind_schedule.as_secs_f64() * 1e3,
                r.max_in_flight
            );
            let p99_ms = r.latency.p99.as_secs_f64() * 1e3;
            println!(
                "target: publish->delivery p99 < 10 ms at {rate} events/s: {p99_ms:.2} ms {}",
                if p99_ms < 10.0 { "met" } else { "missed" }
            );
        }
        None => println!(
            "target: >= 5,000 deliveries/s to a local receiver: {:.0} {}",
            r.rate(),
            if r.rate() >= 5000.0 { "met" } else { "missed" }
        ),
    }
    if r.deliveries < r.expected {
        bail!("{} of {} deliveries arrived", r.deliveries, r.expected);
    }
    for (n, server) in servers.into_iter().enumerate() {
        server
            .stop()
            .with_context(|| format!("stopping node {n}"))?;
    }
    Ok(())
}

fn plugin_bench(args: PluginArgs) -> Result<()> {
    use plugin::Phase;
    let common = &args.common;
    println!(
        "eventbus-bench plugin: up to {} events in {} s per phase, payload {} B, batch {}, concurrency {}, synchronous={}",
        common.events,
        common.duration,
        common.payload_bytes,
        args.batch,
        args.concurrency,
        common.synchronous.as_env()
    );
    print_conditions(&common.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut rates = Vec::new();
    println!(
        "{:<26} {:>9} {:>10} {:>9} {:>9} {:>16}",
        "run", "events", "events/s", "p50 ms", "p99 ms", "plugin events/s"
    );
    for phase in [Phase::Baseline, Phase::Consumer, Phase::Middleware] {
        let plugins = tempfile::Builder::new()
            .prefix("eventbus-bench-plugins-")
            .tempdir_in(&common.data_dir)?;
        plugin::write_plugin(plugins.path(), phase)?;
        let env = [("PLUGINS_DIR", plugins.path().display().to_string())];
        let server = server::SpawnedServer::start_with(
            &args.spawn,
            &common.data_dir,
            common.synchronous.as_env(),
            &env,
        )?;
        let run = publish::HttpRun {
            url: server.url().to_owned(),
            events: common.events,
            batch: args.batch as usize,
            concurrency: args.concurrency as usize,
            payload_bytes: common.payload_bytes,
            duration: Duration::from_secs_f64(common.duration),
            warmup: 200,
            client: publish::ClientKind::Lean,
        };
        let started = std::time::Instant::now();
        let m = runtime.block_on(publish::run(&run))?;
        let consumed = if phase == Phase::Consumer {
            let url = server.url().to_owned();
            let done = runtime.block_on(async {
                let head = plugin::head(&url).await?;
                plugin::wait_caught_up(&url, head, Duration::from_secs(600)).await
            })?;
            let secs = done.duration_since(started).as_secs_f64();
            format!("{:.0}", m.events as f64 / secs)
        } else {
            "-".into()
        };
        println!(
            "{:<26} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>16}",
            phase.label(),
            m.events,
            m.rate(),
            m.latency.p50.as_secs_f64() * 1e3,
            m.latency.p99.as_secs_f64() * 1e3,
            consumed
        );
        rates.push(m.rate());
        server.stop()?;
    }
    for (i, label) in [(1, "onEvent"), (2, "transform")] {
        let overhead_us = (1.0 / rates[i] - 1.0 / rates[0]) * 1e6;
        println!(
            "with 1 JS plugin ({label}): {:.2} x the events/s without; {overhead_us:+.1} us per event",
            rates[i] / rates[0]
        );
    }
    Ok(())
}

fn archive_bench(args: ArchiveArgs) -> Result<()> {
    let load = archive::ArchiveLoad {
        binary: args.spawn,
        data_dir: args.data_dir,
        events: args.events as usize,
        page: args.page as usize,
        payload_bytes: args.payload_bytes,
        archive_url: args.archive_url,
    };
    println!(
        "eventbus-bench archive: {} events of {} B payload, pages of {}, archive {}",
        load.events,
        load.payload_bytes,
        load.page,
        load.archive_url
            .as_deref()
            .unwrap_or("file:// (a folder of the run)")
    );
    print_conditions(&load.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let r = runtime.block_on(archive::run(&load))?;
    println!(
        "archive run: {} events in {:.2} s ({:.0} events/s, process start included)",
        r.archived_events,
        r.archive_run.as_secs_f64(),
        r.archived_events as f64 / r.archive_run.as_secs_f64()
    );
    println!(
        "{:<34} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "read (includeArchived=true)", "events", "pages", "events/s", "p50 ms", "p99 ms", "max ms"
    );
    for read in r.hot.iter().chain(&r.archived) {
        println!(
            "{:<34} {:>8} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            read.label,
            read.events,
            read.pages,
            read.rate(),
            read.latency.p50.as_secs_f64() * 1e3,
            read.latency.p99.as_secs_f64() * 1e3,
            read.latency.max.as_secs_f64() * 1e3
        );
    }
    for (hot, archived) in r.hot.iter().zip(&r.archived) {
        println!(
            "{}: archived / hot events/s = {:.2}",
            hot.label.trim_start_matches("hot: "),
            archived.rate() / hot.rate()
        );
    }
    Ok(())
}

fn consumer_bench(args: ConsumerArgs) -> Result<()> {
    let store = if args.store_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "eventbus-bench consumer: {store}, {} fetchers, fetch max {}, {} events per shape published {} per request by {} publishers, payload {} B, limit {} s per shape",
        args.fetchers,
        args.batch,
        args.events,
        args.publish_batch,
        args.publishers,
        args.payload_bytes,
        args.duration
    );
    print_conditions(&args.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let pg_schema = match &args.store_url {
        Some(url) => {
            Some(runtime.block_on(raw_pg::Schema::create(url, "eventbus_bench_consumer"))?)
        }
        None => None,
    };
    let env: Vec<(&str, String)> = pg_schema
        .iter()
        .map(|s| ("EVENT_STORE_URL", s.store_url()))
        .collect();
    let server = server::SpawnedServer::start_with(&args.spawn, &args.data_dir, "full", &env)?;
    let load = consumer::ConsumerLoad {
        url: server.url().to_owned(),
        fetchers: args.fetchers as usize,
        events: args.events as usize,
        batch: args.batch as usize,
        publish_batch: args.publish_batch as usize,
        publishers: args.publishers as usize,
        payload_bytes: args.payload_bytes,
        limit: Duration::from_secs_f64(args.duration),
    };
    let outcome = runtime.block_on(consumer::run(&load));
    server.stop().context("stopping the server")?;
    if let Some(schema) = pg_schema {
        runtime.block_on(schema.drop_now())?;
    }
    let (live, backlog) = outcome?;
    let sse = match args.sse_connections {
        0 => None,
        connections => {
            let server = sse_server(&args.spawn, &args.data_dir, connections)?;
            let (_, fanout) = runtime.block_on(sse::run(&sse::SseLoad {
                url: server.url().to_owned(),
                publish_url: None,
                connections: connections as usize,
                projects: 100,
                rate: 1000,
                duration: Duration::from_secs(10),
                payload_bytes: args.payload_bytes,
            }))?;
            server.stop()?;
            Some(fanout)
        }
    };
    println!();
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "run", "acked", "expected", "fetches", "events/s", "p50 ms", "p99 ms", "max ms"
    );
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    for (shape, r) in [("live", &live), ("backlog", &backlog)] {
        let (p50, p99, max) = r.latency.map_or(("-".into(), "-".into(), "-".into()), |l| {
            (ms(l.p50), ms(l.p99), ms(l.max))
        });
        println!(
            "{:<58} {:>8} {:>8} {:>8} {:>10.0} {:>8} {:>8} {:>8}",
            format!(
                "consumer {store} {shape}: {} fetchers x max {}",
                args.fetchers, args.batch
            ),
            r.acked,
            r.expected,
            r.fetches,
            r.rate(),
            p50,
            p99,
            max
        );
    }
    println!(
        "publishing alone: live {:.0} events/s, backlog {:.0} events/s",
        live.publish_rate(),
        backlog.publish_rate()
    );
    if let Some(fanout) = &sse {
        println!(
            "{:<58} {:>8} {:>8} {:>8} {:>10.0} {:>8} {:>8} {:>8}",
            fanout.label,
            fanout.deliveries,
            fanout.expected,
            "-",
            fanout.rate(),
            ms(fanout.latency.p50),
            ms(fanout.latency.p99),
            ms(fanout.latency.max)
        );
        println!(
            "consumer live events/s / SSE fan-out deliveries/s: {:.2}",
            live.rate() / fanout.rate().max(1e-9)
        );
    }
    if store == "sqlite" && args.fetchers == 8 {
        println!(
            "target: >= 10,000 events/s acked with 8 fetchers on SQLite: {:.0} {}",
            live.rate(),
            if live.rate() >= 10_000.0 {
                "met"
            } else {
                "missed"
            }
        );
    }
    for (shape, r) in [("live", &live), ("backlog", &backlog)] {
        if r.acked != r.expected {
            bail!("{shape}: {} acks for {} events", r.acked, r.expected);
        }
    }
    Ok(())
}

fn outbox_bench(args: OutboxArgs) -> Result<()> {
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(default_database_url);
    let store = args.store.name();
    println!(
        "eventbus-bench outbox: store {store}, {} rows by {} writers x {} rows/txn, then {} rows/s \
         one row/txn for {} s over {} connections, payload {} B, outbox in {}",
        args.rows,
        args.writers,
        args.batch,
        args.rate,
        args.duration,
        args.pool,
        args.payload_bytes,
        eventbus::outbox::source::hide_password(&database_url)
    );
    print_conditions(&args.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let app = runtime.block_on(raw_pg::Schema::create(
        &database_url,
        "eventbus_bench_outbox",
    ))?;
    let store_schema = match args.store {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(runtime.block_on(raw_pg::Schema::create(
            &database_url,
            "eventbus_bench_outbox_store",
        ))?),
    };
    let load = outbox::OutboxLoad {
        database_url: database_url.clone(),
        schema: app.name().to_owned(),
        store_url: store_schema.as_ref().map(raw_pg::Schema::store_url),
        rows: args.rows,
        writers: args.writers as usize,
        pool: args.pool as usize,
        batch: args.batch as usize,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        limit: Duration::from_secs_f64(args.limit),
        payload_bytes: args.payload_bytes,
        no_backlog: args.no_backlog,
    };
    let outcome = outbox::run(&runtime, &load, &args.spawn, &args.data_dir);
    for schema in std::iter::once(app).chain(store_schema) {
        runtime.block_on(schema.drop_now())?;
    }
    let r = outcome?;
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    println!();
    println!(
        "{:<52} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "run", "rows", "seconds", "rows/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let rows = std::iter::once(&r.alone)
        .chain(&r.backlog)
        .chain([&r.live, &r.live_writers]);
    for p in rows {
        let (p50, p90, p99, max) = p.latency.map_or_else(
            || ("-".into(), "-".into(), "-".into(), "-".into()),
            |l| (ms(l.p50), ms(l.p90), ms(l.p99), ms(l.max)),
        );
        println!(
            "{:<52} {:>7} {:>8.2} {:>9.0} {:>8} {:>8} {:>8} {:>8}",
            format!("{store} {}", p.label),
            p.rows,
            p.elapsed.as_secs_f64(),
            p.rate(),
            p50,
            p90,
            p99,
            max
        );
    }
    let l = &r.latency;
    println!(
        "{:<52} {:>7} {:>8.2} {:>9.0} {:>8} {:>8} {:>8} {:>8}",
        format!("{store} open loop {} rows/s, commit->SSE", l.rate),
        l.arrived,
        l.elapsed.as_secs_f64(),
        l.arrived as f64 / l.elapsed.as_secs_f64().max(1e-9),
        ms(l.commit_to_sse.p50),
        ms(l.commit_to_sse.p90),
        ms(l.commit_to_sse.p99),
        ms(l.commit_to_sse.max)
    );
    for (what, s) in [
        ("  scheduled->SSE", &l.schedule_to_sse),
        ("  BEGIN..COMMIT", &l.transaction),
    ] {
        println!(
            "{:<52} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}",
            what,
            l.sent,
            "",
            "",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max)
        );
    }
    println!(
        "(writers' latency: per transaction, BEGIN to COMMIT returned; relayed: per row, its \
         commit to its arrival on the SSE stream)"
    );
    println!(
        "relayed while written / writers alone: {:.2}; writers meanwhile / writers alone: {:.2}",
        r.live.rate() / r.alone.rate().max(1e-9),
        r.live_writers.rate() / r.alone.rate().max(1e-9)
    );
    if let Some(b) = &r.backlog {
        println!(
            "backlog drained / writers alone: {:.2}",
            b.rate() / r.alone.rate().max(1e-9)
        );
    }
    let store_line = |what: &str, c: &outbox::StoreCommits, phase: Duration| {
        println!(
            "{what}: {} store commits, {:.1} events each, {:.2} ms each, {:.0} % of the phase",
            c.count,
            c.events / (c.count.max(1) as f64),
            c.seconds * 1e3 / (c.count.max(1) as f64),
            c.seconds * 100.0 / phase.as_secs_f64().max(1e-9)
        );
    };
    for p in r.backlog.iter().chain([&r.live]) {
        if let Some(c) = &p.commits {
            store_line(&p.label, c, p.elapsed);
        }
    }
    store_line("open loop", &l.commits, l.elapsed);
    // PostgreSQL, the application's database, is among the others.
    let others = |u: &cpu::Usage| {
        u.others()
            .map_or("n/a".to_owned(), |c| format!("{c:.2} cores"))
    };
    println!(
        "live phase: {}; others (PostgreSQL included) {}",
        r.live_usage,
        others(&r.live_usage)
    );
    println!(
        "open loop: rows sent at most {} ms behind schedule, at most {} in flight; {}; others \
         (PostgreSQL included) {}",
        ms(l.behind),
        l.max_in_flight,
        r.latency_usage,
        others(&r.latency_usage)
    );
    let relayed = r.live.rate();
    println!(
        "target: >= 10,000 rows/s relayed: {relayed:.0} {}",
        if relayed >= 10_000.0 { "met" } else { "missed" }
    );
    let p99 = l.commit_to_sse.p99.as_secs_f64() * 1e3;
    println!(
        "target: commit->SSE p99 < 20 ms at 1,000 rows/s: {p99:.2} ms at {} rows/s {}",
        l.rate,
        if p99 < 20.0 { "met" } else { "missed" }
    );
    Ok(())
}

fn soak_bench(args: SoakArgs) -> Result<()> {
    let store = if args.store_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let every = args
        .every
        .unwrap_or(if args.duration >= 600 { 60 } else { 10 });
    println!(
        "eventbus-bench soak: {store}, {} s, {} events/s (1 request in {} a batch of {}), {} queries/s, \
         {} streams (each 1-10 s, then resumed), {} webhook endpoints (receiver: 200, slow, 500, hang), \
         1 JS plugin, payload {} B",
        args.duration,
        args.rate,
        soak::BATCH_EVERY,
        soak::BATCH,
        args.queries,
        args.streams,
        soak::ENDPOINTS,
        args.payload_bytes
    );
    print_conditions(&args.data_dir)?;
    let needed = 2 * args.streams + 1000;
    let limit = sse::raise_fd_limit(needed)?;
    if limit < needed {
        bail!(
            "the open-file limit is {limit}; {} streams need about {needed}",
            args.streams
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let pg_schema = match &args.store_url {
        Some(url) => Some(runtime.block_on(raw_pg::Schema::create(url, "eventbus_bench_soak"))?),
        None => None,
    };
    let plugins = tempfile::Builder::new()
        .prefix("eventbus-bench-plugins-")
        .tempdir_in(&args.data_dir)?;
    plugin::write_plugin(plugins.path(), plugin::Phase::Consumer)?;
    let mut env = soak::server_env(args.streams as usize);
    env.push(("PLUGINS_DIR", plugins.path().display().to_string()));
    if let Some(schema) = &pg_schema {
        env.push(("EVENT_STORE_URL", schema.store_url()));
    }
    let mut server = server::SpawnedServer::start_with(&args.spawn, &args.data_dir, "full", &env)?;
    println!(
        "server: {} (pid {}), data in {}",
        server.url(),
        server.pid(),
        server.data_dir().display()
    );
    let load = soak::SoakLoad {
        url: server.url().to_owned(),
        rate: args.rate,
        queries: args.queries,
        streams: args.streams as usize,
        duration: Duration::from_secs(args.duration),
        every,
        payload_bytes: args.payload_bytes,
        csv: args.csv.clone(),
    };
    let outcome = runtime.block_on(soak::run(&load, &mut server));
    let stopped = server.stop();
    if let Some(schema) = pg_schema {
        runtime.block_on(schema.drop_now())?;
    }
    let r = outcome?;
    if let Some(path) = &args.csv {
        println!("samples: {}", path.display());
    }
    let total = |c: &str| {
        r.totals
            .iter()
            .find(|(n, _)| *n == c)
            .map_or(0.0, |(_, v)| *v)
    };
    println!(
        "load: {:.0} events published ({:.0} skipped: client behind), {:.0} queries, {:.0} stream \
         connects, {:.0} SSE messages; receiver: {:.0} ok, {:.0} slow, {:.0} 500, {:.0} hung; \
         server: {:.0} attempts succeeded, {:.0} failed, {:.0} dead letters; plugin: {:.0} events handled",
        total("events"),
        total("publish_skipped"),
        total("queries"),
        total("stream_connects"),
        total("sse_events"),
        total("hook_ok"),
        total("hook_slow"),
        total("hook_500"),
        total("hook_hang"),
        total("attempts_ok"),
        total("attempts_failed"),
        total("dead_letters"),
        total("plugin_handled")
    );
    let mut failed = Vec::new();
    // An interrupted run is judged on what it ran.
    let ran = r
        .samples
        .last()
        .map_or(0.0, |s| s.get("t_s"))
        .min(args.duration as f64);
    let warmup = soak::warmup(Duration::from_secs_f64(ran));
    let verdicts = soak::judge(&r.samples, warmup);
    if verdicts.is_empty() {
        failed.push("too few samples after the warm-up to judge".to_owned());
    } else {
        println!(
            "flatness: median of the first third after the {} s warm-up -> median of the last third",
            warmup.as_secs()
        );
    }
    for v in &verdicts {
        println!("  {v}");
        if !v.passed {
            failed.push(format!("{} grew", v.what));
        }
    }
    let errors = [
        ("publishes", total("publish_errors"), total("events")),
        ("queries", total("query_errors"), total("queries")),
        (
            "stream opens",
            total("stream_errors"),
            total("stream_connects"),
        ),
    ];
    for (what, bad, good) in errors {
        let share = bad / (bad + good).max(1.0);
        let passed = share <= 0.01;
        println!(
            "  {what:<16} {bad:.0} failed of {:.0} ({:.2} %, limit 1 %) {}",
            bad + good,
            share * 100.0,
            if passed { "ok" } else { "FAILED" }
        );
        if !passed {
            failed.push(format!("{what} failed"));
        }
    }
    if let Some(e) = &r.first_error {
        println!("  first failed request: {e}");
    }
    if r.failed_scrapes > 0 {
        println!(
            "  {} of {} scrapes of /metrics failed",
            r.failed_scrapes,
            r.samples.len()
        );
    }
    if let Some(why) = &r.interrupted {
        println!("  interrupted: {why}");
        failed.push(format!("interrupted ({why})"));
    }
    if let Some(exit) = &r.server_exit {
        println!("  {exit}");
        failed.push(exit.clone());
    }
    if let Err(e) = stopped {
        failed.push(format!("stopping the server: {e}"));
    }
    match (failed.is_empty(), args.check) {
        (true, _) => {
            println!("soak: flat");
            Ok(())
        }
        (false, true) => bail!("soak failed: {}", failed.join("; ")),
        (false, false) => {
            println!(
                "soak: NOT flat: {} (--check makes this fail)",
                failed.join("; ")
            );
            Ok(())
        }
    }
}
