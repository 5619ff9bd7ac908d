//! What the connection to PostgreSQL is: where it goes, whether it is encrypted, and whether the
//! server's certificate was checked; reported once at start and in readiness, never with secrets.
//!
//! `sslmode` has libpq's meaning (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`),
//! with `sslrootcert` for a private CA and `sslcert`/`sslkey` for a client certificate; as in
//! libpq, `require` with an `sslrootcert` in the URL verifies the certificate's chain
//! (`verify-ca`). One difference: `allow` never tries TLS (the driver treats it as `disable`). TLS is rustls with the ring provider; without `sslrootcert` the system's roots
//! (`SSL_CERT_FILE`, else the OS store) are trusted.

use std::str::FromStr;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};

/// One database connection as the bus made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkInfo {
    /// Host name (or socket folder) and port.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// Whether the session is encrypted.
    pub tls: bool,
    /// The TLS version, when encrypted.
    pub tls_version: Option<String>,
    /// What was checked of the server's certificate: `none`, `ca` (the chain), `full` (the
    /// chain and the host name).
    pub certificate: &'static str,
}

impl LinkInfo {
    /// Whether `host` is this machine (loopback or a Unix socket).
    pub fn is_local(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Logs the connection once; warns when it crosses a network in plain text.
    pub(crate) fn log(&self, what: &str) {
        if !self.tls && !self.is_local() {
            tracing::warn!(
                host = %self.host, port = self.port, database = %self.database,
                "{what}: connected to PostgreSQL in PLAIN TEXT over the network: credentials and \
                 events are not encrypted (set sslmode=verify-full, with sslrootcert for a \
                 private CA)"
            );
        } else {
            tracing::info!(
                host = %self.host, port = self.port, database = %self.database, tls = self.tls,
                tls_version = self.tls_version.as_deref().unwrap_or("-"),
                certificate = self.certificate,
                "{what}: connected to PostgreSQL"
            );
        }
    }
}

/// Parses a `postgres://` URL with libpq's `sslmode` meaning (see the module documentation).
pub fn parse_url(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    let has_root_cert = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("sslrootcert=")));
    Ok(
        if has_root_cert && matches!(options.get_ssl_mode(), PgSslMode::Require) {
            options.ssl_mode(PgSslMode::VerifyCa)
        } else {
            options
        },
    )
}

/// Reads what `conn` (made with `connect`) is, from the server's own `pg_stat_ssl`. A server
/// without that view (a PostgreSQL-compatible one) is reported as not encrypted, with a warning.
pub(crate) async fn inspect(conn: &mut PgConnection, connect: &PgConnectOptions) -> LinkInfo {
    let (tls, version): (bool, Option<String>) = match sqlx::query_as(
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .fetch_one(conn)
    .await
    {
        Ok(row) => row,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read pg_stat_ssl: the connection's TLS state is unknown");
            (false, None)
        }
    };
    let declared = declared(connect);
    LinkInfo {
        tls,
        tls_version: version.filter(|_| tls),
        certificate: if tls { declared.certificate } else { "none" },
        ..declared
    }
}

/// What a connection made with `connect` is, as far as its options say: for connections through
/// a pooler, whose `pg_stat_ssl` would describe the pooler's own link to the server. TLS counts as
/// on only where the options require it.
pub(crate) fn declared(connect: &PgConnectOptions) -> LinkInfo {
    let mode = connect.get_ssl_mode();
    let tls = matches!(
        mode,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    LinkInfo {
        host: connect.get_host().to_owned(),
        port: connect.get_port(),
        database: connect.get_database().unwrap_or_default().to_owned(),
        tls,
        tls_version: None,
        certificate: match mode {
            PgSslMode::VerifyFull => "full",
            PgSslMode::VerifyCa => "ca",
            _ => "none",
        },
    }
}

/// A connection error, with a hint when TLS refused the server's certificate or the server
/// asked for a client certificate. The server's own refusals are quoted without the driver's
/// decoration (its source line).
pub(crate) fn explain(e: &sqlx::Error) -> String {
    if let sqlx::Error::Database(db) = e {
        let message = db.message();
        return if message.to_ascii_lowercase().contains("client certificate") {
            format!(
                "the server refused the connection: {message} (it authenticates clients by \
                 certificate: set sslcert and sslkey in the URL to the client's certificate and \
                 key)"
            )
        } else {
            format!("the server refused the connection: {message}")
        };
    }
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("notvalidforname") {
        format!(
            "{text} (TLS refused the server's certificate: with sslmode=verify-full the host name \
             in the URL must be one the certificate names, and sslrootcert must hold the CA that \
             signed it)"
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain() {
        let with =
            parse_url("postgres://u@db.example/x?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert!(matches!(with.get_ssl_mode(), PgSslMode::VerifyCa));
        let without = parse_url("postgres://u@db.example/x?sslmode=require").unwrap();
        assert!(matches!(without.get_ssl_mode(), PgSslMode::Require));
        let full =
            parse_url("postgres://u@db.example/x?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert!(matches!(full.get_ssl_mode(), PgSslMode::VerifyFull));
    }

    #[test]
    fn local_hosts_are_loopback_names_and_sockets() {
        let link = |host: &str| LinkInfo {
            host: host.into(),
            port: 5432,
            database: "x".into(),
            tls: false,
            tls_version: None,
            certificate: "none",
        };
        for local in [
            "localhost",
            "127.0.0.1",
            "::1",
            "[::1]",
            "/var/run/postgresql",
        ] {
            assert!(link(local).is_local(), "{local}");
        }
        for remote in ["db.example.com", "10.0.0.5", "192.168.1.2"] {
            assert!(!link(remote).is_local(), "{remote}");
        }
    }
}
