//! Archiving through the binary: events published with old timestamps are archived by
//! `eventbus archive run` on the stopped server's data, and after a restart
//! `GET /v1/events?includeArchived=true` answers across archived and hot events with the same
//! filters and paging; `eventbus archive restore --all` puts them back.

use std::path::Path;
use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use std::time::Duration;

use crate::common::sse::{Message, SseClient};
use crate::common::{TestServer, ids, seq};

const OLD: usize = 30;
const RECENT: usize = 5;

/// Runs `eventbus archive <args>` over the data in `dir`.
fn archive_cli(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventbus"));
    cmd.arg("archive")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running eventbus archive");
    assert!(
        out.status.success(),
        "eventbus archive {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_events_are_queried_with_include_archived_after_a_restart_and_restored() {
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "EVENT_STORE_URL",
            format!("sqlite://{}", data.path().join("eventbus.db").display()),
        ),
        (
            "EVENT_ARCHIVE_URL",
            format!("file://{}", data.path().join("archive").display()),
        ),
    ];
    let server_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
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
    run_env.push(("EVENT_RETENTION_DAYS", "1".into()));
    let out = archive_cli(data.path(), &run_env, &["run"]);
    assert!(
        stdout(&out).contains(&format!("archived {OLD} events")),
        "{}",
        stdout(&out)
    );
    let listed = stdout(&archive_cli(data.path(), &env, &["list"]));
    assert!(listed.contains(".jsonl.zst"), "{listed}");
    let files: Vec<_> = std::fs::read_dir(data.path().join("archive"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "one segment file");

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
    assert_eq!(
        std::fs::read_dir(data.path().join("archive"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_archives_at_start_when_a_retention_is_set_and_stops_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", data.path().join("eventbus.db").display());
    let target = format!("file://{}", data.path().join("archive").display());
    let mut server =
        TestServer::start(&[("EVENT_STORE_URL", &store), ("EVENT_ARCHIVE_URL", &target)]).await;
    let old = (time::OffsetDateTime::now_utc() - time::Duration::days(3))
        .format(&Rfc3339)
        .unwrap();
    let batch: Vec<Value> = (0..12)
        .map(|i| match i {
            0..10 => json!({"type": "order.created", "timestamp": old, "payload": {"i": i}}),
            _ => json!({"type": "order.created", "payload": {"i": i}}),
        })
        .collect();
    assert_eq!(
        server.publish(&json!(batch)).await.status,
        StatusCode::CREATED
    );
    let before = server.all_events().await;
    server.terminate();
    assert!(server.wait_exit().await.success());

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
    server.terminate();
    assert!(server.wait_exit().await.success(), "{}", server.log_text());
}
