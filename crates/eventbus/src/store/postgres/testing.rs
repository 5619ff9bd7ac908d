//! Test harness: a [`PgStore`] on a schema of its own, dropped afterwards; skipped with a
//! printed reason when PostgreSQL is unreachable outside CI, failed inside CI.

use std::str::FromStr;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{PgConnectOptions, PgOptions, PgStore};

fn url() -> String {
    std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own, dropped on drop.
pub(crate) struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        // Drop may run inside a runtime; the cleanup gets a thread and runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut c = PgConnection::connect(&url()).await.ok()?;
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await.ok()
            })
        })
        .join();
    }
}

/// A store on a fresh schema; `None` (after saying why) when PostgreSQL is unreachable
/// outside CI.
pub(crate) async fn store() -> Option<(Schema, PgStore)> {
    let admin = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url()));
    let mut admin = match admin.await {
        Ok(Ok(c)) => c,
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "connecting timed out".to_owned(),
            };
            crate::testing::skip(&format!("PostgreSQL at {} is unreachable ({why})", url()));
            return None;
        }
    };
    let name = format!("eventbus_unit_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create schema");
    let schema = Schema(name);
    let store = open_on(&schema).await;
    Some((schema, store))
}

/// Another store on `schema`: another bus process on the same database.
pub(crate) async fn open_on(schema: &Schema) -> PgStore {
    let connect = PgConnectOptions::from_str(&url())
        .expect("a PostgreSQL URL")
        .options([("search_path", schema.0.as_str())]);
    let options = PgOptions {
        pool_size: 4,
        ..PgOptions::default()
    };
    PgStore::open_with(connect, options).await.expect("open")
}
