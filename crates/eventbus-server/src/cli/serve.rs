//! `eventbus serve` (the default command): bind `HOST`:`PORT`, open the store, serve until
//! SIGTERM or Ctrl-C, then drain (see [`crate::serve`]).

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Binds, builds the bus, prints the address once the store is open, and serves until a
/// shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    raise_open_file_limit(config.sse_max_connections);
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

/// Descriptors kept beside the streams: the store, other clients, webhook and archive
/// connections.
const SPARE_DESCRIPTORS: u64 = 1024;

/// Raises the soft open-file limit to the hard limit (systemd, for one, starts services at a
/// soft limit of 1,024 under a hard limit of 524,288), since every stream holds a descriptor;
/// warns when even the hard limit is below `SSE_MAX_CONNECTIONS` and some spare, as streams
/// past it would fail at `accept` instead of getting a 503.
fn raise_open_file_limit(max_streams: usize) {
    let wanted = max_streams as u64 + SPARE_DESCRIPTORS;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            sse_max_connections = max_streams,
            "the open-file limit is below SSE_MAX_CONNECTIONS and some spare: raise it (ulimit -n, \
             LimitNOFILE=, docker run --ulimit nofile=) or lower SSE_MAX_CONNECTIONS"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
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
