//! Who is calling: the identity behind a key or token, as the security layer resolves it.
//!
//! The core only carries it; the security middleware and the HTTP layer decide what it may do.

use super::pattern::Pattern;

/// An authenticated caller.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    /// The key's id (never its secret), for logs and audit.
    pub key_id: String,
    /// The tenant the key is bound to, if any.
    pub tenant_id: Option<String>,
    /// The projects the key is limited to, if any.
    pub project_ids: Option<Vec<String>>,
    /// The type patterns the key may use (empty: none).
    pub types: Vec<Pattern>,
}
