//! PostgreSQL behind PgBouncer (the Debian package's, started by each test on a loopback port of
//! its own, in the foreground, killed on drop): in session mode the bus needs nothing more; in
//! transaction mode it refuses to start without `EVENT_STORE_DIRECT_URL`, and with it runs its
//! own sessions (appends, LISTEN) on PostgreSQL itself and every pooled statement in a
//! transaction of its own through PgBouncer.
//!
//! PgBouncer refuses the `options` start-up parameter, so a schema cannot be chosen with
//! `?options=-c search_path=…` through it: each test has a database of its own instead, on the
//! test server, dropped at the end (PgBouncer forwards any database name to that server).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::cluster::database_url;
use crate::common::psql_rows;
use crate::common::receiver::WebhookReceiver;
use crate::common::sse::SseClient;
use crate::common::{self, TestServer, ids, seq, seqs_by_id};

/// The Debian package's PgBouncer.
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// Bound for anything asynchronous: PgBouncer listening, events arriving, the bus exiting.
const WAIT: Duration = Duration::from_secs(20);

/// Server sessions PgBouncer keeps per database in transaction mode: fewer than the bus's
/// connections (11 by default), so that its pooled connections really share server sessions.
const TRANSACTION_POOL: u32 = 5;

/// The same in session mode, where each client connection holds a server session for its whole
/// life: enough for every connection of the bus, as a session-mode pooler in front of it must be.
const SESSION_POOL: u32 = 20;

/// Load of the transaction-mode test: tasks at once, and publishes (each followed by reads) per
/// task.
const TASKS: usize = 8;
const PER_TASK: usize = 100;

/// `psql` on the test server's own database; whether it succeeded. Each statement runs on its
/// own (`CREATE DATABASE` and `DROP DATABASE` cannot run in a transaction).
fn psql(statements: &[&str]) -> bool {
    let mut cmd = Command::new("psql");
    cmd.arg(database_url())
        .args(["-qAtX", "-v", "ON_ERROR_STOP=1"]);
    for sql in statements {
        cmd.args(["-c", sql]);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `database_url()` with another host, port and database (its user, password and query kept).
fn url_of(host: &str, port: u16, database: &str) -> String {
    let mut url = Url::parse(&database_url()).expect("the test database URL parses");
    url.set_host(Some(host)).expect("a URL with a host");
    url.set_port(Some(port)).expect("a URL with a port");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A database of its own for one test on the test server; dropped, with any session still on
/// it, on drop.
struct Database {
    name: String,
}

impl Database {
    /// `None` (outside CI) when PostgreSQL cannot be reached.
    fn create(test: &str) -> Option<Database> {
        if !psql(&["SELECT 1"]) {
            eventbus::testing::skip(&format!("PostgreSQL at {} is unreachable", database_url()));
            return None;
        }
        let name = format!("eb_pgb_{test}_{}", std::process::id());
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let create = format!("CREATE DATABASE {name}");
        // Tests create their databases at the same time, from the same template: try again if
        // the template happened to be busy.
        for _ in 0..10 {
            if psql(&[&drop, &create]) {
                return Some(Database { name });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("cannot create the database {name}");
    }

    /// The URL of this database on PostgreSQL itself.
    fn direct_url(&self) -> String {
        let server = Url::parse(&database_url()).expect("the test database URL parses");
        let host = server.host_str().unwrap_or("127.0.0.1").to_owned();
        url_of(&host, server.port().unwrap_or(5432), &self.name)
    }

    /// The first column of `sql`'s rows on this database, on PostgreSQL itself.
    fn rows(&self, sql: &str) -> Vec<String> {
        psql_rows(&self.direct_url(), sql)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(&[&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )]);
    }
}

/// A PgBouncer in front of the test server, on a free loopback port, in a directory of its own
/// (configuration, user list, log, pid file). Killed on drop.
struct PgBouncer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl PgBouncer {
    /// Starts PgBouncer in `mode` (`session` or `transaction`) with `pool` server sessions per
    /// database and user; returns once it accepts connections. `None` (outside CI) when the
    /// binary is missing.
    async fn start(mode: &str, pool: u32) -> Option<PgBouncer> {
        if !std::path::Path::new(PGBOUNCER).exists() {
            eventbus::testing::skip(&format!(
                "{PGBOUNCER} is missing (apt-get install pgbouncer)"
            ));
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("eb-pgbouncer-")
            .tempdir()
            .expect("creating a temporary directory");
        let server = Url::parse(&database_url()).expect("the test database URL parses");
        let user = match server.username() {
            "" => "postgres",
            user => user,
        };
        let mut target = format!(
            "host={} port={}",
            server.host_str().unwrap_or("127.0.0.1"),
            server.port().unwrap_or(5432)
        );
        if let Some(password) = server.password() {
            target.push_str(&format!(" password={password}"));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("userlist.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        std::fs::write(
            path("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = {target}\n\
                 \n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {}\n\
                 admin_users = {user}\n\
                 pool_mode = {mode}\n\
                 max_client_conn = 200\n\
                 default_pool_size = {pool}\n\
                 logfile = {}\n\
                 pidfile = {}\n",
                path("userlist.txt"),
                path("pgbouncer.log"),
                path("pgbouncer.pid"),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(PGBOUNCER);
        cmd.arg(path("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root: as root, run it as `postgres`, in a directory it
        // owns. (Switching the user of the child itself rather than through `runuser`, so that
        // killing the child kills PgBouncer.)
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("running id");
                assert!(
                    out.status.success(),
                    "no `postgres` user to run PgBouncer as"
                );
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            };
            let (uid, gid) = (id("-u"), id("-g"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("giving the directory to postgres");
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().expect("spawning pgbouncer");
        let mut bouncer = PgBouncer {
            dir,
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = bouncer.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none(),
                "pgbouncer exited ({exited:?}); its log:\n{}",
                bouncer.log()
            );
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on {port} within {WAIT:?}; its log:\n{}",
                bouncer.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(bouncer)
    }

    /// The URL of `database` through this PgBouncer.
    fn url(&self, database: &str) -> String {
        url_of("127.0.0.1", self.port, database)
    }

    /// PgBouncer's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// `SHOW <what>` on the admin console: one map of column → value per row.
    fn show(&self, what: &str) -> Vec<HashMap<String, String>> {
        let out = Command::new("psql")
            .arg(self.url("pgbouncer"))
            .args(["-qAX", "-P", "footer=off", "-c", &format!("SHOW {what}")])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "SHOW {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
        lines
            .map(|line| {
                header
                    .iter()
                    .zip(line.split('|'))
                    .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }

    /// The bus's server sessions on `db` (those named `eventbus` in `pg_stat_activity`): how
    /// many are PgBouncer's server connections, and how many are not.
    fn bus_sessions(&self, db: &Database) -> (usize, usize) {
        let through: HashSet<String> = self
            .show("SERVERS")
            .into_iter()
            .filter(|s| s.get("database") == Some(&db.name))
            .filter_map(|s| s.get("remote_pid").cloned())
            .collect();
        let sessions = db.rows(&format!(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = '{}' AND application_name = 'eventbus'",
            db.name
        ));
        let via = sessions.iter().filter(|pid| through.contains(*pid)).count();
        (via, sessions.len() - via)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The bus's settings for these tests: the store at `store`, `direct` as its direct URL, and
/// webhooks allowed to reach the local receiver, polled often.
async fn start_bus(store: &str, direct: Option<&str>) -> TestServer {
    let mut env = vec![
        ("EVENT_STORE_URL", store),
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
    ];
    if let Some(direct) = direct {
        env.push(("EVENT_STORE_DIRECT_URL", direct));
    }
    TestServer::start(&env).await
}

/// Publishes one event and returns it as stored.
async fn publish_one(server: &TestServer, id: &str, i: usize) -> Value {
    let stored = server
        .publish_ok(&json!({"id": id, "type": "order.created", "payload": {"i": i}}))
        .await;
    assert_eq!(stored["id"], json!(id), "{stored}");
    stored
}

/// The stream's next events until `last` (a seq) arrived: their ids, in order.
async fn streamed_ids(stream: &mut SseClient, last: u64) -> Vec<String> {
    stream
        .events_until_seq(last, WAIT)
        .await
        .iter()
        .map(|m| {
            assert_eq!(m.data["seq"].as_u64(), Some(m.seq), "id: is the seq");
            m.data["id"]
                .as_str()
                .expect("an event has an id")
                .to_owned()
        })
        .collect()
}

/// The whole API through the store's URL, on an empty store: single events and a batch are
/// published and read back (by id and by query), a live stream gets them in order, a stream
/// resumed with `Last-Event-ID` gets exactly the events it missed and then goes live, a webhook
/// endpoint receives every event once, and the server is ready.
async fn smoke(server: &TestServer) {
    let receiver = WebhookReceiver::start().await;
    let created = server
        .client()
        .post(server.url("/v1/webhooks"))
        .json(&json!({"url": receiver.url("/hook")}))
        .send()
        .await
        .expect("POST /v1/webhooks");
    assert_eq!(created.status(), StatusCode::CREATED);
    let mut live = SseClient::connect(server, "", None).await;

    // Three single events, then a batch of four: stored in order, with increasing seqs.
    let mut published = Vec::new();
    for i in 0..3 {
        published.push(publish_one(server, &format!("smoke-{i}"), i).await);
    }
    let batch: Vec<Value> = (3..7)
        .map(|i| json!({"id": format!("smoke-{i}"), "type": "order.created", "payload": {"i": i}}))
        .collect();
    let reply = server.publish(&Value::Array(batch)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    published.extend(
        reply
            .body
            .as_array()
            .expect("the stored batch")
            .iter()
            .cloned(),
    );
    let seqs: Vec<u64> = published.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs increase: {seqs:?}"
    );

    // The live stream gets them in order; it then drops, and misses three more.
    let seen = *seqs.last().unwrap();
    assert_eq!(streamed_ids(&mut live, seen).await, ids(&json!(published)));
    drop(live);
    let mut missed = Vec::new();
    for i in 7..10 {
        missed.push(publish_one(server, &format!("smoke-{i}"), i).await);
    }
    // Resumed after the last event it saw: exactly the missed ones, in order, then live ones.
    let mut resumed = SseClient::connect(server, "", Some(seen)).await;
    let sentinel = publish_one(server, "smoke-sentinel", 10).await;
    missed.push(sentinel.clone());
    assert_eq!(
        streamed_ids(&mut resumed, seq(&sentinel)).await,
        ids(&json!(missed)),
        "the resumed stream gets the missed events, once, in order, then the live one"
    );
    published.extend(missed);

    // Read back: by id, and by query in seq order.
    for event in &published {
        let id = event["id"].as_str().unwrap();
        let got = server.get_event(id).await;
        assert_eq!(got.status, StatusCode::OK, "GET {id}: {}", got.body);
        assert_eq!(&got.body, event, "GET {id}");
    }
    assert_eq!(
        ids(&json!(server.all_events().await)),
        ids(&json!(published))
    );
    assert_eq!(
        server
            .query_ids(&[("type", "order.*"), ("limit", "5")])
            .await,
        ids(&json!(published[..5]))
    );

    // The webhook endpoint gets every event, once.
    let expected: HashSet<String> = ids(&json!(published)).into_iter().collect();
    let requests = receiver
        .wait_until("every published event", WAIT, |rs| {
            rs.iter().map(|r| &r.id).collect::<HashSet<_>>().len() >= expected.len()
        })
        .await;
    let received: Vec<&str> = requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(received.len(), expected.len(), "one request per event");
    assert_eq!(
        received
            .iter()
            .map(|id| (*id).to_owned())
            .collect::<HashSet<_>>(),
        expected
    );
    assert!(requests.iter().all(|r| r.succeeded()));

    // Ready, or ready again within a bound: under a loaded test run the listener may be between
    // two connections (it reconnects with a backoff of up to 5 s), which readiness reports.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = server.get("/health/ready", &[]).await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 15 s: {}\nserver log:\n{}",
            ready.body,
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Session mode needs nothing but the pooler's URL: the whole API works through it (publish,
// batch, reads, live and resumed streams, webhooks), and every session of the bus on the database
// is one of PgBouncer's server connections (none reaches PostgreSQL around it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_runs_the_whole_api_through_pgbouncer() {
    let Some(db) = Database::create("session") else {
        return;
    };
    let Some(bouncer) = PgBouncer::start("session", SESSION_POOL).await else {
        return;
    };
    let server = start_bus(&bouncer.url(&db.name), None).await;
    smoke(&server).await;
    let (through, around) = bouncer.bus_sessions(&db);
    println!("sessions of the bus: {through} through PgBouncer, {around} direct");
    assert!(
        through >= 2,
        "the bus's sessions (at least the appends' and LISTEN's) go through PgBouncer: \
         {through} do, {around} do not"
    );
    assert_eq!(
        around, 0,
        "a session of the bus does not go through PgBouncer"
    );
}

// Transaction mode without a direct URL is refused at start, within a bounded time, before any
// migration ran through the pooler: the process exits non-zero saying that the URL leads to a
// transaction-mode pooler and that EVENT_STORE_DIRECT_URL is what to set.
#[tokio::test]
async fn transaction_mode_without_a_direct_url_is_refused_at_start() {
    let Some(db) = Database::create("refused") else {
        return;
    };
    let Some(bouncer) = PgBouncer::start("transaction", TRANSACTION_POOL).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .arg("serve")
        .env_clear()
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("EVENT_STORE_URL", bouncer.url(&db.name))
        .env("EVENT_BUS_ADMIN_KEY", common::ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the eventbus binary");
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        exited,
        "the server still ran after {WAIT:?}; its output:\n{output}"
    );
    assert!(
        !out.status.success(),
        "the server exited with {}: {output}",
        out.status
    );
    assert!(
        !output.contains("eventbus listening on"),
        "the server listened: {output}"
    );
    assert!(output.contains("EVENT_STORE_DIRECT_URL"), "{output}");
    assert!(
        output.contains("pooler in transaction or statement mode"),
        "{output}"
    );
    println!("refused in {elapsed:?}: {output}");
    // Refused before migrating: no table was created through the pooler.
    assert_eq!(
        db.rows("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        ["0"]
    );
}

// Transaction mode with a direct URL: the whole API works, and so do eight clients publishing
// and reading at once (every answer a 201 or a 200, every acknowledged event stored once with
// the seq it was answered with) while the pooled connections share PgBouncer's few server
// sessions; the bus's own sessions (appends, LISTEN) reach PostgreSQL directly, the rest goes
// through PgBouncer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_with_a_direct_url_serves_the_api_under_load() {
    let Some(db) = Database::create("transaction") else {
        return;
    };
    let Some(bouncer) = PgBouncer::start("transaction", TRANSACTION_POOL).await else {
        return;
    };
    let server = Arc::new(start_bus(&bouncer.url(&db.name), Some(&db.direct_url())).await);
    smoke(&server).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_TASK {
                let id = format!("load-{t}-{i}");
                let stored = server
                    .publish_ok(
                        &json!({"id": id, "type": "load.test", "payload": {"t": t, "i": i}}),
                    )
                    .await;
                let got = server.get_event(&id).await;
                assert_eq!(got.status, StatusCode::OK, "GET {id}: {}", got.body);
                assert_eq!(got.body, stored, "GET {id}");
                let page = server
                    .query(&[("type", "load.test"), ("limit", "20")])
                    .await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.body);
                acked.push((id, seq(&stored)));
            }
            acked
        }));
    }
    let mut acked = HashMap::new();
    for task in tasks {
        acked.extend(task.await.expect("a client task"));
    }
    println!(
        "{} events published and read back by {TASKS} clients in {:?}",
        acked.len(),
        started.elapsed()
    );
    assert_eq!(acked.len(), TASKS * PER_TASK);
    let stored = server.all_events().await;
    let by_id = seqs_by_id(&stored);
    assert_eq!(by_id.len(), stored.len(), "an id is stored twice");
    for (id, s) in &acked {
        assert_eq!(
            by_id.get(id),
            Some(s),
            "acknowledged event {id} lost or moved"
        );
    }
    assert_eq!(
        stored.iter().filter(|e| e["type"] == "load.test").count(),
        acked.len()
    );
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);

    // The appends' and LISTEN's sessions reach PostgreSQL directly; the pool goes through
    // PgBouncer, on no more server sessions than its pool holds.
    let (through, around) = bouncer.bus_sessions(&db);
    let clients = bouncer
        .show("CLIENTS")
        .into_iter()
        .filter(|c| c.get("database") == Some(&db.name))
        .count();
    println!(
        "sessions of the bus: {through} through PgBouncer (for {clients} client connections), \
         {around} direct"
    );
    assert!(
        (1..=TRANSACTION_POOL as usize).contains(&through),
        "{through} sessions through PgBouncer"
    );
    assert!(
        (2..=3).contains(&around),
        "{around} direct sessions (the appends', LISTEN's and perhaps the archiver's)"
    );
}
