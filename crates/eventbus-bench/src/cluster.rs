//! Scale-out: N `eventbus` servers on one PostgreSQL schema behind HAProxy, run with the
//! repository's `deploy/haproxy.cfg`, for N = 1, 2, … `--nodes`. For each N, on a fresh schema:
//! single-event publishes at a fixed concurrency through HAProxy (events/s), then the SSE
//! fan-out at a fixed rate through HAProxy (deliveries/s, publish→receive latency), and with two
//! nodes or more the same fan-out with every publish sent to one node and every stream opened on
//! another (the cross-node latency: the second node learns of the commit through `LISTEN`).
//! The one-node row is the baseline of the ratios.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::args::{ClusterArgs, default_database_url};
use crate::publish::{self, ClientKind, HttpRun};
use crate::raw_pg::Schema;
use crate::server::SpawnedServer;
use crate::sse::{self, SseLoad, SseResult};
use crate::stats::Measurement;

/// HAProxy in front of the nodes; killed when dropped.
struct Balancer {
    child: Child,
    url: String,
}

impl Balancer {
    /// Starts HAProxy with `config` in front of `nodes` (`host:port`, up to three; the missing
    /// ones point at a closed port, and its health checks take them out).
    async fn start(binary: &Path, config: &Path, nodes: &[String]) -> Result<Balancer> {
        let free = || -> Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
        let port = free()?;
        let closed = format!("127.0.0.1:{}", free()?);
        let mut cmd = Command::new(binary);
        cmd.arg("-f")
            .arg(config)
            .arg("-db")
            .env("EVENTBUS_LB_BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for i in 0..3 {
            cmd.env(
                format!("EVENTBUS_NODE{}", i + 1),
                nodes.get(i).unwrap_or(&closed),
            );
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let balancer = Balancer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = crate::server::client_builder().build()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !client
            .get(format!("{}/health/ready", balancer.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            if Instant::now() > deadline {
                bail!("HAProxy did not route to a ready node within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Two failed checks, 500 ms apart, take the closed port's server out.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(balancer)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one node count measured.
struct Row {
    nodes: usize,
    publish: Measurement,
    fanout: SseResult,
    cross: Option<SseResult>,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    if !args.haproxy.is_file() {
        bail!(
            "no HAProxy at {} (apt-get install haproxy, or --haproxy)",
            args.haproxy.display()
        );
    }
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(default_database_url);
    let streams = args.connections + 1;
    let limit = sse::raise_fd_limit(streams * 2 + 1000)?;
    if limit < streams * 2 + 1000 {
        bail!("the open-file limit is {limit}; {streams} streams through HAProxy need more");
    }
    println!(
        "eventbus-bench cluster: {}..={} nodes on one PostgreSQL schema behind HAProxy ({}); \
         publish c={} single events, then {} streams / {} projects at {} ev/s; {} s each",
        args.min_nodes,
        args.nodes,
        args.haproxy_config.display(),
        args.concurrency,
        args.connections,
        args.projects,
        args.rate,
        args.duration
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for n in args.min_nodes as usize..=args.nodes as usize {
        let schema = runtime.block_on(Schema::create(&url, "eventbus_bench_cluster"))?;
        let row = runtime.block_on(measure(&args, &schema, n));
        runtime.block_on(schema.drop_now())?;
        let row = row?;
        println!(
            "{n} node(s): publish {:.0} ev/s, SSE {:.0} deliveries/s (p50 {:.1} ms, p99 {:.1} ms){}",
            row.publish.rate(),
            row.fanout.rate(),
            ms(row.fanout.latency.p50),
            ms(row.fanout.latency.p99),
            row.cross
                .as_ref()
                .map(|c| format!(
                    ", cross-node p50 {:.1} ms, p99 {:.1} ms",
                    ms(c.latency.p50),
                    ms(c.latency.p99)
                ))
                .unwrap_or_default()
        );
        rows.push(row);
    }
    print_table(&rows, args.concurrency);
    Ok(())
}

async fn measure(args: &ClusterArgs, schema: &Schema, n: usize) -> Result<Row> {
    let env = [
        ("EVENT_STORE_URL", schema.store_url()),
        ("SSE_MAX_CONNECTIONS", (args.connections + 100).to_string()),
        ("SSE_QUEUE", "1024".to_owned()),
    ];
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(SpawnedServer::start_with(
            &args.spawn,
            &args.data_dir,
            "full",
            &env,
        )?);
    }
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| s.url().trim_start_matches("http://").to_owned())
        .collect();
    let balancer = Balancer::start(&args.haproxy, &args.haproxy_config, &addresses).await?;
    let duration = Duration::from_secs_f64(args.duration);
    let publish = publish::run(&HttpRun {
        url: balancer.url.clone(),
        // A bound the time limit reaches first (the latencies are kept per request).
        events: (200_000.0 * args.duration) as u64,
        batch: 1,
        concurrency: args.concurrency as usize,
        payload_bytes: args.payload_bytes,
        duration,
        warmup: 200,
        client: ClientKind::Lean,
    })
    .await?;
    let load = SseLoad {
        url: balancer.url.clone(),
        publish_url: None,
        connections: args.connections as usize,
        projects: args.projects as usize,
        rate: args.rate,
        duration,
        payload_bytes: args.payload_bytes,
    };
    let (_, fanout) = sse::run(&load).await?;
    let cross = if n >= 2 {
        let load = SseLoad {
            url: servers[1].url().to_owned(),
            publish_url: Some(servers[0].url().to_owned()),
            ..load
        };
        Some(sse::run(&load).await?.1)
    } else {
        None
    };
    drop(balancer);
    for s in servers {
        s.stop()?;
    }
    Ok(Row {
        nodes: n,
        publish,
        fanout,
        cross,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_table(rows: &[Row], concurrency: u64) {
    // The first row (the fewest nodes) is the baseline.
    let Some(one) = rows.first() else { return };
    println!();
    println!(
        "| nodes | publish ev/s (c={concurrency}, single) | × first row | SSE deliveries/s | × first row | \
         publish→SSE p50 / p99 (through HAProxy) | cross-node p50 / p99 |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} / {:.1} ms | {} |",
            r.nodes,
            r.publish.rate(),
            r.publish.rate() / one.publish.rate().max(1e-9),
            r.fanout.rate(),
            r.fanout.rate() / one.fanout.rate().max(1e-9),
            ms(r.fanout.latency.p50),
            ms(r.fanout.latency.p99),
            r.cross
                .as_ref()
                .map(|c| format!("{:.1} / {:.1} ms", ms(c.latency.p50), ms(c.latency.p99)))
                .unwrap_or_else(|| "—".into())
        );
    }
}
