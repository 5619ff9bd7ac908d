//! Archiving through the binary: events published with old timestamps are archived by
//! `eventbus archive run` on the stopped server's data, and after a restart
//! `GET /v1/events?includeArchived=true` answers across archived and hot events with the same
//! filters and paging; `eventbus archive restore --all` puts them back. Once with a local
//! directory (`file://`), once with a bucket of a real S3-compatible server (`s3://`).

use std::path::Path;
use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use std::time::Duration;

use crate::common::s3::{TestBucket, TlsServer, unique_name};
use crate::common::sse::{Message, SseClient};
use crate::common::{TestServer, ids, seq};
use crate::metrics::{sample, scrape};

const OLD: usize = 30;
const RECENT: usize = 5;

/// Runs `eventbus archive <args>` over the data in `dir`, which must succeed.
fn archive_cli(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let out = try_archive_cli(dir, env, args);
    assert!(
        out.status.success(),
        "eventbus archive {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `eventbus archive <args>` over the data in `dir`. Only `env` says which extra CAs to
/// trust: `SSL_CERT_FILE` and `SSL_CERT_DIR` are not inherited.
fn try_archive_cli(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
    cmd.arg("archive")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running eventbus archive")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the archive files of a test go.
enum Target {
    /// `file://` of this directory.
    Dir(std::path::PathBuf),
    /// `s3://` of this bucket, under the prefix `situs/archive`.
    S3(TestBucket),
}

impl Target {
    /// `EVENT_ARCHIVE_URL` and, for S3, the `AWS_*` settings.
    fn env(&self) -> Vec<(String, String)> {
        let key = "EVENT_ARCHIVE_URL".to_owned();
        match self {
            Target::Dir(dir) => vec![(key, format!("file://{}", dir.display()))],
            Target::S3(bucket) => {
                let mut env = vec![(key, bucket.url("situs/archive"))];
                env.extend(bucket.settings());
                env
            }
        }
    }

    /// How many archive files are stored, counted without the server.
    async fn files(&self) -> usize {
        match self {
            Target::Dir(dir) => std::fs::read_dir(dir).map_or(0, Iterator::count),
            Target::S3(bucket) => bucket.keys().await.len(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_events_are_queried_with_include_archived_after_a_restart_and_restored() {
    let data = tempfile::tempdir().unwrap();
    let target = Target::Dir(data.path().join("archive"));
    archive_query_restore_through_the_binary(&data, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_into_an_s3_bucket_through_the_binary() {
    let Some(bucket) = TestBucket::create().await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    archive_query_restore_through_the_binary(&data, &Target::S3(bucket)).await;
}

async fn archive_query_restore_through_the_binary(data: &tempfile::TempDir, target: &Target) {
    let mut env = vec![(
        "EVENT_STORE_URL".to_owned(),
        format!("sqlite://{}", data.path().join("eventbus.db").display()),
    )];
    env.extend(target.env());
    let server_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = TestServer::start(&server_env).await;

    let old = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    let types = ["order.created", "order.paid", "user.signed_up"];
    let batch: Vec<Value> = (0..OLD + RECENT)
        .map(|i| {
            let mut e = json!({
                "type": types[i % types.len()],
                "projectId": format!("p{}", i % 2),
                "payload": {"i": i},
            });
            if i < OLD {
                let ts = old + time::Duration::seconds(i as i64);
                e["timestamp"] = json!(ts.format(&Rfc3339).unwrap());
            }
            e
        })
        .collect();
    let reply = server.publish(&json!(batch)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let before = server.all_events().await;
    assert_eq!(before.len(), OLD + RECENT);

    // Archive on the stopped server's data (SQLite serves one process at a time).
    server.terminate();
    assert!(server.wait_exit().await.success());
    let mut run_env = env.clone();
    run_env.push(("EVENT_RETENTION_DAYS".into(), "1".into()));
    let out = archive_cli(data.path(), &run_env, &["run"]);
    assert!(
        stdout(&out).contains(&format!("archived {OLD} events")),
        "{}",
        stdout(&out)
    );
    let listed = stdout(&archive_cli(data.path(), &env, &["list"]));
    assert!(listed.contains(".jsonl.zst"), "{listed}");
    assert_eq!(target.files().await, 1, "one segment file");

    server.restart().await;
    // Hot events only by default.
    let hot = server.all_events().await;
    assert_eq!(ids(&json!(hot)), ids(&json!(before[OLD..])));
    // A stream resuming before the archived range is told what it will not get, then gets the
    // hot events after it.
    let first_old = seq(&before[0]);
    let mut stream = SseClient::connect(&server, "", Some(first_old)).await;
    let notice = loop {
        match stream
            .next(Duration::from_secs(30))
            .await
            .expect("a message")
        {
            Message::Control { event, data } => break (event, data),
            Message::Retry(_) | Message::Comment(_) => continue,
            Message::Event(e) => panic!("an event before the archive notice: {e:?}"),
        }
    };
    assert_eq!(notice.0, "error");
    assert_eq!(notice.1["code"], "cursor_archived", "{}", notice.1);
    assert_eq!(notice.1["archivedFrom"], (first_old + 1).to_string());
    assert_eq!(notice.1["archivedTo"], seq(&before[OLD - 1]).to_string());
    let live: Vec<u64> = stream
        .events_until_seq(seq(&before[OLD + RECENT - 1]), Duration::from_secs(30))
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(live, before[OLD..].iter().map(seq).collect::<Vec<_>>());
    drop(stream);
    // Across archived and hot events, paged across the boundary, same content.
    for limit in [1, 7, 1000] {
        let all = server
            .collect("/v1/events", &[("includeArchived", "true")], limit)
            .await;
        assert_eq!(all, before, "includeArchived with pages of {limit}");
    }
    // The same filters as hot queries.
    let expected: Vec<Value> = before
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("order.") && e["projectId"] == "p1")
        .cloned()
        .collect();
    let got = server
        .collect(
            "/v1/events",
            &[
                ("includeArchived", "true"),
                ("type", "order.*"),
                ("projectId", "p1"),
            ],
            4,
        )
        .await;
    assert_eq!(got, expected);
    let got = server
        .collect(
            "/v1/projects/p1/events",
            &[("includeArchived", "true"), ("type", "order.*")],
            3,
        )
        .await;
    assert_eq!(got, expected);
    let to = (old + time::Duration::seconds(10))
        .format(&Rfc3339)
        .unwrap();
    let got = server
        .collect("/v1/events", &[("includeArchived", "true"), ("to", &to)], 4)
        .await;
    assert_eq!(got, before[..10].to_vec());
    let reply = server
        .get("/v1/events", &[("includeArchived", "yes")])
        .await;
    reply.assert_problem_field(StatusCode::BAD_REQUEST, "includeArchived");

    // Restore everything: the hot table holds every event again, with its seq and id.
    server.terminate();
    assert!(server.wait_exit().await.success());
    let out = archive_cli(data.path(), &env, &["restore", "--all"]);
    assert!(
        stdout(&out).contains(&format!("restored {OLD} events")),
        "{}",
        stdout(&out)
    );
    server.restart().await;
    assert_eq!(server.all_events().await, before);
    assert_eq!(target.files().await, 0);
}

/// Publishes `old` events dated three days back, then `recent` current ones, in one batch;
/// stops the server and returns every event as stored.
async fn publish_old_and_recent_then_stop(
    server: &mut TestServer,
    old: usize,
    recent: usize,
) -> Vec<Value> {
    let ts = (time::OffsetDateTime::now_utc() - time::Duration::days(3))
        .format(&Rfc3339)
        .unwrap();
    let batch: Vec<Value> = (0..old + recent)
        .map(|i| {
            let mut e = json!({"type": "order.created", "payload": {"i": i}});
            if i < old {
                e["timestamp"] = json!(ts);
            }
            e
        })
        .collect();
    assert_eq!(
        server.publish(&json!(batch)).await.status,
        StatusCode::CREATED
    );
    let stored = server.all_events().await;
    server.terminate();
    assert!(server.wait_exit().await.success());
    stored
}

/// The `/health/ready` answer once its `archive` entry has a `field` (`lastSuccess`,
/// `lastFailure`), at most [`crate::common::PROCESS_TIMEOUT`] from now.
async fn ready_once_archive_has(server: &TestServer, field: &str) -> crate::common::Reply {
    let deadline = tokio::time::Instant::now() + crate::common::PROCESS_TIMEOUT;
    loop {
        let ready = server.get("/health/ready", &[]).await;
        if !ready.body["details"]["archive"][field].is_null() {
            return ready;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no archive {field}: {}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_archives_at_start_when_a_retention_is_set_and_stops_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", data.path().join("eventbus.db").display());
    let target = format!("file://{}", data.path().join("archive").display());
    let mut server =
        TestServer::start(&[("EVENT_STORE_URL", &store), ("EVENT_ARCHIVE_URL", &target)]).await;
    let before = publish_old_and_recent_then_stop(&mut server, 10, 2).await;

    let mut server = TestServer::start(&[
        ("EVENT_STORE_URL", &store),
        ("EVENT_ARCHIVE_URL", &target),
        ("EVENT_RETENTION_DAYS", "1"),
    ])
    .await;
    // The archiver runs in the background right after the start; wait for its commit.
    let mut hot = server.all_events().await;
    for _ in 0..(crate::common::PROCESS_TIMEOUT.as_millis() / 50) {
        if hot.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        hot = server.all_events().await;
    }
    assert_eq!(
        hot,
        before[10..].to_vec(),
        "the ten old events left the hot table"
    );
    assert_eq!(
        server
            .collect("/v1/events", &[("includeArchived", "true")], 5)
            .await,
        before
    );
    // The run shows in readiness and in the metrics once it has finished (its commit, seen
    // above, comes before it looks for more).
    let ready = ready_once_archive_has(&server, "lastSuccess").await;
    let entry = &ready.body["details"]["archive"];
    assert_eq!(entry["retentionDays"], 1, "{}", ready.body);
    assert!(entry["lastSuccess"].is_string() && entry["lastFailure"].is_null());
    let text = scrape(&server).await;
    assert_eq!(sample(&text, "eventbus_archived_events_total"), Some(10.0));
    assert_eq!(
        sample(&text, r#"eventbus_archive_runs_total{outcome="ok"}"#),
        Some(1.0)
    );
    assert!(
        sample(&text, "eventbus_archive_last_success_timestamp_seconds").is_some_and(|t| t > 1.7e9)
    );
    server.terminate();
    assert!(server.wait_exit().await.success(), "{}", server.log_text());
}

/// An archive target that cannot be reached: the run at start fails, the server stays ready
/// and serves, and readiness and the metrics say what went wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_archive_run_shows_in_readiness_and_metrics_and_the_server_serves_on() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let server = TestServer::start(&[
        ("EVENT_ARCHIVE_URL", "s3://unreachable/archive"),
        ("EVENT_RETENTION_DAYS", "1"),
        ("AWS_ENDPOINT", &endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ])
    .await;
    let ready = ready_once_archive_has(&server, "lastFailure").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let error = ready.body["details"]["archive"]["lastError"]
        .as_str()
        .unwrap();
    assert!(error.contains("s3://unreachable/archive"), "{error}");
    assert!(ready.body["details"]["archive"]["lastSuccess"].is_null());
    let text = scrape(&server).await;
    assert_eq!(
        sample(&text, r#"eventbus_archive_runs_total{outcome="failed"}"#),
        Some(1.0)
    );
    server.publish_ok(&json!({"type": "order.created"})).await;
}

/// `s3://` over HTTPS: the storage's certificate is verified (a run that does not trust its CA
/// fails and moves nothing), and with the CA trusted the archive round trip works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_into_s3_over_https_verifies_the_certificate() {
    let Some(tls) = TlsServer::from_env() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", data.path().join("eventbus.db").display());
    let mut server = TestServer::start(&[("EVENT_STORE_URL", &store)]).await;
    let before = publish_old_and_recent_then_stop(&mut server, 6, 2).await;

    let env: Vec<(String, String)> = [
        ("EVENT_STORE_URL", store.clone()),
        (
            "EVENT_ARCHIVE_URL",
            format!("s3://{}/{}", tls.bucket, unique_name("run")),
        ),
        ("EVENT_RETENTION_DAYS", "1".into()),
        ("AWS_ENDPOINT", tls.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();

    // The CA is not trusted: the run fails, saying where it wrote, and nothing moves.
    let refused = try_archive_cli(data.path(), &env, &["run"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(stderr.contains("s3://eventbus-tls-test/"), "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    let listed = stdout(&archive_cli(data.path(), &env, &["list"]));
    assert!(!listed.contains(".jsonl.zst"), "{listed}");

    // Trusted: archived, queried across both sources after a restart, restored.
    let mut trusted = env.clone();
    trusted.push(("SSL_CERT_FILE".into(), tls.ca_file.clone()));
    let out = archive_cli(data.path(), &trusted, &["run"]);
    assert!(
        stdout(&out).contains("archived 6 events"),
        "{}",
        stdout(&out)
    );
    let server_env: Vec<(&str, &str)> = trusted
        .iter()
        .filter(|(k, _)| k != "EVENT_RETENTION_DAYS")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut server = TestServer::start(&server_env).await;
    assert_eq!(server.all_events().await, before[6..].to_vec());
    assert_eq!(
        server
            .collect("/v1/events", &[("includeArchived", "true")], 3)
            .await,
        before
    );
    server.terminate();
    assert!(server.wait_exit().await.success());
    let out = archive_cli(data.path(), &trusted, &["restore", "--all"]);
    assert!(
        stdout(&out).contains("restored 6 events"),
        "{}",
        stdout(&out)
    );
}

// `eventbus archive run` killed with SIGKILL at five points of a three-segment run (before the
// first segment, between segments, during one; where depends on the machine), then run to
// the end: after each kill every event is hot or archived exactly once (a query with
// `includeArchived=true` answers each id once), and the finished run leaves no orphan file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_run_killed_at_any_point_loses_and_duplicates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let archive_dir = data.path().join("archive");
    let env = vec![
        (
            "EVENT_STORE_URL".to_owned(),
            format!("sqlite://{}", data.path().join("eventbus.db").display()),
        ),
        (
            "EVENT_ARCHIVE_URL".to_owned(),
            format!("file://{}", archive_dir.display()),
        ),
    ];
    let server_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = TestServer::start(&server_env).await;
    let old = (time::OffsetDateTime::now_utc() - time::Duration::days(3))
        .format(&Rfc3339)
        .unwrap();
    let total = 25_000;
    for start in (0..total).step_by(1000) {
        let batch: Vec<Value> = (start..start + 1000)
            .map(|i| json!({"type": "order.created", "payload": {"i": i}, "timestamp": old}))
            .collect();
        let reply = server.publish(&json!(batch)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let recent = server
        .publish_ok(&json!({"type": "order.created", "payload": {"i": total}}))
        .await;
    let mut expected: Vec<String> = server
        .all_events()
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(expected.len(), total + 1);
    expected.sort();
    server.terminate();
    assert!(server.wait_exit().await.success());

    let mut run_env = env.clone();
    run_env.push(("EVENT_RETENTION_DAYS".into(), "1".into()));
    let everything = async |server: &TestServer| {
        let mut ids: Vec<String> = server
            .collect("/v1/events", &[("includeArchived", "true")], 1000)
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    for delay_ms in [40u64, 300, 500, 700, 900] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus"))
            .args(["archive", "run"])
            .current_dir(data.path())
            .envs(run_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("running eventbus archive run");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _ = child.kill();
        let _ = child.wait();
        server.restart().await;
        assert_eq!(
            everything(&server).await,
            expected,
            "after a kill at {delay_ms} ms"
        );
        server.terminate();
        assert!(server.wait_exit().await.success());
    }
    let out = archive_cli(data.path(), &run_env, &["run"]);
    assert!(stdout(&out).contains("archived"), "{}", stdout(&out));
    server.restart().await;
    assert_eq!(
        everything(&server).await,
        expected,
        "after the finished run"
    );
    let hot: Vec<String> = server
        .all_events()
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        hot,
        vec![recent["id"].as_str().unwrap().to_owned()],
        "only the recent event is hot"
    );
    // Every file on disk is a listed segment: the interrupted runs' orphans were removed.
    server.terminate();
    assert!(server.wait_exit().await.success());
    let listed = stdout(&archive_cli(data.path(), &env, &["list"]));
    let files: Vec<String> = std::fs::read_dir(&archive_dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.len(),
        3,
        "three segments of 10,000, 10,000 and 5,000: {files:?}"
    );
    for file in &files {
        assert!(
            listed.contains(file.as_str()),
            "{file} is not a listed segment:\n{listed}"
        );
    }
}
