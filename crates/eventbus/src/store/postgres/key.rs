//! API keys and signing secrets in PostgreSQL (see [`crate::store::key`]).

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::key::{ApiKey, KeyStore};

const KEY_COLUMNS: &str = "id, name, tenant_id, project_ids, grants, rate_limit, max_connections, \
                           created_at, created_by, expires_at, revoked_at, secret_hash";

fn row_to_key(r: &PgRow) -> Result<(ApiKey, Vec<u8>), StoreError> {
    let db = |e: sqlx::Error| StoreError::Internal(format!("reading a key row: {e}"));
    let grants: String = r.try_get(4).map_err(db)?;
    let key = ApiKey {
        id: r.try_get(0).map_err(db)?,
        name: r.try_get(1).map_err(db)?,
        tenant_id: r.try_get(2).map_err(db)?,
        project_ids: ApiKey::parse_projects(r.try_get(3).map_err(db)?)?,
        grants: ApiKey::parse_grants(&grants)?,
        rate_limit: r
            .try_get::<Option<i32>, _>(5)
            .map_err(db)?
            .map(|v| v as u32),
        max_connections: r
            .try_get::<Option<i32>, _>(6)
            .map_err(db)?
            .map(|v| v as u32),
        created_at: Timestamp::from_micros(r.try_get(7).map_err(db)?),
        created_by: r.try_get(8).map_err(db)?,
        expires_at: r
            .try_get::<Option<i64>, _>(9)
            .map_err(db)?
            .map(Timestamp::from_micros),
        revoked_at: r
            .try_get::<Option<i64>, _>(10)
            .map_err(db)?
            .map(Timestamp::from_micros),
    };
    Ok((key, r.try_get(11).map_err(db)?))
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, key: &ApiKey, secret_hash: [u8; 32]) -> Result<(), StoreError> {
        let projects = key
            .project_ids
            .as_ref()
            .map(|p| serde_json::to_string(p).expect("strings serialise"));
        self.write(async {
            sqlx::query(
                "INSERT INTO api_keys (id, name, secret_hash, tenant_id, project_ids, grants, \
                 rate_limit, max_connections, created_at, created_by, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&key.id)
            .bind(&key.name)
            .bind(secret_hash.as_slice())
            .bind(&key.tenant_id)
            .bind(&projects)
            .bind(key.grants_json())
            .bind(key.rate_limit.map(|v| v as i32))
            .bind(key.max_connections.map(|v| v as i32))
            .bind(key.created_at.as_micros())
            .bind(&key.created_by)
            .bind(key.expires_at.map(Timestamp::as_micros))
            .bind(key.revoked_at.map(Timestamp::as_micros))
            .execute(self.pool())
            .await
            .map(|_| ())
        })
        .await
    }

    async fn get_key(&self, id: &str) -> Result<Option<(ApiKey, Vec<u8>)>, StoreError> {
        let row = self
            .read(|pool| async move {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&pool)
                .await
            })
            .await?;
        row.as_ref().map(row_to_key).transpose()
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = self
            .read(|pool| async move {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR tenant_id = $1 \
                     ORDER BY created_at DESC, id DESC"
                )))
                .bind(tenant)
                .fetch_all(&pool)
                .await
            })
            .await?;
        rows.iter().map(|r| row_to_key(r).map(|(k, _)| k)).collect()
    }

    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        self.write(async {
            sqlx::query("UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
                .bind(id)
                .bind(at.as_micros())
                .execute(self.pool())
                .await
                .map(|r| r.rows_affected() > 0)
        })
        .await
    }

    async fn signing_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.write(async {
            sqlx::query(
                "INSERT INTO signing_secrets (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&candidate)
            .execute(self.pool())
            .await?;
            sqlx::query_scalar("SELECT value FROM signing_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(self.pool())
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::EventStore;
    use crate::store::key::contract;
    use crate::store::postgres::testing::store;

    #[tokio::test]
    async fn keys_round_trip_and_revoke() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::keys_round_trip_and_revoke(&s).await;
        s.close().await;
    }

    #[tokio::test]
    async fn the_first_signing_secret_wins() {
        let Some((_schema, s)) = store().await else {
            return;
        };
        contract::the_first_signing_secret_wins(&s).await;
        s.close().await;
    }
}
