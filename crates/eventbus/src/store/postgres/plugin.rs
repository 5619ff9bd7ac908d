//! The plugin tables in PostgreSQL (see [`crate::store::plugin`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::plugin::{DeadLetter, PluginState, PluginStore, consumer_name};

fn state_row(r: &PgRow) -> Result<PluginState, sqlx::Error> {
    Ok(PluginState {
        name: r.try_get(0)?,
        kind: r.try_get(1)?,
        version: r.try_get(2)?,
        hash: r.try_get(3)?,
        suspended: r.try_get(4)?,
        updated_at: Timestamp::from_micros(r.try_get(5)?),
    })
}

fn letter_row(r: &PgRow) -> Result<DeadLetter, sqlx::Error> {
    Ok(DeadLetter {
        id: r.try_get::<i64, _>(0)? as u64,
        plugin: r.try_get(1)?,
        event_id: r.try_get(2)?,
        event_seq: r.try_get::<i64, _>(3)? as u64,
        event_type: r.try_get(4)?,
        error: r.try_get(5)?,
        attempts: r.try_get::<i32, _>(6)? as u32,
        created_at: Timestamp::from_micros(r.try_get(7)?),
    })
}

#[async_trait]
impl PluginStore for PgStore {
    async fn plugin_states(&self) -> Result<Vec<PluginState>, StoreError> {
        self.read(|pool| async move {
            sqlx::query(
                "SELECT name, kind, version, hash, suspended, updated_at FROM plugin_states \
                 ORDER BY name",
            )
            .fetch_all(&pool)
            .await?
            .iter()
            .map(state_row)
            .collect()
        })
        .await
    }

    async fn save_plugin_state(&self, s: PluginState) -> Result<(), StoreError> {
        self.write(async {
            sqlx::query(
                "INSERT INTO plugin_states (name, kind, version, hash, suspended, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
                 kind = excluded.kind, version = excluded.version, hash = excluded.hash, \
                 suspended = excluded.suspended, updated_at = excluded.updated_at",
            )
            .bind(&s.name)
            .bind(&s.kind)
            .bind(&s.version)
            .bind(&s.hash)
            .bind(s.suspended)
            .bind(s.updated_at.as_micros())
            .execute(self.pool())
            .await
            .map(|_| ())
        })
        .await
    }

    async fn forget_plugin(&self, plugin: &str) -> Result<(), StoreError> {
        self.write(async {
            let mut tx = self.pool().begin().await?;
            for sql in [
                "DELETE FROM plugin_states WHERE name = $1",
                "DELETE FROM plugin_kv WHERE plugin = $1",
                "DELETE FROM plugin_dead_letters WHERE plugin = $1",
            ] {
                sqlx::query(sql).bind(plugin).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM consumer_cursors WHERE name = $1")
                .bind(consumer_name(plugin))
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        })
        .await
    }

    async fn load_kv(&self, plugin: &str) -> Result<BTreeMap<String, String>, StoreError> {
        self.read(|pool| async move {
            sqlx::query("SELECT key, value FROM plugin_kv WHERE plugin = $1")
                .bind(plugin)
                .fetch_all(&pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
        .await
    }

    async fn write_kv(
        &self,
        plugin: &str,
        writes: Vec<(String, Option<String>)>,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.write(async {
            let now = Timestamp::now().as_micros();
            let mut tx = self.pool().begin().await?;
            for (key, value) in &writes {
                match value {
                    Some(v) => {
                        sqlx::query(
                            "INSERT INTO plugin_kv (plugin, key, value, updated_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (plugin, key) DO UPDATE SET \
                             value = excluded.value, updated_at = excluded.updated_at",
                        )
                        .bind(plugin)
                        .bind(key)
                        .bind(v)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                    }
                    None => {
                        sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2")
                            .bind(plugin)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?
                    }
                };
            }
            tx.commit().await
        })
        .await
    }

    async fn add_dead_letter(&self, d: DeadLetter) -> Result<u64, StoreError> {
        self.write(async {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO plugin_dead_letters \
                 (plugin, event_id, event_seq, event_type, error, attempts, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(&d.plugin)
            .bind(&d.event_id)
            .bind(d.event_seq as i64)
            .bind(&d.event_type)
            .bind(&d.error)
            .bind(d.attempts as i32)
            .bind(Timestamp::now().as_micros())
            .fetch_one(self.pool())
            .await?;
            Ok(id as u64)
        })
        .await
    }

    async fn dead_letters(
        &self,
        plugin: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(|pool| async move {
            sqlx::query(
                "SELECT id, plugin, event_id, event_seq, event_type, error, attempts, created_at \
                 FROM plugin_dead_letters WHERE plugin = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(plugin)
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&pool)
            .await?
            .iter()
            .map(letter_row)
            .collect()
        })
        .await
    }

    async fn delete_dead_letter(&self, plugin: &str, id: u64) -> Result<bool, StoreError> {
        self.write(async {
            sqlx::query("DELETE FROM plugin_dead_letters WHERE plugin = $1 AND id = $2")
                .bind(plugin)
                .bind(id as i64)
                .execute(self.pool())
                .await
                .map(|r| r.rows_affected() > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::EventStore;
    use crate::store::plugin::contract;

    #[tokio::test]
    async fn plugin_tables_round_trip_and_forget() {
        let Some((_schema, s)) = crate::store::postgres::testing::store().await else {
            return;
        };
        contract::plugin_tables_round_trip_and_forget(&s).await;
        s.close().await;
    }
}
