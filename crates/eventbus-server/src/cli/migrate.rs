//! `eventbus migrate`: apply the store's pending schema migrations and say which ran.

use crate::config::Config;

/// Opens the store (which applies pending migrations, each logged as it runs) and prints the
/// migrations applied and the schema version reached.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let bus = crate::build_bus_for_maintenance(config).await?;
    let migrated = bus.store().migrated().clone();
    bus.shutdown().await;
    if migrated.applied.is_empty() {
        println!(
            "schema version {}: up to date, nothing to apply",
            migrated.version
        );
    } else {
        println!(
            "applied {} (schema version {} → {})",
            migrated.applied.join(", "),
            migrated.version - migrated.applied.len(),
            migrated.version
        );
    }
    Ok(())
}
