//! Where archive files live: the [`ArchiveTarget`] trait and its `file://` implementation.
//!
//! Invariants every target keeps:
//! - [`ArchiveTarget::put`] is atomic and durable: once it returns, the object under `name` has
//!   exactly the given bytes and survives a crash; a crash during `put` leaves either no object
//!   or a complete one under `name` (never a torn one), plus at most a temporary file that
//!   [`ArchiveTarget::list`] does not report as an object and [`ArchiveTarget::remove_temporary`]
//!   removes;
//! - `put` over an existing name replaces it (so a rerun after a crash overwrites an orphan).
//!
//! Only `file://` is implemented. Another scheme (`s3://…`) needs an implementation of this
//! trait; [`open_target`] refuses URLs it cannot serve.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ArchiveError;

/// Storage for archive files, addressed by flat names.
pub trait ArchiveTarget: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `bytes` under `name`, atomically and durably, replacing any object of that name.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), ArchiveError>;
    /// The bytes stored under `name`.
    fn get(&self, name: &str) -> Result<Vec<u8>, ArchiveError>;
    /// Removes `name`; removing a missing object is not an error.
    fn remove(&self, name: &str) -> Result<(), ArchiveError>;
    /// The names of every complete object.
    fn list(&self) -> Result<Vec<String>, ArchiveError>;
    /// Removes leftovers of interrupted `put`s.
    fn remove_temporary(&self) -> Result<(), ArchiveError>;
}

/// Opens the target `url` names: `file://<path>` (relative to the working directory) or
/// `file:///<absolute path>`.
pub fn open_target(url: &str) -> Result<Box<dyn ArchiveTarget>, ArchiveError> {
    match url.strip_prefix("file://") {
        Some("") => Err(ArchiveError::Target(
            "`file://` needs a directory, e.g. file://./data/archive".into(),
        )),
        Some(path) => Ok(Box::new(FileTarget::new(PathBuf::from(path)))),
        None => Err(ArchiveError::Target(format!(
            "`{url}` is not a supported archive URL: only file://<directory> is implemented \
             (another scheme needs an ArchiveTarget implementation)"
        ))),
    }
}

/// A directory on the local filesystem.
#[derive(Debug, Clone)]
pub struct FileTarget {
    dir: PathBuf,
}

const TEMP_SUFFIX: &str = ".tmp";

impl FileTarget {
    /// A target writing into `dir` (created on the first `put`).
    pub fn new(dir: PathBuf) -> Self {
        FileTarget { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, ArchiveError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(ArchiveError::Target(format!(
                "`{name}` is not a valid archive object name"
            )));
        }
        Ok(self.dir.join(name))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ArchiveError {
    ArchiveError::Target(format!("{what} {}: {e}", path.display()))
}

impl ArchiveTarget for FileTarget {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        let path = self.path(name)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| io("creating", &self.dir, e))?;
        let temp = self.dir.join(format!("{name}{TEMP_SUFFIX}"));
        let mut file = std::fs::File::create(&temp).map_err(|e| io("creating", &temp, e))?;
        file.write_all(bytes).map_err(|e| io("writing", &temp, e))?;
        file.sync_all().map_err(|e| io("syncing", &temp, e))?;
        drop(file);
        std::fs::rename(&temp, &path).map_err(|e| io("renaming", &temp, e))?;
        // The rename is durable once the directory is synced.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing", &self.dir, e))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let path = self.path(name)?;
        std::fs::read(&path).map_err(|e| io("reading", &path, e))
    }

    fn remove(&self, name: &str) -> Result<(), ArchiveError> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &path, e)),
            _ => Ok(()),
        }
    }

    fn list(&self) -> Result<Vec<String>, ArchiveError> {
        self.names(|n| !n.ends_with(TEMP_SUFFIX))
    }

    fn remove_temporary(&self) -> Result<(), ArchiveError> {
        for name in self.names(|n| n.ends_with(TEMP_SUFFIX))? {
            let path = self.dir.join(name);
            std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
        }
        Ok(())
    }
}

impl FileTarget {
    fn names(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, ArchiveError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("listing", &self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io("listing", &self.dir, e))?;
            if let Some(name) = entry.file_name().to_str()
                && entry.file_type().is_ok_and(|t| t.is_file())
                && keep(name)
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replaces_and_lists_only_complete_objects() {
        let dir = tempfile::tempdir().unwrap();
        let target = FileTarget::new(dir.path().join("a"));
        assert!(target.list().unwrap().is_empty());
        target.put("x.zst", b"one").unwrap();
        target.put("x.zst", b"two").unwrap();
        std::fs::write(dir.path().join("a/y.zst.tmp"), b"torn").unwrap();
        assert_eq!(target.list().unwrap(), vec!["x.zst".to_owned()]);
        assert_eq!(target.get("x.zst").unwrap(), b"two");
        target.remove_temporary().unwrap();
        target.remove("x.zst").unwrap();
        target.remove("x.zst").unwrap();
        assert!(
            std::fs::read_dir(dir.path().join("a"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn only_file_urls_open() {
        assert!(open_target("file://./data/archive").is_ok());
        assert!(open_target("s3://bucket/prefix").is_err());
        assert!(open_target("file://").is_err());
    }
}
