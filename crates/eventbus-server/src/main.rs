//! `eventbus`: parse the configuration, set up logging, run the chosen command.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use eventbus_server::cli;
use eventbus_server::config::{Cli, Command, LogFormat};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

fn main() -> anyhow::Result<()> {
    // A missing .env is fine; a broken one is not.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        return Err(e).context("reading .env");
    }
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match cli.config.log_format {
        // Colour only where a person reads the lines, never into a file or a pipe.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed(),
    };
    // Before the runtime: the exporter's HTTP client is a blocking one.
    let traces = eventbus_server::telemetry::otlp_provider()?;
    tracing_subscriber::registry()
        .with(logs)
        .with(traces.as_ref().map(eventbus_server::telemetry::layer))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => cli::serve::run(cli.config).await,
            Command::Health => cli::health::run(&cli.config).await,
            Command::Migrate => cli::migrate::run(&cli.config).await,
            Command::Archive { action } => cli::archive::run(&cli.config, action).await,
            Command::Keys { action } => cli::keys::run(&cli.config, action).await,
            Command::Version => cli::version::run(),
            Command::Outbox { action } => cli::outbox::run(action).await,
        }
    });
    drop(runtime);
    if let Some(provider) = traces {
        // Sends what is still batched.
        let _ = provider.shutdown();
    }
    result
}
