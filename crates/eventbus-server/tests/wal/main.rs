//! Durable acknowledgements on PostgreSQL, measured on the server itself.
//!
//! These tests read the PostgreSQL server's global WAL counters (`pg_stat_wal`) and change a
//! server-wide setting (`fsync`), so they live in a test binary of their own: `cargo test` runs
//! test binaries one after another, so no other test of the suite writes to PostgreSQL meanwhile,
//! and [`SERIAL`] keeps these two from overlapping. They need a superuser connection
//! (`EVENTBUS_TEST_DATABASE_URL`, as the local trust setup gives); without PostgreSQL they skip
//! outside CI and fail in CI.

#[path = "../it/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use common::TestServer;

/// One test at a time: both read or change server-wide state.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn database_url() -> String {
    std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    format!("{base}/{db}")
}

/// Runs `sql` through psql on `url`; its trimmed output, or `None` when psql failed.
fn psql(url: &str, sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn number(url: &str, sql: &str) -> i64 {
    psql(url, sql)
        .unwrap_or_else(|| panic!("psql failed: {sql}"))
        .parse()
        .unwrap()
}

/// PostgreSQL as a superuser, or `None` (outside CI) when it cannot be had.
fn superuser() -> Option<String> {
    let url = database_url();
    match psql(
        &url,
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .as_deref()
    {
        Some("t") => Some(url),
        other => {
            eventbus::testing::skip(&format!(
                "no PostgreSQL superuser at {url} (rolsuper: {other:?})"
            ));
            None
        }
    }
}

/// Takes the one-at-a-time lock; a run killed while it held `fsync = off` (so no `Drop` ran)
/// must not leave the server without fsync, so that is undone first.
async fn serial(admin: &str) -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    let left_off = psql(
        admin,
        "SELECT count(*) FROM pg_file_settings \
         WHERE name = 'fsync' AND sourcefile LIKE '%postgresql.auto.conf'",
    );
    if left_off.as_deref().is_some_and(|n| n != "0") {
        psql(admin, "ALTER SYSTEM RESET fsync").unwrap();
        psql(admin, "SELECT pg_reload_conf()").unwrap();
    }
    guard
}

/// A database of its own, dropped at the end, so that database-level defaults stay in it.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create(admin: &str, test: &str) -> Database {
        let name = format!("eb_{test}_{}", std::process::id());
        psql(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .unwrap();
        psql(admin, &format!("CREATE DATABASE {name}")).expect("creating the database");
        Database {
            admin: admin.to_owned(),
            url: with_database(admin, &name),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A row counter of `table` (`n_tup_ins`, `n_tup_upd`) as PostgreSQL's statistics report it.
fn reported(url: &str, table: &str, counter: &str) -> i64 {
    number(url, &reported_sql(table, counter))
}

fn reported_sql(table: &str, counter: &str) -> String {
    format!("SELECT coalesce(sum({counter}), 0) FROM pg_stat_user_tables WHERE relname = '{table}'")
}

/// Waits until `sql` (one number) reaches `n`, polling every `every`; fails naming `what` after
/// `within`.
async fn wait_number(url: &str, sql: &str, n: i64, within: Duration, every: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while number(url, sql) < n {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(every).await;
    }
}

/// Waits until the statistics report `counter` of `table` at `n` or more. PostgreSQL's backends
/// report their counters lazily (up to ~10 s after going idle), each backend its WAL counters
/// with the same report, so a WAL count read once every backend's rows are reported covers
/// their commits.
async fn wait_reported(url: &str, table: &str, counter: &str, n: i64) {
    wait_number(
        url,
        &reported_sql(table, counter),
        n,
        Duration::from_secs(60),
        Duration::from_millis(250),
        &format!("PostgreSQL did not report {counter} of {table} at {n}"),
    )
    .await;
}

/// Publishes `n` events one after another (each answered before the next is sent) and returns
/// how many WAL syncs the server made meanwhile.
async fn wal_syncs_for_sequential_publishes(server: &TestServer, db: &Database, n: i64) -> i64 {
    let inserts_before = reported(&db.url, "events", "n_tup_ins");
    let syncs_before = number(&db.url, "SELECT wal_sync FROM pg_stat_wal");
    for i in 0..n {
        server
            .publish_ok(&json!({"type": "project.updated", "payload": {"i": i}}))
            .await;
    }
    wait_reported(&db.url, "events", "n_tup_ins", inserts_before + n).await;
    number(&db.url, "SELECT wal_sync FROM pg_stat_wal") - syncs_before
}

// With `synchronous_commit = off` as the database's default (common tuning advice), 300
// sequential publishes were all answered 201 while PostgreSQL flushed its WAL only 4 times.
#[tokio::test]
async fn acks_are_durable_whatever_the_database_default() {
    let Some(admin) = superuser() else { return };
    let _serial = serial(&admin).await;
    let db = Database::create(&admin, "walsync");
    psql(
        &admin,
        &format!("ALTER DATABASE {} SET synchronous_commit = off", db.name),
    )
    .unwrap();

    let server = TestServer::start(&[("EVENT_STORE_URL", &db.url)]).await;
    let syncs = wal_syncs_for_sequential_publishes(&server, &db, 300).await;
    println!(
        "synchronous_commit=off by default, the bus's own setting: {syncs} WAL syncs for 300 publishes"
    );
    assert!(
        syncs >= 290,
        "{syncs} WAL syncs for 300 acknowledged publishes"
    );
    drop(server);

    // The opt-out leaves the default in force: the same measure then sees far fewer syncs (the
    // measure can tell), and the bus says so.
    let server = TestServer::start(&[
        ("EVENT_STORE_URL", &db.url),
        ("ALLOW_NON_DURABLE_ACKS", "true"),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let syncs = wal_syncs_for_sequential_publishes(&server, &db, 300).await;
    println!("ALLOW_NON_DURABLE_ACKS=true: {syncs} WAL syncs for 300 publishes");
    assert!(
        syncs < 150,
        "{syncs} WAL syncs although commits were asynchronous"
    );
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(
        ready.body["details"]["durability"]["acks"],
        "not durable: synchronous_commit=off"
    );
    assert_eq!(
        server
            .log_text()
            .matches("acknowledged events are NOT durable")
            .count(),
        1,
        "{}",
        server.log_text()
    );
}

/// Sets `fsync = off` on the whole server for the life of the guard.
struct FsyncOff(String);

impl FsyncOff {
    fn set(admin: &str) -> FsyncOff {
        psql(admin, "ALTER SYSTEM SET fsync = off").unwrap();
        psql(admin, "SELECT pg_reload_conf()").unwrap();
        FsyncOff(admin.to_owned())
    }
}

impl Drop for FsyncOff {
    fn drop(&mut self) {
        let _ = psql(&self.0, "ALTER SYSTEM RESET fsync");
        let _ = psql(&self.0, "SELECT pg_reload_conf()");
    }
}

#[tokio::test]
async fn a_server_without_fsync_is_reported_not_durable() {
    let Some(admin) = superuser() else { return };
    let _serial = serial(&admin).await;
    let db = Database::create(&admin, "fsyncoff");

    // The server's settings as they are: durable.
    let server = TestServer::start(&[("EVENT_STORE_URL", &db.url), ("RUST_LOG", "warn")]).await;
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.body["details"]["durability"]["acks"], "durable");
    assert!(!server.log_text().contains("NOT durable"));
    drop(server);

    let off = FsyncOff::set(&admin);
    // A reload is asynchronous: wait until new sessions see it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while psql(&db.url, "SHOW fsync").as_deref() != Some("off") {
        assert!(Instant::now() < deadline, "fsync=off did not take effect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = TestServer::start(&[("EVENT_STORE_URL", &db.url), ("RUST_LOG", "warn")]).await;
    let ready = server.get("/health/ready", &[]).await;
    drop(off);
    assert_eq!(ready.status, reqwest::StatusCode::OK, "{:?}", ready.body);
    assert_eq!(
        ready.body["details"]["durability"]["acks"],
        "not durable: fsync=off"
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("acknowledged events are NOT durable").count(),
        1,
        "{log}"
    );
    let metrics = server.get("/metrics", &[]).await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.lines().any(|l| l == "eventbus_store_durable_acks 0"),
        "{text}"
    );
}

// Webhooks, one event at a time (published, fanned out, claimed, sent, recorded before the next):
// the publish and the attempt's record wait for the WAL flush, so that an acknowledged event
// and a logged attempt survive a power cut; the fan-out step and the claim do not wait (a power
// cut can only make them happen again, and the event is sent again with the same
// `webhook-id`): two flushes per event, not four.
#[tokio::test]
async fn webhook_fan_out_and_claims_do_not_wait_for_a_flush_publishes_and_records_do() {
    let Some(admin) = superuser() else { return };
    let _serial = serial(&admin).await;
    let db = Database::create(&admin, "walhook");
    let receiver = common::receiver::WebhookReceiver::start().await;
    let server = TestServer::start(&[
        ("EVENT_STORE_URL", &db.url),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
    ])
    .await;
    server
        .create_webhook(&json!({"url": receiver.url("/hook")}))
        .await;

    let n: i64 = 100;
    let published_before = reported(&db.url, "events", "n_tup_ins");
    let syncs_before = number(&db.url, "SELECT wal_sync FROM pg_stat_wal");
    for i in 0..n {
        server
            .publish_ok(&json!({"type": "project.updated", "payload": {"i": i}}))
            .await;
        wait_number(
            &db.url,
            "SELECT count(*) FROM webhook_attempts",
            i + 1,
            Duration::from_secs(30),
            Duration::from_millis(5),
            &format!("event {i} was not delivered and recorded"),
        )
        .await;
    }
    assert_eq!(receiver.count(), n as usize, "one request per event");
    // Every backend involved has reported: the committer (the events), the fan-out (the
    // deliveries), the claims and the records (two updates of each delivery), the attempts.
    wait_reported(&db.url, "events", "n_tup_ins", published_before + n).await;
    wait_reported(&db.url, "webhook_deliveries", "n_tup_ins", n).await;
    wait_reported(&db.url, "webhook_deliveries", "n_tup_upd", 2 * n).await;
    wait_reported(&db.url, "webhook_attempts", "n_tup_ins", n).await;
    let syncs = number(&db.url, "SELECT wal_sync FROM pg_stat_wal") - syncs_before;
    println!("{syncs} WAL syncs for {n} events published and delivered one at a time");
    assert!(
        syncs >= 2 * n,
        "{syncs} WAL syncs: every publish and every record must wait for one"
    );
    assert!(
        syncs < 3 * n,
        "{syncs} WAL syncs: the fan-out steps and the claims should not wait for one"
    );
}
