//! `file://`: archive files in a local directory, written durably (temporary file, fsync,
//! rename, fsync of the directory). The blocking filesystem calls run on tokio's blocking pool.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{ArchiveTarget, check_name};
use crate::store::archive::{ArchiveError, blocking};

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
        check_name(name)?;
        Ok(self.dir.join(name))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ArchiveError {
    ArchiveError::Target(format!("{what} {}: {e}", path.display()))
}

#[async_trait]
impl ArchiveTarget for FileTarget {
    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || this.put_blocking(&name, &bytes)).await
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let path = self.path(name)?;
        blocking(move || std::fs::read(&path).map_err(|e| io("reading", &path, e))).await
    }

    async fn remove(&self, name: &str) -> Result<(), ArchiveError> {
        let path = self.path(name)?;
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &path, e)),
            _ => Ok(()),
        })
        .await
    }

    async fn list(&self) -> Result<Vec<String>, ArchiveError> {
        let this = self.clone();
        blocking(move || this.names(|n| !n.ends_with(TEMP_SUFFIX))).await
    }

    async fn remove_temporary(&self) -> Result<(), ArchiveError> {
        let this = self.clone();
        blocking(move || {
            for name in this.names(|n| n.ends_with(TEMP_SUFFIX))? {
                let path = this.dir.join(name);
                std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
            }
            Ok(())
        })
        .await
    }
}

impl FileTarget {
    fn put_blocking(&self, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
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

    #[tokio::test]
    async fn a_torn_put_is_not_listed_and_is_removed_as_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = FileTarget::new(dir.path().join("a"));
        target.put("x.zst", b"one".to_vec()).await.unwrap();
        std::fs::write(dir.path().join("a/y.zst.tmp"), b"torn").unwrap();
        assert_eq!(target.list().await.unwrap(), vec!["x.zst".to_owned()]);
        target.remove_temporary().await.unwrap();
        target.remove("x.zst").await.unwrap();
        assert!(
            std::fs::read_dir(dir.path().join("a"))
                .unwrap()
                .next()
                .is_none()
        );
    }
}
