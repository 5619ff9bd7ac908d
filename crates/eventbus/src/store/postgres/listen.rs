//! The listener: commits of other processes, heard through `LISTEN`, advance this process's
//! commit log so that its tailing readers wake and read them from the store.
//!
//! Each committer notifies its new head on the schema's channel in the transaction that commits
//! the rows, so the notification arrives only once they are visible. This store's own
//! notifications are applied too: usually a no-op (its committer pushed the commit already), and
//! they wake readers for a commit whose `COMMIT` answer was lost on the way back.
//!
//! Robustness: after every (re)connection the listener first `LISTEN`s, then reads `max(seq)`
//! and advances the head to it, so a commit made while it was disconnected is never missed. Any
//! error ends the session; the next one starts after a backoff (100 ms doubling to 5 s), until
//! the store closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::core::log::CommitLog;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(
    pool: PgPool,
    channel: String,
    log: Arc<CommitLog>,
    up: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut listening = false;
        let session = session(&pool, &channel, &log, &mut listening, &up);
        let error = tokio::select! {
            _ = cancel.cancelled() => break,
            e = session => e,
        };
        up.store(false, Ordering::Release);
        if listening {
            backoff = FIRST_BACKOFF;
        }
        tracing::warn!(error = %error, retry_in = ?backoff, "event store listener disconnected");
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    pool.close().await;
}

/// One connection's worth of listening; returns why it ended.
async fn session(
    pool: &PgPool,
    channel: &str,
    log: &CommitLog,
    listening: &mut bool,
    up: &AtomicBool,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(channel).await {
        return e;
    }
    match sqlx::query_scalar::<_, i64>("SELECT coalesce(max(seq), 0) FROM events")
        .fetch_one(&mut listener)
        .await
    {
        Ok(head) => log.advance(head as u64),
        Err(e) => return e,
    }
    *listening = true;
    up.store(true, Ordering::Release);
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match n.payload().parse::<u64>() {
                Ok(head) => log.advance(head),
                Err(_) => tracing::warn!(
                    payload = n.payload(),
                    "ignored a malformed commit notification"
                ),
            },
            Ok(None) => return sqlx::Error::Protocol("the listening connection was lost".into()),
            Err(e) => return e,
        }
    }
}
