//! Starting a fresh `eventbus` server for one run: `PORT=0` on the loopback interface, its
//! SQLite database in a new temporary directory, so every run starts from an empty store.
//! The server prints `eventbus listening on http://ADDR` on stdout; that line gives the URL.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

const LISTENING: &str = "eventbus listening on ";

/// The admin key of the servers this tool spawns.
pub const ADMIN_KEY: &str = "eventbus-bench-admin-key";

/// The key the tool sends: `EVENTBUS_API_KEY` (for a server started elsewhere, `--url`), else
/// [`ADMIN_KEY`].
pub fn api_key() -> String {
    std::env::var("EVENTBUS_API_KEY").unwrap_or_else(|_| ADMIN_KEY.to_owned())
}

/// A client builder sending [`api_key`] on every request.
pub fn client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", api_key())
            .parse()
            .expect("a key is a valid header value"),
    );
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
}

/// The text of `GET {url}/metrics` (within 5 s).
pub async fn metrics_text(client: &reqwest::Client, url: &str) -> Result<String> {
    Ok(client
        .get(format!("{url}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .context("reading /metrics")?
        .error_for_status()?
        .text()
        .await?)
}

/// Series → value of a Prometheus text exposition (comments skipped).
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A server process this run started; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct SpawnedServer {
    child: Child,
    url: String,
    dir: TempDir,
}

impl SpawnedServer {
    /// Starts `binary` with its database in a new directory under `data_dir` (unless `env` names
    /// another `EVENT_STORE_URL`), with extra environment variables.
    pub fn start_with(
        binary: &Path,
        data_dir: &Path,
        synchronous: &str,
        env: &[(&str, String)],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("eventbus-bench-server-")
            .tempdir_in(data_dir)
            .with_context(|| format!("creating a data directory in {}", data_dir.display()))?;
        let db = dir.path().join("eventbus.db");
        let mut child = Command::new(binary)
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("EVENT_STORE_URL", format!("sqlite://{}", db.display()))
            .env("SQLITE_SYNCHRONOUS", synchronous)
            .env("EVENT_BUS_ADMIN_KEY", ADMIN_KEY)
            // One key opens every stream of a run.
            .env("KEY_MAX_CONNECTIONS", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // A thread reads stdout for the whole life of the server (so its pipe never fills),
        // hands over the listening line and echoes everything else to stderr.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                match line.strip_prefix(LISTENING) {
                    Some(url) => {
                        let _ = tx.send(url.trim().to_owned());
                    }
                    None => eprintln!("server: {line}"),
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                bail!(
                    "{} did not print its listening address (exit: {status:?})",
                    binary.display()
                );
            }
        };
        Ok(SpawnedServer { child, url, dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id (for CPU accounting).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the server ended, if it has (without waiting).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The directory holding the server's database.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server gracefully (SIGTERM), killing it after 10 s.
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // std has no way to send SIGTERM; `kill(1)` is on every Unix.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("the server did not stop within 10 s of SIGTERM and was killed")
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}
