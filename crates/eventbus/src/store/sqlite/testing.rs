//! Test harness: a [`SqliteStore`] in a temporary directory of its own.

use super::{SqliteOptions, SqliteStore};

/// A fresh store; the directory lives as long as the returned guard.
pub(crate) fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join("store.db"), SqliteOptions::default())
        .expect("opening the store");
    (dir, store)
}
