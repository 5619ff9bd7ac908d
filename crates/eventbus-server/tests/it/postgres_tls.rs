//! TLS to PostgreSQL, against the machine's server (TLS on, with Debian's snakeoil certificate
//! for `localhost`): each `sslmode` with libpq's meaning, what the bus reports of the connection,
//! and the warning for plain text to a host that is not known to be local.

use std::process::Command;

use crate::cluster::{create_schema, database_url};
use crate::common::TestServer;

/// Debian's self-signed certificate of the local PostgreSQL, for `localhost`.
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The test database URL with `host` and extra query parameters, on `schema`, with an
/// `application_name` of its own so that its sessions can be found in `pg_stat_activity`.
fn url(host: &str, schema: &str, app: &str, extra: &str) -> String {
    let base = database_url();
    let (scheme_user, rest) = base.split_once('@').expect("user@host in the test URL");
    let (_, path) = rest.split_once('/').expect("a database in the test URL");
    let port = rest
        .split_once('/')
        .and_then(|(hp, _)| hp.rsplit_once(':'))
        .map_or("5432", |(_, p)| p);
    format!(
        "{scheme_user}@{host}:{port}/{path}?options=-c%20search_path%3D{schema}&application_name={app}&{extra}"
    )
}

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .arg(database_url())
        .args(["-qAtX", "-c", sql])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether the local server has TLS on with the snakeoil certificate; else the test is skipped.
fn server_has_tls() -> bool {
    if psql("SHOW ssl") == "on" && std::path::Path::new(SNAKEOIL).exists() {
        return true;
    }
    eventbus::testing::skip("the test PostgreSQL has no TLS with Debian's snakeoil certificate");
    false
}

#[tokio::test]
async fn sslmode_require_encrypts_every_connection_of_the_bus() {
    let Some(schema) = create_schema("tls_require") else {
        return;
    };
    if !server_has_tls() {
        return;
    }
    let app = format!("eb_tls_require_{}", std::process::id());
    let server = TestServer::start(&[
        (
            "EVENT_STORE_URL",
            &url("localhost", &schema, &app, "sslmode=require"),
        ),
        ("RUST_LOG", "info"),
    ])
    .await;
    // Every kind of session at work: the committer, the listener, the read pool.
    server
        .publish_ok(&serde_json::json!({"type": "project.created", "payload": {}}))
        .await;
    assert_eq!(server.count().await, 1);
    let sessions = psql(&format!(
        "SELECT count(*) || ' ' || bool_and(s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = '{app}'"
    ));
    let (count, all_tls) = sessions.split_once(' ').unwrap();
    assert!(count.parse::<u32>().unwrap() >= 3, "{sessions}");
    assert_eq!(
        all_tls, "true",
        "a session of the bus is not encrypted: {sessions}"
    );
    let ready = server.get("/health/ready", &[]).await;
    let link = &ready.body["details"]["store"]["connection"];
    assert_eq!(link["tls"], true, "{}", ready.body);
    assert!(
        link["tlsVersion"].as_str().unwrap().starts_with("TLSv1."),
        "{link}"
    );
    assert_eq!(link["certificate"], "none");
    assert!(
        server.log_text().contains("tls=true"),
        "{}",
        server.log_text()
    );
}

#[tokio::test]
async fn verify_full_checks_the_certificate_and_the_host_name() {
    let Some(schema) = create_schema("tls_verify") else {
        return;
    };
    if !server_has_tls() {
        return;
    }
    let app = format!("eb_tls_verify_{}", std::process::id());
    let verify = format!("sslmode=verify-full&sslrootcert={SNAKEOIL}");
    let server =
        TestServer::start(&[("EVENT_STORE_URL", &url("localhost", &schema, &app, &verify))]).await;
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(
        ready.body["details"]["store"]["connection"]["certificate"],
        "full"
    );
    drop(server);

    // The certificate names `localhost`, not `127.0.0.1`: refused, saying why.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .arg("migrate")
        .env_clear()
        .env("EVENT_STORE_URL", url("127.0.0.1", &schema, &app, &verify))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not valid for name") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(
        err.contains("verify-full"),
        "the error says what to check: {err}"
    );
    assert_eq!(
        err.matches("cannot open the event store").count(),
        1,
        "{err}"
    );
}

#[tokio::test]
async fn plain_text_is_reported_and_warned_about_off_loopback() {
    let Some(schema) = create_schema("tls_disable") else {
        return;
    };
    let app = format!("eb_tls_disable_{}", std::process::id());
    let server = TestServer::start(&[
        (
            "EVENT_STORE_URL",
            &url("127.0.0.1", &schema, &app, "sslmode=disable"),
        ),
        ("RUST_LOG", "info"),
    ])
    .await;
    let ready = server.get("/health/ready", &[]).await;
    assert_eq!(ready.body["details"]["store"]["connection"]["tls"], false);
    // Plain text on loopback: said, not warned about.
    assert!(
        server.log_text().contains("tls=false"),
        "{}",
        server.log_text()
    );
    assert!(!server.log_text().contains("PLAIN TEXT"));
    drop(server);

    // The machine's own name is a name the bus cannot know to be local without resolving it: a
    // plain-text connection to it is warned about (it resolves to loopback here, so nothing
    // leaves the machine).
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    let loopback = !host.is_empty()
        && std::net::ToSocketAddrs::to_socket_addrs(&(host, 5432))
            .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()));
    if !loopback {
        eventbus::testing::skip("the machine's name does not resolve to loopback only");
        return;
    }
    let server = TestServer::start(&[
        (
            "EVENT_STORE_URL",
            &url(host, &schema, &app, "sslmode=disable"),
        ),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let log = server.log_text();
    assert_eq!(log.matches("PLAIN TEXT").count(), 1, "{log}");
}
