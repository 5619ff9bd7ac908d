//! Whether a URL leads to a pooler that shares server sessions between its clients (PgBouncer,
//! Supavisor or RDS Proxy in transaction or statement mode), where `LISTEN`, session locks,
//! session settings and cached prepared statements silently stop working.
//!
//! The probe uses two client connections and only simple-protocol statements (which work
//! through any pooler):
//! 1. A sets a session setting to a random value and reads its server process id;
//! 2. B opens a transaction (pinning a server session) and reads its process id;
//! 3. A reads its setting and process id again.
//!
//! On a real session (PostgreSQL itself, or a pooler in session mode) A keeps its server
//! session: B's is another one, and A still sees its value. Through a transaction pooler, A's
//! session went back to the pool after step 1: B usually gets it (poolers hand out the most
//! recently used one) and sees A's value or process id, or A gets another one in step 3, without
//! the value. A pooler in statement mode refuses B's transaction. Waits for a server session are
//! bounded and reported as such, never taken for an answer.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

/// Whether server sessions behind `connect` (of which `a` is a client connection) are shared
/// between clients.
pub(super) async fn shares_sessions(
    a: &mut PgConnection,
    connect: &PgConnectOptions,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let nonce = format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let first = simple(
        a,
        &format!(
            "SELECT set_config('eventbus.session_probe', '{nonce}', false), \
                    pg_backend_pid()::text"
        ),
    )
    .await?;
    let pid_a: String = first.try_get(1)?;
    // B's session: a pooler out of server sessions makes this wait, which is not an answer.
    let b = tokio::time::timeout(timeout, async {
        let mut b = PgConnection::connect_with(connect).await?;
        if let Err(e) = sqlx::raw_sql("BEGIN").execute(&mut b).await {
            // A pooler in statement mode refuses transactions outright.
            let _ = b.close().await;
            return Err(e);
        }
        let row = simple(
            &mut b,
            "SELECT pg_backend_pid()::text, current_setting('eventbus.session_probe', true)",
        )
        .await?;
        Ok::<_, sqlx::Error>((b, row))
    })
    .await;
    let (b, row) = match b {
        Ok(Ok(b)) => b,
        Ok(Err(sqlx::Error::Database(e))) if e.message().contains("statement pooling") => {
            return Ok(true);
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(no_session(timeout)),
    };
    let pid_b: String = row.try_get(0)?;
    let seen_by_b: Option<String> = row.try_get(1)?;
    if pid_b == pid_a || seen_by_b.as_deref() == Some(nonce.as_str()) {
        let _ = b.close().await;
        return Ok(true);
    }
    let again = tokio::time::timeout(
        timeout,
        simple(
            a,
            "SELECT current_setting('eventbus.session_probe', true), pg_backend_pid()::text",
        ),
    )
    .await;
    let _ = b.close().await;
    let again = again.map_err(|_| no_session(timeout))??;
    let value: Option<String> = again.try_get(0)?;
    let pid: String = again.try_get(1)?;
    Ok(value.as_deref() != Some(nonce.as_str()) || pid != pid_a)
}

fn no_session(timeout: Duration) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "no server session was free within {timeout:?} (a pooler whose pool is exhausted?)"
    ))
}

/// One simple-protocol statement's first row.
async fn simple(conn: &mut PgConnection, sql: &str) -> Result<PgRow, sqlx::Error> {
    let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .fetch_all(conn)
        .await?;
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

/// Why the store refuses a URL whose server sessions are shared, and what to set instead.
pub(super) fn refusal(where_: &str, direct_given: bool) -> String {
    if direct_given {
        format!(
            "the direct PostgreSQL URL (EVENT_STORE_DIRECT_URL, {where_}) leads to a pooler in \
             transaction or statement mode, whose server sessions are shared between clients; it \
             must reach PostgreSQL itself (or a pooler in session mode)"
        )
    } else {
        format!(
            "the event store URL ({where_}) leads to a pooler in transaction or statement mode, \
             whose server sessions are shared between clients: LISTEN/NOTIFY, session locks and \
             prepared statements cannot work through it. Set EVENT_STORE_DIRECT_URL to a URL that \
             reaches PostgreSQL itself (or a pooler in session mode); the pooled URL then carries \
             the ordinary queries"
        )
    }
}
