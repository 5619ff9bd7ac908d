//! `eventbus health`: `GET /health/live` of the local server; exit 0 when it answers 200. For
//! container health checks, so it speaks plain HTTP/1.1 over TCP with no other dependency.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// Runs the check and prints `ok`.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let addr = super::local_api::address(config);
    let check = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(
            format!("GET /health/live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(3), check)
        .await
        .with_context(|| format!("no answer from {addr} within 3 s"))?
        .with_context(|| format!("asking {addr}"))?;
    anyhow::ensure!(
        &head == b"HTTP/1.1 200",
        "{addr} answered {}",
        String::from_utf8_lossy(&head)
    );
    println!("ok");
    Ok(())
}
