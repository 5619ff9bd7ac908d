//! `eventbus version`: the program's version and the schema versions it migrates to.

/// Prints `eventbus <version> (schema: sqlite <n>, postgres <m>)`.
pub fn run() -> anyhow::Result<()> {
    println!(
        "eventbus {} (schema: sqlite {}, postgres {})",
        env!("CARGO_PKG_VERSION"),
        eventbus::store::sqlite::SCHEMA_VERSION,
        eventbus::store::postgres::migrate::MIGRATIONS.len()
    );
    Ok(())
}
