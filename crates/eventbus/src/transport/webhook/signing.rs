//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, v1).
//!
//! A secret is `whsec_` followed by base64 of its key bytes. The signature of a message is
//! `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")); the
//! `webhook-signature` header carries one per valid secret, space-separated, so receivers
//! accept the message during a secret rotation whichever secret they hold.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret.
pub const SECRET_BYTES: usize = 32;
/// Fewest key bytes a given secret may have.
pub const MIN_SECRET_BYTES: usize = 24;
/// Most key bytes a given secret may have.
pub const MAX_SECRET_BYTES: usize = 64;

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub &'static str);

/// A decoded signing key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    /// Decodes `whsec_<base64>`.
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or(SecretError(
            "a secret starts with `whsec_` followed by base64",
        ))?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| SecretError("the part after `whsec_` is not valid base64"))?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError(
                "a secret holds 24 to 64 bytes of key (base64-encoded after `whsec_`)",
            ));
        }
        Ok(SigningKey(key))
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// A new random secret: `whsec_` + base64 of [`SECRET_BYTES`] random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    getrandom::fill(&mut key).expect("the OS random source works");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header value: one signature per key, space-separated.
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published vector, shared with the other implementations.
    fn vector() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/standard-webhooks.json"
        );
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).expect("the vector is JSON"),
            // The same values, for checkouts without the shared folder.
            Err(_) => serde_json::json!({
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "payload": "{\"test\": 2432232314}",
                "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            }),
        }
    }

    #[test]
    fn matches_the_specification_vector() {
        let v = vector();
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        // The vector's key is 24 bytes: the smallest accepted.
        let key = SigningKey::parse(&s("secret")).unwrap();
        let ts: i64 = s("webhook-timestamp").parse().unwrap();
        assert_eq!(
            key.sign(&s("webhook-id"), ts, s("payload").as_bytes()),
            s("webhook-signature")
        );
    }

    #[test]
    fn several_keys_give_space_separated_signatures() {
        let a = SigningKey::parse(&generate_secret()).unwrap();
        let b = SigningKey::parse(&generate_secret()).unwrap();
        let header = signature_header(&[a.clone(), b.clone()], "m", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [a.sign("m", 1, b"{}"), b.sign("m", 1, b"{}")]);
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        assert!(a.starts_with("whsec_") && a != b);
        assert!(SigningKey::parse(&a).is_ok());
    }

    #[test]
    fn refuses_bad_secrets() {
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_AAAA",
        ] {
            assert!(SigningKey::parse(bad).is_err(), "{bad}");
        }
    }
}
