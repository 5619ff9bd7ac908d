//! The listener: commits of other processes, heard through `LISTEN`, advance this process's
//! commit log so that its tailing readers wake and read them from the store.
//!
//! Each committer notifies its new head on the schema's channel in the transaction that commits
//! the rows, so the notification arrives only once they are visible. This store's own
//! notifications matter only for a commit whose answer was lost on the way back: they wake
//! readers for it. While this process's committer waits for a group's answer, a notification
//! sent by its session ([`OwnCommits`]) is left to the committer, which applies it when the
//! group ends: the group's rows reach the commit log with its answer, and a head raised before
//! that would send every tailing reader to the store for rows about to arrive in memory (at
//! c=64 more than half of the published events were read back that way).
//!
//! Robustness: after every (re)connection the listener first `LISTEN`s, then reads `max(seq)`
//! and advances the head to it, so a commit made while it was disconnected is never missed. Any
//! error ends the session; the next one starts after a backoff (100 ms doubling to 5 s), until
//! the store closes.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::core::log::CommitLog;

/// The notifications of this process's committer, while it waits for a group's answer.
#[derive(Debug, Default)]
pub(super) struct OwnCommits {
    /// The server process of the committer's session (0: none or unknown).
    pid: AtomicU32,
    /// Whether a group is in flight, and the highest head its session announced meanwhile.
    waiting: Mutex<(bool, u64)>,
}

impl OwnCommits {
    /// The committer's session is now the server process `pid` (0: none).
    pub fn set_session(&self, pid: u32) {
        self.pid.store(pid, Ordering::Release);
    }

    /// The committer sent a group and waits for its answer.
    pub fn begin(&self) {
        *self.waiting.lock().expect("own commits lock") = (true, 0);
    }

    /// The group ended, answered or failed: a head its session announced meanwhile is applied
    /// now (after the rows were pushed, or, when the answer was lost, as the only news of them;
    /// readers then learn of that commit when the group fails, within the store's timeout).
    pub fn end(&self, log: &CommitLog) {
        let (_, announced) = std::mem::take(&mut *self.waiting.lock().expect("own commits lock"));
        if announced > 0 {
            log.advance(announced);
        }
    }

    /// Keeps `head`, announced by server process `pid`, for the committer when it is this
    /// process's committer waiting for its group; `false`: the caller applies it.
    fn defer(&self, pid: u32, head: u64) -> bool {
        if pid == 0 || pid != self.pid.load(Ordering::Acquire) {
            return false;
        }
        let mut waiting = self.waiting.lock().expect("own commits lock");
        if !waiting.0 {
            return false;
        }
        waiting.1 = waiting.1.max(head);
        true
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(
    pool: PgPool,
    channel: String,
    log: Arc<CommitLog>,
    own: Arc<OwnCommits>,
    up: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut listening = false;
        let session = session(&pool, &channel, &log, &own, &mut listening, &up);
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
    own: &OwnCommits,
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
                Ok(head) => {
                    if !own.defer(n.process_id(), head) {
                        log.advance(head);
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committers_own_announcement_waits_for_its_group() {
        let (log, own) = (CommitLog::new(0, 16), OwnCommits::default());
        own.set_session(42);
        own.begin();
        assert!(own.defer(42, 5), "its session, its group in flight");
        assert_eq!(log.head(), 0, "the rows are not in memory yet");
        own.end(&log);
        assert_eq!(
            log.head(),
            5,
            "applied when the group ends (here: its answer lost)"
        );
        own.begin();
        own.end(&log);
        assert_eq!(log.head(), 5, "nothing announced, nothing applied");
    }

    #[test]
    fn other_announcements_are_applied_by_the_listener() {
        let own = OwnCommits::default();
        own.set_session(42);
        own.begin();
        assert!(
            !own.defer(7, 5),
            "another session: another process's commit"
        );
        own.end(&CommitLog::new(0, 16));
        assert!(
            !own.defer(42, 6),
            "no group in flight: nothing will apply it later"
        );
        own.set_session(0);
        own.begin();
        assert!(
            !own.defer(42, 7),
            "the session was dropped: its pid is not ours any more"
        );
        assert!(!own.defer(0, 7), "an unknown sender is never ours");
    }
}
