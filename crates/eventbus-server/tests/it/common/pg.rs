//! PostgreSQL for the server's tests: the database of `EVENTBUS_TEST_DATABASE_URL` and a fresh
//! schema per test, dropped when the test ends.

use std::process::Command;

/// The test database (`EVENTBUS_TEST_DATABASE_URL`, default the local `test` database).
pub fn database_url() -> String {
    std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs `sql` with `psql` on the test database; whether it succeeded.
pub fn psql(sql: &str) -> bool {
    Command::new("psql")
        .arg(database_url())
        .args([
            "-qAtc",
            &format!("SET client_min_messages = warning; {sql}"),
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// Terminates every session of the test database named `application_name` (what a fail-over
/// or a restart does to them); how many.
pub fn terminate_sessions(application_name: &str) -> u32 {
    let out = Command::new("psql")
        .arg(database_url())
        .args([
            "-qAtX",
            "-c",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = '{application_name}'"
            ),
        ])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Defines two tests running `suite(&InProcessServer)`: `$sqlite` on the default SQLite store,
/// `$pg` on a fresh PostgreSQL schema named after `$prefix` (skipped, outside CI, when
/// PostgreSQL is unreachable); both servers with the settings `$env` (`&[(name, value)]`) when
/// given.
#[macro_export]
macro_rules! on_both {
    ($prefix:literal, $suite:ident, $sqlite:ident, $pg:ident) => {
        $crate::on_both!($prefix, $suite, $sqlite, $pg, &[]);
    };
    ($prefix:literal, $suite:ident, $sqlite:ident, $pg:ident, $env:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            let server = $crate::common::InProcessServer::start($env).await;
            $suite(&server).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $pg() {
            let Some(schema) = $crate::common::pg::Schema::create($prefix, stringify!($pg)) else {
                return;
            };
            let url = schema.store_url();
            let env: &[(&str, &str)] = $env;
            let mut env = env.to_vec();
            env.push(("EVENT_STORE_URL", url.as_str()));
            let server = $crate::common::InProcessServer::start(&env).await;
            $suite(&server).await;
            drop(server);
        }
    };
}

/// A fresh schema, dropped on drop.
pub struct Schema(pub String);

impl Schema {
    /// `eb_<prefix>_<test>_<pid>`, created anew; `None` when PostgreSQL cannot be reached (the
    /// test is reported as skipped, and fails under `CI=true`).
    pub fn create(prefix: &str, test: &str) -> Option<Schema> {
        let name = format!("eb_{prefix}_{test}_{}", std::process::id());
        if psql(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        )) {
            return Some(Schema(name));
        }
        eventbus::testing::skip(&format!("PostgreSQL at {} is unreachable", database_url()));
        None
    }

    /// The store URL of this schema (`EVENT_STORE_URL`).
    pub fn store_url(&self) -> String {
        format!("{}?options=-c%20search_path%3D{}", database_url(), self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}
