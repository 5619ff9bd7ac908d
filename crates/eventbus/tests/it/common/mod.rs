//! Helpers shared by the library integration tests.
//!
//! - [`TestDb`]: a fresh backend per test: SQLite in a temporary directory, or PostgreSQL in a
//!   schema of its own (dropped afterwards), so tests run in parallel. PostgreSQL is the one at
//!   `EVENTBUS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); when it
//!   cannot be reached the PostgreSQL tests print why and pass, unless `CI=true`, where they fail.
//! - [`proxy::TcpProxy`]: a loopback TCP proxy that can cut a store off its database.
//! - [`s3::TestBucket`]: a fresh bucket on the test S3 server, for `s3://` archive targets.
//! - [`event`]: event builders.

#![allow(dead_code)]

pub mod proxy;
pub mod s3;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use eventbus::core::time::Timestamp;
use eventbus::store::Stores;
use eventbus::store::postgres::{PgConnectOptions, PgOptions, PgStore};
use eventbus::store::sqlite::{SqliteOptions, SqliteStore};
use eventbus::{Event, EventStore, NewEvent};
use sqlx::{Connection, PgConnection};

/// The PostgreSQL the tests use.
pub fn pg_url() -> String {
    std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The TCP address of the test PostgreSQL (for a [`proxy::TcpProxy`] in front of it).
pub async fn pg_upstream() -> std::net::SocketAddr {
    let options: PgConnectOptions = pg_url().parse().unwrap();
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .expect("the test database has an address")
}

/// A connection to the test PostgreSQL, or `None` (after saying why) when it is unreachable
/// outside CI. In CI (`CI=true`) an unreachable PostgreSQL fails the test.
pub async fn pg_admin() -> Option<PgConnection> {
    let url = pg_url();
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => Some(conn),
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "connecting timed out".to_owned(),
            };
            eventbus::testing::skip(&format!(
                "PostgreSQL at {url} is unreachable ({why}); set EVENTBUS_TEST_DATABASE_URL"
            ));
            None
        }
    }
}

/// A schema of its own in the test PostgreSQL, dropped with everything in it on drop.
#[derive(Debug)]
pub struct PgSchema {
    /// The schema name.
    pub name: String,
}

impl PgSchema {
    /// Creates a fresh schema, or `None` when PostgreSQL is unreachable (outside CI).
    pub async fn create() -> Option<PgSchema> {
        let mut admin = pg_admin().await?;
        let name = format!("eventbus_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create schema");
        let _ = admin.close().await;
        Some(PgSchema { name })
    }

    /// Connection options whose `search_path` is this schema.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&pg_url())
            .expect("EVENTBUS_TEST_DATABASE_URL is a PostgreSQL URL")
            .options([("search_path", self.name.as_str())])
    }

    /// A connection to this schema.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&self.connect_options())
            .await
            .expect("connect to the schema")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context we could borrow, so it gets a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&pg_url()).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// A fresh, empty backend for one test.
#[derive(Debug)]
pub enum TestDb {
    /// SQLite in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// PostgreSQL in a schema of its own.
    Postgres(PgSchema),
}

impl TestDb {
    /// SQLite in a new temporary directory.
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    /// PostgreSQL in a new schema; `None` when unreachable (outside CI).
    pub async fn postgres() -> Option<TestDb> {
        PgSchema::create().await.map(TestDb::Postgres)
    }

    /// Opens the store (once for SQLite; PostgreSQL allows several instances, like processes).
    pub async fn open(&self) -> Arc<dyn EventStore> {
        self.open_all().await.events
    }

    /// Opens the store like [`TestDb::open`], with every table set of the backend.
    pub async fn open_all(&self) -> Stores {
        match self {
            TestDb::Sqlite(dir) => {
                let path = dir.path().join("events.db");
                let store = tokio::task::spawn_blocking(move || {
                    SqliteStore::open(&path, SqliteOptions::default())
                })
                .await
                .unwrap()
                .expect("open SQLite store");
                Stores::of(Arc::new(store))
            }
            TestDb::Postgres(schema) => Stores::of(Arc::new(
                PgStore::open_with(schema.connect_options(), test_pg_options())
                    .await
                    .expect("open PostgreSQL store"),
            )),
        }
    }

    /// The schema, for PostgreSQL.
    pub fn schema(&self) -> Option<&PgSchema> {
        match self {
            TestDb::Postgres(s) => Some(s),
            TestDb::Sqlite(_) => None,
        }
    }
}

/// PostgreSQL options for tests: a small pool, so parallel tests fit the server's connections.
pub fn test_pg_options() -> PgOptions {
    PgOptions {
        pool_size: 4,
        ..PgOptions::default()
    }
}

/// Event builders.
pub mod event {
    use super::*;

    /// An event of `ty` with `payload` (JSON text, kept byte for byte).
    pub fn raw(ty: &str, payload: &str) -> Event {
        let mut e = NewEvent::new(ty, serde_json::Value::Null)
            .into_event(Timestamp::now())
            .expect("valid event");
        e.payload =
            serde_json::value::RawValue::from_string(payload.to_owned()).expect("JSON payload");
        e
    }

    /// An event of `ty` with a small payload.
    pub fn of(ty: &str) -> Event {
        raw(ty, r#"{"n":1}"#)
    }

    /// An event of `ty` with this id.
    pub fn with_id(ty: &str, id: &str, payload: &str) -> Event {
        let mut e = raw(ty, payload);
        e.id = id.to_owned();
        e
    }
}
