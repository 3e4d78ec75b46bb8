//! Choosing what of a built tree is packed: the recipe's `artifacts`,
//! taken from the tree itself, never through a link.

use std::path::{Component, Path, PathBuf};

use crate::store::beneath;

/// The tree to pack: the built tree minus `.git`, or only the recipe's
/// `artifacts` (paths or glob patterns, relative to the tree).
///
/// Every match is checked on the real file system: it must be reached from
/// the tree's root without passing through a symlink (a symlinked directory
/// in the tree can point anywhere, the store included), so only entries of
/// the tree itself are moved, by a rename inside the work directory. A
/// matched symlink is moved as the link itself; packing then refuses it if
/// it resolves outside the tree.
pub fn select(out: &Path, work: &Path, artifacts: Option<&[String]>) -> Result<PathBuf, String> {
    let _ = std::fs::remove_dir_all(out.join(".git"));
    let Some(list) = artifacts else {
        return Ok(out.to_owned());
    };
    let mut chosen: Vec<PathBuf> = Vec::new();
    for pat in list {
        let p = Path::new(pat);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("artifact '{pat}' must be a path inside the tree"));
        }
        let full = out.join(pat);
        let mut found = 0;
        let matches = glob::glob(&full.to_string_lossy())
            .map_err(|e| format!("artifact pattern '{pat}': {e}"))?;
        for m in matches.filter_map(Result::ok) {
            let rel = m
                .strip_prefix(out)
                .map_err(|_| format!("artifact '{pat}' matched outside the tree"))?
                .to_owned();
            match beneath::lstat_direct(out, &rel) {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    return Err(format!(
                        "artifact '{pat}': {e}: artifacts are taken from the tree itself, never through a link"
                    ))
                }
            }
            found += 1;
            chosen.push(rel);
        }
        if found == 0 {
            return Err(format!("artifact '{pat}' was not produced by the build"));
        }
    }
    // a match inside another match moves with it
    chosen.sort();
    chosen.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for rel in chosen {
        if !kept.iter().any(|k| rel.starts_with(k)) {
            kept.push(rel);
        }
    }
    let stage = work.join("artifacts");
    std::fs::create_dir_all(&stage).map_err(|e| e.to_string())?;
    for rel in kept {
        if let Some(parent) = rel.parent() {
            beneath::create_dirs(&stage, parent).map_err(|e| e.to_string())?;
        }
        std::fs::rename(out.join(&rel), stage.join(&rel))
            .map_err(|e| format!("artifact {}: {e}", rel.display()))?;
    }
    Ok(stage)
}
