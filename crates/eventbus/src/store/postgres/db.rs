//! The store's pool of connections for everything but appends and `LISTEN`, and how its
//! statements reach PostgreSQL.
//!
//! - **Straight** (the URL is the server, or a pooler in session mode): each connection has its
//!   own server session with the bus's settings ([`session_settings`]), and statements are
//!   prepared once per connection and cached.
//! - **Through a transaction pooler** (PgBouncer `pool_mode = transaction`, RDS Proxy,
//!   Supavisor; `EVENT_STORE_DIRECT_URL` set): a server session belongs to a client only for
//!   one transaction, so nothing may outlive one. Every statement runs in a transaction of its
//!   own, opened by one round trip that also sets the bus's settings with `SET LOCAL` and drops
//!   any prepared statement left on that server session; statements are not cached. Multi-statement
//!   transactions ([`Db::begin`]) open the same way.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{AssertSqlSafe, Either, Execute, Executor, PgPool, Postgres, SqlStr, Transaction};

/// The pool, and the opening statement of its transactions when it goes through a pooler.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    pooled_begin: Option<Arc<str>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("pooled", &self.pooled_begin.is_some())
            .finish_non_exhaustive()
    }
}

/// The bus's settings for one of its sessions, as `SET` statements (`SET LOCAL` with `local`):
/// - `synchronous_commit = on` unless non-durable acknowledgements are allowed: a commit returns
///   only once its WAL is flushed, whatever the server's, database's or role's default;
/// - `default_transaction_isolation = 'read committed'` (sessions only);
/// - `plan_cache_mode = force_custom_plan`: plans follow the arguments (a generic plan made
///   while a table was small would be kept until the next `ANALYZE`, and pattern, scope and time
///   filters are too skewed for one plan per statement);
/// - `statement_timeout` and `idle_in_transaction_session_timeout` of `bound_ms` (none when 0):
///   a statement the bus gave up on stops on the server too, and a stuck node holds no lock for
///   longer than that.
pub(super) fn session_settings(local: bool, durable: bool, bound_ms: u128) -> String {
    let set = if local { "SET LOCAL" } else { "SET" };
    let mut sql = format!("{set} plan_cache_mode = force_custom_plan");
    if !local {
        // The committer reads max(seq) after taking its lock, which needs a snapshot per
        // statement, whatever the database's or role's default isolation (pooled transactions
        // say it in their BEGIN).
        sql.push_str("; SET default_transaction_isolation = 'read committed'");
    }
    if durable {
        sql.push_str(&format!("; {set} synchronous_commit = on"));
    }
    if bound_ms > 0 {
        sql.push_str(&format!(
            "; {set} statement_timeout = {bound_ms}; \
             {set} idle_in_transaction_session_timeout = {bound_ms}"
        ));
    }
    sql
}

/// `name` as a quoted SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Db {
    /// A pool of real server sessions.
    pub(super) fn straight(pool: PgPool) -> Self {
        Db {
            pool,
            pooled_begin: None,
        }
    }

    /// A pool behind a transaction pooler: every transaction sets `search_path` to `schema` and
    /// the session `settings` (see [`session_settings`] with `local`).
    pub(super) fn pooled(pool: PgPool, schema: &str, settings: &str) -> Self {
        let begin = format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; DEALLOCATE ALL; SET LOCAL search_path = {}; \
             {settings}",
            quote_ident(schema)
        );
        Db {
            pool,
            pooled_begin: Some(begin.into()),
        }
    }

    /// The pool itself.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether statements go through a transaction pooler.
    pub fn is_pooled(&self) -> bool {
        self.pooled_begin.is_some()
    }

    /// Opens a transaction (committed by its holder, rolled back when dropped).
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        match &self.pooled_begin {
            None => self.pool.begin().await,
            Some(sql) => self.pool.begin_with(AssertSqlSafe(sql.to_string())).await,
        }
    }
}

impl<'p> Executor<'p> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.pooled_begin.is_none() {
            // The pool's stream owns a clone of the pool, not this borrow.
            let pool = self.pool.clone();
            return (&pool).fetch_many(query);
        }
        let db = self.clone();
        // One transaction per statement: its rows are read in full before it commits.
        futures_util::stream::once(async move {
            let mut tx = db.begin().await?;
            let items: Vec<_> = (&mut *tx).fetch_many(query).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(futures_util::stream::iter(items.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.pooled_begin.is_none() {
            let pool = self.pool.clone();
            return (&pool).fetch_optional(query);
        }
        let db = self.clone();
        Box::pin(async move {
            let mut tx = db.begin().await?;
            let row = (&mut *tx).fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.pool.clone();
        (&pool).prepare_with(sql, parameters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_local_in_pooled_transactions() {
        let s = session_settings(true, true, 5000);
        assert_eq!(
            s,
            "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL synchronous_commit = on; \
             SET LOCAL statement_timeout = 5000; SET LOCAL idle_in_transaction_session_timeout = 5000"
        );
        assert_eq!(
            session_settings(false, false, 0),
            "SET plan_cache_mode = force_custom_plan; \
             SET default_transaction_isolation = 'read committed'"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
