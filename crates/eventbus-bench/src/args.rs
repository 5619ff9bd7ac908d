//! The bench's command line: the modes and their settings.

use crate::publish;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use eventbus::store::sqlite::Synchronous;

/// Load generator for Situs Event Bus.
#[derive(Debug, Parser)]
#[command(name = "eventbus-bench", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish events over HTTP, then insert the same rows into a raw store, and compare.
    Publish(PublishArgs),
    /// Only the raw store: insert rows straight into SQLite with the store's schema and settings.
    Raw(RawArgs),
    /// SSE fan-out: C streams spread over P projects plus one receiving everything, events
    /// published at R per second; publish→receive latency, deliveries/s, server memory per
    /// idle stream, beside a one-stream baseline measured in the same run.
    Sse(SseArgs),
    /// The SSE hub alone, in this process (no sockets, so no open-file limit): C hub streams
    /// over P projects plus one receiving everything, events published at R per second through
    /// the bus; publish→read latency and the hub's memory per idle stream.
    SseHub(SseHubArgs),
    /// Webhooks: E endpoints on a local receiver answering 200 at once, N events published in
    /// batches (or one per request at a fixed rate, open loop, with --rate), on one server or
    /// several sharing a PostgreSQL store (--nodes); deliveries/s and publish→delivery latency.
    Webhook(WebhookArgs),
    /// Plugins: the same publish load with no plugin, with one JavaScript plugin handling every
    /// event, and with one JavaScript middleware plugin, in one run; events/s and the ratios.
    Plugin(PluginArgs),
    /// Archiving: N old events read page by page with `includeArchived=true` while hot, then
    /// archived (`eventbus archive run`) and read again from the archive; events/s of both
    /// reads and their ratio, and the archive run's events/s.
    Archive(ArchiveArgs),
    /// Consumer groups: N fetchers share one consumer (fetch with long-poll, ack each batch in
    /// one call) while E events are published in batches, then drain a backlog of E events;
    /// events/s acked end to end and publish→ack latency, beside the SSE fan-out in the same run.
    Consumer(ConsumerArgs),
    /// Transactional outbox: rows inserted into `<schema>.outbox` of a PostgreSQL database and
    /// relayed by the server (`OUTBOX_SOURCES`) into its log, watched on an SSE stream. The
    /// writers alone first (the baseline), then a backlog drained, then N rows relayed while W
    /// writers insert them, then rows at R per second, one per transaction, open loop:
    /// commit→SSE latency per row.
    Outbox(OutboxArgs),
    /// Soak: publishes, queries, SSE streams connecting and dropping, webhooks to a receiver
    /// that is sometimes slow, failing or hanging, and a plugin, all at once for --duration
    /// seconds; the server's RSS, open descriptors, tasks and queue depths sampled each second,
    /// printed as a table and judged flat (or not) after the warm-up.
    Soak(SoakArgs),
    /// Scale-out: 1, 2, … --nodes servers on one PostgreSQL schema behind HAProxy (the
    /// repository's deploy/haproxy.cfg): single-event publishes at --concurrency, then SSE
    /// fan-out at --rate, both through HAProxy, and publish→SSE latency across two nodes.
    Cluster(ClusterArgs),
}

/// The scale-out load (`cluster`).
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// The `eventbus` binary, started once per node.
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// The HAProxy binary.
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    pub(crate) haproxy: PathBuf,
    /// HAProxy's configuration (addresses from EVENTBUS_LB_BIND and EVENTBUS_NODE1..3).
    #[arg(long, default_value = "deploy/haproxy.cfg")]
    pub(crate) haproxy_config: PathBuf,
    /// The PostgreSQL database: a new schema per node count, dropped after [default:
    /// EVENTBUS_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test].
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Up to this many nodes (1, 2, … each measured in turn; HAProxy's configuration names 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3))]
    pub(crate) nodes: u64,
    /// From this many nodes (the first row is the baseline of the ratios).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
    pub(crate) min_nodes: u64,
    /// Concurrent single-event publishers of the publish phase.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) concurrency: u64,
    /// Streams of the SSE phase, spread over --projects (one more receives everything).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) connections: u64,
    /// Projects of the SSE phase.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) projects: u64,
    /// Events published per second in the SSE phase.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) rate: u64,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub(crate) duration: f64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Where the servers' temporary data directories go.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}

/// The store of a spawned server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreKind {
    /// A fresh SQLite file under --data-dir.
    Sqlite,
    /// A new schema of the --database-url database, dropped after.
    Postgres,
}

impl StoreKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// The application database of the outbox mode when --database-url is not given.
pub(crate) fn default_database_url() -> String {
    std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[derive(Debug, Args)]
pub(crate) struct OutboxArgs {
    /// Start this `eventbus` binary on a free loopback port with an empty store.
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// The application's PostgreSQL database: the outbox goes into a new schema of it, dropped
    /// after [default: EVENTBUS_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test].
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// The server's store: a fresh SQLite file, or a new schema of the --database-url database.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub(crate) store: StoreKind,
    /// Rows of the throughput phases (writers alone, backlog, relayed while written).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    pub(crate) rows: u64,
    /// Writer connections of the throughput phases.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) writers: u64,
    /// Connections of the latency phase's pool (rows wait for one when all are busy; that wait
    /// shows in the scheduled->SSE latency).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) pool: u64,
    /// Rows per transaction in the throughput phases (one multi-row INSERT each).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) batch: u64,
    /// Rows per second of the latency phase, one row per transaction on a fixed schedule.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub(crate) duration: f64,
    /// Time limit of each phase, in seconds, after which it stops and the run fails.
    #[arg(long, default_value_t = 120.0, value_parser = seconds)]
    pub(crate) limit: f64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Skip the backlog phase.
    #[arg(long)]
    pub(crate) no_backlog: bool,
    /// Where the server's temporary data directory goes.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}

/// A number of seconds: positive, at most a day.
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err("must be more than 0 and at most 86400".to_owned())
    }
}

#[derive(Debug, Args)]
pub(crate) struct ConsumerArgs {
    /// Start this `eventbus` binary on a free loopback port with an empty database.
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// Run the server on this PostgreSQL database (a new schema per run, dropped after) instead
    /// of a fresh SQLite file, e.g. postgres://postgres@127.0.0.1:5432/test.
    #[arg(long)]
    pub(crate) store_url: Option<String>,
    /// Fetchers sharing the consumer.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) fetchers: u64,
    /// Events per shape (live, then backlog).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) events: u64,
    /// `max` of each fetch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) batch: u64,
    /// Events per publish request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) publish_batch: u64,
    /// Publishers sending batches at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) publishers: u64,
    /// Time limit of each shape, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub(crate) duration: f64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Streams of the SSE fan-out measured after, on a fresh SQLite server, as the sse mode
    /// measures it (100 projects, 1000 events/s for 10 s); 0 skips it.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub(crate) sse_connections: u64,
    /// Where the servers' temporary databases go.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ArchiveArgs {
    /// The `eventbus` binary (started twice, and run once as `eventbus archive run`).
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// Events published, all old enough to archive.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    pub(crate) events: u64,
    /// Events per page read.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) page: u64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// `EVENT_ARCHIVE_URL` (e.g. s3://bucket/prefix with AWS_* settings in the environment);
    /// a folder of the run by default.
    #[arg(long)]
    pub(crate) archive_url: Option<String>,
    /// Where the run's database and archive folder go.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct PluginArgs {
    /// Start this `eventbus` binary (three times, one per phase) on a free loopback port.
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// Events per request.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) batch: u64,
    /// Publishers sending at the same time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) concurrency: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Debug, Args)]
pub(crate) struct WebhookArgs {
    /// Start this `eventbus` binary on a free loopback port with an empty database.
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// Store of the spawned server instead of a fresh SQLite file, e.g.
    /// postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dbench (an empty schema).
    #[arg(long)]
    pub(crate) store_url: Option<String>,
    /// Endpoints, each receiving every event.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) endpoints: u64,
    /// Events published.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) events: u64,
    /// Events per publish request (burst mode; ignored with --rate).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) batch: u64,
    /// Open loop: publish one event per request at this many events per second on a fixed
    /// schedule (latency counted from each event's scheduled time), instead of batches sent as
    /// fast as the server answers. The run lasts --events / --rate seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) rate: Option<u64>,
    /// Servers started on the same store (--store-url, PostgreSQL); endpoints are created through
    /// the first, publish requests go to each in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=8))]
    pub(crate) nodes: u64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Events published the same way before the measured ones, each delivered before the clock
    /// starts, and not counted (warm connections, prepared statements and caches).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub(crate) warmup: u64,
    /// Write every measured delivery to this file as `sent,received,path` lines (times in µs
    /// since the epoch), to see when the slow ones happened.
    #[arg(long)]
    pub(crate) latency_csv: Option<PathBuf>,
    /// Where the servers' temporary data directories go.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}

/// The in-process SSE hub load (`sse-hub`).
#[derive(Debug, Args)]
pub(crate) struct SseHubArgs {
    /// Streams filtered by project (one more receives everything).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) connections: u64,
    /// Projects the streams and events are spread over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) projects: u64,
    /// Events published per second.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Where the temporary database goes.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct SseArgs {
    /// Start this `eventbus` binary on a free loopback port with an empty database.
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// Streams filtered by project (one more receives everything); above 20,000 they are
    /// opened from several loopback source addresses (127.0.0.1, 127.0.0.2, …).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub(crate) connections: u64,
    /// Projects the streams and events are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub(crate) projects: u64,
    /// Events published per second.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) rate: u64,
    /// Seconds of publishing per phase.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Where the server's temporary database goes.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SyncMode {
    Full,
    Normal,
}

impl SyncMode {
    pub(crate) fn as_env(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Normal => "normal",
        }
    }

    pub(crate) fn store(self) -> Synchronous {
        match self {
            SyncMode::Full => Synchronous::Full,
            SyncMode::Normal => Synchronous::Normal,
        }
    }
}

/// Settings shared by every mode.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Events to publish or insert per run (an upper bound; see --duration).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) events: u64,
    /// Time limit of each timed run, in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) duration: f64,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Where the temporary databases go (must be on the disk under test, not tmpfs).
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
    /// SQLite durability for spawned servers and the raw store.
    #[arg(long, value_enum, default_value_t = SyncMode::Full)]
    pub(crate) synchronous: SyncMode,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Start this `eventbus` binary on a free loopback port with an empty database.
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    pub(crate) spawn: Option<PathBuf>,
    /// Target an already running server instead, e.g. http://127.0.0.1:3002.
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// Events per request (1 sends single event objects, more sends arrays).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) batch: u64,
    /// Publishers sending at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) concurrency: u64,
    /// Requests sent before timing starts (at least one per publisher).
    #[arg(long, default_value_t = 500)]
    pub(crate) warmup: u64,
    /// Threads of the client's runtime (the client shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    pub(crate) client_threads: usize,
    /// HTTP client: lean (minimal HTTP/1.1, least CPU) or reqwest.
    #[arg(long, value_enum, default_value_t = publish::ClientKind::Lean)]
    pub(crate) client: publish::ClientKind,
    /// Raw-store batch size to compare with besides 1 row per transaction
    /// [default: --batch, or 100 for single events].
    #[arg(long)]
    pub(crate) raw_batch: Option<usize>,
    /// Skip the raw-store runs.
    #[arg(long)]
    pub(crate) no_raw: bool,
    /// Run the spawned server on this PostgreSQL database (a new schema per run, dropped after)
    /// instead of SQLite; the raw runs then write PostgreSQL too (multi-row INSERT and COPY).
    #[arg(long, requires = "spawn")]
    pub(crate) store_url: Option<String>,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Debug, Args)]
pub(crate) struct RawArgs {
    /// Rows per transaction; repeat for several runs.
    #[arg(long, default_values_t = [1, 100])]
    pub(crate) batch: Vec<usize>,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// Start this `eventbus` binary on a free loopback port with an empty database.
    #[arg(long)]
    pub(crate) spawn: PathBuf,
    /// Run the spawned server on this PostgreSQL database (a new schema, dropped after) instead
    /// of SQLite.
    #[arg(long)]
    pub(crate) store_url: Option<String>,
    /// Seconds of load; the first quarter (at least 20 s) is the warm-up.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub(crate) duration: u64,
    /// Events published per second (open loop; one request in 50 is a batch of 10).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) rate: u64,
    /// Queries per second (`GET /v1/events` with type and project filters).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) queries: u64,
    /// SSE streams, each open 1–10 s, then dropped and reopened with `Last-Event-ID`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub(crate) streams: u64,
    /// Seconds per row of the printed table [default: 60 for runs of 10 minutes or more, else
    /// 10].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) every: Option<u64>,
    /// Write every second's sample to this CSV file.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
    /// Exit non-zero when a resource or queue grew, the server exited, or more than 1 % of
    /// requests failed.
    #[arg(long)]
    pub(crate) check: bool,
    /// JSON payload size in bytes.
    #[arg(long, default_value_t = 400)]
    pub(crate) payload_bytes: usize,
    /// Where the server's temporary database goes.
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: PathBuf,
}
