//! Schema migrations for SQLite: numbered SQL files embedded at build time, applied in order,
//! each in its own transaction together with the bump of `PRAGMA user_version`, so a failing
//! migration leaves the database exactly as it was.

use rusqlite::{Connection, TransactionBehavior};

/// This binary's migrations, in order; `user_version` counts how many are applied (version
/// `i + 1` is `MIGRATIONS[i]`).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_events",
        include_str!("../../../migrations/sqlite/0001_events.sql"),
    ),
    (
        "0002_webhooks",
        include_str!("../../../migrations/sqlite/0002_webhooks.sql"),
    ),
    (
        "0003_consumers",
        include_str!("../../../migrations/sqlite/0003_consumers.sql"),
    ),
    (
        "0004_archive",
        include_str!("../../../migrations/sqlite/0004_archive.sql"),
    ),
    (
        "0005_keys",
        include_str!("../../../migrations/sqlite/0005_keys.sql"),
    ),
    (
        "0006_plugins",
        include_str!("../../../migrations/sqlite/0006_plugins.sql"),
    ),
    (
        "0007_consumer_leases",
        include_str!("../../../migrations/sqlite/0007_consumer_leases.sql"),
    ),
    (
        "0008_webhook_due_order",
        include_str!("../../../migrations/sqlite/0008_webhook_due_order.sql"),
    ),
    (
        "0009_consumer_groups",
        include_str!("../../../migrations/sqlite/0009_consumer_groups.sql"),
    ),
    (
        "0010_webhook_format",
        include_str!("../../../migrations/sqlite/0010_webhook_format.sql"),
    ),
    (
        "0011_webhook_stats",
        include_str!("../../../migrations/sqlite/0011_webhook_stats.sql"),
    ),
];

/// The schema version this binary migrates to (`PRAGMA user_version`).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A migration's SQL failed; the database is unchanged by it.
    #[error("migration {name} failed and was rolled back: {source}")]
    Failed {
        /// The migration.
        name: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database was migrated by a newer version of the bus.
    #[error(
        "the database is at schema version {found}, newer than this binary's {known}; upgrade the binary"
    )]
    TooNew {
        /// Schema version in the file.
        found: usize,
        /// Newest version this binary knows.
        known: usize,
    },
    /// Reading or writing the schema version failed.
    #[error("reading the schema version failed: {0}")]
    Version(#[from] rusqlite::Error),
}

/// Applies every pending migration of this binary; returns how many ran.
pub fn migrate(conn: &mut Connection) -> Result<usize, MigrateError> {
    apply(conn, MIGRATIONS)
}

/// Applies the pending ones of `migrations` (`(name, sql)`, version `i + 1` is entry `i`), each in
/// its own transaction with its bump of `user_version`; returns how many ran. When one fails, the
/// ones before it stay applied and the database is at the version before it.
pub fn apply(
    conn: &mut Connection,
    migrations: &[(&'static str, &'static str)],
) -> Result<usize, MigrateError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > migrations.len() {
        return Err(MigrateError::TooNew {
            found: current,
            known: migrations.len(),
        });
    }
    let mut applied = 0;
    for (i, (name, sql)) in migrations.iter().enumerate().skip(current) {
        let failed = |source| MigrateError::Failed { name, source };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_once_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(MigrateError::TooNew { found: 99, .. })
        ));
    }
}
