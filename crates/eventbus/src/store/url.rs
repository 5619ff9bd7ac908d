//! `EVENT_STORE_URL`: which backend, where.

use std::path::PathBuf;
use std::sync::Arc;

use super::postgres::PgOptions;
use super::sqlite::SqliteOptions;
use super::{EventStore, StoreError};

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://<path>` (relative to the working directory) or `sqlite:///<absolute path>`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
}

impl StoreUrl {
    /// Parses `url`, explaining what is accepted when it is not.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "`sqlite://` needs a file path, e.g. sqlite://./data/eventbus.db".into(),
                );
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        Err(format!(
            "`{url}` is not a store URL: use sqlite://<path> (e.g. sqlite://./data/eventbus.db) \
             or postgres://user@host:port/database"
        ))
    }
}

/// The tuning of every backend; [`open`] uses the one the URL names.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Used for `sqlite://`.
    pub sqlite: SqliteOptions,
    /// Used for `postgres://`.
    pub postgres: PgOptions,
}

impl From<SqliteOptions> for StoreOptions {
    fn from(sqlite: SqliteOptions) -> Self {
        StoreOptions {
            sqlite,
            ..StoreOptions::default()
        }
    }
}

/// Opens the store `url` names, applying its migrations.
pub async fn open(
    url: &StoreUrl,
    options: impl Into<StoreOptions>,
) -> Result<Arc<dyn EventStore>, StoreError> {
    super::webhook::open_with_webhooks(url, options)
        .await
        .map(|(store, _)| store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            StoreUrl::parse("sqlite://./data/eventbus.db").unwrap(),
            StoreUrl::Sqlite("./data/eventbus.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/x.db").unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u@h/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!(StoreUrl::parse("mysql://x").is_err());
        assert!(StoreUrl::parse("sqlite://").is_err());
    }
}
