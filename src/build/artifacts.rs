//! Choosing what of a built tree is packed: the recipe's `artifacts`,
//! taken from the tree itself, never through a link.

use std::path::{Component, Path, PathBuf};

use crate::store::beneath;

/// The tree to pack: the built tree minus `.git`, or only the recipe's
/// `artifacts` (paths or glob patterns, relative to the tree).
///
/// Patterns are matched against the entries of the tree itself, listed
/// without following any link: nothing outside the tree is ever looked at
/// (a committed link to `/` cannot make the service walk the host, and
/// error messages never name host paths). A matched symlink is moved as the
/// link itself; packing then refuses it if it resolves outside the tree.
/// Matches are moved by a rename inside the work directory.
pub fn select(out: &Path, work: &Path, artifacts: Option<&[String]>) -> Result<PathBuf, String> {
    let _ = std::fs::remove_dir_all(out.join(".git"));
    let Some(list) = artifacts else {
        return Ok(out.to_owned());
    };
    let mut patterns = Vec::new();
    for pat in list {
        let p = Path::new(pat);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("artifact '{pat}' must be a path inside the tree"));
        }
        let norm: PathBuf = p
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        let compiled = glob::Pattern::new(&norm.to_string_lossy())
            .map_err(|e| format!("artifact pattern '{pat}': {e}"))?;
        patterns.push((pat, compiled));
    }
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut found = vec![0usize; patterns.len()];
    let mut chosen: Vec<PathBuf> = Vec::new();
    let walk = walkdir::WalkDir::new(out)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| format!("listing the built tree: {e}"))?;
        let Ok(rel) = entry.path().strip_prefix(out) else {
            continue;
        };
        for (i, (_, p)) in patterns.iter().enumerate() {
            if p.matches_path_with(rel, opts) {
                found[i] += 1;
                chosen.push(rel.to_owned());
            }
        }
    }
    if let Some(i) = found.iter().position(|n| *n == 0) {
        return Err(format!(
            "artifact '{}' was not produced by the build{}",
            patterns[i].0,
            link_hint(out, patterns[i].0)
        ));
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
        // listed without following links, but the tree is re-checked
        // here: the entry must still be reached through real directories
        match beneath::lstat_direct(out, &rel) {
            Ok(Some(_)) => {}
            Ok(None) => continue,
            Err(e) => return Err(format!("artifact {}: {e}", rel.display())),
        }
        if let Some(parent) = rel.parent() {
            beneath::create_dirs(&stage, parent).map_err(|e| e.to_string())?;
        }
        std::fs::rename(out.join(&rel), stage.join(&rel))
            .map_err(|e| format!("artifact {}: {e}", rel.display()))?;
    }
    Ok(stage)
}

/// When a pattern's literal start goes through a symlink of the tree,
/// say so: matches are never taken through links.
fn link_hint(out: &Path, pat: &str) -> String {
    let literal: PathBuf = Path::new(pat)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect();
    if literal.as_os_str().is_empty() {
        return String::new();
    }
    let link = match beneath::lstat_direct(out, &literal) {
        Err(beneath::BeneathError::ThroughLink { link, .. }) => link,
        Ok(Some(m)) if m.file_type().is_symlink() => literal.display().to_string(),
        _ => return String::new(),
    };
    format!(
        " ({link} is a symbolic link: artifacts are taken from the tree itself, never through a link)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_tree_not_the_host() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("src");
        std::fs::create_dir_all(out.join("lib/sub")).unwrap();
        std::fs::create_dir_all(out.join("bin")).unwrap();
        std::fs::write(out.join("lib/libx.so"), "x").unwrap();
        std::fs::write(out.join("lib/sub/liby.so"), "y").unwrap();
        std::fs::write(out.join("bin/tool"), "t").unwrap();
        std::os::unix::fs::symlink("/", out.join("root")).unwrap();
        let pats = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // through a link to the host: nothing matches (no walk of /usr)
        let e = select(&out, t.path(), Some(&pats(&["root/usr/**/nothing"]))).unwrap_err();
        assert!(e.contains("was not produced"), "{e}");
        // .* does not climb out
        let e = select(&out, t.path(), Some(&pats(&[".*/.*/*.toml"]))).unwrap_err();
        assert!(e.contains("was not produced"), "{e}");
        let stage = select(
            &out,
            t.path(),
            Some(&pats(&["lib/*.so", "./bin", "lib/**/*.so"])),
        )
        .unwrap();
        assert!(stage.join("lib/libx.so").is_file());
        assert!(stage.join("lib/sub/liby.so").is_file());
        assert!(stage.join("bin/tool").is_file());
        assert!(!stage.join("root").exists());
    }
}
