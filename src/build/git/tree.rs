//! A commit's tree checked before anything of it is written to disk, as
//! `git fsck` would: libgit2 fetches trees git itself refuses, and its
//! checkout then follows them. A tree holding `lnk` twice (a symlink and a
//! directory) makes the checkout create the symlink and then directories
//! *through* it, outside the work tree. So: no name twice in one directory,
//! no `.git`, `.`, `..` or empty names, no `/` or NUL inside a name; and a
//! bound on the entries a checkout would write (a tree may name one
//! subtree many times, so a small repository can unfold into billions of
//! files).

use std::collections::{HashMap, HashSet};

use git2::{ObjectType, Oid, Repository};

/// Entries (files, links, directories, submodules) one checkout may write.
pub const MAX_ENTRIES: u64 = 4_000_000;

/// Directories nested deeper than this are refused.
pub const MAX_DEPTH: usize = 512;

/// Checks the tree `id` of `repo` (see the module's text); `what` names it
/// in errors ("tag R1.0 of git://...").
pub fn check(repo: &Repository, id: Oid, what: &str) -> Result<(), String> {
    let mut sizes: HashMap<Oid, u64> = HashMap::new();
    let n = walk(repo, id, "", 0, &mut sizes).map_err(|e| format!("{what}: {e}"))?;
    if n > MAX_ENTRIES {
        return Err(format!(
            "{what}: the tree holds more than {MAX_ENTRIES} entries: refused"
        ));
    }
    Ok(())
}

/// The number of entries below `id` (each distinct tree is read once).
fn walk(
    repo: &Repository,
    id: Oid,
    path: &str,
    depth: usize,
    sizes: &mut HashMap<Oid, u64>,
) -> Result<u64, String> {
    if let Some(n) = sizes.get(&id) {
        return Ok(*n);
    }
    if depth > MAX_DEPTH {
        return Err(format!(
            "directories nested deeper than {MAX_DEPTH} levels at {path}: refused"
        ));
    }
    let tree = repo
        .find_tree(id)
        .map_err(|e| format!("cannot read the tree at '{path}': {}", e.message()))?;
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    let mut n: u64 = 0;
    for entry in tree.iter() {
        let name = entry.name_bytes();
        let shown = format!("{path}{}", String::from_utf8_lossy(name));
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&b'/')
            || name.contains(&0)
        {
            return Err(format!("the tree has an invalid name '{shown}': refused"));
        }
        if name.eq_ignore_ascii_case(b".git") {
            return Err(format!(
                "the tree has an entry named {shown} (only git's own directory may be called that): refused"
            ));
        }
        if !names.insert(name.to_vec()) {
            return Err(format!(
                "the tree has '{shown}' twice (git fsck refuses such trees: a checkout of it can write outside the work tree): refused"
            ));
        }
        n = n.saturating_add(1);
        if entry.kind() == Some(ObjectType::Tree) {
            let below = walk(repo, entry.id(), &format!("{shown}/"), depth + 1, sizes)?;
            n = n.saturating_add(below);
        }
        if n > MAX_ENTRIES {
            break;
        }
    }
    sizes.insert(id, n);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::FileMode;

    #[test]
    fn duplicate_names_and_dot_git_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(t.path()).unwrap();
        let blob = repo.blob(b"/tmp").unwrap();
        let inner = {
            let mut b = repo.treebuilder(None).unwrap();
            b.insert("x", blob, FileMode::Blob.into()).unwrap();
            b.write().unwrap()
        };
        let good = {
            let mut b = repo.treebuilder(None).unwrap();
            b.insert("lnk", blob, FileMode::Link.into()).unwrap();
            b.insert("dir", inner, FileMode::Tree.into()).unwrap();
            b.write().unwrap()
        };
        assert!(check(&repo, good, "t").is_ok());
        // trees as a hostile server can send them (the tree builder refuses)
        let raw = |entries: &[(&str, &str, Oid)]| {
            let mut bytes = Vec::new();
            for (mode, name, id) in entries {
                bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
                bytes.extend_from_slice(id.as_bytes());
            }
            repo.odb().unwrap().write(ObjectType::Tree, &bytes).unwrap()
        };
        let dot_git = raw(&[("40000", ".GIT", inner)]);
        assert!(check(&repo, dot_git, "t").unwrap_err().contains(".GIT"));
        let twice = raw(&[("120000", "lnk", blob), ("40000", "lnk", inner)]);
        assert!(check(&repo, twice, "t")
            .unwrap_err()
            .contains("'lnk' twice"));
        let deeper = raw(&[("40000", "d", twice)]);
        assert!(check(&repo, deeper, "t")
            .unwrap_err()
            .contains("'d/lnk' twice"));
        // the same subtree named many times at many levels: counted, not walked
        let mut top = inner;
        for _ in 0..30 {
            let mut b = repo.treebuilder(None).unwrap();
            for i in 0..4 {
                b.insert(format!("d{i}"), top, FileMode::Tree.into())
                    .unwrap();
            }
            top = b.write().unwrap();
        }
        let t0 = std::time::Instant::now();
        let err = check(&repo, top, "t").unwrap_err();
        assert!(err.contains("more than"), "{err}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    }
}
