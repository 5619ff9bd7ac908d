//! The maintenance commands as an operator runs them: `eventbus keys` beside a running server,
//! `eventbus migrate` saying what it applied.

use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_KEY, TestServer, client_with_key, printed_key};

/// Runs `eventbus args…` over the SQLite store in `dir`, with only `env` set besides.
fn eventbus(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"));
    cmd.args(args)
        .env_clear()
        .env(
            "EVENT_STORE_URL",
            format!("sqlite://{}", dir.join("eventbus.db").display()),
        )
        .env("RUST_LOG", "warn")
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running eventbus")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

// `eventbus keys create`, offered by the README, failed while the server ran on SQLite (the
// server holds the database) and printed its cause twice.
#[tokio::test]
async fn keys_command_works_beside_a_running_sqlite_server() {
    let server = TestServer::start(&[]).await;
    let dir = server.data_dir().to_owned();
    let port = server.url("").rsplit(':').next().unwrap().to_owned();

    // Without the admin key it cannot go through the server: it says what to set, once.
    let refused = eventbus(&dir, &["keys", "list"], &[("PORT", &port)]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(
        err.matches("in use by another eventbus process").count(),
        1,
        "{err}"
    );
    assert!(err.contains("EVENT_BUS_ADMIN_KEY"), "{err}");

    let env = [("PORT", port.as_str()), ("EVENT_BUS_ADMIN_KEY", ADMIN_KEY)];
    let made = stdout(&eventbus(
        &dir,
        &[
            "keys",
            "create",
            "--name",
            "reporting",
            "--permissions",
            "read",
            "--tenant",
            "t_1",
        ],
        &env,
    ));
    let (id, key) = printed_key(&made);
    let listed = stdout(&eventbus(&dir, &["keys", "list"], &env));
    let row = listed
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("the key is listed");
    assert!(
        row.contains("reporting") && row.contains("t_1") && row.ends_with("active"),
        "{row}"
    );

    // The key works at once, with the grants asked for.
    let client = client_with_key(&key).build().unwrap();
    let read = client.get(server.url("/v1/events")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let publish = client
        .post(server.url("/v1/events"))
        .json(&json!({"type": "project.created"}))
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), StatusCode::FORBIDDEN);

    assert!(stdout(&eventbus(&dir, &["keys", "revoke", &id], &env)).contains("revoked"));
    let read = client.get(server.url("/v1/events")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::UNAUTHORIZED);
    let revoked = stdout(&eventbus(&dir, &["keys", "list"], &env));
    assert!(
        revoked
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("revoked")),
        "{revoked}"
    );
}

#[tokio::test]
async fn migrate_says_which_migrations_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let first = stdout(&eventbus(dir.path(), &["migrate"], &[]));
    assert!(
        first.contains("applied 0001_events,") && first.contains("(schema version 0 → "),
        "{first}"
    );
    let again = stdout(&eventbus(dir.path(), &["migrate"], &[]));
    assert!(again.contains("up to date, nothing to apply"), "{again}");
}

// Text logs kept their ANSI colour codes when written to a file or a pipe.
#[tokio::test]
async fn text_logs_have_no_colour_codes_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = eventbus(dir.path(), &["migrate"], &[("RUST_LOG", "info")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("applied schema migration"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in piped logs: {text:?}"
    );
}

// Each subcommand's help listed the ~60 server settings before its own options.
#[test]
fn subcommand_help_shows_its_own_options_first() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(["keys", "create", "--help"])
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let own = help.find("--name").expect("its own option");
    let settings = help.find("--event-store-url").expect("the settings");
    assert!(own < settings, "{help}");
}
