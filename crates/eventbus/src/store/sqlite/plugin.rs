//! The plugin tables in SQLite (see [`crate::store::plugin`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Row, params};

use super::SqliteStore;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::plugin::{DeadLetter, PluginState, PluginStore, consumer_name};

fn state_row(r: &Row<'_>) -> rusqlite::Result<PluginState> {
    Ok(PluginState {
        name: r.get(0)?,
        kind: r.get(1)?,
        version: r.get(2)?,
        hash: r.get(3)?,
        suspended: r.get(4)?,
        updated_at: Timestamp::from_micros(r.get(5)?),
    })
}

fn letter_row(r: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get::<_, i64>(0)? as u64,
        plugin: r.get(1)?,
        event_id: r.get(2)?,
        event_seq: r.get::<_, i64>(3)? as u64,
        event_type: r.get(4)?,
        error: r.get(5)?,
        attempts: r.get::<_, i64>(6)? as u32,
        created_at: Timestamp::from_micros(r.get(7)?),
    })
}

#[async_trait]
impl PluginStore for SqliteStore {
    async fn plugin_states(&self) -> Result<Vec<PluginState>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, kind, version, hash, suspended, updated_at FROM plugin_states \
                 ORDER BY name",
            )?
            .query_map([], state_row)?
            .collect()
        })
        .await
    }

    async fn save_plugin_state(&self, s: PluginState) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO plugin_states (name, kind, version, hash, suspended, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET \
                 kind = excluded.kind, version = excluded.version, hash = excluded.hash, \
                 suspended = excluded.suspended, updated_at = excluded.updated_at",
            )?
            .execute(params![
                s.name,
                s.kind,
                s.version,
                s.hash,
                s.suspended,
                s.updated_at.as_micros()
            ])?;
            Ok(())
        })
        .await
    }

    async fn forget_plugin(&self, plugin: &str) -> Result<(), StoreError> {
        let plugin = plugin.to_owned();
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM plugin_states WHERE name = ?1", [&plugin])?;
            tx.execute("DELETE FROM plugin_kv WHERE plugin = ?1", [&plugin])?;
            tx.execute(
                "DELETE FROM plugin_dead_letters WHERE plugin = ?1",
                [&plugin],
            )?;
            tx.execute(
                "DELETE FROM consumer_cursors WHERE name = ?1",
                [consumer_name(&plugin)],
            )?;
            tx.commit()
        })
        .await
    }

    async fn load_kv(&self, plugin: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let plugin = plugin.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT key, value FROM plugin_kv WHERE plugin = ?1")?
                .query_map([&plugin], |r| Ok((r.get(0)?, r.get(1)?)))?
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
        let plugin = plugin.to_owned();
        self.write(move |c| {
            let now = Timestamp::now().as_micros();
            let tx = c.transaction()?;
            for (key, value) in writes {
                match value {
                    Some(v) => tx
                        .prepare_cached(
                            "INSERT INTO plugin_kv (plugin, key, value, updated_at) \
                             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (plugin, key) DO UPDATE SET \
                             value = excluded.value, updated_at = excluded.updated_at",
                        )?
                        .execute(params![plugin, key, v, now])?,
                    None => tx
                        .prepare_cached("DELETE FROM plugin_kv WHERE plugin = ?1 AND key = ?2")?
                        .execute(params![plugin, key])?,
                };
            }
            tx.commit()
        })
        .await
    }

    async fn add_dead_letter(&self, d: DeadLetter) -> Result<u64, StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO plugin_dead_letters \
                 (plugin, event_id, event_seq, event_type, error, attempts, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                d.plugin,
                d.event_id,
                d.event_seq as i64,
                d.event_type,
                d.error,
                i64::from(d.attempts),
                Timestamp::now().as_micros()
            ])?;
            Ok(c.last_insert_rowid() as u64)
        })
        .await
    }

    async fn dead_letters(
        &self,
        plugin: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let plugin = plugin.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, plugin, event_id, event_seq, event_type, error, attempts, created_at \
                 FROM plugin_dead_letters WHERE plugin = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![plugin, after as i64, limit as i64], letter_row)?
            .collect()
        })
        .await
    }

    async fn delete_dead_letter(&self, plugin: &str, id: u64) -> Result<bool, StoreError> {
        let plugin = plugin.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM plugin_dead_letters WHERE plugin = ?1 AND id = ?2")?
                .execute(params![plugin, id as i64])
                .map(|n| n > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventStore;
    use crate::store::plugin::contract;
    use crate::store::sqlite::SqliteOptions;

    #[tokio::test]
    async fn plugin_tables_round_trip_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("p.db"), SqliteOptions::default()).unwrap();
        contract::plugin_tables_round_trip_and_forget(&s).await;
        s.close().await;
    }
}
