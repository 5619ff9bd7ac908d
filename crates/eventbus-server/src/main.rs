//! `eventbus`: parse the configuration, set up logging, run the chosen command.

use anyhow::Context;
use clap::Parser;
use eventbus_server::config::{ArchiveAction, Cli, Command, KeysAction, LogFormat};
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
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
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
            Command::Health => health(&cli.config).await,
            Command::Migrate => {
                let bus = eventbus_server::build_bus_for_maintenance(&cli.config).await?;
                bus.shutdown().await;
                println!("migrations applied");
                Ok(())
            }
            Command::Archive { action } => archive(&cli.config, action).await,
            Command::Keys { action } => keys(&cli.config, action).await,
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

/// `eventbus archive run|list|restore` on the configured store and archive target.
async fn archive(config: &eventbus_server::Config, action: ArchiveAction) -> anyhow::Result<()> {
    let bus = eventbus_server::build_bus_for_maintenance(config).await?;
    let archive = bus.archive().clone();
    let result = async {
        match action {
            ArchiveAction::Run => {
                let days = config
                    .event_retention_days
                    .0
                    .context("EVENT_RETENTION_DAYS is not set: nothing is old enough to archive")?;
                let cutoff = eventbus::store::archive::Archive::cutoff(days, eventbus::core::time::Timestamp::now());
                let report = archive.run(cutoff).await?;
                println!(
                    "archived {} events in {} segments (events before {cutoff}); removed {} orphan files",
                    report.events, report.segments, report.orphans_removed
                );
            }
            ArchiveAction::List => {
                println!("{:>6}  {:>12}  {:>12}  {:>8}  {:<24}  {:<24}  location", "id", "first_seq", "last_seq", "count", "from", "to");
                for s in archive.list().await? {
                    println!(
                        "{:>6}  {:>12}  {:>12}  {:>8}  {:<24}  {:<24}  {}",
                        s.id, s.first_seq, s.last_seq, s.count, s.from_ts.to_string(), s.to_ts.to_string(), s.location
                    );
                }
            }
            ArchiveAction::Restore { segment, all } => {
                let restored = match (segment, all) {
                    (_, true) => archive.restore_all().await?,
                    (Some(id), false) => vec![archive.restore(id).await?],
                    (None, false) => anyhow::bail!("name a segment id or pass --all"),
                };
                let events: u64 = restored.iter().map(|s| s.count).sum();
                println!("restored {events} events from {} segments", restored.len());
            }
        }
        Ok(())
    }
    .await;
    bus.shutdown().await;
    result
}

/// `eventbus keys create|list|revoke` on the configured store, as the operator.
async fn keys(config: &eventbus_server::Config, action: KeysAction) -> anyhow::Result<()> {
    use eventbus::core::principal::Principal;
    use eventbus::security::{KeySpec, Keys};
    let bus = eventbus_server::build_bus_for_maintenance(config).await?;
    let result = async {
        let keys = Keys::open(bus.store().clone(), None, config.token_secret()).await?;
        let operator = Principal::root("cli");
        match action {
            KeysAction::Create {
                name,
                permissions,
                tenant,
                projects,
                types,
                rate_limit,
                max_connections,
                expires_at,
            } => {
                let spec = KeySpec {
                    name,
                    tenant_id: tenant,
                    project_ids: projects,
                    permissions,
                    types,
                    rate_limit,
                    max_connections,
                    expires_at,
                    ..KeySpec::default()
                };
                let (key, secret) = keys.create(&operator, spec).await?;
                println!("id:  {}", key.id);
                println!("key: {secret}");
                eprintln!("the key is shown only now; store it where its user can read it");
            }
            KeysAction::List => {
                println!(
                    "{:<16}  {:<24}  {:<12}  {:<28}  {:<24}  status",
                    "id", "name", "tenant", "permissions", "created"
                );
                for k in keys.list(&operator).await? {
                    let perms: Vec<&str> = k.grants.keys().map(|p| p.as_str()).collect();
                    let status = if k.revoked_at.is_some() {
                        "revoked"
                    } else if k.is_active(eventbus::core::time::Timestamp::now()) {
                        "active"
                    } else {
                        "expired"
                    };
                    println!(
                        "{:<16}  {:<24}  {:<12}  {:<28}  {:<24}  {status}",
                        k.id,
                        k.name,
                        k.tenant_id.as_deref().unwrap_or("-"),
                        perms.join(","),
                        k.created_at.to_string()
                    );
                }
            }
            KeysAction::Revoke { id } => {
                anyhow::ensure!(keys.revoke(&operator, &id).await?, "no key has id `{id}`");
                println!("revoked {id}");
            }
        }
        Ok(())
    }
    .await;
    bus.shutdown().await;
    result
}

/// `GET /health/live` over a plain TCP connection: the image carries no HTTP client.
async fn health(config: &eventbus_server::Config) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = config.listen_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let check = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(
            format!("GET /health/live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), check)
        .await
        .with_context(|| format!("no answer from {addr} within 3 s"))?
        .with_context(|| format!("asking {addr}"))?;
    anyhow::ensure!(
        &head == b"HTTP/1.1 200",
        "{addr} answered {}",
        String::from_utf8_lossy(&head)
    );
    println!("ok");
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
