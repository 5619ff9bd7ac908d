//! Browser tokens: short-lived HS256 JSON Web Tokens that `GET /v1/stream?token=` accepts where
//! an `EventSource` cannot send an `Authorization` header.
//!
//! A token grants `subscribe` only, on its `types`, within its `tenantId` and `projectIds`, until
//! `exp`. The bus mints them (`POST /v1/tokens`, never wider than the calling key); the Situs
//! backend may mint them itself with the shared `EVENT_BUS_TOKEN_SECRET`. Claims:
//!
//! | claim | type | meaning |
//! | --- | --- | --- |
//! | `aud` | `"eventbus"` | required, so tokens made for other services are refused |
//! | `sub` | string | who the token speaks for (the minting key's id); optional |
//! | `exp` | seconds since the epoch | required; the token is refused from then on |
//! | `iat` | seconds since the epoch | optional |
//! | `tenantId` | string | the tenant; absent: every tenant |
//! | `projectIds` | array of strings | the projects; absent: every project |
//! | `types` | array of patterns | the types it may receive; required, non-empty |
//!
//! Verification checks the header's `alg` is `HS256` (no `none`, no key confusion), the
//! signature in constant time, then the claims. Every failure is one answer: not valid.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::core::pattern::Pattern;
use crate::core::principal::{Permission, Principal};

/// The audience every token names.
pub const AUDIENCE: &str = "eventbus";

/// The encoded header: `{"alg":"HS256","typ":"JWT"}`.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    /// Must be [`AUDIENCE`].
    pub aud: String,
    /// Who the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_ids: Option<Vec<String>>,
    /// The patterns it may receive.
    pub types: Vec<Pattern>,
}

impl Claims {
    /// The caller the token authenticates: `subscribe` on its types, in its scope.
    pub fn principal(&self) -> Principal {
        Principal {
            key_id: self.sub.clone().unwrap_or_else(|| "token".to_owned()),
            tenant_id: self.tenant_id.clone(),
            project_ids: self.project_ids.clone(),
            grants: BTreeMap::from([(Permission::Subscribe, self.types.clone())]),
        }
    }
}

/// Why a token was refused (the answer to the caller is the same for each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts, or not JSON.
    #[error("the token is malformed")]
    Malformed,
    /// Another algorithm than HS256.
    #[error("the token is not signed with HS256")]
    Algorithm,
    /// The signature does not match.
    #[error("the token's signature does not match")]
    Signature,
    /// `aud` is not `eventbus`, or `types` is empty.
    #[error("the token's claims are not for this service")]
    Claims,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// A signer with `secret` (any length; 32 random bytes or more is right).
    pub fn new(secret: Vec<u8>) -> Self {
        TokenSigner { secret }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    /// The token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let mut mac = self.mac();
        mac.update(HEADER.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{HEADER}.{body}.{sig}")
    }

    /// The claims of `token` if it is genuine, for this service and not expired at `now_secs`.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value = B64
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::Algorithm);
        }
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..signed_len]);
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = B64
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.aud != AUDIENCE || claims.types.is_empty() {
            return Err(TokenError::Claims);
        }
        if now_secs >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            aud: AUDIENCE.into(),
            sub: Some("k1".into()),
            exp,
            iat: Some(exp - 60),
            tenant_id: Some("t_a".into()),
            project_ids: Some(vec!["p1".into()]),
            types: vec![Pattern::parse("project.*").unwrap()],
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let token = signer.sign(&claims(1_000));
        assert_eq!(signer.verify(&token, 999), Ok(claims(1_000)));
        assert_eq!(signer.verify(&token, 1_000), Err(TokenError::Expired));
        let other = TokenSigner::new(b"another secret".to_vec());
        assert_eq!(other.verify(&token, 999), Err(TokenError::Signature));
    }

    #[test]
    fn tampered_and_foreign_tokens_are_refused() {
        let signer = TokenSigner::new(b"secret".to_vec());
        let token = signer.sign(&claims(1_000));
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        // A wider scope under the old signature.
        let mut wider = claims(1_000);
        wider.tenant_id = Some("t_b".into());
        let forged = format!(
            "{head}.{}.{sig}",
            B64.encode(serde_json::to_vec(&wider).unwrap())
        );
        assert_eq!(signer.verify(&forged, 1), Err(TokenError::Signature));
        // `alg: none` with no signature.
        let none = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(&wider).unwrap());
        assert_eq!(
            signer.verify(&format!("{none}.{body}."), 1),
            Err(TokenError::Algorithm)
        );
        assert_eq!(signer.verify("abc", 1), Err(TokenError::Malformed));
        assert_eq!(signer.verify("a.b.c.d", 1), Err(TokenError::Malformed));
        let mut foreign = claims(1_000);
        foreign.aud = "other".into();
        assert_eq!(
            signer.verify(&signer.sign(&foreign), 1),
            Err(TokenError::Claims)
        );
    }

    #[test]
    fn the_header_constant_is_the_encoded_header() {
        assert_eq!(B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#), HEADER);
    }

    #[test]
    fn a_token_grants_subscribe_on_its_types_only() {
        let p = claims(10).principal();
        assert!(p.has(Permission::Subscribe));
        assert!(!p.has(Permission::Read) && !p.has(Permission::Publish));
        assert_eq!(p.tenant_id.as_deref(), Some("t_a"));
        assert!(p.allows_type(Permission::Subscribe, "project.created"));
        assert!(!p.allows_type(Permission::Subscribe, "user.created"));
    }
}
