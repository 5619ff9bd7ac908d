//! `PLUGINS_DIR` on disk: every plugin is a folder `<name>/` with `plugin.json` and `index.js`.
//! Reading checks sizes, the manifest and that the folder's name is the plugin's; writing
//! replaces a folder atomically. Nothing here knows the host: the `load` room calls it on a
//! blocking thread.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::plugin::manifest::{MAX_MANIFEST_BYTES, MAX_SOURCE_BYTES, Manifest, check_name};

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

fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > limit as u64 {
        return Err(format!(
            "{} is {len} bytes; the limit is {limit}",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_folder(dir: &Path, name: &str) -> FolderRead {
    check_name(name).map_err(|e| (None, format!("folder name: {e}")))?;
    let manifest_bytes =
        read_limited(&dir.join("plugin.json"), MAX_MANIFEST_BYTES).map_err(|e| (None, e))?;
    let manifest =
        Manifest::parse(&manifest_bytes).map_err(|e| (None, format!("plugin.json: {e}")))?;
    if manifest.name != name {
        return Err((
            Some(manifest.version),
            format!(
                "plugin.json names `{}`, but the folder is `{name}`; they must match",
                manifest.name
            ),
        ));
    }
    let source = read_limited(&dir.join("index.js"), MAX_SOURCE_BYTES)
        .map_err(|e| (Some(manifest.version.clone()), e))?;
    let hash = js_hash(&manifest_bytes, &source);
    let source = String::from_utf8(source).map_err(|_| {
        (
            Some(manifest.version.clone()),
            "index.js is not UTF-8".into(),
        )
    })?;
    Ok(Folder {
        manifest,
        source,
        hash,
    })
}

/// A folder's content, or its version (when known) and why it does not load.
pub(super) type FolderRead = Result<Folder, (Option<String>, String)>;

/// Every plugin folder under `dir` (hidden entries are skipped); a missing `dir` is empty.
pub(super) fn scan(dir: &Path) -> Result<BTreeMap<String, FolderRead>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut found = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
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
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let staging = dir.join(format!(".{name}.new-{unique}"));
    std::fs::create_dir(&staging).map_err(io)?;
    std::fs::write(staging.join("plugin.json"), manifest).map_err(io)?;
    std::fs::write(staging.join("index.js"), source).map_err(io)?;
    let target = dir.join(name);
    if target.exists() {
        let old = dir.join(format!(".{name}.old-{unique}"));
        std::fs::rename(&target, &old).map_err(io)?;
        std::fs::rename(&staging, &target).map_err(io)?;
        std::fs::remove_dir_all(&old).map_err(io)?;
    } else {
        std::fs::rename(&staging, &target).map_err(io)?;
    }
    Ok(())
}
