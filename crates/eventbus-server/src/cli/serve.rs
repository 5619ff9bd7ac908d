//! `eventbus serve` (the default command): bind `HOST`:`PORT`, open the store, serve until
//! SIGTERM or Ctrl-C, then drain (see [`crate::serve`]).

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Binds, builds the bus, prints the address once the store is open, and serves until a
/// shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let bus = crate::build_bus(&config).await?;
    // Printed once the store is open, for scripts and tests that start the binary with PORT=0.
    println!("eventbus listening on http://{}", listener.local_addr()?);
    crate::serve(bus, config, listener, shutdown).await?;
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
