//! `EVENT_STORE_URL`: which backend, where; and [`open`], the one way to open a backend with
//! every table set it holds.

use std::path::PathBuf;
use std::sync::Arc;

use super::archive::ArchiveStore;
use super::group::GroupStore;
use super::plugin::PluginStore;
use super::postgres::{PgOptions, PgStore};
use super::sqlite::{SqliteOptions, SqliteStore};
use super::webhook::WebhookStore;
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
    pub fn parse(url: &str) -> Result<Self, StoreUrlError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreUrlError::NoSqlitePath);
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        Err(StoreUrlError::UnknownScheme(url.to_owned()))
    }
}

/// Why a text is not a store URL; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// `sqlite://` without a path.
    #[error("`sqlite://` needs a file path, e.g. sqlite://./data/eventbus.db")]
    NoSqlitePath,
    /// Neither `sqlite://` nor `postgres://`.
    #[error(
        "`{0}` is not a store URL: use sqlite://<path> (e.g. sqlite://./data/eventbus.db) \
         or postgres://user@host:port/database"
    )]
    UnknownScheme(String),
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

/// One opened backend, each of its table sets behind its own contract. Every backend holds all
/// of them; the handles share one connection pool (PostgreSQL) or one writer (SQLite), and
/// [`EventStore::close`] on `events` releases it.
///
/// The event log's own side tables travel with [`EventStore`] as supertraits: consumer cursors
/// ([`super::ConsumerStore`]) and API keys ([`super::key::KeyStore`]).
#[derive(Clone)]
pub struct Stores {
    /// The event log, the catalogue, consumer cursors and API keys.
    pub events: Arc<dyn EventStore>,
    /// The archive manifest and the moves between hot rows and archive files.
    pub archive: Arc<dyn ArchiveStore>,
    /// Webhook endpoints, deliveries and attempts.
    pub webhooks: Arc<dyn WebhookStore>,
    /// Plugin state, key-value data and dead letters.
    pub plugins: Arc<dyn PluginStore>,
    /// Consumer groups: their settings, cursors, messages and dead letters.
    pub groups: Arc<dyn GroupStore>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.events.backend())
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Every table set of one backend store.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: EventStore + ArchiveStore + WebhookStore + PluginStore + GroupStore,
    {
        Stores {
            events: store.clone(),
            archive: store.clone(),
            webhooks: store.clone(),
            plugins: store.clone(),
            groups: store,
        }
    }
}

/// Opens the store `url` names, applying its migrations.
pub async fn open(url: &StoreUrl, options: impl Into<StoreOptions>) -> Result<Stores, StoreError> {
    let options = options.into();
    match url {
        StoreUrl::Sqlite(path) => {
            let path = path.clone();
            let sqlite = options.sqlite;
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, sqlite))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))??;
            Ok(Stores::of(Arc::new(store)))
        }
        StoreUrl::Postgres(url) => Ok(Stores::of(Arc::new(
            PgStore::open(url, options.postgres).await?,
        ))),
    }
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
