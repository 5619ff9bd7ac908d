//! Configuration: one validated [`Config`] from the environment (and `.env`), with CLI flags of
//! the same names (`PORT` ↔ `--port`). Invalid values stop the start with a message naming the
//! variable.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use eventbus::store::postgres::PgOptions;
use eventbus::store::sqlite::{SqliteOptions, Synchronous};
use eventbus::store::{StoreOptions, StoreUrl};
use eventbus::transport::sse::SseOptions;
use eventbus::transport::webhook::client::{Cidr, CidrError};
use eventbus::transport::webhook::{DurationError, WebhookOptions, parse_duration, parse_schedule};

/// Situs Event Bus: publish domain events once; store them durably; deliver them to
/// subscribers, browsers and webhooks.
#[derive(Debug, Parser)]
#[command(name = "eventbus", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings (also read by `serve` when no subcommand is given). Shown under their
    /// own heading, after each subcommand's own options.
    #[command(
        flatten,
        next_help_heading = "Settings (each also read from the environment variable in brackets)"
    )]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply the store's pending schema migrations, print which ran, and exit.
    Migrate,
    /// Ask the local server's `/health/live` (at HOST and PORT); exit 0 when it answers 200.
    /// For container health checks.
    Health,
    /// Move events older than EVENT_RETENTION_DAYS into archive files, list or restore them.
    /// On SQLite, run it while no server uses the database (it serves one process); on
    /// PostgreSQL, at any time.
    Archive {
        /// What to do.
        #[command(subcommand)]
        action: ArchiveAction,
    },
    /// Create, list or revoke API keys (as the operator: every key may be made). Works beside a
    /// running server: when the server holds a SQLite store, the command goes through its API
    /// at HOST:PORT with EVENT_BUS_ADMIN_KEY.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print the version and the store schema versions this binary migrates to.
    Version,
    /// Set up the transactional outbox in an application's PostgreSQL database.
    Outbox {
        /// What to do.
        #[command(subcommand)]
        action: OutboxAction,
    },
}

/// `eventbus outbox …`.
#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// Create (or upgrade) the outbox tables and their trigger in the application's database,
    /// in a migration history of their own; safe to run again. With --print, print the SQL
    /// instead (for teams that run their own migrations) and touch nothing.
    Init {
        /// The application's database (postgres://…), required unless --print.
        #[arg(long, required_unless_present = "print")]
        url: Option<String>,
        /// The schema of the outbox tables.
        #[arg(long, default_value = eventbus::outbox::source::DEFAULT_SCHEMA,
              value_parser = parse_outbox_schema)]
        schema: String,
        /// Print the DDL and exit.
        #[arg(long)]
        print: bool,
    },
}

fn parse_outbox_schema(s: &str) -> Result<String, String> {
    if eventbus::outbox::source::is_identifier(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a schema name: use lowercase letters, digits and _ (at most 63)"
        ))
    }
}

/// The outbox sources the server relays (`OUTBOX_SOURCES`).
#[derive(Clone, Default)]
pub struct OutboxSources(pub Vec<eventbus::outbox::OutboxSource>);

impl std::fmt::Debug for OutboxSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

fn parse_outbox_sources(s: &str) -> Result<OutboxSources, String> {
    eventbus::outbox::parse_sources(s)
        .map(OutboxSources)
        .map_err(|e| e.to_string())
}

/// `eventbus keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it (it is shown only now).
    Create {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// Comma-separated permissions: publish, subscribe, read, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<eventbus::core::principal::Permission>,
        /// Bind the key to this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Comma-separated projects the key is limited to.
        #[arg(long, value_delimiter = ',')]
        projects: Option<Vec<String>>,
        /// Comma-separated type patterns for every permission (default: `>`, every type).
        #[arg(long, value_delimiter = ',')]
        types: Option<Vec<eventbus::Pattern>>,
        /// Publish requests per second.
        #[arg(long)]
        rate_limit: Option<u32>,
        /// Open streams at once.
        #[arg(long)]
        max_connections: Option<u32>,
        /// Expiry, RFC 3339.
        #[arg(long, value_parser = eventbus::core::time::Timestamp::parse_rfc3339)]
        expires_at: Option<eventbus::core::time::Timestamp>,
    },
    /// List the keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `ebk_`).
        id: String,
    },
}

/// `eventbus archive …`.
#[derive(Debug, Subcommand)]
pub enum ArchiveAction {
    /// Archive now every event older than EVENT_RETENTION_DAYS (by its timestamp).
    Run,
    /// List the archive segments.
    List,
    /// Put a segment's events (or every segment's, with --all) back into the hot table.
    Restore {
        /// The segment id (see `eventbus archive list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        segment: Option<u64>,
        /// Restore every segment.
        #[arg(long)]
        all: bool,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// SQLite durability (see docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncMode {
    /// fsync every commit: acknowledged events survive power loss.
    Full,
    /// fsync at checkpoints: acknowledged events survive a process crash only.
    Normal,
}

/// Every setting of the server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TCP port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3002, global = true)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1", global = true)]
    pub host: IpAddr,

    /// Event store: sqlite://<path> or postgres://user@host:port/db.
    #[arg(long, env = "EVENT_STORE_URL", default_value = "sqlite://./data/eventbus.db",
          value_parser = StoreUrl::parse, global = true)]
    pub event_store_url: StoreUrl,

    /// Refuse events whose type is not registered in the catalogue.
    #[arg(long, env = "STRICT_EVENT_TYPES", default_value_t = false, action = ArgAction::Set,
          global = true)]
    pub strict_event_types: bool,

    /// Largest accepted payload, in bytes of JSON.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 256 * 1024, global = true)]
    pub max_payload_bytes: usize,

    /// Application databases whose outbox the server relays:
    /// `name=<name>,url=postgres://…[,schema=eventbus][,tenant=<id>][,types=a.*|b.>][,keep=1d]`, several
    /// separated by `;` (see docs/outbox.md).
    #[arg(long, env = "OUTBOX_SOURCES", default_value = "", value_parser = parse_outbox_sources,
          hide_default_value = true, global = true)]
    pub outbox_sources: OutboxSources,

    /// Deepest nesting of arrays and objects in a payload (400 deeper).
    #[arg(long, env = "MAX_JSON_DEPTH", default_value_t = 64,
          value_parser = clap::value_parser!(u32)
              .range(1..=eventbus::core::payload::MAX_JSON_DEPTH_LIMIT as i64), global = true)]
    pub max_json_depth: u32,

    /// Largest accepted request body, in bytes (a batch is one body).
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 8 * 1024 * 1024, global = true)]
    pub max_request_bytes: usize,

    /// Most events in one batch publish.
    #[arg(long, env = "MAX_BATCH_EVENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub max_batch_events: u32,

    /// Milliseconds between SSE heartbeat comments.
    #[arg(long, env = "SSE_HEARTBEAT_INTERVAL", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000), global = true)]
    pub sse_heartbeat_interval: u64,

    /// Most open SSE streams (503 with Retry-After above).
    #[arg(
        long,
        env = "SSE_MAX_CONNECTIONS",
        default_value_t = 10_000,
        global = true
    )]
    pub sse_max_connections: usize,

    /// Events an SSE stream may have queued before it is closed as lagging.
    #[arg(long, env = "SSE_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536), global = true)]
    pub sse_queue: u64,

    /// Origins browsers may call the API from: `*` or a comma-separated list of origins.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "*", global = true)]
    pub cors_allowed_origins: String,

    /// PostgreSQL: a URL that reaches PostgreSQL itself, for what needs a server session of its
    /// own (appends, LISTEN, migrations, the archiver's lock) when EVENT_STORE_URL goes through a
    /// pooler in transaction mode (PgBouncer, RDS Proxy, Supavisor).
    #[arg(long, env = "EVENT_STORE_DIRECT_URL", value_parser = parse_direct_url, global = true)]
    pub event_store_direct_url: Option<DirectUrl>,

    /// PostgreSQL: most connections one node opens: a pool of this many minus 3, and three
    /// sessions (appends, LISTEN, the archiver's lock).
    #[arg(long, env = "EVENT_STORE_MAX_CONNECTIONS", default_value_t = 11,
          value_parser = clap::value_parser!(u32).range(4..=1000), global = true)]
    pub event_store_max_connections: u32,

    /// Former setting: the pool's size alone (EVENT_STORE_MAX_CONNECTIONS minus 3).
    #[arg(long, env = "EVENT_STORE_POOL_SIZE", hide = true,
          conflicts_with = "event_store_max_connections",
          value_parser = clap::value_parser!(u32).range(1..=997), global = true)]
    pub event_store_pool_size: Option<u32>,

    /// PostgreSQL: milliseconds that connecting or one store operation may take before it fails
    /// as unavailable (503).
    #[arg(long, env = "EVENT_STORE_TIMEOUT", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=300_000), global = true)]
    pub event_store_timeout: u64,

    /// Milliseconds that requests still open after SIGTERM/SIGINT may take before they are
    /// dropped.
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT",
        default_value_t = 10_000,
        global = true
    )]
    pub shutdown_timeout: u64,

    /// SQLite durability: full (fsync each commit) or normal (fsync at checkpoints).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", value_enum, default_value_t = SyncMode::Full, global = true)]
    pub sqlite_synchronous: SyncMode,

    /// PostgreSQL durability: `false` (the default) sets `synchronous_commit=on` on the bus's
    /// own sessions, so no database or role default can weaken its acknowledgements; `true`
    /// leaves the server's default, trading durability on a power cut for speed where that
    /// default is `off` (reported in /health/ready and the logs).
    #[arg(long, env = "ALLOW_NON_DURABLE_ACKS", default_value_t = false, action = ArgAction::Set,
          global = true)]
    pub allow_non_durable_acks: bool,

    /// Webhooks: retries after a failed attempt (then the delivery is dead-lettered).
    #[arg(long, env = "WEBHOOK_RETRY_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=50), global = true)]
    pub webhook_retry_attempts: u32,

    /// Webhooks: milliseconds one attempt may take (connect, send, answer).
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(10..=300_000), global = true)]
    pub webhook_timeout: u64,

    /// Webhooks: delays before each retry, comma-separated (ms, s, m, h, d), jittered ±10 %; the
    /// last one repeats when there are more retries.
    #[arg(long, env = "WEBHOOK_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h",
          value_parser = Schedule::parse, global = true)]
    pub webhook_retry_schedule: Schedule,

    /// Webhooks: comma-separated CIDRs that endpoints may reach although loopback, private or
    /// link-local (e.g. 127.0.0.0/8 for local testing); none by default.
    #[arg(long, env = "WEBHOOK_ALLOWED_NETWORKS", default_value = "", value_parser = Networks::parse,
          global = true)]
    pub webhook_allowed_networks: Networks,

    /// Webhooks: most attempts in flight in this process.
    #[arg(long, env = "WEBHOOK_MAX_IN_FLIGHT", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=10_000), global = true)]
    pub webhook_max_in_flight: u64,

    /// Webhooks: most attempts in flight to one endpoint (ordered endpoints: always 1).
    #[arg(long, env = "WEBHOOK_ENDPOINT_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=1_000), global = true)]
    pub webhook_endpoint_concurrency: u64,

    /// Webhooks: how often due retries are looked for (e.g. 250ms).
    #[arg(long, env = "WEBHOOK_POLL_INTERVAL", default_value = "250ms", value_parser = parse_duration,
          global = true)]
    pub webhook_poll_interval: Duration,

    /// Webhooks: most bytes of an endpoint's answer read and kept in the attempt log.
    #[arg(
        long,
        env = "WEBHOOK_RESPONSE_BODY_LIMIT",
        default_value_t = 4096,
        global = true
    )]
    pub webhook_response_body_limit: usize,

    /// Webhooks: how long the previous secret keeps signing after a rotation (e.g. 24h).
    #[arg(long, env = "WEBHOOK_SECRET_GRACE", default_value = "24h", value_parser = parse_duration,
          global = true)]
    pub webhook_secret_grace: Duration,

    /// Webhooks: an endpoint failing continuously for this long (e.g. 5d)…
    #[arg(long, env = "WEBHOOK_DISABLE_AFTER", default_value = "5d", value_parser = parse_duration,
          global = true)]
    pub webhook_disable_after: Duration,

    /// Webhooks: …and for at least this many attempts in a row is disabled, and an
    /// `integration.status_changed` event is published.
    #[arg(
        long,
        env = "WEBHOOK_DISABLE_FAILURES",
        default_value_t = 20,
        global = true
    )]
    pub webhook_disable_failures: u32,

    /// Webhooks: how long shutdown waits for attempts in flight (e.g. 10s).
    #[arg(long, env = "WEBHOOK_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration,
          global = true)]
    pub webhook_drain_timeout: Duration,

    /// Readiness: the webhook queue counts as down above this many pending deliveries.
    #[arg(
        long,
        env = "WEBHOOK_READY_MAX_PENDING",
        default_value_t = 100_000,
        global = true
    )]
    pub webhook_ready_max_pending: u64,

    /// Readiness: the webhook queue counts as down when a delivery is overdue (past its due
    /// time, not waiting for a retry) for longer than this (e.g. 5m).
    #[arg(long, env = "WEBHOOK_READY_MAX_OVERDUE", default_value = "5m", value_parser = parse_duration,
          global = true)]
    pub webhook_ready_max_overdue: Duration,

    /// Archiving: events whose timestamp is older than this many days move from the hot table
    /// into archive files (hourly and at start, and by `eventbus archive run`); none: never.
    #[arg(long, env = "EVENT_RETENTION_DAYS", default_value = "", value_parser = RetentionDays::parse,
          global = true)]
    pub event_retention_days: RetentionDays,

    /// Archiving: where archive files go: file://<directory> (relative to the working directory),
    /// file:///<absolute directory>, or s3://<bucket>/<prefix> (with the AWS_* settings).
    #[arg(long, env = "EVENT_ARCHIVE_URL", default_value = "file://./data/archive",
          value_parser = parse_archive_url, global = true)]
    pub event_archive_url: String,

    /// Security: the bootstrap admin API key (every permission; use it to create the other
    /// keys). Without it, only keys already stored work.
    #[arg(long, env = "EVENT_BUS_ADMIN_KEY", hide_env_values = true, value_parser = Secret::parse,
          global = true)]
    pub event_bus_admin_key: Option<Secret>,

    /// Security: the secret (at least 32 bytes) signing browser stream tokens, shared with
    /// backends that mint tokens themselves; when unset, a random secret is generated once and
    /// kept in the store.
    #[arg(long, env = "EVENT_BUS_TOKEN_SECRET", hide_env_values = true,
          value_parser = Secret::parse_token_secret, global = true)]
    pub event_bus_token_secret: Option<Secret>,

    /// Security: longest lifetime of a browser token minted by POST /v1/tokens, in seconds.
    #[arg(long, env = "TOKEN_MAX_TTL", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(10..=86_400), global = true)]
    pub token_max_ttl: u64,

    /// Security: publish requests per second per key, for keys without their own
    /// `rateLimit` (0: no limit). Counted per process.
    #[arg(long, env = "KEY_RATE_LIMIT", default_value_t = 0, global = true)]
    pub key_rate_limit: u32,

    /// Security: open streams per key, for keys without their own `maxConnections` (0: no
    /// limit).
    #[arg(
        long,
        env = "KEY_MAX_CONNECTIONS",
        default_value_t = 100,
        global = true
    )]
    pub key_max_connections: usize,

    /// Security: open streams per tenant, keys and browser tokens together (0: no limit).
    #[arg(
        long,
        env = "TENANT_MAX_CONNECTIONS",
        default_value_t = 1000,
        global = true
    )]
    pub tenant_max_connections: usize,

    /// Security: serve /health/ready and /metrics without a key (false: they need a key with
    /// the `admin` permission). /health/live is always open.
    #[arg(long, env = "HEALTH_METRICS_PUBLIC", default_value_t = true, action = ArgAction::Set,
          global = true)]
    pub health_metrics_public: bool,

    /// Milliseconds a client may take to send a request's headers, and again its body (slow
    /// clients are cut off).
    #[arg(long, env = "REQUEST_READ_TIMEOUT", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000), global = true)]
    pub request_read_timeout: u64,

    /// Largest accepted request head (request line and headers), in bytes.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u64).range(8192..=1_048_576), global = true)]
    pub max_header_bytes: u64,
    /// Plugins: the folder of JavaScript plugins (one folder per plugin with plugin.json and
    /// index.js); a missing folder holds none. See docs/plugins.md.
    #[arg(long, env = "PLUGINS_DIR", default_value = "./plugins", global = true)]
    pub plugins_dir: std::path::PathBuf,
    /// Plugins: retries of an event whose handler failed, before it is dead-lettered.
    #[arg(long, env = "PLUGIN_RETRIES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=100), global = true)]
    pub plugin_retries: u32,
    /// Plugins: the first retry delay (e.g. 100ms); it doubles up to 10 s.
    #[arg(long, env = "PLUGIN_RETRY_DELAY", default_value = "100ms", value_parser = parse_duration,
          global = true)]
    pub plugin_retry_delay: Duration,
    /// Plugins: dead letters in a row after which a plugin is suspended until reloaded.
    #[arg(long, env = "PLUGIN_SUSPEND_AFTER", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub plugin_suspend_after: u32,

    /// Seconds between the samples of GET /v1/stats (events, webhook attempts, streams and
    /// queues of this process); the last 360 are kept (one hour at the default).
    #[arg(long, env = "STATS_SAMPLE_INTERVAL", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub stats_sample_interval: u64,

    /// Log format: text or json (filter with RUST_LOG, default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl Config {
    /// The bootstrap admin key, when set (an empty value is none).
    pub fn admin_key(&self) -> Option<&str> {
        self.event_bus_admin_key
            .as_ref()
            .map(|k| k.0.as_str())
            .filter(|k| !k.is_empty())
    }

    /// The browser-token secret, when set (an empty value is none).
    pub fn token_secret(&self) -> Option<&[u8]> {
        self.event_bus_token_secret
            .as_ref()
            .map(|k| k.0.as_bytes())
            .filter(|k| !k.is_empty())
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The SQLite settings this config asks for.
    pub fn sqlite_options(&self) -> SqliteOptions {
        SqliteOptions {
            synchronous: match self.sqlite_synchronous {
                SyncMode::Full => Synchronous::Full,
                SyncMode::Normal => Synchronous::Normal,
            },
            ..SqliteOptions::default()
        }
    }

    /// The settings of every store backend.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            sqlite: self.sqlite_options(),
            postgres: PgOptions {
                pool_size: self
                    .event_store_pool_size
                    .unwrap_or(self.event_store_max_connections.saturating_sub(3).max(1)),
                direct_url: self
                    .event_store_direct_url
                    .as_ref()
                    .map(|u| u.0.clone())
                    .filter(|u| !u.is_empty()),
                timeout: Duration::from_millis(self.event_store_timeout),
                allow_non_durable_acks: self.allow_non_durable_acks,
                ..PgOptions::default()
            },
        }
    }

    /// How often the stats sampler samples.
    pub fn stats_interval(&self) -> Duration {
        Duration::from_secs(self.stats_sample_interval)
    }

    /// The SSE hub's settings.
    pub fn sse_options(&self) -> SseOptions {
        SseOptions {
            heartbeat: Duration::from_millis(self.sse_heartbeat_interval),
            queue: self.sse_queue as usize,
            max_connections: self.sse_max_connections,
            ..SseOptions::default()
        }
    }

    /// The webhook transport's settings.
    pub fn webhook_options(&self) -> WebhookOptions {
        WebhookOptions {
            timeout: Duration::from_millis(self.webhook_timeout),
            retry_attempts: self.webhook_retry_attempts,
            retry_schedule: self.webhook_retry_schedule.0.clone(),
            allowed_networks: self.webhook_allowed_networks.0.clone(),
            max_in_flight: self.webhook_max_in_flight as usize,
            endpoint_concurrency: self.webhook_endpoint_concurrency as usize,
            poll_interval: self.webhook_poll_interval,
            response_body_limit: self.webhook_response_body_limit,
            secret_grace: self.webhook_secret_grace,
            disable_after: self.webhook_disable_after,
            disable_failures: self.webhook_disable_failures,
            drain_timeout: self.webhook_drain_timeout,
        }
    }

    /// The plugin host's settings.
    pub fn plugin_options(&self) -> eventbus::plugin::HostOptions {
        let defaults = eventbus::plugin::HostOptions::default();
        eventbus::plugin::HostOptions {
            dir: Some(self.plugins_dir.clone()),
            retries: self.plugin_retries,
            min_backoff: self.plugin_retry_delay,
            max_backoff: defaults.max_backoff.max(self.plugin_retry_delay),
            suspend_after: self.plugin_suspend_after,
        }
    }

    /// A config from defaults and the given `NAME=value` pairs only (ignores the process
    /// environment), for tests and embedding.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, clap::Error> {
        let mut args = vec!["eventbus".to_owned()];
        for (name, value) in pairs {
            args.push(format!(
                "--{}={value}",
                name.to_ascii_lowercase().replace('_', "-")
            ));
        }
        // Settings read no environment variable here: a test's or an embedder's process
        // environment must not leak into the config.
        let command = <Cli as clap::CommandFactory>::command().mut_args(|a| a.env(None::<&str>));
        let matches = command.try_get_matches_from(args)?;
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).map(|cli| cli.config)
    }
}

/// A secret setting: shown as `..` in debug output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    fn parse(s: &str) -> Result<Secret, String> {
        if s.trim().is_empty() {
            return Ok(Secret(String::new()));
        }
        if s.trim().len() < 16 {
            return Err("use at least 16 characters (e.g. `openssl rand -hex 32`)".to_owned());
        }
        Ok(Secret(s.trim().to_owned()))
    }

    fn parse_token_secret(s: &str) -> Result<Secret, String> {
        if s.is_empty() {
            return Ok(Secret(String::new()));
        }
        if s.len() < 32 {
            return Err("use at least 32 bytes (e.g. `openssl rand -hex 32`)".to_owned());
        }
        Ok(Secret(s.to_owned()))
    }
}

/// `EVENT_STORE_DIRECT_URL`: a PostgreSQL URL, kept out of debug output (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct DirectUrl(pub String);

impl std::fmt::Debug for DirectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectUrl(..)")
    }
}

fn parse_direct_url(s: &str) -> Result<DirectUrl, String> {
    if s.trim().is_empty() {
        return Ok(DirectUrl(String::new())); // none
    }
    match StoreUrl::parse(s) {
        Ok(StoreUrl::Postgres(url)) => Ok(DirectUrl(url)),
        _ => Err(
            "use a postgres:// URL that reaches PostgreSQL itself (not through a pooler in \
             transaction mode)"
                .to_owned(),
        ),
    }
}

/// `EVENT_RETENTION_DAYS`: a whole number of days (at least 1), or empty for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionDays(pub Option<u32>);

impl RetentionDays {
    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Ok(RetentionDays(None)),
            t => match t.parse::<u32>() {
                Ok(days) if days >= 1 => Ok(RetentionDays(Some(days))),
                _ => Err(format!(
                    "`{s}` is not a retention; use a whole number of days (at least 1), or leave it \
                     empty to keep every event hot"
                )),
            },
        }
    }
}

/// `EVENT_ARCHIVE_URL`: a target this binary can write to.
fn parse_archive_url(s: &str) -> Result<String, String> {
    eventbus::store::archive::open_target(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A retry schedule (`WEBHOOK_RETRY_SCHEDULE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

impl Schedule {
    fn parse(s: &str) -> Result<Self, DurationError> {
        parse_schedule(s).map(Schedule)
    }
}

/// Allowed networks (`WEBHOOK_ALLOWED_NETWORKS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Networks(pub Vec<Cidr>);

impl Networks {
    fn parse(s: &str) -> Result<Self, CidrError> {
        s.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(Cidr::parse)
            .collect::<Result<_, _>>()
            .map(Networks)
    }
}

#[cfg(test)]
mod tests;
