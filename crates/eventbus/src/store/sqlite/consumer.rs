//! Consumer cursors and leases in SQLite: one row per consumer name; saves never move a cursor
//! back.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::OptionalExtension;

use super::SqliteStore;
use crate::core::time::Timestamp;
use crate::store::{ConsumerStore, StoreError};

#[async_trait]
impl ConsumerStore for SqliteStore {
    async fn load_cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let name = name.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT seq FROM consumer_cursors WHERE name = ?1")?
                .query_row([&name], |r| r.get::<_, i64>(0))
                .optional()
                .map(|s| s.map(|s| s as u64))
        })
        .await
    }

    async fn save_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO consumer_cursors (name, seq, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET seq = max(seq, excluded.seq), \
                 updated_at = excluded.updated_at",
            )?
            .execute(rusqlite::params![
                name,
                seq as i64,
                Timestamp::now().as_micros()
            ])?;
            Ok(())
        })
        .await
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            let now = Timestamp::now().as_micros();
            let changed = c
                .prepare_cached(
                    "INSERT INTO consumer_leases (name, holder, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE consumer_leases.holder = excluded.holder \
                     OR consumer_leases.expires_at < ?4",
                )?
                .execute(rusqlite::params![
                    name,
                    holder,
                    now + ttl.as_micros() as i64,
                    now
                ])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            c.prepare_cached("DELETE FROM consumer_leases WHERE name = ?1 AND holder = ?2")?
                .execute([name, holder])?;
            Ok(())
        })
        .await
    }
}
