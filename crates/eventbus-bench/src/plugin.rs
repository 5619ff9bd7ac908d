//! The plugin overhead load: the same HTTP publish run against three servers started in one
//! bench run — no plugin, one JavaScript plugin handling every event (`onEvent` as a durable
//! consumer, publishing nothing), and one JavaScript middleware plugin (`transform` in the
//! publish path). For the consumer it also measures how fast the plugin works through the
//! events: from the first publish until its cursor reaches the last one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::workload::EVENT_TYPE;

/// Which plugin a phase installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// None.
    Baseline,
    /// `onEvent` on every published event.
    Consumer,
    /// `transform` on every published event.
    Middleware,
}

impl Phase {
    /// The label of its row.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Baseline => "no plugin",
            Phase::Consumer => "1 JS plugin (onEvent)",
            Phase::Middleware => "1 JS plugin (transform)",
        }
    }
}

/// Writes the phase's plugin into `dir` (nothing for the baseline).
pub fn write_plugin(dir: &Path, phase: Phase) -> Result<()> {
    let (manifest, source) = match phase {
        Phase::Baseline => return Ok(()),
        Phase::Consumer => (
            format!(
                r#"{{"name":"bench","version":"1","subscribe":["{EVENT_TYPE}"],"limits":{{"timeoutMs":1000}}}}"#
            ),
            "export function onEvent(event, ctx) { if (event.payload === undefined) throw new Error('no payload'); }",
        ),
        Phase::Middleware => (
            format!(
                r#"{{"name":"bench","version":"1","subscribe":["{EVENT_TYPE}"],"middleware":true,"limits":{{"timeoutMs":1000}}}}"#
            ),
            "export function transform(event) { event.metadata = { ...(event.metadata ?? {}), seen: 'bench' }; return event; }",
        ),
    };
    let folder = dir.join("bench");
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join("plugin.json"), manifest)?;
    std::fs::write(folder.join("index.js"), source)?;
    Ok(())
}

/// Waits until the plugin `bench` has handled the event `head`; returns when it did.
pub async fn wait_caught_up(url: &str, head: u64, limit: Duration) -> Result<Instant> {
    let client = crate::server::client_builder().build()?;
    let until = Instant::now() + limit;
    loop {
        let body: Value = client
            .get(format!("{url}/v1/plugins/bench"))
            .send()
            .await
            .context("GET /v1/plugins/bench")?
            .json()
            .await?;
        if body["cursor"].as_u64().unwrap_or(0) >= head {
            return Ok(Instant::now());
        }
        if Instant::now() > until {
            bail!("the plugin did not catch up in {limit:?}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The newest `seq` in the store.
pub async fn head(url: &str) -> Result<u64> {
    let body: Value = reqwest::get(format!("{url}/health/ready"))
        .await?
        .json()
        .await?;
    Ok(body["details"]["store"]["head"].as_u64().unwrap_or(0))
}
