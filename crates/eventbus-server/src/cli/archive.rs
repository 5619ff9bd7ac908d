//! `eventbus archive run|list|restore` on the configured store and archive target.

use anyhow::Context;
use eventbus::core::time::Timestamp;
use eventbus::store::archive::Archive;

use crate::config::{ArchiveAction, Config};

/// Runs one archive action and prints its outcome.
pub async fn run(config: &Config, action: ArchiveAction) -> anyhow::Result<()> {
    let bus = crate::build_bus_for_maintenance(config).await?;
    let archive = bus.archive().clone();
    let result = async {
        match action {
            ArchiveAction::Run => {
                let days = config
                    .event_retention_days
                    .0
                    .context("EVENT_RETENTION_DAYS is not set: nothing is old enough to archive")?;
                let cutoff = Archive::cutoff(days, Timestamp::now());
                let report = archive.run(cutoff).await?;
                println!(
                    "archived {} events in {} segments (events before {cutoff}); removed {} orphan files",
                    report.events, report.segments, report.orphans_removed
                );
            }
            ArchiveAction::List => {
                println!(
                    "{:>6}  {:>12}  {:>12}  {:>8}  {:<24}  {:<24}  location",
                    "id", "first_seq", "last_seq", "count", "from", "to"
                );
                for s in archive.list().await? {
                    println!(
                        "{:>6}  {:>12}  {:>12}  {:>8}  {:<24}  {:<24}  {}",
                        s.id,
                        s.first_seq,
                        s.last_seq,
                        s.count,
                        s.from_ts.to_string(),
                        s.to_ts.to_string(),
                        s.location
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
