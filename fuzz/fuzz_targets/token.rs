//! The browser-token verifier (`security::token`) with a fixed secret. Each input is used three
//! ways:
//! 1. as a token;
//! 2. spliced into a token the secret signed: its first two bytes pick where, the third how many
//!    characters are cut there, the rest is put in their place;
//! 3. as JSON claims, signed with the secret, then verified, and what the server does with an
//!    accepted token's claims: its principal and the deadline of its stream.
//!
//! Never panics, never accepts a token the secret did not sign (a text accepted in 1 or 2 is the
//! signed token itself), and a token it signed verifies to the claims it signed, unless they are
//! for another service or expired, which is the answer then.
#![no_main]

use std::sync::LazyLock;

use eventbus::Pattern;
use eventbus::security::token::{AUDIENCE, Claims, TokenError, TokenSigner};
use eventbus_server::fuzzing::token_deadline;
use libfuzzer_sys::fuzz_target;

/// The verification time, seconds since the epoch.
const NOW: i64 = 1_800_000_000;

struct Signed {
    signer: TokenSigner,
    token: String,
}

static SIGNED: LazyLock<Signed> = LazyLock::new(|| {
    let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef".to_vec());
    let token = signer.sign(&Claims {
        aud: AUDIENCE.into(),
        sub: Some("0123456789abcdef".into()),
        exp: NOW + 600,
        iat: Some(NOW),
        tenant_id: Some("t_a".into()),
        project_ids: Some(vec!["p1".into()]),
        types: vec![Pattern::parse("project.*").unwrap()],
    });
    Signed { signer, token }
});

fuzz_target!(|data: &[u8]| {
    let Signed { signer, token } = &*SIGNED;

    let text = String::from_utf8_lossy(data);
    if signer.verify(&text, NOW).is_ok() {
        assert_eq!(text, *token, "a token the secret did not sign was accepted");
    }

    if let [a, b, cut, rest @ ..] = data {
        let at = usize::from(u16::from_le_bytes([*a, *b])) % (token.len() + 1);
        let end = (at + usize::from(*cut) % 16).min(token.len());
        let forged = format!(
            "{}{}{}",
            &token[..at],
            String::from_utf8_lossy(rest),
            &token[end..]
        );
        if signer.verify(&forged, NOW).is_ok() {
            assert_eq!(forged, *token, "a changed token was accepted");
        }
    }

    if let Ok(claims) = serde_json::from_slice::<Claims>(data) {
        let signed = signer.sign(&claims);
        let want = if claims.aud != AUDIENCE || claims.types.is_empty() {
            Err(TokenError::Claims)
        } else if NOW >= claims.exp {
            Err(TokenError::Expired)
        } else {
            Ok(claims.clone())
        };
        assert_eq!(signer.verify(&signed, NOW), want, "{signed}");
        if want.is_ok() {
            let principal = claims.principal();
            assert_eq!(principal.tenant_id, claims.tenant_id);
            let _ = token_deadline(claims.exp);
        }
    }
});
