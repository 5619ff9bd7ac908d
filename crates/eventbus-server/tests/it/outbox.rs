//! The transactional outbox (`eventbus::outbox`, docs/outbox.md) with the real binary, the
//! outbox in a schema of the test PostgreSQL database (the application's database), the bus on
//! SQLite or on another PostgreSQL schema:
//!
//! - 8 application writers commit and roll back transactions held open 0–50 ms while the bus is
//!   killed with SIGKILL twice: every committed row is in the log exactly once, no rolled-back
//!   one is, each writer's rows (one project each, one transaction after another) keep their
//!   order, and the outbox ends empty;
//! - the relay's sessions are terminated under load (as a database restart does): it comes back
//!   by itself and nothing is lost;
//! - a row the chain refuses goes to the dead letters while the rows behind it flow, and is
//!   appended after its cause is fixed and it is retried;
//! - two bus processes on one PostgreSQL store relay one outbox: one at a time, no row twice,
//!   and the survivor takes over from one killed with SIGKILL.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::common::TestServer;
use crate::common::own_pg::OwnPostgres;
use crate::common::pg::{Schema, database_url, terminate_sessions};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(120);

/// The application's side: an outbox schema made with `eventbus outbox init`.
struct App {
    /// The application's database.
    url: String,
    /// The outbox's schema in it.
    schema: String,
    /// Drops the schema at the end, on the shared test database.
    _dropped: Option<Schema>,
    /// Sessions of the relay carry this `application_name`, so a test can terminate them.
    app_name: String,
}

impl App {
    /// An outbox in a fresh schema of the shared test database.
    fn create(test: &str) -> Option<App> {
        let schema = Schema::create("outbox", test)?;
        let mut app = App::init(&database_url(), &schema.0);
        app._dropped = Some(schema);
        Some(app)
    }

    /// An outbox in `schema` of the database at `url`, made with `eventbus outbox init`.
    fn init(url: &str, schema: &str) -> App {
        let out = Command::new(env!("CARGO_BIN_EXE_eventbus"))
            .args(["outbox", "init", "--url", url, "--schema", schema])
            .output()
            .expect("running eventbus outbox init");
        assert!(
            out.status.success(),
            "outbox init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains("created (version 2, 2 migration(s) applied)"),
            "{printed}"
        );
        App {
            url: url.to_owned(),
            schema: schema.to_owned(),
            _dropped: None,
            app_name: format!("relay_{schema}"),
        }
    }

    /// `OUTBOX_SOURCES` for this outbox.
    fn source(&self, extra: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "name=app,url={}{sep}application_name={},schema={}{extra}",
            self.url, self.app_name, self.schema
        )
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connecting to the application database")
    }

    async fn backlog(&self) -> i64 {
        let mut conn = self.connect().await;
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.outbox",
            self.schema
        )))
        .fetch_one(&mut conn)
        .await
        .expect("counting the outbox")
    }

    /// Inserts one row per `(type, payload, project)` in one transaction, committed.
    async fn insert(&self, rows: &[(&str, Value, Option<&str>)]) -> Vec<String> {
        let mut conn = self.connect().await;
        let mut tx = conn.begin().await.unwrap();
        let mut ids = Vec::new();
        for (ty, payload, project) in rows {
            ids.push(insert_row(&mut tx, &self.schema, ty, payload, *project).await);
        }
        tx.commit().await.unwrap();
        ids
    }
}

async fn insert_row(
    conn: &mut PgConnection,
    schema: &str,
    ty: &str,
    payload: &Value,
    project: Option<&str>,
) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.outbox (id, type, payload, project_id) \
         VALUES (gen_random_uuid(), $1, $2::text::jsonb, $3) RETURNING id::text"
    )))
    .bind(ty)
    .bind(payload.to_string())
    .bind(project)
    .fetch_one(conn)
    .await
    .expect("inserting an outbox row")
}

/// What the writers did: ids committed per writer in order, ids rolled back.
#[derive(Default)]
struct Written {
    committed: Vec<Vec<String>>,
    rolled_back: Vec<String>,
}

/// 8 writers, each on project `w<i>`, write `total` rows in transactions of 1 to 10 rows, each
/// held open 0–50 ms; about one transaction in eight rolls back. `progress` counts committed rows.
async fn write(app: Arc<App>, total: usize, progress: Arc<AtomicUsize>) -> Written {
    let writers = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let app = app.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = app.connect().await;
            let project = format!("w{w}");
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
            let mut n = 0u64;
            while committed.len() < total / writers {
                let rows = (next() % 10 + 1) as usize;
                let rows = rows.min(total / writers - committed.len());
                let roll_back = next() % 8 == 0;
                let mut tx = conn.begin().await.unwrap();
                let mut ids = Vec::new();
                for _ in 0..rows {
                    let payload = json!({"writer": w, "n": n});
                    ids.push(
                        insert_row(
                            &mut tx,
                            &app.schema,
                            "order.placed",
                            &payload,
                            Some(&project),
                        )
                        .await,
                    );
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(next() % 51)).await;
                if roll_back {
                    tx.rollback().await.unwrap();
                    rolled_back.extend(ids);
                } else {
                    tx.commit().await.unwrap();
                    progress.fetch_add(ids.len(), Ordering::Relaxed);
                    committed.extend(ids);
                }
            }
            (committed, rolled_back)
        }));
    }
    let mut written = Written::default();
    for task in tasks {
        let (committed, rolled_back) = task.await.expect("a writer");
        written.committed.push(committed);
        written.rolled_back.extend(rolled_back);
    }
    written
}

/// Waits until the outbox is empty and `expected` events are in the log; returns the log.
async fn drained(server: &TestServer, app: &App, expected: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        if app.backlog().await == 0 {
            let events = server.all_events().await;
            if events.len() >= expected {
                return events;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every committed id once, no rolled-back one, each writer's rows in order.
fn check_log(events: &[Value], written: &Written) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for e in events {
        *count.entry(e["id"].as_str().unwrap()).or_default() += 1;
    }
    let committed: usize = written.committed.iter().map(Vec::len).sum();
    assert_eq!(
        events.len(),
        committed,
        "the log holds exactly the committed rows"
    );
    for ids in &written.committed {
        for id in ids {
            assert_eq!(
                count.get(id.as_str()),
                Some(&1),
                "committed row {id} is in the log once"
            );
        }
    }
    for id in &written.rolled_back {
        assert!(
            !count.contains_key(id.as_str()),
            "rolled-back row {id} is in the log"
        );
    }
    for (w, ids) in written.committed.iter().enumerate() {
        let project = format!("w{w}");
        let in_log: Vec<&str> = events
            .iter()
            .filter(|e| e["projectId"] == json!(project))
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(
            in_log, expected,
            "writer {w}'s rows are in the log in commit order"
        );
    }
}

async fn crash_twice_while_writing(test: &str, store_url: Option<String>) {
    let Some(app) = App::create(test) else {
        return;
    };
    let app = Arc::new(app);
    let source = app.source("");
    let mut env = vec![("OUTBOX_SOURCES", source.as_str())];
    if let Some(url) = &store_url {
        env.push(("EVENT_STORE_URL", url.as_str()));
    }
    let mut server = TestServer::start(&env).await;
    let total = 10_000;
    let progress = Arc::new(AtomicUsize::new(0));
    let writing = tokio::spawn(write(app.clone(), total, progress.clone()));
    for third in [total / 3, 2 * total / 3] {
        let deadline = Instant::now() + WAIT;
        while progress.load(Ordering::Relaxed) < third {
            assert!(Instant::now() < deadline, "the writers stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.restart().await;
    }
    let written = writing.await.expect("the writers");
    let committed: usize = written.committed.iter().map(Vec::len).sum();
    assert_eq!(committed, total);
    assert!(
        !written.rolled_back.is_empty(),
        "some transactions rolled back"
    );
    let events = drained(&server, &app, committed).await;
    check_log(&events, &written);
    assert_eq!(app.backlog().await, 0, "the outbox is drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_rows_are_relayed_once_through_two_crashes() {
    crash_twice_while_writing("crash_sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_rows_are_relayed_once_through_two_crashes_pg() {
    let Some(store) = Schema::create("outbox_store", "crash_pg") else {
        return;
    };
    crash_twice_while_writing("crash_pg", Some(store.store_url())).await;
}

// The relay's sessions are terminated three times while rows are written (what a restart of
// the application's database does to them): it reconnects by itself, nothing is lost, and
// the source shows as relaying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_recovers_when_its_database_drops_it() {
    let Some(app) = App::create("sessions") else {
        return;
    };
    let app = Arc::new(app);
    let source = app.source("");
    let server = TestServer::start(&[("OUTBOX_SOURCES", source.as_str())]).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let writing = tokio::spawn(write(app.clone(), 2_000, progress.clone()));
    let mut terminated = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        terminated += terminate_sessions(&app.app_name);
    }
    assert!(terminated > 0, "no relay session was terminated");
    let written = writing.await.expect("the writers");
    let events = drained(&server, &app, 2_000).await;
    check_log(&events, &written);
    let deadline = Instant::now() + WAIT;
    loop {
        let list = server.get("/v1/outboxes/app", &[]).await;
        if list.body["state"] == json!("relaying") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not come back: {}",
            list.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("eventbus_outbox_errors_total{source=\"app\"}"),
        "the interruptions are counted"
    );
}

// The application's database itself (a PostgreSQL server of the test's own) restarted between
// two rounds of the 8 writers, which takes the relay's connections and its lock with it: the
// relay comes back by itself, and every committed row of both rounds is in the log once, in
// each writer's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_recovers_when_its_database_restarts() {
    let Some(pg) = OwnPostgres::start_plain() else {
        return;
    };
    let pg = Arc::new(pg);
    let app = Arc::new(App::init(&pg.plain_url("app"), "eventbus"));
    let source = app.source("");
    let server = TestServer::start(&[("OUTBOX_SOURCES", source.as_str())]).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let before = write(app.clone(), 4_000, progress.clone()).await;
    let restarting = pg.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();
    let after = write(app.clone(), 2_000, progress.clone()).await;
    let mut written = before;
    for (w, ids) in after.committed.into_iter().enumerate() {
        written.committed[w].extend(ids);
    }
    written.rolled_back.extend(after.rolled_back);
    let events = drained(&server, &app, 6_000).await;
    check_log(&events, &written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_is_set_aside_and_retried_after_the_fix() {
    let Some(app) = App::create("dead_letters") else {
        return;
    };
    let source = app.source(",tenant=t_1");
    let server = TestServer::start(&[("OUTBOX_SOURCES", source.as_str())]).await;
    let schema = json!({"schema": {"type": "object", "required": ["amount"],
                                   "properties": {"amount": {"type": "number"}}}});
    assert_eq!(
        server.put_event_type("invoice.paid", &schema).await.status,
        StatusCode::CREATED
    );
    let bad = app
        .insert(&[("invoice.paid", json!({"amount": "twelve"}), Some("p1"))])
        .await;
    let good = app
        .insert(&[
            ("invoice.paid", json!({"amount": 12}), Some("p1")),
            ("invoice.paid", json!({"amount": 13}), Some("p1")),
        ])
        .await;
    let events = drained(&server, &app, 2).await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        good.iter().map(String::as_str).collect::<Vec<_>>(),
        "the rows behind flow"
    );
    assert!(
        events.iter().all(|e| e["tenantId"] == json!("t_1")),
        "bound to the source's tenant"
    );

    let page = server.get("/v1/outboxes/app/dead-letters", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let dead = &page.body["deadLetters"];
    assert_eq!(dead.as_array().map(Vec::len), Some(1), "{}", page.body);
    assert_eq!(dead[0]["id"], json!(bad[0]));
    assert_eq!(dead[0]["payload"], json!({"amount": "twelve"}));
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("JSON Schema") && reason.contains("amount"),
        "{reason}"
    );

    // Retried before the fix: refused again, with the reason.
    let seq = dead[0]["seq"].as_i64().unwrap();
    let retried = retry(&server, seq).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    let again = wait_dead_letters(&server, 1).await;
    let seq = again[0]["seq"].as_i64().unwrap();
    // After the fix, the retry appends it with its id.
    let loose = json!({"schema": {"type": "object"}});
    assert_eq!(
        server.put_event_type("invoice.paid", &loose).await.status,
        StatusCode::OK
    );
    let retried = retry(&server, seq).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    let events = drained(&server, &app, 3).await;
    assert_eq!(events[2]["id"], json!(bad[0]));
    assert!(wait_dead_letters(&server, 0).await.is_empty());
    let missing = retry(&server, seq).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("eventbus_outbox_dead_lettered_total{source=\"app\"} 2"),
        "two refusals counted"
    );
    assert!(metrics.contains("eventbus_outbox_relayed_total{source=\"app\"} 3"));
}

// With `keep=`, relayed rows stay in the outbox marked `relayed_at`, are not relayed again,
// and are deleted once older than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_rows_stay_marked_until_they_are_old() {
    let Some(app) = App::create("keep") else {
        return;
    };
    let source = app.source(",keep=2s");
    let server = TestServer::start(&[("OUTBOX_SOURCES", source.as_str())]).await;
    let ids = app
        .insert(&[
            ("order.placed", json!({"n": 1}), Some("p1")),
            ("order.placed", json!({"n": 2}), Some("p1")),
        ])
        .await;
    let deadline = Instant::now() + WAIT;
    while server.all_events().await.len() < 2 {
        assert!(Instant::now() < deadline, "the rows were not relayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = app.connect().await;
    let marked: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.outbox WHERE relayed_at IS NOT NULL",
        app.schema
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(marked, 2, "relayed rows are kept, marked");
    // Kept rows are swept after about two seconds; they were never relayed twice.
    let deadline = Instant::now() + WAIT;
    while app.backlog().await > 0 {
        assert!(Instant::now() < deadline, "kept rows were not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = server.all_events().await;
    let logged: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(logged, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

async fn wait_dead_letters(server: &TestServer, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = server.get("/v1/outboxes/app/dead-letters", &[]).await;
        let list = page.body["deadLetters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list.len() == n {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} dead letters: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Two bus processes on one PostgreSQL store relay one outbox: one relays, the other stands by;
// killed with SIGKILL mid-run, the relaying one is replaced within seconds and no row is
// appended twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_relay_one_outbox_one_at_a_time() {
    let Some(app) = App::create("two_nodes") else {
        return;
    };
    let Some(store) = Schema::create("outbox_store", "two_nodes") else {
        return;
    };
    let app = Arc::new(app);
    let source = app.source("");
    let url = store.store_url();
    let env = [
        ("OUTBOX_SOURCES", source.as_str()),
        ("EVENT_STORE_URL", url.as_str()),
    ];
    let mut a = TestServer::start(&env).await;
    let mut b = TestServer::start(&env).await;
    let state =
        |reply: &crate::common::Reply| reply.body["state"].as_str().unwrap_or("").to_owned();
    let deadline = Instant::now() + WAIT;
    let relaying = loop {
        let (sa, sb) = (
            state(&a.get("/v1/outboxes/app", &[]).await),
            state(&b.get("/v1/outboxes/app", &[]).await),
        );
        match (sa.as_str(), sb.as_str()) {
            ("relaying", "standby") => break 'a',
            ("standby", "relaying") => break 'b',
            _ => {}
        }
        assert!(Instant::now() < deadline, "no single relay: {sa} / {sb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let progress = Arc::new(AtomicUsize::new(0));
    let writing = tokio::spawn(write(app.clone(), 3_000, progress.clone()));
    while progress.load(Ordering::Relaxed) < 1_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (killed, survivor) = if relaying == 'a' {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    killed.kill();
    let taken_over = Instant::now();
    loop {
        if state(&survivor.get("/v1/outboxes/app", &[]).await) == "relaying" {
            break;
        }
        assert!(
            taken_over.elapsed() < Duration::from_secs(30),
            "the survivor did not take over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = writing.await.expect("the writers");
    let events = drained(survivor, &app, 3_000).await;
    check_log(&events, &written);
}

async fn metrics_text(server: &TestServer) -> String {
    let reply = server.get("/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body.as_str().unwrap_or_default().to_owned()
}

/// `POST /v1/outboxes/app/dead-letters/{seq}/retry`.
async fn retry(server: &TestServer, seq: i64) -> crate::common::Reply {
    server
        .send(
            reqwest::Method::POST,
            &format!("/v1/outboxes/app/dead-letters/{seq}/retry"),
        )
        .await
}
