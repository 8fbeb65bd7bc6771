//! Catalog sources: the embedded example catalog or a directory, both flattened into one map of
//! `relative/path` → bytes so the loader has a single code path.

use std::collections::BTreeMap;
use std::path::Path;

use include_dir::{Dir, include_dir};

use super::error::CheckError;

/// The example catalog compiled into the binary.
static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/catalog");

/// Relative path (always `/`-separated) → file contents.
pub(crate) type Files = BTreeMap<String, Vec<u8>>;

/// Every file of the embedded catalog.
pub(crate) fn embedded() -> Files {
    let mut files = Files::new();
    collect_embedded(&EMBEDDED, &mut files);
    files
}

fn collect_embedded(dir: &Dir<'static>, out: &mut Files) {
    for file in dir.files() {
        let path = file.path().to_string_lossy().replace('\\', "/");
        out.insert(path, file.contents().to_vec());
    }
    for sub in dir.dirs() {
        collect_embedded(sub, out);
    }
}

/// Every file below `root`, or the I/O problems met while reading it.
pub(crate) fn directory(root: &Path) -> Result<Files, Vec<CheckError>> {
    let mut files = Files::new();
    let mut errors = Vec::new();
    if !root.is_dir() {
        return Err(vec![CheckError::new(
            root.display().to_string(),
            "",
            "catalog directory does not exist or is not a directory",
        )]);
    }
    walk(root, "", &mut files, &mut errors);
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn walk(dir: &Path, prefix: &str, files: &mut Files, errors: &mut Vec<CheckError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(CheckError::new(
                prefix,
                "",
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        if path.is_dir() {
            walk(&path, &rel, files, errors);
        } else {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    files.insert(rel, bytes);
                }
                Err(e) => errors.push(CheckError::new(rel, "", format!("cannot read file: {e}"))),
            }
        }
    }
}

/// Reads a file of the map as UTF-8 text.
pub(crate) fn text<'a>(files: &'a Files, path: &str) -> Result<&'a str, String> {
    let bytes = files
        .get(path)
        .ok_or_else(|| "file does not exist".to_string())?;
    std::str::from_utf8(bytes).map_err(|_| "file is not valid UTF-8".to_string())
}
