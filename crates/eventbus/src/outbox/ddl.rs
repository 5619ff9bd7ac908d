//! The outbox's tables in the application's database, created by `eventbus outbox init` (or by
//! the application's own migrations, from `--print`), in a migration history of their own
//! (`<schema>.outbox_migrations`), so that a later version of the bus can change them.
//!
//! - `outbox`: one row per event waiting for the relay. The application inserts `id` (the
//!   event's id, a uuid it chooses, so a relayed event keeps it), `type`, `payload`, the scopes and
//!   `metadata`; `seq` (the relay's order) and `occurred_at` (the event's timestamp: the clock
//!   when the row was inserted) come from their defaults.
//! - `outbox_dead_letters`: rows the bus refused, with the reason, until they are retried.
//! - `relayed_at` (migration 2): set on relayed rows when the source keeps them for a time
//!   (`keep=`), with a partial index on the rows still waiting.
//! - a statement trigger that calls `pg_notify('eventbus_outbox', '')` after each insert: the
//!   notification is delivered when the inserting transaction commits (never for one that rolls
//!   back), carries nothing, and wakes the relay, which then reads the table. Chosen over logical
//!   decoding: it needs no `wal_level = logical`, no replication slot that retains WAL while the
//!   bus is down, and no superuser; the rows themselves are the queue, so a missed notification
//!   costs at most the relay's backstop poll.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The channel the trigger notifies.
pub const CHANNEL: &str = "eventbus_outbox";

/// The migrations, in order; each runs once per schema.
fn migrations(schema: &str) -> Vec<(i32, String)> {
    let s = quote(schema);
    vec![
        (
            1,
            format!(
                r#"CREATE TABLE IF NOT EXISTS {s}.outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    type        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT 'null'::jsonb,
    project_id  text,
    tenant_id   text,
    user_id     text,
    metadata    jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS {s}.outbox_dead_letters (
    seq         bigint PRIMARY KEY,
    id          uuid NOT NULL,
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    project_id  text,
    tenant_id   text,
    user_id     text,
    metadata    jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    reason      text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION {s}.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS outbox_notify ON {s}.outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON {s}.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.outbox_notify();
"#
            ),
        ),
        (
            2,
            format!(
                r#"ALTER TABLE {s}.outbox ADD COLUMN IF NOT EXISTS relayed_at timestamptz;
CREATE INDEX IF NOT EXISTS outbox_waiting ON {s}.outbox (seq) WHERE relayed_at IS NULL;
"#
            ),
        ),
    ]
}

/// `name` as a quoted identifier (names are checked by [`super::source::is_identifier`]).
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn prelude(schema: &str) -> String {
    let s = quote(schema);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE IF NOT EXISTS {s}.outbox_migrations (\n    \
             version    integer PRIMARY KEY,\n    \
             applied_at timestamptz NOT NULL DEFAULT now()\n);\n"
    )
}

/// The whole DDL for `schema`, for teams that run their own migrations: safe to run again, and
/// recorded in `outbox_migrations` so that `eventbus outbox init` later finds it applied.
pub fn script(schema: &str) -> String {
    let s = quote(schema);
    let mut out = format!(
        "-- The Situs Event Bus outbox, schema {schema}. Safe to run more than once.\nBEGIN;\n{}",
        prelude(schema)
    );
    for (version, sql) in migrations(schema) {
        out.push_str(&format!("-- migration {version}\n{sql}"));
        out.push_str(&format!(
            "INSERT INTO {s}.outbox_migrations (version) VALUES ({version}) ON CONFLICT DO NOTHING;\n"
        ));
    }
    out.push_str("COMMIT;\n");
    out
}

/// Creates or upgrades the outbox in `schema` over `conn`, in one transaction (concurrent runs
/// wait for each other); returns the migrations that ran (0: it was up to date).
pub async fn init(conn: &mut PgConnection, schema: &str) -> Result<usize, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('eventbus.outbox.init.' || $1, 0))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    // `IF NOT EXISTS` would otherwise send a notice on every run.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL client_min_messages = warning; {}",
        prelude(schema)
    )))
    .execute(&mut *tx)
    .await?;
    let applied: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {}.outbox_migrations",
        quote(schema)
    )))
    .fetch_one(&mut *tx)
    .await?;
    let mut ran = 0;
    for (version, sql) in migrations(schema) {
        if applied.is_some_and(|a| a >= version) {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {}.outbox_migrations (version) VALUES ($1)",
            quote(schema)
        )))
        .bind(version)
        .execute(&mut *tx)
        .await?;
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}

/// [`init`] over a connection of its own to `connect`.
pub async fn init_at(
    connect: &sqlx::postgres::PgConnectOptions,
    schema: &str,
) -> Result<usize, sqlx::Error> {
    let mut conn = PgConnection::connect_with(connect).await?;
    let ran = init(&mut conn, schema).await;
    let _ = conn.close().await;
    ran
}

/// The latest migration.
pub fn latest_version() -> i32 {
    migrations("x").last().map_or(0, |(v, _)| *v)
}
