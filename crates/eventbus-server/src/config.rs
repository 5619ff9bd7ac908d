//! Configuration: one validated [`Config`] from the environment (and `.env`), with CLI flags of
//! the same names (`PORT` ↔ `--port`). Invalid values stop the start with a message naming the
//! variable.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use eventbus::store::StoreUrl;
use eventbus::store::sqlite::{SqliteOptions, Synchronous};
use eventbus::transport::sse::SseOptions;

/// Situs Event Bus: publish domain events once; store them durably; deliver them to
/// subscribers, browsers and webhooks.
#[derive(Debug, Parser)]
#[command(name = "eventbus", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings (also read by `serve` when no subcommand is given).
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply the store's schema migrations and exit.
    Migrate,
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
    #[arg(long, env = "SSE_MAX_CONNECTIONS", default_value_t = 10_000, global = true)]
    pub sse_max_connections: usize,

    /// Events an SSE stream may have queued before it is closed as lagging.
    #[arg(long, env = "SSE_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536), global = true)]
    pub sse_queue: u64,

    /// Origins browsers may call the API from: `*` or a comma-separated list of origins.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "*", global = true)]
    pub cors_allowed_origins: String,

    /// SQLite durability: full (fsync each commit) or normal (fsync at checkpoints).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", value_enum, default_value_t = SyncMode::Full, global = true)]
    pub sqlite_synchronous: SyncMode,

    /// Log format: text or json (filter with RUST_LOG, default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl Config {
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

    /// The SSE hub's settings.
    pub fn sse_options(&self) -> SseOptions {
        SseOptions {
            heartbeat: Duration::from_millis(self.sse_heartbeat_interval),
            queue: self.sse_queue as usize,
            max_connections: self.sse_max_connections,
            ..SseOptions::default()
        }
    }

    /// A config from defaults and the given `NAME=value` pairs only (ignores the process
    /// environment), for tests and embedding.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, clap::Error> {
        let mut args = vec!["eventbus".to_owned()];
        for (name, value) in pairs {
            args.push(format!("--{}={value}", name.to_ascii_lowercase().replace('_', "-")));
        }
        Cli::try_parse_from(args).map(|cli| cli.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = Config::from_pairs([]).unwrap();
        assert_eq!(c.listen_addr().to_string(), "127.0.0.1:3002");
        assert_eq!(c.event_store_url, StoreUrl::Sqlite("./data/eventbus.db".into()));
        assert!(!c.strict_event_types);
        assert_eq!(c.max_payload_bytes, 262_144);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Config::from_pairs([("EVENT_STORE_URL", "mysql://x")]).unwrap_err().to_string();
        assert!(err.contains("--event-store-url"), "{err}");
        let err = Config::from_pairs([("PORT", "99999")]).unwrap_err().to_string();
        assert!(err.contains("--port"), "{err}");
    }
}
