//! Consumer cursors in PostgreSQL: one row per consumer name; saves never move a cursor back.

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
}
