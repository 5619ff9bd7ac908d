//! `PLUGINS_DIR` on disk: every plugin is a folder `<name>/` with `plugin.json` and `index.js`.
//! Reading checks sizes, the manifest and that the folder's name is the plugin's; writing
//! replaces a folder atomically. Nothing here knows the host: the `load` room calls it on a
//! blocking thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::plugin::manifest::{
    MAX_MANIFEST_BYTES, MAX_SOURCE_BYTES, Manifest, ManifestError, check_name,
};

/// Why a plugin folder does not load, or `PLUGINS_DIR` could not be read or written. The
/// messages are what the API and the logs show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// Which one.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// An entry of `PLUGINS_DIR` could not be listed.
    #[error(transparent)]
    Entry(std::io::Error),
    /// A file is over its limit.
    #[error("{} is {len} bytes; the limit is {limit}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// The folder's name is not a plugin name.
    #[error("folder name: {0}")]
    Name(ManifestError),
    /// `plugin.json` is invalid.
    #[error("plugin.json: {0}")]
    Manifest(ManifestError),
    /// `plugin.json` names another plugin than its folder.
    #[error("plugin.json names `{manifest}`, but the folder is `{folder}`; they must match")]
    NameMismatch {
        /// The name in `plugin.json`.
        manifest: String,
        /// The folder's name.
        folder: String,
    },
    /// `index.js` is not UTF-8.
    #[error("index.js is not UTF-8")]
    NotUtf8,
    /// The blocking task doing the reading or writing failed.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl FolderError {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> FolderError + '_ {
        move |source| FolderError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The content hash of a JS plugin.
fn js_hash(manifest: &[u8], source: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(manifest);
    h.update([0u8]);
    h.update(source);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A plugin folder read from disk.
pub(super) struct Folder {
    pub(super) manifest: Manifest,
    pub(super) source: String,
    pub(super) hash: String,
}

/// A folder that does not load: its version (when its manifest was read) and why.
pub(super) struct BadFolder {
    pub(super) version: Option<String>,
    pub(super) error: FolderError,
}

/// A folder's content, or why it does not load.
pub(super) type FolderRead = Result<Folder, BadFolder>;

fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, FolderError> {
    let len = std::fs::metadata(path)
        .map_err(FolderError::io(path))?
        .len();
    if len > limit as u64 {
        return Err(FolderError::TooLarge {
            path: path.to_owned(),
            len,
            limit,
        });
    }
    std::fs::read(path).map_err(FolderError::io(path))
}

fn read_folder(dir: &Path, name: &str) -> FolderRead {
    let unversioned = |error| BadFolder {
        version: None,
        error,
    };
    check_name(name).map_err(|e| unversioned(FolderError::Name(e)))?;
    let manifest_bytes =
        read_limited(&dir.join("plugin.json"), MAX_MANIFEST_BYTES).map_err(unversioned)?;
    let manifest =
        Manifest::parse(&manifest_bytes).map_err(|e| unversioned(FolderError::Manifest(e)))?;
    let versioned = |error| BadFolder {
        version: Some(manifest.version.clone()),
        error,
    };
    if manifest.name != name {
        return Err(versioned(FolderError::NameMismatch {
            manifest: manifest.name.clone(),
            folder: name.to_owned(),
        }));
    }
    let source = read_limited(&dir.join("index.js"), MAX_SOURCE_BYTES).map_err(versioned)?;
    let hash = js_hash(&manifest_bytes, &source);
    let source = String::from_utf8(source).map_err(|_| versioned(FolderError::NotUtf8))?;
    Ok(Folder {
        manifest,
        source,
        hash,
    })
}

/// Every plugin folder under `dir` (hidden entries are skipped); a missing `dir` is empty.
pub(super) fn scan(dir: &Path) -> Result<BTreeMap<String, FolderRead>, FolderError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(FolderError::io(dir)(e)),
    };
    let mut found = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(FolderError::Entry)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        found.insert(name.clone(), read_folder(&entry.path(), &name));
    }
    Ok(found)
}

/// Writes a plugin folder atomically: into a hidden sibling, then renamed into place.
pub(super) fn write_folder(
    dir: &Path,
    name: &str,
    manifest: &[u8],
    source: &[u8],
) -> Result<(), FolderError> {
    let io = FolderError::io(dir);
    std::fs::create_dir_all(dir).map_err(&io)?;
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let staging = dir.join(format!(".{name}.new-{unique}"));
    std::fs::create_dir(&staging).map_err(&io)?;
    std::fs::write(staging.join("plugin.json"), manifest).map_err(&io)?;
    std::fs::write(staging.join("index.js"), source).map_err(&io)?;
    let target = dir.join(name);
    if target.exists() {
        let old = dir.join(format!(".{name}.old-{unique}"));
        std::fs::rename(&target, &old).map_err(&io)?;
        std::fs::rename(&staging, &target).map_err(&io)?;
        std::fs::remove_dir_all(&old).map_err(&io)?;
    } else {
        std::fs::rename(&staging, &target).map_err(&io)?;
    }
    Ok(())
}

/// Removes the plugin folder `path`; one that is already gone is fine.
pub(super) fn remove_folder(path: &Path) -> Result<(), FolderError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FolderError::io(path)(e)),
        _ => Ok(()),
    }
}
