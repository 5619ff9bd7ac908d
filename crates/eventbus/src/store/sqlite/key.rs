//! API keys and signing secrets in SQLite (see [`crate::store::key`]).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row};

use super::SqliteStore;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::key::{ApiKey, KeyStore};

const KEY_COLUMNS: &str = "id, name, tenant_id, project_ids, grants, rate_limit, max_connections, \
                           created_at, created_by, expires_at, revoked_at, secret_hash";

/// A row of [`KEY_COLUMNS`] and the secret's hash.
fn row_to_key(r: &Row<'_>) -> rusqlite::Result<(ApiKey, String, Option<String>, Vec<u8>)> {
    let key = ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        tenant_id: r.get(2)?,
        project_ids: None,
        grants: Default::default(),
        rate_limit: r.get(5)?,
        max_connections: r.get(6)?,
        created_at: Timestamp::from_micros(r.get(7)?),
        created_by: r.get(8)?,
        expires_at: r.get::<_, Option<i64>>(9)?.map(Timestamp::from_micros),
        revoked_at: r.get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
    };
    Ok((key, r.get(4)?, r.get(3)?, r.get(11)?))
}

/// Finishes a key read by [`row_to_key`]: parses its JSON columns.
fn finish(
    (mut key, grants, projects, hash): (ApiKey, String, Option<String>, Vec<u8>),
) -> Result<(ApiKey, Vec<u8>), StoreError> {
    key.grants = ApiKey::parse_grants(&grants)?;
    key.project_ids = ApiKey::parse_projects(projects)?;
    Ok((key, hash))
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: &ApiKey, secret_hash: [u8; 32]) -> Result<(), StoreError> {
        let key = key.clone();
        let projects = key
            .project_ids
            .as_ref()
            .map(|p| serde_json::to_string(p).expect("strings serialise"));
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO api_keys (id, name, secret_hash, tenant_id, project_ids, grants, \
                 rate_limit, max_connections, created_at, created_by, expires_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(rusqlite::params![
                key.id,
                key.name,
                secret_hash.as_slice(),
                key.tenant_id,
                projects,
                key.grants_json(),
                key.rate_limit,
                key.max_connections,
                key.created_at.as_micros(),
                key.created_by,
                key.expires_at.map(Timestamp::as_micros),
                key.revoked_at.map(Timestamp::as_micros),
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_key(&self, id: &str) -> Result<Option<(ApiKey, Vec<u8>)>, StoreError> {
        let id = id.to_owned();
        let row = self
            .read(move |c| {
                c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
                    .query_row([&id], row_to_key)
                    .optional()
            })
            .await?;
        row.map(finish).transpose()
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let tenant = tenant.map(str::to_owned);
        let rows = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR tenant_id = ?1 \
                     ORDER BY created_at DESC, id DESC"
                ))?;
                stmt.query_map([&tenant], row_to_key)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter()
            .map(|r| finish(r).map(|(k, _)| k))
            .collect()
    }

    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                )?
                .execute(rusqlite::params![id, at.as_micros()])?;
            Ok(n > 0)
        })
        .await
    }

    async fn signing_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO signing_secrets (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO NOTHING",
            )?
            .execute(rusqlite::params![name, candidate])?;
            c.prepare_cached("SELECT value FROM signing_secrets WHERE name = ?1")?
                .query_row([&name], |r| r.get(0))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::key::contract;
    use crate::store::sqlite::testing::store;

    #[tokio::test]
    async fn keys_round_trip_and_revoke() {
        let (_dir, s) = store();
        contract::keys_round_trip_and_revoke(&s).await;
    }

    #[tokio::test]
    async fn the_first_signing_secret_wins() {
        let (_dir, s) = store();
        contract::the_first_signing_secret_wins(&s).await;
    }
}
