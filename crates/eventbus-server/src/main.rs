//! `eventbus`: parse the configuration, set up logging, run the chosen command.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use eventbus_server::cli;
use eventbus_server::config::{Cli, Command, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // A missing .env is fine; a broken one is not.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        return Err(e).context("reading .env");
    }
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.config.log_format {
        // Colour only where a person reads the lines, never into a file or a pipe.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal())
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(cli.config).await,
            Command::Health => cli::health::run(&cli.config).await,
            Command::Migrate => cli::migrate::run(&cli.config).await,
            Command::Archive { action } => cli::archive::run(&cli.config, action).await,
            Command::Keys { action } => cli::keys::run(&cli.config, action).await,
            Command::Version => {
                println!(
                    "eventbus {} (schema: sqlite {}, postgres {})",
                    env!("CARGO_PKG_VERSION"),
                    eventbus::store::sqlite::SCHEMA_VERSION,
                    eventbus::store::postgres::migrate::MIGRATIONS.len()
                );
                Ok(())
            }
        }
    })
}

async fn serve(config: eventbus_server::Config) -> anyhow::Result<()> {
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let bus = eventbus_server::build_bus(&config).await?;
    // Printed once the store is open, for scripts and tests that start the binary with PORT=0.
    println!("eventbus listening on http://{}", listener.local_addr()?);
    eventbus_server::serve(bus, config, listener, shutdown).await?;
    Ok(())
}

async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal received; draining");
    shutdown.cancel();
}
