//! Where archive files live: the [`ArchiveTarget`] trait, [`open_target`] for an
//! `EVENT_ARCHIVE_URL`, and the two implementations: a local directory ([`FileTarget`],
//! `file://`) and an S3 bucket ([`S3Target`], `s3://`, through the `object_store` crate).
//!
//! Invariants every target keeps:
//! - [`ArchiveTarget::put`] is atomic and durable: once it returns, the object under `name` has
//!   exactly the given bytes and survives a crash; a crash during `put` leaves either no object
//!   or a complete one under `name` (never a torn one), plus at most a temporary object that
//!   [`ArchiveTarget::list`] does not report and [`ArchiveTarget::remove_temporary`] removes;
//! - `put` over an existing name replaces it (so a rerun after a crash overwrites an orphan);
//! - names are flat (no `/`), checked by [`check_name`].

mod file;
mod http;
mod s3;

use async_trait::async_trait;

pub use self::file::FileTarget;
pub use self::s3::S3Target;
use super::ArchiveError;

/// Storage for archive files, addressed by flat names.
#[async_trait]
pub trait ArchiveTarget: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `bytes` under `name`, atomically and durably, replacing any object of that name.
    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArchiveError>;
    /// The bytes stored under `name`.
    async fn get(&self, name: &str) -> Result<Vec<u8>, ArchiveError>;
    /// Removes `name`; removing a missing object is not an error.
    async fn remove(&self, name: &str) -> Result<(), ArchiveError>;
    /// The names of every complete object, sorted.
    async fn list(&self) -> Result<Vec<String>, ArchiveError>;
    /// Removes leftovers of interrupted `put`s.
    async fn remove_temporary(&self) -> Result<(), ArchiveError>;
}

/// Opens the target `url` names:
/// - `file://<path>` (relative to the working directory) or `file:///<absolute path>`;
/// - `s3://<bucket>/<prefix>`, configured by the usual `AWS_*` environment variables
///   (see [`S3Target::from_env`]).
///
/// Opening does not connect: a wrong URL fails here, unreachable storage on first use.
pub fn open_target(url: &str) -> Result<Box<dyn ArchiveTarget>, ArchiveError> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(ArchiveError::Target(
                "`file://` needs a directory, e.g. file://./data/archive".into(),
            ));
        }
        return Ok(Box::new(FileTarget::new(path.into())));
    }
    if url.starts_with("s3://") {
        return Ok(Box::new(S3Target::from_env(url)?));
    }
    Err(ArchiveError::Target(format!(
        "`{url}` is not a supported archive URL: use file://<directory> or s3://<bucket>/<prefix>"
    )))
}

/// Refuses names that are empty, hidden or not flat.
pub(crate) fn check_name(name: &str) -> Result<(), ArchiveError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(ArchiveError::Target(format!(
            "`{name}` is not a valid archive object name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_s3_urls_open_and_others_are_refused() {
        assert!(open_target("file://./data/archive").is_ok());
        assert!(open_target("s3://bucket/prefix").is_ok());
        assert!(open_target("s3://bucket").is_ok());
        for bad in [
            "file://",
            "s3://",
            "gs://bucket",
            "data/archive",
            "https://x/y",
        ] {
            let error = open_target(bad).unwrap_err().to_string();
            assert!(
                error.contains("file://") || error.contains("s3://"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn names_must_be_flat() {
        assert!(check_name("00000000000000000001-00000000000000000002.jsonl.zst").is_ok());
        for bad in ["", ".hidden", "a/b", "a\\b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
