//! TLS to PostgreSQL, against the machine's server (TLS on, with Debian's snakeoil certificate
//! for `localhost`): each `sslmode` with libpq's meaning, what the bus reports of the connection,
//! and the warning for plain text to a host that is not known to be local.

use std::process::Command;

use crate::cluster::{create_schema, database_url};
use crate::common::TestServer;
use crate::common::own_pg::OwnPostgres;

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

// ---- Client certificates and a private CA, against a PostgreSQL of the test's own ----

/// What `eventbus` (serving) printed when it exited by itself within `limit`: its exit status,
/// stdout and stderr, and how long it ran. Fails the test if it is still running by then.
async fn run_until_exit(
    url: &str,
    limit: std::time::Duration,
) -> (
    std::process::ExitStatus,
    String,
    String,
    std::time::Duration,
) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .env_clear()
        .env("EVENT_STORE_URL", url)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("RUST_LOG", "info")
        .env("EVENT_BUS_ADMIN_KEY", crate::common::ADMIN_KEY)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawning the eventbus binary");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, read(&out), read(&err), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the bus still ran after {limit:?}; stdout:\n{}\nstderr:\n{}",
                read(&out),
                read(&err)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// How long the bus may take to give up on a server that refuses it.
const REFUSAL_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

#[tokio::test]
async fn a_client_certificate_of_a_private_ca_admits_the_bus() {
    let Some(pg) = OwnPostgres::start_tls() else {
        return;
    };
    let app = "eb_tls_client_cert";
    let url = pg.url(
        app,
        &format!("{}{}", pg.root_cert_param(), pg.client_cert_params()),
    );
    let server = TestServer::start(&[("EVENT_STORE_URL", &url), ("RUST_LOG", "info")]).await;
    let stored = server
        .publish_ok(&serde_json::json!({"type": "project.created", "payload": {"n": 1}}))
        .await;
    let id = stored["id"].as_str().expect("the stored event has an id");
    let read = server.get_event(id).await;
    assert_eq!(read.status, reqwest::StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["payload"]["n"], 1, "{}", read.body);
    assert_eq!(server.count().await, 1);

    let ready = server.get("/health/ready", &[]).await;
    let link = &ready.body["details"]["store"]["connection"];
    assert_eq!(link["tls"], true, "{}", ready.body);
    assert_eq!(link["certificate"], "full", "{}", ready.body);

    // The server saw the client certificate on every session of the bus.
    let sessions = pg.psql(&format!(
        "SELECT count(*), bool_and(s.ssl), \
                bool_and(coalesce(s.client_dn, '') LIKE '%CN=postgres%'), \
                string_agg(DISTINCT coalesce(s.client_dn, '(none)'), ', ') \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = '{app}'"
    ));
    let fields: Vec<&str> = sessions.split('|').collect();
    assert_eq!(fields.len(), 4, "{sessions}");
    assert!(
        fields[0].parse::<u32>().unwrap() >= 3,
        "fewer sessions of the bus than expected: {sessions}"
    );
    assert_eq!(
        fields[1], "t",
        "a session of the bus is not encrypted: {sessions}"
    );
    assert_eq!(
        fields[2], "t",
        "a session of the bus has no client certificate for CN=postgres: {sessions}"
    );
    eprintln!("the bus's sessions (count|ssl|client certificate|client_dn): {sessions}");
}

#[tokio::test]
async fn without_a_client_certificate_the_bus_is_refused() {
    let Some(pg) = OwnPostgres::start_tls() else {
        return;
    };
    // The server is as meant: plain text has no way in either.
    let plain = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} sslmode=disable dbname=postgres user=postgres",
            pg.port
        ))
        .args(["-qAtX", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("no pg_hba.conf entry"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    let url = pg.url("eb_tls_no_client_cert", &pg.root_cert_param());
    let (status, out, err, took) = run_until_exit(&url, REFUSAL_LIMIT).await;
    assert!(
        !status.success(),
        "the bus started without a client certificate:\n{out}\n{err}"
    );
    assert!(!out.contains("eventbus listening on"), "{out}");
    assert!(
        err.contains("the server refused the connection") && err.contains("set sslcert and sslkey"),
        "the error does not say the server asked for a client certificate (after {took:?}):\n{err}\nstdout:\n{out}"
    );
    assert!(
        !err.contains("sslrootcert must hold") && !err.contains(" at line "),
        "the hint blames the server's certificate, or the driver's source line shows:\n{err}"
    );
    assert!(
        err.contains("cannot open the event store") || err.contains("cannot connect to PostgreSQL"),
        "{err}"
    );
    eprintln!("refused without a client certificate after {took:?}:\n{err}");
}

#[tokio::test]
async fn without_sslrootcert_the_private_ca_is_not_trusted() {
    let Some(pg) = OwnPostgres::start_tls() else {
        return;
    };
    let url = pg.url("eb_tls_no_root_cert", &pg.client_cert_params());
    let (status, out, err, took) = run_until_exit(&url, REFUSAL_LIMIT).await;
    assert!(
        !status.success(),
        "the bus trusted a private CA it was not given:\n{out}\n{err}"
    );
    assert!(!out.contains("eventbus listening on"), "{out}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "the error does not mention the certificate (after {took:?}):\n{err}\nstdout:\n{out}"
    );
    assert!(
        err.contains("sslrootcert"),
        "the error does not point at sslrootcert:\n{err}"
    );
    eprintln!("refused without sslrootcert after {took:?}:\n{err}");
}
