//! Schema migrations for PostgreSQL: numbered SQL files embedded at build time and applied in
//! order, recorded in `eventbus_migrations` of the same schema.
//!
//! Invariants:
//! - every pending migration runs in **one** transaction together with its bookkeeping rows
//!   (PostgreSQL DDL is transactional), so a failing migration leaves the schema exactly as it
//!   was and the store refuses to open;
//! - concurrent starts (several processes on one database) serialise on a transaction-scoped
//!   advisory lock keyed by the schema, so each migration runs once.

use sqlx::{Connection, PgConnection};

/// This binary's migrations, in order; version `i + 1` is `MIGRATIONS[i]`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_events",
        include_str!("../../../migrations/postgres/0001_events.sql"),
    ),
    (
        "0002_consumers",
        include_str!("../../../migrations/postgres/0002_consumers.sql"),
    ),
    (
        "0003_webhooks",
        include_str!("../../../migrations/postgres/0003_webhooks.sql"),
    ),
    (
        "0004_archive",
        include_str!("../../../migrations/postgres/0004_archive.sql"),
    ),
    (
        "0005_keys",
        include_str!("../../../migrations/postgres/0005_keys.sql"),
    ),
    (
        "0006_plugins",
        include_str!("../../../migrations/postgres/0006_plugins.sql"),
    ),
    (
        "0007_consumer_leases",
        include_str!("../../../migrations/postgres/0007_consumer_leases.sql"),
    ),
    (
        "0008_append_function",
        include_str!("../../../migrations/postgres/0008_append_function.sql"),
    ),
    (
        "0009_webhook_due_order",
        include_str!("../../../migrations/postgres/0009_webhook_due_order.sql"),
    ),
    (
        "0010_consumer_groups",
        include_str!("../../../migrations/postgres/0010_consumer_groups.sql"),
    ),
    (
        "0011_webhook_format",
        include_str!("../../../migrations/postgres/0011_webhook_format.sql"),
    ),
    (
        "0012_webhook_stats",
        include_str!("../../../migrations/postgres/0012_webhook_stats.sql"),
    ),
    (
        "0013_fan_out_function",
        include_str!("../../../migrations/postgres/0013_fan_out_function.sql"),
    ),
    (
        "0014_webhook_generic_plans",
        include_str!("../../../migrations/postgres/0014_webhook_generic_plans.sql"),
    ),
];

/// First key of the migration advisory lock (`EBMG`); the second is the schema's hash.
const MIGRATE_LOCK: i32 = 0x4542_4d47;

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A migration's SQL failed; nothing of the pending migrations was applied.
    #[error("migration {name} failed and was rolled back, the schema is unchanged: {source}")]
    Failed {
        /// The migration.
        name: &'static str,
        /// The database error.
        source: sqlx::Error,
    },
    /// The schema was migrated by a newer version of the bus.
    #[error(
        "the database is at schema version {found}, newer than this binary's {known}; upgrade the binary"
    )]
    TooNew {
        /// Schema version in the database.
        found: i64,
        /// Newest version this binary knows.
        known: i64,
    },
    /// Reading or recording the schema version failed.
    #[error("reading the schema version failed: {0}")]
    Version(#[from] sqlx::Error),
}

/// Applies every pending migration of this binary; returns how many ran.
pub async fn migrate(conn: &mut PgConnection) -> Result<usize, MigrateError> {
    apply(conn, MIGRATIONS).await
}

/// Applies the pending ones of `migrations` (`(name, sql)`, version `i + 1` is entry `i`), all
/// in one transaction; returns how many ran.
pub async fn apply(
    conn: &mut PgConnection,
    migrations: &[(&'static str, &'static str)],
) -> Result<usize, MigrateError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    // `IF NOT EXISTS` would otherwise send a notice on every start.
    sqlx::raw_sql(
        "SET LOCAL client_min_messages = warning; \
         CREATE TABLE IF NOT EXISTS eventbus_migrations (\
            version bigint PRIMARY KEY, \
            name text NOT NULL, \
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM eventbus_migrations")
            .fetch_one(&mut *tx)
            .await?;
    let known = migrations.len() as i64;
    if current > known {
        return Err(MigrateError::TooNew {
            found: current,
            known,
        });
    }
    let mut applied = 0;
    for (i, (name, sql)) in migrations.iter().enumerate().skip(current as usize) {
        let failed = |source| MigrateError::Failed { name, source };
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query("INSERT INTO eventbus_migrations (version, name) VALUES ($1, $2)")
            .bind(i as i64 + 1)
            .bind(*name)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}
