//! API key persistence (DESIGN.md §3, `/v1/keys`): the keys' scope and the SHA-256 of their
//! secret, never the secret itself; and the bus's own signing secrets (browser tokens), shared
//! by every process on one database.
//!
//! Invariants every backend keeps:
//! - a secret is stored only as its hash, so a key cannot be read back after creation;
//! - revocation is a timestamp, never a delete, so audit logs keep naming a real key;
//! - [`KeyStore::signing_secret`] answers the same bytes to every process: the first caller's
//!   candidate is stored, later callers get the stored one.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::StoreError;
use crate::core::pattern::Pattern;
use crate::core::principal::{Permission, Principal};
use crate::core::time::Timestamp;

/// A stored API key (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public id (also the first part of the key string).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The tenant the key is bound to.
    pub tenant_id: Option<String>,
    /// The projects the key is limited to.
    pub project_ids: Option<Vec<String>>,
    /// Permissions and the type patterns each covers.
    pub grants: BTreeMap<Permission, Vec<Pattern>>,
    /// Publish requests per second; `None`: the server's default.
    pub rate_limit: Option<u32>,
    /// Open streams at once; `None`: the server's default.
    pub max_connections: Option<u32>,
    /// When it was made.
    pub created_at: Timestamp,
    /// The key that made it (`admin` for the bootstrap key).
    pub created_by: String,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Whether the key works at `now`: neither revoked nor expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// The caller this key authenticates.
    pub fn principal(&self) -> Principal {
        Principal {
            key_id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            project_ids: self.project_ids.clone(),
            grants: self.grants.clone(),
        }
    }

    /// The grants as stored: `{"publish": ["project.*"], …}`.
    pub fn grants_json(&self) -> String {
        serde_json::to_string(&self.grants).expect("grants serialise")
    }

    /// Parses stored grants.
    pub fn parse_grants(json: &str) -> Result<BTreeMap<Permission, Vec<Pattern>>, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("stored grants: {e}")))
    }

    /// Parses a stored project list.
    pub fn parse_projects(json: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StoreError::Internal(format!("stored project list: {e}")))
        })
        .transpose()
    }
}

/// Where keys live (the same database as the events).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key with the SHA-256 of its secret.
    async fn insert_key(&self, key: &ApiKey, secret_hash: [u8; 32]) -> Result<(), StoreError>;

    /// The key with this id and its secret's hash, revoked or not.
    async fn get_key(&self, id: &str) -> Result<Option<(ApiKey, Vec<u8>)>, StoreError>;

    /// Every key (of `tenant` when given), newest first.
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the key at `at`; `false` when there is no such key. Revoking twice keeps the
    /// first time.
    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<bool, StoreError>;

    /// The signing secret called `name`: `candidate` is stored when there is none yet; the
    /// stored value is returned.
    async fn signing_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError>;
}

/// The contract every [`KeyStore`] keeps, run by each backend's tests.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    fn key(id: &str, tenant: Option<&str>, at: i64) -> ApiKey {
        ApiKey {
            id: id.to_owned(),
            name: format!("key {id}"),
            tenant_id: tenant.map(str::to_owned),
            project_ids: Some(vec!["p1".into(), "p2".into()]),
            grants: [
                (
                    Permission::Publish,
                    vec![Pattern::parse("project.*").unwrap()],
                ),
                (Permission::Read, vec![Pattern::all()]),
            ]
            .into_iter()
            .collect(),
            rate_limit: Some(50),
            max_connections: None,
            created_at: Timestamp::from_micros(at),
            created_by: "admin".into(),
            expires_at: Some(Timestamp::from_micros(at + 1_000_000)),
            revoked_at: None,
        }
    }

    pub(crate) async fn keys_round_trip_and_revoke(s: &dyn KeyStore) {
        let a = key("a1", Some("t_a"), 1_000);
        let b = key("b1", Some("t_b"), 2_000);
        let mut root = key("r1", None, 3_000);
        root.project_ids = None;
        for k in [&a, &b, &root] {
            s.insert_key(k, [7; 32]).await.unwrap();
        }
        let (got, hash) = s.get_key("a1").await.unwrap().unwrap();
        assert_eq!(got, a);
        assert_eq!(hash, vec![7; 32]);
        assert!(s.get_key("nope").await.unwrap().is_none());
        let all: Vec<String> = s
            .list_keys(None)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(all, ["r1", "b1", "a1"], "newest first");
        let of_b: Vec<String> = s
            .list_keys(Some("t_b"))
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(of_b, ["b1"]);
        assert!(
            s.revoke_key("a1", Timestamp::from_micros(5_000))
                .await
                .unwrap()
        );
        assert!(
            s.revoke_key("a1", Timestamp::from_micros(9_000))
                .await
                .unwrap()
        );
        assert!(
            !s.revoke_key("nope", Timestamp::from_micros(5_000))
                .await
                .unwrap()
        );
        let (revoked, _) = s.get_key("a1").await.unwrap().unwrap();
        assert_eq!(
            revoked.revoked_at,
            Some(Timestamp::from_micros(5_000)),
            "the first revocation stays"
        );
        assert!(!revoked.is_active(Timestamp::from_micros(1_500)));
        let (b, _) = s.get_key("b1").await.unwrap().unwrap();
        assert!(b.is_active(Timestamp::from_micros(2_500)));
        assert!(
            !b.is_active(Timestamp::from_micros(2_000 + 1_000_000)),
            "expired"
        );
    }

    pub(crate) async fn the_first_signing_secret_wins(s: &dyn KeyStore) {
        let first = s.signing_secret("tokens", vec![1; 32]).await.unwrap();
        assert_eq!(first, vec![1; 32]);
        let second = s.signing_secret("tokens", vec![2; 32]).await.unwrap();
        assert_eq!(
            second,
            vec![1; 32],
            "a later candidate does not replace the stored secret"
        );
        let other = s.signing_secret("other", vec![3; 32]).await.unwrap();
        assert_eq!(other, vec![3; 32]);
    }
}
