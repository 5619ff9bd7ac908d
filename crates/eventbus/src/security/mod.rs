//! Security (DESIGN.md §3 and invariant 5): API keys, browser tokens and abuse limits.
//!
//! Layout: this module ([`Keys`]: key strings, authentication with a short cache, creation and
//! revocation, token minting), [`token`] (HS256 browser tokens), [`limit`] (publish rates and
//! stream counts). What a caller may do is decided by [`Principal`] in the core; publishes are
//! checked by [`SecurityMiddleware`](crate::core::middleware::SecurityMiddleware).
//!
//! A key string is `ebk_<id>_<secret>`: the id (16 hex digits) finds the row, the secret (32
//! random bytes, base64url) is compared by its SHA-256 in constant time. Only the hash is stored,
//! so a key is shown once. `EVENT_BUS_ADMIN_KEY` is a key of its own (id `admin`) with every
//! permission, never stored.
//!
//! Keys are cached for [`KEY_CACHE_TTL`] after a lookup, so a revocation takes effect at once on
//! the process that revoked and within that time on the others.

pub mod limit;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

use self::token::{AUDIENCE, Claims, TokenSigner};
use crate::core::pattern::Pattern;
use crate::core::principal::{Permission, Principal};
use crate::core::time::Timestamp;
use crate::store::StoreError;
use crate::store::key::{ApiKey, KeyStore};

/// How long a looked-up key is trusted before it is read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// The prefix of every key string.
pub const KEY_PREFIX: &str = "ebk_";

/// The id of the bootstrap admin key.
pub const ADMIN_KEY_ID: &str = "admin";

/// The name of the stored token-signing secret.
const TOKEN_SECRET: &str = "stream-tokens";

/// Cached lookups are dropped when the cache grows past this.
const CACHE_MAX: usize = 10_000;

/// An authenticated key: who it is and its limits.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// What the key may do.
    pub principal: Arc<Principal>,
    /// Publish requests per second; `None`: the server's default.
    pub rate_limit: Option<u32>,
    /// Open streams; `None`: the server's default.
    pub max_connections: Option<u32>,
}

/// Why authentication failed. Callers answer 401 with one message for all but `Store`, so a
/// caller cannot tell an unknown key from a wrong secret or a revoked key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The key string is not of the `ebk_…` form.
    #[error("the key is malformed")]
    Malformed,
    /// No such key, a wrong secret, or a revoked or expired key.
    #[error("the key is unknown, revoked or expired")]
    Invalid,
    /// The store could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new key may do, as asked by its creator.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    /// A name for people.
    pub name: String,
    /// The tenant binding.
    pub tenant_id: Option<String>,
    /// The project list.
    pub project_ids: Option<Vec<String>>,
    /// The permissions.
    pub permissions: Vec<Permission>,
    /// Type patterns for every permission (default: every type).
    pub types: Option<Vec<Pattern>>,
    /// Type patterns of single permissions, overriding `types` for them.
    pub types_by_permission: BTreeMap<Permission, Vec<Pattern>>,
    /// Publish requests per second.
    pub rate_limit: Option<u32>,
    /// Open streams at once.
    pub max_connections: Option<u32>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

/// Why a key or token could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The request is inconsistent (400).
    #[error("{0}")]
    Invalid(String),
    /// It asks for more than the caller holds (403).
    #[error("{0}")]
    Wider(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lookup remembered until `at + KEY_CACHE_TTL`.
struct Cached {
    at: Instant,
    row: Option<Arc<Found>>,
}

/// A stored key as authentication needs it: the row, its secret's hash, and its principal,
/// built once per lookup rather than once per request.
struct Found {
    key: ApiKey,
    hash: Vec<u8>,
    principal: Arc<Principal>,
}

/// The keys of one bus: authentication, creation, revocation and browser tokens.
pub struct Keys {
    store: Arc<dyn KeyStore>,
    admin_hash: Option<[u8; 32]>,
    /// The admin key's principal, shared by its requests.
    root: Arc<Principal>,
    cache: Mutex<HashMap<String, Cached>>,
    signer: TokenSigner,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("admin_key", &self.admin_hash.is_some())
            .finish_non_exhaustive()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality that takes the same time wherever the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
}

/// Splits `ebk_<id>_<secret>`.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

impl Keys {
    /// Keys kept in `store`; `admin_key` is the bootstrap key; `token_secret` signs browser
    /// tokens (when `None`, a random secret is generated once and kept in the store, so every
    /// process on the database shares it).
    pub async fn open(
        store: Arc<dyn KeyStore>,
        admin_key: Option<&str>,
        token_secret: Option<&[u8]>,
    ) -> Result<Keys, StoreError> {
        let secret = match token_secret {
            Some(s) => s.to_vec(),
            None => {
                store
                    .signing_secret(TOKEN_SECRET, random::<32>().to_vec())
                    .await?
            }
        };
        Ok(Keys {
            store,
            admin_hash: admin_key.map(|k| sha256(k.as_bytes())),
            root: Arc::new(Principal::root(ADMIN_KEY_ID)),
            cache: Mutex::new(HashMap::new()),
            signer: TokenSigner::new(secret),
        })
    }

    /// The signer of browser tokens.
    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    /// Authenticates a presented key string.
    pub async fn authenticate(&self, presented: &str) -> Result<Authenticated, AuthError> {
        if let Some(admin) = &self.admin_hash
            && constant_time_eq(&sha256(presented.as_bytes()), admin)
        {
            return Ok(Authenticated {
                principal: self.root.clone(),
                rate_limit: None,
                max_connections: None,
            });
        }
        let (id, secret) = parse_key(presented).ok_or(AuthError::Malformed)?;
        let found = self.lookup(id).await?.ok_or(AuthError::Invalid)?;
        let Found {
            key,
            hash,
            principal,
        } = &*found;
        if !constant_time_eq(&sha256(secret.as_bytes()), hash) || !key.is_active(Timestamp::now()) {
            return Err(AuthError::Invalid);
        }
        Ok(Authenticated {
            principal: principal.clone(),
            rate_limit: key.rate_limit,
            max_connections: key.max_connections,
        })
    }

    async fn lookup(&self, id: &str) -> Result<Option<Arc<Found>>, StoreError> {
        let now = Instant::now();
        if let Some(c) = self.cache.lock().expect("key cache lock").get(id)
            && now.duration_since(c.at) < KEY_CACHE_TTL
        {
            return Ok(c.row.clone());
        }
        let row = self.store.get_key(id).await?.map(|(key, hash)| {
            Arc::new(Found {
                principal: Arc::new(key.principal()),
                key,
                hash,
            })
        });
        let mut cache = self.cache.lock().expect("key cache lock");
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| now.duration_since(c.at) < KEY_CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            id.to_owned(),
            Cached {
                at: now,
                row: row.clone(),
            },
        );
        Ok(row)
    }

    /// Makes a key for `spec`, never wider than `creator`; returns it and its key string, which
    /// is shown only now. A creator bound to a tenant makes keys of that tenant.
    pub async fn create(
        &self,
        creator: &Principal,
        spec: KeySpec,
    ) -> Result<(ApiKey, String), GrantError> {
        if spec.name.trim().is_empty() || spec.name.len() > 200 {
            return Err(GrantError::Invalid(
                "`name` is required, 1 to 200 characters".into(),
            ));
        }
        if spec.permissions.is_empty() {
            return Err(GrantError::Invalid(
                "`permissions` needs at least one of publish, subscribe, read, admin".into(),
            ));
        }
        if let Some(extra) = spec
            .types_by_permission
            .keys()
            .find(|p| !spec.permissions.contains(p))
        {
            return Err(GrantError::Invalid(format!(
                "`typesByPermission` names `{extra}`, which is not in `permissions`"
            )));
        }
        if spec.project_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(GrantError::Invalid(
                "`projectIds` must not be empty; omit it for every project".into(),
            ));
        }
        if spec.expires_at.is_some_and(|e| e <= Timestamp::now()) {
            return Err(GrantError::Invalid("`expiresAt` is in the past".into()));
        }
        let default_types = spec.types.clone().unwrap_or_else(|| vec![Pattern::all()]);
        let grants: BTreeMap<Permission, Vec<Pattern>> = spec
            .permissions
            .iter()
            .map(|p| {
                let types = spec
                    .types_by_permission
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| default_types.clone());
                (*p, types)
            })
            .collect();
        if grants.values().any(Vec::is_empty) {
            return Err(GrantError::Invalid(
                "type pattern lists must not be empty; use `>` for every type".into(),
            ));
        }
        let tenant_id = spec.tenant_id.or_else(|| creator.tenant_id.clone());
        let project_ids = spec.project_ids.or_else(|| creator.project_ids.clone());
        let id = random::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let key = ApiKey {
            id: id.clone(),
            name: spec.name,
            tenant_id,
            project_ids,
            grants,
            rate_limit: spec.rate_limit,
            max_connections: spec.max_connections,
            created_at: Timestamp::now(),
            created_by: creator.key_id.clone(),
            expires_at: spec.expires_at,
            revoked_at: None,
        };
        if !creator.contains(&key.principal()) {
            return Err(GrantError::Wider(
                "a key cannot be wider than the key that creates it: same tenant, its projects, \
                 its permissions and types"
                    .into(),
            ));
        }
        let secret = B64.encode(random::<32>());
        self.store
            .insert_key(&key, sha256(secret.as_bytes()))
            .await?;
        tracing::info!(
            target: "audit",
            key = %key.id,
            by = %creator.key_id,
            tenant = key.tenant_id.as_deref(),
            permissions = ?key.grants.keys().collect::<Vec<_>>(),
            "key created"
        );
        Ok((key, format!("{KEY_PREFIX}{id}_{secret}")))
    }

    /// The keys `caller` may see: every key for an unbound admin, its tenant's otherwise.
    pub async fn list(&self, caller: &Principal) -> Result<Vec<ApiKey>, StoreError> {
        self.store.list_keys(caller.tenant_id.as_deref()).await
    }

    /// The key `id` if `caller` may see it.
    pub async fn get(&self, caller: &Principal, id: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .store
            .get_key(id)
            .await?
            .map(|(k, _)| k)
            .filter(|k| caller.tenant_id.is_none() || k.tenant_id == caller.tenant_id))
    }

    /// Revokes `id` if `caller` may see it; `false` when it may not or there is no such key.
    pub async fn revoke(&self, caller: &Principal, id: &str) -> Result<bool, StoreError> {
        if self.get(caller, id).await?.is_none() {
            return Ok(false);
        }
        let revoked = self.store.revoke_key(id, Timestamp::now()).await?;
        self.cache.lock().expect("key cache lock").remove(id);
        if revoked {
            tracing::info!(target: "audit", key = %id, by = %caller.key_id, "key revoked");
        }
        Ok(revoked)
    }

    /// Mints a browser token for `caller` (which needs `subscribe`): `types` (default: all of
    /// its subscribe patterns) and `project_ids` (default: its own), for `ttl`. Never wider than
    /// the caller.
    pub fn mint(
        &self,
        caller: &Principal,
        project_ids: Option<Vec<String>>,
        types: Option<Vec<Pattern>>,
        ttl: Duration,
    ) -> Result<(String, Timestamp), GrantError> {
        if !caller.has(Permission::Subscribe) {
            return Err(GrantError::Wider(
                "minting a token needs the `subscribe` permission".into(),
            ));
        }
        if project_ids.as_ref().is_some_and(Vec::is_empty)
            || types.as_ref().is_some_and(Vec::is_empty)
        {
            return Err(GrantError::Invalid(
                "`projectIds` and `types` must not be empty; omit them for the key's own".into(),
            ));
        }
        let now = Timestamp::now().as_micros() / 1_000_000;
        let exp = now + ttl.as_secs() as i64;
        let claims = Claims {
            aud: AUDIENCE.into(),
            sub: Some(caller.key_id.clone()),
            exp,
            iat: Some(now),
            tenant_id: caller.tenant_id.clone(),
            project_ids: project_ids.or_else(|| caller.project_ids.clone()),
            types: types.unwrap_or_else(|| caller.patterns(Permission::Subscribe).to_vec()),
        };
        if !caller.contains(&claims.principal()) {
            return Err(GrantError::Wider(
                "a token cannot be wider than its key: the key's projects and subscribe types"
                    .into(),
            ));
        }
        Ok((
            self.signer.sign(&claims),
            Timestamp::from_micros(exp * 1_000_000),
        ))
    }

    /// The caller a browser token authenticates, with its expiry in seconds since the epoch.
    pub fn verify_token(&self, token: &str) -> Result<(Arc<Principal>, i64), token::TokenError> {
        let now = Timestamp::now().as_micros() / 1_000_000;
        let claims = self.signer.verify(token, now)?;
        Ok((Arc::new(claims.principal()), claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::testing::store;

    async fn keys(admin: Option<&str>) -> (tempfile::TempDir, Keys) {
        let (dir, s) = store();
        let keys = Keys::open(Arc::new(s), admin, None).await.unwrap();
        (dir, keys)
    }

    fn spec(tenant: Option<&str>, permissions: &[Permission], types: &[&str]) -> KeySpec {
        KeySpec {
            name: "k".into(),
            tenant_id: tenant.map(str::to_owned),
            permissions: permissions.to_vec(),
            types: Some(types.iter().map(|t| Pattern::parse(t).unwrap()).collect()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn keys_authenticate_until_revoked_and_only_with_their_secret() {
        let (_d, keys) = keys(Some("bootstrap-secret")).await;
        let admin = keys.authenticate("bootstrap-secret").await.unwrap();
        assert_eq!(admin.principal.key_id, ADMIN_KEY_ID);
        let (key, secret) = keys
            .create(
                &admin.principal,
                spec(Some("t_a"), &[Permission::Publish], &["project.*"]),
            )
            .await
            .unwrap();
        assert!(secret.starts_with(KEY_PREFIX) && secret.contains(&key.id));
        let auth = keys.authenticate(&secret).await.unwrap();
        assert_eq!(auth.principal.tenant_id.as_deref(), Some("t_a"));
        let wrong = format!("{}x", &secret[..secret.len() - 1]);
        assert!(matches!(
            keys.authenticate(&wrong).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            keys.authenticate("nonsense").await,
            Err(AuthError::Malformed)
        ));
        assert!(keys.revoke(&admin.principal, &key.id).await.unwrap());
        assert!(matches!(
            keys.authenticate(&secret).await,
            Err(AuthError::Invalid)
        ));
    }

    #[tokio::test]
    async fn keys_and_tokens_are_never_wider_than_their_maker() {
        let (_d, keys) = keys(Some("root")).await;
        let root = keys.authenticate("root").await.unwrap().principal;
        let (_, a_admin) = keys
            .create(
                &root,
                spec(
                    Some("t_a"),
                    &[Permission::Admin, Permission::Subscribe],
                    &[">"],
                ),
            )
            .await
            .unwrap();
        let a_admin = keys.authenticate(&a_admin).await.unwrap().principal;
        // A tenant admin makes keys of its own tenant only.
        let (own, _) = keys
            .create(
                &a_admin,
                spec(None, &[Permission::Subscribe], &["project.*"]),
            )
            .await
            .unwrap();
        assert_eq!(
            own.tenant_id.as_deref(),
            Some("t_a"),
            "the creator's tenant is inherited"
        );
        assert!(matches!(
            keys.create(
                &a_admin,
                spec(Some("t_b"), &[Permission::Subscribe], &[">"])
            )
            .await,
            Err(GrantError::Wider(_))
        ));
        assert!(matches!(
            keys.create(&a_admin, spec(None, &[Permission::Publish], &[">"]))
                .await,
            Err(GrantError::Wider(_))
        ));
        assert_eq!(
            keys.list(&a_admin).await.unwrap().len(),
            2,
            "its tenant's keys only"
        );
        // Tokens.
        let (token, _) = keys
            .mint(
                &a_admin,
                None,
                Some(vec![Pattern::parse("project.*").unwrap()]),
                Duration::from_secs(60),
            )
            .unwrap();
        let (p, _) = keys.verify_token(&token).unwrap();
        assert_eq!(p.tenant_id.as_deref(), Some("t_a"));
        assert!(p.has(Permission::Subscribe) && !p.has(Permission::Admin));
        let subscriber = keys
            .authenticate(
                &keys
                    .create(
                        &a_admin,
                        spec(None, &[Permission::Subscribe], &["project.*"]),
                    )
                    .await
                    .unwrap()
                    .1,
            )
            .await
            .unwrap()
            .principal;
        assert!(matches!(
            keys.mint(
                &subscriber,
                None,
                Some(vec![Pattern::all()]),
                Duration::from_secs(60)
            ),
            Err(GrantError::Wider(_))
        ));
    }

    #[tokio::test]
    async fn the_token_secret_is_shared_through_the_store() {
        let (_d, s) = store();
        let s: Arc<dyn KeyStore> = Arc::new(s);
        let one = Keys::open(s.clone(), None, None).await.unwrap();
        let two = Keys::open(s, None, None).await.unwrap();
        let (token, _) = one
            .mint(&Principal::root("r"), None, None, Duration::from_secs(60))
            .unwrap();
        two.verify_token(&token)
            .expect("another process verifies the token");
    }
}
