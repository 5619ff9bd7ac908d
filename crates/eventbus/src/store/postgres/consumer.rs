//! Consumer cursors and leases in PostgreSQL: one row per consumer name; saves never move a
//! cursor back; lease times come from the database's clock, shared by every process.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::core::time::Timestamp;
use crate::store::{ConsumerStore, StoreError};

#[async_trait]
impl ConsumerStore for PgStore {
    async fn load_cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.read(|pool| async move {
            let row = sqlx::query("SELECT seq FROM consumer_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(&pool)
                .await?;
            row.map(|r| r.try_get::<i64, _>(0).map(|s| s as u64))
                .transpose()
        })
        .await
    }

    async fn save_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        self.write(async {
            sqlx::query(
                "INSERT INTO consumer_cursors (name, seq, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET seq = GREATEST(consumer_cursors.seq, excluded.seq), \
                 updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(seq as i64)
            .bind(Timestamp::now().as_micros())
            .execute(self.pool())
            .await
            .map(|_| ())
        })
        .await
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.write(async {
            sqlx::query(
                "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint AS now) \
                 INSERT INTO consumer_leases (name, holder, expires_at) \
                 SELECT $1, $2, clock.now + $3 FROM clock \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
                 WHERE consumer_leases.holder = excluded.holder \
                 OR consumer_leases.expires_at < excluded.expires_at - $3 \
                 RETURNING holder",
            )
            .bind(name)
            .bind(holder)
            .bind(ttl.as_micros() as i64)
            .fetch_optional(self.pool())
            .await
            .map(|row| row.is_some())
        })
        .await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.write(async {
            sqlx::query("DELETE FROM consumer_leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(self.pool())
                .await
                .map(|_| ())
        })
        .await
    }
}
